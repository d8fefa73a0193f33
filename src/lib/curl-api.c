/* curl-api.c - see curl-api.h. */
#include "curl-api.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stddef.h>

static curl_api api;
static bool tried, loaded;
static const char *load_error;

const curl_api *curl_api_get(const char **ret_error) {
    if (!tried) {
        tried = true;
        void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            load_error = dlerror();
        } else {
            static const struct { const char *name; size_t offset; } syms[] = {
#define SYM(field, name) {name, offsetof(curl_api, field)}
                SYM(global_init, "curl_global_init"), SYM(easy_init, "curl_easy_init"),
                SYM(easy_setopt, "curl_easy_setopt"), SYM(easy_getinfo, "curl_easy_getinfo"),
                SYM(easy_perform, "curl_easy_perform"), SYM(easy_cleanup, "curl_easy_cleanup"),
                SYM(easy_strerror, "curl_easy_strerror"), SYM(multi_init, "curl_multi_init"),
                SYM(multi_setopt, "curl_multi_setopt"), SYM(multi_add_handle, "curl_multi_add_handle"),
                SYM(multi_remove_handle, "curl_multi_remove_handle"),
                SYM(multi_socket_action, "curl_multi_socket_action"),
                SYM(multi_info_read, "curl_multi_info_read"), SYM(multi_assign, "curl_multi_assign"),
                SYM(multi_cleanup, "curl_multi_cleanup"), SYM(slist_append, "curl_slist_append"),
                SYM(slist_free_all, "curl_slist_free_all"), SYM(getdate, "curl_getdate"),
#undef SYM
            };
            loaded = true;
            for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
                void *f = dlsym(h, syms[i].name);
                if (!f) {
                    load_error = "libcurl.so.4 lacks a needed function";
                    loaded = false;
                    break;
                }
                *(void **)((char *)&api + syms[i].offset) = f;
            }
            if (loaded && api.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                load_error = "curl_global_init failed";
                loaded = false;
            }
            if (!loaded)
                dlclose(h);
        }
    }
    if (!loaded && ret_error)
        *ret_error = load_error ? load_error : "libcurl is not available";
    return loaded ? &api : NULL;
}

/*
 * curl-api.h - libcurl, loaded when first needed.
 *
 * libcurl drags in about thirty libraries (OpenSSL, Kerberos, LDAP,
 * libssh2, ...) whose loading alone costs ~3 MB of resident memory.  A
 * tend supervising services without http probes never needs it, so tend
 * does not link libcurl: the first HTTP probe or client request dlopen()s
 * libcurl.so.4 and resolves the functions below.  Call sites use
 * `const curl_api *C = curl_api_get();` and `C->easy_setopt(...)`.
 */
#ifndef TEND_LIB_CURL_API_H
#define TEND_LIB_CURL_API_H

#include <curl/curl.h>
#include <time.h>

typedef struct curl_api {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    CURLcode (*easy_perform)(CURL *);
    void (*easy_cleanup)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
    CURLMcode (*multi_add_handle)(CURLM *, CURL *);
    CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
    CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
    CURLMsg *(*multi_info_read)(CURLM *, int *);
    CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
    CURLMcode (*multi_cleanup)(CURLM *);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    time_t (*getdate)(const char *, const time_t *);
} curl_api;

/*
 * Loads libcurl and runs curl_global_init() once; returns the table, or
 * NULL when libcurl cannot be loaded (then *ret_error, if given, says
 * why).  Not thread-safe on the first call: call it from the loop thread.
 */
const curl_api *curl_api_get(const char **ret_error);

#endif

/* strv.c - see strv.h. */
#include "strv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t strv_length(char *const *v) {
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

void strv_free(char **v) {
    if (!v)
        return;
    for (size_t i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

char **strv_copy(char *const *v) {
    size_t n = strv_length(v);
    char **r = calloc(n + 1, sizeof(char *));
    if (!r)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        r[i] = strdup(v[i]);
        if (!r[i]) {
            strv_free(r);
            return NULL;
        }
    }
    return r;
}

int strv_push(char ***v, const char *s) {
    size_t n = strv_length(*v);
    char *c = strdup(s);
    if (!c)
        return -ENOMEM;
    char **r = realloc(*v, (n + 2) * sizeof(char *));
    if (!r) {
        free(c);
        return -ENOMEM;
    }
    r[n] = c;
    r[n + 1] = NULL;
    *v = r;
    return 0;
}

int strv_env_put(char ***env, char *kv, size_t klen, char **ret_old) {
    if (ret_old)
        *ret_old = NULL;
    size_t n = 0;
    for (; *env && (*env)[n]; n++) {
        if (strncmp((*env)[n], kv, klen) == 0 && (*env)[n][klen] == '=') {
            if (ret_old)
                *ret_old = (*env)[n];
            (*env)[n] = kv;
            return 0;
        }
    }
    char **r = realloc(*env, (n + 2) * sizeof(char *));
    if (!r)
        return -ENOMEM;
    r[n] = kv;
    r[n + 1] = NULL;
    *env = r;
    return 0;
}

int strv_env_set(char ***env, const char *key, const char *value) {
    size_t klen = strlen(key);
    size_t len = klen + strlen(value) + 2;
    char *kv = malloc(len);
    if (!kv)
        return -ENOMEM;
    memcpy(kv, key, klen);
    kv[klen] = '=';
    memcpy(kv + klen + 1, value, strlen(value) + 1);
    char *old;
    if (strv_env_put(env, kv, klen, &old) < 0) {
        free(kv);
        return -ENOMEM;
    }
    free(old);
    return 0;
}

const char *strv_env_get(char *const *env, const char *key) {
    size_t klen = strlen(key);
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], key, klen) == 0 && env[i][klen] == '=')
            return env[i] + klen + 1;
    return NULL;
}

char *strv_join(char *const *v, const char *sep) {
    size_t n = strv_length(v), slen = strlen(sep), total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(v[i]) + (i ? slen : 0);
    char *r = malloc(total), *p = r;
    if (!r)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (i) {
            memcpy(p, sep, slen);
            p += slen;
        }
        size_t l = strlen(v[i]);
        memcpy(p, v[i], l);
        p += l;
    }
    *p = '\0';
    return r;
}

bool str_startswith(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

char *strdup_or_null(const char *s) { return s ? strdup(s) : NULL; }

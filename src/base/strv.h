/*
 * strv.h - NULL-terminated string vectors (argv, envp) and small string
 * helpers.  Functions returning int give 0 or -ENOMEM.
 */
#ifndef TEND_BASE_STRV_H
#define TEND_BASE_STRV_H

#include <stdbool.h>
#include <stddef.h>

size_t strv_length(char *const *v);
void strv_free(char **v);
char **strv_copy(char *const *v);
/* Appends a copy of s; *v may be NULL. */
int strv_push(char ***v, const char *s);
/* Sets "KEY=VALUE" in an environment vector, replacing an existing KEY. */
int strv_env_set(char ***env, const char *key, const char *value);
/* Puts kv, a "KEY=VALUE" whose key is klen bytes, in place of the first
 * entry with that key, or appends it; the vector takes kv, not a copy.
 * *ret_old (if given) gets the entry replaced, or NULL.  0 or -ENOMEM
 * (then nothing changed). */
int strv_env_put(char ***env, char *kv, size_t klen, char **ret_old);
/* Returns the value of KEY in env or NULL. */
const char *strv_env_get(char *const *env, const char *key);
/* Joins with sep into a new string, or NULL on ENOMEM. */
char *strv_join(char *const *v, const char *sep);
bool str_startswith(const char *s, const char *prefix);
/* strdup that returns NULL for NULL. */
char *strdup_or_null(const char *s);

#endif

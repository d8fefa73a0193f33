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
/* Returns the value of KEY in env or NULL. */
const char *strv_env_get(char *const *env, const char *key);
/* Joins with sep into a new string, or NULL on ENOMEM. */
char *strv_join(char *const *v, const char *sep);
bool str_startswith(const char *s, const char *prefix);
/* strdup that returns NULL for NULL. */
char *strdup_or_null(const char *s);

#endif

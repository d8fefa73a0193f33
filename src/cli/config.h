/*
 * config.h - loading tend.yaml into a tend_config (include/tend/spec.h).
 *
 * Every problem found is reported, not just the first: each message has
 * the form "FILE:LINE:COL: key.path: what is wrong (what would be valid)",
 * e.g. `tend.yaml:14:16: services.api.restart.delay: invalid duration "5x"
 * (try 500ms, 5s, 2m)`.  ${VAR} and ${VAR:-default} expand in string
 * values; `defaults:` merges into every service; env_file is read relative
 * to the config's directory.
 */
#ifndef TEND_CLI_CONFIG_H
#define TEND_CLI_CONFIG_H

#include <tend/spec.h>

/*
 * Loads and validates the file at path.  On success returns 0 and stores
 * a new config in *ret_config (free with tend_config_free()).  On failure
 * returns a negative errno (-EINVAL for invalid content, -ENOENT etc. when
 * the file cannot be read), *ret_config is untouched, and *ret_errors (if
 * not NULL) receives a NULL-terminated vector of messages that the caller
 * frees with strv_free().  Errors are in file order.
 */
int config_load(const char *path, tend_config **ret_config, char ***ret_errors);

/* The same from a buffer; `path` is used for messages and relative paths. */
int config_load_string(const char *path, const char *text, size_t len,
                       tend_config **ret_config, char ***ret_errors);

#endif

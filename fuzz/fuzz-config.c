/*
 * fuzz-config.c - libFuzzer target for the configuration loader
 * (config_load_string: libyaml, ${VAR} expansion, defaults merging, every
 * key of SPEC 2, the dependency graph's checks).
 *
 * Each input is a YAML text named "fuzz.yaml".  Besides the sanitizers
 * (a crash, a leak, undefined behaviour), the target aborts when the
 * loader breaks its contract:
 *   - it returns 0 without a config, or a config and an error;
 *   - it fails without saying why (no messages), or with a message that
 *     does not start with the file's name ("fuzz.yaml:").
 * An error message must also be one line: tend prints each on its own.
 *
 * env_file and other paths in an input are resolved against the current
 * directory; run the target from an empty one.  Build and run: see
 * fuzz/README.md.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "strv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *detail) {
    fprintf(stderr, "fuzz-config: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tend_config *cfg = NULL;
    char **errors = NULL;
    int r = config_load_string("fuzz.yaml", (const char *)data, size, &cfg, &errors);
    if (r == 0) {
        if (!cfg)
            die("returned 0 without a config", NULL);
        if (errors && errors[0])
            die("returned 0 with an error", errors[0]);
        tend_config_free(cfg);
    } else {
        if (cfg)
            die("failed but returned a config", NULL);
        if (r == -EINVAL && (!errors || !errors[0]))
            die("failed with -EINVAL and no message", NULL);
        for (size_t i = 0; errors && errors[i]; i++) {
            if (strncmp(errors[i], "fuzz.yaml:", 10) != 0)
                die("a message without the file name", errors[i]);
            if (strchr(errors[i], '\n'))
                die("a message of more than one line", errors[i]);
        }
    }
    strv_free(errors);
    return 0;
}

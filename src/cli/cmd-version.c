/* cmd-version.c - `tend version`. */
#include <stdio.h>

#include "cmd.h"
#include "tend-config.h"

static int run(int argc, char **argv) {
    printf("tend %s\n", TEND_VERSION);
    return EXIT_OK;
}

const cmd_entry cmd_version_entry = {"version", "", "print the version", run};

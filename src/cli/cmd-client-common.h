/*
 * cmd-client-common.h - option parsing shared by the client commands:
 * -f/--file FILE and --url URL pick the instance; --json asks for JSON.
 */
#ifndef TEND_CLI_CMD_CLIENT_COMMON_H
#define TEND_CLI_CMD_CLIENT_COMMON_H

#include <getopt.h>
#include <stdbool.h>

#include "client.h"

#define CLIENT_OPTS_FILE_URL                         \
    {"file", required_argument, NULL, 'f'},          \
    {"url", required_argument, NULL, 'U'},           \
    {"help", no_argument, NULL, 'h'}

#endif

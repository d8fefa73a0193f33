/* dashboard.h - the embedded dashboard page (generated from dashboard.html). */
#ifndef TEND_CLI_DASHBOARD_H
#define TEND_CLI_DASHBOARD_H
#include <stddef.h>
extern const char dashboard_html[];
extern const size_t dashboard_html_len;
#endif

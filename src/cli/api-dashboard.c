/* api-dashboard.c - GET /: the dashboard page (assets embedded). */
#include <string.h>

#include "api.h"
#include "dashboard.h"

static void index_page(api_request *req) {
    api_reply_static(req, 200, "text/html; charset=utf-8", dashboard_html, dashboard_html_len);
}

const api_route api_dashboard_routes[] = {
    {"GET", "/", index_page, API_PUBLIC},
    {0},
};

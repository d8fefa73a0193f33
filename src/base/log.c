/*
 * log.c - see log.h.  Lines are assembled in a stack buffer and written
 * with one write(2) so concurrent writers never interleave within a line;
 * while buffering (log_set_buffered), appended to one process buffer
 * instead and written with one write(2) per log_flush().
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fdutil.h"
#include "timeutil.h"
#include "utf8.h"

static log_format g_format = LOG_FORMAT_TEXT;
static int g_max_level = LOG_INFO;
static bool g_color = false;
static size_t g_name_width = 8;
static bool g_buffered;
static char g_buf[64 * 1024];
static size_t g_len;

void log_flush(void) {
    if (g_len) {
        (void)write_all(STDOUT_FILENO, g_buf, g_len);
        g_len = 0;
    }
}

void log_set_buffered(bool on) {
    if (!on)
        log_flush();
    g_buffered = on;
}

static void emit(const char *line, size_t n) {
    if (g_buffered) {
        if (g_len + n > sizeof(g_buf))
            log_flush();
        if (n <= sizeof(g_buf)) {
            memcpy(g_buf + g_len, line, n);
            g_len += n;
            return;
        }
    }
    (void)write_all(STDOUT_FILENO, line, n);
}

void log_setup(log_format format, int max_level, bool color) {
    g_format = format;
    g_max_level = max_level;
    g_color = color;
}

int log_get_max_level(void) { return g_max_level; }

void log_set_name_width(size_t width) { g_name_width = width > 32 ? 32 : width; }

static const struct { const char *name; int level; } levels[] = {
    {"error", LOG_ERR}, {"warn", LOG_WARNING}, {"warning", LOG_WARNING},
    {"notice", LOG_NOTICE}, {"info", LOG_INFO}, {"debug", LOG_DEBUG},
};

int log_level_from_string(const char *s, int *ret) {
    for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
        if (strcasecmp(s, levels[i].name) == 0) {
            *ret = levels[i].level;
            return 0;
        }
    }
    return -EINVAL;
}

const char *log_level_to_string(int level) {
    switch (level) {
    case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: case LOG_ERR: return "error";
    case LOG_WARNING: return "warn";
    case LOG_NOTICE: return "notice";
    case LOG_INFO: return "info";
    default: return "debug";
    }
}

size_t json_escape(char *out, size_t outlen, const char *s, size_t len) {
    size_t o = 0;
    if (outlen == 0)
        return 0;
    for (size_t i = 0; i < len && o + 7 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': out[o++] = '\\'; out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; out[o++] = '\\'; break;
        case '\n': out[o++] = '\\'; out[o++] = 'n'; break;
        case '\r': out[o++] = '\\'; out[o++] = 'r'; break;
        case '\t': out[o++] = '\\'; out[o++] = 't'; break;
        default:
            if (c < 0x20) {
                o += (size_t)snprintf(out + o, outlen - o, "\\u%04x", c);
            } else {
                out[o++] = (char)c;
            }
        }
    }
    out[o] = '\0';
    return o;
}

void log_msg(int level, const char *service, const char *fmt, ...) {
    if (level > g_max_level)
        return;
    int saved_errno = errno;
    char msg[2048], line[4608], ts[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    errno = saved_errno;
    format_rfc3339_ms(now_wall_ms(), ts, sizeof(ts));
    if (!service)
        service = "-";
    int n;
    if (g_format == LOG_FORMAT_JSON) {
        char esc_msg[4096], esc_svc[256];
        json_escape(esc_msg, sizeof(esc_msg), msg, strlen(msg));
        json_escape(esc_svc, sizeof(esc_svc), service, strlen(service));
        n = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":\"%s\",\"msg\":\"%s\"}\n",
                     ts, log_level_to_string(level), esc_svc, esc_msg);
    } else {
        const char *c0 = "", *c1 = "";
        if (g_color && level <= LOG_ERR)
            c0 = "\033[31m", c1 = "\033[0m";
        else if (g_color && level == LOG_WARNING)
            c0 = "\033[33m", c1 = "\033[0m";
        /* One line whatever the message quotes (a handler's error, a
         * probe's answer). */
        char esc_msg[4096];
        (void)text_escape_controls(esc_msg, sizeof(esc_msg), msg);
        n = snprintf(line, sizeof(line), "%s %s%-5s%s %s: %s\n", ts, c0, log_level_to_string(level),
                     c1, service, esc_msg);
    }
    if (n > (int)sizeof(line) - 1) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    emit(line, (size_t)n);
}

void log_output_line(const char *service, size_t service_index, const char *text, size_t len) {
    char line[8448];
    int n;
    if (len > 8192)
        len = 8192;
    if (g_format == LOG_FORMAT_JSON) {
        char ts[32], esc[8192 * 2 + 8], esc_svc[256];
        format_rfc3339_ms(now_wall_ms(), ts, sizeof(ts));
        json_escape(esc, sizeof(esc), text, len);
        json_escape(esc_svc, sizeof(esc_svc), service, strlen(service));
        n = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"info\",\"service\":\"%s\",\"stream\":\"output\",\"msg\":\"%s\"}\n",
                     ts, esc_svc, esc);
    } else if (g_color) {
        static const int colors[] = {36, 32, 35, 34, 33, 96, 92, 95, 94, 93};
        n = snprintf(line, sizeof(line), "\033[%dm%-*s |\033[0m %.*s\n",
                     colors[service_index % ELEMENTSOF(colors)], (int)g_name_width, service, (int)len, text);
    } else {
        n = snprintf(line, sizeof(line), "%-*s | %.*s\n", (int)g_name_width, service, (int)len, text);
    }
    if (n > (int)sizeof(line) - 1) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    emit(line, (size_t)n);
}

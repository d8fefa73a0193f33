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
#include "parse.h"
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

/*
 * A line assembled in a caller's buffer with memcpy (snprintf(3) with a
 * few %s cost more than everything else about a line).  The last byte is
 * kept for the newline; what does not fit is cut.
 */
typedef struct line {
    char *p;
    size_t n, cap;
} line;

static size_t room(const line *l) { return l->cap - 1 - l->n; }

static void put(line *l, const char *s, size_t n) {
    n = MIN(n, room(l));
    memcpy(l->p + l->n, s, n);
    l->n += n;
}

static void put_str(line *l, const char *s) { put(l, s, strlen(s)); }

/* As printf's %-*s: padded with spaces to width, never cut to it. */
static void put_padded(line *l, const char *s, size_t width) {
    size_t n = strlen(s);
    put(l, s, n);
    for (; n < width && room(l); n++)
        l->p[l->n++] = ' ';
}

/* JSON-escaped, in at most max bytes, leaving tail bytes of room for what
 * closes the line (so that a cut line is still a JSON object). */
static void put_json(line *l, const char *s, size_t n, size_t max, size_t tail) {
    size_t r = room(l) > tail ? room(l) - tail : 0;
    /* json_escape() also writes a NUL, which the next byte takes. */
    l->n += json_escape(l->p + l->n, MIN(r + 1, max), s, n);
}

/* One line whatever the message quotes (a handler's error, a probe's
 * answer): controls escaped, in at most max bytes. */
static void put_text(line *l, const char *s, size_t max) {
    (void)text_escape_controls(l->p + l->n, MIN(room(l) + 1, max), s);
    l->n += strlen(l->p + l->n);
}

static void put_int(line *l, unsigned v) {
    char d[FORMAT_U64_MAX];
    char *p = format_u64(v, d);
    put(l, p, (size_t)(d + sizeof(d) - p));
}

static void end(line *l) {
    l->p[l->n++] = '\n';
    emit(l->p, l->n);
}

void log_msg(int level, const char *service, const char *fmt, ...) {
    if (level > g_max_level)
        return;
    int saved_errno = errno;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_line(level, service, msg);
    errno = saved_errno;
}

void log_line(int level, const char *service, const char *msg) {
    if (level > g_max_level)
        return;
    int saved_errno = errno;
    char buf[4608], ts[32];
    format_rfc3339_ms(now_wall_ms(), ts, sizeof(ts));
    if (!service)
        service = "-";
    line l = {.p = buf, .cap = sizeof(buf)};
    if (g_format == LOG_FORMAT_JSON) {
        put_str(&l, "{\"ts\":\"");
        put_str(&l, ts);
        put_str(&l, "\",\"level\":\"");
        put_str(&l, log_level_to_string(level));
        put_str(&l, "\",\"service\":\"");
        put_json(&l, service, strlen(service), 256, 0);
        put_str(&l, "\",\"msg\":\"");
        put_json(&l, msg, strlen(msg), 4096, 2);
        put_str(&l, "\"}");
    } else {
        const char *c0 = "", *c1 = "";
        if (g_color && level <= LOG_ERR)
            c0 = "\033[31m", c1 = "\033[0m";
        else if (g_color && level == LOG_WARNING)
            c0 = "\033[33m", c1 = "\033[0m";
        put_str(&l, ts);
        put_str(&l, " ");
        put_str(&l, c0);
        put_padded(&l, log_level_to_string(level), 5);
        put_str(&l, c1);
        put_str(&l, " ");
        put_str(&l, service);
        put_str(&l, ": ");
        put_text(&l, msg, 4096);
    }
    end(&l);
    errno = saved_errno;
}

void log_output_line(const char *service, size_t service_index, const char *text, size_t len) {
    char buf[8448];
    if (len > 8192)
        len = 8192;
    line l = {.p = buf, .cap = sizeof(buf)};
    if (g_format == LOG_FORMAT_JSON) {
        char ts[32];
        format_rfc3339_ms(now_wall_ms(), ts, sizeof(ts));
        put_str(&l, "{\"ts\":\"");
        put_str(&l, ts);
        put_str(&l, "\",\"level\":\"info\",\"service\":\"");
        put_json(&l, service, strlen(service), 256, 0);
        put_str(&l, "\",\"stream\":\"output\",\"msg\":\"");
        put_json(&l, text, len, sizeof(buf), 2);
        put_str(&l, "\"}");
    } else {
        static const unsigned colors[] = {36, 32, 35, 34, 33, 96, 92, 95, 94, 93};
        if (g_color) {
            put_str(&l, "\033[");
            put_int(&l, colors[service_index % ELEMENTSOF(colors)]);
            put_str(&l, "m");
        }
        put_padded(&l, service, g_name_width);
        put_str(&l, g_color ? " |\033[0m " : " | ");
        put(&l, text, strnlen(text, len)); /* as %.*s: up to a NUL */
    }
    end(&l);
}

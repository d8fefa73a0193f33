/* task-view.c - see task-view.h. */
#include "task-view.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "timeutil.h"

int task_view_escape(char *buf, size_t len, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(buf), start = n;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                     *p == '-' || *p == '_' || *p == '.' || *p == '~';
        size_t need = plain ? 1 : 3;
        if (n + need >= len) {
            buf[start] = '\0';
            return -ENAMETOOLONG;
        }
        if (plain) {
            buf[n++] = (char)*p;
        } else {
            buf[n++] = '%';
            buf[n++] = hex[*p >> 4];
            buf[n++] = hex[*p & 15];
        }
    }
    buf[n] = '\0';
    return 0;
}

int task_view_append(char *buf, size_t len, const char *s) {
    size_t n = strlen(buf);
    int w = snprintf(buf + n, len - n, "%s", s);
    return w < 0 || (size_t)w >= len - n ? -ENAMETOOLONG : 0;
}

bool task_view_name_ok(const char *what, const char *s) {
    size_t l = strlen(s);
    bool ok = l > 0 && l <= TASK_VIEW_NAME_MAX;
    for (size_t i = 0; ok && i < l; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            ok = false;
    if (!ok)
        cli_error("invalid %s \"%.*s\" (1 to %d characters, no control characters)", what,
                  (int)(l > 60 ? 60 : l), s, TASK_VIEW_NAME_MAX);
    return ok;
}

const char *task_view_cell(json_t *v, char *buf, size_t len) {
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v))
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, len, "%.6g", json_real_value(v));
    else if (json_is_true(v))
        snprintf(buf, len, "yes");
    else if (json_is_false(v))
        snprintf(buf, len, "no");
    else if (json_is_object(v) || json_is_array(v)) {
        char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
        snprintf(buf, len, "%s", t ? t : "?");
        free(t);
    } else
        snprintf(buf, len, "-");
    return buf;
}

const char *task_view_time_cell(json_t *v, char *buf, size_t len) {
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        char tmp[64];
        format_rfc3339_ms(json_integer_value(v), tmp, sizeof(tmp));
        snprintf(buf, len, "%.19sZ", tmp);
        return buf;
    }
    if (json_is_string(v)) {
        /* "2026-12-01T18:56:00.123Z" -> "2026-12-01T18:56:00Z": the
         * milliseconds only widen the table; --json has them. */
        const char *s = json_string_value(v);
        if (strlen(s) >= 19 && s[10] == 'T')
            snprintf(buf, len, "%.19sZ", s);
        else
            snprintf(buf, len, "%s", s);
        return buf;
    }
    snprintf(buf, len, "-");
    return buf;
}

const char *task_view_breaker(json_t *q) {
    json_t *b = json_object_get(q, "breaker");
    if (!b)
        b = json_object_get(q, "circuit_breaker");
    if (json_is_object(b))
        b = json_object_get(b, "state");
    if (json_is_string(b))
        return json_string_value(b);
    if (json_is_integer(b)) {
        switch (json_integer_value(b)) {
        case 0: return "closed";
        case 1: return "half-open";
        case 2: return "open";
        }
    }
    return "-";
}

void task_view_print_json(json_t *v) {
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    printf("%s\n", text ? text : "null");
    free(text);
}

/* Whether the long option named by arg ("--name" or "--name=v") takes a
 * value; -1 when it is unknown (left for getopt to complain about). */
static int long_takes_arg(const char *arg, const struct option *extra) {
    static const char *const common_with[] = {"file", "url"};
    const char *name = arg + 2;
    size_t l = strcspn(name, "=");
    for (size_t i = 0; i < 2; i++)
        if (strlen(common_with[i]) == l && strncmp(common_with[i], name, l) == 0)
            return 1;
    if (l == 4 && strncmp(name, "help", 4) == 0)
        return 0;
    for (size_t i = 0; extra && extra[i].name; i++)
        if (strlen(extra[i].name) == l && strncmp(extra[i].name, name, l) == 0)
            return extra[i].has_arg == required_argument;
    return -1;
}

void task_view_permute(int argc, char **argv, const struct option *extra, const char *short_with_arg) {
    if (argc < 2)
        return;
    char **opts = calloc((size_t)argc, sizeof(char *));
    char **pos = calloc((size_t)argc, sizeof(char *));
    if (!opts || !pos)
        goto finish;
    int no = 0, np = 0;
    bool dashdash = false;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            dashdash = true;
            break;
        }
        if (a[0] != '-' || a[1] == '\0') {
            pos[np++] = a;
            continue;
        }
        opts[no++] = a;
        bool value_next = false;
        if (a[1] == '-') {
            value_next = !strchr(a, '=') && long_takes_arg(a, extra) == 1;
        } else if (a[2] == '\0') {
            /* "-x": a value follows when x takes one ("-xV" carries it). */
            value_next = a[1] == 'f' || (short_with_arg && strchr(short_with_arg, a[1]));
        }
        if (value_next && i + 1 < argc)
            opts[no++] = argv[++i];
    }
    /* argv[0], the options, then "--" if there was one (so that what
     * follows it may start with '-'), the positional arguments seen
     * before it, and what came after it, which is already in place:
     * the counts add up to the same argc. */
    int k = 1;
    for (int j = 0; j < no; j++)
        argv[k++] = opts[j];
    if (dashdash)
        argv[k++] = (char *)"--";
    for (int j = 0; j < np; j++)
        argv[k++] = pos[j];
finish:
    free(opts);
    free(pos);
}

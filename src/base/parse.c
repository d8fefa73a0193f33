/*
 * parse.c - value syntaxes of tend.yaml; see parse.h.  Strict: no
 * leading/trailing garbage, no negative values, overflow is an error.
 */
#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <strings.h>

/* Parses a non-negative decimal number with an optional fraction
 * ("5", "1.5", ".5"); returns the end of the number or NULL.  Only plain
 * decimals: strtod() alone would also take "1e3", "0x10" and "inf". */
static const char *parse_number(const char *s, double *ret) {
    size_t n = 0;
    while (isdigit((unsigned char)s[n]))
        n++;
    if (s[n] == '.') {
        size_t frac = 0;
        while (isdigit((unsigned char)s[n + 1 + frac]))
            frac++;
        if (frac == 0)
            return NULL;
        n += 1 + frac;
    }
    if (n == 0 || n > 64)
        return NULL;
    char buf[72];
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    char *end;
    double v = strtod(buf, &end);
    if (errno != 0 || *end || !isfinite(v) || v < 0)
        return NULL;
    *ret = v;
    return s + n;
}

int parse_duration_ms(const char *s, int64_t *ret_ms) {
    static const struct { const char *suffix; double ms; } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
        {"", 1000},
    };
    double total = 0;
    if (!s || !*s)
        return -EINVAL;
    /* Compound forms like "1m30s" are accepted, as in Go and systemd. */
    while (*s) {
        double v;
        const char *p = parse_number(s, &v);
        if (!p)
            return -EINVAL;
        size_t n = 0;
        while (isalpha((unsigned char)p[n]))
            n++;
        bool found = false;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            if (strlen(units[i].suffix) == n && strncmp(p, units[i].suffix, n) == 0) {
                if (n == 0 && total != 0)
                    return -EINVAL; /* "1m30" is ambiguous */
                total += v * units[i].ms;
                found = true;
                break;
            }
        }
        if (!found)
            return -EINVAL;
        s = p + n;
        if (n == 0 && *s)
            return -EINVAL;
    }
    if (total > (double)INT64_MAX / 2)
        return -EINVAL;
    *ret_ms = (int64_t)llround(total);
    return 0;
}

int parse_size(const char *s, uint64_t *ret_bytes) {
    double v;
    if (!s)
        return -EINVAL;
    const char *p = parse_number(s, &v);
    if (!p)
        return -EINVAL;
    double mult;
    switch (toupper((unsigned char)*p)) {
    case '\0': mult = 1; break;
    case 'B': mult = 1; break;
    case 'K': mult = 1024.0; break;
    case 'M': mult = 1024.0 * 1024; break;
    case 'G': mult = 1024.0 * 1024 * 1024; break;
    case 'T': mult = 1024.0 * 1024 * 1024 * 1024; break;
    default: return -EINVAL;
    }
    if (*p) {
        p++;
        /* Accept "K", "KB", "KiB", "k". */
        if (mult > 1 && (*p == 'i' || *p == 'I'))
            p++;
        if (mult > 1 && (*p == 'b' || *p == 'B'))
            p++;
        if (*p)
            return -EINVAL;
    }
    double bytes = v * mult;
    if (bytes > 9.0e18)
        return -EINVAL;
    *ret_bytes = (uint64_t)llround(bytes);
    return 0;
}

int parse_rate(const char *s, double *ret_per_sec) {
    double v;
    if (!s)
        return -EINVAL;
    const char *p = parse_number(s, &v);
    if (!p || *p != '/' || v <= 0)
        return -EINVAL;
    p++;
    double per;
    if (strcmp(p, "s") == 0 || strcmp(p, "sec") == 0)
        per = 1;
    else if (strcmp(p, "m") == 0 || strcmp(p, "min") == 0)
        per = 60;
    else if (strcmp(p, "h") == 0)
        per = 3600;
    else
        return -EINVAL;
    *ret_per_sec = v / per;
    return 0;
}

int parse_int(const char *s, long long min, long long max, long long *ret) {
    if (!s || !*s || isspace((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end || end == s)
        return -EINVAL;
    if (v < min || v > max)
        return -ERANGE;
    *ret = v;
    return 0;
}

int parse_double(const char *s, double *ret) {
    if (!s || !*s || isspace((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno != 0 || *end || end == s || !isfinite(v))
        return -EINVAL;
    *ret = v;
    return 0;
}

int parse_bool(const char *s, int *ret) {
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *ret = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *ret = 0;
            return 0;
        }
    }
    return -EINVAL;
}

static const struct { const char *name; int sig; } signals[] = {
    {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"ABRT", SIGABRT},
    {"ALRM", SIGALRM}, {"PIPE", SIGPIPE}, {"CONT", SIGCONT}, {"STOP", SIGSTOP},
    {"WINCH", SIGWINCH}, {"PWR", SIGPWR}, {"SEGV", SIGSEGV},
};

int parse_signal(const char *s, int *ret_sig) {
    if (!s)
        return -EINVAL;
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
        if (strcasecmp(s, signals[i].name) == 0) {
            *ret_sig = signals[i].sig;
            return 0;
        }
    }
    long long n;
    if (parse_int(s, 1, 64, &n) == 0) {
        *ret_sig = (int)n;
        return 0;
    }
    return -EINVAL;
}

const char *signal_name(int sig) {
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
        if (signals[i].sig == sig)
            return signals[i].name;
    return "?";
}

char *format_u64(uint64_t v, char out[FORMAT_U64_MAX]) {
    char *p = out + FORMAT_U64_MAX;
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    return p;
}

const char *format_duration(int64_t ms, char *buf, size_t len) {
    if (ms < 1000)
        snprintf(buf, len, "%lldms", (long long)ms);
    else if (ms < 60000)
        snprintf(buf, len, "%g s", ms / 1000.0);
    else if (ms < 3600000)
        snprintf(buf, len, "%gm", ms / 60000.0);
    else
        snprintf(buf, len, "%gh", ms / 3600000.0);
    /* "%g s" keeps one form; strip the space used to avoid -Wformat noise. */
    char *sp = strchr(buf, ' ');
    if (sp)
        memmove(sp, sp + 1, strlen(sp));
    return buf;
}

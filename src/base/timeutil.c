/* timeutil.c - see timeutil.h. */
#include "timeutil.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t now_mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t now_mono_ms(void) { return now_mono_us() / 1000; }

int64_t now_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *put2(char *p, int v) {
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

/* On every log line and event: digits by hand, not snprintf(3) (a third
 * of a line's cost). */
char *format_rfc3339_ms(int64_t wall_ms, char *buf, size_t len) {
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    int ms = (int)(wall_ms % 1000);
    if (!gmtime_r(&secs, &tm))
        memset(&tm, 0, sizeof(tm));
    int year = tm.tm_year + 1900;
    if (len < 25 || year < 0 || year > 9999 || ms < 0) {
        snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, ms);
        return buf;
    }
    char *p = put2(buf, year / 100);
    p = put2(p, year % 100);
    *p++ = '-';
    p = put2(p, tm.tm_mon + 1);
    *p++ = '-';
    p = put2(p, tm.tm_mday);
    *p++ = 'T';
    p = put2(p, tm.tm_hour);
    *p++ = ':';
    p = put2(p, tm.tm_min);
    *p++ = ':';
    p = put2(p, tm.tm_sec);
    *p++ = '.';
    *p++ = (char)('0' + ms / 100);
    p = put2(p, ms % 100);
    *p++ = 'Z';
    *p = '\0';
    return buf;
}

/*
 * strmap.h - a set of names, each with a number: open addressing over the
 * caller's strings (stored as pointers, not copied, so they must outlive
 * the map).  For the lookups by name that would otherwise compare a name
 * against every other one: services by name in the dependency graph, a
 * mapping's keys while the configuration is read.
 */
#ifndef TEND_BASE_STRMAP_H
#define TEND_BASE_STRMAP_H

#include <stddef.h>

typedef struct strmap_slot {
    const char *key;        /* NULL: free */
    size_t value;
} strmap_slot;

typedef struct strmap {
    strmap_slot *slots;
    size_t cap;             /* a power of two, or 0 */
    size_t n;
} strmap;

/* An empty map sized for `expected` names (it grows past them).  0 or
 * -ENOMEM. */
int strmap_init(strmap *m, size_t expected);
void strmap_done(strmap *m);
/* Adds key with value.  1 if added; 0 if key was there already, its value
 * in *existing (when not NULL) and unchanged; -ENOMEM. */
int strmap_put(strmap *m, const char *key, size_t value, size_t *existing);
/* The value of key, or -1 when it is not there. */
long strmap_get(const strmap *m, const char *key);

#endif

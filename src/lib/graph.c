/*
 * graph.c - see graph.h.  Depth-first search with three colours finds a
 * cycle and reports it as the path that closes it; waves are computed in
 * topological order as 1 + the deepest dependency.
 */
#include "graph.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macros.h"
#include "strmap.h"

long graph_find(const tend_service_spec *services, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(services[i].name, name) == 0)
            return (long)i;
    return -1;
}

graph *graph_free(graph *g) {
    if (!g)
        return NULL;
    for (size_t i = 0; i < g->n; i++) {
        free(g->deps ? g->deps[i] : NULL);
        free(g->dependents ? g->dependents[i] : NULL);
    }
    free(g->deps);
    free(g->dependents);
    free(g->n_deps);
    free(g->n_dependents);
    free(g->wave);
    free(g->order);
    free(g);
    return NULL;
}

enum { WHITE = 0, GREY, BLACK };

typedef struct dfs {
    const graph *g;
    const tend_service_spec *services;
    unsigned char *color;
    size_t *stack;      /* current DFS path */
    size_t depth;
    size_t n_order;
    size_t *order;
    char *error;
} dfs;

/* Formats the cycle that closes at `to`, which is on the stack. */
static char *format_cycle(const dfs *d, size_t to) {
    size_t start = 0;
    while (d->stack[start] != to)
        start++;
    size_t len = sizeof("dependency cycle: ");
    for (size_t i = start; i < d->depth; i++)
        len += strlen(d->services[d->stack[i]].name) + 4;
    len += strlen(d->services[to].name) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    size_t o = (size_t)snprintf(s, len, "dependency cycle: ");
    for (size_t i = start; i < d->depth; i++)
        o += (size_t)snprintf(s + o, len - o, "%s -> ", d->services[d->stack[i]].name);
    snprintf(s + o, len - o, "%s", d->services[to].name);
    return s;
}

/* Returns 0, or -EINVAL with d->error set when a cycle is found. */
static int visit(dfs *d, size_t v) {
    d->color[v] = GREY;
    d->stack[d->depth++] = v;
    for (size_t k = 0; k < d->g->n_deps[v]; k++) {
        size_t w = d->g->deps[v][k];
        if (d->color[w] == GREY) {
            d->error = format_cycle(d, w);
            return d->error ? -EINVAL : -ENOMEM;
        }
        if (d->color[w] == WHITE) {
            int r = visit(d, w);
            if (r < 0)
                return r;
        }
    }
    d->depth--;
    d->color[v] = BLACK;
    d->order[d->n_order++] = v;
    return 0;
}

int graph_build(const tend_service_spec *services, size_t n, graph **ret_graph, char **ret_error) {
    int r = -ENOMEM;
    _cleanup_free_ unsigned char *color = NULL;
    _cleanup_free_ size_t *stack = NULL;
    strmap names = {0};
    graph *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->n = n;
    g->wave = calloc(n + 1, sizeof(int));
    g->order = calloc(n + 1, sizeof(size_t));
    g->deps = calloc(n + 1, sizeof(size_t *));
    g->n_deps = calloc(n + 1, sizeof(size_t));
    g->dependents = calloc(n + 1, sizeof(size_t *));
    g->n_dependents = calloc(n + 1, sizeof(size_t));
    color = calloc(n + 1, 1);
    stack = calloc(n + 1, sizeof(size_t));
    if (!g->wave || !g->order || !g->deps || !g->n_deps || !g->dependents || !g->n_dependents ||
        !color || !stack)
        goto fail;

    /* Names are looked up once per edge: by a hash, not by a scan of all
     * of them (a system of 500 services spent most of its load here). */
    if (strmap_init(&names, n) < 0)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (strmap_put(&names, services[i].name, i, NULL) < 0)
            goto fail;
    for (size_t i = 0; i < n; i++) {
        const tend_service_spec *s = &services[i];
        g->deps[i] = calloc(s->n_deps + 1, sizeof(size_t));
        if (!g->deps[i])
            goto fail;
        for (size_t k = 0; k < s->n_deps; k++) {
            long j = strmap_get(&names, s->deps[k].name);
            if (j < 0) {
                if (ret_error && asprintf(ret_error, "service \"%s\": unknown dependency \"%s\"",
                                          s->name, s->deps[k].name) < 0)
                    *ret_error = NULL;
                r = -EINVAL;
                goto fail;
            }
            g->deps[i][g->n_deps[i]++] = (size_t)j;
            g->n_dependents[j]++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        g->dependents[i] = calloc(g->n_dependents[i] + 1, sizeof(size_t));
        if (!g->dependents[i])
            goto fail;
        g->n_dependents[i] = 0;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < g->n_deps[i]; k++) {
            size_t j = g->deps[i][k];
            g->dependents[j][g->n_dependents[j]++] = i;
        }

    dfs d = {.g = g, .services = services, .color = color, .stack = stack, .order = g->order};
    for (size_t i = 0; i < n; i++) {
        if (color[i] != WHITE)
            continue;
        r = visit(&d, i);
        if (r < 0) {
            if (ret_error)
                *ret_error = d.error;
            else
                free(d.error);
            goto fail;
        }
    }
    g->n_waves = 0;
    for (size_t k = 0; k < n; k++) {
        size_t v = g->order[k];
        int w = 1;
        for (size_t j = 0; j < g->n_deps[v]; j++)
            w = MAX(w, g->wave[g->deps[v][j]] + 1);
        g->wave[v] = w;
        g->n_waves = MAX(g->n_waves, w);
    }
    strmap_done(&names);
    *ret_graph = g;
    return 0;
fail:
    strmap_done(&names);
    graph_free(g);
    return r;
}

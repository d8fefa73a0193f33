/*
 * graph.h - the dependency graph of a system's services: edges from
 * depends_on, waves (depth; services without dependencies are wave 1),
 * a topological order, and cycle / unknown-dependency detection.
 *
 * The graph only indexes into the caller's service array; it copies no
 * names and must not outlive that array.
 */
#ifndef TEND_LIB_GRAPH_H
#define TEND_LIB_GRAPH_H

#include <stddef.h>
#include <tend/spec.h>

typedef struct graph {
    size_t n;
    int n_waves;
    int *wave;              /* [n] 1-based */
    size_t *order;          /* [n] topological: dependencies first */
    size_t **deps;          /* [n][n_deps[i]] indices of i's dependencies */
    size_t *n_deps;
    size_t **dependents;    /* [n][n_dependents[i]] indices that depend on i */
    size_t *n_dependents;
} graph;

/*
 * Builds the graph of services[0..n).  Returns 0 and a new graph in
 * *ret_graph, or -EINVAL with a message in *ret_error (caller frees) such as
 * `dependency cycle: a -> b -> c -> a` or `service "a": unknown dependency
 * "x"`, or -ENOMEM.
 */
int graph_build(const tend_service_spec *services, size_t n, graph **ret_graph, char **ret_error);
graph *graph_free(graph *g);
/* Index of the service called name, or -1. */
long graph_find(const tend_service_spec *services, size_t n, const char *name);

#endif

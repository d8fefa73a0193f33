/* test-graph.c - waves, topological order, cycles, unknown dependencies. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "graph.h"

#define MAXS 16

typedef struct fixture {
    tend_service_spec s[MAXS];
    tend_dep_spec d[MAXS][MAXS];
    size_t n;
} fixture;

static void add(fixture *f, const char *name, const char *deps) {
    tend_service_spec *s = &f->s[f->n];
    memset(s, 0, sizeof(*s));
    s->name = (char *)name;
    s->deps = f->d[f->n];
    if (deps) {
        char *copy = strdup(deps), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            s->deps[s->n_deps].name = strdup(t);
            s->deps[s->n_deps].condition = TEND_DEP_READY;
            s->n_deps++;
        }
        free(copy);
    }
    f->n++;
}

static void release(fixture *f) {
    for (size_t i = 0; i < f->n; i++)
        for (size_t k = 0; k < f->s[i].n_deps; k++)
            free(f->s[i].deps[k].name);
}

static long idx(fixture *f, const char *n) { return graph_find(f->s, f->n, n); }

static void test_diamond_and_chain(void **state) {
    fixture f = {0};
    add(&f, "d", "b,c");
    add(&f, "a", NULL);
    add(&f, "b", "a");
    add(&f, "c", "a");
    add(&f, "e", "d");
    add(&f, "x", NULL);
    graph *g = NULL;
    char *err = NULL;
    assert_int_equal(graph_build(f.s, f.n, &g, &err), 0);
    assert_null(err);
    assert_int_equal(g->n_waves, 4);
    assert_int_equal(g->wave[idx(&f, "a")], 1);
    assert_int_equal(g->wave[idx(&f, "x")], 1);
    assert_int_equal(g->wave[idx(&f, "b")], 2);
    assert_int_equal(g->wave[idx(&f, "c")], 2);
    assert_int_equal(g->wave[idx(&f, "d")], 3);
    assert_int_equal(g->wave[idx(&f, "e")], 4);
    /* Topological order: every dependency before its dependents. */
    long pos[MAXS];
    for (size_t k = 0; k < f.n; k++)
        pos[g->order[k]] = (long)k;
    for (size_t i = 0; i < f.n; i++)
        for (size_t k = 0; k < g->n_deps[i]; k++)
            assert_true(pos[g->deps[i][k]] < pos[i]);
    assert_int_equal(g->n_dependents[idx(&f, "a")], 2);
    graph_free(g);
    release(&f);
}

static void test_cycle_named(void **state) {
    fixture f = {0};
    add(&f, "a", "c");
    add(&f, "b", "a");
    add(&f, "c", "b");
    add(&f, "z", NULL);
    graph *g = NULL;
    char *err = NULL;
    assert_int_equal(graph_build(f.s, f.n, &g, &err), -EINVAL);
    assert_non_null(err);
    assert_string_equal(err, "dependency cycle: a -> c -> b -> a");
    free(err);
    release(&f);
}

static void test_self_cycle(void **state) {
    fixture f = {0};
    add(&f, "a", "a");
    graph *g = NULL;
    char *err = NULL;
    assert_int_equal(graph_build(f.s, f.n, &g, &err), -EINVAL);
    assert_string_equal(err, "dependency cycle: a -> a");
    free(err);
    release(&f);
}

static void test_unknown_dependency(void **state) {
    fixture f = {0};
    add(&f, "a", "nope");
    graph *g = NULL;
    char *err = NULL;
    assert_int_equal(graph_build(f.s, f.n, &g, &err), -EINVAL);
    assert_string_equal(err, "service \"a\": unknown dependency \"nope\"");
    free(err);
    release(&f);
}

static void test_empty(void **state) {
    graph *g = NULL;
    assert_int_equal(graph_build(NULL, 0, &g, NULL), 0);
    assert_int_equal(g->n_waves, 0);
    graph_free(g);
    assert_null(graph_free(NULL));
}

static void test_wide(void **state) {
    /* 5 waves x 3: wave k depends on all of wave k-1. */
    static char names[15][8];
    fixture f = {0};
    for (int w = 0; w < 5; w++)
        for (int i = 0; i < 3; i++) {
            snprintf(names[w * 3 + i], 8, "s%d_%d", w, i);
            char deps[64] = "";
            if (w > 0)
                snprintf(deps, sizeof(deps), "s%d_0,s%d_1,s%d_2", w - 1, w - 1, w - 1);
            add(&f, names[w * 3 + i], w ? deps : NULL);
        }
    graph *g = NULL;
    assert_int_equal(graph_build(f.s, f.n, &g, NULL), 0);
    assert_int_equal(g->n_waves, 5);
    for (size_t i = 0; i < f.n; i++)
        assert_int_equal(g->wave[i], (int)(i / 3) + 1);
    graph_free(g);
    release(&f);
}

/* 2000 services in a chain, declared last first: names are found by the
 * map, the waves are 1..2000 and the order puts each after its dependency. */
static void test_long_chain(void **state) {
    enum { N = 2000 };
    static char names[N][16];
    static tend_service_spec s[N];
    static tend_dep_spec d[N];
    for (size_t i = 0; i < N; i++) {
        size_t k = N - 1 - i; /* service k is declared at position i */
        snprintf(names[k], sizeof(names[k]), "svc-%zu", k);
        memset(&s[i], 0, sizeof(s[i]));
        s[i].name = names[k];
        if (k > 0) {
            d[i] = (tend_dep_spec){.name = names[k - 1], .condition = TEND_DEP_READY};
            s[i].deps = &d[i];
            s[i].n_deps = 1;
        }
    }
    graph *g = NULL;
    assert_int_equal(graph_build(s, N, &g, NULL), 0);
    assert_int_equal(g->n_waves, N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(g->wave[i], N - (int)i);
    for (size_t k = 0; k < N; k++)
        assert_int_equal(g->order[k], N - 1 - k);
    graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diamond_and_chain), cmocka_unit_test(test_cycle_named),
        cmocka_unit_test(test_self_cycle), cmocka_unit_test(test_unknown_dependency),
        cmocka_unit_test(test_empty), cmocka_unit_test(test_wide), cmocka_unit_test(test_long_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test-prio-queue.c - the ready window: strict priority, FIFO, O(1) removal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "prio-queue.h"

/* What the engine does: embed the node in its task. */
typedef struct task {
    int id;
    prio_node node;
} task;

static int id_of(prio_node *n) { return n ? PRIO_NODE_ENTRY(n, task, node)->id : -1; }

static void init_tasks(task *t, int n) {
    for (int i = 0; i < n; i++) {
        t[i].id = i;
        prio_node_init(&t[i].node);
    }
}

/* Checks the pop order by iterating (without popping). */
static void assert_order(const prio_queue *q, const int *ids, size_t n) {
    prio_node *it;
    size_t i = 0;
    PRIO_QUEUE_FOREACH(it, q) {
        assert_true(i < n);
        assert_int_equal(id_of(it), ids[i]);
        i++;
    }
    assert_int_equal(i, n);
    assert_int_equal(prio_queue_total(q), n);
}

static void test_empty(void **state) {
    (void)state;
    prio_queue q;
    prio_queue_init(&q);
    assert_null(prio_queue_pop(&q));
    assert_null(prio_queue_peek(&q));
    assert_null(prio_queue_first(&q));
    assert_int_equal(prio_queue_total(&q), 0);
    for (unsigned p = 0; p <= PRIO_LEVELS; p++)
        assert_int_equal(prio_queue_count(&q, p), 0);
}

static void test_strict_priority_fifo_within(void **state) {
    (void)state;
    prio_queue q;
    task t[12];
    prio_queue_init(&q);
    init_tasks(t, 12);
    /* id -> priority, pushed in id order. */
    static const unsigned prio[12] = {2, 4, 0, 2, 1, 4, 0, 3, 2, 1, 0, 4};
    for (int i = 0; i < 12; i++)
        assert_int_equal(prio_queue_push(&q, &t[i].node, prio[i]), 0);
    assert_int_equal(prio_queue_count(&q, 0), 3);
    assert_int_equal(prio_queue_count(&q, 1), 2);
    assert_int_equal(prio_queue_count(&q, 2), 3);
    assert_int_equal(prio_queue_count(&q, 3), 1);
    assert_int_equal(prio_queue_count(&q, 4), 3);
    assert_int_equal(prio_queue_count(&q, 5), 0);
    static const int expect[12] = {2, 6, 10, 4, 9, 0, 3, 8, 7, 1, 5, 11};
    assert_order(&q, expect, 12);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(id_of(prio_queue_peek(&q)), expect[i]);
        prio_node *n = prio_queue_pop(&q);
        assert_int_equal(id_of(n), expect[i]);
        assert_false(prio_node_queued(n));
        assert_int_equal(prio_queue_total(&q), 11 - i);
    }
    assert_null(prio_queue_pop(&q));
    /* A critical task pushed later still goes first. */
    assert_int_equal(prio_queue_push(&q, &t[0].node, 4), 0);
    assert_int_equal(prio_queue_push(&q, &t[1].node, 0), 0);
    assert_int_equal(id_of(prio_queue_pop(&q)), 1);
    assert_int_equal(id_of(prio_queue_pop(&q)), 0);
}

static void test_remove(void **state) {
    (void)state;
    prio_queue q;
    task t[6];
    prio_queue_init(&q);
    init_tasks(t, 6);
    for (int i = 0; i < 5; i++)
        assert_int_equal(prio_queue_push(&q, &t[i].node, 2), 0);
    assert_int_equal(prio_queue_push(&q, &t[5].node, 3), 0);
    /* Middle, head, tail. */
    assert_int_equal(prio_queue_remove(&q, &t[2].node), 0);
    assert_order(&q, (const int[]){0, 1, 3, 4, 5}, 5);
    assert_int_equal(prio_queue_remove(&q, &t[0].node), 0);
    assert_order(&q, (const int[]){1, 3, 4, 5}, 4);
    assert_int_equal(prio_queue_remove(&q, &t[4].node), 0);
    assert_order(&q, (const int[]){1, 3, 5}, 3);
    assert_int_equal(prio_queue_count(&q, 2), 2);
    /* Not queued any more. */
    assert_int_equal(prio_queue_remove(&q, &t[4].node), -ENOENT);
    /* The only node of a priority: the priority empties. */
    assert_int_equal(prio_queue_remove(&q, &t[5].node), 0);
    assert_int_equal(prio_queue_count(&q, 3), 0);
    assert_order(&q, (const int[]){1, 3}, 2);
    /* Down to empty, then usable again. */
    assert_int_equal(prio_queue_remove(&q, &t[3].node), 0);
    assert_int_equal(prio_queue_remove(&q, &t[1].node), 0);
    assert_null(prio_queue_peek(&q));
    assert_int_equal(prio_queue_total(&q), 0);
    assert_int_equal(prio_queue_push(&q, &t[4].node, 1), 0);
    assert_int_equal(id_of(prio_queue_pop(&q)), 4);
}

static void test_misuse(void **state) {
    (void)state;
    prio_queue q, other;
    task t[2];
    prio_queue_init(&q);
    prio_queue_init(&other);
    init_tasks(t, 2);
    assert_int_equal(prio_queue_push(&q, &t[0].node, PRIO_LEVELS), -EINVAL);
    assert_false(prio_node_queued(&t[0].node));
    assert_int_equal(prio_queue_push(&q, &t[0].node, 1), 0);
    assert_true(prio_node_queued(&t[0].node));
    assert_int_equal(prio_queue_push(&q, &t[0].node, 1), -EBUSY);
    assert_int_equal(prio_queue_push_front(&q, &t[0].node, 1), -EBUSY);
    assert_int_equal(prio_queue_push_ordered(&q, &t[0].node, 2, 5), -EBUSY);
    assert_int_equal(prio_queue_push(&other, &t[0].node, 1), -EBUSY);
    assert_int_equal(prio_queue_remove(&other, &t[0].node), -ENOENT);
    assert_int_equal(prio_queue_remove(&q, &t[1].node), -ENOENT);
    assert_int_equal(prio_queue_total(&q), 1);
    assert_int_equal(prio_queue_total(&other), 0);
    assert_int_equal(prio_queue_count(&q, 1), 1);
}

static void test_push_front(void **state) {
    (void)state;
    prio_queue q;
    task t[4];
    prio_queue_init(&q);
    init_tasks(t, 4);
    assert_int_equal(prio_queue_push(&q, &t[0].node, 2), 0);
    assert_int_equal(prio_queue_push(&q, &t[1].node, 2), 0);
    assert_int_equal(prio_queue_push(&q, &t[2].node, 1), 0);
    /* Pop, fail to dispatch, put back: it is first again. */
    prio_node *n = prio_queue_pop(&q);
    assert_int_equal(id_of(n), 2);
    assert_int_equal(prio_queue_push_front(&q, n, 1), 0);
    assert_order(&q, (const int[]){2, 0, 1}, 3);
    assert_int_equal(prio_queue_push_front(&q, &t[3].node, 2), 0);
    assert_order(&q, (const int[]){2, 3, 0, 1}, 4);
}

static void test_push_ordered(void **state) {
    (void)state;
    prio_queue q;
    task t[7];
    prio_queue_init(&q);
    init_tasks(t, 7);
    /* Keys (e.g. run_at or a sequence number) arriving out of order. */
    assert_int_equal(prio_queue_push_ordered(&q, &t[0].node, 2, 100), 0);
    assert_int_equal(prio_queue_push_ordered(&q, &t[1].node, 2, 300), 0);
    assert_int_equal(prio_queue_push_ordered(&q, &t[2].node, 2, 200), 0);
    assert_int_equal(prio_queue_push_ordered(&q, &t[3].node, 2, 50), 0);
    assert_int_equal(prio_queue_push_ordered(&q, &t[4].node, 2, 200), 0); /* equal: after */
    assert_int_equal(prio_queue_push_ordered(&q, &t[5].node, 0, 999), 0);
    assert_int_equal(prio_queue_push_ordered(&q, &t[6].node, 2, 400), 0);
    assert_int_equal(t[3].node.key, 50);
    assert_order(&q, (const int[]){5, 3, 0, 2, 4, 1, 6}, 7);
}

static void test_iteration(void **state) {
    (void)state;
    prio_queue q;
    task t[10];
    prio_queue_init(&q);
    init_tasks(t, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(prio_queue_push(&q, &t[i].node, (unsigned)(i % 3) * 2), 0);
    /* Priorities 0, 2, 4 populated; 1 and 3 empty are skipped. */
    assert_order(&q, (const int[]){0, 3, 6, 9, 1, 4, 7, 2, 5, 8}, 10);
    /* Cancel every priority-2 task while walking. */
    prio_node *n, *tmp;
    PRIO_QUEUE_FOREACH_SAFE(n, tmp, &q) {
        if (n->priority == 2)
            assert_int_equal(prio_queue_remove(&q, n), 0);
    }
    assert_order(&q, (const int[]){0, 3, 6, 9, 2, 5, 8}, 7);
    /* Drain while walking. */
    PRIO_QUEUE_FOREACH_SAFE(n, tmp, &q)
        assert_int_equal(prio_queue_remove(&q, n), 0);
    assert_int_equal(prio_queue_total(&q), 0);
    assert_null(prio_queue_first(&q));
}

/*
 * 10,000 random operations against a reference model: one array per
 * priority, in pop order.
 */
enum { POOL = 300, OPS = 10000 };

typedef struct model {
    int ids[PRIO_LEVELS][POOL];
    size_t n[PRIO_LEVELS];
} model;

static void model_insert(model *m, unsigned p, size_t pos, int id) {
    memmove(&m->ids[p][pos + 1], &m->ids[p][pos], (m->n[p] - pos) * sizeof(int));
    m->ids[p][pos] = id;
    m->n[p]++;
}

static void model_erase(model *m, unsigned p, size_t pos) {
    memmove(&m->ids[p][pos], &m->ids[p][pos + 1], (m->n[p] - pos - 1) * sizeof(int));
    m->n[p]--;
}

static void check_against_model(const prio_queue *q, const model *m) {
    int expect[POOL];
    size_t total = 0;
    for (unsigned p = 0; p < PRIO_LEVELS; p++) {
        assert_int_equal(prio_queue_count(q, p), m->n[p]);
        memcpy(expect + total, m->ids[p], m->n[p] * sizeof(int));
        total += m->n[p];
    }
    assert_order(q, expect, total);
    assert_int_equal(id_of(prio_queue_peek(q)), total ? expect[0] : -1);
}

static void test_randomized(void **state) {
    (void)state;
    static task t[POOL];
    static model m;
    static uint64_t keys[POOL];
    prio_queue q;
    prio_queue_init(&q);
    init_tasks(t, POOL);
    memset(&m, 0, sizeof(m));
    memset(keys, 0, sizeof(keys));
    srand(1234);
    size_t pops = 0, removes = 0, pushes = 0;
    for (int op = 0; op < OPS; op++) {
        int what = rand() % 10;
        task *x = &t[rand() % POOL];
        unsigned p = (unsigned)(rand() % PRIO_LEVELS);
        if (what < 5) {
            /* Push, at the tail, the head, or by key. */
            int how = rand() % 3;
            int r;
            if (how == 0)
                r = prio_queue_push(&q, &x->node, p);
            else if (how == 1)
                r = prio_queue_push_front(&q, &x->node, p);
            else
                r = prio_queue_push_ordered(&q, &x->node, p, (uint64_t)(rand() % 1000));
            if (prio_node_queued(&x->node) && r == -EBUSY)
                continue; /* was queued already: nothing changed */
            assert_int_equal(r, 0);
            pushes++;
            size_t pos = how == 0 ? m.n[p] : 0;
            if (how == 2) {
                keys[x->id] = x->node.key;
                pos = m.n[p];
                while (pos > 0 && keys[m.ids[p][pos - 1]] > keys[x->id])
                    pos--;
            }
            model_insert(&m, p, pos, x->id);
        } else if (what < 8) {
            prio_node *n = prio_queue_pop(&q);
            unsigned mp = 0;
            while (mp < PRIO_LEVELS && m.n[mp] == 0)
                mp++;
            if (mp == PRIO_LEVELS) {
                assert_null(n);
                continue;
            }
            assert_int_equal(id_of(n), m.ids[mp][0]);
            model_erase(&m, mp, 0);
            pops++;
        } else {
            int r = prio_queue_remove(&q, &x->node);
            bool found = false;
            for (unsigned mp = 0; mp < PRIO_LEVELS && !found; mp++)
                for (size_t i = 0; i < m.n[mp]; i++)
                    if (m.ids[mp][i] == x->id) {
                        model_erase(&m, mp, i);
                        found = true;
                        break;
                    }
            assert_int_equal(r, found ? 0 : -ENOENT);
            removes += found;
        }
        /* The whole order every few ops, the counts every op. */
        if (op % 7 == 0)
            check_against_model(&q, &m);
        size_t total = 0;
        for (unsigned mp = 0; mp < PRIO_LEVELS; mp++) {
            assert_int_equal(prio_queue_count(&q, mp), m.n[mp]);
            total += m.n[mp];
        }
        assert_int_equal(prio_queue_total(&q), total);
    }
    check_against_model(&q, &m);
    /* Every kind of operation happened a fair number of times. */
    assert_true(pushes > 2000 && pops > 1500 && removes > 300);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_strict_priority_fifo_within),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_push_front),
        cmocka_unit_test(test_push_ordered),
        cmocka_unit_test(test_iteration),
        cmocka_unit_test(test_randomized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

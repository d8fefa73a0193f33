/* test-batch.c - batch assembly: due by size or max_wait, oldest first, bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"

static void test_init(void **state) {
    (void)state;
    batch b;
    assert_int_equal(batch_init(&b, 0, 1000, 10), -EINVAL);
    assert_int_equal(batch_init(&b, 10, -1, 10), -EINVAL);
    assert_int_equal(batch_init(&b, 10, 1000, 9), -EINVAL);
    assert_int_equal(batch_init(&b, 10, 1000, BATCH_CAPACITY_MAX + 1), -EINVAL);
    batch_free(&b); /* harmless after a failed init */
    batch_free(NULL);
    assert_int_equal(batch_init(&b, 10, 30000, 10), 0);
    assert_int_equal(batch_count(&b), 0);
    assert_false(batch_due(&b, 0));
    assert_int_equal(batch_due_in_ms(&b, 0), -1);
    assert_int_equal(batch_oldest_ms(&b), INT64_MAX);
    batch_id out[4];
    assert_int_equal(batch_take(&b, out, 4), 0);
    batch_free(&b);
    batch_free(&b);
}

static void test_due_by_size(void **state) {
    (void)state;
    batch b;
    batch_id out[10];
    assert_int_equal(batch_init(&b, 3, 30000, 100), 0);
    assert_int_equal(batch_add(&b, "a", 0), 0);
    assert_int_equal(batch_due_in_ms(&b, 0), 30000);
    assert_int_equal(batch_add(&b, "b", 10), 0);
    assert_false(batch_due(&b, 20));
    assert_int_equal(batch_add(&b, "c", 20), 0);
    assert_true(batch_due(&b, 20));
    assert_int_equal(batch_due_in_ms(&b, 20), 0);
    assert_int_equal(batch_take(&b, out, 10), 3);
    assert_string_equal(out[0], "a");
    assert_string_equal(out[1], "b");
    assert_string_equal(out[2], "c");
    assert_int_equal(batch_count(&b), 0);
    assert_int_equal(batch_due_in_ms(&b, 20), -1);
    batch_free(&b);
}

static void test_due_by_max_wait(void **state) {
    (void)state;
    batch b;
    batch_id out[10];
    assert_int_equal(batch_init(&b, 20, 30000, 100), 0);
    assert_int_equal(batch_add(&b, "a", 100), 0);
    assert_int_equal(batch_add(&b, "b", 5000), 0);
    assert_int_equal(batch_oldest_ms(&b), 100);
    assert_false(batch_due(&b, 30099));
    assert_int_equal(batch_due_in_ms(&b, 100), 30000);
    assert_int_equal(batch_due_in_ms(&b, 30099), 1);
    assert_true(batch_due(&b, 30100));
    assert_int_equal(batch_due_in_ms(&b, 30100), 0);
    /* A now before the oldest's time: it has waited 0 ms. */
    assert_int_equal(batch_due_in_ms(&b, 0), 30000);
    /* A partial batch: whatever waits. */
    assert_int_equal(batch_take(&b, out, 10), 2);
    assert_string_equal(out[0], "a");
    assert_string_equal(out[1], "b");
    /* max_wait 0: due as soon as anything waits. */
    batch_free(&b);
    assert_int_equal(batch_init(&b, 20, 0, 100), 0);
    assert_false(batch_due(&b, 0));
    assert_int_equal(batch_add(&b, "x", 5), 0);
    assert_true(batch_due(&b, 5));
    batch_free(&b);
}

static void test_take_limits(void **state) {
    (void)state;
    batch b;
    batch_id out[10];
    char id[16];
    assert_int_equal(batch_init(&b, 3, 30000, 100), 0);
    for (int i = 0; i < 7; i++) {
        snprintf(id, sizeof(id), "t%d", i);
        assert_int_equal(batch_add(&b, id, i), 0);
    }
    /* At most size... */
    assert_int_equal(batch_take(&b, out, 10), 3);
    assert_string_equal(out[0], "t0");
    assert_string_equal(out[2], "t2");
    /* ...and at most max. */
    assert_int_equal(batch_take(&b, out, 2), 2);
    assert_string_equal(out[0], "t3");
    assert_string_equal(out[1], "t4");
    assert_int_equal(batch_take(&b, out, 0), 0);
    assert_int_equal(batch_count(&b), 2);
    assert_int_equal(batch_oldest_ms(&b), 5);
    /* The remaining oldest sets the deadline. */
    assert_int_equal(batch_due_in_ms(&b, 10), 30000 - 5);
    batch_free(&b);
}

static void test_oldest_first(void **state) {
    (void)state;
    batch b;
    batch_id out[10];
    assert_int_equal(batch_init(&b, 10, 30000, 100), 0);
    /* A retried task ready since earlier goes before later ones; equal
     * times keep the order of adding. */
    assert_int_equal(batch_add(&b, "x", 50), 0);
    assert_int_equal(batch_add(&b, "y", 10), 0);
    assert_int_equal(batch_add(&b, "z", 30), 0);
    assert_int_equal(batch_add(&b, "w", 30), 0);
    assert_int_equal(batch_add(&b, "v", 10), 0);
    assert_int_equal(batch_oldest_ms(&b), 10);
    assert_int_equal(batch_due_in_ms(&b, 50), 30000 - 40);
    assert_int_equal(batch_take(&b, out, 10), 5);
    const char *expect[] = {"y", "v", "z", "w", "x"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(out[i], expect[i]);
    batch_free(&b);
}

static void test_capacity(void **state) {
    (void)state;
    batch b;
    batch_id out[10];
    assert_int_equal(batch_init(&b, 2, 30000, 4), 0);
    assert_int_equal(batch_add(&b, "a", 1), 0);
    assert_int_equal(batch_add(&b, "b", 2), 0);
    assert_int_equal(batch_add(&b, "c", 3), 0);
    assert_int_equal(batch_add(&b, "d", 4), 0);
    assert_int_equal(batch_add(&b, "e", 5), -ENOSPC);
    assert_int_equal(batch_count(&b), 4);
    /* Taking makes room (the window slides); order is kept. */
    assert_int_equal(batch_take(&b, out, 10), 2);
    assert_int_equal(batch_add(&b, "e", 5), 0);
    assert_int_equal(batch_add(&b, "f", 0), 0); /* older than all: goes first */
    assert_int_equal(batch_add(&b, "g", 7), -ENOSPC);
    assert_int_equal(batch_take(&b, out, 10), 2);
    assert_string_equal(out[0], "f");
    assert_string_equal(out[1], "c");
    assert_int_equal(batch_take(&b, out, 10), 2);
    assert_string_equal(out[0], "d");
    assert_string_equal(out[1], "e");
    batch_free(&b);
}

static void test_ids(void **state) {
    (void)state;
    batch b;
    batch_id out[2];
    char longest[BATCH_ID_SIZE], too_long[BATCH_ID_SIZE + 1];
    memset(longest, 'L', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    memset(too_long, 'T', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';
    assert_int_equal(batch_init(&b, 2, 30000, 4), 0);
    assert_int_equal(batch_add(&b, NULL, 0), -EINVAL);
    assert_int_equal(batch_add(&b, "", 0), -EINVAL);
    assert_int_equal(batch_add(&b, too_long, 0), -EINVAL);
    assert_int_equal(batch_count(&b), 0);
    /* A 26-char task id and the longest accepted one round-trip. */
    assert_int_equal(batch_add(&b, "01JD8X3Q5ZK9V7W2M4N6P8R0ST", 0), 0);
    assert_int_equal(batch_add(&b, longest, 1), 0);
    assert_int_equal(batch_take(&b, out, 2), 2);
    assert_string_equal(out[0], "01JD8X3Q5ZK9V7W2M4N6P8R0ST");
    assert_string_equal(out[1], longest);
    batch_free(&b);
}

static void test_remove(void **state) {
    (void)state;
    batch b;
    batch_id out[10];
    assert_int_equal(batch_init(&b, 10, 30000, 10), 0);
    const char *ids[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(batch_add(&b, ids[i], i * 10), 0);
    assert_int_equal(batch_remove(&b, "c"), 0);   /* middle */
    assert_int_equal(batch_remove(&b, "a"), 0);   /* oldest: the deadline moves */
    assert_int_equal(batch_oldest_ms(&b), 10);
    assert_int_equal(batch_remove(&b, "e"), 0);   /* newest */
    assert_int_equal(batch_remove(&b, "e"), -ENOENT);
    assert_int_equal(batch_remove(&b, "zz"), -ENOENT);
    assert_int_equal(batch_remove(&b, NULL), -ENOENT);
    assert_int_equal(batch_count(&b), 2);
    assert_int_equal(batch_take(&b, out, 10), 2);
    assert_string_equal(out[0], "b");
    assert_string_equal(out[1], "d");
    assert_int_equal(batch_add(&b, "z", 99), 0);
    assert_int_equal(batch_remove(&b, "z"), 0);
    assert_int_equal(batch_due_in_ms(&b, 100), -1);
    batch_free(&b);
}

/* Randomized against a plain array model: add, remove, take, due. */
typedef struct model_entry {
    char id[16];
    int64_t t;
} model_entry;

static void test_randomized(void **state) {
    (void)state;
    enum { CAP = 64, SIZE = 5, WAIT = 300 };
    batch b;
    model_entry m[CAP];
    size_t mn = 0;
    unsigned next_id = 0;
    int64_t now = 0;
    batch_id out[SIZE + 3];
    srand(42);
    assert_int_equal(batch_init(&b, SIZE, WAIT, CAP), 0);
    for (int op = 0; op < 20000; op++) {
        now += rand() % 20;
        int what = rand() % 10;
        if (what < 5) {
            char id[16];
            snprintf(id, sizeof(id), "id%u", next_id++);
            int64_t t = now - rand() % 200; /* some arrive out of order */
            int r = batch_add(&b, id, t);
            if (mn == CAP) {
                assert_int_equal(r, -ENOSPC);
            } else {
                assert_int_equal(r, 0);
                size_t pos = mn;
                while (pos > 0 && m[pos - 1].t > t)
                    pos--;
                memmove(m + pos + 1, m + pos, (mn - pos) * sizeof(m[0]));
                snprintf(m[pos].id, sizeof(m[pos].id), "%s", id);
                m[pos].t = t;
                mn++;
            }
        } else if (what < 7 && mn > 0) {
            size_t i = (size_t)rand() % mn;
            assert_int_equal(batch_remove(&b, m[i].id), 0);
            memmove(m + i, m + i + 1, (mn - i - 1) * sizeof(m[0]));
            mn--;
        } else if (what < 9) {
            bool due = mn >= SIZE || (mn > 0 && now - m[0].t >= WAIT);
            assert_int_equal(batch_due(&b, now), due);
            int64_t in = batch_due_in_ms(&b, now);
            if (mn == 0)
                assert_int_equal(in, -1);
            else if (due)
                assert_int_equal(in, 0);
            else
                assert_int_equal(in, WAIT - (now - m[0].t));
        } else {
            size_t max = (size_t)rand() % (SIZE + 3);
            size_t n = batch_take(&b, out, max);
            size_t expect = mn < SIZE ? mn : SIZE;
            if (expect > max)
                expect = max;
            assert_int_equal(n, expect);
            for (size_t i = 0; i < n; i++)
                assert_string_equal(out[i], m[i].id);
            memmove(m, m + n, (mn - n) * sizeof(m[0]));
            mn -= n;
        }
        assert_int_equal(batch_count(&b), mn);
        assert_int_equal(batch_oldest_ms(&b), mn ? m[0].t : INT64_MAX);
    }
    batch_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),         cmocka_unit_test(test_due_by_size),
        cmocka_unit_test(test_due_by_max_wait), cmocka_unit_test(test_take_limits),
        cmocka_unit_test(test_oldest_first), cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_ids),          cmocka_unit_test(test_remove),
        cmocka_unit_test(test_randomized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

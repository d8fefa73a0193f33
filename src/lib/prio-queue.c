/* prio-queue.c - see prio-queue.h. */
#include "prio-queue.h"

#include <errno.h>
#include <string.h>

void prio_queue_init(prio_queue *q) { memset(q, 0, sizeof(*q)); }

void prio_node_init(prio_node *n) { memset(n, 0, sizeof(*n)); }

static int check_push(const prio_node *n, unsigned priority) {
    if (priority >= PRIO_LEVELS)
        return -EINVAL;
    if (n->queue)
        return -EBUSY;
    return 0;
}

/* Links n into priority p after `after` (NULL: at the head). */
static void link_after(prio_queue *q, prio_node *n, unsigned p, prio_node *after) {
    n->prev = after;
    n->next = after ? after->next : q->head[p];
    if (n->next)
        n->next->prev = n;
    else
        q->tail[p] = n;
    if (after)
        after->next = n;
    else
        q->head[p] = n;
    n->queue = q;
    n->priority = p;
    q->count[p]++;
    q->total++;
    q->nonempty |= 1u << p;
}

int prio_queue_push(prio_queue *q, prio_node *n, unsigned priority) {
    int r = check_push(n, priority);
    if (r < 0)
        return r;
    link_after(q, n, priority, q->tail[priority]);
    return 0;
}

int prio_queue_push_front(prio_queue *q, prio_node *n, unsigned priority) {
    int r = check_push(n, priority);
    if (r < 0)
        return r;
    link_after(q, n, priority, NULL);
    return 0;
}

int prio_queue_push_ordered(prio_queue *q, prio_node *n, unsigned priority, uint64_t key) {
    int r = check_push(n, priority);
    if (r < 0)
        return r;
    prio_node *after = q->tail[priority];
    while (after && after->key > key)
        after = after->prev;
    n->key = key;
    link_after(q, n, priority, after);
    return 0;
}

static void unlink_node(prio_queue *q, prio_node *n) {
    unsigned p = n->priority;
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head[p] = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail[p] = n->prev;
    n->prev = n->next = NULL;
    n->queue = NULL;
    q->total--;
    if (--q->count[p] == 0)
        q->nonempty &= ~(1u << p);
}

prio_node *prio_queue_peek(const prio_queue *q) {
    if (!q->nonempty)
        return NULL;
    return q->head[__builtin_ctz(q->nonempty)];
}

prio_node *prio_queue_pop(prio_queue *q) {
    prio_node *n = prio_queue_peek(q);
    if (n)
        unlink_node(q, n);
    return n;
}

int prio_queue_remove(prio_queue *q, prio_node *n) {
    if (n->queue != q)
        return -ENOENT;
    unlink_node(q, n);
    return 0;
}

size_t prio_queue_count(const prio_queue *q, unsigned priority) {
    return priority < PRIO_LEVELS ? q->count[priority] : 0;
}

size_t prio_queue_total(const prio_queue *q) { return q->total; }

prio_node *prio_queue_first(const prio_queue *q) { return prio_queue_peek(q); }

prio_node *prio_queue_next(const prio_queue *q, const prio_node *n) {
    if (n->next)
        return n->next;
    /* The next non-empty priority below n's: clear n's bit and those above. */
    unsigned rest = q->nonempty & ~((2u << n->priority) - 1);
    return rest ? q->head[__builtin_ctz(rest)] : NULL;
}

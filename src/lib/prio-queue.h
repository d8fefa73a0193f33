/*
 * prio-queue.h - the in-memory ready window of one task queue: strict
 * priority (0 critical .. 4 background, the values of store_priority),
 * FIFO within a priority.
 *
 * Intrusive: the engine embeds a prio_node in its task struct and gets the
 * task back with PRIO_NODE_ENTRY().  Each priority is a doubly-linked list,
 * so push to a tail, pop of the highest non-empty priority and removal of
 * any node (a cancel) are O(1); a bitmask of non-empty priorities finds
 * the highest one without a scan.
 *
 * Ownership: the queue never allocates nor frees.  It links nodes the
 * caller owns; a node must stay alive while queued (remove it before
 * freeing its task).  A node must be zeroed or prio_node_init()ed before
 * its first push.  No clock, no I/O; not thread-safe (the loop owns it).
 */
#ifndef TEND_LIB_PRIO_QUEUE_H
#define TEND_LIB_PRIO_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PRIO_LEVELS 5 /* 0 critical, 1 high, 2 normal, 3 low, 4 background */

struct prio_queue;

/* Fields are read-only outside prio-queue.c, except key before a push. */
typedef struct prio_node {
    struct prio_node *prev, *next;
    struct prio_queue *queue; /* the queue it is in; NULL when not queued */
    uint64_t key;             /* FIFO order for prio_queue_push_ordered() */
    unsigned priority;        /* valid while queued */
} prio_node;

typedef struct prio_queue {
    prio_node *head[PRIO_LEVELS], *tail[PRIO_LEVELS];
    size_t count[PRIO_LEVELS];
    size_t total;
    unsigned nonempty; /* bit p set: priority p has nodes */
} prio_queue;

/* The struct that embeds node ptr as member. */
#define PRIO_NODE_ENTRY(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

void prio_queue_init(prio_queue *q);
void prio_node_init(prio_node *n);

/* True when n is linked into some queue. */
static inline bool prio_node_queued(const prio_node *n) { return n->queue != NULL; }

/*
 * Appends n at the tail of its priority.  O(1).  Returns 0; -EINVAL for a
 * priority >= PRIO_LEVELS; -EBUSY when n is already queued (here or in
 * another queue).  On failure nothing changes.
 */
int prio_queue_push(prio_queue *q, prio_node *n, unsigned priority);

/*
 * Puts n at the head of its priority: for a popped task that could not be
 * dispatched after all (it goes back where it was).  O(1).  Same returns
 * as prio_queue_push().
 */
int prio_queue_push_front(prio_queue *q, prio_node *n, unsigned priority);

/*
 * Inserts n with n->key = key after every node of its priority whose key
 * is <= key (stable), walking from the tail: O(1) when keys arrive in
 * order (a sequence number, run_at), O(count) at worst.  Meant for a
 * window where every node of a priority is pushed this way; mixing with
 * prio_queue_push() orders only by the keys set.  Same returns as
 * prio_queue_push().
 */
int prio_queue_push_ordered(prio_queue *q, prio_node *n, unsigned priority, uint64_t key);

/* Unlinks and returns the head of the highest non-empty priority; NULL when empty. O(1). */
prio_node *prio_queue_pop(prio_queue *q);

/* What prio_queue_pop() would return, without unlinking it. */
prio_node *prio_queue_peek(const prio_queue *q);

/* Unlinks n.  O(1).  Returns 0, or -ENOENT when n is not in q. */
int prio_queue_remove(prio_queue *q, prio_node *n);

/* Nodes queued at priority (0 for a priority out of range), and in all. */
size_t prio_queue_count(const prio_queue *q, unsigned priority);
size_t prio_queue_total(const prio_queue *q);

/*
 * Iteration in pop order (priority 0 head to tail, then 1, ...), for
 * listing.  prio_queue_next() returns NULL after the last node.  The queue
 * must not change during the walk, except removing the current node with
 * the _SAFE form.
 */
prio_node *prio_queue_first(const prio_queue *q);
prio_node *prio_queue_next(const prio_queue *q, const prio_node *n);

#define PRIO_QUEUE_FOREACH(n, q) for ((n) = prio_queue_first(q); (n); (n) = prio_queue_next((q), (n)))
#define PRIO_QUEUE_FOREACH_SAFE(n, tmp, q)                                                         \
    for ((n) = prio_queue_first(q), (tmp) = (n) ? prio_queue_next((q), (n)) : NULL; (n);           \
         (n) = (tmp), (tmp) = (n) ? prio_queue_next((q), (n)) : NULL)

#endif

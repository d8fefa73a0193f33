/*
 * store-memory.c - the task store in RAM, for embedders who want no disk:
 * the same ops and the same callback discipline as the SQLite backend,
 * nothing survives the process.
 *
 * Everything runs on the loop thread.  store_submit only queues the op and
 * wakes the store's async handle; at the next loop iteration every op
 * queued since the last one runs as a group (the analogue of one
 * transaction: store_group_begin() can fail the group as a whole) and
 * completes.  So callbacks never run from inside store_submit, exactly as
 * with SQLite.
 *
 * Indexes: a hash by id, a hash by (queue, idempotency key), a treap of
 * all tasks by id (LIST, newest first) and, per queue, a treap of the
 * pending and scheduled tasks by (run_at, id) per priority (FETCH_READY and
 * CLAIM are range walks).  Admin ops (RECOVER, PURGE_DEAD, REQUEUE_DEAD,
 * RETENTION) walk every task: they are rare.  Each op is atomic: an INSERT
 * that fails half-way takes back what it inserted.
 *
 * INSERT is the hot path (a task engine inserts every task and keeps the
 * finished ones until retention), so a record is one allocation: the
 * strings that never change (payload, idempotency key, tags) live inline
 * after the struct and queue points at the queue's own name; only
 * last_error, which UPDATE replaces, is allocated apart.  Stored ids are
 * always 26 characters (store_submit checks them), so the id order is a
 * memcmp, and an id above every id ever inserted (the usual case: ids are
 * generated in ascending order) needs no duplicate lookup.
 */
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "macros.h"

/* ---- A treap (randomized balanced tree), intrusive ------------------- */

typedef struct tnode {
    struct tnode *l, *r;
    uint32_t prio;
} tnode;

/* Orders two nodes of the same tree: <0, 0 (same node), >0. */
typedef int (*tnode_cmp)(const tnode *a, const tnode *b);

static void treap_split(tnode *t, const tnode *key, tnode_cmp cmp, tnode **l, tnode **r) {
    if (!t) {
        *l = *r = NULL;
    } else if (cmp(t, key) < 0) {
        treap_split(t->r, key, cmp, &t->r, r);
        *l = t;
    } else {
        treap_split(t->l, key, cmp, l, &t->l);
        *r = t;
    }
}

static tnode *treap_merge(tnode *l, tnode *r) {
    if (!l)
        return r;
    if (!r)
        return l;
    if (l->prio > r->prio) {
        l->r = treap_merge(l->r, r);
        return l;
    }
    r->l = treap_merge(l, r->l);
    return r;
}

static void treap_insert(tnode **t, tnode *n, tnode_cmp cmp) {
    if (!*t) {
        n->l = n->r = NULL;
        *t = n;
    } else if (n->prio > (*t)->prio) {
        treap_split(*t, n, cmp, &n->l, &n->r);
        *t = n;
    } else
        treap_insert(cmp(n, *t) < 0 ? &(*t)->l : &(*t)->r, n, cmp);
}

/* Inserts n, which sorts after every node of *t: down the right spine to
 * where n's priority belongs, and what was there becomes its left
 * subtree (all of it is before n and of lower priority): no comparison
 * and no split. */
static void treap_insert_max(tnode **t, tnode *n) {
    while (*t && (*t)->prio >= n->prio)
        t = &(*t)->r;
    n->l = *t;
    n->r = NULL;
    *t = n;
}

static void treap_remove(tnode **t, tnode *n, tnode_cmp cmp) {
    while (*t && *t != n)
        t = cmp(n, *t) < 0 ? &(*t)->l : &(*t)->r;
    if (*t)
        *t = treap_merge(n->l, n->r);
    n->l = n->r = NULL;
}

/* Visits, in order, the nodes that are not before(node, key) (all when
 * key is NULL); stops when visit returns false.  Returns false if
 * stopped. */
typedef bool (*tnode_before)(const tnode *n, const void *key);
typedef bool (*tnode_visit)(tnode *n, void *ctx);

static bool treap_walk_up(tnode *t, tnode_before before, const void *key, tnode_visit visit,
                          void *ctx) {
    while (t) {
        if (key && before(t, key)) {
            t = t->r;
            continue;
        }
        if (!treap_walk_up(t->l, before, key, visit, ctx) || !visit(t, ctx))
            return false;
        t = t->r;
        key = NULL; /* everything right of t is after it */
    }
    return true;
}

/* Visits, in reverse order, the nodes that are before(node, key) (all
 * when key is NULL). */
static bool treap_walk_down(tnode *t, tnode_before before, const void *key, tnode_visit visit,
                            void *ctx) {
    while (t) {
        if (key && !before(t, key)) {
            t = t->l;
            continue;
        }
        if (!treap_walk_down(t->r, before, key, visit, ctx) || !visit(t, ctx))
            return false;
        t = t->l;
        key = NULL;
    }
    return true;
}

/* ---- Records and indexes ---------------------------------------------- */

typedef struct mqueue mqueue;

typedef struct mtask {
    store_task t; /* queue, payload, key, tags: not owned (see above) */
    tnode by_id; /* mem.all */
    tnode ready; /* queue->ready, while pending or scheduled */
    bool in_ready;
    uint16_t slab_class;    /* its slab size class; 0: malloc'ed */
    uint32_t id_hash;       /* id_hash(t.id), so that growing needs no id */
    struct mtask *id_next;  /* id hash chain */
    struct mtask *key_next; /* key hash chain */
    mqueue *q;
} mtask;

struct mqueue {
    char *name;
    /* Per priority: a treap of the ready tasks by (run_at, id), and its
     * last node.  A new task usually sorts last (ids and times ascend):
     * it goes in down the right spine, with no comparison; the claimed
     * ones usually are the first: they come out of the left spine. */
    tnode *ready[STORE_PRIORITY_MAX];
    struct mtask *ready_max[STORE_PRIORITY_MAX];
    uint64_t n[STORE_TASK_STATE_MAX][STORE_PRIORITY_MAX];
    mqueue *next;
};

/*
 * Records come from a slab: chunks mapped whole, cut by a bump pointer,
 * with freed records kept per 16-byte size class (a task engine inserts a
 * million tasks and keeps them until retention: malloc's headers and
 * rounding cost a tenth of the memory, its bookkeeping a few percent of
 * the time).  First touching a fresh page costs a fault; the page-fault
 * work of a big store is the INSERT path's largest cost, so once chunks
 * are big a thread of the store prefaults the next one
 * (MADV_POPULATE_WRITE: page tables only, no write to the memory) while
 * the loop fills the current one.  It owns nothing and changes no data;
 * if the kernel lacks the advice the loop simply faults as before.
 * Chunks go back to the system when the store closes; freed records are
 * reused.  Records over SLAB_MAX_RECORD bytes (big payloads) are malloc'ed.
 */
#define SLAB_CLASS 16
#define SLAB_MAX_RECORD 1024
#define SLAB_FIRST_CHUNK (64u << 10)
#define SLAB_MAX_CHUNK (4u << 20)
#define SLAB_PREFAULT_FROM (1u << 20) /* chunks this big get prefaulted */
/* Under AddressSanitizer every record is malloc'ed, so that it checks
 * their bounds. */
#if defined(__SANITIZE_ADDRESS__)
#define SLAB_ENABLED 0
#else
#define SLAB_ENABLED 1
#endif

typedef struct slab_chunk {
    struct slab_chunk *next;
    size_t size;
} slab_chunk;

typedef struct slab {
    char *cur, *end;     /* the rest of the chunk being cut */
    slab_chunk *chunks;  /* every chunk mapped, the current one first */
    slab_chunk *spare;   /* mapped ahead (being prefaulted), or NULL */
    size_t next_size;
    void *free_list[SLAB_MAX_RECORD / SLAB_CLASS + 1];
    /* The prefault thread. */
    pthread_t thread;
    bool thread_on, stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    slab_chunk *to_prefault;
} slab;

typedef struct mem {
    store *s;
    slab slab;
    store_op *head, *tail; /* queued, not yet run */
    bool stopping;
    mtask **by_id; /* hash buckets */
    mtask **by_key; /* the same number of buckets; NULL until a task has a key */
    size_t nbuckets, ntasks;
    tnode *all;
    mqueue *queues;
    char max_id[STORE_ID_SIZE]; /* the highest id ever inserted, "" at first */
    /* Per finished state, at most the least finished_at of its tasks (a
     * lower bound: lowered by attach(), made exact again by a complete
     * RETENTION walk), so that a RETENTION with nothing old enough to
     * delete answers without walking every task. */
    int64_t min_finished[STORE_TASK_STATE_MAX];
    uint64_t rng;
    /* Sessions (STORE_OP_SESSION_*): a chained hash by key. */
    struct msess **sess;
    size_t nsess_buckets, nsess;
    /* QUEUE_PAUSE: the names of the paused queues, sorted. */
    char **paused;
    size_t n_paused;
} mem;

#define CONTAINER(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

static uint32_t rnd(mem *m) {
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return (uint32_t)(m->rng >> 11);
}

static uint64_t hash_str(uint64_t h, const char *s) {
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* The value of a Crockford base32 character (0..31); other bytes map to
 * their low 5 bits, which keeps the hash defined for any string.  A
 * table: the branches cost 3 % of the INSERT/UPDATE path. */
static unsigned char crock_table[256];
static pthread_once_t crock_once = PTHREAD_ONCE_INIT;

static void crock_table_init(void) {
    for (unsigned c = 0; c < 256; c++) {
        unsigned v = c & 31u;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'A' && c <= 'Z') /* the alphabet skips I, L, O and U */
            v = (unsigned)(c - 'A' + 10 - (c > 'I') - (c > 'L') - (c > 'O') - (c > 'U')) & 31u;
        crock_table[c] = (unsigned char)v;
    }
}

static unsigned crock_value(unsigned char c) { return crock_table[c]; }

/* The id hash is the value of the id's last 12 characters (60 of its 80
 * random bits), not a scrambling hash: ids made in one millisecond are
 * consecutive numbers, so they land in consecutive buckets, and a task
 * engine that inserts and updates recent tasks stays in a few cache
 * lines of the table (a scrambling hash made every access a cache miss
 * once the store holds a million tasks).  The random bits drawn at each
 * new millisecond still spread the ids evenly. */
static uint32_t id_hash(const char *id) {
    size_t len = strnlen(id, STORE_ID_LEN), i = len > 12 ? len - 12 : 0;
    uint64_t v = 0;
    for (; i < len; i++)
        v = v << 5 | crock_value((unsigned char)id[i]);
    return (uint32_t)v;
}

static size_t key_bucket(const mem *m, const char *queue, const char *key) {
    return hash_str(hash_str(0xcbf29ce484222325ull, queue) * 31 + 1, key) & (m->nbuckets - 1);
}

/* Byte order of two stored ids (26 bytes each), as memcmp but inline:
 * big-endian 8-byte words compare like the bytes they hold. */
static uint64_t id_word(const char *p) {
    uint64_t w;
    memcpy(&w, p, sizeof(w));
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

static int id_cmp(const char *a, const char *b) {
    for (size_t i = 0; i + 8 <= STORE_ID_LEN; i += 8) {
        uint64_t x = id_word(a + i), y = id_word(b + i);
        if (x != y)
            return x < y ? -1 : 1;
    }
    for (size_t i = STORE_ID_LEN / 8 * 8; i < STORE_ID_LEN; i++)
        if (a[i] != b[i])
            return (unsigned char)a[i] < (unsigned char)b[i] ? -1 : 1;
    return 0;
}

static int cmp_by_id(const tnode *a, const tnode *b) {
    return id_cmp(CONTAINER(a, mtask, by_id)->t.id, CONTAINER(b, mtask, by_id)->t.id);
}

static int cmp_ready(const tnode *a, const tnode *b) {
    const store_task *x = &CONTAINER(a, mtask, ready)->t, *y = &CONTAINER(b, mtask, ready)->t;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    if (x->run_at != y->run_at)
        return x->run_at < y->run_at ? -1 : 1;
    return id_cmp(x->id, y->id);
}

static bool is_ready_state(store_task_state s) {
    return s == STORE_TASK_PENDING || s == STORE_TASK_SCHEDULED;
}

static mtask *find_id(const mem *m, const char *id) {
    uint32_t h = id_hash(id);
    for (mtask *t = m->by_id[h & (m->nbuckets - 1)]; t; t = t->id_next)
        if (t->id_hash == h && strcmp(t->t.id, id) == 0)
            return t;
    return NULL;
}

static mtask *find_key(const mem *m, const char *queue, const char *key) {
    if (!m->by_key)
        return NULL;
    for (mtask *t = m->by_key[key_bucket(m, queue, key)]; t; t = t->key_next)
        if (strcmp(t->t.idempotency_key, key) == 0 && strcmp(t->t.queue, queue) == 0)
            return t;
    return NULL;
}

static mqueue *find_queue(mem *m, const char *name, bool create) {
    for (mqueue *q = m->queues; q; q = q->next)
        if (strcmp(q->name, name) == 0)
            return q;
    if (!create)
        return NULL;
    mqueue *q = calloc(1, sizeof(*q));
    if (!q || !(q->name = strdup(name))) {
        free(q);
        return NULL;
    }
    q->next = m->queues;
    m->queues = q;
    return q;
}

/* A zeroed table of n buckets, written rather than calloc'ed: fresh
 * pages from calloc are the shared zero page until written, so filling
 * them cost a copy-on-write fault (and a TLB shootdown across the
 * process's threads) per page on top of the first one. */
static mtask **new_table(size_t n) {
    mtask **t = malloc(n * sizeof(*t));
    if (t)
        memset(t, 0, n * sizeof(*t));
    return t;
}

/* Doubles the hash tables when they are full.  0 or -ENOMEM. */
static int grow(mem *m) {
    if (m->ntasks < m->nbuckets)
        return 0;
    size_t nb = m->nbuckets * 2;
    mtask **ni = new_table(nb), **nk = m->by_key ? new_table(nb) : NULL;
    if (!ni || (m->by_key && !nk)) {
        free(ni);
        free(nk);
        return -ENOMEM;
    }
    mtask **oi = m->by_id, **ok = m->by_key;
    size_t ob = m->nbuckets;
    m->by_id = ni;
    m->by_key = nk;
    m->nbuckets = nb;
    for (size_t b = 0; b < ob; b++) {
        for (mtask *t = oi[b], *next; t; t = next) {
            next = t->id_next;
            size_t i = t->id_hash & (nb - 1);
            t->id_next = ni[i];
            ni[i] = t;
        }
        for (mtask *t = ok ? ok[b] : NULL, *next; t; t = next) {
            next = t->key_next;
            size_t i = key_bucket(m, t->t.queue, t->t.idempotency_key);
            t->key_next = nk[i];
            nk[i] = t;
        }
    }
    free(oi);
    free(ok);
    return 0;
}

/* Counts and ready-index membership follow the state: call before and
 * after changing state, priority or run_at. */
static void detach(mtask *t) {
    t->q->n[t->t.state][t->t.priority]--;
    if (t->in_ready) {
        mqueue *q = t->q;
        int p = t->t.priority;
        tnode **first = &q->ready[p];
        while (*first && (*first)->l)
            first = &(*first)->l;
        if (*first == &t->ready) {
            *first = t->ready.r; /* the first: its right subtree takes its place */
            t->ready.l = t->ready.r = NULL;
        } else
            treap_remove(&q->ready[p], &t->ready, cmp_ready);
        if (q->ready_max[p] == t) {
            tnode *x = q->ready[p];
            while (x && x->r)
                x = x->r;
            q->ready_max[p] = x ? CONTAINER(x, mtask, ready) : NULL;
        }
        t->in_ready = false;
    }
}

static bool is_finished_state(store_task_state s) {
    return s == STORE_TASK_SUCCEEDED || s == STORE_TASK_DEAD || s == STORE_TASK_CANCELLED;
}

static void attach(mem *m, mtask *t) {
    t->q->n[t->t.state][t->t.priority]++;
    if (is_finished_state(t->t.state) && t->t.finished_at < m->min_finished[t->t.state])
        m->min_finished[t->t.state] = t->t.finished_at;
    if (is_ready_state(t->t.state)) {
        mqueue *q = t->q;
        int p = t->t.priority;
        t->ready.prio = rnd(m);
        mtask *last = q->ready_max[p];
        if (!last || cmp_ready(&last->ready, &t->ready) < 0) {
            treap_insert_max(&q->ready[p], &t->ready);
            q->ready_max[p] = t;
        } else
            treap_insert(&q->ready[p], &t->ready, cmp_ready);
        t->in_ready = true;
    }
}

static void *prefault_main(void *arg) {
    slab *sl = arg;
    pthread_mutex_lock(&sl->lock);
    for (;;) {
        while (!sl->to_prefault && !sl->stop)
            pthread_cond_wait(&sl->cond, &sl->lock);
        if (sl->stop)
            break;
        slab_chunk *c = sl->to_prefault;
        sl->to_prefault = NULL;
        pthread_mutex_unlock(&sl->lock);
        /* The loop may already be writing records into c: this advice
         * only builds page tables, it writes nothing. */
#ifdef MADV_POPULATE_WRITE
        (void)madvise(c, c->size, MADV_POPULATE_WRITE);
#endif
        pthread_mutex_lock(&sl->lock);
    }
    pthread_mutex_unlock(&sl->lock);
    return NULL;
}

static slab_chunk *slab_map(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    slab_chunk *c = p;
    c->next = NULL;
    c->size = size;
    return c;
}

/* A new chunk to cut: the spare one mapped ahead, or a new one; then the
 * next spare is mapped and handed to the prefault thread.  0 or -ENOMEM. */
static int slab_next_chunk(slab *sl) {
    slab_chunk *c = sl->spare;
    sl->spare = NULL;
    if (!c) {
        if (!sl->next_size)
            sl->next_size = SLAB_FIRST_CHUNK;
        if (!(c = slab_map(sl->next_size)))
            return -ENOMEM;
    }
    c->next = sl->chunks;
    sl->chunks = c;
    sl->cur = (char *)c + sizeof(*c);
    sl->end = (char *)c + c->size;
    sl->next_size = MIN(c->size * 2, (size_t)SLAB_MAX_CHUNK);
#ifdef MADV_POPULATE_WRITE
    if (sl->next_size < SLAB_PREFAULT_FROM)
        return 0;
    if (!sl->thread_on) {
        pthread_mutex_init(&sl->lock, NULL);
        pthread_cond_init(&sl->cond, NULL);
        if (pthread_create(&sl->thread, NULL, prefault_main, sl) != 0) {
            pthread_mutex_destroy(&sl->lock);
            pthread_cond_destroy(&sl->cond);
            sl->next_size = SLAB_MAX_CHUNK;
            return 0; /* no thread: the loop faults the pages itself */
        }
        sl->thread_on = true;
    }
    if ((sl->spare = slab_map(sl->next_size))) {
        pthread_mutex_lock(&sl->lock);
        sl->to_prefault = sl->spare;
        pthread_cond_signal(&sl->cond);
        pthread_mutex_unlock(&sl->lock);
    }
#endif
    return 0;
}

/* Room for a record of size bytes (zeroed: no), or NULL. */
static mtask *slab_alloc(slab *sl, size_t size) {
    size_t cls = (size + SLAB_CLASS - 1) / SLAB_CLASS;
    if (!SLAB_ENABLED || size > SLAB_MAX_RECORD) {
        mtask *t = malloc(size);
        if (t)
            t->slab_class = 0;
        return t;
    }
    mtask *t = sl->free_list[cls];
    if (t) {
        sl->free_list[cls] = *(void **)t;
    } else {
        size_t bytes = cls * SLAB_CLASS;
        if ((size_t)(sl->end - sl->cur) < bytes && slab_next_chunk(sl) < 0)
            return NULL;
        t = (mtask *)sl->cur;
        sl->cur += bytes;
    }
    t->slab_class = (uint16_t)cls;
    return t;
}

static void slab_release(slab *sl, mtask *t) {
    if (!t->slab_class) {
        free(t);
        return;
    }
    *(void **)t = sl->free_list[t->slab_class];
    sl->free_list[t->slab_class] = t;
}

static void slab_destroy(slab *sl) {
    if (sl->thread_on) {
        pthread_mutex_lock(&sl->lock);
        sl->stop = true;
        pthread_cond_signal(&sl->cond);
        pthread_mutex_unlock(&sl->lock);
        pthread_join(sl->thread, NULL);
        pthread_mutex_destroy(&sl->lock);
        pthread_cond_destroy(&sl->cond);
    }
    if (sl->spare)
        munmap(sl->spare, sl->spare->size);
    for (slab_chunk *c = sl->chunks, *next; c; c = next) {
        next = c->next;
        munmap(c, c->size);
    }
}

/* Frees a record (its inline strings go with it). */
static void mtask_free(mem *m, mtask *t) {
    free(t->t.last_error);
    slab_release(&m->slab, t);
}

/* Adds a copy of src.  0, -EEXIST (id taken) or -ENOMEM. */
static int add_task(mem *m, const store_task *src, mtask **ret) {
    bool above = id_cmp(src->id, m->max_id) > 0;
    if (!above && find_id(m, src->id))
        return -EEXIST;
    if (grow(m) < 0)
        return -ENOMEM;
    if (src->idempotency_key && !m->by_key && !(m->by_key = new_table(m->nbuckets)))
        return -ENOMEM;
    mqueue *q = find_queue(m, src->queue, true);
    if (!q)
        return -ENOMEM;
    const char *payload = src->payload ? src->payload : "null";
    size_t plen = src->payload ? src->payload_len : 4;
    size_t klen = src->idempotency_key ? strlen(src->idempotency_key) + 1 : 0;
    size_t glen = src->tags ? strlen(src->tags) + 1 : 0;
    mtask *t = slab_alloc(&m->slab, sizeof(*t) + plen + 1 + klen + glen);
    if (!t)
        return -ENOMEM;
    uint16_t cls = t->slab_class;
    memset(t, 0, sizeof(*t));
    t->slab_class = cls;
    t->t = *src;
    t->t.last_error = NULL;
    if (src->last_error &&
        !(t->t.last_error = strndup(src->last_error, store_error_len(src->last_error)))) {
        slab_release(&m->slab, t);
        return -ENOMEM;
    }
    char *p = (char *)(t + 1);
    memcpy(p, payload, plen);
    p[plen] = 0;
    t->t.payload = p;
    t->t.payload_len = plen;
    p += plen + 1;
    t->t.idempotency_key = NULL;
    if (klen) {
        memcpy(p, src->idempotency_key, klen);
        t->t.idempotency_key = p;
        p += klen;
    }
    t->t.tags = NULL;
    if (glen) {
        memcpy(p, src->tags, glen);
        t->t.tags = p;
    }
    t->t.queue = q->name;
    t->q = q;
    t->id_hash = id_hash(t->t.id);
    size_t i = t->id_hash & (m->nbuckets - 1);
    t->id_next = m->by_id[i];
    m->by_id[i] = t;
    if (t->t.idempotency_key) {
        i = key_bucket(m, t->t.queue, t->t.idempotency_key);
        t->key_next = m->by_key[i];
        m->by_key[i] = t;
    }
    t->by_id.prio = rnd(m);
    if (above)
        treap_insert_max(&m->all, &t->by_id);
    else
        treap_insert(&m->all, &t->by_id, cmp_by_id);
    attach(m, t);
    m->ntasks++;
    if (above)
        memcpy(m->max_id, t->t.id, STORE_ID_SIZE);
    *ret = t;
    return 0;
}

static void remove_task(mem *m, mtask *t) {
    detach(t);
    treap_remove(&m->all, &t->by_id, cmp_by_id);
    mtask **p = &m->by_id[t->id_hash & (m->nbuckets - 1)];
    while (*p != t)
        p = &(*p)->id_next;
    *p = t->id_next;
    if (t->t.idempotency_key) {
        p = &m->by_key[key_bucket(m, t->t.queue, t->t.idempotency_key)];
        while (*p != t)
            p = &(*p)->key_next;
        *p = t->key_next;
    }
    m->ntasks--;
    mtask_free(m, t);
}

/* ---- Ops -------------------------------------------------------------- */

static int op_insert(mem *m, store_op *op) {
    size_t n = op->insert.n, created = 0;
    /* Most INSERTs carry a few tasks: no allocation for those. */
    mtask *few[16] = {0};
    mtask **added = n <= sizeof(few) / sizeof(few[0]) ? few : calloc(n, sizeof(*added));
    if (!added)
        return -ENOMEM;
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        const store_task *src = &op->insert.tasks[i];
        mtask *hit = src->idempotency_key ? find_key(m, src->queue, src->idempotency_key) : NULL;
        if (hit) {
            if (!op->insert.ret_existing &&
                !(op->insert.ret_existing = calloc(n, sizeof(store_task)))) {
                r = -ENOMEM;
                break;
            }
            if ((r = store_task_copy(&op->insert.ret_existing[i], &hit->t)) < 0)
                break;
            continue;
        }
        if ((r = add_task(m, src, &added[i])) < 0)
            break;
        created++;
    }
    if (r < 0) {
        /* Take back this op's inserts: all or nothing. */
        for (size_t i = n; i-- > 0;)
            if (added[i])
                remove_task(m, added[i]);
        store_op_reset_outputs(op);
        if (added != few)
            free(added);
        return r;
    }
    if (added != few)
        free(added);
    op->insert.ret_created = created;
    return (int)created;
}

static int op_update(mem *m, store_op *op) {
    const store_task *in = op->update.task;
    mtask *t = find_id(m, in->id);
    if (!t)
        return -ENOENT;
    if ((op->update.expect_version && t->t.version != op->update.expect_version) ||
        (op->update.expect_states && !(op->update.expect_states & STORE_STATE_BIT(t->t.state)))) {
        op->update.ret_state = t->t.state;
        op->update.ret_version = t->t.version;
        return -ESTALE;
    }
    unsigned f = op->update.fields;
    char *err = NULL;
    if ((f & STORE_FIELD_LAST_ERROR) && in->last_error &&
        !(err = strndup(in->last_error, store_error_len(in->last_error))))
        return -ENOMEM;
    detach(t);
    if (f & STORE_FIELD_STATE)
        t->t.state = in->state;
    if (f & STORE_FIELD_ATTEMPTS)
        t->t.attempts = in->attempts;
    if (f & STORE_FIELD_RUN_AT)
        t->t.run_at = in->run_at;
    if (f & STORE_FIELD_LEASE)
        t->t.lease_until = in->lease_until;
    if (f & STORE_FIELD_LAST_ERROR) {
        free(t->t.last_error);
        t->t.last_error = err;
    }
    if (f & STORE_FIELD_STARTED_AT)
        t->t.started_at = in->started_at;
    if (f & STORE_FIELD_FINISHED_AT)
        t->t.finished_at = in->finished_at;
    if (f & STORE_FIELD_PRIORITY)
        t->t.priority = in->priority;
    if (f & STORE_FIELD_MAX_ATTEMPTS)
        t->t.max_attempts = in->max_attempts;
    if (f & STORE_FIELD_TIMEOUT)
        t->t.timeout_ms = in->timeout_ms;
    t->t.version++;
    attach(m, t);
    op->update.ret_state = t->t.state;
    op->update.ret_version = t->t.version;
    return 0;
}

/* The walk of one priority of a queue's ready treap. */
typedef struct ready_walk {
    store_priority prio;
    int64_t now;
    size_t limit;
    const char **exclude;
    size_t nx;
    mtask **out;
    size_t n;
} ready_walk;

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool ready_visit(tnode *n, void *ctx) {
    ready_walk *w = ctx;
    mtask *t = CONTAINER(n, mtask, ready);
    if (t->t.priority != w->prio || t->t.run_at > w->now)
        return false; /* the rest of this priority is not due yet */
    const char *id = t->t.id;
    if (w->nx && bsearch(&id, w->exclude, w->nx, sizeof(*w->exclude), cmp_str_ptr))
        return true;
    w->out[w->n++] = t;
    return w->n < w->limit;
}

/* The ready tasks of queue in dispatch order into a new array *ret
 * (NULL when none).  Count, or -ENOMEM. */
static int select_ready(mem *m, const char *queue, int64_t now, size_t limit,
                        const char *const *exclude, size_t nx, mtask ***ret) {
    *ret = NULL;
    mqueue *q = find_queue(m, queue, false);
    if (!q || limit == 0)
        return 0;
    ready_walk w = {.now = now, .limit = limit, .nx = nx};
    if (limit > m->ntasks)
        w.limit = limit = m->ntasks ? m->ntasks : 1;
    w.out = malloc(limit * sizeof(*w.out));
    if (!w.out)
        return -ENOMEM;
    if (nx) {
        w.exclude = malloc(nx * sizeof(*w.exclude));
        if (!w.exclude) {
            free(w.out);
            return -ENOMEM;
        }
        memcpy(w.exclude, exclude, nx * sizeof(*w.exclude));
        qsort(w.exclude, nx, sizeof(*w.exclude), cmp_str_ptr);
    }
    for (int p = 0; p < STORE_PRIORITY_MAX && w.n < limit; p++) {
        w.prio = p;
        treap_walk_up(q->ready[p], NULL, NULL, ready_visit, &w);
    }
    free(w.exclude);
    *ret = w.out;
    return (int)w.n;
}

static int copy_out(mtask **src, size_t n, store_task **ret) {
    *ret = NULL;
    if (n == 0)
        return 0;
    store_task *v = calloc(n, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (store_task_copy(&v[i], &src[i]->t) < 0) {
            store_tasks_free(v, i);
            return -ENOMEM;
        }
    *ret = v;
    return 0;
}

static int op_fetch(mem *m, store_op *op) {
    mtask **sel;
    int n = select_ready(m, op->fetch.queue, op->fetch.now, op->fetch.limit, op->fetch.exclude,
                         op->fetch.n_exclude, &sel);
    if (n < 0)
        return n;
    int r = copy_out(sel, (size_t)n, &op->fetch.ret_tasks);
    free(sel);
    if (r < 0)
        return r;
    op->fetch.ret_n = (size_t)n;
    return n;
}

/* The records themselves, by value: their strings stay the store's (a
 * CLAIM with borrow; see store.h for how long they stay valid). */
static int lend_out(mtask **src, size_t n, store_task **ret) {
    *ret = NULL;
    if (n == 0)
        return 0;
    store_task *v = malloc(n * sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        v[i] = src[i]->t;
    *ret = v;
    return 0;
}

static int op_claim(mem *m, store_op *op) {
    mtask **sel;
    int n = select_ready(m, op->claim.queue, op->claim.now, op->claim.limit, NULL, 0, &sel);
    if (n < 0)
        return n;
    /* Copy first so that a failure changes nothing. */
    int r = op->claim.borrow ? lend_out(sel, (size_t)n, &op->claim.ret_tasks)
                             : copy_out(sel, (size_t)n, &op->claim.ret_tasks);
    if (r < 0) {
        free(sel);
        return r;
    }
    op->claim.ret_borrowed = op->claim.borrow && n > 0;
    for (int i = 0; i < n; i++) {
        mtask *t = sel[i];
        detach(t);
        t->t.state = STORE_TASK_RUNNING;
        t->t.attempts++;
        t->t.started_at = op->claim.now;
        t->t.lease_until = op->claim.lease_until;
        t->t.version++;
        attach(m, t);
        /* The copy reflects the claim. */
        store_task *c = &op->claim.ret_tasks[i];
        c->state = t->t.state;
        c->attempts = t->t.attempts;
        c->started_at = t->t.started_at;
        c->lease_until = t->t.lease_until;
        c->version = t->t.version;
    }
    free(sel);
    op->claim.ret_n = (size_t)n;
    return n;
}

static int op_get(mem *m, store_op *op) {
    mtask *t = find_id(m, op->get.id);
    if (!t)
        return -ENOENT;
    store_task *c = malloc(sizeof(*c));
    if (!c || store_task_copy(c, &t->t) < 0) {
        free(c);
        return -ENOMEM;
    }
    op->get.ret_task = c;
    return 0;
}

typedef struct list_walk {
    const char *queue;
    int state;
    size_t limit; /* collect limit + 1 to know whether there is more */
    mtask **out;
    size_t n;
} list_walk;

static bool id_before(const tnode *n, const void *key) {
    return strcmp(CONTAINER(n, mtask, by_id)->t.id, key) < 0;
}

static bool list_visit(tnode *n, void *ctx) {
    list_walk *w = ctx;
    mtask *t = CONTAINER(n, mtask, by_id);
    if ((w->queue && strcmp(t->t.queue, w->queue) != 0) ||
        (w->state >= 0 && (int)t->t.state != w->state))
        return true;
    w->out[w->n++] = t;
    return w->n < w->limit + 1;
}

static int op_list(mem *m, store_op *op) {
    size_t limit = op->list.limit ? op->list.limit : 100;
    if (limit > m->ntasks)
        limit = m->ntasks;
    list_walk w = {.queue = op->list.queue, .state = op->list.state, .limit = limit};
    w.out = malloc((limit + 1) * sizeof(*w.out));
    if (!w.out)
        return -ENOMEM;
    const char *cursor = op->list.cursor && op->list.cursor[0] ? op->list.cursor : NULL;
    if (limit > 0)
        treap_walk_down(m->all, id_before, cursor, list_visit, &w);
    size_t n = MIN(w.n, limit);
    int r = copy_out(w.out, n, &op->list.ret_tasks);
    if (r == 0) {
        op->list.ret_n = n;
        if (w.n > limit && n > 0)
            memcpy(op->list.ret_cursor, w.out[n - 1]->t.id, STORE_ID_SIZE);
    }
    free(w.out);
    return r < 0 ? r : (int)n;
}

static int cmp_counts(const void *a, const void *b) {
    return strcmp(((const store_queue_counts *)a)->queue, ((const store_queue_counts *)b)->queue);
}

static int op_counts(mem *m, store_op *op) {
    size_t n = 0;
    for (mqueue *q = m->queues; q; q = q->next)
        if (!op->counts.queue || strcmp(q->name, op->counts.queue) == 0)
            n++;
    if (n == 0)
        return 0;
    store_queue_counts *c = calloc(n, sizeof(*c));
    if (!c)
        return -ENOMEM;
    size_t i = 0;
    for (mqueue *q = m->queues; q; q = q->next) {
        if (op->counts.queue && strcmp(q->name, op->counts.queue) != 0)
            continue;
        c[i].queue = strdup(q->name);
        if (!c[i].queue) {
            store_counts_free(c, i);
            return -ENOMEM;
        }
        memcpy(c[i].n, q->n, sizeof(q->n));
        i++;
    }
    qsort(c, n, sizeof(*c), cmp_counts);
    op->counts.ret_counts = c;
    op->counts.ret_n = n;
    return (int)n;
}

/* Collects every task for which pick() is true (up to max, 0: all). */
typedef struct pick_walk {
    bool (*pick)(const mtask *t, const store_op *op);
    const store_op *op;
    size_t max;
    int64_t *min_finished; /* not NULL: the least finished_at of the tasks not picked */
    mtask **out;
    size_t n, cap;
    bool nomem;
} pick_walk;

static bool pick_visit(tnode *n, void *ctx) {
    pick_walk *w = ctx;
    mtask *t = CONTAINER(n, mtask, by_id);
    if (!w->pick(t, w->op)) {
        if (w->min_finished && is_finished_state(t->t.state) &&
            t->t.finished_at < w->min_finished[t->t.state])
            w->min_finished[t->t.state] = t->t.finished_at;
        return true;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        mtask **nv = realloc(w->out, cap * sizeof(*nv));
        if (!nv) {
            w->nomem = true;
            return false;
        }
        w->out = nv;
        w->cap = cap;
    }
    w->out[w->n++] = t;
    return !w->max || w->n < w->max;
}

static int pick_all(mem *m, pick_walk *w) {
    treap_walk_up(m->all, NULL, NULL, pick_visit, w);
    if (w->nomem) {
        free(w->out);
        return -ENOMEM;
    }
    return 0;
}

static bool pick_running(const mtask *t, const store_op *op) {
    return t->t.state == STORE_TASK_RUNNING;
}

/* Where name is in m->paused, or where it would go. */
static size_t paused_slot(const mem *m, const char *name, bool *ret_found) {
    size_t lo = 0, hi = m->n_paused;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->paused[mid], name);
        if (c == 0) {
            *ret_found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *ret_found = false;
    return lo;
}

static int op_queue_pause(mem *m, store_op *op) {
    bool found;
    size_t i = paused_slot(m, op->queue_pause.queue, &found);
    if (op->queue_pause.paused == found)
        return 0;
    if (found) {
        free(m->paused[i]);
        memmove(&m->paused[i], &m->paused[i + 1], (m->n_paused - i - 1) * sizeof(*m->paused));
        m->n_paused--;
        return 0;
    }
    char *name = strdup(op->queue_pause.queue);
    char **v = name ? realloc(m->paused, (m->n_paused + 1) * sizeof(*v)) : NULL;
    if (!v) {
        free(name);
        return -ENOMEM;
    }
    m->paused = v;
    memmove(&v[i + 1], &v[i], (m->n_paused - i) * sizeof(*v));
    v[i] = name;
    m->n_paused++;
    return 0;
}

/* RECOVER's copy of the paused queues' names. */
static int copy_paused(const mem *m, store_op *op) {
    if (m->n_paused == 0)
        return 0;
    char **v = calloc(m->n_paused, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < m->n_paused; i++) {
        v[i] = strdup(m->paused[i]);
        if (!v[i]) {
            store_names_free(v, i);
            return -ENOMEM;
        }
    }
    op->recover.ret_paused = v;
    op->recover.ret_n_paused = m->n_paused;
    return 0;
}

static bool recover_uncharged(const store_op *op, const char *queue) {
    for (size_t i = 0; i < op->recover.n_uncharged; i++)
        if (strcmp(op->recover.uncharged[i], queue) == 0)
            return true;
    return false;
}

static int op_recover(mem *m, store_op *op) {
    pick_walk w = {.pick = pick_running, .op = op};
    int r = pick_all(m, &w);
    if (r < 0)
        return r;
    r = copy_paused(m, op);
    if (r < 0) {
        free(w.out);
        return r;
    }
    /* Allocate every message first so that the op is all or nothing. */
    char **msgs = w.n ? calloc(w.n, sizeof(*msgs)) : NULL;
    for (size_t i = 0; msgs && i < w.n; i++) {
        const store_task *t = &w.out[i]->t;
        bool dead = !recover_uncharged(op, t->queue) && t->attempts >= t->max_attempts;
        int k =
            recover_uncharged(op, t->queue)
                ? asprintf(&msgs[i], "%s", STORE_RECOVER_UNCHARGED_TEXT)
            : dead ? asprintf(&msgs[i],
                              "interrupted: tend stopped during attempt %d of %d (no attempts left)",
                              t->attempts, t->max_attempts)
                   : asprintf(&msgs[i], "interrupted: tend stopped during attempt %d", t->attempts);
        if (k < 0) {
            msgs[i] = NULL;
            for (size_t j = 0; j < i; j++)
                free(msgs[j]);
            free(msgs);
            msgs = NULL;
        }
    }
    if (w.n && !msgs) {
        free(w.out);
        op->recover.ret_paused = store_names_free(op->recover.ret_paused, op->recover.ret_n_paused);
        op->recover.ret_n_paused = 0;
        return -ENOMEM;
    }
    for (size_t i = 0; i < w.n; i++) {
        mtask *t = w.out[i];
        bool uncharged = recover_uncharged(op, t->t.queue);
        bool dead = !uncharged && t->t.attempts >= t->t.max_attempts;
        detach(t);
        if (uncharged && t->t.attempts > 0)
            t->t.attempts--;
        t->t.state = dead ? STORE_TASK_DEAD : STORE_TASK_PENDING;
        t->t.lease_until = 0;
        if (dead)
            t->t.finished_at = op->recover.now;
        free(t->t.last_error);
        t->t.last_error = msgs[i];
        t->t.version++;
        attach(m, t);
        if (dead)
            op->recover.ret_dead++;
        else
            op->recover.ret_requeued++;
    }
    free(msgs);
    free(w.out);
    return (int)w.n;
}

static bool pick_dead_of_queue(const mtask *t, const store_op *op) {
    return t->t.state == STORE_TASK_DEAD && strcmp(t->t.queue, op->dead.queue) == 0;
}

static int op_dead(mem *m, store_op *op) {
    pick_walk w = {.pick = pick_dead_of_queue, .op = op};
    int r = pick_all(m, &w);
    if (r < 0)
        return r;
    for (size_t i = 0; i < w.n; i++) {
        mtask *t = w.out[i];
        if (op->kind == STORE_OP_PURGE_DEAD) {
            remove_task(m, t);
            continue;
        }
        detach(t);
        t->t.state = STORE_TASK_PENDING;
        t->t.attempts = 0;
        t->t.run_at = op->dead.now;
        t->t.started_at = t->t.finished_at = t->t.lease_until = 0;
        t->t.version++;
        attach(m, t);
    }
    free(w.out);
    op->dead.ret_count = w.n;
    return (int)w.n;
}

static bool pick_expired(const mtask *t, const store_op *op) {
    int64_t before = t->t.state == STORE_TASK_SUCCEEDED   ? op->retention.succeeded_before
                     : t->t.state == STORE_TASK_DEAD      ? op->retention.dead_before
                     : t->t.state == STORE_TASK_CANCELLED ? op->retention.cancelled_before
                                                          : 0;
    return before > 0 && t->t.finished_at < before;
}

static int op_retention(mem *m, store_op *op) {
    const int64_t before[STORE_TASK_STATE_MAX] = {
        [STORE_TASK_SUCCEEDED] = op->retention.succeeded_before,
        [STORE_TASK_DEAD] = op->retention.dead_before,
        [STORE_TASK_CANCELLED] = op->retention.cancelled_before,
    };
    bool any = false;
    for (int st = 0; st < STORE_TASK_STATE_MAX; st++)
        any = any || (before[st] > 0 && m->min_finished[st] < before[st]);
    if (!any)
        return 0; /* nothing finished early enough: no walk */
    int64_t mins[STORE_TASK_STATE_MAX];
    for (int st = 0; st < STORE_TASK_STATE_MAX; st++)
        mins[st] = INT64_MAX;
    pick_walk w = {.pick = pick_expired, .op = op, .max = op->retention.max_rows, .min_finished = mins};
    int r = pick_all(m, &w);
    if (r < 0)
        return r;
    /* A walk that saw every task knows the least finished_at of those
     * that stay. */
    if (!w.max || w.n < w.max)
        memcpy(m->min_finished, mins, sizeof(mins));
    for (size_t i = 0; i < w.n; i++)
        remove_task(m, w.out[i]);
    free(w.out);
    op->retention.ret_count = w.n;
    return (int)w.n;
}

/* ---- Sessions (persisted sessions; the live ones are in session-store.c)
 * A chained hash by key, grown at load 1; LOAD and SWEEP walk it all (once
 * at start, and once per sweep interval). ---- */

typedef struct msess {
    store_session v;
    struct msess *next;
} msess;

static void msess_free(msess *e) {
    free(e->v.key);
    free(e->v.value);
    free(e);
}

static msess **sess_find(mem *m, const char *key) {
    msess **p = &m->sess[hash_str(0xcbf29ce484222325ull, key) & (m->nsess_buckets - 1)];
    while (*p && strcmp((*p)->v.key, key) != 0)
        p = &(*p)->next;
    return p;
}

static int sess_grow(mem *m) {
    size_t n = m->nsess_buckets ? m->nsess_buckets * 2 : 64;
    msess **b = calloc(n, sizeof(*b));
    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < m->nsess_buckets; i++)
        for (msess *e = m->sess[i], *next; e; e = next) {
            next = e->next;
            size_t j = hash_str(0xcbf29ce484222325ull, e->v.key) & (n - 1);
            e->next = b[j];
            b[j] = e;
        }
    free(m->sess);
    m->sess = b;
    m->nsess_buckets = n;
    return 0;
}

static int op_session(mem *m, store_op *op) {
    if (op->kind == STORE_OP_SESSION_PUT && m->nsess >= m->nsess_buckets && sess_grow(m) < 0)
        return -ENOMEM;
    if (!m->sess)
        return 0; /* TOUCH / DELETE before any PUT */
    msess **p = sess_find(m, op->session.key), *e = *p;
    switch (op->kind) {
    case STORE_OP_SESSION_PUT: {
        char *v = malloc(op->session.value_len + 1);
        if (!v)
            return -ENOMEM;
        memcpy(v, op->session.value, op->session.value_len);
        v[op->session.value_len] = 0;
        if (!e) {
            e = calloc(1, sizeof(*e));
            if (!e || !(e->v.key = strdup(op->session.key))) {
                free(e);
                free(v);
                return -ENOMEM;
            }
            *p = e;
            m->nsess++;
        }
        free(e->v.value);
        e->v.value = v;
        e->v.value_len = op->session.value_len;
        e->v.created_at = op->session.created_at;
        e->v.expires_at = op->session.expires_at;
        e->v.ttl_ms = op->session.ttl_ms;
        return 1;
    }
    case STORE_OP_SESSION_TOUCH:
        if (!e)
            return 0;
        e->v.expires_at = op->session.expires_at;
        e->v.ttl_ms = op->session.ttl_ms;
        return 1;
    default: /* DELETE */
        if (!e)
            return 0;
        *p = e->next;
        msess_free(e);
        m->nsess--;
        return 1;
    }
}

static int op_session_sweep(mem *m, store_op *op) {
    size_t n = 0;
    for (size_t i = 0; i < m->nsess_buckets; i++)
        for (msess **p = &m->sess[i]; *p;) {
            msess *e = *p;
            if (e->v.expires_at <= op->session_load.now) {
                *p = e->next;
                msess_free(e);
                m->nsess--;
                n++;
            } else
                p = &e->next;
        }
    return (int)MIN(n, (size_t)INT_MAX);
}

static int op_session_load(mem *m, store_op *op) {
    store_session *out = m->nsess ? calloc(m->nsess, sizeof(*out)) : NULL;
    if (m->nsess && !out)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < m->nsess_buckets; i++)
        for (msess *e = m->sess[i]; e; e = e->next) {
            if (e->v.expires_at <= op->session_load.now)
                continue;
            store_session *o = &out[n];
            *o = e->v;
            o->key = strdup(e->v.key);
            o->value = malloc(e->v.value_len + 1);
            if (!o->key || !o->value) {
                free(o->key);
                free(o->value);
                store_sessions_free(out, n);
                return -ENOMEM;
            }
            memcpy(o->value, e->v.value, e->v.value_len + 1);
            n++;
        }
    op->session_load.ret_sessions = out;
    op->session_load.ret_n = n;
    if (n == 0)
        op->session_load.ret_sessions = store_sessions_free(out, 0);
    return (int)MIN(n, (size_t)INT_MAX);
}

static int exec_op(mem *m, store_op *op) {
    switch (op->kind) {
    case STORE_OP_INSERT:
        return op_insert(m, op);
    case STORE_OP_UPDATE:
        return op_update(m, op);
    case STORE_OP_FETCH_READY:
        return op_fetch(m, op);
    case STORE_OP_CLAIM:
        return op_claim(m, op);
    case STORE_OP_GET:
        return op_get(m, op);
    case STORE_OP_LIST:
        return op_list(m, op);
    case STORE_OP_COUNTS:
        return op_counts(m, op);
    case STORE_OP_RECOVER:
        return op_recover(m, op);
    case STORE_OP_PURGE_DEAD:
    case STORE_OP_REQUEUE_DEAD:
        return op_dead(m, op);
    case STORE_OP_RETENTION:
        return op_retention(m, op);
    case STORE_OP_SESSION_PUT:
    case STORE_OP_SESSION_TOUCH:
    case STORE_OP_SESSION_DELETE:
        return op_session(m, op);
    case STORE_OP_SESSION_SWEEP:
        return op_session_sweep(m, op);
    case STORE_OP_SESSION_LOAD:
        return op_session_load(m, op);
    case STORE_OP_QUEUE_PAUSE:
        return op_queue_pause(m, op);
    default:
        return -EINVAL;
    }
}

/* ---- The backend ------------------------------------------------------ */

/* Runs every queued op as one group. */
static void mem_poll(void *data) {
    mem *m = data;
    store_op *group = m->head;
    m->head = m->tail = NULL;
    if (group) {
        size_t nops = 0, ntasks = 0;
        int fault = store_group_begin(m->s, group);
        for (store_op *op = group; op; op = op->priv_next) {
            nops++;
            op->priv_result = fault ? fault : exec_op(m, op);
            if (op->kind == STORE_OP_INSERT && op->priv_result > 0)
                ntasks += (size_t)op->priv_result;
        }
        store_count_commit(m->s, nops, ntasks, !fault);
        store_complete(m->s, group);
    }
    if (m->stopping)
        store_backend_stopped(m->s);
}

static int mem_open(store *s, const store_config *cfg, void **ret_data, char **ret_message) {
    mem *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    pthread_once(&crock_once, crock_table_init);
    m->s = s;
    m->nbuckets = 1024;
    m->by_id = new_table(m->nbuckets);
    if (!m->by_id) {
        free(m);
        return -ENOMEM;
    }
    for (int st = 0; st < STORE_TASK_STATE_MAX; st++)
        m->min_finished[st] = INT64_MAX;
    m->rng = (uint64_t)(uintptr_t)m ^ 0x9E3779B97F4A7C15ull;
    if (!m->rng)
        m->rng = 1;
    *ret_data = m;
    return 0;
}

static void mem_submit(void *data, store_op *op) {
    mem *m = data;
    op->priv_next = NULL;
    if (m->tail)
        m->tail->priv_next = op;
    else {
        /* The first op of a group wakes the poll; the rest ride along. */
        m->head = op;
        store_kick(m->s);
    }
    m->tail = op;
}

static void mem_stop(void *data) {
    mem *m = data;
    m->stopping = true;
    store_kick(m->s);
}

static void mem_free(void *data) {
    mem *m = data;
    if (!m)
        return;
    for (size_t b = 0; b < m->nbuckets; b++)
        for (mtask *t = m->by_id[b], *next; t; t = next) {
            next = t->id_next;
            mtask_free(m, t);
        }
    slab_destroy(&m->slab);
    for (mqueue *q = m->queues, *next; q; q = next) {
        next = q->next;
        free(q->name);
        free(q);
    }
    for (size_t i = 0; i < m->nsess_buckets; i++)
        for (msess *e = m->sess[i], *next; e; e = next) {
            next = e->next;
            msess_free(e);
        }
    free(m->sess);
    store_names_free(m->paused, m->n_paused);
    free(m->by_id);
    free(m->by_key);
    free(m);
}

const store_backend store_backend_memory = {
    .name = "memory",
    .open = mem_open,
    .submit = mem_submit,
    .stop = mem_stop,
    .free = mem_free,
    .poll = mem_poll,
};

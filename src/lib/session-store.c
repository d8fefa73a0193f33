/*
 * session-store.c - the TTL session store; see session-store.h.
 *
 * Memory layout, chosen for the per-session overhead target (docs/
 * PERFORMANCE.md "Sessions"): a session is ONE malloc block (a 42-byte
 * header, then the key, then the value and its NUL); the hash table is an
 * array of pointers (open addressing, linear probing, backward-shift
 * deletion so there are no tombstones, at most 3/4 full); the expiry heap
 * is an array of pointers with each session's index stored in its header.
 * The full 64-bit hash is kept in the header, so probing compares hashes
 * before keys and growing the table never rehashes a key.
 */
#include "session-store.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "macros.h"

typedef struct sess {
    uint64_t hash;
    int64_t created_ms;
    int64_t expires_ms;
    int64_t ttl_ms;
    uint32_t heap_idx;
    uint32_t value_len;
    uint16_t key_len;
    char data[]; /* key (key_len bytes), value (value_len bytes), NUL */
} __attribute__((packed)) sess;

#define SESS_HEADER offsetof(sess, data)

struct session_store {
    uint64_t k0, k1; /* SipHash key */
    sess **slots;
    size_t mask; /* slots - 1; slots is a power of two */
    size_t count;
    sess **heap;
    size_t heap_cap;
    int64_t ttl_ms;
    uint64_t max_sessions;
    size_t max_value;
    bool locked;
    pthread_mutex_t lock;
    void (*on_evict)(void *data, const char *key, size_t key_len);
    void *data;
    uint64_t expired_total, evicted_total;
    size_t bytes;
    uint64_t probes, heap_moves;
};

#define MIN_SLOTS 16

/* ---- SipHash-1-3 (Aumasson & Bernstein; the reduced-round variant Rust
 * and Python use for their hash tables): a keyed PRF, so with a random key
 * an attacker cannot predict which keys collide. ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t siphash13(uint64_t k0, uint64_t k1, const void *in, size_t len) {
    const unsigned char *p = in;
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56, m;
    const unsigned char *end = p + (len & ~(size_t)7);
    for (; p != end; p += 8) {
        memcpy(&m, p, 8); /* little-endian hosts (x86-64, arm64) */
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    switch (len & 7) {
    case 7: b |= (uint64_t)p[6] << 48; _fallthrough_;
    case 6: b |= (uint64_t)p[5] << 40; _fallthrough_;
    case 5: b |= (uint64_t)p[4] << 32; _fallthrough_;
    case 4: b |= (uint64_t)p[3] << 24; _fallthrough_;
    case 3: b |= (uint64_t)p[2] << 16; _fallthrough_;
    case 2: b |= (uint64_t)p[1] << 8;  _fallthrough_;
    case 1: b |= (uint64_t)p[0]; break;
    default: break;
    }
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- locking ---- */

static inline void lock(session_store *s) {
    if (s->locked)
        pthread_mutex_lock(&s->lock);
}

static inline void unlock(session_store *s) {
    if (s->locked)
        pthread_mutex_unlock(&s->lock);
}

/* ---- the expiry heap ---- */

static inline void heap_set(session_store *s, size_t i, sess *e) {
    s->heap[i] = e;
    e->heap_idx = (uint32_t)i;
    s->heap_moves++;
}

static void heap_up(session_store *s, size_t i) {
    sess *e = s->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (s->heap[parent]->expires_ms <= e->expires_ms)
            break;
        heap_set(s, i, s->heap[parent]);
        i = parent;
    }
    heap_set(s, i, e);
}

static void heap_down(session_store *s, size_t i) {
    size_t n = s->count;
    sess *e = s->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && s->heap[c + 1]->expires_ms < s->heap[c]->expires_ms)
            c++;
        if (s->heap[c]->expires_ms >= e->expires_ms)
            break;
        heap_set(s, i, s->heap[c]);
        i = c;
    }
    heap_set(s, i, e);
}

/* Restores the heap after entry i changed its expiry time. */
static void heap_fix(session_store *s, size_t i) {
    if (i > 0 && s->heap[(i - 1) / 2]->expires_ms > s->heap[i]->expires_ms)
        heap_up(s, i);
    else
        heap_down(s, i);
}

/* ---- the hash table ---- */

static inline uint64_t hash_key(const session_store *s, const char *key, size_t len) {
    return siphash13(s->k0, s->k1, key, len);
}

/* The slot holding key, or the empty slot where it would go. */
static size_t find_slot(session_store *s, uint64_t h, const char *key, size_t len) {
    size_t i = (size_t)h & s->mask;
    for (;;) {
        sess *e = s->slots[i];
        s->probes++;
        if (!e || (e->hash == h && e->key_len == len && memcmp(e->data, key, len) == 0))
            return i;
        i = (i + 1) & s->mask;
    }
}

static int table_resize(session_store *s, size_t nslots) {
    sess **ns = calloc(nslots, sizeof(*ns));
    if (!ns)
        return -ENOMEM;
    size_t mask = nslots - 1;
    for (size_t i = 0; i <= s->mask; i++) {
        sess *e = s->slots[i];
        if (!e)
            continue;
        size_t j = (size_t)e->hash & mask;
        while (ns[j])
            j = (j + 1) & mask;
        ns[j] = e;
    }
    free(s->slots);
    s->slots = ns;
    s->mask = mask;
    return 0;
}

/* Empties slot i, moving later entries of its cluster back (no tombstones). */
static void table_remove_slot(session_store *s, size_t i) {
    size_t j = i;
    for (;;) {
        j = (j + 1) & s->mask;
        sess *e = s->slots[j];
        if (!e)
            break;
        size_t home = (size_t)e->hash & s->mask;
        /* Move e into the hole at i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        s->slots[i] = e;
        i = j;
    }
    s->slots[i] = NULL;
}

/* ---- sessions ---- */

/* Unlinks e (whose table slot is `slot`) from table and heap and frees it. */
static void remove_entry(session_store *s, size_t slot, sess *e) {
    table_remove_slot(s, slot);
    size_t i = e->heap_idx, last = s->count - 1;
    s->count--;
    if (i != last) {
        heap_set(s, i, s->heap[last]);
        heap_fix(s, i);
    }
    s->bytes -= (size_t)e->key_len + e->value_len;
    free(e);
}

/* Removes the heap's top (soonest to expire); tells on_evict if asked. */
static void remove_top(session_store *s, bool evicted) {
    sess *e = s->heap[0];
    size_t slot = find_slot(s, e->hash, e->data, e->key_len);
    if (evicted) {
        s->evicted_total++;
        if (s->on_evict)
            s->on_evict(s->data, e->data, e->key_len);
    } else
        s->expired_total++;
    remove_entry(s, slot, e);
}

static inline bool expired(const sess *e, int64_t now) { return e->expires_ms <= now; }

static void fill_info(const sess *e, session_info *ret) {
    if (!ret)
        return;
    ret->created_ms = e->created_ms;
    ret->expires_ms = e->expires_ms;
    ret->ttl_ms = e->ttl_ms;
    ret->value_len = e->value_len;
}

static int check_key(const char *key, size_t len) {
    if (!key || len == 0)
        return -EINVAL;
    if (len > SESSION_KEY_MAX)
        return -ENAMETOOLONG;
    return 0;
}

static int64_t add_ms(int64_t now, int64_t ttl) {
    return now > INT64_MAX - ttl ? INT64_MAX : now + ttl;
}

/*
 * The common insert/replace path.  Looks key up; an expired session under
 * it is removed first.  Returns 1 created, 0 replaced or -errno (nothing
 * changed).
 */
static int store_entry(session_store *s, const char *key, size_t klen, const char *value,
                       size_t vlen, int64_t created, int64_t expires, int64_t ttl, bool keep_created,
                       int64_t now, session_info *ret_info) {
    if (vlen > s->max_value)
        return -E2BIG;
    if (!value && vlen > 0)
        return -EINVAL;
    uint64_t h = hash_key(s, key, klen);
    size_t slot = find_slot(s, h, key, klen);
    sess *old = s->slots[slot];
    if (old && expired(old, now)) {
        s->expired_total++;
        remove_entry(s, slot, old);
        old = NULL;
        slot = find_slot(s, h, key, klen);
    }
    sess *e = malloc(SESS_HEADER + klen + vlen + 1);
    if (!e)
        return -ENOMEM;
    e->hash = h;
    e->key_len = (uint16_t)klen;
    e->value_len = (uint32_t)vlen;
    e->created_ms = old && keep_created ? old->created_ms : created;
    e->expires_ms = expires;
    e->ttl_ms = ttl;
    memcpy(e->data, key, klen);
    if (vlen)
        memcpy(e->data + klen, value, vlen);
    e->data[klen + vlen] = '\0';

    if (old) {
        s->slots[slot] = e;
        size_t i = old->heap_idx;
        heap_set(s, i, e);
        heap_fix(s, i);
        s->bytes += klen + vlen;
        s->bytes -= (size_t)old->key_len + old->value_len;
        free(old);
        fill_info(e, ret_info);
        return 0;
    }

    /* A new session: make room (expired ones first, then evict), grow the
     * table and the heap, then link it in. */
    while (s->max_sessions && s->count >= s->max_sessions)
        remove_top(s, !expired(s->heap[0], now));
    if ((s->count + 1) * 4 > (s->mask + 1) * 3) {
        if (table_resize(s, (s->mask + 1) * 2) < 0) {
            free(e);
            return -ENOMEM;
        }
    }
    if (s->count == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : MIN_SLOTS;
        sess **nh = realloc(s->heap, cap * sizeof(*nh));
        if (!nh) {
            free(e);
            return -ENOMEM;
        }
        s->heap = nh;
        s->heap_cap = cap;
    }
    slot = find_slot(s, h, key, klen);
    s->slots[slot] = e;
    s->heap[s->count] = e;
    e->heap_idx = (uint32_t)s->count;
    s->count++;
    heap_up(s, s->count - 1);
    s->bytes += klen + vlen;
    fill_info(e, ret_info);
    return 1;
}

int session_store_put(session_store *s, const char *key, size_t key_len, const char *value,
                      size_t value_len, int64_t ttl_ms, int64_t now, session_info *ret_info) {
    if (!s)
        return -EINVAL;
    int r = check_key(key, key_len);
    if (r < 0)
        return r;
    if (ttl_ms < 0 || ttl_ms > SESSION_TTL_MAX_MS)
        return -EINVAL;
    lock(s);
    int64_t ttl = ttl_ms ? ttl_ms : s->ttl_ms;
    r = store_entry(s, key, key_len, value, value_len, now, add_ms(now, ttl), ttl, true, now,
                    ret_info);
    unlock(s);
    return r;
}

int session_store_restore(session_store *s, const char *key, size_t key_len, const char *value,
                          size_t value_len, int64_t created_ms, int64_t expires_ms, int64_t ttl_ms,
                          int64_t now) {
    if (!s)
        return -EINVAL;
    int r = check_key(key, key_len);
    if (r < 0)
        return r;
    if (ttl_ms <= 0 || ttl_ms > SESSION_TTL_MAX_MS)
        ttl_ms = s->ttl_ms;
    if (expires_ms <= now)
        return 0;
    lock(s);
    r = store_entry(s, key, key_len, value, value_len, created_ms, expires_ms, ttl_ms, false, now,
                    NULL);
    unlock(s);
    return r < 0 ? r : 1;
}

/* Finds a live session; removes (and counts) an expired one.  Lock held. */
static sess *lookup(session_store *s, const char *key, size_t len, int64_t now) {
    if (s->count == 0)
        return NULL;
    uint64_t h = hash_key(s, key, len);
    size_t slot = find_slot(s, h, key, len);
    sess *e = s->slots[slot];
    if (e && expired(e, now)) {
        s->expired_total++;
        remove_entry(s, slot, e);
        return NULL;
    }
    return e;
}

int session_store_get(session_store *s, const char *key, size_t key_len, int64_t now,
                      session_info *ret_info, char **ret_value) {
    if (!s)
        return -EINVAL;
    int r = check_key(key, key_len);
    if (r < 0)
        return r == -ENAMETOOLONG ? -ENOENT : r;
    lock(s);
    sess *e = lookup(s, key, key_len, now);
    if (!e) {
        r = -ENOENT;
        goto finish;
    }
    if (ret_value) {
        char *v = malloc((size_t)e->value_len + 1);
        if (!v) {
            r = -ENOMEM;
            goto finish;
        }
        memcpy(v, e->data + e->key_len, (size_t)e->value_len + 1);
        *ret_value = v;
    }
    fill_info(e, ret_info);
    r = 0;
finish:
    unlock(s);
    return r;
}

int session_store_peek(session_store *s, const char *key, size_t key_len, int64_t now,
                       session_info *ret_info, const char **ret_value) {
    if (!s)
        return -EINVAL;
    if (s->locked)
        return -EPERM;
    int r = check_key(key, key_len);
    if (r < 0)
        return r == -ENAMETOOLONG ? -ENOENT : r;
    sess *e = lookup(s, key, key_len, now);
    if (!e)
        return -ENOENT;
    fill_info(e, ret_info);
    if (ret_value)
        *ret_value = e->data + e->key_len;
    return 0;
}

int session_store_touch(session_store *s, const char *key, size_t key_len, int64_t ttl_ms,
                        int64_t now, session_info *ret_info) {
    if (!s)
        return -EINVAL;
    int r = check_key(key, key_len);
    if (r < 0)
        return r == -ENAMETOOLONG ? -ENOENT : r;
    if (ttl_ms < 0 || ttl_ms > SESSION_TTL_MAX_MS)
        return -EINVAL;
    lock(s);
    sess *e = lookup(s, key, key_len, now);
    if (!e) {
        r = -ENOENT;
        goto finish;
    }
    if (ttl_ms)
        e->ttl_ms = ttl_ms;
    e->expires_ms = add_ms(now, e->ttl_ms);
    heap_fix(s, e->heap_idx);
    fill_info(e, ret_info);
    r = 0;
finish:
    unlock(s);
    return r;
}

int session_store_delete(session_store *s, const char *key, size_t key_len, int64_t now) {
    if (!s)
        return -EINVAL;
    int r = check_key(key, key_len);
    if (r < 0)
        return r == -ENAMETOOLONG ? -ENOENT : r;
    lock(s);
    r = -ENOENT;
    if (s->count > 0) {
        uint64_t h = hash_key(s, key, key_len);
        size_t slot = find_slot(s, h, key, key_len);
        sess *e = s->slots[slot];
        if (e) {
            if (expired(e, now))
                s->expired_total++;
            else
                r = 0;
            remove_entry(s, slot, e);
        }
    }
    unlock(s);
    return r;
}

size_t session_store_sweep(session_store *s, int64_t now, size_t max) {
    if (!s)
        return 0;
    lock(s);
    size_t n = 0;
    while (s->count > 0 && expired(s->heap[0], now) && (max == 0 || n < max)) {
        remove_top(s, false);
        n++;
    }
    /* Give memory back after a mass expiry (the table never gets under
     * 1/16 full while large). */
    if (s->mask + 1 > MIN_SLOTS && s->count * 16 < s->mask + 1) {
        size_t want = MIN_SLOTS;
        while (want * 3 < s->count * 4 * 2)
            want *= 2;
        (void)table_resize(s, want); /* on -ENOMEM the old table stays */
        if (s->heap_cap > MIN_SLOTS && s->count * 4 < s->heap_cap) {
            size_t cap = s->count > MIN_SLOTS ? s->count * 2 : MIN_SLOTS;
            sess **nh = realloc(s->heap, cap * sizeof(*nh));
            if (nh) {
                s->heap = nh;
                s->heap_cap = cap;
            }
        }
    }
    unlock(s);
    return n;
}

int64_t session_store_next_expiry(session_store *s) {
    if (!s)
        return INT64_MAX;
    lock(s);
    int64_t t = s->count ? s->heap[0]->expires_ms : INT64_MAX;
    unlock(s);
    return t;
}

void session_store_get_stats(session_store *s, session_store_stats *ret) {
    memset(ret, 0, sizeof(*ret));
    if (!s)
        return;
    lock(s);
    ret->count = s->count;
    ret->expired_total = s->expired_total;
    ret->evicted_total = s->evicted_total;
    ret->bytes = s->bytes;
    ret->table_slots = s->mask + 1;
    unlock(s);
}

int64_t session_store_default_ttl(const session_store *s) { return s ? s->ttl_ms : 0; }
uint64_t session_store_max_sessions(const session_store *s) { return s ? s->max_sessions : 0; }
size_t session_store_max_value(const session_store *s) { return s ? s->max_value : 0; }

void session_store_work(session_store *s, uint64_t *ret_probes, uint64_t *ret_heap_moves) {
    lock(s);
    *ret_probes = s->probes;
    *ret_heap_moves = s->heap_moves;
    unlock(s);
}

int session_store_check(session_store *s) {
    int r = 0;
    size_t n = 0, bytes = 0;
    lock(s);
    for (size_t i = 0; i <= s->mask; i++) {
        sess *e = s->slots[i];
        if (!e)
            continue;
        n++;
        bytes += (size_t)e->key_len + e->value_len;
        /* No empty slot between its home and where it sits. */
        for (size_t j = (size_t)e->hash & s->mask; j != i; j = (j + 1) & s->mask)
            if (!s->slots[j])
                r = -EUCLEAN;
        if (e->hash != hash_key(s, e->data, e->key_len) || e->heap_idx >= s->count ||
            s->heap[e->heap_idx] != e)
            r = -EUCLEAN;
    }
    for (size_t i = 1; i < s->count; i++)
        if (s->heap[(i - 1) / 2]->expires_ms > s->heap[i]->expires_ms)
            r = -EUCLEAN;
    if (n != s->count || bytes != s->bytes || (s->count + 1) * 4 > (s->mask + 1) * 3 + 4)
        r = -EUCLEAN;
    unlock(s);
    return r;
}

/* ---- lifecycle ---- */

static void seed(session_store *s) {
    uint64_t k[2];
    if (getrandom(k, sizeof(k), GRND_NONBLOCK) != (ssize_t)sizeof(k)) {
        /* Early boot without entropy: still differ per process and store. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)s;
        k[1] = (uint64_t)ts.tv_sec * 0xc2b2ae3d27d4eb4fULL ^ (uint64_t)(uintptr_t)&k;
    }
    s->k0 = k[0];
    s->k1 = k[1];
}

int session_store_new(const session_store_config *cfg, session_store **ret) {
    if (!cfg || !ret || cfg->ttl_ms < 0 || cfg->ttl_ms > SESSION_TTL_MAX_MS ||
        cfg->max_value > SESSION_VALUE_MAX_LIMIT)
        return -EINVAL;
    session_store *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->slots = calloc(MIN_SLOTS, sizeof(*s->slots));
    if (!s->slots) {
        free(s);
        return -ENOMEM;
    }
    s->mask = MIN_SLOTS - 1;
    s->ttl_ms = cfg->ttl_ms ? cfg->ttl_ms : 3600 * 1000;
    s->max_sessions = cfg->max_sessions;
    s->max_value = cfg->max_value ? cfg->max_value : SESSION_VALUE_MAX_DEFAULT;
    s->on_evict = cfg->on_evict;
    s->data = cfg->data;
    s->locked = cfg->locked;
    if (s->locked)
        pthread_mutex_init(&s->lock, NULL);
    seed(s);
    *ret = s;
    return 0;
}

session_store *session_store_free(session_store *s) {
    if (!s)
        return NULL;
    for (size_t i = 0; i < s->count; i++)
        free(s->heap[i]);
    free(s->heap);
    free(s->slots);
    if (s->locked)
        pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
}

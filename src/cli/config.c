/*
 * config.c - tend.yaml -> tend_config.
 *
 * The file is loaded with libyaml's node API into one document, then
 * walked once along the schema.  The walk never stops at the first
 * problem: every error is recorded with the position of the node at fault
 * and the key path that led to it, and the walk goes on with the default
 * value.  Errors are sorted into file order at the end.
 *
 * `defaults:` is merged at the node level: for each service the walker
 * sees the service's own pairs followed by the defaults' pairs the service
 * does not have; restart, stop, resources and env merge key by key.
 * `defaults` itself is first walked alone (reporting its own errors once,
 * under the path "defaults"); while a service is walked, errors in nodes
 * that came from `defaults` are suppressed ("quiet") so they are not
 * repeated per service.  Checks that concern the service as a whole
 * (missing command, watchdog without notify, unknown dependencies,
 * duplicate probe ports) are never quiet.
 *
 * Limits: 4 MiB of YAML, 1000 services and queues, 64 KiB strings, 10000
 * items per mapping or sequence, 64 levels of nesting, 200000 node visits
 * (a guard against alias bombs: libyaml shares aliased nodes, so a walk
 * could visit one node many times), 100 errors.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "log.h"
#include "macros.h"
#include "parse.h"
#include "strmap.h"
#include "strv.h"
#include "utf8.h"

#define CONFIG_MAX_FILE (4u << 20)
#define CONFIG_MAX_SERVICES 1000
#define CONFIG_MAX_QUEUES 1000
#define CONFIG_MAX_STRING (64u << 10)
#define CONFIG_MAX_ITEMS 10000
#define CONFIG_MAX_VISITS 200000
#define CONFIG_MAX_ERRORS 100
#define CONFIG_MAX_ENV_FILE (1u << 20)
#define CONFIG_MAX_NAME 64
#define CONFIG_MAX_DEPTH 64
#define CONFIG_MAX_ANCHORS 100
#define CONFIG_MAX_ALIASES 10000

typedef struct cerror {
    size_t line, col, seq;
    char *msg;
} cerror;

/* A tcp/http probe target, for the duplicate-port check. */
typedef struct port_use {
    size_t service;
    char *host;
    int port;
    yaml_node_t *node;
    char *path;
} port_use;

/* Per-service state that does not go into tend_service_spec. */
typedef struct svc_extra {
    yaml_node_t *node;          /* the service's mapping (or null scalar) */
    yaml_node_t *key;           /* its name in `services` */
    yaml_node_t **dep_nodes;    /* parallel to spec.deps */
    yaml_node_t *watchdog_node;
    yaml_node_t *ready_node;
    bool policy_set;
    bool command_seen;          /* reported already if it was invalid */
    char **env_file_vars;
    char **env_map;
} svc_extra;

typedef struct ctx {
    const char *file;
    const char *dir;
    yaml_document_t *doc;
    cerror *errors;
    size_t n_errors;
    size_t seq;
    char *path;
    size_t path_len, path_cap;
    bool quiet;         /* drop errors: the node came from `defaults` */
    bool defaults_pass; /* walking `defaults` on its own */
    bool oom;
    bool stop;          /* too many visits or errors: unwind */
    size_t visits;
    port_use *ports;
    size_t n_ports;
    size_t cur_service;
} ctx;

/* A key/value pair of a (possibly merged) mapping. */
typedef struct kv {
    yaml_node_t *key, *val;
    const char *name;
    bool dflt;
} kv;

static const char *const TOP_KEYS[] = {
    "name", "state_dir", "api", "store", "log", "defaults", "services", "tasks", "sessions",
    "health", NULL,
};
static const char *const API_KEYS[] = {"listen", "token_file", NULL};
static const char *const LOG_KEYS[] = {"format", "level", "max_size", "max_files", NULL};
static const char *const SERVICE_KEYS[] = {
    "command", "cwd", "env", "env_file", "user", "critical", "oneshot", "depends_on", "ready",
    "live", "watchdog", "restart", "stop", "replicas", "resources", NULL,
};
static const char *const STAGE_KEYS[] = {
    "name", "exec", "tcp", "http", "notify", "expect_body", "interval", "start_interval",
    "probe_timeout", "failure_threshold", "success_threshold", "timeout", "critical", NULL,
};
static const char *const LIVE_KEYS[] = {
    "exec", "tcp", "http", "notify", "expect_body", "interval", "start_interval",
    "probe_timeout", "failure_threshold", "success_threshold", "initial_delay", NULL,
};
static const char *const RESTART_KEYS[] = {
    "policy", "delay", "max_delay", "jitter", "max_attempts", "window", "reset_after", NULL,
};
static const char *const STOP_KEYS[] = {"signal", "timeout", NULL};
static const char *const RESOURCES_KEYS[] = {"memory_max", "nofile", NULL};
static const char *const TASKS_KEYS[] = {"workers", "retention", "max_payload", "queues", NULL};
static const char *const RETENTION_KEYS[] = {"succeeded", "dead", NULL};
static const char *const QUEUE_KEYS[] = {
    "handler", "concurrency", "timeout", "max_attempts", "backoff", "rate_limit",
    "circuit_breaker", "batch", "dry_run", NULL,
};
static const char *const HANDLER_KEYS[] = {"exec", "http", "pull", "ack", NULL};
static const char *const BACKOFF_KEYS[] = {"base", "max", "jitter", NULL};
static const char *const BREAKER_KEYS[] = {"failure_threshold", "open_for", NULL};
static const char *const BATCH_KEYS[] = {"size", "max_wait", NULL};
static const char *const SESSIONS_KEYS[] = {
    "ttl", "cleanup_interval", "max_sessions", "persist", "max_value", NULL,
};
static const char *const HEALTH_KEYS[] = {"interval", NULL};

static bool streq(const char *a, const char *b) { return strcmp(a, b) == 0; }

/* ---- errors and key paths ---------------------------------------------- */

static void error_add(ctx *c, size_t line, size_t col, char *msg) {
    if (!msg) {
        c->oom = true;
        return;
    }
    if (c->n_errors >= CONFIG_MAX_ERRORS) {
        free(msg);
        c->stop = true;
        return;
    }
    if (c->n_errors % 16 == 0) {
        cerror *e = realloc(c->errors, (c->n_errors + 16) * sizeof(cerror));
        if (!e) {
            free(msg);
            c->oom = true;
            return;
        }
        c->errors = e;
    }
    c->errors[c->n_errors++] = (cerror){.line = line, .col = col, .seq = c->seq++, .msg = msg};
}

/* Records "FILE:LINE:COL: PATH: MESSAGE" for node n (or "FILE: MESSAGE"
 * when n is NULL), unless the walk is quiet. */
/*
 * A message quotes what the file says, which can hold anything: control
 * characters (a newline would split the message, an escape sequence would
 * reach the terminal) become \n, \t or \xNN, bytes that are not UTF-8
 * become '?', and past CONFIG_MESSAGE_MAX bytes the rest is cut ("...").
 * Returns a new string, or NULL (out of memory).
 */
#define CONFIG_MESSAGE_MAX 1000
static char *one_line(const char *msg) {
    char *out = malloc(CONFIG_MESSAGE_MAX + 4);
    if (!out)
        return NULL;
    if (!text_escape_controls(out, CONFIG_MESSAGE_MAX + 1, msg))
        memcpy(out + strlen(out), "...", 4); /* room kept: at most MAX + 3 + NUL */
    utf8_sanitize(out);
    return out;
}

_printf_(3, 4) static void error_at(ctx *c, const yaml_node_t *n, const char *fmt, ...) {
    if (c->quiet || c->oom)
        return;
    char *raw = NULL, *full = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&raw, fmt, ap);
    va_end(ap);
    if (r < 0) {
        c->oom = true;
        return;
    }
    size_t line = 0, col = 0;
    if (n) {
        line = n->start_mark.line + 1;
        col = n->start_mark.column + 1;
        r = c->path_len > 0 ? asprintf(&full, "%s:%zu:%zu: %s: %s", c->file, line, col, c->path, raw)
                            : asprintf(&full, "%s:%zu:%zu: %s", c->file, line, col, raw);
    } else
        r = asprintf(&full, "%s: %s", c->file, raw);
    free(raw);
    /* The key path holds the file's key names: the whole line is made safe. */
    char *msg = r < 0 ? NULL : one_line(full);
    if (r >= 0)
        free(full);
    error_add(c, line, col, msg);
}

static void path_pop(ctx *c, size_t len);

/* Appends n bytes to the key path; false when out of memory. */
static bool path_append(ctx *c, const char *seg, size_t n) {
    if (c->path_len + n + 1 > c->path_cap) {
        size_t cap = MAX(c->path_cap * 2, c->path_len + n + 64);
        char *p = realloc(c->path, cap);
        if (!p) {
            c->oom = true;
            return false;
        }
        c->path = p;
        c->path_cap = cap;
    }
    memcpy(c->path + c->path_len, seg, n);
    c->path_len += n;
    c->path[c->path_len] = '\0';
    return true;
}

/* Appends a formatted segment to the key path; returns the length to
 * restore with path_pop().  (Every node visited pushes one: no
 * allocation for the usual short segment.) */
_printf_(2, 3) static size_t path_push(ctx *c, const char *fmt, ...) {
    size_t saved = c->path_len;
    char buf[128], *seg = buf;
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (r >= (int)sizeof(buf)) {
        va_start(ap, fmt);
        r = vasprintf(&seg, fmt, ap);
        va_end(ap);
    }
    if (r < 0) {
        c->oom = true;
        return saved;
    }
    if (!path_append(c, seg, (size_t)r))
        c->path_len = saved;
    if (seg != buf)
        free(seg);
    return saved;
}

static size_t path_push_key(ctx *c, const char *key) {
    size_t saved = c->path_len;
    if ((saved > 0 && !path_append(c, ".", 1)) || !path_append(c, key, strlen(key)))
        path_pop(c, saved);
    return saved;
}

static void path_pop(ctx *c, size_t len) {
    c->path_len = len;
    if (c->path)
        c->path[len] = '\0';
}

/* ---- nodes ----------------------------------------------------------- */

/* Returns the node with index i, counting the visit. */
static yaml_node_t *node_at(ctx *c, int i) {
    if (++c->visits == CONFIG_MAX_VISITS) {
        bool q = c->quiet;
        c->quiet = false;
        error_at(c, NULL, "the document is too complex (more than %d nodes after aliases)",
                 CONFIG_MAX_VISITS);
        c->quiet = q;
        c->stop = true;
    }
    return yaml_document_get_node(c->doc, i);
}

static bool walking(const ctx *c) { return !c->oom && !c->stop; }

static const char *scalar_value(const yaml_node_t *n) {
    return (const char *)n->data.scalar.value;
}

static bool is_null(const yaml_node_t *n) {
    if (!n)
        return true;
    if (n->type != YAML_SCALAR_NODE)
        return false;
    if (n->tag && streq((const char *)n->tag, YAML_NULL_TAG))
        return true;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = scalar_value(n);
    return streq(v, "") || streq(v, "~") || streq(v, "null") || streq(v, "Null") ||
           streq(v, "NULL");
}

static const char *node_kind(const yaml_node_t *n) {
    if (is_null(n))
        return "nothing (null)";
    switch (n->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a sequence";
    default: return "a string";
    }
}

/* Joins a NULL-terminated key list for "expected one of" messages. */
static char *join_keys(const char *const *keys) {
    return strv_join((char *const *)keys, ", ");
}

static void unknown_key(ctx *c, const yaml_node_t *key, const char *name,
                        const char *const *keys) {
    _cleanup_free_ char *list = join_keys(keys);
    if (!list) {
        c->oom = true;
        return;
    }
    error_at(c, key, "unknown key \"%s\" (expected one of: %s)", name, list);
}

static bool key_known(const char *name, const char *const *keys) {
    for (size_t i = 0; keys[i]; i++)
        if (streq(name, keys[i]))
            return true;
    return false;
}

static yaml_node_t *map_lookup(ctx *c, yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && streq(scalar_value(k), key))
            return yaml_document_get_node(c->doc, p->value);
    }
    return NULL;
}

static size_t map_size(const yaml_node_t *n) {
    return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

static size_t seq_size(const yaml_node_t *n) {
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

/*
 * Collects the pairs of `own` followed by the pairs of `dflt` whose key
 * `own` lacks (marked dflt).  A null `own` is an empty mapping; anything
 * else that is not a mapping is reported and yields -1.  Non-string and
 * duplicate keys of `own` are reported and skipped; those of `dflt` were
 * reported when `defaults` was walked and are skipped silently.  Returns
 * the number of pairs with a new array in *ret (NULL when 0).
 */
static int map_pairs(ctx *c, yaml_node_t *own, yaml_node_t *dflt, kv **ret) {
    *ret = NULL;
    if (own && !is_null(own) && own->type != YAML_MAPPING_NODE) {
        error_at(c, own, "expected a mapping, got %s", node_kind(own));
        return -1;
    }
    if (dflt && dflt->type != YAML_MAPPING_NODE)
        dflt = NULL;
    if (own && own->type != YAML_MAPPING_NODE)
        own = NULL;
    size_t n_own = own ? map_size(own) : 0, n_dflt = dflt ? map_size(dflt) : 0;
    if (n_own > CONFIG_MAX_ITEMS || n_dflt > CONFIG_MAX_ITEMS) {
        error_at(c, n_own > CONFIG_MAX_ITEMS ? own : dflt, "too many keys (at most %d)",
                 CONFIG_MAX_ITEMS);
        return -1;
    }
    if (n_own + n_dflt == 0)
        return 0;
    kv *v = calloc(n_own + n_dflt, sizeof(kv));
    if (!v) {
        c->oom = true;
        return -1;
    }
    /* Each key is looked for among those before it: by a scan in the few
     * keys of a service, by a hash in `services:` and other long ones. */
    strmap seen = {0};
    bool hashed = n_own + n_dflt > 16;
    if (hashed && strmap_init(&seen, n_own + n_dflt) < 0) {
        free(v);
        c->oom = true;
        return -1;
    }
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        yaml_node_t *m = pass == 0 ? own : dflt;
        if (!m)
            continue;
        for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
             p++) {
            if (!walking(c))
                break;
            yaml_node_t *k = node_at(c, p->key), *val = node_at(c, p->value);
            if (!k || !val)
                continue;
            if (k->type != YAML_SCALAR_NODE) {
                if (pass == 0)
                    error_at(c, k, "expected a string key, got %s", node_kind(k));
                continue;
            }
            const char *name = scalar_value(k);
            size_t i = 0;
            if (!hashed) {
                while (i < n && !streq(v[i].name, name))
                    i++;
            } else {
                int r = strmap_put(&seen, name, n, &i);
                if (r < 0) {
                    c->oom = true;
                    break;
                }
                if (r > 0)
                    i = n; /* not seen before */
            }
            if (i < n) {
                /* In defaults, the key is either overridden by the
                 * service or a duplicate reported with defaults. */
                if (pass == 0)
                    error_at(c, k, "duplicate key \"%s\" (first at line %zu)", name,
                             v[i].key->start_mark.line + 1);
                continue;
            }
            v[n++] = (kv){.key = k, .val = val, .name = name, .dflt = pass == 1};
        }
    }
    strmap_done(&seen);
    if (n == 0) {
        free(v);
        return 0;
    }
    *ret = v;
    return (int)n;
}

/*
 * Walks the pairs of a (merged) mapping: unknown keys are reported, known
 * ones are passed to fn with the key path extended and quiet set for pairs
 * from `defaults`.
 */
typedef void (*pair_fn)(ctx *c, const kv *p, void *userdata);

static void map_walk(ctx *c, yaml_node_t *own, yaml_node_t *dflt, const char *const *keys,
                     pair_fn fn, void *userdata) {
    kv *pairs = NULL;
    int n = map_pairs(c, own, dflt, &pairs);
    for (int i = 0; i < n && walking(c); i++) {
        const kv *p = &pairs[i];
        bool quiet = c->quiet;
        c->quiet = quiet || p->dflt;
        if (!key_known(p->name, keys))
            unknown_key(c, p->key, p->name, keys);
        else {
            size_t saved = path_push_key(c, p->name);
            fn(c, p, userdata);
            path_pop(c, saved);
        }
        c->quiet = quiet;
    }
    free(pairs);
}

/* ---- strings and ${VAR} ---------------------------------------------- */

typedef struct dbuf {
    char *p;
    size_t len, cap;
    bool oom;
} dbuf;

static void dbuf_add(dbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = MAX(b->cap * 2, b->len + n + 32);
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/*
 * Expands ${VAR}, ${VAR:-default} (default when VAR is unset or empty) and
 * $$ in s.  A `$` followed by anything else is literal.  Returns 0 with a
 * new string in *ret, -ENOMEM, or -EINVAL with a static reason in *why.
 */
static int expand_vars(const char *s, char **ret, const char **why) {
    dbuf b = {0};
    dbuf_add(&b, "", 0);
    while (*s) {
        const char *d = strchr(s, '$');
        if (!d) {
            dbuf_add(&b, s, strlen(s));
            break;
        }
        dbuf_add(&b, s, (size_t)(d - s));
        if (d[1] == '$') {
            dbuf_add(&b, "$", 1);
            s = d + 2;
            continue;
        }
        if (d[1] != '{') {
            dbuf_add(&b, "$", 1);
            s = d + 1;
            continue;
        }
        const char *name = d + 2, *end = strchr(name, '}');
        if (!end) {
            free(b.p);
            *why = "unterminated \"${\"";
            return -EINVAL;
        }
        size_t nlen = 0;
        if (isalpha((unsigned char)name[0]) || name[0] == '_')
            while (isalnum((unsigned char)name[nlen]) || name[nlen] == '_')
                nlen++;
        const char *rest = name + nlen, *dflt = NULL;
        if (nlen == 0 || (rest != end && !(rest[0] == ':' && rest[1] == '-'))) {
            free(b.p);
            *why = "invalid variable reference";
            return -EINVAL;
        }
        if (rest != end)
            dflt = rest + 2;
        char *var = strndup(name, nlen);
        if (!var) {
            free(b.p);
            return -ENOMEM;
        }
        const char *val = getenv(var);
        free(var);
        if (dflt && (!val || !*val))
            dbuf_add(&b, dflt, (size_t)(end - dflt));
        else if (val)
            dbuf_add(&b, val, strlen(val));
        s = end + 1;
    }
    if (b.oom) {
        free(b.p);
        return -ENOMEM;
    }
    *ret = b.p;
    return 0;
}

/*
 * Returns 0 and the expanded string value of scalar n in *ret (caller
 * frees), or -1 after reporting a problem.  `what` names the expected
 * value in type errors ("a string", "a duration").
 */
static int get_str(ctx *c, yaml_node_t *n, const char *what, char **ret) {
    if (n->type != YAML_SCALAR_NODE) {
        error_at(c, n, "expected %s, got %s", what, node_kind(n));
        return -1;
    }
    if (n->data.scalar.length > CONFIG_MAX_STRING) {
        error_at(c, n, "string is too long (more than %u bytes)", CONFIG_MAX_STRING);
        return -1;
    }
    if (strlen(scalar_value(n)) != n->data.scalar.length) {
        error_at(c, n, "string contains a NUL character");
        return -1;
    }
    const char *why = NULL;
    char *s = NULL;
    int r = expand_vars(scalar_value(n), &s, &why);
    if (r == -ENOMEM) {
        c->oom = true;
        return -1;
    }
    if (r < 0) {
        error_at(c, n, "%s in \"%s\" (use ${VAR} or ${VAR:-default}; write $$ for a literal $)",
                 why, scalar_value(n));
        return -1;
    }
    if (strlen(s) > CONFIG_MAX_STRING) {
        error_at(c, n, "string is too long after expansion (more than %u bytes)",
                 CONFIG_MAX_STRING);
        free(s);
        return -1;
    }
    *ret = s;
    return 0;
}

/* Replaces *dst with a new string value; 0 or -1. */
static int set_str(ctx *c, yaml_node_t *n, char **dst) {
    char *s = NULL;
    if (get_str(c, n, "a string", &s) < 0)
        return -1;
    free(*dst);
    *dst = s;
    return 0;
}

static int get_bool(ctx *c, yaml_node_t *n, bool *ret) {
    _cleanup_free_ char *s = NULL;
    int b;
    if (get_str(c, n, "true or false", &s) < 0)
        return -1;
    if (parse_bool(s, &b) < 0) {
        error_at(c, n, "invalid boolean \"%s\" (expected true or false)", s);
        return -1;
    }
    *ret = b;
    return 0;
}

static int get_duration(ctx *c, yaml_node_t *n, bool positive, int64_t *ret) {
    _cleanup_free_ char *s = NULL;
    int64_t ms;
    if (get_str(c, n, "a duration", &s) < 0)
        return -1;
    if (parse_duration_ms(s, &ms) < 0) {
        error_at(c, n, "invalid duration \"%s\" (try 500ms, 5s, 2m)", s);
        return -1;
    }
    if (positive && ms <= 0) {
        error_at(c, n, "duration \"%s\" must be greater than 0 (try 500ms, 5s, 2m)", s);
        return -1;
    }
    *ret = ms;
    return 0;
}

static int get_size(ctx *c, yaml_node_t *n, uint64_t *ret) {
    _cleanup_free_ char *s = NULL;
    uint64_t v;
    if (get_str(c, n, "a size", &s) < 0)
        return -1;
    if (parse_size(s, &v) < 0) {
        error_at(c, n, "invalid size \"%s\" (try 512K, 10M, 1G)", s);
        return -1;
    }
    *ret = v;
    return 0;
}

static int get_ll(ctx *c, yaml_node_t *n, long long min, long long max, long long *ret) {
    _cleanup_free_ char *s = NULL;
    long long v;
    if (get_str(c, n, "an integer", &s) < 0)
        return -1;
    int r = parse_int(s, min, max, &v);
    if (r == -ERANGE) {
        error_at(c, n, "%s is out of range (expected %lld to %lld)", s, min, max);
        return -1;
    }
    if (r < 0) {
        error_at(c, n, "invalid integer \"%s\" (expected a whole number from %lld to %lld)", s,
                 min, max);
        return -1;
    }
    *ret = v;
    return 0;
}

static int get_int(ctx *c, yaml_node_t *n, int min, int max, int *ret) {
    long long v;
    if (get_ll(c, n, min, max, &v) < 0)
        return -1;
    *ret = (int)v;
    return 0;
}

static int get_fraction(ctx *c, yaml_node_t *n, double *ret) {
    _cleanup_free_ char *s = NULL;
    double v;
    if (get_str(c, n, "a number", &s) < 0)
        return -1;
    if (parse_double(s, &v) < 0) {
        error_at(c, n, "invalid number \"%s\" (expected a fraction from 0 to 1, e.g. 0.2)", s);
        return -1;
    }
    if (v < 0 || v > 1) {
        error_at(c, n, "%s is out of range (expected a fraction from 0 to 1, e.g. 0.2)", s);
        return -1;
    }
    *ret = v;
    return 0;
}

static int get_rate(ctx *c, yaml_node_t *n, double *ret) {
    _cleanup_free_ char *s = NULL;
    double v;
    if (get_str(c, n, "a rate", &s) < 0)
        return -1;
    if (parse_rate(s, &v) < 0) {
        error_at(c, n, "invalid rate \"%s\" (try 50/s, 600/m, 1000/h)", s);
        return -1;
    }
    *ret = v;
    return 0;
}

static int get_signal(ctx *c, yaml_node_t *n, int *ret) {
    _cleanup_free_ char *s = NULL;
    int sig;
    if (get_str(c, n, "a signal", &s) < 0)
        return -1;
    if (parse_signal(s, &sig) < 0) {
        error_at(c, n, "invalid signal \"%s\" (try TERM, INT, QUIT, HUP, KILL, USR1 or a number)",
                 s);
        return -1;
    }
    *ret = sig;
    return 0;
}

/* Makes p absolute against dir; "." and leading "./" are dropped. */
static char *path_abs(const char *dir, const char *p) {
    if (p[0] == '/')
        return strdup(p);
    while (p[0] == '.' && p[1] == '/') {
        p += 2;
        while (*p == '/')
            p++;
    }
    if (streq(p, ".") || !*p)
        return strdup(dir);
    char *r = NULL;
    if (asprintf(&r, "%s%s%s", dir, streq(dir, "/") ? "" : "/", p) < 0)
        return NULL;
    return r;
}

/* A path relative to the config's directory, made absolute. */
static int get_path(ctx *c, yaml_node_t *n, char **ret) {
    _cleanup_free_ char *s = NULL;
    if (get_str(c, n, "a path", &s) < 0)
        return -1;
    if (!*s) {
        error_at(c, n, "empty path");
        return -1;
    }
    char *a = path_abs(c->dir, s);
    if (!a) {
        c->oom = true;
        return -1;
    }
    *ret = a;
    return 0;
}

/*
 * A command: a sequence of strings (argv), or a string run by /bin/sh -c.
 * Returns 0 with a new argv in *ret_argv, -1 after reporting.
 */
static int get_argv(ctx *c, yaml_node_t *n, char ***ret_argv, bool *ret_shell) {
    char **argv = NULL;
    bool shell = false;
    if (n->type == YAML_SEQUENCE_NODE) {
        if (seq_size(n) > CONFIG_MAX_ITEMS) {
            error_at(c, n, "too many items (at most %d)", CONFIG_MAX_ITEMS);
            return -1;
        }
        if (seq_size(n) == 0) {
            error_at(c, n, "empty command (expected [\"program\", \"arg\", ...] or a shell "
                           "command line)");
            return -1;
        }
        argv = calloc(seq_size(n) + 1, sizeof(char *));
        if (!argv) {
            c->oom = true;
            return -1;
        }
        bool bad = false;
        size_t i = 0;
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             it < n->data.sequence.items.top && walking(c); it++, i++) {
            yaml_node_t *item = node_at(c, *it);
            char *s = NULL;
            size_t saved = path_push(c, "[%zu]", i);
            if (!item || get_str(c, item, "a string", &s) < 0)
                bad = true;
            else if (i == 0 && !*s) {
                error_at(c, item, "empty program name");
                bad = true;
            }
            if (bad)
                free(s); /* argv is dropped; stop filling it, keep checking */
            else
                argv[i] = s;
            path_pop(c, saved);
        }
        if (bad || !walking(c)) {
            strv_free(argv);
            return -1;
        }
    } else if (n->type == YAML_SCALAR_NODE && !is_null(n)) {
        _cleanup_free_ char *s = NULL;
        if (get_str(c, n, "a command", &s) < 0)
            return -1;
        if (!*s) {
            error_at(c, n, "empty command (expected [\"program\", \"arg\", ...] or a shell "
                           "command line)");
            return -1;
        }
        if (strv_push(&argv, "/bin/sh") < 0 || strv_push(&argv, "-c") < 0 ||
            strv_push(&argv, s) < 0) {
            strv_free(argv);
            c->oom = true;
            return -1;
        }
        shell = true;
    } else {
        error_at(c, n, "expected a command (a sequence of strings or a string), got %s",
                 node_kind(n));
        return -1;
    }
    *ret_argv = argv;
    if (ret_shell)
        *ret_shell = shell;
    return 0;
}

static bool valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > CONFIG_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
            return false;
    return true;
}

static bool valid_env_name(const char *s) {
    if (!isalpha((unsigned char)s[0]) && s[0] != '_')
        return false;
    for (size_t i = 1; s[i]; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return false;
    return true;
}

/* ---- host:port and URLs ---------------------------------------------- */

static int parse_port(const char *s, size_t len, int min, int *ret) {
    if (len == 0 || len > 5)
        return -EINVAL;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > 65535)
        return -EINVAL;
    *ret = v;
    return 0;
}

/* "host:port", ":port", "port", "[v6]:port"; empty host -> default_host. */
static int parse_hostport(const char *s, const char *default_host, int min_port, char **ret_host,
                          int *ret_port) {
    const char *host = s, *port;
    size_t hlen;
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e || e[1] != ':' || e == s + 1)
            return -EINVAL;
        host = s + 1;
        hlen = (size_t)(e - host);
        port = e + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) {
            hlen = 0;
            port = s;
        } else {
            if (memchr(s, ':', (size_t)(colon - s)))
                return -EINVAL; /* bare IPv6 needs brackets */
            hlen = (size_t)(colon - s);
            port = colon + 1;
        }
    }
    int p;
    if (parse_port(port, strlen(port), min_port, &p) < 0)
        return -EINVAL;
    for (size_t i = 0; i < hlen; i++)
        if (isspace((unsigned char)host[i]) || host[i] == '/')
            return -EINVAL;
    char *h = hlen ? strndup(host, hlen) : strdup(default_host);
    if (!h)
        return -ENOMEM;
    *ret_host = h;
    *ret_port = p;
    return 0;
}

/* Host and port of an http(s) URL; -EINVAL when it is not one. */
static int parse_url(const char *url, char **ret_host, int *ret_port) {
    const char *a;
    int dport;
    if (str_startswith(url, "http://")) {
        a = url + 7;
        dport = 80;
    } else if (str_startswith(url, "https://")) {
        a = url + 8;
        dport = 443;
    } else
        return -EINVAL;
    size_t alen = strcspn(a, "/?#");
    const char *at = memchr(a, '@', alen);
    if (at) {
        alen -= (size_t)(at + 1 - a);
        a = at + 1;
    }
    const char *host = a, *port = NULL;
    size_t hlen;
    if (a[0] == '[') {
        const char *e = memchr(a, ']', alen);
        if (!e)
            return -EINVAL;
        host = a + 1;
        hlen = (size_t)(e - host);
        if ((size_t)(e + 1 - a) < alen) {
            if (e[1] != ':')
                return -EINVAL;
            port = e + 2;
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        hlen = colon ? (size_t)(colon - a) : alen;
        if (colon)
            port = colon + 1;
    }
    if (hlen == 0)
        return -EINVAL;
    for (size_t i = 0; i < hlen; i++)
        if (isspace((unsigned char)host[i]))
            return -EINVAL;
    int p = dport;
    if (port && parse_port(port, (size_t)(a + alen - port), 1, &p) < 0)
        return -EINVAL;
    char *h = strndup(host, hlen);
    if (!h)
        return -ENOMEM;
    *ret_host = h;
    *ret_port = p;
    return 0;
}

static bool host_is_loopback(const char *h) {
    return str_startswith(h, "127.") || streq(h, "::1") || strcasecmp(h, "localhost") == 0;
}

/* ---- env_file -------------------------------------------------------- */

static int read_file(const char *path, size_t max, char **ret, size_t *ret_len) {
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    if ((uint64_t)st.st_size > max)
        return -EFBIG;
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        if (len + 1 >= cap) {
            /* The file grew while we read it. */
            if (cap > max) {
                free(buf);
                return -EFBIG;
            }
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                return -ENOMEM;
            }
            buf = b;
            cap *= 2;
        }
        ssize_t k = read(fd, buf + len, cap - len - 1);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            int r = -errno;
            free(buf);
            return r;
        }
        if (k == 0)
            break;
        len += (size_t)k;
    }
    if (len > max) {
        free(buf);
        return -EFBIG;
    }
    buf[len] = '\0';
    *ret = buf;
    *ret_len = len;
    return 0;
}

/*
 * Parses KEY=VALUE lines into *env: blank lines and `#` comments are
 * skipped, `export ` is allowed before KEY, VALUE may be in single quotes
 * (literal) or double quotes (\\, \", \n, \t, \r escapes); an unquoted
 * value is trimmed and loses a trailing " # comment".  Returns 0, -ENOMEM,
 * or -EINVAL with the 1-based line and a static reason.
 */
static int env_file_parse(const char *text, size_t len, char ***env, size_t *ret_line,
                          const char **ret_why) {
    size_t lineno = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        lineno++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *next = eol < end ? eol + 1 : end;
        const char *e = eol;
        if (e > p && e[-1] == '\r')
            e--;
        while (p < e && isspace((unsigned char)*p))
            p++;
        if (p == e || *p == '#') {
            p = next;
            continue;
        }
        if ((size_t)(e - p) > 7 && strncmp(p, "export", 6) == 0 &&
            (p[6] == ' ' || p[6] == '\t')) {
            p += 6;
            while (p < e && isspace((unsigned char)*p))
                p++;
        }
        const char *eq = memchr(p, '=', (size_t)(e - p));
        *ret_line = lineno;
        if (!eq) {
            *ret_why = "expected KEY=VALUE";
            return -EINVAL;
        }
        const char *kend = eq;
        while (kend > p && isspace((unsigned char)kend[-1]))
            kend--;
        _cleanup_free_ char *key = strndup(p, (size_t)(kend - p));
        if (!key)
            return -ENOMEM;
        if (!valid_env_name(key)) {
            *ret_why = "invalid variable name (expected letters, digits and _)";
            return -EINVAL;
        }
        const char *v = eq + 1;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        dbuf val = {0};
        dbuf_add(&val, "", 0);
        const char *rest;
        if (v < e && (*v == '"' || *v == '\'')) {
            char q = *v++;
            bool closed = false;
            while (v < e) {
                if (*v == q) {
                    closed = true;
                    v++;
                    break;
                }
                if (q == '"' && *v == '\\' && v + 1 < e) {
                    char ch = v[1];
                    const char *out = ch == 'n' ? "\n" : ch == 't' ? "\t" : ch == 'r' ? "\r" : NULL;
                    if (out)
                        dbuf_add(&val, out, 1);
                    else
                        dbuf_add(&val, v + 1, 1);
                    v += 2;
                    continue;
                }
                dbuf_add(&val, v, 1);
                v++;
            }
            if (!closed) {
                free(val.p);
                *ret_why = "unterminated quoted value";
                return -EINVAL;
            }
            rest = v;
            while (rest < e && isspace((unsigned char)*rest))
                rest++;
            if (rest < e && *rest != '#') {
                free(val.p);
                *ret_why = "unexpected text after the closing quote";
                return -EINVAL;
            }
        } else {
            const char *vend = v;
            /* A comment starts at " #"; a '#' inside a word is kept. */
            while (vend < e && !(*vend == '#' && vend > v && isspace((unsigned char)vend[-1])))
                vend++;
            while (vend > v && isspace((unsigned char)vend[-1]))
                vend--;
            dbuf_add(&val, v, (size_t)(vend - v));
        }
        if (val.oom) {
            free(val.p);
            return -ENOMEM;
        }
        if (memchr(val.p, '\0', val.len)) {
            free(val.p);
            *ret_why = "NUL character in value";
            return -EINVAL;
        }
        int r = strv_env_set(env, key, val.p);
        free(val.p);
        if (r < 0)
            return r;
        p = next;
    }
    return 0;
}

static void read_env_file(ctx *c, yaml_node_t *n, char ***env) {
    _cleanup_free_ char *given = NULL, *path = NULL, *text = NULL;
    size_t len = 0, line = 0;
    const char *why = NULL;
    if (get_str(c, n, "a path", &given) < 0)
        return;
    if (!*given) {
        error_at(c, n, "empty path");
        return;
    }
    path = path_abs(c->dir, given);
    if (!path) {
        c->oom = true;
        return;
    }
    int r = read_file(path, CONFIG_MAX_ENV_FILE, &text, &len);
    if (r == -ENOMEM) {
        c->oom = true;
        return;
    }
    if (r == -EFBIG) {
        error_at(c, n, "env file \"%s\" is too large (more than 1 MiB)", path);
        return;
    }
    if (r < 0) {
        error_at(c, n, "cannot read env file \"%s\": %s", path, strerror(-r));
        return;
    }
    char **vars = NULL;
    r = env_file_parse(text, len, &vars, &line, &why);
    if (r == -ENOMEM)
        c->oom = true;
    else if (r < 0)
        error_at(c, n, "%s:%zu: %s", given, line, why);
    else {
        strv_free(*env);
        *env = TAKE_PTR(vars);
    }
    strv_free(vars);
}

/* ---- probes and stages ------------------------------------------------ */

typedef struct probe_ctx {
    tend_probe_spec *probe;
    tend_stage_spec *stage;     /* NULL for live */
    svc_extra *svc;             /* NULL while walking defaults */
    yaml_node_t *kind_node;     /* the exec/tcp/http/notify key */
    bool kind_seen;             /* even one that was rejected */
    yaml_node_t *name_node;
    yaml_node_t *expect_node;
    bool is_live;
} probe_ctx;

static void record_port(ctx *c, yaml_node_t *n, const char *host, int port) {
    if (c->defaults_pass)
        return;
    port_use *u = realloc(c->ports, (c->n_ports + 1) * sizeof(port_use));
    if (!u) {
        c->oom = true;
        return;
    }
    c->ports = u;
    port_use *p = &c->ports[c->n_ports];
    *p = (port_use){.service = c->cur_service, .port = port, .node = n};
    /* Compare "localhost" and 127.0.0.1 as the same host. */
    p->host = strdup(strcasecmp(host, "localhost") == 0 ? "127.0.0.1" : host);
    p->path = strdup(c->path ? c->path : "");
    if (!p->host || !p->path) {
        free(p->host);
        free(p->path);
        c->oom = true;
        return;
    }
    for (char *h = p->host; *h; h++)
        *h = (char)tolower((unsigned char)*h);
    c->n_ports++;
}

static void probe_pair(ctx *c, const kv *p, void *userdata) {
    probe_ctx *pc = userdata;
    tend_probe_spec *pr = pc->probe;
    const char *k = p->name;
    yaml_node_t *v = p->val;
    bool is_kind = streq(k, "exec") || streq(k, "tcp") || streq(k, "http") || streq(k, "notify");

    if (is_kind) {
        pc->kind_seen = true;
        if (pc->is_live && streq(k, "notify")) {
            error_at(c, p->key, "liveness probes cannot use notify (use exec, tcp or http)");
            return;
        }
        if (pc->kind_node) {
            error_at(c, p->key, "only one of exec, tcp, http, notify may be given (already "
                                "have %s)", scalar_value(pc->kind_node));
            return;
        }
        pc->kind_node = p->key;
    }
    if (streq(k, "exec")) {
        char **argv = NULL;
        if (get_argv(c, v, &argv, NULL) < 0)
            return;
        pr->kind = TEND_PROBE_EXEC;
        pr->argv = argv;
    } else if (streq(k, "tcp")) {
        _cleanup_free_ char *s = NULL;
        char *host = NULL;
        int port;
        if (get_str(c, v, "an address", &s) < 0)
            return;
        int r = parse_hostport(s, "127.0.0.1", 1, &host, &port);
        if (r == -ENOMEM) {
            c->oom = true;
            return;
        }
        if (r < 0) {
            error_at(c, v, "invalid tcp address \"%s\" (try 127.0.0.1:8200, :8200 or 8200)", s);
            return;
        }
        pr->kind = TEND_PROBE_TCP;
        pr->host = host;
        pr->port = port;
        record_port(c, v, host, port);
    } else if (streq(k, "http")) {
        char *s = NULL, *host = NULL;
        int port;
        if (get_str(c, v, "a URL", &s) < 0)
            return;
        int r = parse_url(s, &host, &port);
        if (r == -ENOMEM) {
            free(s);
            c->oom = true;
            return;
        }
        if (r < 0) {
            error_at(c, v, "invalid http URL \"%s\" (expected http://host[:port]/path or "
                           "https://...)", s);
            free(s);
            return;
        }
        pr->kind = TEND_PROBE_HTTP;
        pr->url = s;
        record_port(c, v, host, port);
        free(host);
    } else if (streq(k, "notify")) {
        bool b = false;
        if (get_bool(c, v, &b) < 0)
            return;
        if (!b) {
            error_at(c, v, "notify must be true (remove the stage to disable it)");
            return;
        }
        pr->kind = TEND_PROBE_NOTIFY;
    } else if (streq(k, "name")) {
        _cleanup_free_ char *s = NULL;
        if (get_str(c, v, "a name", &s) < 0)
            return;
        if (!valid_name(s)) {
            error_at(c, v, "invalid stage name \"%s\" (expected 1-64 characters of "
                           "A-Z a-z 0-9 _ . -)", s);
            return;
        }
        free(pc->stage->name);
        pc->stage->name = TAKE_PTR(s);
        pc->name_node = v;
    } else if (streq(k, "expect_body")) {
        if (set_str(c, v, &pr->expect_body) == 0)
            pc->expect_node = p->key;
    } else if (streq(k, "interval"))
        (void)get_duration(c, v, true, &pr->interval_ms);
    else if (streq(k, "start_interval"))
        (void)get_duration(c, v, true, &pr->start_interval_ms);
    else if (streq(k, "probe_timeout"))
        (void)get_duration(c, v, true, &pr->probe_timeout_ms);
    else if (streq(k, "initial_delay"))
        (void)get_duration(c, v, false, &pr->initial_delay_ms);
    else if (streq(k, "failure_threshold"))
        (void)get_int(c, v, 1, 1000000, &pr->failure_threshold);
    else if (streq(k, "success_threshold"))
        (void)get_int(c, v, 1, 1000000, &pr->success_threshold);
    else if (streq(k, "timeout"))
        (void)get_duration(c, v, true, &pc->stage->timeout_ms);
    else if (streq(k, "critical"))
        (void)get_bool(c, v, &pc->stage->critical);
}

/* Walks one stage or liveness map; returns the node of an explicit name. */
static yaml_node_t *parse_probe(ctx *c, yaml_node_t *n, tend_stage_spec *stage,
                                tend_probe_spec *probe, bool is_live) {
    probe_ctx pc = {.probe = probe, .stage = stage, .is_live = is_live};
    if (n->type != YAML_MAPPING_NODE) {
        error_at(c, n, "expected a mapping with one of exec, tcp, http%s, got %s",
                 is_live ? "" : ", notify", node_kind(n));
        return NULL;
    }
    map_walk(c, n, NULL, is_live ? LIVE_KEYS : STAGE_KEYS, probe_pair, &pc);
    if (!pc.kind_seen && walking(c))
        error_at(c, n, "missing probe (expected one of: exec, tcp, http%s)",
                 is_live ? "" : ", notify");
    if (pc.expect_node && probe->kind != TEND_PROBE_HTTP && pc.kind_node) {
        size_t saved = path_push_key(c, "expect_body");
        error_at(c, pc.expect_node, "expect_body requires an http probe");
        path_pop(c, saved);
    }
    return pc.name_node;
}

static const char *probe_kind_name(tend_probe_kind k) {
    switch (k) {
    case TEND_PROBE_EXEC: return "exec";
    case TEND_PROBE_TCP: return "tcp";
    case TEND_PROBE_HTTP: return "http";
    case TEND_PROBE_NOTIFY: return "notify";
    default: return "stage";
    }
}

static bool stage_name_used(const tend_service_spec *s, size_t upto, const char *name) {
    for (size_t i = 0; i < upto; i++)
        if (s->stages[i].name && streq(s->stages[i].name, name))
            return true;
    return false;
}

static void parse_ready(ctx *c, tend_service_spec *s, yaml_node_t *n) {
    if (is_null(n))
        return;
    bool single = n->type == YAML_MAPPING_NODE;
    if (!single && n->type != YAML_SEQUENCE_NODE) {
        error_at(c, n, "expected a stage mapping or a sequence of them, got %s", node_kind(n));
        return;
    }
    size_t count = single ? 1 : seq_size(n);
    if (count > 1000) {
        error_at(c, n, "too many stages (at most 1000)");
        return;
    }
    if (count == 0)
        return;
    tend_stage_spec *stages = calloc(count, sizeof(tend_stage_spec));
    yaml_node_t **names = calloc(count, sizeof(yaml_node_t *));
    if (!stages || !names) {
        free(stages);
        free(names);
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < count; i++)
        tend_stage_spec_init(&stages[i]);
    s->stages = stages;
    s->n_stages = count;
    for (size_t i = 0; i < count && walking(c); i++) {
        yaml_node_t *item = single ? n : node_at(c, n->data.sequence.items.start[i]);
        if (!item)
            continue;
        size_t saved = single ? c->path_len : path_push(c, "[%zu]", i);
        names[i] = parse_probe(c, item, &stages[i], &stages[i].probe, false);
        if (names[i]) {
            for (size_t j = 0; j < i; j++) {
                if (names[j] && streq(stages[j].name, stages[i].name)) {
                    size_t s2 = path_push_key(c, "name");
                    error_at(c, names[i], "duplicate stage name \"%s\" (already used by "
                                          "ready[%zu])", stages[i].name, j);
                    path_pop(c, s2);
                    break;
                }
            }
        }
        path_pop(c, saved);
    }
    free(names);
    /* Default names: the probe kind, then kind2, kind3, ... skipping names
     * already taken. */
    for (size_t i = 0; i < count && walking(c); i++) {
        if (stages[i].name)
            continue;
        const char *kind = probe_kind_name(stages[i].probe.kind);
        for (unsigned k = 1; !stages[i].name; k++) {
            char *cand = NULL;
            if ((k == 1 ? asprintf(&cand, "%s", kind) : asprintf(&cand, "%s%u", kind, k)) < 0) {
                c->oom = true;
                return;
            }
            bool used = stage_name_used(s, count, cand);
            if (used)
                free(cand);
            else
                stages[i].name = cand;
        }
    }
}

/* ---- services -------------------------------------------------------- */

typedef struct svc_ctx {
    tend_service_spec *spec;
    svc_extra *x;
    yaml_node_t *dflt;          /* the defaults mapping, for nested merges */
} svc_ctx;

static void restart_pair(ctx *c, const kv *p, void *userdata) {
    svc_ctx *sc = userdata;
    tend_restart_spec *r = &sc->spec->restart;
    const char *k = p->name;
    if (streq(k, "policy")) {
        _cleanup_free_ char *s = NULL;
        if (get_str(c, p->val, "a restart policy", &s) < 0)
            return;
        if (streq(s, "no"))
            r->policy = TEND_RESTART_NO;
        else if (streq(s, "on-failure"))
            r->policy = TEND_RESTART_ON_FAILURE;
        else if (streq(s, "always"))
            r->policy = TEND_RESTART_ALWAYS;
        else {
            /* A plain `no` is read as the string "no" by libyaml (YAML 1.1
             * would make it false), so this only catches real mistakes. */
            error_at(c, p->val, "invalid restart policy \"%s\" (expected no, on-failure, "
                                "always)", s);
            return;
        }
        sc->x->policy_set = true;
    } else if (streq(k, "delay"))
        (void)get_duration(c, p->val, false, &r->delay_ms);
    else if (streq(k, "max_delay"))
        (void)get_duration(c, p->val, false, &r->max_delay_ms);
    else if (streq(k, "jitter"))
        (void)get_fraction(c, p->val, &r->jitter);
    else if (streq(k, "max_attempts"))
        (void)get_int(c, p->val, 0, 10000, &r->max_attempts);
    else if (streq(k, "window"))
        (void)get_duration(c, p->val, true, &r->window_ms);
    else if (streq(k, "reset_after"))
        (void)get_duration(c, p->val, false, &r->reset_after_ms);
}

static void stop_pair(ctx *c, const kv *p, void *userdata) {
    svc_ctx *sc = userdata;
    if (streq(p->name, "signal"))
        (void)get_signal(c, p->val, &sc->spec->stop.signal);
    else if (streq(p->name, "timeout"))
        (void)get_duration(c, p->val, false, &sc->spec->stop.timeout_ms);
}

static void resources_pair(ctx *c, const kv *p, void *userdata) {
    svc_ctx *sc = userdata;
    if (streq(p->name, "memory_max"))
        (void)get_size(c, p->val, &sc->spec->resources.memory_max);
    else if (streq(p->name, "nofile")) {
        long long v;
        if (get_ll(c, p->val, 0, 1 << 30, &v) == 0)
            sc->spec->resources.nofile = (uint64_t)v;
    }
}

static void env_map(ctx *c, yaml_node_t *own, yaml_node_t *dflt, char ***env) {
    kv *pairs = NULL;
    int n = map_pairs(c, own, dflt, &pairs);
    for (int i = 0; i < n && walking(c); i++) {
        bool quiet = c->quiet;
        c->quiet = quiet || pairs[i].dflt;
        size_t saved = path_push_key(c, pairs[i].name);
        _cleanup_free_ char *val = NULL;
        if (!valid_env_name(pairs[i].name))
            error_at(c, pairs[i].key, "invalid variable name \"%s\" (expected letters, digits "
                                      "and _, not starting with a digit)", pairs[i].name);
        else if (is_null(pairs[i].val)) {
            if (strv_env_set(env, pairs[i].name, "") < 0)
                c->oom = true;
        } else if (get_str(c, pairs[i].val, "a string value", &val) == 0 &&
                   strv_env_set(env, pairs[i].name, val) < 0)
            c->oom = true;
        path_pop(c, saved);
        c->quiet = quiet;
    }
    free(pairs);
}

static int dep_condition(const char *s, tend_dep_condition *ret) {
    if (streq(s, "started"))
        *ret = TEND_DEP_STARTED;
    else if (streq(s, "ready"))
        *ret = TEND_DEP_READY;
    else if (streq(s, "completed"))
        *ret = TEND_DEP_COMPLETED;
    else
        return -EINVAL;
    return 0;
}

static void parse_depends(ctx *c, tend_service_spec *s, svc_extra *x, yaml_node_t *n) {
    if (is_null(n))
        return;
    bool is_map = n->type == YAML_MAPPING_NODE;
    if (!is_map && n->type != YAML_SEQUENCE_NODE) {
        error_at(c, n, "expected a mapping (name: started|ready|completed) or a sequence of "
                       "names, got %s", node_kind(n));
        return;
    }
    size_t count = is_map ? map_size(n) : seq_size(n);
    if (count > CONFIG_MAX_ITEMS) {
        error_at(c, n, "too many dependencies (at most %d)", CONFIG_MAX_ITEMS);
        return;
    }
    if (count == 0)
        return;
    s->deps = calloc(count, sizeof(tend_dep_spec));
    x->dep_nodes = calloc(count, sizeof(yaml_node_t *));
    if (!s->deps || !x->dep_nodes) {
        c->oom = true;
        return;
    }
    if (is_map) {
        kv *pairs = NULL;
        int np = map_pairs(c, n, NULL, &pairs);
        for (int i = 0; i < np && walking(c); i++) {
            size_t saved = path_push_key(c, pairs[i].name);
            _cleanup_free_ char *cond = NULL;
            tend_dep_condition dc;
            if (get_str(c, pairs[i].val, "a condition", &cond) == 0) {
                if (dep_condition(cond, &dc) < 0)
                    error_at(c, pairs[i].val, "invalid dependency condition \"%s\" (expected "
                                              "started, ready, completed)", cond);
                else {
                    char *name = strdup(pairs[i].name);
                    if (!name)
                        c->oom = true;
                    else {
                        x->dep_nodes[s->n_deps] = pairs[i].key;
                        s->deps[s->n_deps++] = (tend_dep_spec){.name = name, .condition = dc};
                    }
                }
            }
            path_pop(c, saved);
        }
        free(pairs);
        return;
    }
    size_t i = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start;
         it < n->data.sequence.items.top && walking(c); it++, i++) {
        yaml_node_t *item = node_at(c, *it);
        size_t saved = path_push(c, "[%zu]", i);
        char *name = NULL;
        if (item && get_str(c, item, "a service name", &name) == 0) {
            bool dup = false;
            for (size_t j = 0; j < s->n_deps && !dup; j++)
                dup = streq(s->deps[j].name, name);
            if (dup) {
                error_at(c, item, "duplicate dependency \"%s\"", name);
                free(name);
            } else {
                x->dep_nodes[s->n_deps] = item;
                s->deps[s->n_deps++] = (tend_dep_spec){.name = name, .condition = TEND_DEP_READY};
            }
        }
        path_pop(c, saved);
    }
}

static void service_pair(ctx *c, const kv *p, void *userdata) {
    svc_ctx *sc = userdata;
    tend_service_spec *s = sc->spec;
    const char *k = p->name;
    yaml_node_t *v = p->val;
    /* For key-by-key merges: the defaults' sub-map, unless this pair is
     * itself from defaults (then there is nothing to merge with). */
    yaml_node_t *d = p->dflt ? NULL : map_lookup(c, sc->dflt, k);

    if (streq(k, "command")) {
        char **argv = NULL;
        bool shell = false;
        sc->x->command_seen = true;
        if (get_argv(c, v, &argv, &shell) == 0) {
            strv_free(s->argv);
            s->argv = argv;
            s->shell = shell;
        }
    } else if (streq(k, "cwd")) {
        char *path = NULL;
        if (get_path(c, v, &path) == 0) {
            free(s->cwd);
            s->cwd = path;
        }
    } else if (streq(k, "env"))
        env_map(c, v, d, &sc->x->env_map);
    else if (streq(k, "env_file"))
        read_env_file(c, v, &sc->x->env_file_vars);
    else if (streq(k, "user"))
        (void)set_str(c, v, &s->user);
    else if (streq(k, "critical"))
        (void)get_bool(c, v, &s->critical);
    else if (streq(k, "oneshot"))
        (void)get_bool(c, v, &s->oneshot);
    else if (streq(k, "depends_on"))
        parse_depends(c, s, sc->x, v);
    else if (streq(k, "ready")) {
        parse_ready(c, s, v);
        sc->x->ready_node = v;
    }
    else if (streq(k, "live")) {
        (void)parse_probe(c, v, NULL, &s->live, true);
        s->has_live = s->live.kind != TEND_PROBE_NONE;
    } else if (streq(k, "watchdog")) {
        if (get_duration(c, v, false, &s->watchdog_ms) == 0)
            sc->x->watchdog_node = v;
    } else if (streq(k, "restart"))
        map_walk(c, v, d, RESTART_KEYS, restart_pair, sc);
    else if (streq(k, "stop"))
        map_walk(c, v, d, STOP_KEYS, stop_pair, sc);
    else if (streq(k, "resources"))
        map_walk(c, v, d, RESOURCES_KEYS, resources_pair, sc);
    else if (streq(k, "replicas")) {
        long long r;
        _cleanup_free_ char *str = NULL;
        if (get_str(c, v, "an integer", &str) < 0)
            return;
        if (parse_int(str, 1, 1, &r) == 0)
            s->replicas = 1;
        else if (parse_int(str, 2, 1000000, &r) == 0)
            error_at(c, v, "replicas > 1 is not supported yet");
        else
            error_at(c, v, "invalid replicas \"%s\" (expected 1)", str);
    }
}

/*
 * Walks one service (own mapping merged over dflt) into s.  Outside the
 * defaults pass, also runs the checks that concern the service as a whole.
 */
static void parse_service(ctx *c, tend_service_spec *s, svc_extra *x, yaml_node_t *own,
                          yaml_node_t *dflt) {
    svc_ctx sc = {.spec = s, .x = x, .dflt = dflt};
    map_walk(c, own, dflt, SERVICE_KEYS, service_pair, &sc);
    if (!walking(c) || (!is_null(own) && own->type != YAML_MAPPING_NODE))
        return;

    /* env_file first, then env on top. */
    char **env = TAKE_PTR(x->env_file_vars);
    for (size_t i = 0; x->env_map && x->env_map[i]; i++) {
        char *eq = strchr(x->env_map[i], '=');
        *eq = '\0';
        int r = strv_env_set(&env, x->env_map[i], eq + 1);
        *eq = '=';
        if (r < 0)
            c->oom = true;
    }
    s->env = env;

    if (s->oneshot && !x->policy_set)
        s->restart.policy = TEND_RESTART_NO;

    if (c->defaults_pass)
        return;
    bool quiet = c->quiet;
    c->quiet = false;
    if (!s->argv && !x->command_seen)
        error_at(c, own, "missing required key \"command\" (e.g. command: [\"./bin/server\", "
                         "\"--port\", \"8080\"])");
    if (s->oneshot && s->n_stages > 0) {
        size_t saved = path_push_key(c, "ready");
        error_at(c, x->ready_node, "a oneshot has no readiness stages (it is `completed` when it exits 0; "
                                   "remove `ready` or `oneshot`)");
        path_pop(c, saved);
    }
    if (s->watchdog_ms > 0) {
        bool has_notify = false;
        for (size_t i = 0; i < s->n_stages; i++)
            has_notify |= s->stages[i].probe.kind == TEND_PROBE_NOTIFY;
        if (!has_notify) {
            size_t saved = path_push_key(c, "watchdog");
            error_at(c, x->watchdog_node, "watchdog requires a notify readiness stage (add "
                                          "`ready: {notify: true}`)");
            path_pop(c, saved);
        }
    }
    c->quiet = quiet;
}

/* ---- tasks ----------------------------------------------------------- */

static void handler_pair(ctx *c, const kv *p, void *userdata) {
    tend_queue_spec *q = userdata;
    if (streq(p->name, "exec")) {
        char **argv = NULL;
        if (get_argv(c, p->val, &argv, NULL) == 0) {
            strv_free(q->argv);
            q->argv = argv;
            q->handler = TEND_HANDLER_EXEC;
        }
    } else if (streq(p->name, "http")) {
        char *url = NULL, *host = NULL;
        int port;
        if (get_str(c, p->val, "a URL", &url) < 0)
            return;
        int r = parse_url(url, &host, &port);
        free(host);
        if (r == -ENOMEM)
            c->oom = true;
        else if (r < 0)
            error_at(c, p->val, "invalid http URL \"%s\" (expected http://host[:port]/path or "
                                "https://...)", url);
        else {
            free(q->url);
            q->url = TAKE_PTR(url);
            q->handler = TEND_HANDLER_HTTP;
        }
        free(url);
    } else if (streq(p->name, "pull")) {
        bool b = false;
        if (get_bool(c, p->val, &b) < 0)
            return;
        if (!b)
            error_at(c, p->val, "pull must be true");
        else
            q->handler = TEND_HANDLER_PULL;
    } else if (streq(p->name, "ack")) {
        /* When a pull worker's ack is answered: after its UPDATE commits
         * (durable) or once it is queued (async; see docs/tasks.md). */
        _cleanup_free_ char *s = NULL;
        if (get_str(c, p->val, "durable or async", &s) < 0)
            return;
        if (streq(s, "durable"))
            q->ack_async = false;
        else if (streq(s, "async"))
            q->ack_async = true;
        else
            error_at(c, p->val, "invalid ack \"%s\" (expected durable or async)", s);
    }
}

static void parse_handler(ctx *c, tend_queue_spec *q, yaml_node_t *n) {
    static const char *const expected =
        "expected {exec: [\"program\", ...]}, {http: URL} or pull";
    if (n->type == YAML_SCALAR_NODE && !is_null(n)) {
        _cleanup_free_ char *s = NULL;
        if (get_str(c, n, "a handler", &s) < 0)
            return;
        if (streq(s, "pull"))
            q->handler = TEND_HANDLER_PULL;
        else
            error_at(c, n, "invalid handler \"%s\" (%s)", s, expected);
        return;
    }
    if (n->type != YAML_MAPPING_NODE) {
        error_at(c, n, "expected a handler (%s), got %s", expected, node_kind(n));
        return;
    }
    size_t kinds = 0;
    yaml_node_t *second = NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && key_known(scalar_value(k), HANDLER_KEYS) &&
            !streq(scalar_value(k), "ack") && ++kinds == 2)
            second = k;
    }
    if (kinds == 0 && map_size(n) == 0) {
        error_at(c, n, "empty handler (%s)", expected);
        return;
    }
    if (second) {
        error_at(c, second, "only one of exec, http, pull may be given");
        return;
    }
    map_walk(c, n, NULL, HANDLER_KEYS, handler_pair, q);
    yaml_node_t *ack = map_lookup(c, n, "ack");
    if (ack && q->handler != TEND_HANDLER_PULL)
        error_at(c, ack, "ack applies to pull handlers only (add `pull: true`)");
}

static void backoff_pair(ctx *c, const kv *p, void *userdata) {
    tend_queue_spec *q = userdata;
    if (streq(p->name, "base"))
        (void)get_duration(c, p->val, false, &q->backoff_base_ms);
    else if (streq(p->name, "max"))
        (void)get_duration(c, p->val, false, &q->backoff_max_ms);
    else if (streq(p->name, "jitter"))
        (void)get_fraction(c, p->val, &q->backoff_jitter);
}

static void breaker_pair(ctx *c, const kv *p, void *userdata) {
    tend_queue_spec *q = userdata;
    if (streq(p->name, "failure_threshold"))
        (void)get_int(c, p->val, 1, 1000000, &q->breaker_failure_threshold);
    else if (streq(p->name, "open_for"))
        (void)get_duration(c, p->val, true, &q->breaker_open_ms);
}

static void batch_pair(ctx *c, const kv *p, void *userdata) {
    tend_queue_spec *q = userdata;
    if (streq(p->name, "size"))
        (void)get_int(c, p->val, 1, 100000, &q->batch_size);
    else if (streq(p->name, "max_wait"))
        (void)get_duration(c, p->val, false, &q->batch_max_wait_ms);
}

typedef struct queue_ctx {
    tend_queue_spec *q;
    bool has_handler;
} queue_ctx;

static void queue_pair(ctx *c, const kv *p, void *userdata) {
    queue_ctx *qc = userdata;
    tend_queue_spec *q = qc->q;
    const char *k = p->name;
    if (streq(k, "handler")) {
        qc->has_handler = true;
        parse_handler(c, q, p->val);
    } else if (streq(k, "concurrency"))
        (void)get_int(c, p->val, 1, 100000, &q->concurrency);
    else if (streq(k, "timeout"))
        (void)get_duration(c, p->val, true, &q->timeout_ms);
    else if (streq(k, "max_attempts"))
        (void)get_int(c, p->val, 1, 1000000, &q->max_attempts);
    else if (streq(k, "backoff"))
        map_walk(c, p->val, NULL, BACKOFF_KEYS, backoff_pair, q);
    else if (streq(k, "rate_limit"))
        (void)get_rate(c, p->val, &q->rate_per_sec);
    else if (streq(k, "circuit_breaker")) {
        if (p->val->type == YAML_MAPPING_NODE && q->breaker_failure_threshold == 0)
            q->breaker_failure_threshold = 5;
        map_walk(c, p->val, NULL, BREAKER_KEYS, breaker_pair, q);
    } else if (streq(k, "batch")) {
        if (p->val->type == YAML_MAPPING_NODE)
            q->batch = true;
        map_walk(c, p->val, NULL, BATCH_KEYS, batch_pair, q);
    } else if (streq(k, "dry_run"))
        (void)get_bool(c, p->val, &q->dry_run);
}

static void parse_queues(ctx *c, tend_tasks_spec *t, yaml_node_t *n) {
    kv *pairs = NULL;
    int np = map_pairs(c, n, NULL, &pairs);
    if (np <= 0)
        return;
    if (np > CONFIG_MAX_QUEUES) {
        error_at(c, n, "too many queues (at most %d)", CONFIG_MAX_QUEUES);
        free(pairs);
        return;
    }
    t->queues = calloc((size_t)np, sizeof(tend_queue_spec));
    if (!t->queues) {
        c->oom = true;
        free(pairs);
        return;
    }
    for (int i = 0; i < np && walking(c); i++) {
        if (!valid_name(pairs[i].name)) {
            error_at(c, pairs[i].key, "invalid queue name \"%s\" (expected 1-64 characters of "
                                      "A-Z a-z 0-9 _ . -)", pairs[i].name);
            continue;
        }
        tend_queue_spec *q = &t->queues[t->n_queues++];
        tend_queue_spec_init(q);
        q->name = strdup(pairs[i].name);
        if (!q->name) {
            c->oom = true;
            break;
        }
        size_t saved = path_push_key(c, pairs[i].name);
        queue_ctx qc = {.q = q};
        map_walk(c, pairs[i].val, NULL, QUEUE_KEYS, queue_pair, &qc);
        if (!qc.has_handler && walking(c))
            error_at(c, pairs[i].val, "missing required key \"handler\" (%s)",
                     "expected {exec: [\"program\", ...]}, {http: URL} or pull");
        path_pop(c, saved);
    }
    free(pairs);
}

static void retention_pair(ctx *c, const kv *p, void *userdata) {
    tend_tasks_spec *t = userdata;
    if (streq(p->name, "succeeded"))
        (void)get_duration(c, p->val, false, &t->retention_succeeded_ms);
    else if (streq(p->name, "dead"))
        (void)get_duration(c, p->val, false, &t->retention_dead_ms);
}

static void tasks_pair(ctx *c, const kv *p, void *userdata) {
    tend_tasks_spec *t = userdata;
    if (streq(p->name, "workers"))
        (void)get_int(c, p->val, 1, 100000, &t->workers);
    else if (streq(p->name, "retention"))
        map_walk(c, p->val, NULL, RETENTION_KEYS, retention_pair, t);
    else if (streq(p->name, "max_payload")) {
        uint64_t v;
        if (get_size(c, p->val, &v) < 0)
            return;
        if (v == 0)
            error_at(c, p->val, "max_payload must be greater than 0 (try 256K, 1M)");
        else
            t->max_payload = v;
    } else if (streq(p->name, "queues"))
        parse_queues(c, t, p->val);
}

static void sessions_pair(ctx *c, const kv *p, void *userdata) {
    tend_sessions_spec *s = userdata;
    if (streq(p->name, "ttl"))
        (void)get_duration(c, p->val, true, &s->ttl_ms);
    else if (streq(p->name, "cleanup_interval"))
        (void)get_duration(c, p->val, true, &s->cleanup_interval_ms);
    else if (streq(p->name, "max_sessions")) {
        long long v;
        if (get_ll(c, p->val, 1, 1000000000LL, &v) == 0)
            s->max_sessions = (uint64_t)v;
    } else if (streq(p->name, "persist"))
        (void)get_bool(c, p->val, &s->persist);
    else if (streq(p->name, "max_value")) {
        uint64_t v;
        if (get_size(c, p->val, &v) < 0)
            return;
        /* A session arrives in one request body, at most 1 MiB. */
        if (v == 0 || v > 1024 * 1024)
            error_at(c, p->val, "max_value must be between 1 and 1M (try 64K, 256K)");
        else
            s->max_value = v;
    }
}

static void health_pair(ctx *c, const kv *p, void *userdata) {
    tend_config *cfg = userdata;
    if (streq(p->name, "interval"))
        (void)get_duration(c, p->val, true, &cfg->health_interval_ms);
}

/* ---- top level ------------------------------------------------------- */

typedef struct top_ctx {
    tend_config *cfg;
    yaml_node_t *defaults;
    yaml_node_t *listen_node;
    svc_extra *extras;
    size_t n_extras;
} top_ctx;

static void api_pair(ctx *c, const kv *p, void *userdata) {
    top_ctx *tc = userdata;
    tend_config *cfg = tc->cfg;
    if (streq(p->name, "listen")) {
        _cleanup_free_ char *s = NULL;
        if (is_null(p->val)) {
            s = strdup("");
            if (!s) {
                c->oom = true;
                return;
            }
        } else if (get_str(c, p->val, "host:port", &s) < 0)
            return;
        if (*s) {
            char *host = NULL;
            int port;
            int r = parse_hostport(s, "", 0, &host, &port);
            free(host);
            if (r == -ENOMEM) {
                c->oom = true;
                return;
            }
            if (r < 0 || !strchr(s, ':')) {
                error_at(c, p->val, "invalid listen address \"%s\" (try 127.0.0.1:7070, "
                                    "[::1]:7070, or \"\" to disable TCP)", s);
                return;
            }
        }
        free(cfg->api_listen);
        cfg->api_listen = TAKE_PTR(s);
        tc->listen_node = p->val;
    } else if (streq(p->name, "token_file")) {
        char *path = NULL;
        if (get_path(c, p->val, &path) == 0) {
            free(cfg->api_token_file);
            cfg->api_token_file = path;
        }
    }
}

static void log_pair(ctx *c, const kv *p, void *userdata) {
    tend_config *cfg = userdata;
    _cleanup_free_ char *s = NULL;
    if (streq(p->name, "format")) {
        if (get_str(c, p->val, "a log format", &s) < 0)
            return;
        if (streq(s, "text"))
            cfg->log_format = TEND_LOG_TEXT;
        else if (streq(s, "json"))
            cfg->log_format = TEND_LOG_JSON;
        else
            error_at(c, p->val, "invalid log format \"%s\" (expected text, json)", s);
    } else if (streq(p->name, "level")) {
        int level;
        if (get_str(c, p->val, "a log level", &s) < 0)
            return;
        if (log_level_from_string(s, &level) < 0)
            error_at(c, p->val, "invalid log level \"%s\" (expected error, warn, notice, info, "
                                "debug)", s);
        else
            cfg->log_level = level;
    } else if (streq(p->name, "max_size"))
        (void)get_size(c, p->val, &cfg->log_max_size);
    else if (streq(p->name, "max_files"))
        (void)get_int(c, p->val, 1, 1000, &cfg->log_max_files);
}

static void parse_services(ctx *c, top_ctx *tc, yaml_node_t *n) {
    tend_config *cfg = tc->cfg;
    kv *pairs = NULL;
    int np = map_pairs(c, n, NULL, &pairs);
    if (np <= 0)
        return;
    if (np > CONFIG_MAX_SERVICES) {
        error_at(c, n, "too many services (at most %d)", CONFIG_MAX_SERVICES);
        free(pairs);
        return;
    }
    cfg->services = calloc((size_t)np, sizeof(tend_service_spec));
    tc->extras = calloc((size_t)np, sizeof(svc_extra));
    if (tc->extras)
        tc->n_extras = (size_t)np;
    if (!cfg->services || !tc->extras) {
        c->oom = true;
        free(pairs);
        return;
    }
    for (int i = 0; i < np && walking(c); i++) {
        if (!valid_name(pairs[i].name)) {
            error_at(c, pairs[i].key, "invalid service name \"%s\" (expected 1-64 characters "
                                      "of A-Z a-z 0-9 _ . -)", pairs[i].name);
            continue;
        }
        c->cur_service = cfg->n_services;
        tend_service_spec *s = &cfg->services[cfg->n_services];
        svc_extra *x = &tc->extras[cfg->n_services];
        cfg->n_services++;
        tend_service_spec_init(s);
        x->node = pairs[i].val;
        x->key = pairs[i].key;
        s->name = strdup(pairs[i].name);
        if (!s->name) {
            c->oom = true;
            break;
        }
        size_t saved = path_push_key(c, pairs[i].name);
        parse_service(c, s, x, pairs[i].val, tc->defaults);
        path_pop(c, saved);
    }
    free(pairs);
}

static void top_pair(ctx *c, const kv *p, void *userdata) {
    top_ctx *tc = userdata;
    tend_config *cfg = tc->cfg;
    const char *k = p->name;
    if (streq(k, "name")) {
        _cleanup_free_ char *s = NULL;
        if (get_str(c, p->val, "a string", &s) < 0)
            return;
        if (!*s || strlen(s) > 255) {
            error_at(c, p->val, "invalid name \"%s\" (expected 1-255 characters)", s);
            return;
        }
        free(cfg->name);
        cfg->name = TAKE_PTR(s);
    } else if (streq(k, "state_dir")) {
        char *path = NULL;
        if (get_path(c, p->val, &path) == 0) {
            free(cfg->state_dir);
            cfg->state_dir = path;
        }
    } else if (streq(k, "api"))
        map_walk(c, p->val, NULL, API_KEYS, api_pair, tc);
    else if (streq(k, "store")) {
        _cleanup_free_ char *s = NULL;
        if (get_str(c, p->val, "a string", &s) < 0)
            return;
        if (!streq(s, "sqlite") && !str_startswith(s, "postgres://") &&
            !str_startswith(s, "postgresql://")) {
            error_at(c, p->val, "invalid store \"%s\" (expected sqlite or a postgres:// URL)", s);
            return;
        }
        free(cfg->store);
        cfg->store = TAKE_PTR(s);
    } else if (streq(k, "log"))
        map_walk(c, p->val, NULL, LOG_KEYS, log_pair, cfg);
    else if (streq(k, "defaults")) {
        /* Walked on its own, before `services`, by config_walk(). */
    } else if (streq(k, "services"))
        parse_services(c, tc, p->val);
    else if (streq(k, "tasks"))
        map_walk(c, p->val, NULL, TASKS_KEYS, tasks_pair, &cfg->tasks);
    else if (streq(k, "sessions"))
        map_walk(c, p->val, NULL, SESSIONS_KEYS, sessions_pair, &cfg->sessions);
    else if (streq(k, "health"))
        map_walk(c, p->val, NULL, HEALTH_KEYS, health_pair, cfg);
}

/* Dependencies name existing services other than their own. */
static void check_deps(ctx *c, top_ctx *tc) {
    tend_config *cfg = tc->cfg;
    strmap names;
    if (strmap_init(&names, cfg->n_services) < 0) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < cfg->n_services; i++)
        if (strmap_put(&names, cfg->services[i].name, i, NULL) < 0) {
            c->oom = true;
            strmap_done(&names);
            return;
        }
    for (size_t i = 0; i < cfg->n_services && walking(c); i++) {
        tend_service_spec *s = &cfg->services[i];
        if (s->n_deps == 0)
            continue;
        size_t saved = path_push(c, "services.%s.depends_on", s->name);
        for (size_t j = 0; j < s->n_deps; j++) {
            yaml_node_t *node = tc->extras[i].dep_nodes[j];
            long t = strmap_get(&names, s->deps[j].name);
            tend_service_spec *target = t < 0 ? NULL : &cfg->services[t];
            if (target == s)
                error_at(c, node, "service \"%s\" cannot depend on itself", s->name);
            else if (!target) {
                char *list = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&list, &len);
                if (!f) {
                    c->oom = true;
                    break;
                }
                for (size_t k = 0; k < cfg->n_services && k < 20; k++)
                    fprintf(f, "%s%s", k ? ", " : "", cfg->services[k].name);
                if (cfg->n_services > 20)
                    fputs(", ...", f);
                if (cfg->n_services == 0)
                    fputs("none", f);
                if (fclose(f) != 0 || !list)
                    c->oom = true;
                else
                    error_at(c, node, "unknown dependency \"%s\" (services: %s)",
                             s->deps[j].name, list);
                free(list);
            } else if (s->deps[j].condition == TEND_DEP_COMPLETED && !target->oneshot)
                error_at(c, node, "\"completed\" requires \"%s\" to be a oneshot (use ready or "
                                  "started)", target->name);
        }
        path_pop(c, saved);
    }
    strmap_done(&names);
}

static int port_cmp(const void *a, const void *b, void *userdata) {
    const port_use *base = userdata;
    const port_use *x = &base[*(const size_t *)a], *y = &base[*(const size_t *)b];
    if (x->port != y->port)
        return x->port < y->port ? -1 : 1;
    int r = strcmp(x->host, y->host);
    if (r != 0)
        return r;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/*
 * Two different services may not probe the same host:port.  Probes are
 * sorted by target (then file order); in each group, the first probe of
 * every other service is reported against the group's first service.
 */
static void check_ports(ctx *c, const tend_config *cfg) {
    if (c->n_ports < 2)
        return;
    size_t *idx = calloc(c->n_ports, sizeof(size_t));
    if (!idx) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < c->n_ports; i++)
        idx[i] = i;
    qsort_r(idx, c->n_ports, sizeof(size_t), port_cmp, c->ports);
    for (size_t g = 0; g < c->n_ports;) {
        const port_use *first = &c->ports[idx[g]];
        size_t e = g + 1;
        while (e < c->n_ports && c->ports[idx[e]].port == first->port &&
               streq(c->ports[idx[e]].host, first->host))
            e++;
        for (size_t i = g + 1; i < e; i++) {
            const port_use *u = &c->ports[idx[i]];
            bool seen = u->service == first->service;
            for (size_t j = g + 1; j < i && !seen; j++)
                seen = c->ports[idx[j]].service == u->service;
            if (seen)
                continue;
            /* The walk is over: the key path is empty here. */
            size_t saved = path_push(c, "%s", u->path);
            error_at(c, u->node, "port %d is also probed by service \"%s\"", u->port,
                     cfg->services[first->service].name);
            path_pop(c, saved);
        }
        g = e;
    }
    free(idx);
}

static int cerror_cmp(const void *a, const void *b) {
    const cerror *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Fills in the defaults that need allocation. */
static int config_defaults(tend_config *cfg) {
    if (!cfg->name) {
        const char *slash = strrchr(cfg->dir, '/');
        const char *base = slash ? slash + 1 : cfg->dir;
        cfg->name = strdup(*base ? base : "tend");
        if (!cfg->name)
            return -ENOMEM;
    }
    if (!cfg->state_dir && !(cfg->state_dir = path_abs(cfg->dir, ".tend")))
        return -ENOMEM;
    if (!cfg->api_listen && !(cfg->api_listen = strdup("127.0.0.1:7070")))
        return -ENOMEM;
    if (!cfg->store && !(cfg->store = strdup("sqlite")))
        return -ENOMEM;
    return 0;
}

static void walk(ctx *c, tend_config *cfg, top_ctx *tc) {
    yaml_node_t *root = yaml_document_get_root_node(c->doc);
    if (!root || is_null(root))
        return;
    if (root->type != YAML_MAPPING_NODE) {
        error_at(c, root, "expected a mapping at the top level, got %s", node_kind(root));
        return;
    }
    tc->defaults = map_lookup(c, root, "defaults");
    if (tc->defaults) {
        tend_service_spec scratch;
        svc_extra x = {0};
        tend_service_spec_init(&scratch);
        c->defaults_pass = true;
        size_t saved = path_push_key(c, "defaults");
        parse_service(c, &scratch, &x, tc->defaults, NULL);
        path_pop(c, saved);
        c->defaults_pass = false;
        tend_service_spec_clear(&scratch);
        strv_free(x.env_file_vars);
        strv_free(x.env_map);
        free(x.dep_nodes);
        if (tc->defaults->type != YAML_MAPPING_NODE)
            tc->defaults = NULL;
    }
    map_walk(c, root, NULL, TOP_KEYS, top_pair, tc);
    if (!walking(c))
        return;
    check_deps(c, tc);
    check_ports(c, cfg);
    if (cfg->api_listen && *cfg->api_listen && !cfg->api_token_file) {
        char *host = NULL;
        int port;
        if (parse_hostport(cfg->api_listen, "", 0, &host, &port) == 0) {
            if (!host_is_loopback(host)) {
                size_t saved = path_push(c, "api.listen");
                error_at(c, tc->listen_node, "listening on non-loopback address \"%s\" requires "
                                             "api.token_file", cfg->api_listen);
                path_pop(c, saved);
            }
            free(host);
        } else
            c->oom = true;
    }
}

/* The absolute directory of path (which need not exist). */
static int config_dir(const char *path, char **ret) {
    const char *slash = strrchr(path, '/');
    _cleanup_free_ char *cwd = NULL, *d = NULL;
    if (slash == path) {
        *ret = strdup("/");
        return *ret ? 0 : -ENOMEM;
    }
    if (slash) {
        d = strndup(path, (size_t)(slash - path));
        if (!d)
            return -ENOMEM;
        if (d[0] == '/') {
            *ret = TAKE_PTR(d);
            return 0;
        }
    }
    cwd = get_current_dir_name();
    if (!cwd)
        return errno > 0 ? -errno : -ENOMEM;
    char *r = d ? path_abs(cwd, d) : strdup(cwd);
    if (!r)
        return -ENOMEM;
    *ret = r;
    return 0;
}

/* Moves the sorted messages into a new strv; NULL on ENOMEM. */
static char **errors_take(ctx *c) {
    qsort(c->errors, c->n_errors, sizeof(cerror), cerror_cmp);
    char **v = calloc(c->n_errors + 2, sizeof(char *));
    if (!v)
        return NULL;
    for (size_t i = 0; i < c->n_errors; i++)
        v[i] = TAKE_PTR(c->errors[i].msg);
    if (c->stop && c->n_errors >= CONFIG_MAX_ERRORS &&
        asprintf(&v[c->n_errors], "%s: too many errors, stopping", c->file) < 0)
        v[c->n_errors] = NULL;
    return v;
}

static void ctx_done(ctx *c) {
    for (size_t i = 0; i < c->n_errors; i++)
        free(c->errors[i].msg);
    free(c->errors);
    free(c->path);
    for (size_t i = 0; i < c->n_ports; i++) {
        free(c->ports[i].host);
        free(c->ports[i].path);
    }
    free(c->ports);
}

/* Records libyaml's complaint about the text. */
static void yaml_problem(ctx *c, const yaml_parser_t *p) {
    char *msg = NULL;
    int r;
    const char *problem = p->problem ? p->problem : "unknown error";
    if (p->error == YAML_READER_ERROR)
        r = asprintf(&msg, "%s: invalid YAML: %s at byte %zu", c->file, problem,
                     p->problem_offset);
    else if (p->context)
        r = asprintf(&msg, "%s:%zu:%zu: invalid YAML: %s (%s at line %zu)", c->file,
                     p->problem_mark.line + 1, p->problem_mark.column + 1, problem, p->context,
                     p->context_mark.line + 1);
    else
        r = asprintf(&msg, "%s:%zu:%zu: invalid YAML: %s", c->file, p->problem_mark.line + 1,
                     p->problem_mark.column + 1, problem);
    error_add(c, p->problem_mark.line + 1, p->problem_mark.column + 1, r < 0 ? NULL : msg);
}

/* A composer error (libyaml's wording for the same cases). */
static void compose_error(ctx *c, const char *problem, yaml_mark_t mark, const char *context,
                          const yaml_mark_t *context_mark) {
    char *msg = NULL;
    int r = context ? asprintf(&msg, "%s:%zu:%zu: invalid YAML: %s (%s at line %zu)", c->file, mark.line + 1,
                               mark.column + 1, problem, context, context_mark->line + 1)
                    : asprintf(&msg, "%s:%zu:%zu: invalid YAML: %s", c->file, mark.line + 1, mark.column + 1,
                               problem);
    error_add(c, mark.line + 1, mark.column + 1, r < 0 ? NULL : msg);
}

/* What the limits count over the whole stream, and one document's anchors. */
typedef struct compose_state {
    size_t anchors, aliases;
    struct { char *name; int node; yaml_mark_t mark; } anchor[CONFIG_MAX_ANCHORS];
    size_t n_anchor;
} compose_state;

static void compose_state_done(compose_state *st) {
    for (size_t i = 0; i < st->n_anchor; i++)
        free(st->anchor[i].name);
    st->n_anchor = 0;
}

typedef struct compose_frame {
    int node;
    int key;                /* a mapping's key waiting for its value, 0: none */
} compose_frame;

/*
 * The document is a yaml_document_t, which the walkers read through
 * yaml_document_get_node(), but its nodes are stored here rather than by
 * yaml_document_add_*(): those copy every scalar and tag that the event
 * already holds, and yaml_document_delete() frees the copies again, a
 * quarter of the load.  A node takes its event's value and explicit tag
 * instead; the default tags are the static strings below, not copies.
 * Such a document is freed with doc_free() only.
 */
static const char SCALAR_TAG[] = YAML_DEFAULT_SCALAR_TAG, SEQUENCE_TAG[] = YAML_DEFAULT_SEQUENCE_TAG,
                  MAPPING_TAG[] = YAML_DEFAULT_MAPPING_TAG;

/* Room for one more element in a libyaml-style stack (start, top, end). */
static bool stack_room(void **start, void **top, void **end, size_t size) {
    if (*top != *end)
        return true;
    size_t n = (size_t)((char *)*end - (char *)*start) / size, cap = n ? 2 * n : 8;
    char *p = reallocarray(*start, cap, size);
    if (!p)
        return false;
    *start = p;
    *top = p + n * size;
    *end = p + cap * size;
    return true;
}
#define STACK_ROOM(st) stack_room((void **)&(st).start, (void **)&(st).top, (void **)&(st).end, sizeof(*(st).start))

static void doc_init(yaml_document_t *doc, int start_implicit) {
    memset(doc, 0, sizeof(*doc));
    doc->start_implicit = start_implicit;
    doc->end_implicit = 1;
}

static void doc_free(yaml_document_t *doc) {
    for (yaml_node_t *n = doc->nodes.start; n && n < doc->nodes.top; n++) {
        const char *tag = (const char *)n->tag;
        if (tag != SCALAR_TAG && tag != SEQUENCE_TAG && tag != MAPPING_TAG)
            free(n->tag);
        if (n->type == YAML_SCALAR_NODE)
            free(n->data.scalar.value);
        else if (n->type == YAML_SEQUENCE_NODE)
            free(n->data.sequence.items.start);
        else if (n->type == YAML_MAPPING_NODE)
            free(n->data.mapping.pairs.start);
    }
    free(doc->nodes.start);
    memset(doc, 0, sizeof(*doc));
}

/* The event's explicit tag, taken from it, or the static default. */
static yaml_char_t *take_tag(yaml_char_t **tag, const char *dflt) {
    if (!*tag || strcmp((const char *)*tag, "!") == 0)
        return (yaml_char_t *)dflt;
    return TAKE_PTR(*tag);
}

/* Adds the node of a scalar, sequence-start or mapping-start event, taking
 * its strings; its 1-based index, or 0 when out of memory. */
static int doc_add(yaml_document_t *doc, yaml_event_t *ev) {
    if (doc->nodes.top - doc->nodes.start >= INT_MAX || !STACK_ROOM(doc->nodes))
        return 0;
    yaml_node_t *n = doc->nodes.top;
    memset(n, 0, sizeof(*n));
    n->start_mark = ev->start_mark;
    n->end_mark = ev->end_mark;
    if (ev->type == YAML_SCALAR_EVENT) {
        n->type = YAML_SCALAR_NODE;
        n->tag = take_tag(&ev->data.scalar.tag, SCALAR_TAG);
        n->data.scalar.value = TAKE_PTR(ev->data.scalar.value);
        n->data.scalar.length = ev->data.scalar.length;
        n->data.scalar.style = ev->data.scalar.style;
    } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
        n->type = YAML_SEQUENCE_NODE;
        n->tag = take_tag(&ev->data.sequence_start.tag, SEQUENCE_TAG);
        n->data.sequence.style = ev->data.sequence_start.style;
    } else {
        n->type = YAML_MAPPING_NODE;
        n->tag = take_tag(&ev->data.mapping_start.tag, MAPPING_TAG);
        n->data.mapping.style = ev->data.mapping_start.style;
    }
    doc->nodes.top++;
    return (int)(doc->nodes.top - doc->nodes.start);
}

static int compose_attach(yaml_document_t *doc, compose_frame *top, int node) {
    if (!top)
        return 1; /* the root: the first node added */
    yaml_node_t *parent = yaml_document_get_node(doc, top->node);
    if (parent->type == YAML_SEQUENCE_NODE) {
        if (!STACK_ROOM(parent->data.sequence.items))
            return 0;
        *parent->data.sequence.items.top++ = node;
        return 1;
    }
    if (!top->key) {
        top->key = node;
        return 1;
    }
    if (!STACK_ROOM(parent->data.mapping.pairs))
        return 0;
    *parent->data.mapping.pairs.top++ = (yaml_node_pair_t){.key = top->key, .value = node};
    top->key = 0;
    return 1;
}

/*
 * One document from the parser's events, built as yaml_parser_load()
 * builds it (nodes in the same order, the same marks, anchors registered
 * where their node starts), while checking the limits: libyaml's scanner
 * does work proportional to the flow nesting depth for every token, so
 * "[[[[..." is quadratic, and its loader looks anchors up in a list.  One
 * pass over the text instead of a checking pass and a load.
 *
 * Returns 1 with *doc initialized (no root node once the stream has
 * ended), 0 when an error was recorded (syntax, limit, alias), or -ENOMEM;
 * *doc is only to be deleted after 1.
 */
static int compose(ctx *c, yaml_parser_t *p, compose_state *st, yaml_document_t *doc) {
    compose_frame stack[CONFIG_MAX_DEPTH + 1];
    int depth = 0, r = -ENOMEM;
    bool have_doc = false;
    compose_state_done(st); /* anchors are per document */
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(p, &ev)) {
            /* libyaml fails some allocations without setting p->error. */
            if (p->error == YAML_MEMORY_ERROR || p->error == YAML_NO_ERROR)
                goto fail;
            yaml_problem(c, p);
            r = 0;
            goto fail;
        }
        yaml_event_type_t type = ev.type;
        if (type == YAML_NO_EVENT || type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            if (!have_doc)
                doc_init(doc, 1);
            return 1;
        }
        if (type == YAML_STREAM_START_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        if (type == YAML_DOCUMENT_START_EVENT) {
            doc_init(doc, ev.data.document_start.implicit);
            have_doc = true;
            doc->start_mark = ev.start_mark;
            yaml_event_delete(&ev);
            continue;
        }
        if (type == YAML_DOCUMENT_END_EVENT) {
            doc->end_implicit = ev.data.document_end.implicit;
            doc->end_mark = ev.end_mark;
            yaml_event_delete(&ev);
            return 1;
        }
        compose_frame *top = depth > 0 ? &stack[depth - 1] : NULL;
        if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
            if (top)
                yaml_document_get_node(doc, top->node)->end_mark = ev.end_mark;
            depth--;
            yaml_event_delete(&ev);
            continue;
        }

        /* The limits, as the events come. */
        const yaml_char_t *anchor = type == YAML_SCALAR_EVENT           ? ev.data.scalar.anchor
                                    : type == YAML_SEQUENCE_START_EVENT ? ev.data.sequence_start.anchor
                                    : type == YAML_MAPPING_START_EVENT  ? ev.data.mapping_start.anchor
                                                                        : NULL;
        const char *what = NULL, *unit = "";
        int limit = 0;
        if (anchor && ++st->anchors > CONFIG_MAX_ANCHORS) {
            what = "too many anchors (at most";
            limit = CONFIG_MAX_ANCHORS;
        } else if (type == YAML_ALIAS_EVENT && ++st->aliases > CONFIG_MAX_ALIASES) {
            what = "too many aliases (at most";
            limit = CONFIG_MAX_ALIASES;
        } else if ((type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) &&
                   depth + 1 > CONFIG_MAX_DEPTH) {
            what = "nesting is too deep (more than";
            unit = " levels";
            limit = CONFIG_MAX_DEPTH;
        }
        if (what) {
            char *msg = NULL;
            size_t line = ev.start_mark.line + 1, col = ev.start_mark.column + 1;
            if (asprintf(&msg, "%s:%zu:%zu: %s %d%s)", c->file, line, col, what, limit, unit) < 0)
                msg = NULL;
            error_add(c, line, col, msg);
            yaml_event_delete(&ev);
            r = 0;
            goto fail;
        }

        int node = 0;
        if (type == YAML_ALIAS_EVENT) {
            for (size_t i = 0; i < st->n_anchor && !node; i++)
                if (strcmp(st->anchor[i].name, (const char *)ev.data.alias.anchor) == 0)
                    node = st->anchor[i].node;
            if (!node) {
                compose_error(c, "found undefined alias", ev.start_mark, NULL, NULL);
                yaml_event_delete(&ev);
                r = 0;
                goto fail;
            }
        } else {
            if (anchor) {
                for (size_t i = 0; i < st->n_anchor; i++) {
                    if (strcmp(st->anchor[i].name, (const char *)anchor) == 0) {
                        compose_error(c, "second occurrence", ev.start_mark, "found duplicate anchor; first occurrence",
                                      &st->anchor[i].mark);
                        yaml_event_delete(&ev);
                        r = 0;
                        goto fail;
                    }
                }
                char *name = strdup((const char *)anchor);
                if (!name) {
                    yaml_event_delete(&ev);
                    goto fail;
                }
                st->anchor[st->n_anchor].name = name;
                st->anchor[st->n_anchor].mark = ev.start_mark;
            }
            if (!(node = doc_add(doc, &ev))) {
                if (anchor)
                    free(st->anchor[st->n_anchor].name);
                yaml_event_delete(&ev);
                goto fail;
            }
            if (anchor)
                st->anchor[st->n_anchor++].node = node;
        }
        yaml_event_delete(&ev);
        if (!compose_attach(doc, top, node))
            goto fail;
        if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT)
            stack[depth++] = (compose_frame){.node = node};
    }
fail:
    if (have_doc)
        doc_free(doc);
    return r;
}


int config_load_string(const char *path, const char *text, size_t len,
                       tend_config **ret_config, char ***ret_errors) {
    ctx c = {.file = path};
    tend_config *cfg = NULL;
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    bool have_parser = false, have_doc = false;
    top_ctx tc = {0};
    compose_state cs = {0};
    int r;

    cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        r = -ENOMEM;
        goto finish;
    }
    tend_config_init(cfg);
    if (!(cfg->file = strdup(path))) {
        r = -ENOMEM;
        goto finish;
    }
    r = config_dir(path, &cfg->dir);
    if (r < 0)
        goto finish;
    c.dir = cfg->dir;
    tc.cfg = cfg;

    if (len > CONFIG_MAX_FILE) {
        error_at(&c, NULL, "file is too large (more than 4 MiB)");
        goto check;
    }
    if (!yaml_parser_initialize(&parser)) {
        r = -ENOMEM;
        goto finish;
    }
    have_parser = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    r = compose(&c, &parser, &cs, &doc);
    if (r < 0)
        goto finish;
    if (r == 0)
        goto check;
    have_doc = true;
    c.doc = &doc;

    /* A second document is a mistake, not something to ignore. */
    r = compose(&c, &parser, &cs, &extra);
    if (r < 0)
        goto finish;
    if (r > 0) {
        yaml_node_t *root = yaml_document_get_root_node(&extra);
        if (root)
            error_at(&c, root, "only one YAML document is allowed (remove the \"---\" "
                               "separator)");
        doc_free(&extra);
    }
    r = 0;

    walk(&c, cfg, &tc);

check:
    if (c.oom) {
        r = -ENOMEM;
        goto finish;
    }
    if (c.n_errors > 0) {
        r = -EINVAL;
        goto finish;
    }
    r = config_defaults(cfg);
    if (r < 0)
        goto finish;
    if (ret_errors)
        *ret_errors = NULL;
    *ret_config = TAKE_PTR(cfg);
    r = 0;

finish:
    if (r < 0 && ret_errors) {
        *ret_errors = NULL;
        if (r == -EINVAL) {
            *ret_errors = errors_take(&c);
            if (!*ret_errors)
                r = -ENOMEM;
        } else if (r != -ENOMEM) {
            char *msg = NULL;
            char **v = calloc(2, sizeof(char *));
            if (v && asprintf(&msg, "%s: %s", path, strerror(-r)) >= 0)
                v[0] = msg;
            *ret_errors = v;
        }
    }
    if (tc.extras) {
        for (size_t i = 0; i < tc.n_extras; i++) {
            free(tc.extras[i].dep_nodes);
            strv_free(tc.extras[i].env_file_vars);
            strv_free(tc.extras[i].env_map);
        }
        free(tc.extras);
    }
    tend_config_free(cfg);
    if (have_doc)
        doc_free(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    compose_state_done(&cs);
    ctx_done(&c);
    return r;
}

int config_load(const char *path, tend_config **ret_config, char ***ret_errors) {
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    int r = read_file(path, CONFIG_MAX_FILE, &text, &len);
    if (r < 0) {
        if (ret_errors) {
            char **v = calloc(2, sizeof(char *));
            const char *why = r == -EFBIG ? "file is too large (more than 4 MiB)" : strerror(-r);
            if (v && asprintf(&v[0], "%s: %s", path, why) < 0)
                v[0] = NULL;
            *ret_errors = v;
        }
        return r;
    }
    return config_load_string(path, text, len, ret_config, ret_errors);
}

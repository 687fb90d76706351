/*
 * proj.c — projections: the consumer engine folding events into partitioned
 * state, in C (an apply callback over JSON text) or in Lua (proj_lua.c).
 *
 * State cache.  Partitions touched since the last commit live in a small
 * hash table: for C the JSON text, for Lua a registry reference to the
 * table.  A miss loads the committed row (pstate: name 0x00 be64(gen)
 * partition) or starts from the initial state.  A commit (consumer.c)
 * calls flush, which writes every dirty partition into the same
 * transaction as the record and its checkpoint: state and checkpoint move
 * together, so after a crash each event has been applied exactly once.
 * discard drops the cache (uncommitted work is replayed by the engine).
 * The cache is emptied when it grows past EVS_PROJ_CACHE_MAX entries.
 *
 * Rebuild.  The record's build_gen names a fresh generation; while it is
 * set, rec.next is the rebuild's cursor, flush writes build_gen rows, and
 * queries keep reading the active generation.  When a poll reaches the
 * head, one transaction makes build_gen active and deletes the old rows.
 * The DLQ follows the same rule: the rebuild parks under its build owner
 * (bus_internal.h) while users see the live entries, and the swap replaces
 * the live entries from the rebuild's start with the rebuild's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus/bus_internal.h"
#include "core/json.h"

#define EVS_PROJ_CACHE_MAX 4096
/* evs_proj_wait on PostgreSQL: how often the position is read again (a commit in this process wakes it at once) */
#define EVS_PROJ_WAIT_POLL_MS 5

static void timespec_add_ms(struct timespec *t, int ms) {
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) t->tv_sec++, t->tv_nsec -= 1000000000L;
}

typedef struct pentry {
    char *key;                    /* NULL: empty slot */
    size_t klen;
    char *json;                   /* C: current state text (NUL-terminated) */
    size_t len;
    int ref;                      /* Lua: registry reference */
    int dirty;
} pentry;

struct evs_projection {
    evs__consumer c;              /* first: the engine sees a consumer */
    evs_proj_apply_fn apply;
    evs_proj_partition_fn partfn;
    void *ctx;
    char *initial;
    size_t initial_len;
    evs__lua *lua;
    pentry *tab;
    size_t cap, used;
};

/* ----------------------------------------------------------------- cache */

static uint64_t hash(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static void entry_free(evs_projection *p, pentry *e) {
    free(e->key);
    free(e->json);
    if (p->lua && e->ref) evs__lua_unref(p->lua, e->ref);
    memset(e, 0, sizeof *e);
}

static void cache_clear(evs_projection *p) {
    for (size_t i = 0; i < p->cap; i++)
        if (p->tab[i].key) entry_free(p, &p->tab[i]);
    p->used = 0;
}

static pentry *cache_find(evs_projection *p, const char *k, size_t n, int *found) {
    size_t i = (size_t)hash(k, n) & (p->cap - 1);
    while (p->tab[i].key) {
        if (p->tab[i].klen == n && memcmp(p->tab[i].key, k, n) == 0) {
            *found = 1;
            return &p->tab[i];
        }
        i = (i + 1) & (p->cap - 1);
    }
    *found = 0;
    return &p->tab[i];
}

static uint64_t target_gen(const evs_projection *p) {
    return p->c.rec.build_gen ? p->c.rec.build_gen : p->c.rec.generation;
}

static size_t pkey(uint8_t *buf, const char *name, uint64_t gen, const char *part, size_t plen) {
    size_t nl = strlen(name);
    memcpy(buf, name, nl);
    buf[nl] = 0;
    evs__put64be(buf + nl + 1, gen);
    memcpy(buf + nl + 9, part, plen);
    return nl + 9 + plen;
}

#define PKEY_MAX (EVS_BUS_MAX_NAME + 9 + EVS_MAX_STREAM_NAME)

/* The cached entry of partition k, loading or initialising it. */
static int cache_get(evs_projection *p, const char *k, size_t n, pentry **out, char *err, size_t cap) {
    int found, rc;
    if (p->used >= EVS_PROJ_CACHE_MAX) {
        /* evict clean entries; dirty ones must wait for the commit */
        int dirty = 0;
        for (size_t i = 0; i < p->cap; i++) dirty |= p->tab[i].key && p->tab[i].dirty;
        if (!dirty) cache_clear(p);
        else if ((rc = evs__consumer_commit(&p->c, NULL))) return rc;
        else cache_clear(p);
    }
    pentry *e = cache_find(p, k, n, &found);
    if (found) {
        *out = e;
        return EVS_OK;
    }
    /* load the committed row */
    uint8_t kb[PKEY_MAX];
    evs__kv_txn *txn;
    evs__kv_val key = {pkey(kb, p->c.rec.name, target_gen(p), k, n), kb}, v;
    if ((rc = evs__kv_begin(p->c.bus->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    rc = evs__kv_get(txn, p->c.bus->pstate, &key, &v);
    const char *src = NULL;
    size_t slen = 0;
    char *copy = NULL;
    if (rc == 0) {
        if (!(copy = malloc(v.size + 1))) rc = evs__err(EVS_ENOMEM, "out of memory");
        else {
            memcpy(copy, v.data, v.size);
            copy[v.size] = 0;
            src = copy;
            slen = v.size;
        }
    } else if (rc == EVS__KV_NOTFOUND) {
        rc = EVS_OK;
    } else {
        rc = evs__bus_kv_err(rc, "read state");
    }
    evs__kv_abort(txn);
    if (rc) {
        free(copy);
        return rc;
    }
    if (!(e->key = malloc(n + 1))) {
        free(copy);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    memcpy(e->key, k, n);
    e->key[n] = 0;
    e->klen = n;
    p->used++;
    if (p->lua) {
        rc = evs__lua_load_state(p->lua, src, slen, &e->ref, err, cap);
        free(copy);
        if (rc) {
            entry_free(p, e);
            p->used--;
            return rc;
        }
    } else if (copy) {
        e->json = copy;
        e->len = slen;
    } else {
        if (!(e->json = strdup(p->initial))) {
            entry_free(p, e);
            p->used--;
            return evs__err(EVS_ENOMEM, "out of memory");
        }
        e->len = p->initial_len;
    }
    *out = e;
    return EVS_OK;
}

/* ---------------------------------------------------------------- engine */

static int partition_of(evs_projection *p, const evs_event *ev, char *buf, size_t bufcap, char *err, size_t cap) {
    switch (p->c.rec.partitioning) {
    case EVS_PARTITION_NONE: return 0;
    case EVS_PARTITION_CUSTOM: {
        int n = p->lua ? evs__lua_partition(p->lua, ev, buf, bufcap, err, cap) : p->partfn(p->ctx, ev, buf, bufcap);
        if (n < 0 || (size_t)n >= bufcap) {
            if (!err[0]) snprintf(err, cap, "partition function failed");
            return -1;
        }
        return n;
    }
    default:
        memcpy(buf, ev->stream, ev->stream_len);
        return (int)ev->stream_len;
    }
}

static int proj_deliver(evs__consumer *c, const evs_event *ev, char *err, size_t cap) {
    evs_projection *p = (evs_projection *)c;
    char part[EVS_MAX_STREAM_NAME + 1];
    int n = partition_of(p, ev, part, sizeof part, err, cap);
    if (n < 0) return 1;
    pentry *e = NULL;
    int rc = cache_get(p, part, (size_t)n, &e, err, cap);
    if (rc) {
        if (!err[0]) evs__bus_fmt(err, cap, "%s", evs_errmsg());
        return 1;
    }
    if (p->lua) {
        /* the handler mutates the table in place: mark dirty first, a failure discards the cache */
        e->dirty = 1;
        if (evs__lua_apply(p->lua, &e->ref, ev, err, cap)) return 1;
        /* check now, so a state JSON cannot represent fails this event, not a later commit */
        char why[256] = "";
        if (evs__lua_check(p->lua, e->ref, why, sizeof why)) {
            evs__bus_fmt(err, cap, "handler for %.*s left a state that cannot be stored: %s", (int)ev->event_type_len,
                         ev->event_type, why);
            return 1;
        }
        return 0;
    }
    char *ns = NULL;
    size_t nl = 0;
    if (p->apply(p->ctx, ev, e->json, e->len, &ns, &nl, err, cap) != 0) {
        free(ns);
        return 1;
    }
    if (!ns) return 0;
    evs_json_error je;
    if (evs__json_validate(ns, nl, &je) != EVS_OK) {
        evs__bus_fmt(err, cap, "handler returned invalid JSON state: %s", je.msg);
        free(ns);
        return 1;
    }
    char *t = realloc(ns, nl + 1);
    if (!t) {
        free(ns);
        snprintf(err, cap, "out of memory");
        return 1;
    }
    t[nl] = 0;
    free(e->json);
    e->json = t;
    e->len = nl;
    e->dirty = 1;
    return 0;
}

static int proj_flush(evs__consumer *c, evs__kv_txn *txn) {
    evs_projection *p = (evs_projection *)c;
    uint8_t kb[PKEY_MAX];
    int rc = EVS_OK;
    for (size_t i = 0; i < p->cap && !rc; i++) {
        pentry *e = &p->tab[i];
        if (!e->key || !e->dirty) continue;
        char *js = e->json, *enc = NULL;
        size_t jl = e->len;
        if (p->lua) {
            char err[256] = "";
            if ((rc = evs__lua_encode(p->lua, e->ref, &enc, &jl, err, sizeof err))) {
                rc = evs__err(rc, "projection \"%s\", partition \"%s\": %s", c->rec.name, e->key, err);
                break;
            }
            js = enc;
        }
        evs__kv_val k = {pkey(kb, c->rec.name, target_gen(p), e->key, e->klen), kb}, v = {jl, js};
        if ((rc = evs__kv_put(txn, c->bus->pstate, &k, &v, 0))) rc = evs__bus_kv_err(rc, "write state");
        free(enc);
    }
    if (rc) return rc;
    for (size_t i = 0; i < p->cap; i++) p->tab[i].dirty = 0;
    return EVS_OK;
}

static void proj_discard(evs__consumer *c) { cache_clear((evs_projection *)c); }

static int delete_gen(evs_projection *p, evs__kv_txn *txn, uint64_t gen) {
    return evs__pstate_delete_gen(p->c.bus, txn, p->c.rec.name, gen);
}

/* Caught up: a rebuild swaps its generation in. */
static int proj_caught_up(evs__consumer *c) {
    evs_projection *p = (evs_projection *)c;
    if (!c->rec.build_gen) return EVS_OK;
    int rc;
    /* commit the rebuild's pending rows first (state + cursor) */
    if ((rc = evs__consumer_commit(c, NULL))) return rc;
    evs__kv_txn *txn;
    if ((rc = evs__kv_begin(c->bus->kv, c->lease, 0, &txn))) return evs__bus_kv_err(rc, "begin");
    /* on any failure the record goes back exactly as it was: still rebuilding */
    uint64_t old = c->rec.generation, build = c->rec.build_gen, build_next = c->rec.build_next;
    if ((rc = delete_gen(p, txn, old))) goto fail;
    /* the rebuild's DLQ replaces the live one from where it started */
    if ((rc = evs__dlq_adopt_txn(c->bus, txn, c->rec.name, c->build_owner, c->rec.build_from))) goto fail;
    c->rec.generation = build;
    c->rec.build_gen = 0;
    c->rec.build_next = 0;
    if ((rc = evs__record_put(c->bus, txn, &c->rec))) goto fail;
    if ((rc = evs__kv_commit(txn))) {
        txn = NULL;
        rc = evs__bus_kv_err(rc, "commit");
        goto fail;
    }
    atomic_fetch_add(&c->bus->dlq_gen, 1);
    cache_clear(p);
    evs__bus_notify_commit(c->bus);
    return EVS_OK;
fail:
    if (txn) evs__kv_abort(txn);
    c->rec.generation = old;
    c->rec.build_gen = build;
    c->rec.build_next = build_next;
    return rc;
}

static const evs__consumer_ops proj_ops = {proj_deliver, proj_flush, proj_discard, proj_caught_up};

/* ------------------------------------------------------------------ API */

void evs_proj_config_init(evs_proj_config *c) {
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->page_size = EVS_BUS_MAX_PAGE;
    c->checkpoint_every = 1000;
    c->checkpoint_ms = 1000;
    evs_retry_policy_default(&c->retry);
    c->retry.max_retries = 0;
    c->on_failure = EVS_ON_FAILURE_PARK;
}

static int proj_new(evs_bus *b, const evs_proj_config *cfg, evs_projection **out) {
    if (cfg->page_size > EVS_BUS_MAX_PAGE)
        return evs__err(EVS_ELIMIT, "proj_open: page_size %u exceeds %u", cfg->page_size, EVS_BUS_MAX_PAGE);
    evs_projection *p = calloc(1, sizeof *p);
    if (!p) return evs__err(EVS_ENOMEM, "out of memory");
    p->cap = 2 * EVS_PROJ_CACHE_MAX;
    if (!(p->tab = calloc(p->cap, sizeof *p->tab))) {
        free(p);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    evs__consumer *c = &p->c;
    c->page_size = cfg->page_size ? cfg->page_size : EVS_BUS_MAX_PAGE;
    c->checkpoint_every = cfg->checkpoint_every ? cfg->checkpoint_every : 1000;
    c->checkpoint_ms = cfg->checkpoint_ms ? cfg->checkpoint_ms : 1000;
    c->retry = cfg->retry;
    c->on_failure = cfg->on_failure;
    c->per_stream_order = cfg->per_stream_order;
    c->clock = cfg->clock;
    c->map = cfg->map;
    c->ops = &proj_ops;
    c->impl = p;
    (void)b;
    *out = p;
    return EVS_OK;
}

static void proj_free(evs_projection *p) {
    if (!p) return;
    if (p->tab) cache_clear(p);
    free(p->tab);
    free(p->initial);
    evs__lua_free(p->lua);
    free(p);
}

/* Shared tail of the openers: the consumer record and the partitioning. */
static int proj_start(evs_projection *p, evs_bus *b, const char *name, const evs_filter *f, const char *tag,
                      int partitioning, const char *lua_source) {
    int rc = evs__consumer_init(&p->c, b, EVS__KIND_PROJ, name, NULL, NULL, f, tag, EVS_SUB_FROM_START);
    if (rc) return rc;
    p->c.rec.partitioning = partitioning;
    if (lua_source && (!p->c.rec.lua_source || strcmp(p->c.rec.lua_source, lua_source) != 0)) {
        free(p->c.rec.lua_source);
        if (!(p->c.rec.lua_source = strdup(lua_source))) {
            evs__consumer_fini(&p->c);
            return evs__err(EVS_ENOMEM, "out of memory");
        }
    }
    p->c.record_dirty = 1;
    if ((rc = evs__consumer_commit(&p->c, NULL))) evs__consumer_fini(&p->c);
    return rc;
}

int evs_proj_open(evs_bus *b, const evs_proj_config *cfg, evs_projection **out) {
    int rc;
    if (!out) return evs__err(EVS_EINVAL, "proj_open: out is NULL");
    *out = NULL;
    if (!b || !cfg || !cfg->apply) return evs__err(EVS_EINVAL, "proj_open: bus, config and apply are required");
    if (cfg->partitioning == EVS_PARTITION_CUSTOM && !cfg->partition)
        return evs__err(EVS_EINVAL, "proj_open: custom partitioning needs a partition function");
    if ((unsigned)cfg->partitioning > EVS_PARTITION_CUSTOM) return evs__err(EVS_EINVAL, "proj_open: bad partitioning");
    const char *init = cfg->initial_state ? cfg->initial_state : "{}";
    evs_json_error je;
    if (evs__json_validate(init, strlen(init), &je))
        return evs__err(EVS_EJSON, "proj_open: initial_state: %s", je.msg);
    evs_projection *p;
    if ((rc = proj_new(b, cfg, &p))) return rc;
    p->apply = cfg->apply;
    p->partfn = cfg->partition;
    p->ctx = cfg->ctx;
    p->initial_len = strlen(init);
    if (!(p->initial = strdup(init))) {
        proj_free(p);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    if ((rc = proj_start(p, b, cfg->name, &cfg->filter, cfg->tag, cfg->partitioning, NULL))) {
        proj_free(p);
        return rc;
    }
    *out = p;
    return EVS_OK;
}

int evs_proj_check_lua(const char *name, const char *source, size_t source_len, const evs_lua_limits *limits) {
    if (!name || !source) return evs__err(EVS_EINVAL, "proj_check_lua: name and source are required");
    /* the name first, as evs_proj_open_lua checks it: a script fine under a bad name is still refused */
    int rc = evs__bus_check_name(name);
    if (rc) return rc;
    evs__lua *L = NULL;
    evs__lua_decl decl;
    memset(&decl, 0, sizeof decl);
    rc = evs__lua_new(source, source_len, limits, &L, &decl);
    if (rc) return evs__err_prefix(rc, "projection \"%s\": ", name);
    evs__lua_decl_free(&decl);
    evs__lua_free(L);
    return EVS_OK;
}

int evs_proj_open_lua(evs_bus *b, const char *name, const char *source, size_t source_len,
                      const evs_lua_limits *limits, const evs_proj_config *cfg, evs_projection **out) {
    int rc;
    if (!out) return evs__err(EVS_EINVAL, "proj_open_lua: out is NULL");
    *out = NULL;
    if (!b || !source) return evs__err(EVS_EINVAL, "proj_open_lua: bus and source are required");
    if (cfg && cfg->name) name = cfg->name;
    if ((rc = evs__bus_check_name(name))) return rc;
    evs_proj_config def;
    if (!cfg) {
        evs_proj_config_init(&def);
        cfg = &def;
    }
    evs_projection *p;
    if ((rc = proj_new(b, cfg, &p))) return rc;
    evs__lua_decl decl;
    memset(&decl, 0, sizeof decl);
    if ((rc = evs__lua_new(source, source_len, limits, &p->lua, &decl))) {
        rc = evs__err_prefix(rc, "projection \"%s\": ", name);
        proj_free(p);
        return rc;
    }
    char *src = malloc(source_len + 1);
    if (!src) {
        evs__lua_decl_free(&decl);
        proj_free(p);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    memcpy(src, source, source_len);
    src[source_len] = 0;
    rc = proj_start(p, b, name, &decl.filter, NULL, decl.partitioning, src);
    free(src);
    evs__lua_decl_free(&decl);
    if (rc) {
        proj_free(p);
        return rc;
    }
    *out = p;
    return EVS_OK;
}

int evs_proj_open_stored(evs_bus *b, const char *name, const evs_lua_limits *limits, evs_projection **out) {
    return evs_proj_open_stored_cfg(b, name, limits, NULL, out);
}

int evs_proj_open_stored_cfg(evs_bus *b, const char *name, const evs_lua_limits *limits, const evs_proj_config *cfg,
                             evs_projection **out) {
    int rc;
    evs__record r;
    if (!out) return evs__err(EVS_EINVAL, "proj_open_stored: out is NULL");
    *out = NULL;
    if (!b) return evs__err(EVS_EINVAL, "proj_open_stored: bus is NULL");
    if ((rc = evs__bus_check_name(name))) return rc;
    if ((rc = evs__record_read(b, name, &r))) return rc;
    if (r.kind != EVS__KIND_PROJ || !r.lua_source) {
        evs__record_free(&r);
        return evs__err(EVS_EINVAL, "consumer \"%s\" is not a Lua projection", name);
    }
    rc = evs_proj_open_lua(b, name, r.lua_source, strlen(r.lua_source), limits, cfg, out);
    evs__record_free(&r);
    return rc;
}

int evs_proj_poll(evs_projection *p, int timeout_ms, size_t max_events, size_t *applied) {
    if (!p) return evs__err(EVS_EINVAL, "proj_poll: projection is NULL");
    return evs__consumer_poll(&p->c, timeout_ms, max_events, applied);
}

void evs_proj_cancel(evs_projection *p) {
    if (p) atomic_store(&p->c.cancelled, 1);
}

int evs_proj_checkpoint(evs_projection *p) {
    if (!p) return evs__err(EVS_EINVAL, "proj_checkpoint: projection is NULL");
    return evs__consumer_commit(&p->c, NULL);
}

int evs_proj_pause(evs_projection *p) {
    if (!p) return evs__err(EVS_EINVAL, "proj_pause: projection is NULL");
    return evs__consumer_set_status(&p->c, EVS_CONSUMER_PAUSED);
}

int evs_proj_resume(evs_projection *p) {
    if (!p) return evs__err(EVS_EINVAL, "proj_resume: projection is NULL");
    return evs__consumer_set_status(&p->c, EVS_CONSUMER_ACTIVE);
}

void evs_proj_close(evs_projection *p) {
    if (!p) return;
    if (p->c.bus) {
        evs__consumer_commit(&p->c, NULL);
        evs__consumer_fini(&p->c);
    }
    proj_free(p);
}

/*
 * Start a rebuild from `from` (replacing one in progress).  forget_dlq: a
 * reset, which also empties the live DLQ, in the same transaction as the
 * record that moves the projection back: a crash between the two would
 * leave entries below the new start that nothing replaces.
 */
static int start_rebuild(evs_projection *p, uint64_t from, int forget_dlq) {
    int rc;
    evs__consumer *c = &p->c;
    if ((rc = evs__bus_start_next(c->store, NULL, from, &from))) return rc;
    if ((rc = evs__consumer_commit(c, NULL))) return rc;
    cache_clear(p);
    evs__kv_txn *txn;
    if ((rc = evs__kv_begin(c->bus->kv, c->lease, 0, &txn))) return evs__bus_kv_err(rc, "begin");
    uint64_t gen = c->rec.generation + 1;
    /* a new rebuild parks afresh: what an abandoned one parked goes */
    if ((rc = delete_gen(p, txn, gen)) || (rc = evs__dlq_clear_txn(c->bus, txn, c->build_owner))) {
        evs__kv_abort(txn);
        return rc;
    }
    uint64_t saved_gen = c->rec.build_gen, saved_from = c->rec.build_from, saved_bnext = c->rec.build_next,
             saved_next = c->rec.next;
    if (!c->rec.build_gen) c->rec.build_next = c->rec.next;
    c->rec.build_gen = gen;
    c->rec.build_from = from;
    c->rec.next = c->rec.build_from;
    rc = evs__record_put(c->bus, txn, &c->rec);
    if (!rc && forget_dlq && !(rc = evs__bus_fault("proj_reset")))
        rc = evs__dlq_clear_txn(c->bus, txn, c->rec.name);
    if (rc) evs__kv_abort(txn);
    else if ((rc = evs__kv_commit(txn))) rc = evs__bus_kv_err(rc, "commit");
    if (rc) {
        c->rec.build_gen = saved_gen;
        c->rec.build_from = saved_from;
        c->rec.build_next = saved_bnext;
        c->rec.next = saved_next;
        return rc;
    }
    c->committed_next = c->rec.next;
    atomic_fetch_add(&c->bus->dlq_gen, 1); /* the parked streams differ while rebuilding */
    return EVS_OK;
}

int evs_proj_rebuild(evs_projection *p, uint64_t from) {
    if (!p) return evs__err(EVS_EINVAL, "proj_rebuild: projection is NULL");
    return start_rebuild(p, from, 0);
}

int evs_proj_reset(evs_projection *p, uint64_t from) {
    if (!p) return evs__err(EVS_EINVAL, "proj_reset: projection is NULL");
    return start_rebuild(p, from, 1);
}

int evs_proj_get_status(evs_projection *p, evs_proj_status *out) {
    if (!p || !out) return evs__err(EVS_EINVAL, "proj_get_status: NULL argument");
    memset(out, 0, sizeof *out);
    int rc = evs__consumer_info(&p->c, &out->info);
    if (rc) return rc;
    out->generation = p->c.rec.generation;
    out->events_per_second = p->c.rate;
    if (p->c.rec.build_gen) {
        out->rebuilding = 1;
        out->rebuild_position = p->c.rec.next;
        uint64_t head = evs_head(p->c.store), from = p->c.rec.build_from;
        double total = head >= from ? (double)(head - from + 1) : 1;
        double done = p->c.rec.next > from ? (double)(p->c.rec.next - from) : 0;
        out->rebuild_percent = done >= total ? 100.0 : 100.0 * done / total;
        /* the user-visible checkpoint is the live one while rebuilding */
        out->info.checkpoint = p->c.rec.build_next ? p->c.rec.build_next - 1 : 0;
    }
    return EVS_OK;
}

/* The active generation of a projection's record. */
static int active_gen(evs_bus *b, evs__kv_txn *txn, const char *name, uint64_t *gen) {
    evs__record r;
    int rc = evs__record_get(b, txn, name, &r);
    if (rc) return rc;
    if (r.kind != EVS__KIND_PROJ) rc = evs__err(EVS_EINVAL, "consumer \"%s\" is not a projection", name);
    *gen = r.generation;
    evs__record_free(&r);
    return rc;
}

int evs_proj_get_state(evs_bus *b, const char *name, const char *partition, char **json, size_t *len) {
    int rc;
    evs__kv_txn *txn;
    if (!b || !json) return evs__err(EVS_EINVAL, "proj_get_state: NULL argument");
    *json = NULL;
    if ((rc = evs__bus_check_name(name))) return rc;
    if (!partition) partition = "";
    size_t pl = strlen(partition);
    if (pl > EVS_MAX_STREAM_NAME) return evs__err(EVS_EINVAL, "partition name too long");
    if ((rc = evs__kv_begin(b->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    uint64_t gen;
    if ((rc = active_gen(b, txn, name, &gen))) goto out;
    uint8_t kb[PKEY_MAX];
    evs__kv_val k = {pkey(kb, name, gen, partition, pl), kb}, v;
    rc = evs__kv_get(txn, b->pstate, &k, &v);
    if (rc == EVS__KV_NOTFOUND) {
        rc = evs__err(EVS_ENOTFOUND, "projection \"%s\": no state for partition \"%s\"", name, partition);
        goto out;
    }
    if (rc) {
        rc = evs__bus_kv_err(rc, "read state");
        goto out;
    }
    if (!(*json = malloc(v.size + 1))) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(*json, v.data, v.size);
    (*json)[v.size] = 0;
    if (len) *len = v.size;
out:
    evs__kv_abort(txn);
    return rc;
}

int evs_proj_list_partitions(evs_bus *b, const char *name, const char *after, evs_partition_name *out, size_t max,
                             size_t *count) {
    int rc;
    evs__kv_txn *txn;
    if (!b || !count || (!out && max)) return evs__err(EVS_EINVAL, "proj_list_partitions: NULL argument");
    *count = 0;
    if ((rc = evs__bus_check_name(name))) return rc;
    if (after && strlen(after) > EVS_MAX_STREAM_NAME) return evs__err(EVS_EINVAL, "partition name too long");
    if ((rc = evs__kv_begin(b->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    uint64_t gen;
    evs__kv_cursor *cur = NULL;
    if ((rc = active_gen(b, txn, name, &gen))) goto out;
    if ((rc = evs__kv_cursor_open(txn, b->pstate, &cur))) {
        rc = evs__bus_kv_err(rc, "cursor");
        goto out;
    }
    uint8_t kb[PKEY_MAX];
    size_t pl = pkey(kb, name, gen, "", 0);
    size_t al = after ? strlen(after) : 0;
    evs__kv_val k = {pkey(kb, name, gen, after ? after : "", al), kb}, v;
    rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE);
    if (rc == 0 && after && k.size == pl + al && memcmp((char *)k.data + pl, after, al) == 0)
        rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT);
    for (; rc == 0 && *count < max; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size < pl || memcmp(k.data, kb, pl) != 0) break;
        size_t n = k.size - pl;
        memcpy(out[*count].name, (char *)k.data + pl, n);
        out[*count].name[n] = 0;
        (*count)++;
    }
    rc = rc == 0 || rc == EVS__KV_NOTFOUND ? EVS_OK : evs__bus_kv_err(rc, "list partitions");
out:
    if (cur) evs__kv_cursor_close(cur);
    evs__kv_abort(txn);
    return rc;
}

/* The active generation and the position it reflects (the live checkpoint while rebuilding). */
static int active_view(evs_bus *b, evs__kv_txn *txn, const char *name, uint64_t *gen, uint64_t *position) {
    evs__record r;
    int rc = evs__record_get(b, txn, name, &r);
    if (rc) return rc;
    if (r.kind != EVS__KIND_PROJ) rc = evs__err(EVS_EINVAL, "consumer \"%s\" is not a projection", name);
    *gen = r.generation;
    uint64_t next = r.build_gen ? r.build_next : r.next;
    *position = next ? next - 1 : 0;
    evs__record_free(&r);
    return rc;
}

int evs_proj_position(evs_bus *b, const char *name, uint64_t *position) {
    int rc;
    evs__kv_txn *txn;
    uint64_t gen;
    if (!b || !position) return evs__err(EVS_EINVAL, "proj_position: NULL argument");
    if ((rc = evs__bus_check_name(name))) return rc;
    if ((rc = evs__kv_begin(b->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    rc = active_view(b, txn, name, &gen, position);
    evs__kv_abort(txn);
    return rc;
}

int evs_proj_scan(evs_bus *b, const char *name, evs_proj_scan_fn fn, void *ctx, uint64_t *position) {
    int rc;
    evs__kv_txn *txn;
    evs__kv_cursor *cur = NULL;
    if (!b || !fn) return evs__err(EVS_EINVAL, "proj_scan: NULL argument");
    if ((rc = evs__bus_check_name(name))) return rc;
    if ((rc = evs__kv_begin(b->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    uint64_t gen, pos;
    if ((rc = active_view(b, txn, name, &gen, &pos))) goto out;
    if (position) *position = pos;
    if ((rc = evs__kv_cursor_open(txn, b->pstate, &cur))) {
        rc = evs__bus_kv_err(rc, "cursor");
        goto out;
    }
    uint8_t kb[PKEY_MAX];
    size_t pl = pkey(kb, name, gen, "", 0);
    evs__kv_val k = {pl, kb}, v;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size < pl || memcmp(k.data, kb, pl) != 0) break;
        if (fn(ctx, (const char *)k.data + pl, k.size - pl, v.data, v.size)) break;
    }
    rc = rc == 0 || rc == EVS__KV_NOTFOUND ? EVS_OK : evs__bus_kv_err(rc, "scan partitions");
out:
    if (cur) evs__kv_cursor_close(cur);
    evs__kv_abort(txn);
    return rc;
}

int evs_proj_wait(evs_bus *b, const char *name, uint64_t position, int timeout_ms, uint64_t *reached) {
    int rc;
    uint64_t pos = 0;
    if (!b) return evs__err(EVS_EINVAL, "proj_wait: bus is NULL");
    /* PostgreSQL: the projection may run in another process (its lease is elsewhere), whose commits
       wake nobody here; the position is read again at least every EVS_PROJ_WAIT_POLL_MS */
    int remote = strcmp(evs__kv_kind(b->kv), "postgresql") == 0;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    if (timeout_ms > 0) timespec_add_ms(&dl, timeout_ms);
    for (;;) {
        /* read the generation before the position: a commit in between wakes the wait below */
        pthread_mutex_lock(&b->commit_mu);
        uint64_t gen = b->commit_gen;
        pthread_mutex_unlock(&b->commit_mu);
        if ((rc = evs_proj_position(b, name, &pos))) return rc;
        if (reached) *reached = pos;
        if (pos >= position) return EVS_OK;
        if (timeout_ms == 0) break;
        struct timespec until = dl;
        int poll = 0;
        if (remote) {
            clock_gettime(CLOCK_MONOTONIC, &until);
            timespec_add_ms(&until, EVS_PROJ_WAIT_POLL_MS);
            if (timeout_ms < 0 || until.tv_sec < dl.tv_sec || (until.tv_sec == dl.tv_sec && until.tv_nsec < dl.tv_nsec))
                poll = 1;
            else
                until = dl;
        }
        pthread_mutex_lock(&b->commit_mu);
        int w = 0;
        while (b->commit_gen == gen && w == 0) {
            if (timeout_ms < 0 && !poll) w = pthread_cond_wait(&b->commit_cv, &b->commit_mu);
            else w = pthread_cond_timedwait(&b->commit_cv, &b->commit_mu, &until);
        }
        pthread_mutex_unlock(&b->commit_mu);
        if (w && !poll) break;
    }
    return evs__err(EVS_ETIMEDOUT, "projection \"%s\" is at position %llu, not yet at %llu after %d ms", name,
                    (unsigned long long)pos, (unsigned long long)position, timeout_ms);
}

int evs_proj_dlq_retry(evs_projection *p, uint64_t position) {
    if (!p) return evs__err(EVS_EINVAL, "proj_dlq_retry: projection is NULL");
    return evs__consumer_dlq_retry(&p->c, position);
}

int evs_proj_dlq_retry_all(evs_projection *p, size_t *released, size_t *failed) {
    if (!p) return evs__err(EVS_EINVAL, "proj_dlq_retry_all: projection is NULL");
    return evs__consumer_dlq_retry_all(&p->c, released, failed);
}

/*
 * app.c — the application layer's handle: its key-value tables (snapshots,
 * results of commands without events; app_internal.h), the registries of
 * aggregate types, command handlers and queries, and the counters behind
 * evs_app_get_stats.
 *
 * The tables go through the kv interface (src/bus/kv.h), on the layout
 * below: on the embedded engine DIR/app/, an LMDB environment of its own
 * next to DIR/consumers/, with the names, map size and durability it always
 * had, so existing stores open unchanged; on PostgreSQL rows 20..23 of
 * evs_bus_kv, shared by every server on the database (a snapshot one server
 * wrote serves the others; a rejection recorded by one answers a retry sent
 * to another).
 *
 * Why tables of their own: snapshots are written by a background thread
 * and pruned (keep K), results expire; neither belongs in the log (which
 * never forgets and whose global positions consumers follow), and on LMDB a
 * separate writer keeps snapshot writes off the consumers' commits.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/app_internal.h"
#include "store/store_access.h"

#define EVS_APP_MAP_SIZE (16ull * 1024 * 1024 * 1024)

/* DIR/app/ as it always was (MDB_NOSYNC, 16 GiB map, 512 readers); rows 20..23 of evs_bus_kv on PostgreSQL. */
static const evs__kv_layout app_layout = {
    .what = "app",
    .ntables = EVS__AK_NTABLES,
    .lmdb_names = {"snapshots", "results", "results_t", NULL},
    .pg_db = {20, 21, 22, 23},
    .lmdb_sync = EVS__KV_SYNC_NONE,
    .lmdb_map_size = EVS_APP_MAP_SIZE,
    .lmdb_max_readers = 512,
};

void evs_app_config_init(evs_app_config *c) {
    memset(c, 0, sizeof *c);
    c->snapshot_every = 100;
    c->snapshot_keep = 5;
    c->max_retries = 10;
    c->idempotency_window_ns = 3600ll * 1000000000ll;
    c->idempotency_max = 100000;
    c->query_timeout_ms = 5000;
    c->query_cache_entries = 256;
    c->state_cache_entries = 16384;
}

static void agg_free(evs__agg *g) {
    if (!g) return;
    if (g->lua) evs__agg_lua_free(g->lua);
    free(g->code_version);
    free(g->file);
    free(g);
}

static void handler_free(evs__handler *h) {
    if (!h) return;
    for (size_t i = 0; i < h->n_fields; i++) free((char *)h->fields[i].name);
    free(h->fields);
    free(h);
}

int evs_app_open(evs_store *s, evs_bus *bus, const evs_app_config *c, evs_app **out) {
    int rc;
    char path[4096];
    if (!out) return evs__err(EVS_EINVAL, "app_open: out is NULL");
    *out = NULL;
    if (!s) return evs__err(EVS_ECLOSED, "app_open: the store is not open");
    void *pg = evs__store_pg_engine(s);
    const char *dir = evs__store_dir(s);
    if (!dir && !pg) return evs__err(EVS_ECLOSED, "app_open: the store is not open");
    if (sodium_init() < 0) return evs__err(EVS_EIO, "app_open: libsodium failed to initialise");
    evs_app_config cfg;
    if (c) cfg = *c;
    else evs_app_config_init(&cfg);
    if (cfg.snapshot_keep == 0) return evs__err(EVS_EINVAL, "app: snapshot_keep must be at least 1");
    if (cfg.max_retries > EVS_APP_MAX_RETRIES)
        return evs__err(EVS_ELIMIT, "app: max_retries %u exceeds %u", cfg.max_retries, EVS_APP_MAX_RETRIES);
    if (cfg.idempotency_window_ns <= 0) return evs__err(EVS_EINVAL, "app: idempotency window must be positive");
    if (cfg.query_timeout_ms < 0) return evs__err(EVS_EINVAL, "app: query timeout must not be negative");
    if (dir) {
        if ((size_t)snprintf(path, sizeof path, "%s/app", dir) >= sizeof path)
            return evs__err(EVS_EINVAL, "app_open: store path too long");
        if (mkdir(path, 0755) != 0 && errno != EEXIST) return evs__err_errno(-errno, "cannot create %s", path);
    }
    evs_app *a = calloc(1, sizeof *a);
    if (!a) return evs__err(EVS_ENOMEM, "out of memory");
    a->store = s;
    a->bus = bus;
    a->cfg = cfg;
    pthread_rwlock_init(&a->reg_lock, NULL);
    pthread_mutex_init(&a->snap_mu, NULL);
    pthread_cond_init(&a->snap_cv, NULL);
    pthread_cond_init(&a->snap_idle_cv, NULL);
    pthread_mutex_init(&a->qc_mu, NULL);
    pthread_mutex_init(&a->put_mu, NULL);
    a->pg = pg != NULL;
    if (pg) rc = evs__kv_open_pg_as(&app_layout, pg, &a->kv);
    else rc = evs__kv_open_lmdb_as(&app_layout, path, 0, &a->kv);
    if (rc) goto fail;
    if ((rc = evs__scache_new(cfg.state_cache_entries, &a->scache))) goto fail;
    if ((rc = evs__results_prune(a, evs_now_ns()))) goto fail;
    if ((rc = evs__snap_start(a))) goto fail;
    *out = a;
    return EVS_OK;
fail:
    evs_app_close(a);
    return rc;
}

void evs_app_close(evs_app *a) {
    if (!a) return;
    evs__snap_stop(a);
    evs__kv_close(a->kv); /* LMDB: synced first (the environment runs without sync) */
    evs__scache_free(a->scache); /* before the types whose free_state it calls */
    for (size_t i = 0; i < a->n_handlers; i++) handler_free(a->handlers[i]);
    for (size_t i = 0; i < a->n_aggs; i++) agg_free(a->aggs[i]);
    for (size_t i = 0; i < a->n_queries; i++) evs__query_free(a->queries[i]);
    while (a->retired_handlers) {
        evs__handler *n = a->retired_handlers->retired_next;
        handler_free(a->retired_handlers);
        a->retired_handlers = n;
    }
    while (a->retired_aggs) {
        evs__agg *n = a->retired_aggs->retired_next;
        agg_free(a->retired_aggs);
        a->retired_aggs = n;
    }
    free(a->handlers);
    free(a->aggs);
    free(a->queries);
    evs__qcache_free(a->qcache);
    pthread_rwlock_destroy(&a->reg_lock);
    pthread_mutex_destroy(&a->snap_mu);
    pthread_cond_destroy(&a->snap_cv);
    pthread_cond_destroy(&a->snap_idle_cv);
    pthread_mutex_destroy(&a->qc_mu);
    pthread_mutex_destroy(&a->put_mu);
    free(a);
}

/* -------------------------------------------------------------- registry */

static int check_name(const char *what, const char *name) {
    if (!name || !*name) return evs__err(EVS_EINVAL, "%s name is empty", what);
    size_t n = strlen(name);
    if (n > EVS_APP_MAX_NAME) return evs__err(EVS_EINVAL, "%s name is %zu bytes, at most %u", what, n, EVS_APP_MAX_NAME);
    if (!evs__utf8_valid(name, n, NULL)) return evs__err(EVS_EINVAL, "%s name is not valid UTF-8", what);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20) return evs__err(EVS_EINVAL, "%s name contains a control character", what);
    return EVS_OK;
}

/* Room for `need` entries in an array of pointers: 0, or -1 out of memory. */
static int reserve(void *arrp, size_t *cap, size_t need) {
    void ***arr = arrp;
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 8;
    while (nc < need) nc *= 2;
    void **na = realloc(*arr, nc * sizeof *na);
    if (!na) return -1;
    *arr = na;
    *cap = nc;
    return 0;
}

static int grow(void *arrp, size_t *cap, size_t n) { return reserve(arrp, cap, n + 1); }

static int add_agg(evs_app *a, evs__agg *g) {
    int rc = EVS_OK;
    pthread_rwlock_wrlock(&a->reg_lock);
    if (evs__app_find_agg(a, g->name)) rc = evs__err(EVS_ECONFLICT, "aggregate type \"%s\" is already registered", g->name);
    else if (grow(&a->aggs, &a->cap_aggs, a->n_aggs)) rc = evs__err(EVS_ENOMEM, "out of memory");
    else a->aggs[a->n_aggs++] = g;
    pthread_rwlock_unlock(&a->reg_lock);
    return rc;
}

int evs_app_register_aggregate(evs_app *a, const evs_aggregate_def *def) {
    int rc;
    if (!a || !def) return evs__err(EVS_EINVAL, "register_aggregate: NULL argument");
    if ((rc = check_name("aggregate type", def->name))) return rc;
    if (!def->init || !def->evolve || !def->decide || !def->free_state)
        return evs__err(EVS_EINVAL, "aggregate type \"%s\": init, evolve, decide and free_state are required", def->name);
    if (!def->encode != !def->decode)
        return evs__err(EVS_EINVAL, "aggregate type \"%s\": encode and decode go together (both or neither)", def->name);
    evs__agg *g = calloc(1, sizeof *g);
    if (!g) return evs__err(EVS_ENOMEM, "out of memory");
    snprintf(g->name, sizeof g->name, "%s", def->name);
    g->name_len = strlen(g->name);
    g->def = *def;
    g->def.name = g->name;
    g->schema = def->schema_version ? def->schema_version : 1;
    const char *cv = def->code_version ? def->code_version : "";
    if (!(g->code_version = strdup(cv))) {
        free(g);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    g->def.code_version = g->code_version;
    evs__app_hash("c:", 2, cv, strlen(cv), g->code_hash);
    if ((rc = add_agg(a, g))) agg_free(g);
    return rc;
}

int evs_app_register_lua_aggregate(evs_app *a, const char *name, const char *src, size_t len) {
    return evs__app_add_lua(a, name, src, len, EVS__ORIGIN_LIBRARY, NULL, EVS__LUA_ADD, NULL);
}

/* A handler struct for h (nothing registered).  Ownership: *out is the caller's (handler_free). */
static int handler_new(const evs_command_handler *h, evs__agg *agg, evs__handler **out) {
    int rc;
    *out = NULL;
    if (h->n_fields > EVS_APP_MAX_FIELDS)
        return evs__err(EVS_ELIMIT, "command type \"%s\": %zu fields, at most %u", h->command_type, h->n_fields,
                        EVS_APP_MAX_FIELDS);
    evs__handler *x = calloc(1, sizeof *x);
    if (!x) return evs__err(EVS_ENOMEM, "out of memory");
    snprintf(x->type, sizeof x->type, "%s", h->command_type);
    x->kind = h->kind;
    x->agg = agg;
    if (h->n_fields && !(x->fields = calloc(h->n_fields, sizeof *x->fields))) goto oom;
    for (size_t i = 0; i < h->n_fields; i++) {
        if (!h->fields[i].name || !*h->fields[i].name) {
            rc = evs__err(EVS_EINVAL, "command type \"%s\": field %zu has no name", h->command_type, i + 1);
            goto fail;
        }
        if (h->fields[i].type < EVS_FIELD_ANY || h->fields[i].type > EVS_FIELD_ARRAY) {
            rc = evs__err(EVS_EINVAL, "command type \"%s\": field \"%s\" has an unknown type", h->command_type,
                          h->fields[i].name);
            goto fail;
        }
        x->fields[i] = h->fields[i];
        if (!(x->fields[i].name = strdup(h->fields[i].name))) goto oom;
        x->n_fields = i + 1;
    }
    *out = x;
    return EVS_OK;
oom:
    rc = evs__err(EVS_ENOMEM, "out of memory");
fail:
    handler_free(x);
    return rc;
}

int evs__app_add_handler_locked(evs_app *a, const evs_command_handler *h, evs__agg *agg) {
    int rc;
    if ((rc = check_name("command type", h->command_type))) return rc;
    if (evs__app_find_handler(a, h->command_type))
        return evs__err(EVS_ECONFLICT, "command type \"%s\" already has a handler", h->command_type);
    evs__handler *x;
    if ((rc = handler_new(h, agg, &x))) return rc;
    if (grow(&a->handlers, &a->cap_handlers, a->n_handlers)) {
        handler_free(x);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    a->handlers[a->n_handlers++] = x;
    return EVS_OK;
}

static int handler_cmp(const void *x, const void *y) {
    return strcmp(((const evs_command_handler *)x)->command_type, ((const evs_command_handler *)y)->command_type);
}

static const char *origin_text(const evs__agg *g) {
    if (g->origin == EVS__ORIGIN_APP_DIR) return "from an app directory";
    if (g->origin == EVS__ORIGIN_STORED) return "over the store";
    return g->lua ? "by the program" : "in C by the program";
}

/*
 * Swap old (a stored Lua type) for g under the write lock: the type in
 * place, its handlers replaced by nx (counts carried over), the ones the
 * new script dropped removed, new ones appended.  Cannot fail: the arrays
 * have room.
 */
static void swap_in_locked(evs_app *a, evs__agg *old, evs__agg *g, evs__handler **nx, size_t nh) {
    if (old) {
        for (size_t i = 0; i < a->n_aggs; i++)
            if (a->aggs[i] == old) a->aggs[i] = g;
        old->retired_next = a->retired_aggs;
        a->retired_aggs = old;
    } else {
        a->aggs[a->n_aggs++] = g;
    }
    size_t w = 0;
    for (size_t i = 0; i < a->n_handlers; i++) {
        evs__handler *h = a->handlers[i];
        if (!old || h->agg != old) {
            a->handlers[w++] = h;
            continue;
        }
        for (size_t j = 0; j < nh; j++)
            if (nx[j] && strcmp(nx[j]->type, h->type) == 0) {
                for (int o = 0; o < EVS_CMD_OUTCOMES; o++) atomic_store(&nx[j]->outcomes[o], atomic_load(&h->outcomes[o]));
                a->handlers[w++] = nx[j];
                nx[j] = NULL;
                break;
            }
        h->retired_next = a->retired_handlers;
        a->retired_handlers = h;
    }
    a->n_handlers = w;
    for (size_t j = 0; j < nh; j++)
        if (nx[j]) {
            a->handlers[a->n_handlers++] = nx[j];
            nx[j] = NULL;
        }
}

int evs__app_add_lua(evs_app *a, const char *name, const char *src, size_t len, int origin, const char *file,
                     int mode, int *what) {
    int rc;
    evs_command_handler *hs = NULL;
    evs__handler **nx = NULL;
    size_t nh = 0;
    if (what) *what = 0;
    if (!a || !src) return evs__err(EVS_EINVAL, "register_lua_aggregate: NULL argument");
    if ((rc = check_name("aggregate type", name))) return rc;
    if (len > EVS_APP_MAX_SOURCE)
        return evs__err(EVS_ELIMIT, "aggregate type \"%s\": script of %zu bytes, at most %zu", name, len,
                        EVS_APP_MAX_SOURCE);
    evs__agg *g = calloc(1, sizeof *g);
    if (!g) return evs__err(EVS_ENOMEM, "out of memory");
    snprintf(g->name, sizeof g->name, "%s", name);
    g->name_len = strlen(g->name);
    g->origin = origin;
    if (file && !(g->file = strdup(file))) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = evs__agg_lua_init(a, g, src, len))) goto out;
    if ((rc = evs__agg_lua_handlers(g, &hs, &nh))) goto out;
    qsort(hs, nh, sizeof *hs, handler_cmp); /* registered (and listed) in name order, not Lua's table order */
    if (!(nx = calloc(nh ? nh : 1, sizeof *nx))) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nh; i++) {
        if ((rc = check_name("command type", hs[i].command_type)) || (rc = handler_new(&hs[i], g, &nx[i]))) {
            rc = evs__err_prefix(rc, "aggregate type \"%s\": ", name);
            goto out;
        }
    }
    /* every check, then the change, in one critical section */
    if (mode == EVS__LUA_CHECK) pthread_rwlock_rdlock(&a->reg_lock);
    else pthread_rwlock_wrlock(&a->reg_lock);
    evs__agg *old = evs__app_find_agg(a, name);
    int unchanged = 0;
    if (old && mode == EVS__LUA_ADD) {
        rc = evs__err(EVS_ECONFLICT, "aggregate type \"%s\" is already registered", name);
    } else if (old && (old->origin != EVS__ORIGIN_STORED || !old->lua)) {
        rc = evs__err(EVS_ECONFLICT, "aggregate type \"%s\" was registered %s%s%s%s; only a type put into the "
                                     "store can be replaced there",
                      name, origin_text(old), old->file ? " (" : "", old->file ? old->file : "", old->file ? ")" : "");
    } else if (old) {
        size_t ol;
        const char *os = evs__agg_lua_source(old->lua, &ol);
        unchanged = ol == len && memcmp(os, src, len) == 0;
    }
    for (size_t i = 0; !rc && !unchanged && i < nh; i++) {
        evs__handler *h = evs__app_find_handler(a, nx[i]->type);
        if (h && (!old || h->agg != old))
            rc = evs__err(EVS_ECONFLICT, "aggregate type \"%s\": command type \"%s\" already has a handler (%s%s)",
                          name, nx[i]->type, h->agg ? "aggregate type " : "the append handler",
                          h->agg ? h->agg->name : "");
    }
    if (!rc && !unchanged && mode != EVS__LUA_CHECK) {
        if (reserve(&a->aggs, &a->cap_aggs, a->n_aggs + 1) ||
            reserve(&a->handlers, &a->cap_handlers, a->n_handlers + nh))
            rc = evs__err(EVS_ENOMEM, "out of memory");
        else
            swap_in_locked(a, old, g, nx, nh);
    }
    int swapped = !rc && !unchanged && mode != EVS__LUA_CHECK;
    pthread_rwlock_unlock(&a->reg_lock);
    if (!rc && what) *what = unchanged ? EVS_PUT_UNCHANGED : old ? EVS_PUT_REPLACED : EVS_PUT_CREATED;
    if (swapped) {
        if (old) evs__agg_lua_trim(old->lua); /* its idle sandboxes; states in use come back later */
        g = NULL;
    }
out:
    for (size_t i = 0; nx && i < nh; i++) handler_free(nx[i]);
    free(nx);
    evs__agg_lua_handlers_free(hs, nh);
    agg_free(g);
    return rc;
}

int evs_app_register_handler(evs_app *a, const evs_command_handler *h) {
    if (!a || !h) return evs__err(EVS_EINVAL, "register_handler: NULL argument");
    if (h->n_fields && !h->fields) return evs__err(EVS_EINVAL, "register_handler: fields is NULL");
    int rc = EVS_OK;
    evs__agg *g = NULL;
    pthread_rwlock_wrlock(&a->reg_lock);
    if (h->kind == EVS_HANDLER_AGGREGATE) {
        if (!h->aggregate || !(g = evs__app_find_agg(a, h->aggregate)))
            rc = evs__err(EVS_ENOTFOUND, "command type \"%s\": aggregate type \"%s\" is not registered",
                          h->command_type ? h->command_type : "", h->aggregate ? h->aggregate : "(none)");
    } else if (h->kind != EVS_HANDLER_APPEND) {
        rc = evs__err(EVS_EINVAL, "command type \"%s\": unknown handler kind %d", h->command_type ? h->command_type : "",
                      (int)h->kind);
    }
    if (!rc) rc = evs__app_add_handler_locked(a, h, g);
    pthread_rwlock_unlock(&a->reg_lock);
    return rc;
}

/* ----------------------------------------------------------------- stats */

int evs_app_get_stats(evs_app *a, evs_app_stats *o) {
    if (!a || !o) return evs__err(EVS_EINVAL, "app_get_stats: NULL argument");
    memset(o, 0, sizeof *o);
    for (int i = 0; i < EVS_CMD_OUTCOMES; i++) o->commands[i] = atomic_load(&a->st_cmd[i]);
    o->idempotent_hits = atomic_load(&a->st_idem);
    o->validation_errors = atomic_load(&a->st_invalid);
    o->handler_not_found = atomic_load(&a->st_unknown);
    o->conflict_retries = atomic_load(&a->st_retries);
    for (int i = 0; i <= EVS_CMD_BUCKETS; i++) o->duration_hist[i] = atomic_load(&a->st_hist[i]);
    o->duration_ns = atomic_load(&a->st_dur_ns);
    o->snapshot_loads = atomic_load(&a->st_snap_loads);
    o->snapshot_load_ns = atomic_load(&a->st_snap_load_ns);
    o->snapshot_load_max_ns = atomic_load(&a->st_snap_load_max);
    o->snapshots_created = atomic_load(&a->st_snap_created);
    o->snapshot_create_ns = atomic_load(&a->st_snap_create_ns);
    o->snapshot_create_max_ns = atomic_load(&a->st_snap_create_max);
    o->snapshots_ignored = atomic_load(&a->st_snap_ignored);
    o->snapshots_dropped = atomic_load(&a->st_snap_dropped);
    o->queries = atomic_load(&a->st_queries);
    o->query_cache_hits = atomic_load(&a->st_qc_hit);
    o->state_cache_hits = atomic_load(&a->st_sc_hit);
    o->state_cache_misses = atomic_load(&a->st_sc_miss);
    o->state_cache_entries = evs__scache_count(a->scache);
    o->query_cache_misses = atomic_load(&a->st_qc_miss);
    o->query_waits = atomic_load(&a->st_q_waits);
    o->query_timeouts = atomic_load(&a->st_q_timeouts);
    return EVS_OK;
}

int evs_app_command_stats(evs_app *a, evs_command_type_stats *out, size_t max, size_t *count) {
    if (!a || !count || (!out && max)) return evs__err(EVS_EINVAL, "app_command_stats: NULL argument");
    pthread_rwlock_rdlock(&a->reg_lock);
    size_t n = 0;
    for (; n < a->n_handlers && n < max; n++) {
        snprintf(out[n].command_type, sizeof out[n].command_type, "%s", a->handlers[n]->type);
        for (int i = 0; i < EVS_CMD_OUTCOMES; i++) out[n].outcomes[i] = atomic_load(&a->handlers[n]->outcomes[i]);
    }
    pthread_rwlock_unlock(&a->reg_lock);
    *count = n;
    return EVS_OK;
}

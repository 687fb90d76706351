/*
 * upcast.c — upcasting: old versions of an event seen as the latest, on
 * read, while the stored bytes stay as they are.
 *
 * A type's versions 1..L form a chain of steps N -> N+1.  A step is taken
 * by its declared upcaster (a C function, or a Lua function run in the
 * projections' sandbox), or, when none is declared, by the identity if the
 * schema of N+1 provably includes the schema of N (compat.c): then every
 * valid version-N event already is a valid version-(N+1) event.  Any other
 * missing step is an error naming it.  An event stored at version V is
 * carried through steps V..L-1; each step's output must be a JSON object
 * valid under the next version's schema, so a faulty upcaster is caught
 * where it is, not by a consumer later.
 *
 * The result is a copy of the stored event's view with data, event_version
 * (= L) and upcast_from (= V) replaced; its data is a new buffer the caller
 * frees.  Events of types without schemas, at L or above (written by a
 * newer producer), pass through without a copy.
 *
 * Consumers get it three ways: evs_schema_upcast for one event, an
 * upcasting reader over any evs_reader, and evs_schema_upcast_map for the
 * consumers of evstore_bus.h and evstore_app.h (the same function behind a
 * generic hook, so src/bus and src/app need not know about schemas).
 *
 * Lua upcasters are stored in the registry (DIR/schemas/, or PostgreSQL;
 * registry.c has the layout) and compiled at open (and at a reload, by
 * upcaster.c), each into its own sandbox with a mutex: calls are
 * serialised per upcaster, which is fine off the append path.
 */
#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/json.h"
#include "schema/table.h"

/* ------------------------------------------------------------ declaring */

/* The step's type with both versions registered and no upcaster yet.  Write lock held. */
static int step_free(evs_schema_registry *r, const char *type, uint32_t from, evs__stype **out) {
    if (!type || !*type) return evs__err(EVS_EINVAL, "upcaster: the event type is empty");
    evs__stype *t = evs__schema_find(r, type);
    if (!t || t->nv == 0) return evs__err(EVS_ENOTFOUND, "upcaster: no schema is registered for %s", type);
    if (from == 0 || from >= t->nv)
        return evs__err(EVS_ENOTFOUND, "upcaster %s %u->%u: versions %u and %u must both be registered (the latest is %zu)",
                        type, from, from + 1, from, from + 1, t->nv);
    if (t->up[from - 1])
        return evs__err(EVS_ECONFLICT, "upcaster %s %u->%u is already declared (%s); remove it first", type, from, from + 1,
                        t->up[from - 1]->kind == EVS__UP_LUA ? "Lua" : "C");
    *out = t;
    return EVS_OK;
}

int evs_schema_add_upcaster(evs_schema_registry *r, const char *event_type, uint32_t from, evs_upcast_fn fn, void *ctx) {
    if (!r || !fn) return evs__err(EVS_EINVAL, "upcaster: registry and function are required");
    evs__upcaster *u = calloc(1, sizeof *u);
    if (!u) return evs__err(EVS_ENOMEM, "out of memory for an upcaster");
    u->kind = EVS__UP_C;
    u->fn = fn;
    u->ctx = ctx;
    evs__schema_wrlock_fresh(r);
    evs__stype *t;
    int rc = step_free(r, event_type, from, &t);
    if (!rc) t->up[from - 1] = u;
    pthread_rwlock_unlock(&r->lock);
    if (rc) free(u);
    return rc;
}

typedef struct up_op {
    const char *type;
    uint32_t from;
    const char *src;     /* NULL: delete */
    size_t len;
} up_op;

static int up_write(evs_schema_registry *r, evs__kv_txn *txn, void *arg) {
    up_op *op = arg;
    uint8_t key[EVS_MAX_TYPE_NAME + 5];
    evs__kv_val k = {evs__schema_key(key, op->type, op->from), key};
    int rc;
    (void)r;
    if (op->src) {
        json_t *j = json_pack("{s:s, s:s%, s:I}", "lang", "lua", "source", op->src, op->len, "registered_at",
                              (json_int_t)evs_now_ns());
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!s) return evs__err(EVS_ENOMEM, "out of memory");
        evs__kv_val v = {strlen(s), s};
        rc = evs__kv_put(txn, EVS__SK_UPCASTERS, &k, &v, 0);
        free(s);
    } else {
        rc = evs__kv_del(txn, EVS__SK_UPCASTERS, &k);
        if (rc == EVS__KV_NOTFOUND) rc = 0;
    }
    return evs__schema_kv_err(rc, "write upcaster");
}

static int add_lua_once(evs_schema_registry *r, const char *event_type, uint32_t from, const char *src, size_t len) {
    evs__schema_wrlock_fresh(r);
    evs__stype *t;
    evs__upcaster *u = NULL;
    int rc = step_free(r, event_type, from, &t);
    if (!rc) rc = evs__upcaster_lua_new(event_type, from, src, len, &u);
    up_op op = {event_type, from, src, len};
    if (!rc) rc = evs__schema_write(r, up_write, &op);
    if (!rc) t->up[from - 1] = u;
    else evs__upcaster_free(u);
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int evs_schema_add_lua_upcaster(evs_schema_registry *r, const char *event_type, uint32_t from, const char *src, size_t len) {
    if (!r || !src) return evs__err(EVS_EINVAL, "upcaster: registry and source are required");
    if (len > EVS_SCHEMA_MAX_UPCASTER_BYTES)
        return evs__err(EVS_ELIMIT, "upcaster source is %zu bytes, at most %u", len, EVS_SCHEMA_MAX_UPCASTER_BYTES);
    if (!evs__utf8_valid(src, len, NULL)) return evs__err(EVS_EINVAL, "upcaster source is not valid UTF-8");
    if (r->readonly || !r->kv) return evs__err(EVS_ECLOSED, "the schema registry is read-only (store opened read-only)");
    EVS__SCHEMA_RETRY(add_lua_once(r, event_type, from, src, len));
}

static int remove_once(evs_schema_registry *r, const char *event_type, uint32_t from) {
    evs__schema_wrlock_fresh(r);
    int rc = EVS_OK;
    evs__stype *t = evs__schema_find(r, event_type);
    evs__upcaster *u = t && from >= 1 && from < t->nv ? t->up[from - 1] : NULL;
    if (!u) {
        rc = evs__err(EVS_ENOTFOUND, "no upcaster is declared for %s %u->%u", event_type, from, from + 1);
    } else {
        if (u->kind == EVS__UP_LUA) {
            up_op op = {event_type, from, NULL, 0};
            rc = r->readonly ? evs__err(EVS_ECLOSED, "the schema registry is read-only") : evs__schema_write(r, up_write, &op);
        }
        if (!rc) {
            t->up[from - 1] = NULL;
            evs__upcaster_free(u);
        }
    }
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int evs_schema_remove_upcaster(evs_schema_registry *r, const char *event_type, uint32_t from) {
    if (!r || !event_type) return evs__err(EVS_EINVAL, "upcaster: registry and event type are required");
    EVS__SCHEMA_RETRY(remove_once(r, event_type, from));
}

/* ------------------------------------------------------------ upcasting */

/* Run a Lua step: data (JSON text) -> *out (malloc'd JSON text). */
static int lua_step(evs__upcaster *u, const evs_event *ev, const char *data, size_t len, char **out, size_t *out_len,
                    char *err, size_t cap) {
    pthread_mutex_lock(&u->mu);
    lua_State *L = evs__sandbox_state(u->sb);
    int base = lua_gettop(L), rc = 1;
    if (!lua_checkstack(L, 8)) {
        snprintf(err, cap, "Lua stack exhausted");
        goto out;
    }
    if (evs__sandbox_push_json(L, data, len)) {
        snprintf(err, cap, "the event's data cannot be decoded");
        goto out;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->fn_ref);
    lua_pushvalue(L, base + 1);
    if (evs__sandbox_push_event(u->sb, ev, err, cap)) goto out;
    if (evs__sandbox_call(u->sb, 2, 1, err, cap)) goto out;
    /* a function that changed data in place may return nothing */
    int res = lua_isnil(L, -1) ? base + 1 : lua_gettop(L);
    if (!lua_istable(L, res)) {
        snprintf(err, cap, "it must return the new data as a table (got %s)", luaL_typename(L, res));
        goto out;
    }
    if (evs__sandbox_encode(L, res, out, out_len, err, cap)) goto out;
    if ((*out)[0] != '{') {
        snprintf(err, cap, "it returned a list, the data must be an object");
        free(*out);
        *out = NULL;
        goto out;
    }
    rc = 0;
out:
    lua_settop(L, base);
    pthread_mutex_unlock(&u->mu);
    return rc;
}

int evs_schema_upcast(evs_schema_registry *r, const evs_event *in, evs_event *out, void **owned) {
    if (!r || !in || !out || !owned) return evs__err(EVS_EINVAL, "upcast: registry, event, out and owned are required");
    *out = *in;
    *owned = NULL;
    if (!in->event_type_len || in->event_type_len > EVS_MAX_TYPE_NAME) return EVS_OK;
    char type[EVS_MAX_TYPE_NAME + 1];
    memcpy(type, in->event_type, in->event_type_len);
    type[in->event_type_len] = 0;
    int rc = EVS_OK;
    evs__schema_refresh(r, EVS__SCHEMA_RECHECK_NS);
    pthread_rwlock_rdlock(&r->lock);
    evs__stype *t = evs__schema_find(r, type);
    uint32_t from = in->event_version ? in->event_version : 1;
    if (!t || t->nv == 0 || from >= t->nv) goto out;
    uint32_t latest = (uint32_t)t->nv;
    char *cur = NULL;
    const char *data = in->data;
    size_t len = in->data_len;
    char err[600];
    for (uint32_t s = from; s < latest; s++) {
        evs__upcaster *u = t->up[s - 1];
        if (!u) {
            if (t->v[s - 1].implicit_next) continue;
            rc = evs__err(EVS_ENOTFOUND,
                          "%s: no upcaster from version %u to %u, and version %u is not included in version %u "
                          "(stream \"%.*s\", position %llu)",
                          type, s, s + 1, s, s + 1, (int)in->stream_len, in->stream,
                          (unsigned long long)in->global_position);
            goto fail;
        }
        evs_event view = *in;
        view.data = data;
        view.data_len = len;
        view.event_version = s;
        char *next = NULL;
        size_t nlen = 0;
        err[0] = 0;
        int frc = u->kind == EVS__UP_C ? u->fn(u->ctx, &view, data, len, &next, &nlen, err, sizeof err)
                                       : lua_step(u, &view, data, len, &next, &nlen, err, sizeof err);
        if (frc || !next) {
            free(next);
            rc = evs__err(EVS_EINVAL, "upcaster %s %u->%u failed at position %llu: %s", type, s, s + 1,
                          (unsigned long long)in->global_position, err[0] ? err : "no data returned");
            goto fail;
        }
        free(cur);
        cur = next;
        data = cur;
        len = nlen;
        evs_json_error jerr;
        if (evs__json_validate_object(data, len, &jerr)) {
            rc = evs__err(EVS_EINVAL, "upcaster %s %u->%u returned data that is not a JSON object: %s", type, s, s + 1,
                          jerr.msg);
            goto fail;
        }
        const evs__sversion *target = &t->v[s];
        evs_schema_violation v;
        if (target->js && evs__jschema_check(target->js, data, len, &v) != EVS_OK) {
            rc = evs__err(EVS_EINVAL, "upcaster %s %u->%u returned data invalid under version %u: %s: %s: %s", type, s,
                          s + 1, s + 1, v.pointer[0] ? v.pointer : "(root)", v.keyword, v.message);
            goto fail;
        }
    }
    out->data = data;
    out->data_len = len;
    out->event_version = latest;
    out->upcast_from = in->upcast_from ? in->upcast_from : from;
    *owned = cur;
    atomic_fetch_add_explicit(&t->upcasted, 1, memory_order_relaxed);
    goto out;
fail:
    free(cur);
    evs__schema_note(t, &t->upcast_failures, evs_errmsg());
out:
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

static int map_fn(void *ctx, const evs_event *in, evs_event *out, void **owned, char *err, size_t errcap) {
    int rc = evs_schema_upcast(ctx, in, out, owned);
    if (rc && err && errcap) snprintf(err, errcap, "%s", evs_errmsg());
    return rc;
}

evs_event_map evs_schema_upcast_map(evs_schema_registry *r) {
    evs_event_map m = {r ? map_fn : NULL, r};
    return m;
}

/* --------------------------------------------------------------- reader */

struct evs_upcast_reader {
    evs_schema_registry *r;
    evs_reader *base;
    evs_event ev;
    void *owned;
};

int evs_upcast_reader_open(evs_schema_registry *r, evs_reader *base, evs_upcast_reader **out) {
    if (out) *out = NULL;
    if (!r || !base || !out) {
        evs_reader_close(base);
        return evs__err(EVS_EINVAL, "upcast reader: registry, reader and out are required");
    }
    evs_upcast_reader *u = calloc(1, sizeof *u);
    if (!u) {
        evs_reader_close(base);
        return evs__err(EVS_ENOMEM, "out of memory for an upcasting reader");
    }
    u->r = r;
    u->base = base;
    *out = u;
    return EVS_OK;
}

int evs_upcast_reader_next(evs_upcast_reader *u, const evs_event **ev) {
    if (!u || !ev) return evs__err(EVS_EINVAL, "upcast reader: reader and ev are required");
    free(u->owned);
    u->owned = NULL;
    const evs_event *e;
    int rc = evs_reader_next(u->base, &e);
    if (rc) return rc;
    if ((rc = evs_schema_upcast(u->r, e, &u->ev, &u->owned))) return rc;
    *ev = &u->ev;
    return EVS_OK;
}

evs_reader *evs_upcast_reader_base(evs_upcast_reader *u) { return u ? u->base : NULL; }

void evs_upcast_reader_close(evs_upcast_reader *u) {
    if (!u) return;
    free(u->owned);
    evs_reader_close(u->base);
    free(u);
}

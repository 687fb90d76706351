/*
 * def_lua.c — Lua saga definitions (see evs_saga_register_lua), run in the
 * sandbox every evstore script runs in (bus/lua_sandbox.h: allow-listed
 * libraries, memory cap, an instruction budget a pcall cannot swallow,
 * ordered pairs), so builders are deterministic: a re-run after a crash
 * builds the same effects (invariant 2 of saga_internal.h).
 *
 * The declarative parts of the script (event types, step names, groups,
 * timeouts, retry policies) are read once into the evs__def at
 * registration; the functions stay in Lua.  A Lua state is single-threaded,
 * so each definition keeps a pool of sandboxes, each with the script run
 * and its functions referenced; a call borrows one (creating one when the
 * pool is empty), so the pool grows to the number of threads calling at
 * once (workers and the dispatcher).
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/lua_sandbox.h"
#include "saga/saga_internal.h"

typedef struct lua_inst {
    evs__sandbox *sb;
    lua_State *L;
    int key_ref, init_ref;        /* LUA_NOREF when absent */
    int *refs;                    /* 3 per step: action, compensate, done */
    struct lua_inst *next;
} lua_inst;

struct evs__lua_def {
    char *src;
    size_t len;
    char *settings;
    char name[EVS_SAGA_MAX_NAME + 1];
    evs_lua_limits lim;
    uint32_t n_steps;
    pthread_mutex_t mu;
    lua_inst *idle;
};

static int saga_lua_call(evs__def *d, int which, uint32_t step, const evs_saga_ctx *sc, evs_saga_out *out, char *err,
                    size_t cap);
static int lua_key(evs__def *d, const evs_event *ev, char *buf, size_t cap, char *err, size_t errcap);

static void inst_free(lua_inst *in) {
    if (!in) return;
    evs__sandbox_free(in->sb);
    free(in->refs);
    free(in);
}

static void lua_def_free(struct evs__lua_def *l) {
    if (!l) return;
    while (l->idle) {
        lua_inst *n = l->idle->next;
        inst_free(l->idle);
        l->idle = n;
    }
    pthread_mutex_destroy(&l->mu);
    free(l->src);
    free(l->settings);
    free(l);
}

/* A function, or nil: its reference (LUA_NOREF for nil).  Pops the value. */
static int fn_ref(lua_State *L, const char *saga, const char *what, int *ref) {
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        *ref = LUA_NOREF;
        return EVS_OK;
    }
    if (!lua_isfunction(L, -1)) {
        const char *t = luaL_typename(L, -1);
        lua_pop(L, 1);
        return evs__err(EVS_EINVAL, "saga %s: %s must be a function (got %s)", saga, what, t);
    }
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return EVS_OK;
}

/* Run the script in a fresh sandbox and reference its functions; the script's table is left on the stack. */
static int inst_new(struct evs__lua_def *l, lua_inst **out) {
    lua_inst *in = calloc(1, sizeof *in);
    if (!in) return evs__err(EVS_ENOMEM, "out of memory");
    int rc = evs__sandbox_new(&l->lim, &in->sb);
    if (rc) {
        free(in);
        return rc;
    }
    lua_State *L = in->L = evs__sandbox_state(in->sb);
    const char *st = l->settings ? l->settings : "{}";
    if (evs__sandbox_push_json(L, st, strlen(st)) || !lua_istable(L, -1)) {
        inst_free(in);
        return evs__err(EVS_EINVAL, "saga %s: settings must be a JSON object", l->name);
    }
    lua_setglobal(L, "settings");
    if ((rc = evs__sandbox_run(in->sb, l->src, l->len, "=saga"))) {
        rc = evs__err_prefix(rc, "saga %s: ", l->name);
        inst_free(in);
        return rc;
    }
    int t = lua_gettop(L);
    lua_getfield(L, t, "start");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "key");
        if (lua_isfunction(L, -1)) {
            in->key_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        } else {
            lua_pop(L, 1);
            in->key_ref = LUA_NOREF;
        }
    } else {
        in->key_ref = LUA_NOREF;
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "init");
    if ((rc = fn_ref(L, l->name, "init", &in->init_ref))) goto fail;
    lua_getfield(L, t, "steps");
    uint32_t n = lua_istable(L, -1) ? (uint32_t)lua_rawlen(L, -1) : 0;
    if (n == 0 || n > EVS_SAGA_MAX_STEPS) {
        rc = evs__err(EVS_EINVAL, "saga %s: 'steps' must be a list of 1..%u steps", l->name, EVS_SAGA_MAX_STEPS);
        goto fail;
    }
    if (l->n_steps && n != l->n_steps) {
        rc = evs__err(EVS_EINVAL, "saga %s: the script declared %u steps, now %u", l->name, l->n_steps, n);
        goto fail;
    }
    in->refs = calloc((size_t)n * 3, sizeof *in->refs);
    if (!in->refs) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto fail;
    }
    static const char *const fns[3] = {"action", "compensate", "done"};
    for (uint32_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        if (!lua_istable(L, -1)) {
            rc = evs__err(EVS_EINVAL, "saga %s: step %u must be a table", l->name, i + 1);
            goto fail;
        }
        for (int k = 0; k < 3; k++) {
            char what[64];
            snprintf(what, sizeof what, "step %u's %s", i + 1, fns[k]);
            lua_getfield(L, -1, fns[k]);
            if ((rc = fn_ref(L, l->name, what, &in->refs[i * 3 + (uint32_t)k]))) goto fail;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* steps */
    /* set once, by the instance registration makes (one thread); later
       instances, made by workers at once, only compare against it */
    if (!l->n_steps) l->n_steps = n;
    *out = in;
    return EVS_OK;
fail:
    inst_free(in);
    return rc;
}

static int borrow(struct evs__lua_def *l, lua_inst **out) {
    pthread_mutex_lock(&l->mu);
    lua_inst *in = l->idle;
    if (in) l->idle = in->next;
    pthread_mutex_unlock(&l->mu);
    if (in) {
        *out = in;
        return EVS_OK;
    }
    int rc = inst_new(l, out);
    if (rc == EVS_OK) lua_settop((*out)->L, 0);
    return rc;
}

static void give_back(struct evs__lua_def *l, lua_inst *in) {
    lua_settop(in->L, 0);
    pthread_mutex_lock(&l->mu);
    in->next = l->idle;
    l->idle = in;
    pthread_mutex_unlock(&l->mu);
}

/* --------------------------------------------------- the declarative part */

static int get_types(lua_State *L, int t, const char *field, evs__types *out, const char *saga, const char *where) {
    lua_getfield(L, t, field);
    int rc = EVS_OK;
    if (lua_isnil(L, -1)) goto out;
    if (lua_type(L, -1) == LUA_TSTRING) { /* one type as a plain string */
        out->v = calloc(1, sizeof *out->v);
        if (!out->v || !(out->v[0] = strdup(lua_tostring(L, -1)))) rc = evs__err(EVS_ENOMEM, "out of memory");
        else out->n = 1;
        goto out;
    }
    if (!lua_istable(L, -1)) {
        rc = evs__err(EVS_EINVAL, "saga %s: %s%s must be a list of event types", saga, where, field);
        goto out;
    }
    size_t n = lua_rawlen(L, -1);
    if (n > EVS_SAGA_MAX_TYPES) {
        rc = evs__err(EVS_ELIMIT, "saga %s: %s%s has %zu event types, at most %u", saga, where, field, n,
                      EVS_SAGA_MAX_TYPES);
        goto out;
    }
    out->v = n ? calloc(n, sizeof *out->v) : NULL;
    if (n && !out->v) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        size_t sl;
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &sl) : NULL;
        if (!s || sl == 0 || sl > EVS_MAX_TYPE_NAME)
            rc = evs__err(EVS_EINVAL, "saga %s: %s%s[%zu] must be an event type name", saga, where, field, i + 1);
        else if (!(out->v[i] = strdup(s)))
            rc = evs__err(EVS_ENOMEM, "out of memory");
        else
            out->n = i + 1;
        lua_pop(L, 1);
    }
out:
    lua_pop(L, 1);
    return rc;
}

/* Seconds (a number) as ns into *out; absent leaves *out. */
static int get_secs(lua_State *L, int t, const char *field, int64_t *out, const char *saga, const char *where) {
    lua_getfield(L, t, field);
    int rc = EVS_OK;
    if (!lua_isnil(L, -1)) {
        int isnum;
        lua_Number x = lua_tonumberx(L, -1, &isnum);
        if (!isnum || !(x >= 0) || x > 1e9)
            rc = evs__err(EVS_EINVAL, "saga %s: %s%s must be a number of seconds", saga, where, field);
        else
            *out = (int64_t)(x * 1e9 + 0.5);
    }
    lua_pop(L, 1);
    return rc;
}

static int get_retry(lua_State *L, int t, const char *field, evs_saga_retry *r, const char *saga, const char *where) {
    lua_getfield(L, t, field);
    int rc = EVS_OK, top = lua_gettop(L);
    char w[160];
    snprintf(w, sizeof w, "%s%s.", where, field);
    if (lua_isnil(L, -1)) goto out;
    if (!lua_istable(L, -1)) {
        rc = evs__err(EVS_EINVAL, "saga %s: %s%s must be a table", saga, where, field);
        goto out;
    }
    lua_getfield(L, top, "max_attempts");
    if (!lua_isnil(L, -1)) {
        int isint;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < 1 || v > 1000) rc = evs__err(EVS_EINVAL, "saga %s: %smax_attempts must be 1..1000", saga, w);
        else r->max_attempts = (uint32_t)v;
    }
    lua_pop(L, 1);
    lua_getfield(L, top, "backoff");
    if (!rc && !lua_isnil(L, -1)) {
        const char *b = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (!strcmp(b, "exponential")) r->backoff = EVS_BACKOFF_EXPONENTIAL;
        else if (!strcmp(b, "linear")) r->backoff = EVS_BACKOFF_LINEAR;
        else if (!strcmp(b, "fixed")) r->backoff = EVS_BACKOFF_FIXED;
        else rc = evs__err(EVS_EINVAL, "saga %s: %sbackoff must be \"exponential\", \"linear\" or \"fixed\"", saga, w);
    }
    lua_pop(L, 1);
    if (!rc) rc = get_secs(L, top, "initial", &r->initial_delay_ns, saga, w);
    if (!rc) rc = get_secs(L, top, "max", &r->max_delay_ns, saga, w);
    lua_getfield(L, top, "jitter");
    if (!rc && !lua_isnil(L, -1)) {
        int isnum;
        lua_Number x = lua_tonumberx(L, -1, &isnum);
        if (!isnum || !(x >= 0 && x <= 1)) rc = evs__err(EVS_EINVAL, "saga %s: %sjitter must be within 0..1", saga, w);
        else r->jitter = x;
    }
    lua_pop(L, 1);
    lua_getfield(L, top, "on");
    if (!rc && !lua_isnil(L, -1)) {
        evs__types on = {0};
        lua_pushvalue(L, -1);
        lua_newtable(L);
        lua_insert(L, -2);
        lua_setfield(L, -2, "on"); /* {on = value}, so get_types reads it */
        rc = get_types(L, lua_gettop(L), "on", &on, saga, w);
        lua_pop(L, 1);
        unsigned bits = 0;
        for (size_t i = 0; !rc && i < on.n; i++) {
            if (!strcmp(on.v[i], "rejected")) bits |= EVS_SAGA_ON_REJECTED;
            else if (!strcmp(on.v[i], "event")) bits |= EVS_SAGA_ON_EVENT;
            else if (!strcmp(on.v[i], "timeout")) bits |= EVS_SAGA_ON_TIMEOUT;
            else if (!strcmp(on.v[i], "error")) bits |= EVS_SAGA_ON_ERROR;
            else if (!strcmp(on.v[i], "any")) bits |= EVS_SAGA_ON_ANY;
            else rc = evs__err(EVS_EINVAL, "saga %s: %son: unknown failure kind \"%s\" (rejected, event, timeout, error, any)",
                               saga, w, on.v[i]);
        }
        for (size_t i = 0; i < on.n; i++) free(on.v[i]);
        free(on.v);
        if (!rc) r->retry_on = bits;
    }
    lua_pop(L, 1);
out:
    lua_settop(L, top - 1);
    return rc;
}

/* Fill d from the script's table at index t of L. */
static int declare(lua_State *L, int t, evs__def *d) {
    int rc;
    lua_getfield(L, t, "start");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return evs__err(EVS_EINVAL, "saga %s: the script must return a table with a 'start' table", d->name);
    }
    int st = lua_gettop(L);
    if ((rc = get_types(L, st, "event_types", &d->start_on, d->name, "start."))) return rc;
    lua_getfield(L, st, "key");
    if (lua_isnil(L, -1)) {
        d->key_from = EVS_SAGA_KEY_STREAM_ID;
    } else if (lua_isfunction(L, -1)) {
        d->key_from = EVS_SAGA_KEY_FN;
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        const char *k = lua_tostring(L, -1);
        if (!strcmp(k, "stream_id")) d->key_from = EVS_SAGA_KEY_STREAM_ID;
        else if (!strcmp(k, "correlation_id")) d->key_from = EVS_SAGA_KEY_CORRELATION;
        else if (!strncmp(k, "data.", 5) && k[5]) {
            d->key_from = EVS_SAGA_KEY_FIELD;
            if (!(d->key_field = strdup(k + 5))) return evs__err(EVS_ENOMEM, "out of memory");
        } else {
            return evs__err(EVS_EINVAL,
                            "saga %s: start.key must be \"stream_id\", \"correlation_id\", \"data.<field>\" or a function",
                            d->name);
        }
    } else {
        return evs__err(EVS_EINVAL, "saga %s: start.key must be a string or a function", d->name);
    }
    lua_settop(L, t);
    lua_getfield(L, t, "init");
    d->has_init = lua_isfunction(L, -1);
    lua_pop(L, 1);
    if ((rc = get_secs(L, t, "timeout", &d->timeout_ns, d->name, ""))) return rc;
    lua_getfield(L, t, "max_parallel");
    if (!lua_isnil(L, -1)) {
        int isint;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < 1 || v > EVS_SAGA_MAX_PARALLEL)
            return evs__err(EVS_EINVAL, "saga %s: max_parallel must be 1..%u", d->name, EVS_SAGA_MAX_PARALLEL);
        d->max_parallel = (uint32_t)v;
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "steps");
    int steps = lua_gettop(L);
    uint32_t n = (uint32_t)lua_rawlen(L, steps);
    d->steps = calloc(n, sizeof *d->steps);
    if (!d->steps) return evs__err(EVS_ENOMEM, "out of memory");
    d->n_steps = n;
    /* groups are named in Lua; consecutive steps with the same name share a number */
    char prev_group[128] = "";
    uint32_t group_no = 0;
    for (uint32_t i = 0; i < n; i++) {
        evs__step *s = &d->steps[i];
        evs_saga_step_def defaults;
        evs_saga_step_init(&defaults);
        s->timeout_ns = defaults.timeout_ns;
        s->retry = defaults.retry;
        s->comp_retry = defaults.compensation_retry;
        lua_rawgeti(L, steps, (lua_Integer)i + 1);
        int si = lua_gettop(L);
        char where[96];
        snprintf(where, sizeof where, "step %u's ", i + 1);
        lua_getfield(L, si, "name");
        size_t nl;
        const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nl) : NULL;
        if (!name || nl == 0 || nl > EVS_SAGA_MAX_STEP_NAME)
            return evs__err(EVS_EINVAL, "saga %s: step %u needs a 'name' of 1..%u bytes", d->name, i + 1,
                            EVS_SAGA_MAX_STEP_NAME);
        snprintf(s->name, sizeof s->name, "%s", name);
        lua_pop(L, 1);
        snprintf(where, sizeof where, "step %s: ", s->name);
        lua_getfield(L, si, "group");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TSTRING) return evs__err(EVS_EINVAL, "saga %s: %sgroup must be a string", d->name, where);
            const char *g = lua_tostring(L, -1);
            if (strcmp(g, prev_group) != 0) {
                group_no++;
                snprintf(prev_group, sizeof prev_group, "%s", g);
            }
            s->group = group_no;
        } else {
            prev_group[0] = 0;
        }
        lua_pop(L, 1);
        static const char *const fns[3] = {"action", "compensate", "done"};
        for (int k = 0; k < 3; k++) {
            lua_getfield(L, si, fns[k]);
            s->has[k] = lua_isfunction(L, -1);
            lua_pop(L, 1);
        }
        if ((rc = get_types(L, si, "complete_on", &s->complete_on, d->name, where)) ||
            (rc = get_types(L, si, "fail_on", &s->fail_on, d->name, where)) ||
            (rc = get_secs(L, si, "timeout", &s->timeout_ns, d->name, where)) ||
            (rc = get_retry(L, si, "retry", &s->retry, d->name, where)) ||
            (rc = get_retry(L, si, "compensation_retry", &s->comp_retry, d->name, where)))
            return rc;
        lua_settop(L, steps);
    }
    lua_settop(L, t);
    return EVS_OK;
}

int evs__def_from_lua(const char *name, const char *src, size_t len, const char *settings, const evs_lua_limits *lim,
                      evs__def **out) {
    *out = NULL;
    int rc = evs__saga_check_type(name);
    if (rc) return rc;
    if (!src) return evs__err(EVS_EINVAL, "saga %s: the script is NULL", name);
    if (settings) {
        json_t *j = json_loads(settings, 0, NULL);
        int ok = json_is_object(j);
        json_decref(j);
        if (!ok) return evs__err(EVS_EINVAL, "saga %s: settings must be a JSON object", name);
    }
    evs__def *d = calloc(1, sizeof *d);
    struct evs__lua_def *l = calloc(1, sizeof *l);
    if (!d || !l) {
        free(d);
        free(l);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&l->mu, NULL);
    d->lua = l;
    d->lua_call = saga_lua_call;
    d->lua_key = lua_key;
    d->lua_free = lua_def_free;
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(l->name, sizeof l->name, "%s", name);
    if (lim) l->lim = *lim;
    d->timeout_ns = 300000000000ll;
    d->max_parallel = 5;
    l->src = malloc(len + 1);
    l->settings = settings ? strdup(settings) : NULL;
    if (!l->src || (settings && !l->settings)) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(l->src, src, len);
    l->src[len] = 0;
    l->len = len;
    lua_inst *in;
    if ((rc = inst_new(l, &in))) goto fail;
    rc = declare(in->L, lua_gettop(in->L), d);
    lua_settop(in->L, 0);
    if (rc) {
        inst_free(in);
        goto fail;
    }
    give_back(l, in);
    if ((rc = evs__def_check(d))) goto fail;
    *out = d;
    return EVS_OK;
fail:
    evs__def_free(d);
    return rc;
}

/* ---------------------------------------------------------------- calls */

static void set_str(lua_State *L, const char *k, const char *v) {
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void push_saga(lua_State *L, const evs_saga_ctx *sc) {
    lua_createtable(L, 0, 6);
    set_str(L, "id", sc->id);
    set_str(L, "type", sc->type);
    set_str(L, "step", sc->step);
    lua_pushinteger(L, sc->attempt);
    lua_setfield(L, -2, "attempt");
    if (sc->correlation_id) {
        char u[37];
        evs_uuid_format(sc->correlation_id, u);
        set_str(L, "correlation_id", u);
    }
}

/* One effect table at index e into out. */
static int take_effect(lua_State *L, int e, evs_saga_out *out, char *err, size_t cap) {
    char *json = NULL;
    size_t jl = 0;
    int rc = 0;
    lua_getfield(L, e, "command");
    lua_getfield(L, e, "append");
    int append = !lua_isnil(L, -1);
    const char *what = append ? lua_tostring(L, -1) : lua_tostring(L, -2); /* stream, or command type */
    if (!what || (lua_isnil(L, -2) == lua_isnil(L, -1))) {
        snprintf(err, cap, "an effect needs either 'command' (a command type) or 'append' (a stream)");
        lua_pop(L, 2);
        return 1;
    }
    lua_getfield(L, e, append ? "type" : "aggregate_id");
    const char *other = lua_tostring(L, -1); /* an integer aggregate id becomes its text */
    lua_getfield(L, e, "data");
    if (!other) {
        snprintf(err, cap, "%s effect has no '%s'", append ? "an append" : "a command", append ? "type" : "aggregate_id");
        rc = 1;
    } else if (!lua_isnil(L, -1) && !lua_istable(L, -1)) {
        snprintf(err, cap, "an effect's data must be a table");
        rc = 1;
    } else if (lua_istable(L, -1) && evs__sandbox_encode(L, -1, &json, &jl, err, cap)) {
        rc = 1;
    } else if (append ? evs_saga_out_append(out, what, other, json, jl) : evs_saga_out_command(out, what, other, json, jl)) {
        snprintf(err, cap, "%s", out->error[0] ? out->error : evs_errmsg());
        rc = 1;
    }
    free(json);
    lua_pop(L, 4);
    return rc;
}

/* The effects a function returned (at the top): nil, one effect, or a list. */
static int take_effects(lua_State *L, evs_saga_out *out, char *err, size_t cap) {
    int r = lua_gettop(L);
    if (lua_isnil(L, r)) return 0;
    if (!lua_istable(L, r)) {
        snprintf(err, cap, "returned a %s (an effect, a list of effects or nil expected)", luaL_typename(L, r));
        return 1;
    }
    lua_getfield(L, r, "command");
    lua_getfield(L, r, "append");
    int single = !lua_isnil(L, -1) || !lua_isnil(L, -2);
    lua_pop(L, 2);
    if (single) return take_effect(L, r, out, err, cap);
    lua_Integer n = (lua_Integer)lua_rawlen(L, r);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, r, i);
        if (!lua_istable(L, -1)) {
            snprintf(err, cap, "effect %lld is not a table", (long long)i);
            return 1;
        }
        if (take_effect(L, lua_gettop(L), out, err, cap)) return 1;
        lua_pop(L, 1);
    }
    return 0;
}

static int saga_lua_call(evs__def *d, int which, uint32_t step, const evs_saga_ctx *sc, evs_saga_out *out, char *err,
                    size_t cap) {
    struct evs__lua_def *l = d->lua;
    lua_inst *in;
    if (borrow(l, &in)) {
        snprintf(err, cap, "%s", evs_errmsg());
        return 1;
    }
    lua_State *L = in->L;
    int ref = which == EVS__FN_INIT ? in->init_ref : in->refs[step * 3 + (uint32_t)which];
    int r = 1;
    if (ref == LUA_NOREF) {
        give_back(l, in);
        return 0;
    }
    /* stack: [1: the data table, kept for a function that mutates it,] fn, args... */
    lua_settop(L, 0);
    int nargs, data_at = which == EVS__FN_INIT ? 0 : 1;
    if (which == EVS__FN_INIT) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        if (evs__sandbox_push_event(in->sb, sc->trigger, err, cap)) goto out;
        nargs = 1;
    } else {
        if (evs__sandbox_push_json(L, sc->data, sc->data_len) || !lua_istable(L, 1)) {
            snprintf(err, cap, "the saga's data cannot be decoded");
            goto out;
        }
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        lua_pushvalue(L, 1);
        push_saga(L, sc);
        nargs = 2;
        if (which == EVS__FN_COMPENSATE) {
            lua_createtable(L, (int)sc->n_accepted, 0);
            for (size_t i = 0; i < sc->n_accepted; i++) {
                lua_pushinteger(L, (lua_Integer)sc->accepted[i] + 1);
                lua_rawseti(L, -2, (lua_Integer)i + 1);
            }
            nargs = 3;
        } else if (which == EVS__FN_DONE) {
            if (sc->answer) {
                if (evs__sandbox_push_event(in->sb, sc->answer, err, cap)) goto out;
            } else {
                lua_pushnil(L);
            }
            nargs = 3;
        }
    }
    if (evs__sandbox_call(in->sb, nargs, 1, err, cap)) goto out;
    const char *what = which == EVS__FN_ACTION ? "action" : which == EVS__FN_COMPENSATE ? "compensate"
                       : which == EVS__FN_DONE   ? "done"
                                                 : "init";
    if (which == EVS__FN_ACTION || which == EVS__FN_COMPENSATE) {
        if (take_effects(L, out, err, cap)) {
            char tmp[256];
            snprintf(tmp, sizeof tmp, "%s", err);
            snprintf(err, cap, "%s of step %s: %s", what, sc->step ? sc->step : "?", tmp);
            goto out;
        }
    } else {
        int res = lua_gettop(L);
        int src = lua_istable(L, res) ? res : (data_at && lua_isnil(L, res)) ? 1 : 0;
        if (!src) {
            snprintf(err, cap, "%s must return a table%s (got %s)", what, data_at ? " or nothing" : "",
                     luaL_typename(L, res));
            goto out;
        }
        char *json = NULL;
        size_t jl = 0;
        if (evs__sandbox_encode(L, src, &json, &jl, err, cap)) goto out;
        int same = which == EVS__FN_DONE && jl == sc->data_len && memcmp(json, sc->data, jl) == 0;
        int bad = same ? 0 : evs_saga_out_data(out, json, jl);
        free(json);
        if (bad) {
            snprintf(err, cap, "%s: %s", what, out->error);
            goto out;
        }
    }
    r = 0;
out:
    give_back(l, in);
    return r;
}

static int lua_key(evs__def *d, const evs_event *ev, char *buf, size_t cap, char *err, size_t errcap) {
    struct evs__lua_def *l = d->lua;
    lua_inst *in;
    if (borrow(l, &in)) {
        snprintf(err, errcap, "%s", evs_errmsg());
        return -1;
    }
    lua_State *L = in->L;
    int r = -1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, in->key_ref);
    if (evs__sandbox_push_event(in->sb, ev, err, errcap) || evs__sandbox_call(in->sb, 1, 1, err, errcap)) goto out;
    size_t n;
    const char *k = (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) ? lua_tolstring(L, -1, &n) : NULL;
    if (!k || n == 0 || n > EVS_SAGA_MAX_ID || n >= cap) {
        snprintf(err, errcap, "start.key returned %s", k ? "an id of a wrong length" : "no string");
        goto out;
    }
    memcpy(buf, k, n);
    buf[n] = 0;
    r = (int)n;
    if (evs__saga_check_id(buf)) {
        snprintf(err, errcap, "start.key: %s", evs_errmsg());
        r = -1;
    }
out:
    give_back(l, in);
    return r;
}

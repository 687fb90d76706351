/*
 * proj_lua.c — Lua projections: a script's declaration (handlers, init,
 * partition, filter) run in the shared sandbox (lua_sandbox.c, which states
 * the sandbox rules and the JSON <-> Lua mapping).  The declaration, its
 * filter and the handlers are read raw (evs__sandbox_rawfield): no
 * metamethod of the script's runs outside a guarded call.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_internal.h"
#include "bus/lua_sandbox.h"

struct evs__lua {
    evs__sandbox *sb;
    lua_State *L;
    int handlers_ref, init_ref, partition_ref;
};

void evs__lua_free(evs__lua *x) {
    if (!x) return;
    evs__sandbox_free(x->sb);
    free(x);
}

void evs__lua_decl_free(evs__lua_decl *d) {
    if (!d) return;
    for (size_t i = 0; i < d->filter.n_event_types; i++) free((char *)d->filter.event_types[i]);
    free((void *)d->filter.event_types);
    free((char *)d->filter.stream_prefix);
    free((char *)d->filter.stream_type);
    memset(d, 0, sizeof *d);
}

/*
 * Only the filter's known keys: a misspelt one ("event_type") would
 * otherwise be ignored and the projection would see every event.  lua_next
 * is raw, so no metamethod of the script's runs here.
 */
static int filter_keys(lua_State *L, int f, char *err, size_t cap) {
    lua_pushnil(L);
    while (lua_next(L, f)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!k || (strcmp(k, "event_types") && strcmp(k, "stream_prefix") && strcmp(k, "stream_type"))) {
            if (k) snprintf(err, cap, "filter has an unknown key '%.64s' (known: event_types, stream_prefix, "
                                      "stream_type)", k);
            else snprintf(err, cap, "filter keys must be event_types, stream_prefix or stream_type, not a %s",
                          luaL_typename(L, -2));
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int read_decl(evs__lua *x, evs__lua_decl *d, char *err, size_t cap) {
    lua_State *L = x->L;
    int t = lua_gettop(L);
    /* handlers */
    evs__sandbox_rawfield(L, t, "handlers");
    if (!lua_istable(L, -1)) {
        snprintf(err, cap, "the script must return a table with a 'handlers' table");
        return EVS_EINVAL;
    }
    x->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    evs__sandbox_rawfield(L, t, "init");
    if (!lua_isnil(L, -1) && !lua_istable(L, -1) && !lua_isfunction(L, -1)) {
        snprintf(err, cap, "'init' must be a function or a table");
        return EVS_EINVAL;
    }
    x->init_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    evs__sandbox_rawfield(L, t, "partition");
    d->partitioning = EVS_PARTITION_BY_STREAM;
    if (lua_isfunction(L, -1)) {
        d->partitioning = EVS_PARTITION_CUSTOM;
        x->partition_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        const char *pm = lua_tostring(L, -1);
        if (!lua_isnil(L, -1) && (!pm || (strcmp(pm, "stream") && strcmp(pm, "none")))) {
            snprintf(err, cap, "'partition' must be \"stream\", \"none\" or a function");
            return EVS_EINVAL;
        }
        if (pm && strcmp(pm, "none") == 0) d->partitioning = EVS_PARTITION_NONE;
        lua_pop(L, 1);
    }
    evs__sandbox_rawfield(L, t, "filter");
    if (lua_istable(L, -1)) {
        int f = lua_gettop(L);
        if (filter_keys(L, f, err, cap)) return EVS_EINVAL;
        evs__sandbox_rawfield(L, f, "event_types");
        if (lua_istable(L, -1)) {
            size_t n = (size_t)lua_rawlen(L, -1);
            if (n) {
                const char **types = calloc(n, sizeof *types);
                if (!types) return evs__err(EVS_ENOMEM, "out of memory");
                d->filter.event_types = types;
                for (size_t i = 0; i < n; i++) {
                    lua_rawgeti(L, -1, (lua_Integer)i + 1);
                    const char *s = lua_tostring(L, -1);
                    if (!s || !*s || !(types[i] = strdup(s))) {
                        lua_pop(L, 1);
                        snprintf(err, cap, "filter.event_types[%zu] must be a non-empty string", i + 1);
                        return EVS_EINVAL;
                    }
                    d->filter.n_event_types++;
                    lua_pop(L, 1);
                }
            }
        }
        lua_pop(L, 1);
        const char *names[2] = {"stream_prefix", "stream_type"};
        for (int i = 0; i < 2; i++) {
            evs__sandbox_rawfield(L, f, names[i]);
            const char *s = lua_tostring(L, -1);
            if (s && *s) {
                char *c = strdup(s);
                if (!c) return evs__err(EVS_ENOMEM, "out of memory");
                if (i == 0) d->filter.stream_prefix = c;
                else d->filter.stream_type = c;
            }
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        snprintf(err, cap, "'filter' must be a table");
        return EVS_EINVAL;
    }
    lua_pop(L, 1);
    return EVS_OK;
}

int evs__lua_new(const char *src, size_t len, const evs_lua_limits *lim, evs__lua **out, evs__lua_decl *decl) {
    char err[512] = "";
    int rc;
    *out = NULL;
    memset(decl, 0, sizeof *decl);
    evs__lua *x = calloc(1, sizeof *x);
    if (!x) return evs__err(EVS_ENOMEM, "out of memory");
    if ((rc = evs__sandbox_new(lim, &x->sb))) {
        free(x);
        return rc;
    }
    x->L = evs__sandbox_state(x->sb);
    if ((rc = evs__sandbox_run(x->sb, src, len, "=projection"))) goto fail;
    if ((rc = read_decl(x, decl, err, sizeof err))) {
        if (err[0]) rc = evs__err(rc, "%s", err);
        goto fail;
    }
    lua_settop(x->L, 0);
    *out = x;
    return EVS_OK;
fail:
    evs__lua_decl_free(decl);
    evs__lua_free(x);
    return rc;
}

/* ----------------------------------------------------------------- state */

void evs__lua_unref(evs__lua *x, int ref) {
    if (x && ref) luaL_unref(x->L, LUA_REGISTRYINDEX, ref);
}

int evs__lua_load_state(evs__lua *x, const char *json, size_t len, int *ref, char *err, size_t cap) {
    lua_State *L = x->L;
    int top = lua_gettop(L);
    if (json) {
        if (evs__sandbox_push_json(L, json, len) || !lua_istable(L, -1)) {
            lua_settop(L, top);
            evs__bus_fmt(err, cap, "stored state is not a JSON object or array");
            return evs__err(EVS_ECORRUPT, "%s", err);
        }
    } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, x->init_ref);
        if (lua_isfunction(L, -1)) {
            if (evs__sandbox_call(x->sb, 0, 1, err, cap)) {
                lua_settop(L, top);
                return evs__err(EVS_EINVAL, "init failed: %s", err);
            }
            if (!lua_istable(L, -1)) {
                lua_settop(L, top);
                evs__bus_fmt(err, cap, "init must return a table");
                return evs__err(EVS_EINVAL, "%s", err);
            }
        } else if (lua_istable(L, -1)) {
            /* a fresh copy for every partition: through JSON */
            char *enc = NULL;
            size_t el = 0;
            int bad = evs__sandbox_encode(L, -1, &enc, &el, err, cap);
            lua_settop(L, top);
            if (!bad) bad = evs__sandbox_push_json(L, enc, el);
            free(enc);
            if (bad) {
                lua_settop(L, top);
                return evs__err(EVS_EINVAL, "init table: %s", err[0] ? err : "cannot copy");
            }
        } else {
            lua_settop(L, top);
            lua_newtable(L);
        }
    }
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return EVS_OK;
}

int evs__lua_apply(evs__lua *x, int *ref, const evs_event *ev, char *err, size_t cap) {
    lua_State *L = x->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->handlers_ref);
    lua_pushlstring(L, ev->event_type, ev->event_type_len);
    lua_rawget(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        evs__sandbox_rawfield(L, -1, "$any");
    }
    if (lua_isnil(L, -1)) {
        lua_settop(L, top);
        return 0; /* no handler for this type */
    }
    if (!lua_isfunction(L, -1)) {
        lua_settop(L, top);
        evs__bus_fmt(err, cap, "handler for %.*s is not a function", (int)ev->event_type_len, ev->event_type);
        return 1;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, *ref);
    if (evs__sandbox_push_event(x->sb, ev, err, cap)) {
        lua_settop(L, top);
        return 1;
    }
    if (evs__sandbox_call(x->sb, 2, 1, err, cap)) {
        lua_settop(L, top);
        return 1;
    }
    if (lua_istable(L, -1)) {
        int nref = luaL_ref(L, LUA_REGISTRYINDEX);
        luaL_unref(L, LUA_REGISTRYINDEX, *ref);
        *ref = nref;
    } else if (!lua_isnil(L, -1)) {
        const char *tn = luaL_typename(L, -1);
        lua_settop(L, top);
        evs__bus_fmt(err, cap, "handler for %.*s returned a %s (a table or nothing expected)", (int)ev->event_type_len,
                     ev->event_type, tn);
        return 1;
    }
    lua_settop(L, top);
    return 0;
}

int evs__lua_partition(evs__lua *x, const evs_event *ev, char *buf, size_t bufcap, char *err, size_t cap) {
    lua_State *L = x->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->partition_ref);
    if (evs__sandbox_push_event(x->sb, ev, err, cap)) {
        lua_settop(L, top);
        return -1;
    }
    if (evs__sandbox_call(x->sb, 1, 1, err, cap)) {
        lua_settop(L, top);
        return -1;
    }
    size_t n;
    const char *s = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER ? lua_tolstring(L, -1, &n) : NULL;
    if (!s || n == 0 || n >= bufcap || n > EVS_MAX_STREAM_NAME) {
        evs__bus_fmt(err, cap, "partition function must return a string of 1..%u bytes", EVS_MAX_STREAM_NAME);
        lua_settop(L, top);
        return -1;
    }
    memcpy(buf, s, n);
    lua_settop(L, top);
    return (int)n;
}

int evs__lua_encode(evs__lua *x, int ref, char **json, size_t *len, char *err, size_t cap) {
    lua_State *L = x->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    int rc = evs__sandbox_encode(L, -1, json, len, err, cap);
    lua_settop(L, top);
    return rc;
}

int evs__lua_check(evs__lua *x, int ref, char *err, size_t cap) {
    lua_State *L = x->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    int bad = evs__sandbox_check(L, -1, err, cap);
    lua_settop(L, top);
    return bad;
}

/*
 * lua_sandbox.c — the Lua 5.4 sandbox shared by every script evstore runs:
 * Lua projections (proj_lua.c) and Lua aggregates (src/app/agg_lua.c).
 *
 * Sandbox rules (in the spirit of Redis scripting):
 *   - Libraries: base, table, string, math, utf8 only.  Removed from the
 *     globals: dofile, loadfile, load, require, collectgarbage, print, warn,
 *     string.dump, math.random, math.randomseed.  io, os, debug, package and
 *     coroutine are never opened.  Chunks are loaded as text only.
 *   - Memory: a custom lua_Alloc counts the heap and, while script code
 *     runs, refuses to grow past the cap (our own C-side pushes are never
 *     refused, so no allocation failure can escape a protected call).  A
 *     call during which the cap was hit fails even if the script caught the
 *     error (GC timing would make it nondeterministic).
 *   - Instructions: a count hook charges every EVS_LUA_HOOK_STEP
 *     instructions against the per-call budget.  Once exceeded the call is
 *     "dead": the hook re-arms itself to fire on every instruction and raises
 *     the error each time, so a pcall in the script cannot swallow it (the
 *     first instruction after the pcall raises again), and the call fails.
 *   - No finalizers: Lua runs __gc metamethods with debug hooks switched off
 *     and outside our calls (at a collection, at close), where neither the
 *     budget nor the memory cap applies, so one that loops would hang the
 *     thread for good.  setmetatable refuses a metatable with __gc.
 *   - Our own code never runs script code outside a guarded call: what a
 *     script returns (a projection's declaration, filter and handlers, an
 *     aggregate's init, evolve and commands, the events decide returns) is
 *     read raw (evs__sandbox_rawfield), so a metatable's __index is never
 *     called where an error could not be caught (an uncaught one aborts the
 *     process).
 *   - Determinism: no clock, no random, no I/O.  pairs() visits keys in a
 *     defined order (ordered_pairs below), not Lua's hash order; next()
 *     keeps Lua's order (use it only to test for emptiness).  Values are
 *     encoded with sorted keys, so equal tables give equal JSON.
 *
 * JSON <-> Lua: objects and arrays become tables (arrays 1-based), null
 * becomes nil (so null members disappear).  A table encodes as an array when
 * its keys are exactly 1..n (n > 0), otherwise as an object whose keys are
 * strings or integers; an empty table encodes as {}.  Cycles and depth over
 * EVS_LUA_MAX_DEPTH are errors.
 */
#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_internal.h"
#include "bus/lua_sandbox.h"
#include "core/json.h"

#define EVS_LUA_HOOK_STEP 1000
#define EVS_LUA_MAX_DEPTH 64
#define EVS_LUA_DEFAULT_MEMORY (64u * 1024 * 1024)
#define EVS_LUA_DEFAULT_INSTRUCTIONS 10000000ull

struct evs__sandbox {
    lua_State *L;
    size_t mem, cap;
    int enforce;                  /* the cap applies inside guarded calls only */
    int mem_hit;
    uint64_t budget, used;
    int dead;
    int event_mt_ref;             /* metatable decoding e.data / e.metadata lazily */
};

/* ------------------------------------------------------------ allocation */

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    evs__sandbox *x = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        x->mem -= old;
        return NULL;
    }
    if (x->enforce && nsize > old && x->mem + (nsize - old) > x->cap) {
        x->mem_hit = 1;
        return NULL;
    }
    void *n = realloc(ptr, nsize);
    if (!n) return NULL;
    x->mem = x->mem - old + nsize;
    return n;
}

static evs__sandbox *self_of(lua_State *L) { return *(evs__sandbox **)lua_getextraspace(L); }

static void l_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    evs__sandbox *x = self_of(L);
    x->used += EVS_LUA_HOOK_STEP;
    if (x->dead || x->used > x->budget) {
        if (!x->dead) {
            x->dead = 1;
            lua_sethook(L, l_hook, LUA_MASKCOUNT, 1);
        }
        luaL_error(L, "instruction budget of %llu exceeded", (unsigned long long)x->budget);
    }
}

int evs__sandbox_call(evs__sandbox *x, int nargs, int nres, char *err, size_t cap) {
    lua_State *L = x->L;
    x->used = 0;
    x->dead = 0;
    x->mem_hit = 0;
    lua_sethook(L, l_hook, LUA_MASKCOUNT, EVS_LUA_HOOK_STEP);
    x->enforce = 1;
    int st = lua_pcall(L, nargs, nres, 0);
    x->enforce = 0;
    /* the hook stays installed: finalizers run outside our calls, under the same budget */
    lua_sethook(L, l_hook, LUA_MASKCOUNT, EVS_LUA_HOOK_STEP);
    if (x->dead) {
        if (st == LUA_OK) lua_pop(L, nres);
        else lua_pop(L, 1);
        x->dead = 0;
        evs__bus_fmt(err, cap, "instruction budget of %llu exceeded", (unsigned long long)x->budget);
        return 1;
    }
    if (x->mem_hit) {
        if (st == LUA_OK) lua_pop(L, nres);
        else lua_pop(L, 1);
        lua_gc(L, LUA_GCCOLLECT);
        x->mem_hit = 0;
        evs__bus_fmt(err, cap, "memory limit of %zu bytes exceeded", x->cap);
        return 1;
    }
    if (st != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        evs__bus_fmt(err, cap, "%s", m ? m : "error object is not a string");
        lua_pop(L, 1);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ JSON */

static int push_json(lua_State *L, json_t *j, int depth) {
    if (depth > EVS_LUA_MAX_DEPTH || !lua_checkstack(L, 4)) return -1;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(j));
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            if (json_is_null(v)) continue;
            if (push_json(L, v, depth + 1)) return -1;
            lua_setfield(L, -2, k);
        }
        return 0;
    }
    case JSON_ARRAY: {
        lua_createtable(L, (int)json_array_size(j), 0);
        for (size_t i = 0; i < json_array_size(j); i++) {
            json_t *v = json_array_get(j, i);
            if (json_is_null(v)) continue;
            if (push_json(L, v, depth + 1)) return -1;
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        return 0;
    }
    case JSON_STRING: lua_pushlstring(L, json_string_value(j), json_string_length(j)); return 0;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(j)); return 0;
    case JSON_REAL: lua_pushnumber(L, json_real_value(j)); return 0;
    case JSON_TRUE: lua_pushboolean(L, 1); return 0;
    case JSON_FALSE: lua_pushboolean(L, 0); return 0;
    default: lua_pushnil(L); return 0;
    }
}

/*
 * The fast path of evs__sandbox_push_json: straight from the text with the
 * allocation-free span iterators (core/json.h), no jansson tree.  It gives
 * exactly what the jansson path gives, and returns 1 (nothing pushed) for
 * anything it does not handle the same way, for that path to decide: a
 * U+0000 in a string, an integer out of int64 range, a real that overflows,
 * depth over the limit.  A null member is set to nil in document order, so
 * that a duplicate key ends as jansson's last value does.
 */
static int push_span(lua_State *L, evs_json_span v, int depth) {
    if (depth > EVS_LUA_MAX_DEPTH || !lua_checkstack(L, 4)) return 1;
    evs_json_iter it;
    evs_json_span k, e;
    switch (v.type) {
    case EVS_JSON_OBJECT: {
        int n = 0;
        if (evs__json_iter_init(&it, v)) return 1;
        while (evs__json_iter_member(&it, &k, &e)) n++;
        lua_createtable(L, 0, n);
        evs__json_iter_init(&it, v);
        while (evs__json_iter_member(&it, &k, &e)) {
            if (push_span(L, k, depth + 1)) return 1;
            if (e.type == EVS_JSON_NULL) lua_pushnil(L);
            else if (push_span(L, e, depth + 1)) return 1;
            lua_rawset(L, -3);
        }
        return 0;
    }
    case EVS_JSON_ARRAY: {
        int n = 0;
        if (evs__json_iter_init(&it, v)) return 1;
        while (evs__json_iter_element(&it, &e)) n++;
        lua_createtable(L, n, 0);
        evs__json_iter_init(&it, v);
        for (lua_Integer i = 1; evs__json_iter_element(&it, &e); i++) {
            if (e.type == EVS_JSON_NULL) continue;
            if (push_span(L, e, depth + 1)) return 1;
            lua_rawseti(L, -2, i);
        }
        return 0;
    }
    case EVS_JSON_STRING: {
        if (v.n < 2) return 1;
        if (!memchr(v.p + 1, '\\', v.n - 2)) { /* nothing escaped: the bytes as they are */
            lua_pushlstring(L, v.p + 1, v.n - 2);
            return 0;
        }
        char small[256], *buf = v.n <= sizeof small ? small : malloc(v.n);
        if (!buf) return 1;
        long dl = evs__json_string_decode(v, buf, v.n); /* decoded text is never longer than the span */
        if (dl >= 0) lua_pushlstring(L, buf, (size_t)dl);
        if (buf != small) free(buf);
        return dl < 0;
    }
    case EVS_JSON_NUMBER: {
        int64_t i;
        if (!memchr(v.p, '.', v.n) && !memchr(v.p, 'e', v.n) && !memchr(v.p, 'E', v.n)) {
            if (evs__json_int64(v, &i)) return 1; /* out of range */
            lua_pushinteger(L, (lua_Integer)i);
            return 0;
        }
        char num[128];
        if (v.n >= sizeof num) return 1;
        memcpy(num, v.p, v.n);
        num[v.n] = 0;
        double d = strtod(num, NULL);
        if (!isfinite(d)) return 1;
        lua_pushnumber(L, d);
        return 0;
    }
    case EVS_JSON_TRUE: lua_pushboolean(L, 1); return 0;
    case EVS_JSON_FALSE: lua_pushboolean(L, 0); return 0;
    case EVS_JSON_NULL: lua_pushnil(L); return 0;
    default: return 1;
    }
}

int evs__sandbox_push_json(lua_State *L, const char *p, size_t n) {
    if (!p || !n) {
        lua_pushnil(L);
        return 0;
    }
    evs_json_error ve;
    if (evs__json_validate(p, n, &ve) == EVS_OK) {
        int top = lua_gettop(L);
        if (push_span(L, evs__json_root(p, n), 0) == 0) return 0;
        lua_settop(L, top); /* not one the fast path takes: jansson decides */
    }
    return evs__sandbox_push_json_tree(L, p, n);
}

int evs__sandbox_push_json_tree(lua_State *L, const char *p, size_t n) {
    if (!p || !n) {
        lua_pushnil(L);
        return 0;
    }
    json_error_t je;
    json_t *j = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j) return -1;
    int top = lua_gettop(L);
    int rc = push_json(L, j, 0);
    json_decref(j);
    if (rc) lua_settop(L, top);
    return rc;
}

static json_t *to_json(lua_State *L, int idx, int depth, char *err, size_t cap) {
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return json_null();
    case LUA_TBOOLEAN: return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) return json_integer((json_int_t)lua_tointeger(L, idx));
        {
            double d = lua_tonumber(L, idx);
            if (!isfinite(d)) {
                snprintf(err, cap, "state holds a number that is not finite");
                return NULL;
            }
            return json_real(d);
        }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        json_t *j = json_stringn(s, n);
        if (!j) snprintf(err, cap, "state holds a string that is not valid UTF-8");
        return j;
    }
    case LUA_TTABLE: break;
    default: snprintf(err, cap, "state holds a %s, which JSON cannot represent", luaL_typename(L, idx)); return NULL;
    }
    if (depth >= EVS_LUA_MAX_DEPTH) {
        snprintf(err, cap, "state is nested deeper than %d (or has a cycle)", EVS_LUA_MAX_DEPTH);
        return NULL;
    }
    if (!lua_checkstack(L, 6)) {
        snprintf(err, cap, "Lua stack exhausted");
        return NULL;
    }
    /* array when keys are exactly 1..n */
    lua_Integer n = 0, count = 0;
    int is_array = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        count++;
        if (lua_type(L, -2) == LUA_TNUMBER && lua_isinteger(L, -2)) {
            lua_Integer k = lua_tointeger(L, -2);
            if (k >= 1 && k > n) n = k;
            if (k < 1) is_array = 0;
        } else {
            is_array = 0;
        }
        lua_pop(L, 1);
    }
    if (count == 0 || n != count) is_array = 0;
    if (is_array) {
        json_t *a = json_array();
        for (lua_Integer i = 1; a && i <= n; i++) {
            lua_rawgeti(L, idx, i);
            json_t *v = to_json(L, -1, depth + 1, err, cap);
            lua_pop(L, 1);
            if (!v || json_array_append_new(a, v)) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    json_t *o = json_object();
    lua_pushnil(L);
    while (o && lua_next(L, idx)) {
        char kb[32];
        const char *k;
        size_t kl;
        if (lua_type(L, -2) == LUA_TSTRING) {
            k = lua_tolstring(L, -2, &kl);
        } else if (lua_type(L, -2) == LUA_TNUMBER && lua_isinteger(L, -2)) {
            snprintf(kb, sizeof kb, "%lld", (long long)lua_tointeger(L, -2));
            k = kb;
            kl = strlen(kb);
        } else {
            snprintf(err, cap, "state has a %s key; keys must be strings or integers", luaL_typename(L, -2));
            lua_pop(L, 2);
            json_decref(o);
            return NULL;
        }
        json_t *v = to_json(L, -1, depth + 1, err, cap);
        if (!v || json_object_setn_new(o, k, kl, v)) {
            if (v == NULL && !err[0]) snprintf(err, cap, "state key is not valid UTF-8");
            lua_pop(L, 2);
            json_decref(o);
            return NULL;
        }
        lua_pop(L, 1);
    }
    return o;
}

static int check_value(lua_State *L, int idx, int depth, char *err, size_t cap) {
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TBOOLEAN: return 0;
    case LUA_TNUMBER:
        if (!lua_isinteger(L, idx) && !isfinite(lua_tonumber(L, idx))) {
            snprintf(err, cap, "state holds a number that is not finite");
            return 1;
        }
        return 0;
    case LUA_TSTRING: {
        size_t n;
        const char *p = lua_tolstring(L, idx, &n);
        if (!evs__utf8_valid(p, n, NULL)) {
            snprintf(err, cap, "state holds a string that is not valid UTF-8");
            return 1;
        }
        return 0;
    }
    case LUA_TTABLE: break;
    default: snprintf(err, cap, "state holds a %s, which JSON cannot represent", luaL_typename(L, idx)); return 1;
    }
    if (depth >= EVS_LUA_MAX_DEPTH || !lua_checkstack(L, 4)) {
        snprintf(err, cap, "state is nested deeper than %d (or has a cycle)", EVS_LUA_MAX_DEPTH);
        return 1;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        if (kt == LUA_TSTRING) {
            size_t n;
            const char *p = lua_tolstring(L, -2, &n);
            if (!evs__utf8_valid(p, n, NULL)) {
                snprintf(err, cap, "state key is not valid UTF-8");
                lua_pop(L, 2);
                return 1;
            }
        } else if (!(kt == LUA_TNUMBER && lua_isinteger(L, -2))) {
            snprintf(err, cap, "state has a %s key; keys must be strings or integers", luaL_typename(L, -2));
            lua_pop(L, 2);
            return 1;
        }
        if (check_value(L, -1, depth + 1, err, cap)) {
            lua_pop(L, 2);
            return 1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* --------------------------------------------------------------- sandbox */

static void open_lib(lua_State *L, const char *name, lua_CFunction f) {
    luaL_requiref(L, name, f, 1);
    lua_pop(L, 1);
}

/* ------------------------------------------------------- ordered pairs */

/*
 * pairs() in a defined order.  Lua's own order follows the hash layout,
 * and 5.4 seeds string hashes per state: a projection that folds over
 * pairs() could compute one state live and another in a rebuild.  So the
 * sandbox's pairs visits integer keys ascending, then float keys
 * ascending, then string keys bytewise, then false and true; keys of other
 * types (tables, functions) have no order of their own and come last, as
 * Lua lists them.  A __pairs metamethod is honoured, as by the stock pairs.
 */
typedef struct okey {
    int cls;                      /* 0 integer, 1 float, 2 string, 3 boolean, 4 other */
    lua_Integer i;
    lua_Number d;
    const char *s;                /* lives in the keys table */
    size_t n;
    lua_Integer slot;             /* index in the keys table */
} okey;

static int okey_cmp(const void *pa, const void *pb) {
    const okey *a = pa, *b = pb;
    if (a->cls != b->cls) return a->cls - b->cls;
    switch (a->cls) {
    case 0: return (a->i > b->i) - (a->i < b->i);
    case 1: return (a->d > b->d) - (a->d < b->d);
    case 2: {
        int c = memcmp(a->s, b->s, a->n < b->n ? a->n : b->n);
        return c ? c : (a->n > b->n) - (a->n < b->n);
    }
    case 3: return (int)(a->i - b->i);
    default: return (a->slot > b->slot) - (a->slot < b->slot);
    }
}

/* The iterator: upvalues (t, sorted keys, cursor). */
static int ordered_next(lua_State *L) {
    lua_Integer at = lua_tointeger(L, lua_upvalueindex(3)) + 1;
    lua_pushinteger(L, at);
    lua_replace(L, lua_upvalueindex(3));
    if (lua_rawgeti(L, lua_upvalueindex(2), at) == LUA_TNIL) return 1;
    lua_pushvalue(L, -1);
    lua_rawget(L, lua_upvalueindex(1));
    return 2;
}

static int ordered_pairs(lua_State *L) {
    if (luaL_getmetafield(L, 1, "__pairs") != LUA_TNIL) {
        lua_pushvalue(L, 1);
        lua_call(L, 1, 3);
        return 3;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_Integer n = 0;
    lua_newtable(L); /* 2: keys as Lua lists them */
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, 2, ++n);
    }
    okey *k = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *k, 0); /* 3: counted by the memory cap */
    for (lua_Integer i = 1; i <= n; i++) {
        okey *o = &k[i - 1];
        memset(o, 0, sizeof *o);
        o->slot = i;
        lua_rawgeti(L, 2, i);
        switch (lua_type(L, -1)) {
        case LUA_TNUMBER:
            if (lua_isinteger(L, -1)) o->cls = 0, o->i = lua_tointeger(L, -1);
            else o->cls = 1, o->d = lua_tonumber(L, -1);
            break;
        case LUA_TSTRING: o->cls = 2, o->s = lua_tolstring(L, -1, &o->n); break;
        case LUA_TBOOLEAN: o->cls = 3, o->i = lua_toboolean(L, -1); break;
        default: o->cls = 4; break;
        }
        lua_pop(L, 1); /* strings stay alive in table 2 */
    }
    qsort(k, (size_t)n, sizeof *k, okey_cmp);
    lua_createtable(L, (int)(n < INT32_MAX ? n : 0), 0); /* 4: sorted */
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, k[i - 1].slot);
        lua_rawseti(L, 4, i);
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 4);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, ordered_next, 3);
    lua_pushnil(L);
    lua_pushnil(L);
    return 3;
}

/* setmetatable without __gc (see the sandbox rules); the original is upvalue 1. */
static int safe_setmetatable(lua_State *L) {
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        int gc = lua_rawget(L, 2);
        lua_pop(L, 1);
        if (gc != LUA_TNIL) return luaL_error(L, "setmetatable: __gc finalizers are not allowed in evstore scripts");
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

int evs__sandbox_rawfield(lua_State *L, int t, const char *k) {
    t = lua_absindex(L, t);
    lua_pushstring(L, k);
    return lua_rawget(L, t);
}

static void set_nil(lua_State *L, const char *table, const char *field) {
    if (table) {
        lua_getglobal(L, table);
        if (lua_istable(L, -1)) {
            lua_pushnil(L);
            lua_setfield(L, -2, field);
        }
        lua_pop(L, 1);
    } else {
        lua_pushnil(L);
        lua_setglobal(L, field);
    }
}

static void set_str(lua_State *L, const char *k, const char *v, size_t n) {
    lua_pushlstring(L, v, n);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* __index of event tables: decode "data" / "metadata" from the raw text on first use. */
static int event_index(lua_State *L) {
    size_t kl;
    const char *k = lua_tolstring(L, 2, &kl);
    if (!k || (strcmp(k, "data") && strcmp(k, "metadata"))) return 0;
    lua_getfield(L, 1, k[0] == 'd' ? "\001data" : "\001metadata"); /* once per event: no formatting */
    size_t n;
    const char *p = lua_tolstring(L, -1, &n);
    if (!p) return 0;
    if (evs__sandbox_push_json(L, p, n)) return luaL_error(L, "event %s cannot be decoded", k);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, k);
    return 1;
}

int evs__sandbox_push_event(evs__sandbox *x, const evs_event *ev, char *err, size_t cap) {
    lua_State *L = x->L;
    if (!lua_checkstack(L, 8)) {
        snprintf(err, cap, "Lua stack exhausted");
        return 1;
    }
    lua_createtable(L, 0, 10);
    set_str(L, "type", ev->event_type, ev->event_type_len);
    set_str(L, "stream", ev->stream, ev->stream_len);
    set_str(L, "stream_type", ev->stream_type, ev->stream_type_len);
    set_int(L, "position", (lua_Integer)ev->global_position);
    set_int(L, "stream_position", (lua_Integer)ev->stream_position);
    set_int(L, "recorded_at", ev->recorded_at);
    set_int(L, "occurred_at", ev->occurred_at);
    set_int(L, "event_version", ev->event_version);
    set_int(L, "stored_version", ev->upcast_from ? ev->upcast_from : ev->event_version);
    char u[37];
    evs_uuid_format(&ev->event_id, u);
    set_str(L, "id", u, 36);
    /* data and metadata are decoded on first access (event_index) */
    lua_pushlstring(L, ev->data, ev->data_len);
    lua_setfield(L, -2, "\001data");
    lua_pushlstring(L, ev->metadata ? ev->metadata : "", ev->metadata ? ev->metadata_len : 0);
    lua_setfield(L, -2, "\001metadata");
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->event_mt_ref);
    lua_setmetatable(L, -2);
    return 0;
}


/* ------------------------------------------------------------- public */

json_t *evs__sandbox_to_json(lua_State *L, int idx, char *err, size_t cap) {
    err[0] = 0;
    return to_json(L, idx, 0, err, cap);
}

int evs__sandbox_check(lua_State *L, int idx, char *err, size_t cap) { return check_value(L, idx, 0, err, cap); }

int evs__sandbox_encode(lua_State *L, int idx, char **json, size_t *len, char *err, size_t cap) {
    int top = lua_gettop(L);
    json_t *j = evs__sandbox_to_json(L, idx, err, cap);
    lua_settop(L, top);
    if (!j) return EVS_EINVAL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (!s) {
        snprintf(err, cap, "cannot encode value");
        return EVS_ENOMEM;
    }
    *json = s;
    *len = strlen(s);
    return EVS_OK;
}

lua_State *evs__sandbox_state(evs__sandbox *x) { return x->L; }

void evs__sandbox_free(evs__sandbox *x) {
    if (!x) return;
    if (x->L) lua_close(x->L);
    free(x);
}

int evs__sandbox_new(const evs_lua_limits *lim, evs__sandbox **out) {
    *out = NULL;
    evs__sandbox *x = calloc(1, sizeof *x);
    if (!x) return evs__err(EVS_ENOMEM, "out of memory");
    x->cap = lim && lim->memory_bytes ? lim->memory_bytes : EVS_LUA_DEFAULT_MEMORY;
    x->budget = lim && lim->instructions ? lim->instructions : EVS_LUA_DEFAULT_INSTRUCTIONS;
    x->L = lua_newstate(l_alloc, x);
    if (!x->L) {
        int rc = evs__err(EVS_ENOMEM, "cannot create a Lua state (memory cap %zu)", x->cap);
        free(x);
        return rc;
    }
    lua_State *L = x->L;
    *(evs__sandbox **)lua_getextraspace(L) = x;
    open_lib(L, LUA_GNAME, luaopen_base);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);
    static const char *const gone[] = {"dofile", "loadfile", "load", "require", "collectgarbage", "print", "warn"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) set_nil(L, NULL, gone[i]);
    set_nil(L, LUA_STRLIBNAME, "dump");
    set_nil(L, LUA_MATHLIBNAME, "random");
    set_nil(L, LUA_MATHLIBNAME, "randomseed");
    lua_pushcfunction(L, ordered_pairs);
    lua_setglobal(L, "pairs");
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, safe_setmetatable, 1);
    lua_setglobal(L, "setmetatable");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, event_index);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable"); /* getmetatable(e) cannot reach it */
    x->event_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *out = x;
    return EVS_OK;
}

int evs__sandbox_run(evs__sandbox *x, const char *src, size_t len, const char *chunkname) {
    char err[512];
    lua_State *L = x->L;
    if (luaL_loadbufferx(L, src, len, chunkname, "t") != LUA_OK) {
        int rc = evs__err(EVS_EINVAL, "script does not compile: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return rc;
    }
    if (evs__sandbox_call(x, 0, 1, err, sizeof err)) return evs__err(EVS_EINVAL, "script failed: %s", err);
    if (!lua_istable(L, -1)) {
        int rc = evs__err(EVS_EINVAL, "the script must return a table (got %s)", luaL_typename(L, -1));
        lua_pop(L, 1);
        return rc;
    }
    return EVS_OK;
}

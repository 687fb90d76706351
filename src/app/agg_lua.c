/*
 * agg_lua.c — Lua aggregates: a script (see evs_app_register_lua_aggregate)
 * run in the bus's sandbox (bus/lua_sandbox.h: the same libraries, memory
 * cap, instruction budget, ordered pairs and refusal of __gc as Lua
 * projections), presented to the rest of the layer as an evs_aggregate_def.
 * What the script returns (its tables, decide's events) is read raw
 * (evs__sandbox_rawfield): no metamethod runs outside a guarded call.
 *
 * A Lua state is single-threaded and a Lua table lives in one state, so each
 * live aggregate state holds a sandbox of its own: init/decode borrow one
 * from the type's idle pool (creating one when the pool is empty) and
 * free_state returns it.  The pool grows to the number of states alive at
 * once (threads running commands plus queued background snapshots).
 *
 * Snapshots of a Lua aggregate carry the hash of the whole script: any edit
 * makes its old snapshots unusable (they are rebuilt from events once).
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app_internal.h"
#include "bus/lua_sandbox.h"

typedef struct lua_inst {
    evs__sandbox *sb;
    lua_State *L;
    int init_ref, evolve_ref, commands_ref;
    struct lua_inst *next;
} lua_inst;

struct evs__lua_agg {
    char *src;
    size_t len;
    char name[EVS_APP_MAX_NAME + 1];
    evs_lua_limits lim;
    pthread_mutex_t mu;
    lua_inst *idle;
};

typedef struct lstate {
    lua_inst *in;
    int ref;
} lstate;

static void inst_free(lua_inst *in) {
    if (!in) return;
    evs__sandbox_free(in->sb);
    free(in);
}

/* A fresh instance: the script run, its parts referenced.  Leaves the script's table off the stack. */
static int inst_new(struct evs__lua_agg *l, lua_inst **out) {
    lua_inst *in = calloc(1, sizeof *in);
    if (!in) return evs__err(EVS_ENOMEM, "out of memory");
    int rc = evs__sandbox_new(&l->lim, &in->sb);
    if (rc) {
        free(in);
        return rc;
    }
    in->L = evs__sandbox_state(in->sb);
    lua_State *L = in->L;
    if ((rc = evs__sandbox_run(in->sb, l->src, l->len, "=aggregate"))) {
        rc = evs__err_prefix(rc, "aggregate \"%s\": ", l->name);
        inst_free(in);
        return rc;
    }
    int t = lua_gettop(L);
    evs__sandbox_rawfield(L, t, "init");
    if (!lua_isnil(L, -1) && !lua_istable(L, -1) && !lua_isfunction(L, -1)) {
        inst_free(in);
        return evs__err(EVS_EINVAL, "aggregate \"%s\": 'init' must be a function or a table", l->name);
    }
    in->init_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    evs__sandbox_rawfield(L, t, "evolve");
    if (!lua_istable(L, -1)) {
        inst_free(in);
        return evs__err(EVS_EINVAL, "aggregate \"%s\": the script must return a table with an 'evolve' table", l->name);
    }
    in->evolve_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    evs__sandbox_rawfield(L, t, "commands");
    if (!lua_istable(L, -1)) {
        inst_free(in);
        return evs__err(EVS_EINVAL, "aggregate \"%s\": the script must return a table with a 'commands' table", l->name);
    }
    in->commands_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    *out = in;
    return EVS_OK;
}

static int borrow(struct evs__lua_agg *l, lua_inst **out) {
    pthread_mutex_lock(&l->mu);
    lua_inst *in = l->idle;
    if (in) l->idle = in->next;
    pthread_mutex_unlock(&l->mu);
    if (in) {
        *out = in;
        return EVS_OK;
    }
    return inst_new(l, out);
}

static void give_back(struct evs__lua_agg *l, lua_inst *in) {
    lua_settop(in->L, 0);
    pthread_mutex_lock(&l->mu);
    in->next = l->idle;
    l->idle = in;
    pthread_mutex_unlock(&l->mu);
}

void evs__agg_lua_free(struct evs__lua_agg *l) {
    if (!l) return;
    while (l->idle) {
        lua_inst *n = l->idle->next;
        inst_free(l->idle);
        l->idle = n;
    }
    pthread_mutex_destroy(&l->mu);
    free(l->src);
    free(l);
}

void evs__agg_lua_trim(struct evs__lua_agg *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    lua_inst *in = l->idle;
    l->idle = NULL;
    pthread_mutex_unlock(&l->mu);
    while (in) {
        lua_inst *n = in->next;
        inst_free(in);
        in = n;
    }
}

const char *evs__agg_lua_source(const struct evs__lua_agg *l, size_t *len) {
    *len = l->len;
    return l->src;
}

/* ------------------------------------------------------------- callbacks */

/* A state holder with a sandbox of its own: NULL with err on failure. */
static lstate *lstate_new(struct evs__lua_agg *l, char *err, size_t cap) {
    lstate *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    if (borrow(l, &s->in)) {
        snprintf(err, cap, "%s", evs_errmsg());
        free(s);
        return NULL;
    }
    return s;
}

/* The table on top of the stack becomes the state. */
static void lstate_take(lstate *s) { s->ref = luaL_ref(s->in->L, LUA_REGISTRYINDEX); }

static int cb_init(void *ctx, void **state, char *err, size_t cap) {
    struct evs__lua_agg *l = ctx;
    lstate *s = lstate_new(l, err, cap);
    if (!s) return 1;
    lua_State *L = s->in->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->in->init_ref);
    if (lua_isfunction(L, -1)) {
        if (evs__sandbox_call(s->in->sb, 0, 1, err, cap)) goto fail;
        if (!lua_istable(L, -1)) {
            snprintf(err, cap, "init must return a table (got %s)", luaL_typename(L, -1));
            goto fail;
        }
    } else if (lua_istable(L, -1)) {
        /* a fresh copy for every aggregate: through JSON */
        char *enc = NULL;
        size_t el = 0;
        int bad = evs__sandbox_encode(L, -1, &enc, &el, err, cap);
        lua_settop(L, 0);
        if (!bad) bad = evs__sandbox_push_json(L, enc, el);
        free(enc);
        if (bad) {
            if (!err[0]) snprintf(err, cap, "init table cannot be copied");
            goto fail;
        }
    } else {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    lstate_take(s);
    *state = s;
    return 0;
fail:
    give_back(l, s->in);
    free(s);
    return 1;
}

static void cb_free(void *ctx, void *state) {
    struct evs__lua_agg *l = ctx;
    lstate *s = state;
    if (!s) return;
    luaL_unref(s->in->L, LUA_REGISTRYINDEX, s->ref);
    give_back(l, s->in);
    free(s);
}

static int cb_evolve(void *ctx, void *state, const evs_event *ev, char *err, size_t cap) {
    (void)ctx;
    lstate *s = state;
    lua_State *L = s->in->L;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->in->evolve_ref);
    lua_pushlstring(L, ev->event_type, ev->event_type_len);
    lua_rawget(L, -2);
    if (lua_isnil(L, -1)) {
        lua_settop(L, 0);
        return 0; /* an event this aggregate does not fold */
    }
    if (!lua_isfunction(L, -1)) {
        snprintf(err, cap, "evolve.%.*s is not a function", (int)ev->event_type_len, ev->event_type);
        lua_settop(L, 0);
        return 1;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
    if (evs__sandbox_push_event(s->in->sb, ev, err, cap) || evs__sandbox_call(s->in->sb, 2, 1, err, cap)) {
        lua_settop(L, 0);
        return 1;
    }
    if (lua_istable(L, -1)) {
        int nref = luaL_ref(L, LUA_REGISTRYINDEX);
        luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
        s->ref = nref;
    } else if (!lua_isnil(L, -1)) {
        snprintf(err, cap, "evolve.%.*s returned a %s (a table or nothing expected)", (int)ev->event_type_len,
                 ev->event_type, luaL_typename(L, -1));
        lua_settop(L, 0);
        return 1;
    }
    lua_settop(L, 0);
    return 0;
}

static void set_s(lua_State *L, const char *k, const char *v) {
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static int push_json_field(lua_State *L, const char *k, const char *p, size_t n, char *err, size_t cap) {
    if (p && n) {
        if (evs__sandbox_push_json(L, p, n)) {
            snprintf(err, cap, "command %s is not valid JSON", k);
            return 1;
        }
    } else {
        lua_newtable(L);
    }
    lua_setfield(L, -2, k);
    return 0;
}

static int cb_decide(void *ctx, const void *state, uint64_t version, const evs_command *cmd, evs_decision *d, char *err,
                     size_t cap) {
    (void)ctx;
    const lstate *s = state;
    lua_State *L = s->in->L;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->in->commands_ref);
    evs__sandbox_rawfield(L, -1, cmd->command_type);
    if (lua_istable(L, -1)) evs__sandbox_rawfield(L, -1, "decide");
    if (!lua_isfunction(L, -1)) {
        snprintf(err, cap, "commands.%s.decide is not a function", cmd->command_type);
        lua_settop(L, 0);
        return 1;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
    lua_createtable(L, 0, 8);
    set_s(L, "id", cmd->command_id);
    set_s(L, "type", cmd->command_type);
    set_s(L, "aggregate_id", cmd->aggregate_id);
    lua_pushinteger(L, (lua_Integer)version);
    lua_setfield(L, -2, "version");
    if (cmd->expected_version >= 0) {
        lua_pushinteger(L, (lua_Integer)cmd->expected_version);
        lua_setfield(L, -2, "expected_version");
    }
    if (push_json_field(L, "data", cmd->data, cmd->data_len, err, cap) ||
        push_json_field(L, "metadata", cmd->metadata, cmd->metadata_len, err, cap)) {
        lua_settop(L, 0);
        return 1;
    }
    if (evs__sandbox_call(s->in->sb, 2, 1, err, cap)) {
        lua_settop(L, 0);
        return 1;
    }
    int rc = 0;
    int r = lua_gettop(L);
    if (lua_type(L, r) == LUA_TSTRING) {
        evs_decision_reject(d, lua_tostring(L, r));
    } else if (lua_istable(L, r)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, r);
        for (lua_Integer i = 1; i <= n && !rc; i++) {
            lua_rawgeti(L, r, i);
            int e = lua_gettop(L);
            evs__sandbox_rawfield(L, e, "type");
            const char *type = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            evs__sandbox_rawfield(L, e, "data");
            char *json = NULL;
            size_t jl = 0;
            if (!type) {
                snprintf(err, cap, "decide returned an event %lld without a string 'type'", (long long)i);
                rc = 1;
            } else if (lua_isnil(L, -1)) {
                rc = evs_decision_emit(d, type, "{}", 2) ? 1 : 0;
            } else if (!lua_istable(L, -1) || evs__sandbox_encode(L, -1, &json, &jl, err, cap)) {
                if (!lua_istable(L, -1)) snprintf(err, cap, "event %lld (%s): data must be a table", (long long)i, type);
                rc = 1;
            } else if (json[0] != '{') {
                snprintf(err, cap, "event %lld (%s): data must encode as a JSON object, not an array", (long long)i, type);
                rc = 1;
            } else if (evs_decision_emit(d, type, json, jl)) {
                snprintf(err, cap, "%s", evs_errmsg());
                rc = 1;
            }
            free(json);
            lua_settop(L, r);
        }
    } else if (!lua_isnil(L, r)) {
        snprintf(err, cap, "decide returned a %s (a list of events, a rejection string or nothing expected)",
                 luaL_typename(L, r));
        rc = 1;
    }
    lua_settop(L, 0);
    return rc;
}

static int cb_encode(void *ctx, const void *state, char **json, size_t *len) {
    (void)ctx;
    const lstate *s = state;
    char err[256];
    lua_State *L = s->in->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
    int rc = evs__sandbox_encode(L, -1, json, len, err, sizeof err);
    lua_settop(L, 0);
    return rc ? 1 : 0;
}

static int cb_decode(void *ctx, const char *json, size_t len, void **state, char *err, size_t cap) {
    struct evs__lua_agg *l = ctx;
    lstate *s = lstate_new(l, err, cap);
    if (!s) return 1;
    lua_State *L = s->in->L;
    if (evs__sandbox_push_json(L, json, len) || !lua_istable(L, -1)) {
        snprintf(err, cap, "snapshot state is not a JSON object");
        give_back(l, s->in);
        free(s);
        return 1;
    }
    lstate_take(s);
    *state = s;
    return 0;
}

/* ---------------------------------------------------------- registration */

int evs__agg_lua_init(evs_app *a, evs__agg *g, const char *src, size_t len) {
    struct evs__lua_agg *l = calloc(1, sizeof *l);
    if (!l) return evs__err(EVS_ENOMEM, "out of memory");
    pthread_mutex_init(&l->mu, NULL);
    g->lua = l;
    snprintf(l->name, sizeof l->name, "%s", g->name);
    l->lim = a->cfg.lua_limits;
    if (!(l->src = malloc(len + 1))) return evs__err(EVS_ENOMEM, "out of memory");
    memcpy(l->src, src, len);
    l->src[len] = 0;
    l->len = len;
    /* one instance now: compile errors surface at registration; it starts the pool */
    lua_inst *in;
    int rc = inst_new(l, &in);
    if (rc) return rc;
    lua_State *L = in->L;
    uint32_t schema = 1;
    if (evs__sandbox_run(in->sb, src, len, "=aggregate") == EVS_OK) {
        evs__sandbox_rawfield(L, -1, "schema_version");
        if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0 && lua_tointeger(L, -1) <= UINT32_MAX)
            schema = (uint32_t)lua_tointeger(L, -1);
        else if (!lua_isnil(L, -1)) rc = evs__err(EVS_EINVAL, "aggregate \"%s\": schema_version must be a positive integer", g->name);
    }
    lua_settop(L, 0);
    if (rc) {
        inst_free(in);
        return rc;
    }
    give_back(l, in);
    g->schema = schema;
    evs__app_hash("lua:", 4, src, len, g->code_hash);
    evs_aggregate_def *d = &g->def;
    d->name = g->name;
    d->schema_version = schema;
    d->code_version = NULL;
    d->init = cb_init;
    d->evolve = cb_evolve;
    d->decide = cb_decide;
    d->encode = cb_encode;
    d->decode = cb_decode;
    d->free_state = cb_free;
    d->ctx = l;
    return EVS_OK;
}

static int parse_type(const char *s, evs_field_spec *f) {
    static const char *const names[] = {"any", "string", "integer", "number", "boolean", "object", "array"};
    size_t n = strlen(s);
    f->required = 1;
    if (n && s[n - 1] == '?') f->required = 0, n--;
    for (int i = 0; i <= EVS_FIELD_ARRAY; i++)
        if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0) {
            f->type = (evs_field_type)i;
            return 0;
        }
    return -1;
}

void evs__agg_lua_handlers_free(evs_command_handler *h, size_t n) {
    for (size_t i = 0; h && i < n; i++) {
        free((char *)h[i].command_type);
        for (size_t j = 0; j < h[i].n_fields; j++) free((char *)h[i].fields[j].name);
        free((void *)h[i].fields);
    }
    free(h);
}

int evs__agg_lua_handlers(evs__agg *g, evs_command_handler **out, size_t *n) {
    *out = NULL;
    *n = 0;
    lua_inst *in;
    int rc = borrow(g->lua, &in);
    if (rc) return rc;
    lua_State *L = in->L;
    evs_command_handler *hs = NULL;
    size_t nh = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, in->commands_ref);
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (!rc && lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1)) {
            rc = evs__err(EVS_EINVAL, "aggregate \"%s\": commands must map command type names to tables", g->name);
            lua_pop(L, 2);
            break;
        }
        const char *type = lua_tostring(L, -2);
        evs__sandbox_rawfield(L, -1, "decide");
        int has_decide = lua_isfunction(L, -1);
        lua_pop(L, 1);
        if (!has_decide) {
            rc = evs__err(EVS_EINVAL, "aggregate \"%s\": commands.%s.decide must be a function", g->name, type);
            lua_pop(L, 2);
            break;
        }
        evs_command_handler *nhs = realloc(hs, (nh + 1) * sizeof *nhs);
        if (!nhs) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            lua_pop(L, 2);
            break;
        }
        hs = nhs;
        evs_command_handler *h = &hs[nh++];
        memset(h, 0, sizeof *h);
        h->kind = EVS_HANDLER_AGGREGATE;
        h->aggregate = g->name;
        if (!(h->command_type = strdup(type))) rc = evs__err(EVS_ENOMEM, "out of memory");
        evs__sandbox_rawfield(L, -1, "fields");
        if (!rc && lua_istable(L, -1)) {
            int ft = lua_gettop(L);
            evs_field_spec *fs = NULL;
            lua_pushnil(L);
            while (!rc && lua_next(L, ft)) {
                const char *fname = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
                const char *ftype = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
                evs_field_spec f = {0};
                if (!fname || !ftype || parse_type(ftype, &f)) {
                    rc = evs__err(EVS_EINVAL,
                                  "aggregate \"%s\": commands.%s.fields: each field maps a name to one of any, string, "
                                  "integer, number, boolean, object, array (\"?\" suffix: optional)",
                                  g->name, type);
                } else if (h->n_fields >= EVS_APP_MAX_FIELDS) {
                    rc = evs__err(EVS_ELIMIT, "aggregate \"%s\": commands.%s declares more than %u fields", g->name,
                                  type, EVS_APP_MAX_FIELDS);
                } else if (!(fs = realloc((void *)h->fields, (h->n_fields + 1) * sizeof *fs)) ||
                           !(f.name = strdup(fname))) {
                    if (fs) h->fields = fs;
                    rc = evs__err(EVS_ENOMEM, "out of memory");
                } else {
                    h->fields = fs;
                    fs[h->n_fields++] = f;
                }
                lua_pop(L, 1);
            }
            if (rc) lua_settop(L, ft);
        } else if (!rc && !lua_isnil(L, -1)) {
            rc = evs__err(EVS_EINVAL, "aggregate \"%s\": commands.%s.fields must be a table", g->name, type);
        }
        lua_settop(L, t + 1); /* keep the key for lua_next */
    }
    lua_settop(L, 0);
    give_back(g->lua, in);
    if (rc) {
        evs__agg_lua_handlers_free(hs, nh);
        return rc;
    }
    *out = hs;
    *n = nh;
    return EVS_OK;
}

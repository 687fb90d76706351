/*
 * upcaster.c — upcaster objects: compiling a Lua upcaster into its own
 * sandbox, freeing one, and loading the Lua upcasters stored in the
 * registry into its type tables.
 *
 * Apart from upcast.c so the schema room stays one-way: registry.c calls
 * this file when it (re)loads its tables, and upcast.c (declaring
 * upcasters, upcasting on read) calls registry.c for its lock, refresh and
 * writes.  upcast.c -> registry.c -> upcaster.c -> table.c.
 */
#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "schema/table.h"

void evs__upcaster_free(evs__upcaster *u) {
    if (!u) return;
    if (u->kind == EVS__UP_LUA) pthread_mutex_destroy(&u->mu);
    evs__sandbox_free(u->sb);
    free(u->src);
    free(u);
}

/* Compile a Lua upcaster: the script must return a function. */
int evs__upcaster_lua_new(const char *type, uint32_t from, const char *src, size_t len, evs__upcaster **out) {
    *out = NULL;
    evs__upcaster *u = calloc(1, sizeof *u);
    if (!u) return evs__err(EVS_ENOMEM, "out of memory for an upcaster");
    u->kind = EVS__UP_LUA;
    pthread_mutex_init(&u->mu, NULL);
    int rc = evs__sandbox_new(NULL, &u->sb);
    if (rc) goto fail;
    char chunk[EVS_MAX_TYPE_NAME + 40];
    snprintf(chunk, sizeof chunk, "=upcaster %s %u->%u", type, from, from + 1);
    lua_State *L = evs__sandbox_state(u->sb);
    if (luaL_loadbufferx(L, src, len, chunk, "t") != LUA_OK) {
        rc = evs__err(EVS_EINVAL, "upcaster %s %u->%u does not compile: %s", type, from, from + 1, lua_tostring(L, -1));
        goto fail;
    }
    char err[512];
    if (evs__sandbox_call(u->sb, 0, 1, err, sizeof err)) {
        rc = evs__err(EVS_EINVAL, "upcaster %s %u->%u failed to load: %s", type, from, from + 1, err);
        goto fail;
    }
    if (!lua_isfunction(L, -1)) {
        rc = evs__err(EVS_EINVAL, "upcaster %s %u->%u must return a function (got %s)", type, from, from + 1,
                      luaL_typename(L, -1));
        goto fail;
    }
    u->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!(u->src = malloc(len + 1))) {
        rc = evs__err(EVS_ENOMEM, "out of memory for an upcaster");
        goto fail;
    }
    memcpy(u->src, src, len);
    u->src[len] = 0;
    u->src_len = len;
    *out = u;
    return EVS_OK;
fail:
    evs__upcaster_free(u);
    return rc;
}

int evs__schema_load_upcasters(evs_schema_registry *r, evs__kv_txn *txn) {
    evs__kv_cursor *cur;
    evs__kv_val k = {0, NULL}, v;
    int rc = evs__kv_cursor_open(txn, EVS__SK_UPCASTERS, &cur);
    if (rc) return rc;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_FIRST); rc == 0;
         rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        const uint8_t *kb = k.data;
        size_t nl = k.size - 5;
        if (k.size < 6 || nl > EVS_MAX_TYPE_NAME || kb[nl] != 0) {
            rc = evs__err(EVS_ECORRUPT, "schemas: malformed upcaster key");
            goto out;
        }
        char name[EVS_MAX_TYPE_NAME + 1];
        memcpy(name, kb, nl);
        name[nl] = 0;
        uint32_t from = (uint32_t)kb[nl + 1] << 24 | (uint32_t)kb[nl + 2] << 16 | (uint32_t)kb[nl + 3] << 8 | kb[nl + 4];
        evs__stype *t = evs__schema_find(r, name);
        if (!t || from == 0 || from >= t->nv) {
            rc = evs__err(EVS_ECORRUPT, "schemas: upcaster of %s from version %u has no versions to join", name, from);
            goto out;
        }
        json_t *j = json_loadb(v.data, v.size, 0, NULL);
        json_t *src = json_object_get(j, "source");
        if (!json_is_string(src)) {
            json_decref(j);
            rc = evs__err(EVS_ECORRUPT, "schemas: upcaster of %s from version %u is malformed", name, from);
            goto out;
        }
        evs__upcaster *u;
        rc = evs__upcaster_lua_new(name, from, json_string_value(src), json_string_length(src), &u);
        json_decref(j);
        if (rc) goto out;
        t->up[from - 1] = u;
    }
    rc = rc == EVS__KV_NOTFOUND ? EVS_OK : evs__schema_kv_err(rc, "read upcasters");
out:
    evs__kv_cursor_close(cur);
    return rc;
}

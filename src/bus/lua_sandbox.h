/*
 * lua_sandbox.h — the Lua 5.4 sandbox every evstore script runs in (Lua
 * projections in this folder, Lua aggregates in src/app/).  The rules it
 * enforces (allow-listed libraries, memory cap, an instruction budget a
 * pcall cannot swallow, ordered pairs) are described in lua_sandbox.c.
 * Not part of the public API.
 *
 * Thread rules: a sandbox belongs to one thread at a time.
 */
#ifndef EVS_LUA_SANDBOX_H
#define EVS_LUA_SANDBOX_H

#include <jansson.h>
#include <lua.h>

#include "evstore.h"
#include "evstore_bus.h"

typedef struct evs__sandbox evs__sandbox;

/*
 * A fresh sandboxed state; lim may be NULL (defaults).
 * Ownership: *out is the caller's, released with evs__sandbox_free.
 */
int evs__sandbox_new(const evs_lua_limits *lim, evs__sandbox **out);
void evs__sandbox_free(evs__sandbox *x);
lua_State *evs__sandbox_state(evs__sandbox *x);

/*
 * Compile (text only) and run a script, leaving the table it returns on the
 * stack.  EVS_EINVAL with the reason otherwise (nothing left on the stack).
 */
int evs__sandbox_run(evs__sandbox *x, const char *src, size_t len, const char *chunkname);

/*
 * lua_pcall under the sandbox's budget and memory cap: 0 with nres results
 * pushed, or 1 with the reason in err and nothing pushed.
 */
int evs__sandbox_call(evs__sandbox *x, int nargs, int nres, char *err, size_t cap);

/*
 * Push t[k] read raw (no __index), returning its type.  What a script
 * returns is read this way outside guarded calls: a metamethod raising
 * there could not be caught and would abort the process.
 */
int evs__sandbox_rawfield(lua_State *L, int t, const char *k);

/* Push decoded JSON text (nil when empty): 0, or -1 when malformed or too deep. */
int evs__sandbox_push_json(lua_State *L, const char *p, size_t n);
/* The same through a jansson tree: what the direct decoder hands over, and its reference in tests. */
int evs__sandbox_push_json_tree(lua_State *L, const char *p, size_t n);
/* Push an event as a table (data and metadata decoded on first use): 0, or 1 with err. */
int evs__sandbox_push_event(evs__sandbox *x, const evs_event *ev, char *err, size_t cap);

/* The value at idx as JSON (new reference), or NULL with the reason in err. */
json_t *evs__sandbox_to_json(lua_State *L, int idx, char *err, size_t cap);
/* Encode the value at idx with sorted keys.  Ownership: *json is malloc'd for the caller. */
int evs__sandbox_encode(lua_State *L, int idx, char **json, size_t *len, char *err, size_t cap);
/* 1 (with err) when the value at idx cannot be encoded as JSON; cheaper than encoding. */
int evs__sandbox_check(lua_State *L, int idx, char *err, size_t cap);

#endif

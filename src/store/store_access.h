/*
 * store_access.h — read-only access to a few fields of an open store for
 * other subsystems of the library (the consumer bus in src/bus/ needs the
 * store's directory to put its own LMDB environment next to the log, and
 * whether it may write there; the application layer in src/app/ finds a
 * command's events by their ids), and the hook through which the schema
 * registry (src/schema/) checks appends without the store knowing about
 * schemas.
 * Not part of the public API.
 */
#ifndef EVS_STORE_ACCESS_H
#define EVS_STORE_ACCESS_H

#include "evstore.h"

/* The directory the store was opened in, or NULL when it is not open.  Owned by the store. */
const char *evs__store_dir(const evs_store *s);
/*
 * EVS_OK for a store on the embedded engine; EVS_ENOTSUP naming `what`
 * ("consumers", "schemas" ...) for a store on another engine (engine.h),
 * where the subsystems that keep their own files next to the log do not run.
 */
int evs__store_native_only(const evs_store *s, const char *what);
/* The name of the store's engine ("postgresql"), or NULL for the embedded one. */
const char *evs__store_engine_name(const evs_store *s);
/* The PostgreSQL engine's handle (an evs_pg, src/pg) of a store on that engine, else NULL.  Owned by the store. */
void *evs__store_pg_engine(const evs_store *s);
/* 1 when the store was opened with EVS_OPEN_READONLY (another process may be writing it). */
int evs__store_readonly(const evs_store *s);

/*
 * evs_stream_delete, and on EVS_ECONFLICT *actual_out (may be NULL) the
 * stream's version the refusal was judged against (the server's 409 names
 * it without reading the stream again).
 */
int evs__stream_delete(evs_store *s, const char *stream, int64_t expected, int hard, uint64_t *actual_out);

/*
 * The global position of a stored event id: EVS_OK, EVS_ENOTFOUND, or an
 * index error.  Sees every acknowledged append.
 */
int evs__store_event_position(evs_store *s, const evs_uuid *id, uint64_t *gpos);

/*
 * An asynchronous append: the outcome of evs__store_append_async.  rc and
 * res are evs_append's; ids are the events' ids (given or generated), n of
 * them; msg is the error's message when rc != EVS_OK, else "".  Called
 * once, on the thread that led the batch holding the append (possibly the
 * caller's, before evs__store_append_async returns), with no lock of the
 * store held; res, ids and msg are valid during the call only.  Keep it
 * short: the batch's other members wait for it.
 */
typedef void (*evs__append_done_fn)(void *arg, int rc, const evs_append_result *res, const evs_uuid *ids, size_t n,
                                    const char *msg);

/*
 * evs_append without waiting: the append is checked, prepared (the
 * validator runs here) and queued for the group commit, and cb is called
 * once its batch is durable (or failed).  No condition, no metadata write.
 * EVS_OK: queued, cb will be called exactly once (the store's close waits
 * for it).  Any other code: refused at once, nothing queued, cb never
 * called, the message set.  The embedded engine only (EVS_ENOTSUP on
 * another).  Used by the server, so that an HTTP worker goes on with its
 * other connections while its append waits for the fdatasync.
 */
int evs__store_append_async(evs_store *s, const char *stream, int64_t expected, const evs_event_in *events, size_t n,
                            evs__append_done_fn cb, void *arg);

/*
 * The append validator: a hook the store calls for every event of an
 * append, on the appending thread, before anything is encoded or queued
 * (the prepare step), so a refusal stores nothing.  The store knows
 * nothing of what it checks; the schema registry (src/schema/) installs
 * one.  ev has the store's defaults applied (event_version >= 1) and its
 * data already scanned as a JSON object; stream_type is the one the event
 * will be stored with.  Return EVS_OK to accept, or an error code with the
 * message set (evs__err): the whole append fails with it.
 */
typedef int (*evs__append_validator)(void *ctx, const char *stream, size_t stream_len, const char *stream_type,
                                     size_t stream_type_len, const evs_event_in *ev, size_t index);

/*
 * Install (fn) or remove (NULL) the validator of an open store.  Call it
 * while no append is in flight: right after open, or before close.
 * EVS_ECLOSED when the store is not open, EVS_ECONFLICT when another
 * validator is installed (remove it first).
 */
int evs__store_set_validator(evs_store *s, evs__append_validator fn, void *ctx);

#endif

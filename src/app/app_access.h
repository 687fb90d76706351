/*
 * app_access.h — what the layers above the application layer (the sagas in
 * src/saga/, the server) may ask of the command bus beyond the public API.
 * Not part of the public API.
 */
#ifndef EVS_APP_ACCESS_H
#define EVS_APP_ACCESS_H

#include "evstore_app.h"

/*
 * Has command cmd_id run, without running it?  1 with *res filled as
 * evs_app_execute would answer a re-sent copy (accepted with its events, or
 * a result without events still within the idempotency window), 0 when no
 * trace of it exists, or a negative evs_status on a store error.  A saga
 * uses it to find a step's effects that happened before a crash but were
 * not yet recorded, before it decides anything that does not follow from
 * their outcome (a timeout, an operator's compensation).
 * Ownership: on 1, *res holds memory released by evs_command_result_free.
 */
int evs__app_command_lookup(evs_app *a, const char *cmd_id, evs_command_result *res);

/*
 * A whole file of at most max bytes into *buf (malloc'd, NUL-terminated,
 * the caller frees it): EVS_ENOTFOUND when it does not exist, EVS_ELIMIT
 * when it is larger, -errno otherwise, each naming the path.  App and saga
 * directories are read with it.
 */
int evs__app_slurp(const char *path, size_t max, char **buf, size_t *len);

/*
 * The NAME.lua files of dir (not hidden ones), sorted by name: 0 with
 * *names (released with evs__app_names_free) and *n, EVS_ENOTFOUND when
 * dir does not exist, -errno otherwise, each naming dir.
 */
int evs__app_list_lua(const char *dir, char ***names, size_t *n);
void evs__app_names_free(char **names, size_t n);

/*
 * Has the projection behind query `name` passed `position`, or does it
 * within wait_ms (0: just look)?  1 when it has (or when the query or
 * projection cannot be found: evs_app_query then says so), 0 when a query
 * with that min_position would still wait.  The server waits this long on
 * a worker, which most reads of one's own writes need, and runs the
 * queries that would wait longer on a thread of their own.
 */
int evs__app_query_reached(evs_app *a, const char *name, uint64_t position, int wait_ms);

/*
 * End every min_position wait, now and later: evs_app_query answers
 * EVS_ECLOSED within QUERY_WAIT_SLICE_MS (query.c) instead of waiting on.
 * The server calls it as it shuts down, so that no request outlives it.
 */
void evs__app_interrupt(evs_app *a);

#endif

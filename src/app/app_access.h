/*
 * app_access.h — what the layers above the application layer (the sagas in
 * src/saga/) may ask of the command bus beyond the public API.  Not part of
 * the public API.
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

#endif

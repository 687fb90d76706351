/*
 * store_access.h — read-only access to a few fields of an open store for
 * other subsystems of the library (the consumer bus in src/bus/ needs the
 * store's directory to put its own LMDB environment next to the log, and
 * whether it may write there; the application layer in src/app/ finds a
 * command's events by their ids).
 * Not part of the public API.
 */
#ifndef EVS_STORE_ACCESS_H
#define EVS_STORE_ACCESS_H

#include "evstore.h"

/* The directory the store was opened in, or NULL when it is not open.  Owned by the store. */
const char *evs__store_dir(const evs_store *s);
/* 1 when the store was opened with EVS_OPEN_READONLY (another process may be writing it). */
int evs__store_readonly(const evs_store *s);

/*
 * The global position of a stored event id: EVS_OK, EVS_ENOTFOUND, or an
 * index error.  Sees every acknowledged append.
 */
int evs__store_event_position(evs_store *s, const evs_uuid *id, uint64_t *gpos);

#endif

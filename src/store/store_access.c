/*
 * store_access.c — the accessors declared in store_access.h.  Kept apart
 * from store.c so that other subsystems never need the store's internals.
 */
#include "store/store_access.h"
#include "store/store_internal.h"

const char *evs__store_dir(const evs_store *s) { return s ? s->dir : NULL; }
int evs__store_readonly(const evs_store *s) { return s && s->readonly; }

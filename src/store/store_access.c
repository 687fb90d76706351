/*
 * store_access.c — the accessors declared in store_access.h.  Kept apart
 * from store.c so that other subsystems never need the store's internals.
 */
#include "store/store_access.h"
#include "core/core.h"
#include "store/store_internal.h"

const char *evs__store_dir(const evs_store *s) { return s ? s->dir : NULL; }
int evs__store_readonly(const evs_store *s) { return s && s->readonly; }

int evs__store_event_position(evs_store *s, const evs_uuid *id, uint64_t *gpos) {
    if (!s || !s->dir) return evs__err(EVS_ECLOSED, "the store is not open");
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->ix.env, NULL, MDB_RDONLY, &txn);
    if (rc) return evs__index_err(rc, "begin read");
    uint64_t sid, spos;
    rc = evs__index_event_id_get(&s->ix, txn, id, gpos, &sid, &spos);
    mdb_txn_abort(txn);
    return rc;
}

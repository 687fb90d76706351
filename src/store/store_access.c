/*
 * store_access.c — the accessors declared in store_access.h.  Kept apart
 * from store.c so that other subsystems never need the store's internals.
 */
#include "store/store_access.h"
#include "core/core.h"
#include "store/store_internal.h"

const char *evs__store_dir(const evs_store *s) { return s ? s->dir : NULL; }
int evs__store_readonly(const evs_store *s) { return s && s->readonly; }
void *evs__store_pg_engine(const evs_store *s) {
    return s && s->engine && strcmp(s->engine->name, "postgresql") == 0 ? s->eng : NULL;
}


int evs__store_event_position(evs_store *s, const evs_uuid *id, uint64_t *gpos) {
    if (s && s->engine) return s->engine->event_position(s->eng, id, gpos);
    if (!s || !s->dir) return evs__err(EVS_ECLOSED, "the store is not open");
    MDB_txn *txn;
    /* under the index's remap lock, like every reader (see index.h): the
       writer may grow the map at any time */
    int rc = evs__index_rbegin(&s->ix, &txn);
    if (rc) return rc;
    uint64_t sid, spos;
    rc = evs__index_event_id_get(&s->ix, txn, id, gpos, &sid, &spos);
    evs__index_rend(&s->ix, txn);
    return rc;
}

int evs__store_set_validator(evs_store *s, evs__append_validator fn, void *ctx) {
    /* an engine's appends pass it too (store_engine.c), after the engine-independent checks */
    if (!s || (!s->dir && !s->engine)) return evs__err(EVS_ECLOSED, "set validator: the store is not open");
    if (fn && s->validator && (s->validator != fn || s->validator_ctx != ctx))
        return evs__err(EVS_ECONFLICT, "set validator: the store already has one (a schema registry is open on it)");
    s->validator = fn;
    s->validator_ctx = fn ? ctx : NULL;
    return EVS_OK;
}

/*
 * ixquery.c — the first event a DCB query matches, answered from the index
 * (the conditional append's check, see evs_append_if in evstore.h).
 *
 * The group-commit leader calls evs__index_query_first inside the batch's
 * write transaction, which already holds the index entries of the batch's
 * earlier requests, so the answer covers every event that will precede
 * this request in the log.  Nothing here reads the log: an item's tags are
 * intersected on the `tags` database (each tag's sorted list of positions,
 * leapfrogging to the furthest position one of them stands on until all
 * agree), its event types are checked with one lookup each in `types`, and
 * an item with types but no tags merges the types' lists.  When nothing
 * matches, which is the common case of a condition that holds, each item
 * costs one seek per tag or type.
 */
#include <string.h>

#include "core/core.h"
#include "index/index.h"

/* First position >= from in key's sorted duplicates, 0 when none. */
static int seek_dup(MDB_cursor *cur, const char *key, size_t klen, uint64_t from, uint64_t *g) {
    uint8_t vb[8];
    evs__put64be(vb, from);
    MDB_val k = {klen, (void *)key}, v = {8, vb};
    int rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH_RANGE);
    *g = rc == 0 && v.mv_size == 8 ? evs__get64be(v.mv_data) : 0;
    return rc && rc != MDB_NOTFOUND ? evs__index_err(rc, "query seek") : EVS_OK;
}

/* Is g among key's duplicates? */
static int has_dup(MDB_cursor *cur, const char *key, size_t klen, uint64_t g, int *yes) {
    uint8_t vb[8];
    evs__put64be(vb, g);
    MDB_val k = {klen, (void *)key}, v = {8, vb};
    int rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH);
    *yes = rc == 0;
    return rc && rc != MDB_NOTFOUND ? evs__index_err(rc, "query lookup") : EVS_OK;
}

/* The item's first match in [from, bound) (bound 0: no bound), 0 when none. */
static int item_first(MDB_cursor *tc, MDB_cursor *yc, const evs_query_item *it, uint64_t from, uint64_t head,
                      uint64_t bound, uint64_t *out) {
    int rc;
    *out = 0;
    uint64_t lim = bound ? bound : head + 1; /* exclusive */
    if (from >= lim) return EVS_OK;
    if (it->n_tags == 0 && it->n_event_types == 0) {
        *out = from;
        return EVS_OK;
    }
    if (it->n_tags == 0) {
        for (size_t i = 0; i < it->n_event_types; i++) {
            uint64_t g;
            if ((rc = seek_dup(yc, it->event_types[i], strlen(it->event_types[i]), from, &g))) return rc;
            if (g && g < lim) lim = g, *out = g;
        }
        return EVS_OK;
    }
    uint64_t cand = from;
    while (cand < lim) {
        int moved = 0;
        for (size_t j = 0; j < it->n_tags; j++) {
            uint64_t g;
            if ((rc = seek_dup(tc, it->tags[j], strlen(it->tags[j]), cand, &g))) return rc;
            if (!g) return EVS_OK; /* a tag with nothing at or after cand: no match */
            if (g > cand) cand = g, moved = 1;
        }
        if (moved || cand >= lim) continue;
        int ok = it->n_event_types == 0;
        for (size_t i = 0; i < it->n_event_types && !ok; i++)
            if ((rc = has_dup(yc, it->event_types[i], strlen(it->event_types[i]), cand, &ok))) return rc;
        if (ok) {
            *out = cand;
            return EVS_OK;
        }
        cand++;
    }
    return EVS_OK;
}

int evs__index_query_first(evs_index *ix, MDB_txn *txn, const evs_append_condition *c, uint64_t head,
                           uint64_t *gpos, size_t *item) {
    *gpos = 0;
    *item = 0;
    if (c->after >= head) return EVS_OK;
    MDB_cursor *tc = NULL, *yc = NULL;
    int rc = mdb_cursor_open(txn, ix->tags, &tc);
    if (!rc) rc = mdb_cursor_open(txn, ix->types, &yc);
    if (rc) {
        rc = evs__index_err(rc, "open query cursor");
        goto out;
    }
    uint64_t best = 0;
    for (size_t i = 0; i < c->n_items; i++) {
        uint64_t g;
        if ((rc = item_first(tc, yc, &c->items[i], c->after + 1, head, best, &g))) goto out;
        if (g) {
            best = g;
            *item = i;
            if (g == c->after + 1) break; /* nothing can come earlier */
        }
    }
    *gpos = best;
out:
    if (yc) mdb_cursor_close(yc);
    if (tc) mdb_cursor_close(tc);
    return rc;
}

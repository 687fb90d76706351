/*
 * pg_meta.c — stream metadata, soft and hard deletes on the PostgreSQL
 * engine (the embedded engine's are src/store/meta.c, which checks and
 * parses the object and builds a delete's for both).
 *
 * A metadata write is one transaction: its "$metadata" event is appended
 * to the stream "$$"+name through evs_append() (which takes the head lock,
 * so the write is ordered with every append), the stream's own version is
 * read under that lock for a delete's expected version, and the object in
 * force goes to event_stream_metadata, where readers join it (pg_read.c,
 * EVS_PG_HIDDEN).  Several servers on one database therefore agree at once:
 * there is no cache to go stale.  A hard-deleted stream's row refuses every
 * later append (the trigger in migrate.c); what evs_append() answers first
 * for such a stream, or for "no stream" on a soft-deleted one, is put
 * right by evs__pg_meta_after_conflict.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "pg/pg_internal.h"

#define META_PREFIX "$$"
#define META_TYPE "$metadata"

/* max_age/max_count -1 and no truncation: what a stream without metadata has. */
static void meta_none(evs_stream_metadata *m) {
    m->max_age = -1;
    m->max_count = -1;
    m->truncate_before = 0;
    m->tombstone = 0;
}

static int64_t opt_int(const PGresult *r, int col) {
    return PQgetisnull(r, 0, col) ? -1 : (int64_t)strtoll(PQgetvalue(r, 0, col), NULL, 10);
}

int evs__pg_meta_get(void *e, const char *stream, char **json, size_t *len, uint64_t *meta_version,
                     evs_stream_metadata *m, uint64_t *stream_version) {
    evs_pg *pg = e;
    const char *vals[1] = {stream};
    PGresult *r;
    *json = NULL;
    *len = 0;
    *meta_version = 0;
    *stream_version = 0;
    meta_none(m);
    int rc = evs__pg_query(pg,
                           "SELECT m.metadata, m.meta_version, m.max_age, m.max_count, m.truncate_before, m.tombstone, "
                           "s.version FROM (SELECT $1::text AS a) q "
                           "LEFT JOIN event_stream_metadata m ON m.aggregate_id = q.a "
                           "LEFT JOIN event_streams s ON s.aggregate_id = q.a",
                           1, NULL, vals, NULL, NULL, 0, "postgresql: stream metadata", &r);
    if (rc) return rc;
    if (!PQgetisnull(r, 0, 6)) *stream_version = strtoull(PQgetvalue(r, 0, 6), NULL, 10);
    if (!PQgetisnull(r, 0, 0)) {
        size_t n = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 0), &n);
        char *j = raw ? malloc(n + 1) : NULL;
        if (!j) {
            PQfreemem(raw);
            PQclear(r);
            return evs__err(EVS_ENOMEM, "out of memory copying metadata");
        }
        memcpy(j, raw, n);
        j[n] = '\0';
        PQfreemem(raw);
        *json = j;
        *len = n;
        *meta_version = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
        m->max_age = opt_int(r, 2);
        m->max_count = opt_int(r, 3);
        m->truncate_before = strtoull(PQgetvalue(r, 0, 4), NULL, 10);
        m->tombstone = PQgetvalue(r, 0, 5)[0] == 't';
    }
    PQclear(r);
    return EVS_OK;
}

/* One statement in the open transaction; EVS_OK or its error.  *out (may be NULL) is the caller's. */
static int run(PGconn *c, const char *sql, int n, const char *const *vals, const int *lens, const int *fmts,
               const char *what, PGresult **out) {
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, lens, fmts, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        int rc = evs__pg_err(c, r, what);
        PQclear(r);
        return rc;
    }
    if (out) *out = r;
    else PQclear(r);
    return EVS_OK;
}

/* The stream's version and whether its metadata deletes it (1 soft, 2 hard), read in c's transaction. */
static int stream_state(PGconn *c, const char *stream, uint64_t *version, int *dstate, uint64_t *truncate_before) {
    const char *vals[1] = {stream};
    PGresult *r = NULL;
    int rc = run(c,
                 "SELECT s.version, m.truncate_before, m.tombstone FROM (SELECT $1::text AS a) q "
                 "LEFT JOIN event_streams s ON s.aggregate_id = q.a "
                 "LEFT JOIN event_stream_metadata m ON m.aggregate_id = q.a",
                 1, vals, NULL, NULL, "postgresql: stream state", &r);
    if (rc) return rc;
    *version = PQgetisnull(r, 0, 0) ? 0 : strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    *truncate_before = PQgetisnull(r, 0, 1) ? 0 : strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    *dstate = 0;
    if (!PQgetisnull(r, 0, 2) && PQgetvalue(r, 0, 2)[0] == 't') *dstate = 2;
    else if (*truncate_before > *version) *dstate = 1;
    PQclear(r);
    return EVS_OK;
}

static int deleted_err(const char *stream) {
    return evs__err(EVS_EDELETED, "stream \"%s\" is hard-deleted (tombstone): it can never be written again", stream);
}

/* ROLLBACK keeping the message of rc (the rollback's own result is not reported). */
static int rollback(PGconn *c, int rc) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", rc ? evs_errmsg() : "");
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, "ROLLBACK");
        PQclear(r);
    }
    if (rc) evs__err(rc, "%s", msg);
    return rc;
}

int evs__pg_meta_set(void *e, const evs__meta_write *mw, int64_t expected, uint64_t *version_out) {
    evs_pg *pg = e;
    char name[EVS_MAX_STREAM_NAME + 8], target[EVS_MAX_STREAM_NAME + 1];
    if (mw->target_len + strlen(META_PREFIX) > EVS_MAX_STREAM_NAME)
        return evs__err(EVS_ELIMIT, "stream \"%.*s\": its metadata stream name would exceed %u bytes",
                        (int)mw->target_len, mw->target, EVS_MAX_STREAM_NAME);
    snprintf(target, sizeof target, "%.*s", (int)mw->target_len, mw->target);
    snprintf(name, sizeof name, META_PREFIX "%s", target);
    evs_event_in ev;
    memset(&ev, 0, sizeof ev);
    ev.event_type = META_TYPE;
    ev.data = mw->json;
    ev.data_len = mw->json_len;
    const uint64_t lims[4] = {EVS_MAX_EVENT_BYTES, 1, EVS_MAX_EVENT_BYTES, EVS_MAX_STREAM_NAME};
    evs__engine_append *a;
    int rc = evs__engine_append_prepare_reserved(lims, name, expected, &ev, 1, &a);
    if (rc) return rc;
    PGconn *c = NULL;
    PGresult *r = NULL;
    evs_append_result res;
    memset(&res, 0, sizeof res);
    if ((rc = evs__pg_get(pg, &c))) goto out_free;
    if ((rc = run(c, "BEGIN", 0, NULL, NULL, NULL, "postgresql: metadata: begin", NULL))) goto out;
    uint32_t status;
    rc = evs__pg_append_in_tx(pg, c, a, &res, &status); /* takes the head lock */
    if (rc && rc != EVS_ECONFLICT) {
        rc = rollback(c, rc);
        goto out;
    }
    int conflict = rc == EVS_ECONFLICT, dstate;
    uint64_t v, tb;
    if ((rc = stream_state(c, target, &v, &dstate, &tb))) {
        rc = rollback(c, rc);
        goto out;
    }
    if (dstate == 2) { /* before the version, as on the embedded engine */
        rc = rollback(c, deleted_err(target));
        goto out;
    }
    if (conflict) {
        if (version_out) *version_out = res.actual_version;
        rc = rollback(c, evs__err(EVS_ECONFLICT, "stream \"%s\": expected metadata version %lld, actual %llu", target,
                                  (long long)expected, (unsigned long long)res.actual_version));
        goto out;
    }
    if (status != 0) { /* the "$metadata" event's id is fresh: cannot be a retry */
        rc = rollback(c, evs__err(EVS_EIO, "postgresql: metadata: the \"$metadata\" event was not appended"));
        goto out;
    }
    if (mw->has_target_expected) {
        int64_t te = mw->target_expected;
        int ok = te == EVS_EXPECT_ANY || (te == EVS_EXPECT_EXISTS && v > 0) ||
                 (te == EVS_EXPECT_NO_STREAM && dstate == 1) || (te >= 0 && (uint64_t)te == v);
        if (!ok) {
            if (version_out) *version_out = v;
            rc = rollback(c, evs__err(EVS_ECONFLICT, "Concurrency conflict: stream \"%s\": expected version %lld, "
                                      "actual version %llu", target, (long long)te, (unsigned long long)v));
            goto out;
        }
    }
    char mv[24], age[24], cnt[24], trunc[24];
    snprintf(mv, sizeof mv, "%llu", (unsigned long long)res.last_stream_position);
    snprintf(age, sizeof age, "%lld", (long long)mw->m.max_age);
    snprintf(cnt, sizeof cnt, "%lld", (long long)mw->m.max_count);
    snprintf(trunc, sizeof trunc, "%llu", (unsigned long long)mw->m.truncate_before);
    char enc[300]; /* "tag:" and a prefix of at most EVS_MAX_SUBJECT bytes */
    snprintf(enc, sizeof enc, "%.*s", (int)mw->encrypt_len, mw->encrypt ? mw->encrypt : "");
    const char *vals[8] = {target, mw->json, mv, mw->m.max_age >= 0 ? age : NULL, mw->m.max_count >= 0 ? cnt : NULL,
                           trunc, mw->m.tombstone ? "t" : "f", mw->encrypt ? enc : NULL};
    int lens[8] = {0, (int)mw->json_len, 0, 0, 0, 0, 0, 0}, fmts[8] = {0, 1, 0, 0, 0, 0, 0, 0};
    /* encrypt: the trigger on event_streams refuses unsealed events in the stream from this commit on */
    if ((rc = run(c,
                  "INSERT INTO event_stream_metadata AS m (aggregate_id, metadata, meta_version, max_age, max_count, "
                  "truncate_before, tombstone, encrypt) VALUES ($1, $2::bytea, $3::bigint, $4::bigint, $5::bigint, "
                  "$6::bigint, $7::boolean, $8::text) ON CONFLICT (aggregate_id) DO UPDATE SET metadata = "
                  "EXCLUDED.metadata, meta_version = EXCLUDED.meta_version, max_age = EXCLUDED.max_age, max_count = "
                  "EXCLUDED.max_count, truncate_before = EXCLUDED.truncate_before, tombstone = EXCLUDED.tombstone, "
                  "encrypt = EXCLUDED.encrypt",
                  8, vals, lens, fmts, "postgresql: metadata: store the object", NULL))) {
        rc = rollback(c, rc);
        goto out;
    }
    if ((rc = run(c, "COMMIT", 0, NULL, NULL, NULL, "postgresql: metadata: commit", NULL))) goto out;
    evs__pg_appended(pg, a, &res);
    if (version_out) *version_out = res.last_stream_position;
out:
    PQclear(r);
    evs__pg_put(pg, c);
out_free:
    evs__engine_append_free(a);
    return rc;
}

int evs__pg_meta_after_conflict(evs_pg *pg, const evs__engine_append *a, evs_append_result *res) {
    char stream[EVS_MAX_STREAM_NAME + 1];
    snprintf(stream, sizeof stream, "%.*s", (int)a->stream_len, a->stream);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", evs_errmsg());
    uint64_t actual = res->actual_version;
    /* most conflicts are plain ones: a stream without metadata keeps its answer without a lock */
    const char *vals[1] = {stream};
    PGresult *q;
    int rc = evs__pg_query(pg, "SELECT tombstone FROM event_stream_metadata WHERE aggregate_id = $1", 1, NULL, vals,
                           NULL, NULL, 0, "postgresql: append: stream metadata", &q);
    if (rc) return rc;
    int plain = PQntuples(q) == 0 || (PQgetvalue(q, 0, 0)[0] != 't' && a->expected != EVS_EXPECT_NO_STREAM);
    PQclear(q);
    if (plain) {
        res->actual_version = actual;
        return evs__err(EVS_ECONFLICT, "%s", msg);
    }
    PGconn *c = NULL;
    if ((rc = evs__pg_get(pg, &c))) return rc;
    uint64_t v, tb;
    int dstate;
    /* the head lock first, as evs_append() takes it: no delete or append can commit in between */
    if ((rc = run(c, "BEGIN", 0, NULL, NULL, NULL, "postgresql: append: begin", NULL))) goto out;
    if ((rc = run(c, "SELECT 1 FROM event_store_head WHERE id = 1 FOR UPDATE", 0, NULL, NULL, NULL,
                  "postgresql: append: lock the head", NULL)) ||
        (rc = stream_state(c, stream, &v, &dstate, &tb))) {
        rc = rollback(c, rc);
        goto out;
    }
    if (dstate == 2) {
        rc = rollback(c, deleted_err(stream));
        goto out;
    }
    if (dstate != 1 || a->expected != EVS_EXPECT_NO_STREAM) { /* the conflict stands as evs_append answered it */
        rollback(c, EVS_OK);
        res->actual_version = actual;
        rc = evs__err(EVS_ECONFLICT, "%s", msg);
        goto out;
    }
    /* "no stream" holds for a soft-deleted stream: the new events continue its positions */
    evs__engine_append again = *a;
    again.expected = (int64_t)v;
    uint32_t status;
    rc = evs__pg_append_in_tx(pg, c, &again, res, &status);
    if (rc || status != 0) {
        rc = rollback(c, rc);
        goto out;
    }
    if ((rc = run(c, "COMMIT", 0, NULL, NULL, NULL, "postgresql: append: commit", NULL))) goto out;
    evs__pg_appended(pg, a, res);
out:
    evs__pg_put(pg, c);
    return rc;
}

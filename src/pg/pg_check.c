/*
 * pg_check.c — evs_store_check on the PostgreSQL engine: the invariants
 * the engine's writes keep, verified in one read-only snapshot.
 *
 * What the embedded engine's check proves with checksums and an index walk
 * is here a handful of statements over the same snapshot: global positions
 * run from 1 to the head row's without a gap or a duplicate; every stream
 * row (event_streams) agrees with its events (version, first and last
 * global position, stream positions 1..version); every event belongs to a
 * stream row; every stored metadata object's version is its "$$" stream's;
 * the row of every stream with a tombstone or "$encrypt" is guarded.
 * Damage can only come from outside evstore (SQL run by hand, a restore of
 * part of the tables); the report names the first place that is wrong.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "pg/pg_internal.h"

/* One invariant: a query that returns the first violation as one text column, or no row. */
typedef struct check_step {
    const char *sql;
} check_step;

static const check_step STEPS[] = {
    {"SELECT format('global position %s: %s', g, CASE WHEN g = p THEN 'stored twice' "
     "ELSE format('expected %s after %s (a gap)', p + 1, p) END) "
     "FROM (SELECT global_position g, coalesce(lag(global_position) OVER (ORDER BY global_position), 0) p "
     "FROM event_store) x WHERE g <> p + 1 ORDER BY g LIMIT 1"},
    {"SELECT format('head row says %s, the last stored position is %s', h.global_position, "
     "coalesce((SELECT max(global_position) FROM event_store), 0)) FROM event_store_head h "
     "WHERE h.id = 1 AND h.global_position <> coalesce((SELECT max(global_position) FROM event_store), 0)"},
    {"SELECT format('stream \"%s\": stream position %s: expected %s (positions must run 1..version)', "
     "aggregate_id, sp, p + 1) FROM (SELECT aggregate_id, stream_position sp, coalesce(lag(stream_position) "
     "OVER (PARTITION BY aggregate_id ORDER BY stream_position), 0) p FROM event_store) x "
     "WHERE sp <> p + 1 ORDER BY aggregate_id, sp LIMIT 1"},
    {"SELECT format('stream \"%s\": its row says version %s, first %s, last %s; its events say %s, %s, %s', "
     "s.aggregate_id, s.version, s.first_global_position, s.last_global_position, coalesce(e.n, 0), e.f, e.l) "
     "FROM event_streams s LEFT JOIN (SELECT aggregate_id, max(stream_position) n, min(global_position) f, "
     "max(global_position) l FROM event_store GROUP BY aggregate_id) e USING (aggregate_id) "
     "WHERE e.n IS DISTINCT FROM s.version OR e.f IS DISTINCT FROM s.first_global_position "
     "OR e.l IS DISTINCT FROM s.last_global_position ORDER BY s.aggregate_id LIMIT 1"},
    {"SELECT format('global position %s: stream \"%s\" has no stream row', e.global_position, e.aggregate_id) "
     "FROM event_store e WHERE NOT EXISTS (SELECT 1 FROM event_streams s WHERE s.aggregate_id = e.aggregate_id) "
     "ORDER BY e.global_position LIMIT 1"},
    {"SELECT format('stream \"%s\": metadata version %s, but its \"$$\" stream is at %s', m.aggregate_id, "
     "m.meta_version, coalesce(s.version, 0)) FROM event_stream_metadata m LEFT JOIN event_streams s "
     "ON s.aggregate_id = '$$' || m.aggregate_id WHERE s.version IS DISTINCT FROM m.meta_version "
     "ORDER BY m.aggregate_id LIMIT 1"},
    /* an unguarded row would let appends past the database's own check (migration 10) */
    {"SELECT format('stream \"%s\": its metadata has %s, but its row is not marked guarded (the database would "
     "not check appends to it)', s.aggregate_id, CASE WHEN m.tombstone THEN 'a tombstone' ELSE '\"$encrypt\"' END) "
     "FROM event_streams s JOIN event_stream_metadata m USING (aggregate_id) "
     "WHERE (m.tombstone OR m.encrypt IS NOT NULL) AND NOT s.guarded ORDER BY s.aggregate_id LIMIT 1"},
};

#define NSTEPS (sizeof STEPS / sizeof STEPS[0])

static PGresult *exec(PGconn *c, const char *sql) { return PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0); }

int evs__pg_check(void *e, evs_check_report *rep) {
    evs_pg *pg = e;
    PGconn *c = NULL;
    PGresult *r = NULL;
    memset(rep, 0, sizeof *rep);
    int rc = evs__pg_get(pg, &c), in_tx = 0;
    if (rc) return rc;
    r = exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = evs__pg_err(c, r, "postgresql: check: begin");
        goto out;
    }
    in_tx = 1;
    PQclear(r);
    r = exec(c, "SELECT count(*), coalesce(max(global_position), 0) FROM event_store");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = evs__pg_err(c, r, "postgresql: check: count the events");
        goto out;
    }
    rep->events = rep->records = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    rep->index_head = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    for (size_t i = 0; i < NSTEPS; i++) {
        PQclear(r);
        r = exec(c, STEPS[i].sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            rc = evs__pg_err(c, r, "postgresql: check");
            goto out;
        }
        if (PQntuples(r) == 1) {
            if (!rep->errors) snprintf(rep->first_error, sizeof rep->first_error, "%s", PQgetvalue(r, 0, 0));
            rep->errors++;
        }
    }
    if (rep->errors)
        rc = evs__err(EVS_ECORRUPT, "check found %llu problem(s); first: %s", (unsigned long long)rep->errors,
                      rep->first_error); /* the embedded engine's words */
out:
    PQclear(r);
    if (in_tx && PQstatus(c) == CONNECTION_OK) {
        PGresult *end = exec(c, "ROLLBACK");
        PQclear(end);
    }
    evs__pg_put(pg, c);
    return rc;
}

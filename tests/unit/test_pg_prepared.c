/*
 * test_pg_prepared.c — the PostgreSQL engine's named statements taken away
 * from under it (src/pg/pg_conn.c, exec_on).  Two ways it happens in the field:
 *
 *   discard   a connection pooler (pgbouncer's server_reset_query) or an
 *             operator runs DISCARD ALL on the engine's connections: the
 *             next execute of a statement the engine believes prepared
 *             fails with SQLSTATE 26000;
 *   retype    a column changes type under a cached plan (a migration):
 *             0A000, "cached plan must not change result type".
 *
 * Either way each statement is prepared again, once, and the call succeeds:
 * reads return exactly what was stored, appends store and answer as
 * before, and the pooled connections hold prepared statements again.
 * Runs on the cluster of the "pg_cluster" fixture, in a fresh database;
 * exit 77 without PostgreSQL.
 */
#include <pthread.h>

#include "conformance.h"
#include "pg/pg_internal.h"
#include "store/store_access.h"

#define EVENTS 20

static long conn_long(PGconn *c, const char *q) {
    PGresult *r = PQexec(c, q);
    long v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) v = atol(PQgetvalue(r, 0, 0));
    else fprintf(stderr, "%s: %s", q, PQerrorMessage(c));
    PQclear(r);
    return v;
}

/*
 * Run q on every idle connection of the store's pool; the sum of what
 * `SELECT count(*) FROM pg_prepared_statements` said on them before (or
 * after, with after = 1).
 */
static long on_pooled(evs_store *s, const char *q, int after) {
    evs_pg *pg = evs__store_pg_engine(s);
    PGconn *held[EVS_PG_POOL_MAX];
    pthread_mutex_lock(&pg->mu);
    size_t k = pg->nidle;
    pthread_mutex_unlock(&pg->mu);
    long prepared = 0;
    for (size_t i = 0; i < k; i++) CHECK_RC(evs__pg_get(pg, &held[i]), EVS_OK);
    for (size_t i = 0; i < k; i++) {
        if (!after) prepared += conn_long(held[i], "SELECT count(*) FROM pg_prepared_statements");
        if (q) {
            PGresult *r = PQexec(held[i], q);
            CHECK_INT(PQresultStatus(r), PGRES_COMMAND_OK);
            PQclear(r);
        }
        if (after) prepared += conn_long(held[i], "SELECT count(*) FROM pg_prepared_statements");
    }
    for (size_t i = 0; i < k; i++) evs__pg_put(pg, held[i]);
    return prepared;
}

/* The stream holds exactly events 0..n-1 ({"i":i}) at versions 1..n, and $all the same. */
static void check_stream(evs_store *s, int n) {
    evs_reader *r;
    const evs_event *ev;
    char want[32];
    int i = 0, rc;
    CHECK_RC(evs_read_stream(s, "acct-1", 1, EVS_FORWARD, 0, &r), EVS_OK);
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        snprintf(want, sizeof want, "{\"i\":%d}", i);
        CHECK_INT(ev->stream_position, (uint64_t)i + 1);
        CHECK(ev->data_len == strlen(want) && memcmp(ev->data, want, ev->data_len) == 0);
        i++;
    }
    CHECK_RC(rc, EVS_DONE);
    if (rc != EVS_DONE) fprintf(stderr, "read_stream: %s\n", evs_errmsg());
    evs_reader_close(r);
    CHECK_INT(i, n);
    evs_stream_info si;
    CHECK_RC(evs_stream_get_info(s, "acct-1", &si), EVS_OK);
    CHECK_INT(si.version, (uint64_t)n);
    i = 0;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) i++;
    CHECK_RC(rc, EVS_DONE);
    evs_reader_close(r);
    CHECK_INT(i, n);
}

static void append_upto(evs_store *s, int from, int to) {
    char data[32];
    for (int i = from; i < to; i++) {
        snprintf(data, sizeof data, "{\"i\":%d}", i);
        evs_event_in ev = tu_event("Moved", data);
        evs_append_result res;
        int rc = evs_append(s, "acct-1", i, &ev, 1, &res, NULL);
        CHECK_RC(rc, EVS_OK);
        if (rc) {
            fprintf(stderr, "append %d: %s\n", i, evs_errmsg());
            return;
        }
        CHECK_INT(res.last_stream_position, (uint64_t)i + 1);
    }
}

int main(void) {
    char *argv[] = {"test_pg_prepared", "postgresql", NULL};
    cf_init(2, argv);
    char *where = cf_fresh("prepared");
    evs_store *s = cf_open(where);

    append_upto(s, 0, EVENTS);
    check_stream(s, EVENTS);

    /* discard: every pooled connection forgets its statements behind the engine's back */
    long before = on_pooled(s, "DISCARD ALL", 0);
    CHECK(before > 0); /* the engine had prepared statements there, or this tests nothing */
    CHECK_INT(on_pooled(s, NULL, 1), 0);
    check_stream(s, EVENTS);
    append_upto(s, EVENTS, EVENTS + 5);
    check_stream(s, EVENTS + 5);
    CHECK(on_pooled(s, NULL, 1) > 0); /* prepared again */

    /* retype: a column of event_store changes type under the cached plans */
    PGconn *side = PQconnectdb(where);
    CHECK_INT(PQstatus(side), CONNECTION_OK);
    /* (the JSON view over event_store names the column: it is made again around the change) */
    PGresult *r = PQexec(side, "SELECT pg_get_viewdef('event_store_json'::regclass)");
    CHECK_INT(PQresultStatus(r), PGRES_TUPLES_OK);
    char *alter = NULL;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        const char *def = PQgetvalue(r, 0, 0);
        size_t n = strlen(def) + 256;
        alter = malloc(n);
        snprintf(alter, n,
                 "BEGIN; DROP VIEW event_store_json; "
                 "ALTER TABLE event_store ALTER COLUMN event_type TYPE varchar(300); "
                 "CREATE VIEW event_store_json AS %s; COMMIT",
                 def);
    }
    PQclear(r);
    r = PQexec(side, alter ? alter : "SELECT");
    CHECK_INT(PQresultStatus(r), PGRES_COMMAND_OK);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) fprintf(stderr, "alter: %s", PQerrorMessage(side));
    PQclear(r);
    free(alter);
    PQfinish(side);
    check_stream(s, EVENTS + 5);
    append_upto(s, EVENTS + 5, EVENTS + 10);
    check_stream(s, EVENTS + 10);

    CHECK_RC(evs_store_close(s), EVS_OK);
    cf_drop(where);
    return TEST_REPORT();
}

/*
 * pg_cond.c — the PostgreSQL engine's conditional append (evs_append_if,
 * dynamic consistency boundaries): append only when no event matching the
 * condition's query lies after the position the caller's decision read.
 *
 * One transaction on one connection, outside the group commit: evs_append()
 * locks the head row first, so from then on no other append can commit;
 * the condition is checked over the positions between cond->after and the
 * ones this append just took, and a match rolls everything back.  The
 * order of checks is the embedded engine's: the expected version first
 * (evs_append answers the conflict), an idempotent retry returns the
 * original result without asking the condition again, then the condition.
 *
 * The query is one statement: per query item the lowest matching position
 * (event types with the (event_type, global_position) index, tags with the
 * GIN index on tags, "all of these" as @>), the lowest of those wins and
 * names its item, as the embedded engine's message does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "pg/pg_internal.h"

/* Parameters: $1 after, $2 the first position this append took, then two per item at most. */
#define COND_MAX_PARAMS ((int)(2 + 2 * EVS_MAX_QUERY_ITEMS))

typedef struct cond_query {
    char *sql;
    const char *vals[COND_MAX_PARAMS];
    int lens[COND_MAX_PARAMS], fmts[COND_MAX_PARAMS];
    Oid types[COND_MAX_PARAMS];
    evs_pgbuf arrays[COND_MAX_PARAMS];
    char after[24], below[24];
    int n;
} cond_query;

static void cond_free(cond_query *q) {
    free(q->sql);
    for (int i = 0; i < COND_MAX_PARAMS; i++) free(q->arrays[i].p);
}

/* A text[] parameter holding list[0..n). */
static int add_array(cond_query *q, const char *const *list, size_t n) {
    int i = q->n++;
    evs__pg_array_begin(&q->arrays[i], EVS_PG_TEXT, n);
    for (size_t k = 0; k < n; k++) evs__pg_array_elem(&q->arrays[i], list[k], strlen(list[k]));
    if (q->arrays[i].oom) return evs__err(EVS_ENOMEM, "postgresql: out of memory for a condition");
    q->vals[i] = q->arrays[i].p;
    q->lens[i] = (int)q->arrays[i].len;
    q->fmts[i] = 1;
    q->types[i] = EVS_PG_TEXT_ARRAY;
    return EVS_OK;
}

/*
 * The statement for cond over positions in (after, below): one row
 * (position, item) of the first match, or none.
 */
static int cond_build(cond_query *q, const evs_append_condition *cond, uint64_t below) {
    snprintf(q->after, sizeof q->after, "%llu", (unsigned long long)cond->after);
    snprintf(q->below, sizeof q->below, "%llu", (unsigned long long)below);
    q->vals[0] = q->after, q->types[0] = EVS_PG_INT8;
    q->vals[1] = q->below, q->types[1] = EVS_PG_INT8;
    q->n = 2;
    size_t cap = 160 + cond->n_items * 200;
    if (!(q->sql = malloc(cap))) return evs__err(EVS_ENOMEM, "postgresql: out of memory for a condition");
    size_t w = (size_t)snprintf(q->sql, cap, "SELECT g, i FROM (");
    for (size_t k = 0; k < cond->n_items; k++) {
        const evs_query_item *it = &cond->items[k];
        w += (size_t)snprintf(q->sql + w, cap - w,
                              "%s(SELECT min(global_position) AS g, %zu AS i FROM event_store "
                              "WHERE global_position > $1 AND global_position < $2",
                              k ? " UNION ALL " : "", k + 1);
        int rc;
        if (it->n_event_types) {
            if ((rc = add_array(q, it->event_types, it->n_event_types))) return rc;
            w += (size_t)snprintf(q->sql + w, cap - w, " AND event_type = ANY ($%d)", q->n);
        }
        if (it->n_tags) {
            if ((rc = add_array(q, it->tags, it->n_tags))) return rc;
            w += (size_t)snprintf(q->sql + w, cap - w, " AND tags @> $%d", q->n);
        }
        w += (size_t)snprintf(q->sql + w, cap - w, ")");
    }
    snprintf(q->sql + w, cap - w, ") m WHERE g IS NOT NULL ORDER BY g, i LIMIT 1");
    return EVS_OK;
}

static void exec_quiet(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    PQclear(r);
}

int evs__pg_append_if(void *e, const evs__engine_append *a, const evs_append_condition *cond, evs_append_result *res) {
    evs_pg *pg = e;
    PGconn *c = NULL;
    PGresult *r = NULL;
    cond_query q;
    memset(&q, 0, sizeof q);
    int rc = evs__pg_get(pg, &c), in_tx = 0;
    if (rc) return rc;
    r = PQexec(c, "BEGIN");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = evs__pg_err(c, r, "postgresql: conditional append: begin");
        goto out;
    }
    PQclear(r);
    r = NULL;
    in_tx = 1;
    uint32_t status;
    if ((rc = evs__pg_append_in_tx(pg, c, a, res, &status)) || status != 0) goto out; /* conflict, retry, error */
    if ((rc = cond_build(&q, cond, res->first_global_position))) goto out;
    r = PQexecParams(c, q.sql, q.n, q.types, q.vals, q.lens, q.fmts, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = evs__pg_err(c, r, "postgresql: conditional append: the condition's query");
        goto out;
    }
    if (PQntuples(r) == 1) {
        uint64_t g = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        unsigned long item = strtoul(PQgetvalue(r, 0, 1), NULL, 10);
        memset(res, 0, sizeof *res);
        res->condition_position = g;
        rc = evs__err(EVS_ECONDITION, "append condition failed: the event at global position %llu matches query "
                                      "item %lu and lies after position %llu",
                      (unsigned long long)g, item, (unsigned long long)cond->after);
        goto out;
    }
    PQclear(r);
    r = PQexec(c, "COMMIT");
    in_tx = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = evs__pg_err(c, r, "postgresql: conditional append: commit");
        if (PQstatus(c) != CONNECTION_OK) {
            char msg[512]; /* a copy: the message is the buffer evs__err writes */
            snprintf(msg, sizeof msg, "%s", evs_errmsg());
            rc = evs__err(rc, "%s (the connection broke: the append may or may not have been stored; retry it "
                              "with the same event ids, a stored append then answers idempotently)", msg);
        }
        goto out;
    }
    evs__pg_appended(pg, a, res);
out:
    PQclear(r);
    if (in_tx && PQstatus(c) == CONNECTION_OK) {
        /* keep the first error's message: the rollback's result is not reported */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", rc ? evs_errmsg() : "");
        exec_quiet(c, "ROLLBACK");
        if (rc) evs__err(rc, "%s", msg);
    }
    evs__pg_put(pg, c);
    cond_free(&q);
    return rc;
}

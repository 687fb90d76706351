/*
 * bench_pg.c — the PostgreSQL engine's appends against the seed's own style
 * of append function, on the same cluster in the same run.
 *
 *   bench_pg [URL]     URL of a cluster (its database is only used to
 *                      create two scratch databases); default: the cluster
 *                      of tests/pg_cluster.py named by EVS_PG_STATE.
 *
 * The baseline is what the seed's append_event does: read the stream's
 * max(stream_position), insert at the next one under a unique key on
 * (aggregate_id, stream_position), global_position from a bigserial, data
 * as JSONB.  Two appenders that read the same max collide on the unique
 * key: SQLSTATE 23505, which the seed's callers see as an error; here they
 * retry, and the 23505s are counted.  evstore appends through
 * evs_append (the SQL function evs_append under the head-row lock).
 *
 * Workloads (docs/benchmarks.md): W1 one client, one event per append; W2
 * eight clients on the same eight streams, one event per append, expected
 * version "any".  Rounds alternate seed W1, evstore W1, seed W2, evstore W2;
 * each prints appends/s; the summary gives medians over the rounds and the
 * ratios evstore/seed.  EVS_BENCH_QUICK=1: 3 rounds of 1 s, else 5 of 3 s.
 * Exit 77 without a cluster.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "evstore.h"

static char base[512];
static double secs;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sql_on(const char *url, const char *q) {
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, q);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "bench_pg: %s: %s", q, PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
    PQfinish(c);
}

static void db_url(const char *db, char *out, size_t cap) {
    const char *slash = strrchr(base, '/');
    snprintf(out, cap, "%.*s/%s", (int)(slash - base), base, db);
}

static const char SEED_SCHEMA[] =
    "CREATE TABLE event_store (id uuid PRIMARY KEY, aggregate_id text NOT NULL, aggregate_type text NOT NULL,"
    " event_type text NOT NULL, event_version integer NOT NULL DEFAULT 1, event_data jsonb NOT NULL,"
    " metadata jsonb, causation_id uuid, correlation_id uuid, global_position bigserial,"
    " stream_position bigint NOT NULL, occurred_at timestamptz NOT NULL DEFAULT now(),"
    " recorded_at timestamptz NOT NULL DEFAULT now(), UNIQUE (aggregate_id, stream_position));"
    "CREATE FUNCTION append_event(p_aggregate_id text, p_aggregate_type text, p_event_type text,"
    " p_event_data jsonb, p_metadata jsonb, p_expected_version bigint) RETURNS bigint LANGUAGE plpgsql AS $$"
    " DECLARE v_current bigint;"
    " BEGIN"
    "  SELECT coalesce(max(stream_position), 0) INTO v_current FROM event_store WHERE aggregate_id = p_aggregate_id;"
    "  IF p_expected_version IS NOT NULL AND v_current <> p_expected_version THEN"
    "    RAISE EXCEPTION 'Concurrency conflict: expected %, actual %', p_expected_version, v_current;"
    "  END IF;"
    "  INSERT INTO event_store (id, aggregate_id, aggregate_type, event_type, event_data, metadata, stream_position)"
    "   VALUES (gen_random_uuid(), p_aggregate_id, p_aggregate_type, p_event_type, p_event_data, p_metadata,"
    "           v_current + 1);"
    "  RETURN v_current + 1;"
    " END $$;";

typedef struct run {
    int seed;                 /* 1: the seed's function, 0: evstore */
    const char *url;          /* seed database */
    evs_store *store;
    int clients;
    _Atomic int stop;
    _Atomic long appends, e23505, errors;
} run;

typedef struct client {
    run *r;
    int id;
} client;

static void *client_main(void *arg) {
    client *cl = arg;
    run *r = cl->r;
    char stream[32], data[64];
    long i = 0;
    PGconn *c = NULL;
    if (r->seed) c = PQconnectdb(r->url);
    while (!atomic_load(&r->stop)) {
        snprintf(stream, sizeof stream, "acct-%ld", (cl->id + i) % (r->clients == 1 ? 10 : 8));
        snprintf(data, sizeof data, "{\"client\":%d,\"i\":%ld}", cl->id, i);
        i++;
        if (r->seed) {
            const char *vals[3] = {stream, "Moved", data};
            for (;;) {
                PGresult *res = PQexecParams(c, "SELECT append_event($1, 'acct', $2, $3::jsonb, '{}'::jsonb, NULL)",
                                             3, NULL, vals, NULL, NULL, 0);
                int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
                const char *state = ok ? NULL : PQresultErrorField(res, PG_DIAG_SQLSTATE);
                PQclear(res);
                if (ok) break;
                if (state && !strcmp(state, "23505")) {
                    atomic_fetch_add(&r->e23505, 1); /* two appenders read the same max: retry */
                    continue;
                }
                atomic_fetch_add(&r->errors, 1);
                break;
            }
        } else {
            evs_event_in ev;
            memset(&ev, 0, sizeof ev);
            ev.event_type = "Moved";
            ev.data = data;
            ev.data_len = strlen(data);
            evs_append_result res;
            int rc = evs_append(r->store, stream, EVS_EXPECT_ANY, &ev, 1, &res, NULL);
            if (rc) {
                if (strstr(evs_errmsg(), "23505")) atomic_fetch_add(&r->e23505, 1);
                atomic_fetch_add(&r->errors, 1);
                continue;
            }
        }
        atomic_fetch_add(&r->appends, 1);
    }
    if (c) PQfinish(c);
    return NULL;
}

static double measure(run *r, long *e23505, long *errors) {
    pthread_t t[8];
    client cl[8];
    atomic_store(&r->stop, 0);
    atomic_store(&r->appends, 0);
    double t0 = now_s();
    for (int i = 0; i < r->clients; i++) {
        cl[i].r = r, cl[i].id = i;
        pthread_create(&t[i], NULL, client_main, &cl[i]);
    }
    usleep((useconds_t)(secs * 1e6));
    atomic_store(&r->stop, 1);
    for (int i = 0; i < r->clients; i++) pthread_join(t[i], NULL);
    double dt = now_s() - t0;
    *e23505 += atomic_load(&r->e23505);
    *errors += atomic_load(&r->errors);
    atomic_store(&r->e23505, 0);
    atomic_store(&r->errors, 0);
    return (double)atomic_load(&r->appends) / dt;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        snprintf(base, sizeof base, "%s", argv[1]);
    } else {
        const char *st = getenv("EVS_PG_STATE");
        FILE *f = st ? fopen(st, "r") : NULL;
        char buf[2048] = "";
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) fclose(f);
        buf[n] = '\0';
        const char *u = strstr(buf, "\"url\": \"");
        if (!u) {
            fprintf(stderr, "bench_pg: skipped: no cluster (give a URL, or EVS_PG_STATE from tests/pg_cluster.py)\n");
            return 77;
        }
        u += 8;
        snprintf(base, sizeof base, "%.*s", (int)(strchr(u, '"') - u), u);
    }
    int quick = getenv("EVS_BENCH_QUICK") && atoi(getenv("EVS_BENCH_QUICK"));
    int rounds = quick ? 3 : 5;
    secs = quick ? 1.0 : 3.0;
    char seed_db[64], evs_db[64], seed_url[600], evs_url[600], q[128];
    snprintf(seed_db, sizeof seed_db, "bench_seed_%d", (int)getpid());
    snprintf(evs_db, sizeof evs_db, "bench_evs_%d", (int)getpid());
    snprintf(q, sizeof q, "CREATE DATABASE %s", seed_db);
    sql_on(base, q);
    snprintf(q, sizeof q, "CREATE DATABASE %s", evs_db);
    sql_on(base, q);
    db_url(seed_db, seed_url, sizeof seed_url);
    db_url(evs_db, evs_url, sizeof evs_url);
    sql_on(seed_url, SEED_SCHEMA);
    evs_store *s;
    if (evs_store_create(&s) || evs_store_open(s, evs_url, EVS_OPEN_CREATE)) {
        fprintf(stderr, "bench_pg: %s\n", evs_errmsg());
        return 1;
    }
    printf("bench_pg: %d rounds of %.0f s; PostgreSQL on %s (synchronous_commit on, fsync on)\n", rounds, secs, base);
    double w[4][8];
    long e23505[4] = {0}, errors[4] = {0};
    const char *names[4] = {"seed W1", "evstore W1", "seed W2 (8)", "evstore W2 (8)"};
    for (int k = 0; k < rounds; k++) {
        for (int j = 0; j < 4; j++) {
            run r;
            memset(&r, 0, sizeof r);
            r.seed = j % 2 == 0;
            r.url = seed_url;
            r.store = s;
            r.clients = j < 2 ? 1 : 8;
            evs_store_stats s0, s1;
            evs_store_get_stats(s, &s0);
            w[j][k] = measure(&r, &e23505[j], &errors[j]);
            evs_store_get_stats(s, &s1);
            printf("round %d  %-15s %9.0f appends/s", k + 1, names[j], w[j][k]);
            if (!r.seed && s1.batches > s0.batches)
                printf("   %.1f appends per commit", (double)(s1.appends - s0.appends) / (double)(s1.batches - s0.batches));
            printf("\n");
            fflush(stdout);
        }
    }
    double m[4];
    printf("\nmedians over %d rounds:\n", rounds);
    for (int j = 0; j < 4; j++) {
        m[j] = median(w[j], rounds);
        printf("  %-15s %9.0f appends/s   23505 errors: %ld   other errors: %ld\n", names[j], m[j], e23505[j],
               errors[j]);
    }
    printf("W1 evstore/seed: %.2fx\nW2 evstore/seed: %.2fx (target >= 2x)\n", m[1] / m[0], m[3] / m[2]);
    evs_store_close(s);
    snprintf(q, sizeof q, "DROP DATABASE %s WITH (FORCE)", seed_db);
    sql_on(base, q);
    snprintf(q, sizeof q, "DROP DATABASE %s WITH (FORCE)", evs_db);
    sql_on(base, q);
    return 0;
}

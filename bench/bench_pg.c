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
 * Workloads (docs/benchmarks.md):
 *   W1  one client, one event per append (10 streams);
 *   W2  eight clients on the same eight streams, one event per append,
 *       expected version "any";
 *   W3  one client, 100 events per append.  The seed's function stores one
 *       event per call, so its atomic 100-event append is a transaction of
 *       100 append_event calls, pipelined (one round trip, as kind to it as
 *       a client can be);
 *   W4  read one stream forward, all of it: as docs/benchmarks.md defines
 *       W4, HUGE_EVENTS events written as that many one-event appends (the
 *       seed's append_event once per event, evs_append of one event from
 *       8 threads), and also a stream of BIG_EVENTS.  The
 *       seed's get_aggregate_events pages with LIMIT/OFFSET: page k makes
 *       PostgreSQL walk past k pages first, so a whole read is quadratic
 *       in the stream's length; evstore reads keyset pages;
 *   W5  read $all from position 1, the first ALL_EVENTS events (100-event
 *       blocks of 100 streams), the seed with get_event_stream, again
 *       LIMIT/OFFSET pages.
 * Both read with the page size evstore uses (256) and touch every column
 * of every row.  The read data is written once, before the rounds, the
 * same events in both databases (~150-byte payloads).
 * Rounds run seed then evstore for each workload in turn; each prints its
 * rate and the ratio of the round; the summary gives medians over the
 * rounds and the ratios evstore/seed of the medians.  EVS_BENCH_QUICK=1:
 * 3 rounds of 1 s, else 5 of 3 s (a read repeats until the time is up,
 * at least once).  EVS_BENCH_ONLY="W1,W2" runs only the workloads named
 * (and loads the read data only for W4/W5); EVS_BENCH_ROUNDS=N (at most
 * 16) sets the number of rounds.  Exit 77 without a cluster.
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

#define BIG_EVENTS 10000   /* W4: the stream's length */
#define HUGE_EVENTS 100000 /* W4 again, ten times longer: the seed's read grows quadratically */
#define ALL_EVENTS 20000   /* W5: how much of $all is read */
#define READ_PAGE 256      /* src/pg/pg_read.c's PAGE */
#define W3_EVENTS 100
#define NW 6

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

/* The seed's table, its append function and its two read functions (LIMIT/OFFSET pages). */
static const char SEED_SCHEMA[] =
    "CREATE TABLE event_store (id uuid PRIMARY KEY, aggregate_id text NOT NULL, aggregate_type text NOT NULL,"
    " event_type text NOT NULL, event_version integer NOT NULL DEFAULT 1, event_data jsonb NOT NULL,"
    " metadata jsonb, causation_id uuid, correlation_id uuid, global_position bigserial,"
    " stream_position bigint NOT NULL, occurred_at timestamptz NOT NULL DEFAULT now(),"
    " recorded_at timestamptz NOT NULL DEFAULT now(), UNIQUE (aggregate_id, stream_position));"
    "CREATE INDEX event_store_global_idx ON event_store (global_position);"
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
    " END $$;"
    "CREATE FUNCTION get_aggregate_events(p_aggregate_id text, p_limit integer, p_offset integer)"
    " RETURNS SETOF event_store LANGUAGE sql STABLE AS $$"
    "  SELECT * FROM event_store WHERE aggregate_id = p_aggregate_id ORDER BY stream_position"
    "  LIMIT p_limit OFFSET p_offset $$;"
    "CREATE FUNCTION get_event_stream(p_limit integer, p_offset integer)"
    " RETURNS SETOF event_store LANGUAGE sql STABLE AS $$"
    "  SELECT * FROM event_store ORDER BY global_position LIMIT p_limit OFFSET p_offset $$;";

typedef struct run {
    int seed;                 /* 1: the seed's function, 0: evstore */
    const char *url;          /* seed database */
    evs_store *store;
    int clients;
    int per_append;           /* events per append */
    _Atomic int stop;
    _Atomic long appends, events, e23505, errors;
} run;

typedef struct client {
    run *r;
    int id;
} client;

static void payload(char *out, size_t cap, int who, long i) {
    snprintf(out, cap, "{\"client\":%d,\"i\":%ld,\"note\":\"%s\"}", who, i,
             "a payload of about one hundred and fifty bytes, like a small domain event with a few fields in it");
}

/* The seed's append of n events: BEGIN, n append_event calls, COMMIT, pipelined.  1: stored, 0: 23505, -1: other. */
static int seed_append(PGconn *c, const char *stream, char data[][192], int n) {
    if (n == 1) { /* one statement, its own transaction */
        const char *vals[3] = {stream, "Moved", data[0]};
        PGresult *res = PQexecParams(c, "SELECT append_event($1, 'acct', $2, $3::jsonb, '{}'::jsonb, NULL)", 3, NULL,
                                     vals, NULL, NULL, 0);
        const char *state = PQresultStatus(res) == PGRES_TUPLES_OK ? NULL : PQresultErrorField(res, PG_DIAG_SQLSTATE);
        int out = PQresultStatus(res) == PGRES_TUPLES_OK ? 1 : state && !strcmp(state, "23505") ? 0 : -1;
        PQclear(res);
        return out;
    }
    int ok = PQenterPipelineMode(c) && PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
    for (int k = 0; k < n && ok; k++) {
        const char *vals[3] = {stream, "Moved", data[k]};
        ok = PQsendQueryParams(c, "SELECT append_event($1, 'acct', $2, $3::jsonb, '{}'::jsonb, NULL)", 3, NULL, vals,
                               NULL, NULL, 0);
    }
    ok = ok && PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) && PQpipelineSync(c);
    if (!ok) {
        fprintf(stderr, "bench_pg: seed append: %s", PQerrorMessage(c));
        exit(1);
    }
    int out = 1;
    for (int k = 0; k < n + 2; k++) {
        PGresult *res = PQgetResult(c);
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && out == 1) {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            out = state && !strcmp(state, "23505") ? 0 : -1;
        }
        PQclear(res);
        PQclear(PQgetResult(c)); /* the NULL after each query's result */
    }
    for (;;) { /* up to the sync */
        PGresult *res = PQgetResult(c);
        if (!res) continue;
        int done = PQresultStatus(res) == PGRES_PIPELINE_SYNC;
        PQclear(res);
        if (done) break;
    }
    PQexitPipelineMode(c);
    if (out != 1) PQclear(PQexec(c, "ROLLBACK")); /* the Sync does not end an explicit transaction block */
    return out;
}

static void *client_main(void *arg) {
    client *cl = arg;
    run *r = cl->r;
    char stream[32], data[W3_EVENTS][192];
    long i = 0;
    PGconn *c = NULL;
    if (r->seed) c = PQconnectdb(r->url);
    evs_event_in ev[W3_EVENTS];
    while (!atomic_load(&r->stop)) {
        int n = r->per_append;
        snprintf(stream, sizeof stream, "acct-%ld", (cl->id + i) % (r->clients == 1 ? 10 : 8));
        for (int k = 0; k < n; k++) payload(data[k], sizeof data[k], cl->id, i * n + k);
        i++;
        if (r->seed) {
            int got;
            while ((got = seed_append(c, stream, data, n)) == 0)
                atomic_fetch_add(&r->e23505, 1); /* two appenders read the same max: the seed's caller retries */
            if (got < 0) {
                atomic_fetch_add(&r->errors, 1);
                continue;
            }
        } else {
            memset(ev, 0, sizeof ev);
            for (int k = 0; k < n; k++) {
                ev[k].event_type = "Moved";
                ev[k].data = data[k];
                ev[k].data_len = strlen(data[k]);
            }
            evs_append_result res;
            int rc = evs_append(r->store, stream, EVS_EXPECT_ANY, ev, (size_t)n, &res, NULL);
            if (rc) {
                if (strstr(evs_errmsg(), "23505")) atomic_fetch_add(&r->e23505, 1);
                atomic_fetch_add(&r->errors, 1);
                continue;
            }
        }
        atomic_fetch_add(&r->appends, 1);
        atomic_fetch_add(&r->events, n);
    }
    if (c) PQfinish(c);
    return NULL;
}

/* Appends (W1-W3): the rate in appends/s; *ev_rate gets events/s. */
static double measure(run *r, long *e23505, long *errors, double *ev_rate) {
    pthread_t t[8];
    client cl[8];
    atomic_store(&r->stop, 0);
    atomic_store(&r->appends, 0);
    atomic_store(&r->events, 0);
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
    *ev_rate = (double)atomic_load(&r->events) / dt;
    return (double)atomic_load(&r->appends) / dt;
}

/* One whole read the seed's way: LIMIT/OFFSET pages until a short one.  Returns the events read. */
static long seed_read(PGconn *c, const char *stream, long want) {
    long got = 0;
    char lim[16], off[24];
    snprintf(lim, sizeof lim, "%d", READ_PAGE);
    for (;;) {
        snprintf(off, sizeof off, "%ld", got);
        const char *vals[3] = {stream, lim, off};
        PGresult *r = !stream ? PQexecParams(c, "SELECT * FROM get_event_stream($1, $2)", 2, NULL, vals + 1, NULL, NULL, 0)
                          : PQexecParams(c, "SELECT * FROM get_aggregate_events($1, $2, $3)", 3, NULL, vals, NULL, NULL,
                                         0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "bench_pg: seed read: %s", PQerrorMessage(c));
            exit(1);
        }
        int rows = PQntuples(r), cols = PQnfields(r);
        size_t touched = 0;
        for (int i = 0; i < rows && got < want; i++, got++)
            for (int k = 0; k < cols; k++) touched += (size_t)PQgetlength(r, i, k) + (PQgetvalue(r, i, k)[0] != 0);
        PQclear(r);
        if (!touched || rows < READ_PAGE || got >= want) break;
    }
    return got;
}

/* One whole read through evs_read_stream / evs_read_all, touching what the seed's read touches. */
static long evs_read_once(evs_store *s, const char *stream, long want) {
    evs_reader *rd;
    const evs_event *ev;
    int rc = !stream ? evs_read_all(s, 1, EVS_FORWARD, NULL, (size_t)want, &rd)
                     : evs_read_stream(s, stream, 1, EVS_FORWARD, 0, &rd);
    if (rc) {
        fprintf(stderr, "bench_pg: read: %s\n", evs_errmsg());
        exit(1);
    }
    long got = 0;
    size_t touched = 0;
    while ((rc = evs_reader_next(rd, &ev)) == EVS_OK) {
        touched += ev->data_len + ev->metadata_len + ev->stream_len + ev->event_type_len + (ev->event_id.b[0] != 0);
        got++;
    }
    evs_reader_close(rd);
    if (rc != EVS_DONE || !touched) {
        fprintf(stderr, "bench_pg: read: %s\n", evs_errmsg());
        exit(1);
    }
    return got;
}

/* Reads (W4, W5): whole reads of stream (NULL: $all) until the time is up (at least one); events/s. */
static double measure_read(int seed, const char *url, evs_store *s, const char *stream, long want) {
    long total = 0;
    PGconn *c = seed ? PQconnectdb(url) : NULL;
    double t0 = now_s(), dt;
    do {
        long got = seed ? seed_read(c, stream, want) : evs_read_once(s, stream, want);
        if (got != want) {
            fprintf(stderr, "bench_pg: a %s read returned %ld events, not %ld\n", seed ? "seed" : "evstore", got, want);
            exit(1);
        }
        total += got;
        dt = now_s() - t0;
    } while (dt < secs);
    if (c) PQfinish(c);
    return (double)total / dt;
}

/* big-2, W4 as defined: HUGE_EVENTS one-event appends, from LOADERS threads taking the next number */
#define LOADERS 8
static _Atomic long load_next;

static void *load_main(void *arg) {
    evs_store *s = arg;
    char data[192];
    long i;
    while ((i = atomic_fetch_add(&load_next, 1)) <= HUGE_EVENTS) {
        snprintf(data, sizeof data, "{\"client\":0,\"i\":%ld,\"note\":\"%0100d\"}", ALL_EVENTS + BIG_EVENTS + i, 0);
        evs_event_in ev;
        memset(&ev, 0, sizeof ev);
        ev.event_type = "Moved";
        ev.data = data;
        ev.data_len = strlen(data);
        evs_append_result res;
        if (evs_append(s, "big-2", EVS_EXPECT_ANY, &ev, 1, &res, NULL)) {
            fprintf(stderr, "bench_pg: loading: %s\n", evs_errmsg());
            exit(1);
        }
    }
    return NULL;
}

/* The events W4 and W5 read, the same in both databases: $all starts with ALL_EVENTS events in 100-event
   appends over 100 streams, then the stream big-1 of BIG_EVENTS in 100-event appends, then big-2 of
   HUGE_EVENTS one-event appends.  Loading commits without waiting for the WAL flush (synchronous_commit
   off for the loading sessions only): the rows are the same, the rounds run with it on. */
static void load_read_data(const char *seed_url, const char *evs_url) {
    char q[1024];
    snprintf(q, sizeof q,
             "INSERT INTO event_store (id, aggregate_id, aggregate_type, event_type, event_data, metadata,"
             " stream_position) SELECT gen_random_uuid(), 'mix-' || ((g - 1) / 100 %% 100), 'acct', 'Moved',"
             " jsonb_build_object('client', 0, 'i', g, 'note', repeat('0', 100)), '{}'::jsonb,"
             " (g - 1) / 10000 * 100 + (g - 1) %% 100 + 1 FROM generate_series(1, %d) g ORDER BY g",
             ALL_EVENTS);
    sql_on(seed_url, q);
    snprintf(q, sizeof q,
             "INSERT INTO event_store (id, aggregate_id, aggregate_type, event_type, event_data, metadata,"
             " stream_position) SELECT gen_random_uuid(), 'big-1', 'acct', 'Moved',"
             " jsonb_build_object('client', 0, 'i', g, 'note', repeat('0', 100)), '{}'::jsonb, g"
             " FROM generate_series(1, %d) g ORDER BY g",
             BIG_EVENTS);
    sql_on(seed_url, q);
    /* the seed's own append function, once per event, each call its own transaction */
    snprintf(q, sizeof q,
             "CREATE PROCEDURE load_big(n integer) LANGUAGE plpgsql AS $$ BEGIN FOR g IN 1..n LOOP"
             " PERFORM append_event('big-2', 'acct', 'Moved', jsonb_build_object('client', 0, 'i', %d + g,"
             " 'note', repeat('0', 100)), '{}'::jsonb, NULL); COMMIT; END LOOP; END $$",
             ALL_EVENTS + BIG_EVENTS);
    sql_on(seed_url, q);
    char url[700];
    snprintf(url, sizeof url, "%s?options=-csynchronous_commit%%3Doff", seed_url);
    snprintf(q, sizeof q, "CALL load_big(%d)", HUGE_EVENTS); /* alone: a COMMIT inside needs no transaction around */
    sql_on(url, q);
    sql_on(seed_url, "DROP PROCEDURE load_big");
    sql_on(seed_url, "VACUUM ANALYZE event_store");
    snprintf(url, sizeof url, "%s?options=-csynchronous_commit%%3Doff", evs_url);
    evs_store *s;
    if (evs_store_create(&s) || evs_store_open(s, url, 0)) {
        fprintf(stderr, "bench_pg: %s\n", evs_errmsg());
        exit(1);
    }
    static char data[100][192];
    evs_event_in ev[100];
    memset(ev, 0, sizeof ev);
    for (int a = 0; a < (ALL_EVENTS + BIG_EVENTS) / 100; a++) {
        char stream[32];
        if (a < ALL_EVENTS / 100) snprintf(stream, sizeof stream, "mix-%d", a % 100);
        else snprintf(stream, sizeof stream, "big-1");
        for (int k = 0; k < 100; k++) {
            snprintf(data[k], sizeof data[k], "{\"client\":0,\"i\":%d,\"note\":\"%0100d\"}", a * 100 + k + 1, 0);
            ev[k].event_type = "Moved";
            ev[k].data = data[k];
            ev[k].data_len = strlen(data[k]);
        }
        evs_append_result res;
        if (evs_append(s, stream, EVS_EXPECT_ANY, ev, 100, &res, NULL)) {
            fprintf(stderr, "bench_pg: loading: %s\n", evs_errmsg());
            exit(1);
        }
    }
    pthread_t t[LOADERS];
    atomic_store(&load_next, 1);
    for (int i = 0; i < LOADERS; i++) pthread_create(&t[i], NULL, load_main, s);
    for (int i = 0; i < LOADERS; i++) pthread_join(t[i], NULL);
    evs_store_close(s);
    sql_on(evs_url, "VACUUM ANALYZE event_store");
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v0, int n) {
    double v[16];
    memcpy(v, v0, (size_t)n * sizeof *v);
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
    if (getenv("EVS_BENCH_ROUNDS") && atoi(getenv("EVS_BENCH_ROUNDS")) > 0) rounds = atoi(getenv("EVS_BENCH_ROUNDS"));
    if (rounds > 16) rounds = 16; /* the per-round arrays */
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
    /* EVS_BENCH_ONLY="W1,W2": only those workloads (the read data is loaded only when a read runs) */
    const char *only = getenv("EVS_BENCH_ONLY");
    int run_w[NW];
    static const char *const tags[NW] = {"W1", "W2", "W3", "W4", "W4", "W5"};
    for (int j = 0; j < NW; j++) run_w[j] = !only || !*only || strstr(only, tags[j]) != NULL;
    if (run_w[3] || run_w[4] || run_w[5]) {
        double t_load = now_s();
        load_read_data(seed_url, evs_url);
        printf("bench_pg: loaded the read data in %.0f s\n", now_s() - t_load);
    }
    printf("bench_pg: %d rounds of %.0f s; PostgreSQL on %s (synchronous_commit on, fsync on)\n", rounds, secs, base);
    static const char *const names[NW] = {"W1 (1 client)",      "W2 (8 clients)",       "W3 (100/append)",
                                          "W4 (10k stream)",    "W4 (100k stream)",     "W5 ($all, 20k)"};
    static const char *const units[NW] = {"appends/s", "appends/s", "events/s", "events/s", "events/s", "events/s"};
    double w[NW][2][16], ratio[NW][16], per_commit[NW][16];
    long e23505[NW][2], errors[NW][2];
    memset(e23505, 0, sizeof e23505);
    memset(errors, 0, sizeof errors);
    memset(per_commit, 0, sizeof per_commit);
    for (int k = 0; k < rounds; k++) {
        for (int j = 0; j < NW; j++) {
            if (!run_w[j]) continue;
            for (int seed = 1; seed >= 0; seed--) {
                double rate, ev_rate;
                if (j < 3) {
                    run r;
                    memset(&r, 0, sizeof r);
                    r.seed = seed;
                    r.url = seed_url;
                    r.store = s;
                    r.clients = j == 1 ? 8 : 1;
                    r.per_append = j == 2 ? W3_EVENTS : 1;
                    evs_store_stats s0, s1;
                    evs_store_get_stats(s, &s0);
                    rate = measure(&r, &e23505[j][seed], &errors[j][seed], &ev_rate);
                    evs_store_get_stats(s, &s1);
                    if (j == 2) rate = ev_rate;
                    if (!seed && s1.batches > s0.batches)
                        per_commit[j][k] = (double)(s1.appends - s0.appends) / (double)(s1.batches - s0.batches);
                } else {
                    static const char *const streams[NW] = {NULL, NULL, NULL, "big-1", "big-2", NULL};
                    static const long lens[NW] = {0, 0, 0, BIG_EVENTS, HUGE_EVENTS, ALL_EVENTS};
                    rate = measure_read(seed, seed_url, s, streams[j], lens[j]);
                }
                w[j][seed][k] = rate;
            }
            ratio[j][k] = w[j][0][k] / w[j][1][k];
            printf("round %d  %-17s seed %9.0f  evstore %9.0f %-9s  ratio %5.2fx", k + 1, names[j], w[j][1][k],
                   w[j][0][k], units[j], ratio[j][k]);
            if (per_commit[j][k] > 0) printf("   %.1f appends per commit", per_commit[j][k]);
            printf("\n");
            fflush(stdout);
        }
    }
    static const char *const targets[NW] = {"", "target >= 2x", "", "target >= 20x", "target >= 20x", ""};
    printf("\nmedians over %d rounds (ratio of the medians; median and range of the per-round ratios):\n", rounds);
    for (int j = 0; j < NW; j++) {
        if (!run_w[j]) continue;
        double lo = ratio[j][0], hi = ratio[j][0];
        for (int k = 1; k < rounds; k++) lo = ratio[j][k] < lo ? ratio[j][k] : lo, hi = ratio[j][k] > hi ? ratio[j][k] : hi;
        double ms = median(w[j][1], rounds), me = median(w[j][0], rounds);
        printf("  %-17s seed %9.0f  evstore %9.0f %-9s  %5.2fx  (rounds: median %.2fx, %.2fx..%.2fx)  %s\n", names[j],
               ms, me, units[j], me / ms, median(ratio[j], rounds), lo, hi, targets[j]);
        if (j < 3)
            printf("  %-17s 23505 errors: seed %ld, evstore %ld;  other errors: seed %ld, evstore %ld\n", "",
                   e23505[j][1], e23505[j][0], errors[j][1], errors[j][0]);
    }
    evs_store_close(s);
    if (getenv("EVS_BENCH_KEEP")) { /* to look at the plans afterwards */
        printf("kept the databases %s and %s\n", seed_db, evs_db);
        return 0;
    }
    snprintf(q, sizeof q, "DROP DATABASE %s WITH (FORCE)", seed_db);
    sql_on(base, q);
    snprintf(q, sizeof q, "DROP DATABASE %s WITH (FORCE)", evs_db);
    sql_on(base, q);
    return 0;
}

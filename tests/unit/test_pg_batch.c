/*
 * test_pg_batch.c — the PostgreSQL engine's group commit (src/pg/pg_append.c,
 * run_batch; the SQL function evs_append_batch in src/pg/migrate.c), with
 * batches made on purpose: a second connection holds the head row, so the
 * first append waits inside PostgreSQL while the others queue behind it;
 * when the row is let go they leave together as one batch (the store's
 * stats must show exactly two group commits: the first append alone, then
 * all the others).  Each scenario's outcomes do not depend on the order in
 * which the threads queued.
 *
 *   outcomes     two appends with expected "any" on one stream (the second
 *                continues where the first ended), two "no stream" appends
 *                racing for one stream (one wins, the other conflicts with
 *                the actual version 1), a conflict on an old stream, an
 *                exact expected version on another, an "exists" on a
 *                missing stream.
 *   retries      an idempotent retry of a stored append, the same new ids
 *                in two appends of the batch (one stores, one is the
 *                retry), an id stored in another stream (EDUPLICATE), next
 *                to plain appends: the function's one-by-one path.
 *   abort        the fallback when the batch's statement fails: a trigger
 *                refuses an event type, and one append's second event has
 *                it.  That append fails alone (EVS_EIO with the trigger's
 *                message; its first event is not stored either), every
 *                other append commits with its own outcome; retried after
 *                the trigger is gone, it is stored.
 *   guarded      a tombstone and "$encrypt" written through another handle
 *                on streams that exist: the batch updates their rows, and
 *                the database, which checks only rows its metadata trigger
 *                marked, still refuses both; the plain appends commit.
 *
 * After each: $all reads 1..head without a gap, every acknowledged event
 * sits where its append's answer says with every field it was sent (type,
 * data, metadata, stream type, version, time, tags, causation and
 * correlation ids: each differs between an append's events), no unique
 * violation is ever seen, and the rows' xmin says how many transactions wrote the batch: one for
 * the first two scenarios (else the fallback would hide a wrong answer of
 * the batch function behind correct one-by-one results), one per stored
 * append for the third.  Runs on the cluster of the "pg_cluster" fixture; exit 77 without.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "conformance.h"
#include "evstore_crypt.h"

#define MAXJOBS 10

typedef struct job {
    evs_store *s;
    const char *stream;
    int64_t expected;
    size_t n;
    evs_event_in ev[3];
    evs_uuid ids[3];
    int rc;
    char msg[512];
    evs_append_result res;
} job;

static char url[600];
static atomic_int entered;

/* Event k of every job carries these (so that a retry with copied ids repeats its original exactly), each
   field different from the next event's, so that a batch row taking one event's field from another's is seen:
   the third event has no tags, causation or correlation (NULLs in the batch's arrays). */
static const char *const EV_STYPE[3] = {"kind-a", "kind-b", "kind-c"};
static const char *const EV_META[3] = {"{\"m\":1}", "{\"m\":[2]}", "{\"m\":\"three\"}"};
static const char *const EV_TAGS[2][2] = {{"t-a", NULL}, {"t-b", "u-2"}};
static const char *const EV_TAGS_JSON[3] = {"[\"t-a\"]", "[\"t-b\",\"u-2\"]", NULL};
static evs_uuid ev_caus[2], ev_corr[2];

/* A job of n events of the given types; fresh ids (a scenario may copy ids from another job). */
static void job_set(job *j, evs_store *s, const char *stream, int64_t expected, size_t n, const char *const *types) {
    memset(j, 0, sizeof *j);
    j->s = s;
    j->stream = stream;
    j->expected = expected;
    j->n = n;
    for (size_t i = 0; i < n; i++) {
        j->ev[i] = tu_event(types ? types[i] : "Noted", i == 1 ? "{\"k\":[1,2]}" : "{\"k\":1}");
        j->ev[i].stream_type = EV_STYPE[i];
        j->ev[i].metadata = EV_META[i];
        j->ev[i].metadata_len = strlen(EV_META[i]);
        j->ev[i].event_version = (uint32_t)i + 2;
        j->ev[i].occurred_at = 1700000000000000000LL + (int64_t)i * 1000;
        if (i < 2) {
            j->ev[i].tags = EV_TAGS[i];
            j->ev[i].ntags = i + 1;
            j->ev[i].causation_id = &ev_caus[i];
            j->ev[i].correlation_id = &ev_corr[i];
        }
        evs_uuid_v7(&j->ids[i]);
        j->ev[i].event_id = &j->ids[i];
    }
}

/* Every field of a stored event is the one its append sent as event k. */
static void check_fields(const evs_event *ev, const job *j, size_t k) {
    const evs_event_in *in = &j->ev[k];
    CHECK_MEM(ev->event_type, ev->event_type_len, in->event_type);
    CHECK_MEM(ev->data, ev->data_len, in->data);
    CHECK_MEM(ev->metadata, ev->metadata_len, EV_META[k]);
    CHECK_MEM(ev->stream_type, ev->stream_type_len, EV_STYPE[k]);
    CHECK_INT(ev->event_version, k + 2);
    CHECK_INT(ev->occurred_at, in->occurred_at);
    if (EV_TAGS_JSON[k]) CHECK_MEM(ev->tags, ev->tags_len, EV_TAGS_JSON[k]);
    else CHECK(ev->tags == NULL);
    CHECK_INT(ev->has_causation_id, k < 2);
    CHECK_INT(ev->has_correlation_id, k < 2);
    if (k < 2) {
        CHECK(!memcmp(ev->causation_id.b, ev_caus[k].b, 16));
        CHECK(!memcmp(ev->correlation_id.b, ev_corr[k].b, 16));
    }
}

static void job_run(job *j) {
    for (size_t i = 0; i < j->n; i++) j->ev[i].event_id = &j->ids[i];
    j->rc = evs_append(j->s, j->stream, j->expected, j->ev, j->n, &j->res, NULL);
    snprintf(j->msg, sizeof j->msg, "%s", j->rc ? evs_errmsg() : "");
}

static void *job_main(void *arg) {
    job *j = arg;
    atomic_fetch_add(&entered, 1);
    job_run(j);
    return NULL;
}

static PGresult *sql(PGconn *c, const char *q) {
    PGresult *r = PQexec(c, q);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s", q, PQerrorMessage(c));
        exit(2);
    }
    return r;
}

static long sql_long(PGconn *c, const char *q) {
    PGresult *r = sql(c, q);
    long v = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* How many transactions wrote the events after global position g (one: the batch committed as one statement). */
static long txns_after(uint64_t g) {
    PGconn *c = PQconnectdb(url);
    char q[160];
    snprintf(q, sizeof q, "SELECT count(DISTINCT xmin::text) FROM event_store WHERE global_position > %llu",
             (unsigned long long)g);
    long n = sql_long(c, q);
    PQfinish(c);
    return n;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/*
 * Run jobs[0] first and wait until it waits for the head row inside
 * PostgreSQL, then start the others, wait until each has called
 * evs_append (and a little more for it to queue), let the row go, and
 * join.  The stats must show two group commits: jobs[0] alone, then the
 * rest as one batch.
 */
static void run_blocked(evs_store *s, job *jobs, int n) {
    PGconn *side = PQconnectdb(url);
    PQclear(sql(side, "BEGIN"));
    PQclear(sql(side, "SELECT 1 FROM event_store_head WHERE id = 1 FOR UPDATE"));
    evs_store_stats s0, s1;
    CHECK_RC(evs_store_get_stats(s, &s0), EVS_OK);
    pthread_t t[MAXJOBS];
    atomic_store(&entered, 0);
    pthread_create(&t[0], NULL, job_main, &jobs[0]);
    long waiting = 0;
    for (int i = 0; i < 3000 && !waiting; i++) {
        sleep_ms(10);
        waiting = sql_long(side, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock'");
    }
    CHECK_INT(waiting, 1);
    for (int i = 1; i < n; i++) pthread_create(&t[i], NULL, job_main, &jobs[i]);
    for (int i = 0; i < 3000 && atomic_load(&entered) < n; i++) sleep_ms(10);
    sleep_ms(300); /* from evs_append's entry to the queue is a few microseconds of work */
    PQclear(sql(side, "ROLLBACK"));
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    PQfinish(side);
    CHECK_RC(evs_store_get_stats(s, &s1), EVS_OK);
    CHECK_INT(s1.batches - s0.batches, 2);
    for (int i = 0; i < n; i++) CHECK(!strstr(jobs[i].msg, "23505") && !strstr(jobs[i].msg, "unique"));
}

/* $all is 1..head without a gap, and every acknowledged job's events are where its answer says. */
static void check_log(evs_store *s, job *jobs, int n) {
    uint64_t head = evs_head(s), want = 1;
    evs_reader *rd;
    const evs_event *ev;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &rd), EVS_OK);
    int rc;
    while ((rc = evs_reader_next(rd, &ev)) == EVS_OK) {
        CHECK_INT(ev->global_position, want);
        want = ev->global_position + 1;
        for (int i = 0; i < n; i++) {
            if (jobs[i].rc != EVS_OK) continue;
            for (size_t k = 0; k < jobs[i].n; k++)
                if (!memcmp(ev->event_id.b, jobs[i].ids[k].b, 16)) {
                    CHECK_INT(ev->global_position, jobs[i].res.first_global_position + k);
                    CHECK_INT(ev->stream_position, jobs[i].res.first_stream_position + k);
                    CHECK_MEM(ev->stream, ev->stream_len, jobs[i].stream);
                    check_fields(ev, &jobs[i], k);
                }
        }
    }
    CHECK_RC(rc, EVS_DONE);
    evs_reader_close(rd);
    CHECK_INT(want, head + 1);
    for (int i = 0; i < n; i++) {
        if (jobs[i].rc != EVS_OK) continue;
        CHECK_INT(jobs[i].res.last_global_position, jobs[i].res.first_global_position + jobs[i].n - 1);
        CHECK_INT(jobs[i].res.last_stream_position, jobs[i].res.first_stream_position + jobs[i].n - 1);
        CHECK(jobs[i].res.last_global_position <= head);
    }
}

static void test_outcomes(evs_store *s) {
    job pre, pre_b, jobs[8];
    job_set(&pre, s, "pre", EVS_EXPECT_NO_STREAM, 1, NULL);
    job_run(&pre);
    CHECK_RC(pre.rc, EVS_OK);
    job_set(&pre_b, s, "pre-b", EVS_EXPECT_NO_STREAM, 1, NULL);
    job_run(&pre_b);
    CHECK_RC(pre_b.rc, EVS_OK);
    uint64_t h0 = evs_head(s);
    job_set(&jobs[0], s, "lead-1", EVS_EXPECT_ANY, 1, NULL);
    job_set(&jobs[1], s, "same", EVS_EXPECT_ANY, 2, NULL);
    job_set(&jobs[2], s, "same", EVS_EXPECT_ANY, 2, NULL);
    job_set(&jobs[3], s, "race", EVS_EXPECT_NO_STREAM, 1, NULL);
    job_set(&jobs[4], s, "race", EVS_EXPECT_NO_STREAM, 1, NULL);
    job_set(&jobs[5], s, "pre", 5, 1, NULL);
    job_set(&jobs[6], s, "pre-b", 1, 2, NULL);
    job_set(&jobs[7], s, "missing", EVS_EXPECT_EXISTS, 1, NULL);
    run_blocked(s, jobs, 8);
    CHECK_RC(jobs[0].rc, EVS_OK);
    CHECK_INT(jobs[0].res.first_global_position, h0 + 1);
    /* the two "any" appends: one continues where the other ended */
    CHECK_RC(jobs[1].rc, EVS_OK);
    CHECK_RC(jobs[2].rc, EVS_OK);
    CHECK_INT(jobs[1].res.first_stream_position + jobs[2].res.first_stream_position, 1 + 3);
    CHECK(jobs[1].res.first_stream_position == 1 || jobs[1].res.first_stream_position == 3);
    /* the race: exactly one stores, the other sees the version the winner left */
    CHECK_INT((jobs[3].rc == EVS_OK) + (jobs[4].rc == EVS_OK), 1);
    job *lost = jobs[3].rc == EVS_OK ? &jobs[4] : &jobs[3];
    CHECK_RC(lost->rc, EVS_ECONFLICT);
    CHECK_INT(lost->res.actual_version, 1);
    CHECK_CONTAINS(lost->msg, "expected version 0, actual version 1");
    CHECK_RC(jobs[5].rc, EVS_ECONFLICT);
    CHECK_INT(jobs[5].res.actual_version, 1);
    CHECK_RC(jobs[6].rc, EVS_OK);
    CHECK_INT(jobs[6].res.first_stream_position, 2);
    CHECK_RC(jobs[7].rc, EVS_ECONFLICT);
    CHECK_INT(jobs[7].res.actual_version, 0);
    /* the batch's events take h0+2 .. h0+8 (1 + 2 + 2 + 1 + 2 after the leader), without a gap */
    CHECK_INT(evs_head(s), h0 + 8);
    evs_stream_info info;
    CHECK_RC(evs_stream_get_info(s, "same", &info), EVS_OK);
    CHECK_INT(info.version, 4);
    CHECK_INT(info.first_global_position, jobs[1].res.first_stream_position == 1 ? jobs[1].res.first_global_position
                                                                                : jobs[2].res.first_global_position);
    CHECK_INT(info.last_global_position, jobs[1].res.first_stream_position == 3 ? jobs[1].res.last_global_position
                                                                               : jobs[2].res.last_global_position);
    CHECK_RC(evs_stream_get_info(s, "race", &info), EVS_OK);
    CHECK_INT(info.version, 1);
    CHECK_RC(evs_stream_get_info(s, "pre", &info), EVS_OK);
    CHECK_INT(info.version, 1);
    CHECK_RC(evs_stream_get_info(s, "pre-b", &info), EVS_OK);
    CHECK_INT(info.version, 3);
    CHECK_INT(info.first_global_position, pre_b.res.first_global_position);
    CHECK_INT(info.last_global_position, jobs[6].res.last_global_position);
    CHECK_RC(evs_stream_get_info(s, "missing", &info), EVS_ENOTFOUND);
    /* all in one transaction, not the one-by-one fallback (which would hide a wrong batch answer) */
    CHECK_INT(txns_after(jobs[0].res.first_global_position), 1);
    for (int i = 1; i < 8; i++)
        if (jobs[i].rc == EVS_OK) CHECK_INT(jobs[i].res.recorded_at, jobs[1].res.recorded_at);
    check_log(s, jobs, 8);
}

static void test_retries(evs_store *s) {
    job first, jobs[7];
    job_set(&first, s, "idem", EVS_EXPECT_NO_STREAM, 2, NULL);
    job_run(&first);
    CHECK_RC(first.rc, EVS_OK);
    uint64_t h0 = evs_head(s);
    job_set(&jobs[0], s, "lead-2", EVS_EXPECT_ANY, 1, NULL);
    jobs[1] = first; /* the same append again: same ids, same content */
    job_set(&jobs[2], s, "twin", EVS_EXPECT_ANY, 1, NULL);
    jobs[3] = jobs[2];
    job_set(&jobs[4], s, "other", EVS_EXPECT_ANY, 1, NULL);
    jobs[4].ids[0] = first.ids[0]; /* an id stored in "idem" */
    job_set(&jobs[5], s, "plain", EVS_EXPECT_NO_STREAM, 2, NULL);
    job_set(&jobs[6], s, "plain-2", 3, 1, NULL);
    run_blocked(s, jobs, 7);
    CHECK_RC(jobs[0].rc, EVS_OK);
    CHECK_RC(jobs[1].rc, EVS_OK);
    CHECK_INT(jobs[1].res.idempotent, 1);
    CHECK_INT(jobs[1].res.first_global_position, first.res.first_global_position);
    CHECK_INT(jobs[1].res.first_stream_position, 1);
    CHECK_INT(jobs[1].res.recorded_at, first.res.recorded_at);
    /* the twins: one stored, the other answered as its retry, same positions */
    CHECK_RC(jobs[2].rc, EVS_OK);
    CHECK_RC(jobs[3].rc, EVS_OK);
    CHECK_INT(jobs[2].res.idempotent + jobs[3].res.idempotent, 1);
    CHECK_INT(jobs[2].res.first_global_position, jobs[3].res.first_global_position);
    CHECK_RC(jobs[4].rc, EVS_EDUPLICATE);
    CHECK_CONTAINS(jobs[4].msg, "another stream");
    CHECK_RC(jobs[5].rc, EVS_OK);
    CHECK_INT(jobs[5].res.idempotent, 0);
    CHECK_RC(jobs[6].rc, EVS_ECONFLICT);
    CHECK_INT(jobs[6].res.actual_version, 0);
    /* new events: the leader's 1, a twin's 1, plain's 2 */
    CHECK_INT(evs_head(s), h0 + 4);
    evs_stream_info info;
    CHECK_RC(evs_stream_get_info(s, "idem", &info), EVS_OK);
    CHECK_INT(info.version, 2);
    CHECK_RC(evs_stream_get_info(s, "twin", &info), EVS_OK);
    CHECK_INT(info.version, 1);
    CHECK_RC(evs_stream_get_info(s, "other", &info), EVS_ENOTFOUND);
    CHECK_INT(txns_after(jobs[0].res.first_global_position), 1);
    job all[8];
    memcpy(all, jobs, sizeof jobs);
    all[7] = first;
    check_log(s, all, 8);
}

static void test_abort_fallback(evs_store *s) {
    PGconn *c = PQconnectdb(url);
    PQclear(sql(c, "CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "RAISE EXCEPTION 'test trigger: poisoned event %', NEW.event_id; END $$"));
    PQclear(sql(c, "CREATE TRIGGER test_poison BEFORE INSERT ON event_store FOR EACH ROW "
                   "WHEN (NEW.event_type = 'Poison') EXECUTE FUNCTION test_poison()"));
    uint64_t h0 = evs_head(s);
    static const char *const poisoned[2] = {"Fine", "Poison"};
    static const char *const names[5] = {"good-1", "good-2", "good-3", "good-4", "good-5"};
    job jobs[8];
    job_set(&jobs[0], s, "lead-3", EVS_EXPECT_ANY, 1, NULL);
    job_set(&jobs[1], s, "bad", EVS_EXPECT_NO_STREAM, 2, poisoned);
    for (int i = 0; i < 5; i++) job_set(&jobs[2 + i], s, names[i], EVS_EXPECT_NO_STREAM, 2, NULL);
    job_set(&jobs[7], s, "pre", 9, 1, NULL);
    run_blocked(s, jobs, 8);
    CHECK_RC(jobs[0].rc, EVS_OK);
    CHECK_RC(jobs[1].rc, EVS_EIO);
    CHECK_CONTAINS(jobs[1].msg, "test trigger: poisoned event");
    for (int i = 2; i < 7; i++) {
        CHECK_RC(jobs[i].rc, EVS_OK);
        CHECK_INT(jobs[i].res.first_stream_position, 1);
        CHECK_INT(jobs[i].res.idempotent, 0);
    }
    CHECK_RC(jobs[7].rc, EVS_ECONFLICT);
    CHECK_INT(jobs[7].res.actual_version, 1);
    /* the leader's 1 and five times 2; nothing of the failed append, not even its good first event */
    CHECK_INT(evs_head(s), h0 + 11);
    evs_stream_info info;
    CHECK_RC(evs_stream_get_info(s, "bad", &info), EVS_ENOTFOUND);
    CHECK_INT(sql_long(c, "SELECT count(*) FROM event_store WHERE aggregate_id = 'bad' OR event_type = 'Fine'"), 0);
    /* the batch rolled back, then each append ran alone: five transactions for the five that stored */
    CHECK_INT(txns_after(jobs[0].res.first_global_position), 5);
    check_log(s, jobs, 8);
    /* the trigger gone, the same append is stored, not answered as a retry */
    PQclear(sql(c, "DROP TRIGGER test_poison ON event_store"));
    job_run(&jobs[1]);
    CHECK_RC(jobs[1].rc, EVS_OK);
    CHECK_INT(jobs[1].res.idempotent, 0);
    CHECK_INT(jobs[1].res.first_global_position, h0 + 12);
    check_log(s, jobs, 8);
    PQfinish(c);
}

/*
 * Metadata another handle (another server) wrote after the streams began:
 * a tombstone on one, "$encrypt" on another, and this handle has not read
 * either.  The batch updates existing streams' rows, and the database
 * checks only rows marked guarded (migration 10): the metadata's own
 * trigger must have marked both, so the database refuses both appends
 * inside the batch (which rolls back; each append then runs alone) while
 * the plain appends beside them commit.  This handle has no master key, so
 * after the refusal of its plaintext it cannot seal: EVS_EKEY.
 */
static void test_guarded(evs_store *s) {
    PGconn *c = PQconnectdb(url);
    static const char *const names[5] = {"grd-1", "grd-2", "grd-3", "grd-4", "grd-5"};
    static const char *const dead_secret[2] = {"grd-dead", "grd-secret"};
    job pre;
    for (int i = 0; i < 7; i++) {
        job_set(&pre, s, i < 5 ? names[i] : dead_secret[i - 5], EVS_EXPECT_NO_STREAM, 1, NULL);
        job_run(&pre);
        CHECK_RC(pre.rc, EVS_OK);
    }
    CHECK_INT(sql_long(c, "SELECT count(*) FROM event_streams WHERE guarded"), 0);
    evs_store *b = NULL;
    uint8_t key[32];
    CHECK_RC(evs_master_key_parse("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 64, key), EVS_OK);
    CHECK_RC(evs_store_create(&b), EVS_OK);
    CHECK_RC(evs_store_set_master_key(b, key), EVS_OK);
    CHECK_RC(evs_store_open(b, url, EVS_OPEN_CREATE), EVS_OK);
    CHECK_RC(evs_stream_delete(b, "grd-dead", EVS_EXPECT_ANY, 1), EVS_OK);
    const char *enc = "{\"$encrypt\":\"stream\"}";
    CHECK_RC(evs_stream_set_metadata(b, "grd-secret", EVS_EXPECT_ANY, enc, strlen(enc), NULL), EVS_OK);
    CHECK_RC(evs_store_close(b), EVS_OK);
    CHECK_INT(sql_long(c, "SELECT count(*) FROM event_streams WHERE guarded AND aggregate_id IN ('grd-dead', "
                          "'grd-secret')"), 2);
    CHECK_INT(sql_long(c, "SELECT count(*) FROM event_streams WHERE guarded"), 2);
    uint64_t h0 = evs_head(s);
    job jobs[8];
    job_set(&jobs[0], s, "lead-4", EVS_EXPECT_ANY, 1, NULL);
    job_set(&jobs[1], s, "grd-dead", EVS_EXPECT_ANY, 1, NULL);
    job_set(&jobs[2], s, "grd-secret", EVS_EXPECT_ANY, 1, NULL);
    for (int i = 0; i < 5; i++) job_set(&jobs[3 + i], s, names[i], EVS_EXPECT_ANY, 2, NULL);
    run_blocked(s, jobs, 8);
    CHECK_RC(jobs[0].rc, EVS_OK);
    CHECK_RC(jobs[1].rc, EVS_EDELETED);
    CHECK_CONTAINS(jobs[1].msg, "hard-deleted");
    CHECK_RC(jobs[2].rc, EVS_EKEY);
    for (int i = 3; i < 8; i++) {
        CHECK_RC(jobs[i].rc, EVS_OK);
        CHECK_INT(jobs[i].res.first_stream_position, 2);
    }
    CHECK_INT(evs_head(s), h0 + 11);
    CHECK_INT(sql_long(c, "SELECT count(*) FROM event_store WHERE aggregate_id IN ('grd-dead', 'grd-secret')"), 2);
    /* refused inside the batch: it rolled back, and the five plain appends stored one transaction each */
    CHECK_INT(txns_after(jobs[0].res.first_global_position), 5);
    /* $all hides the hard-deleted stream's event, so check_log does not apply: each stored event by its id */
    char q0[120];
    snprintf(q0, sizeof q0, "SELECT count(*) FROM event_store WHERE global_position > %llu", (unsigned long long)h0);
    CHECK_INT(sql_long(c, q0), 11);
    for (int i = 0; i < 8; i++) {
        if (jobs[i].rc != EVS_OK) continue;
        for (size_t k = 0; k < jobs[i].n; k++) {
            char id[37], q[300];
            evs_uuid_format(&jobs[i].ids[k], id);
            snprintf(q, sizeof q, "SELECT count(*) FROM event_store WHERE event_id = '%s' AND aggregate_id = '%s' AND "
                     "global_position = %llu AND stream_position = %llu", id, jobs[i].stream,
                     (unsigned long long)(jobs[i].res.first_global_position + k),
                     (unsigned long long)(jobs[i].res.first_stream_position + k));
            CHECK_INT(sql_long(c, q), 1);
        }
    }
    CHECK_INT(sql_long(c, "SELECT max(global_position) FROM event_store"), h0 + 11);
    /* "$encrypt" taken away: the row is no longer guarded; the tombstone's stays */
    CHECK_RC(evs_store_create(&b), EVS_OK);
    CHECK_RC(evs_store_set_master_key(b, key), EVS_OK);
    CHECK_RC(evs_store_open(b, url, EVS_OPEN_CREATE), EVS_OK);
    CHECK_RC(evs_stream_set_metadata(b, "grd-secret", EVS_EXPECT_ANY, "{}", 2, NULL), EVS_OK);
    CHECK_RC(evs_store_close(b), EVS_OK);
    CHECK_INT(sql_long(c, "SELECT count(*) FROM event_streams WHERE guarded AND aggregate_id = 'grd-dead'"), 1);
    CHECK_INT(sql_long(c, "SELECT count(*) FROM event_streams WHERE guarded"), 1);
    PQfinish(c);
}

int main(void) {
    char *argv[] = {"test_pg_batch", "postgresql", NULL};
    cf_init(2, argv);
    printf("engine: %s\n", cf_engine());
    for (int k = 0; k < 2; k++) evs_uuid_v7(&ev_caus[k]), evs_uuid_v7(&ev_corr[k]);
    char *where = cf_fresh("batch");
    snprintf(url, sizeof url, "%s", where);
    evs_store *s = cf_open(where);
    test_outcomes(s);
    test_retries(s);
    test_abort_fallback(s);
    test_guarded(s);
    CHECK_RC(evs_store_close(s), EVS_OK);
    cf_drop(where);
    return TEST_REPORT();
}

/*
 * test_app_concurrency.c — commands racing on ONE aggregate: 8 threads,
 * 10,000 commands, each Add with a distinct n and its own command id; one
 * command in 25 is also sent at the same time by a second thread with the
 * same id.  Optimistic retries must serialize them without a lock:
 *   - every command is accepted exactly once (10,000 events, no duplicate
 *     from the resent ids, no lost update),
 *   - each command's result names the version its event holds, and the
 *     versions are exactly 1..10,000,
 *   - the state loaded through snapshots (written concurrently by the
 *     background thread) equals the sequential fold of the stream.
 * Runs under TSan (the name contains "concurrency").  An optional engine
 * argument (tests/conformance.h): "postgresql" runs it on a fresh database
 * (app_concurrency_pg), with 2,000 commands (each attempt is a few round
 * trips there).
 */
#include <pthread.h>

#include "app_counter.h"
#include "conformance.h"
#include "evstore_app.h"
#include "testutil.h"

#define THREADS 8
#define COMMANDS 10000
#define DUP_EVERY 25

static evs_app *app;
static int commands = COMMANDS; /* of them this run sends */
static uint64_t version_of[COMMANDS + 1]; /* by n: the version its result reported */
static _Atomic int idem_hits, conflicts_left, errors;
static problems probs;
static pthread_mutex_t pmu = PTHREAD_MUTEX_INITIALIZER;

static void send(int n) {
    char id[32], data[32];
    snprintf(id, sizeof id, "cmd-%d", n);
    snprintf(data, sizeof data, "{\"n\":%d}", n);
    evs_command c;
    evs_command_init(&c);
    c.command_id = id;
    c.command_type = "Add";
    c.aggregate_id = "hot";
    c.data = data;
    c.data_len = strlen(data);
    evs_command_result r;
    int rc = evs_app_execute(app, &c, &r);
    pthread_mutex_lock(&pmu);
    if (rc) {
        problem(&probs, "command %d: %s", n, evs_errmsg());
        errors++;
    } else if (r.outcome != EVS_CMD_ACCEPTED) {
        problem(&probs, "command %d: %s: %s", n, evs_command_outcome_name(r.outcome), r.reason);
        if (r.outcome == EVS_CMD_CONFLICT) conflicts_left++;
        errors++;
    } else {
        if (r.idempotent) idem_hits++;
        if (version_of[n] && version_of[n] != r.version)
            problem(&probs, "command %d answered version %llu, then %llu", n, (unsigned long long)version_of[n],
                    (unsigned long long)r.version);
        version_of[n] = r.version;
    }
    pthread_mutex_unlock(&pmu);
    if (!rc) evs_command_result_free(&r);
}

static void *worker(void *arg) {
    int t = (int)(intptr_t)arg;
    for (int n = 1; n <= commands; n++) {
        if (n % THREADS == t) send(n);
        else if (n % DUP_EVERY == 0 && (n + 1) % THREADS == t) send(n); /* the same id from another thread */
    }
    return NULL;
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    if (cf_pg) commands = 2000;
    char *d = cf_fresh("appconc");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 22);
    evs_app_config cfg;
    evs_app_config_init(&cfg);
    cfg.max_retries = EVS_APP_MAX_RETRIES;
    if (evs_app_open(s, NULL, &cfg, &app) || tc_register(app, "v1")) {
        fprintf(stderr, "open: %s\n", evs_errmsg());
        return 2;
    }
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t);
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    CHECK_INT(errors, 0);
    CHECK_INT(conflicts_left, 0);
    if (probs.count) fprintf(stderr, "%d problems, first: %s\n", probs.count, probs.first);
    CHECK_INT(probs.count, 0);
    CHECK(idem_hits > 0);

    /* the stream: one event per command, each n once, each at the version its command reported */
    static long long order[COMMANDS];
    static char seen[COMMANDS + 1];
    evs_reader *r;
    const evs_event *ev;
    size_t count = 0;
    int bad = 0;
    CHECK_RC(evs_read_stream(s, "counter-hot", 1, EVS_FORWARD, 0, &r), EVS_OK);
    while (evs_reader_next(r, &ev) == EVS_OK) {
        long long n = tc_field(ev->data, ev->data_len, "n");
        if (count >= (size_t)commands || n < 1 || n > commands || seen[n]++ || version_of[n] != ev->stream_position) bad++;
        else order[count] = n;
        count++;
    }
    evs_reader_close(r);
    CHECK_INT(count, commands);
    CHECK_INT(bad, 0);

    /* loaded through snapshots == the sequential fold of the stream */
    CHECK_RC(evs_app_flush(app), EVS_OK);
    char want[256], *got = NULL;
    tc_fold_json(order, count < (size_t)commands ? count : (size_t)commands, want, sizeof want);
    evs_load_info info;
    CHECK_RC(evs_aggregate_load_json(app, "counter", "hot", 0, &got, NULL, &info), EVS_OK);
    if (got) CHECK_STR(got, want);
    free(got);
    CHECK(info.snapshot_version > 0);
    long long sum = 0;
    for (int n = 1; n <= commands; n++) sum += n;
    char sums[64];
    snprintf(sums, sizeof sums, "\"sum\":%lld", sum);
    CHECK_CONTAINS(want, sums);
    evs_app_stats st;
    evs_app_get_stats(app, &st);
    CHECK(st.conflict_retries > 0);
    CHECK(st.snapshots_created > 0);
    printf("retries %llu, idempotent hits %d, snapshots %llu (dropped %llu)\n", (unsigned long long)st.conflict_retries,
           idem_hits, (unsigned long long)st.snapshots_created, (unsigned long long)st.snapshots_dropped);
    evs_app_close(app);
    evs_store_close(s);
    cf_drop(d);
    return TEST_REPORT();
}

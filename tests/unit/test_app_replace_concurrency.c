/*
 * test_app_replace_concurrency.c — replacing a stored Lua aggregate's
 * script (evs_app_put_lua_aggregate) while commands run on it: 4 threads
 * send 2,000 Add commands each to 8 aggregates while another thread swaps
 * the script between two versions 100 times and a third reads the
 * registry (describe, per-type stats).  Both versions accept Add, so:
 *   - every command is accepted (none finds no handler, none fails: a
 *     command that started with the old script finishes with it),
 *   - the events in the store are exactly the accepted commands, and
 *   - each aggregate's state, loaded through snapshots taken by either
 *     version, equals the sum of what was added to it.
 * Runs under TSan (the name contains "concurrency").
 */
#include <pthread.h>
#include <stdatomic.h>

#include "evstore_app.h"
#include "testutil.h"

#define THREADS 4
#define PER_THREAD 2000
#define AGGS 8
#define SWAPS 100

static const char *script_fmt =
    "-- version %d\n"
    "return {\n"
    "  init = function() return { n = 0 } end,\n"
    "  evolve = { Added = function(s, e) s.n = s.n + e.data.k end },\n"
    "  commands = {\n"
    "    Add = { fields = { k = 'integer' }, decide = function(s, c)\n"
    "      if c.data.k > %d then return 'too big' end\n"
    "      return { { type = 'Added', data = { k = c.data.k } } } end },\n"
    "  },\n"
    "}\n";

static evs_app *app;
static _Atomic long long added[AGGS];
static _Atomic int bad, accepted, stop;
static problems probs;
static pthread_mutex_t pmu = PTHREAD_MUTEX_INITIALIZER;

static void *sender(void *arg) {
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        int agg = (i + t) % AGGS, k = 1 + (i * 7 + t) % 9;
        char json[160];
        snprintf(json, sizeof json, "{\"command_id\":\"t%d-%d\",\"command_type\":\"Add\",\"aggregate_id\":\"%d\","
                                    "\"data\":{\"k\":%d}}", t, i, agg, k);
        evs_command_result r;
        int rc = evs_app_execute_json(app, NULL, json, strlen(json), &r);
        if (rc || r.outcome != EVS_CMD_ACCEPTED) {
            pthread_mutex_lock(&pmu);
            problem(&probs, "%s: %s", json, rc ? evs_errmsg() : r.reason);
            pthread_mutex_unlock(&pmu);
            bad++;
        } else {
            added[agg] += k;
            accepted++;
        }
        if (!rc) evs_command_result_free(&r);
    }
    return NULL;
}

static void *swapper(void *arg) {
    (void)arg;
    char src[1024];
    for (int i = 0; i < SWAPS; i++) {
        snprintf(src, sizeof src, script_fmt, i % 2 ? 2 : 1, i % 2 ? 100 : 10);
        int what = 0;
        if (evs_app_put_lua_aggregate(app, "ctr", src, strlen(src), &what) || what != EVS_PUT_REPLACED) {
            pthread_mutex_lock(&pmu);
            problem(&probs, "swap %d: %s (what %d)", i, evs_errmsg(), what);
            pthread_mutex_unlock(&pmu);
            bad++;
        }
    }
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    while (!stop) {
        char *js = NULL;
        evs_command_type_stats ts[4];
        size_t n;
        if (evs_app_describe(app, NULL, &js, NULL) || !strstr(js, "\"Add\"") ||
            evs_app_command_stats(app, ts, 4, &n) || n != 1) {
            pthread_mutex_lock(&pmu);
            problem(&probs, "registry read: %s", js ? js : evs_errmsg());
            pthread_mutex_unlock(&pmu);
            bad++;
        }
        free(js);
    }
    return NULL;
}

int main(void) {
    char *d = tu_tempdir("appswap");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_app_config cfg;
    evs_app_config_init(&cfg);
    cfg.snapshot_every = 7; /* background snapshots by both versions while they swap */
    if (evs_app_open(s, NULL, &cfg, &app)) {
        fprintf(stderr, "open: %s\n", evs_errmsg());
        return 2;
    }
    char src[1024];
    snprintf(src, sizeof src, script_fmt, 0, 10);
    int what = 0;
    CHECK_RC(evs_app_put_lua_aggregate(app, "ctr", src, strlen(src), &what), EVS_OK);
    CHECK_INT(what, EVS_PUT_CREATED);
    pthread_t th[THREADS], sw, rd;
    for (int t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, sender, (void *)(intptr_t)t);
    pthread_create(&sw, NULL, swapper, NULL);
    pthread_create(&rd, NULL, reader, NULL);
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    pthread_join(sw, NULL);
    stop = 1;
    pthread_join(rd, NULL);
    CHECK_INT(bad, 0);
    CHECK_INT(accepted, THREADS * PER_THREAD);
    CHECK_INT(evs_head(s), THREADS * PER_THREAD);
    CHECK_RC(evs_app_flush(app), EVS_OK);
    for (int agg = 0; agg < AGGS; agg++) {
        char id[8], want[64], *js = NULL, *js2 = NULL;
        snprintf(id, sizeof id, "%d", agg);
        snprintf(want, sizeof want, "{\"n\":%lld}", (long long)added[agg]);
        CHECK_RC(evs_aggregate_load_json(app, "ctr", id, 0, &js, NULL, NULL), EVS_OK);
        CHECK_RC(evs_aggregate_load_json(app, "ctr", id, EVS_LOAD_NO_SNAPSHOT, &js2, NULL, NULL), EVS_OK);
        CHECK_STR(js, want);
        CHECK_STR(js2, want);
        free(js);
        free(js2);
    }
    evs_command_type_stats ts[4];
    size_t n = 0;
    CHECK_RC(evs_app_command_stats(app, ts, 4, &n), EVS_OK);
    CHECK_INT(n, 1);
    /* counts of commands that ended on a replaced handler may be lost; never more than were sent */
    CHECK(ts[0].outcomes[EVS_CMD_ACCEPTED] <= (uint64_t)(THREADS * PER_THREAD));
    if (probs.count) fprintf(stderr, "%d problems, the first: %s\n", probs.count, probs.first);
    evs_app_close(app);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
    return TEST_REPORT();
}

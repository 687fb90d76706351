/*
 * test_app.c — the application layer in one thread: commands through a C
 * aggregate (accepted, rejected, conflict, invalid, unknown, failed),
 * what the appended events carry (causation, correlation, metadata),
 * idempotency (same id, another command under a used id, rejections kept
 * across a reopen and forgotten after the window), the append handler, Lua
 * aggregates and their sandbox, snapshot correctness for random N/K and
 * after an evolve-code change, and the query bus (filters, sort, paging,
 * min_position, the cache never serving a moved projection).
 *
 * One suite for both storage engines (tests/conformance.h): no argument runs
 * it on fresh directories, "postgresql" on fresh databases (app_pg), where
 * it also runs two app handles on one database as two servers would
 * (test_two_servers).  What only the embedded engine has (DIR/app/ as
 * files) is skipped there, saying so.
 */
#include <jansson.h>
#include <pthread.h>
#include <unistd.h>

#include "app/app_access.h"
#include "app_counter.h"
#include "conformance.h"
#include "evstore_app.h"
#include "testutil.h"

static evs_app *open_app(evs_store *s, evs_bus *b, const evs_app_config *cfg, const char *code) {
    evs_app *a = NULL;
    int rc = evs_app_open(s, b, cfg, &a);
    if (rc) {
        fprintf(stderr, "app_open: %s\n", evs_errmsg());
        exit(2);
    }
    if (code && tc_register(a, code)) {
        fprintf(stderr, "register: %s\n", evs_errmsg());
        exit(2);
    }
    return a;
}

/* r must start zeroed; the previous result held in it is released first. */
static int run(evs_app *a, const char *json, evs_command_result *r) {
    evs_command_result_free(r);
    int rc = evs_app_execute_json(a, NULL, json, strlen(json), r);
    if (rc) fprintf(stderr, "execute_json: %s\n", evs_errmsg());
    return rc;
}

static void test_commands(const char *d) {
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_app *a = open_app(s, NULL, NULL, "v1");
    evs_command_result r = {0};

    /* accepted, with the command's identity on its events */
    CHECK_RC(run(a,
                 "{\"command_id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"command_type\":\"Add\","
                 "\"aggregate_id\":\"1\",\"data\":{\"n\":5},\"metadata\":{\"user\":\"ann\",\"tenant\":\"t1\","
                 "\"source\":\"test\",\"correlation_id\":\"0190a4e2-7b1c-7cc0-8000-0000000000cc\"}}",
                 &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    CHECK_STR(r.stream, "counter-1");
    CHECK_INT(r.version, 1);
    CHECK_INT(r.n_events, 1);
    CHECK_INT(r.first_position, 1);
    CHECK_INT(r.last_position, 1);
    CHECK_INT(r.idempotent, 0);
    evs_uuid first_id = r.event_ids[0];
    evs_command_result_free(&r);
    evs_reader *rd;
    const evs_event *ev;
    CHECK_RC(evs_read_stream(s, "counter-1", 1, EVS_FORWARD, 0, &rd), EVS_OK);
    CHECK_RC(evs_reader_next(rd, &ev), EVS_OK);
    char u[37];
    CHECK(ev->has_causation_id);
    evs_uuid_format(&ev->causation_id, u);
    CHECK_STR(u, "0190a4e2-7b1c-7cc0-8000-000000000001");
    CHECK(ev->has_correlation_id);
    evs_uuid_format(&ev->correlation_id, u);
    CHECK_STR(u, "0190a4e2-7b1c-7cc0-8000-0000000000cc");
    CHECK(memcmp(&ev->event_id, &first_id, 16) == 0);
    json_t *m = json_loadb(ev->metadata, ev->metadata_len, 0, NULL);
    CHECK_STR(json_string_value(json_object_get(m, "user")), "ann");
    CHECK_STR(json_string_value(json_object_get(m, "tenant")), "t1");
    CHECK_STR(json_string_value(json_object_get(m, "source")), "test");
    CHECK_STR(json_string_value(json_object_get(m, "command_id")), "0190a4e2-7b1c-7cc0-8000-000000000001");
    CHECK_STR(json_string_value(json_object_get(m, "command_type")), "Add");
    json_decref(m);
    evs_reader_close(rd);

    /* the same command again: the original result, nothing appended */
    CHECK_RC(run(a,
                 "{\"command_id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"command_type\":\"Add\","
                 "\"aggregate_id\":\"1\",\"data\":{\"n\":5}}",
                 &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    CHECK_INT(r.idempotent, 1);
    CHECK_INT(r.first_position, 1);
    CHECK_INT(r.version, 1);
    evs_uuid_format(&r.correlation_id, u);
    CHECK_STR(u, "0190a4e2-7b1c-7cc0-8000-0000000000cc");
    evs_command_result_free(&r);
    CHECK_INT(evs_head(s), 1);

    /* a used id with another command is refused, not answered with the other's result */
    CHECK_RC(run(a,
                 "{\"command_id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"command_type\":\"Add\","
                 "\"aggregate_id\":\"2\",\"data\":{\"n\":5}}",
                 &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_INVALID);
    CHECK_CONTAINS(r.reason, "already used");
    CHECK_INT(evs_head(s), 1);

    /* a command id that is not a UUID: the causation id is derived from it, the same every time */
    CHECK_RC(run(a, "{\"command_id\":\"order-42/add\",\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":{\"n\":2}}", &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    CHECK_INT(r.version, 2);
    CHECK_INT(r.last_position, 2);

    /* rejected by decide; the rejection is the command's result from then on */
    CHECK_RC(run(a, "{\"command_id\":\"rej-1\",\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":{\"n\":0}}", &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_REJECTED);
    CHECK_STR(r.reason, "n must be at least 1");
    CHECK_RC(run(a, "{\"command_id\":\"rej-1\",\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":{\"n\":0}}", &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_REJECTED);
    CHECK_INT(r.idempotent, 1);

    /* expected_version */
    CHECK_RC(run(a, "{\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":{\"n\":1},\"expected_version\":7}", &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_CONFLICT);
    CHECK_CONTAINS(r.reason, "expected version 7, actual version 2");
    CHECK_RC(run(a, "{\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":{\"n\":1},\"expected_version\":2}", &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    CHECK_INT(r.version, 3);
    evs_command_result_free(&r);

    /* invalid input, each with a reason naming the problem */
    static const struct {
        const char *json, *why;
    } bad[] = {
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":{}}", "data.n is required (integer)"},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":{\"n\":\"5\"}}", "data.n must be an integer, got string"},
        {"{\"command_type\":\"Add\",\"data\":{\"n\":1}}", "aggregate_id is required"},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"\",\"data\":{\"n\":1}}", "aggregate_id must be 1.."},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":[1]}", "\"data\" has the wrong type"},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":{\"n\":1},\"bogus\":1}", "unknown command member \"bogus\""},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":{\"n\":1},\"correlation_id\":\"nope\"}",
         "correlation_id \"nope\" is not a UUID"},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"expected_version\":-3,\"data\":{\"n\":1}}",
         "\"expected_version\" is -3; it must be an aggregate version (0 for a new one) or null"},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"expected_version\":\"3\",\"data\":{\"n\":1}}",
         "\"expected_version\" has the wrong type (string)"},
        {"{\"command_type\":", "not valid JSON"},
        {"[1,2]", "must be a JSON object"},
        {"{\"aggregate_id\":\"1\"}", "command_type is required"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(run(a, bad[i].json, &r), EVS_OK);
        CHECK_INT(r.outcome, EVS_CMD_INVALID);
        CHECK_CONTAINS(r.reason, bad[i].why);
    }
    CHECK_RC(run(a, "{\"command_type\":\"Teleport\",\"aggregate_id\":\"1\"}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_UNKNOWN);
    CHECK_STR(r.reason, "no handler for command type \"Teleport\"");
    /* a route's command type that the body contradicts */
    const char *j = "{\"command_type\":\"Noop\",\"aggregate_id\":\"1\"}";
    CHECK_RC(evs_app_execute_json(a, "Add", j, strlen(j), &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_INVALID);
    CHECK_RC(evs_app_execute_json(a, "Noop", j, strlen(j), &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    CHECK_INT(r.n_events, 0);
    CHECK_INT(r.version, 3);
    CHECK_INT(evs_head(s), 3); /* nothing stored by any of them */

    /* registration errors */
    evs_command_handler h = {"Add", EVS_HANDLER_AGGREGATE, "counter", NULL, 0};
    CHECK_RC(evs_app_register_handler(a, &h), EVS_ECONFLICT);
    evs_command_handler h2 = {"Fly", EVS_HANDLER_AGGREGATE, "plane", NULL, 0};
    CHECK_RC(evs_app_register_handler(a, &h2), EVS_ENOTFOUND);
    CHECK_CONTAINS(evs_errmsg(), "aggregate type \"plane\" is not registered");

    /* the append handler */
    static const evs_field_spec ef[] = {{"events", EVS_FIELD_ARRAY, 1}};
    evs_command_handler ap = {"Record", EVS_HANDLER_APPEND, NULL, ef, 1};
    CHECK_RC(evs_app_register_handler(a, &ap), EVS_OK);
    CHECK_RC(run(a,
                 "{\"command_id\":\"rec-1\",\"command_type\":\"Record\",\"target\":\"log-1\",\"expected_version\":0,"
                 "\"data\":{\"events\":[{\"event_type\":\"A\",\"data\":{\"x\":1}},{\"event_type\":\"B\",\"data\":{},"
                 "\"metadata\":{\"k\":\"v\",\"command_id\":\"forged\"}}]}}",
                 &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    CHECK_INT(r.n_events, 2);
    CHECK_INT(r.version, 2);
    CHECK_RC(evs_read_stream(s, "log-1", 2, EVS_FORWARD, 0, &rd), EVS_OK);
    CHECK_RC(evs_reader_next(rd, &ev), EVS_OK);
    m = json_loadb(ev->metadata, ev->metadata_len, 0, NULL);
    CHECK_STR(json_string_value(json_object_get(m, "k")), "v");
    CHECK_STR(json_string_value(json_object_get(m, "command_id")), "rec-1");
    json_decref(m);
    evs_reader_close(rd);
    evs_command_result_free(&r);
    CHECK_RC(run(a,
                 "{\"command_id\":\"rec-1\",\"command_type\":\"Record\",\"target\":\"log-1\",\"expected_version\":0,"
                 "\"data\":{\"events\":[{\"event_type\":\"A\",\"data\":{\"x\":1}}]}}",
                 &r),
             EVS_OK);
    CHECK_INT(r.idempotent, 1);
    CHECK_INT(r.n_events, 2);
    evs_command_result_free(&r);
    CHECK_RC(run(a,
                 "{\"command_type\":\"Record\",\"target\":\"log-1\",\"expected_version\":0,"
                 "\"data\":{\"events\":[{\"event_type\":\"A\",\"data\":{\"x\":1}}]}}",
                 &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_CONFLICT);
    CHECK_RC(run(a, "{\"command_type\":\"Record\",\"target\":\"log-1\",\"data\":{\"events\":[{\"event_type\":\"A\"}]}}", &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_INVALID);
    CHECK_CONTAINS(r.reason, "data.events[0] needs event_type");

    /* the result as JSON */
    CHECK_RC(run(a, "{\"command_id\":\"rej-1\",\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":{\"n\":0}}", &r),
             EVS_OK);
    char *js;
    CHECK_RC(evs_command_result_to_json(&r, &js, NULL), EVS_OK);
    CHECK_CONTAINS(js, "\"outcome\":\"rejected\"");
    CHECK_CONTAINS(js, "\"reason\":\"n must be at least 1\"");
    CHECK_CONTAINS(js, "\"idempotent\":true");
    free(js);

    evs_app_stats st;
    CHECK_RC(evs_app_get_stats(a, &st), EVS_OK);
    CHECK(st.commands[EVS_CMD_ACCEPTED] >= 6);
    CHECK_INT(st.commands[EVS_CMD_UNKNOWN], 1);
    CHECK_INT(st.handler_not_found, 1);
    CHECK(st.validation_errors >= 12);
    CHECK(st.idempotent_hits >= 4);
    uint64_t hist = 0;
    for (int i = 0; i <= EVS_CMD_BUCKETS; i++) hist += st.duration_hist[i];
    uint64_t total = 0;
    for (int i = 0; i < EVS_CMD_OUTCOMES; i++) total += st.commands[i];
    CHECK_INT(hist, total);
    evs_command_type_stats ts[8];
    size_t nts;
    CHECK_RC(evs_app_command_stats(a, ts, 8, &nts), EVS_OK);
    CHECK_INT(nts, 4); /* Add, Noop, Peek (app_counter.h) and the append handler */
    CHECK_STR(ts[0].command_type, "Add");
    CHECK(ts[0].outcomes[EVS_CMD_REJECTED] >= 3);
    evs_app_close(a);
    evs_store_close(s);

    /* rejections are persisted: after a reopen the same id answers the same */
    s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    a = open_app(s, NULL, NULL, "v1");
    CHECK_RC(run(a, "{\"command_id\":\"rej-1\",\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":{\"n\":0}}", &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_REJECTED);
    CHECK_INT(r.idempotent, 1);
    CHECK_RC(run(a,
                 "{\"command_id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"command_type\":\"Add\","
                 "\"aggregate_id\":\"1\",\"data\":{\"n\":5}}",
                 &r),
             EVS_OK);
    CHECK_INT(r.idempotent, 1);
    CHECK_INT(r.first_position, 1);
    evs_command_result_free(&r);
    evs_app_close(a);
    /* ... and forgotten after the window: the command is decided again */
    evs_app_config cfg;
    evs_app_config_init(&cfg);
    cfg.idempotency_window_ns = 1;
    a = open_app(s, NULL, &cfg, "v1");
    CHECK_RC(run(a, "{\"command_id\":\"rej-1\",\"command_type\":\"Add\",\"aggregate_id\":\"1\",\"data\":{\"n\":0}}", &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_REJECTED);
    CHECK_INT(r.idempotent, 0);
    evs_command_result_free(&r);
    evs_app_close(a);
    evs_store_close(s);
}

/* ------------------------------------------------------------- snapshots */

static void add(evs_app *a, const char *id, long long n) {
    char data[32];
    snprintf(data, sizeof data, "{\"n\":%lld}", n);
    evs_command c;
    evs_command_init(&c);
    c.command_type = "Add";
    c.aggregate_id = id;
    c.data = data;
    c.data_len = strlen(data);
    evs_command_result r;
    if (evs_app_execute(a, &c, &r) || r.outcome != EVS_CMD_ACCEPTED) {
        fprintf(stderr, "add: %s %s\n", evs_errmsg(), r.reason);
        exit(2);
    }
    evs_command_result_free(&r);
}

static void same_state(evs_app *a, const char *id, const char *want, evs_load_info *info) {
    char *with = NULL, *without = NULL;
    evs_load_info i2;
    CHECK_RC(evs_aggregate_load_json(a, "counter", id, 0, &with, NULL, info), EVS_OK);
    CHECK_RC(evs_aggregate_load_json(a, "counter", id, EVS_LOAD_NO_SNAPSHOT, &without, NULL, &i2), EVS_OK);
    CHECK_INT(i2.snapshot_version, 0);
    if (with && without) CHECK_STR(with, without);
    if (with && want) CHECK_STR(with, want);
    free(with);
    free(without);
}

static void test_snapshots(void) {
    unsigned seed = 12345;
    for (int round = 0; round < 6; round++) {
        char *sub = cf_fresh("app-snap");
        evs_store *s = tu_open(sub, EVS_DURABILITY_NONE, 1 << 20);
        evs_app_config cfg;
        evs_app_config_init(&cfg);
        cfg.snapshot_every = 1 + rand_r(&seed) % 40;
        cfg.snapshot_keep = 1 + rand_r(&seed) % 6;
        evs_app *a = open_app(s, NULL, &cfg, "v1");
        size_t n = 50 + rand_r(&seed) % 250;
        long long *ns = calloc(n, sizeof *ns);
        for (size_t i = 0; i < n; i++) {
            ns[i] = 1 + rand_r(&seed) % 1000;
            add(a, "s", ns[i]);
            if (i % 7 == 0) add(a, "other", 1); /* interleaved: the tail must skip them */
        }
        CHECK_RC(evs_app_flush(a), EVS_OK);
        char want[256];
        tc_fold_json(ns, n, want, sizeof want);
        evs_load_info info;
        same_state(a, "s", want, &info);
        CHECK(info.snapshot_version > 0);
        CHECK(info.events_applied < n);
        CHECK_INT(info.version, n);
        evs_snapshot_info si[16];
        size_t count;
        CHECK_RC(evs_aggregate_snapshots(a, "counter", "s", si, 16, &count), EVS_OK);
        CHECK(count >= 1 && count <= cfg.snapshot_keep);
        for (size_t i = 1; i < count; i++) CHECK(si[i].version < si[i - 1].version);
        CHECK(si[0].usable);
        /* on demand */
        uint64_t v;
        CHECK_RC(evs_aggregate_snapshot(a, "counter", "s", &v), EVS_OK);
        CHECK_INT(v, n);
        same_state(a, "s", want, &info);
        CHECK_INT(info.snapshot_version, n);
        CHECK_INT(info.events_applied, 0);
        evs_app_stats st;
        evs_app_get_stats(a, &st);
        CHECK(st.snapshots_created >= 1);
        CHECK(st.snapshot_loads >= 1);
        CHECK(st.snapshot_create_ns > 0);
        evs_app_close(a);

        /* the evolve code changes: every stored snapshot is ignored, the state is v2's fold */
        a = open_app(s, NULL, &cfg, "v2");
        tc_fold_json(ns, n, want, sizeof want);
        same_state(a, "s", want, &info);
        CHECK_INT(info.snapshot_version, 0);
        CHECK(info.snapshots_ignored >= 1);
        CHECK_RC(evs_aggregate_snapshots(a, "counter", "s", si, 16, &count), EVS_OK);
        CHECK(count >= 1);
        CHECK(!si[0].usable);
        /* a command under v2 snapshots anew; v1's rows are pruned in time, never applied */
        for (uint32_t i = 0; i < cfg.snapshot_every; i++) add(a, "s", 1);
        CHECK_RC(evs_app_flush(a), EVS_OK);
        ns = realloc(ns, (n + cfg.snapshot_every) * sizeof *ns);
        for (uint32_t i = 0; i < cfg.snapshot_every; i++) ns[n + i] = 1;
        tc_fold_json(ns, n + cfg.snapshot_every, want, sizeof want);
        same_state(a, "s", want, &info);
        CHECK(info.snapshot_version > n);
        evs_app_close(a);
        tc_v2 = 0;
        free(ns);
        evs_store_close(s);
        cf_drop(sub);
    }
}

/* What a Peek command on counter-{id} saw (the state decide was given), into out. */
static void peek(evs_app *a, const char *id, char *out, size_t cap) {
    evs_command c;
    evs_command_init(&c);
    c.command_type = "Peek";
    c.aggregate_id = id;
    evs_command_result r;
    out[0] = 0;
    CHECK_RC(evs_app_execute(a, &c, &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_REJECTED);
    snprintf(out, cap, "%s", r.reason);
    evs_command_result_free(&r);
}

/* The state a command sees equals the fold of the log, read without snapshot or cache. */
static void peek_is_fold(evs_app *a, const char *id) {
    char saw[512], *fold = NULL;
    peek(a, id, saw, sizeof saw);
    CHECK_RC(evs_aggregate_load_json(a, "counter", id, EVS_LOAD_NO_SNAPSHOT, &fold, NULL, NULL), EVS_OK);
    if (fold) CHECK_STR(saw, fold);
    free(fold);
}

/*
 * The state cache: commands start from the state the previous command on
 * the aggregate left, and still see every event of the log — events written
 * by another writer (another server, a raw append), a stream deleted and
 * written again, states evicted from a full cache.  The same commands with
 * the cache off see the same states.
 */
static void test_state_cache(const char *d) {
    for (int on = 1; on >= 0; on--) {
        char sub[64]; /* a tag, not a path (cf_fresh makes the place) */
        snprintf(sub, sizeof sub, "%s%s", d, on ? "" : "-off");
        char *w = cf_fresh(sub);
        evs_store *s = tu_open(w, EVS_DURABILITY_NONE, 1 << 20);
        evs_app_config cfg;
        evs_app_config_init(&cfg);
        cfg.state_cache_entries = on ? 2 : 0;
        cfg.snapshot_every = 0; /* the cache alone */
        evs_app *a = open_app(s, NULL, &cfg, "v1");
        add(a, "a", 5);
        add(a, "a", 6);
        add(a, "a", 7);
        char want[256], saw[512];
        long long ns[] = {5, 6, 7, 11};
        tc_fold_json(ns, 3, want, sizeof want);
        peek(a, "a", saw, sizeof saw);
        CHECK_STR(saw, want);
        evs_app_stats st;
        CHECK_RC(evs_app_get_stats(a, &st), EVS_OK);
        if (on) {
            CHECK_INT(st.state_cache_hits, 2); /* the third Add and the Peek (a state at version 0 is not kept) */
            CHECK_INT(st.state_cache_entries, 1);
        } else {
            CHECK_INT(st.state_cache_hits, 0);
            CHECK_INT(st.state_cache_entries, 0);
        }

        /* another writer appends behind the cache's back */
        evs_event_in in;
        memset(&in, 0, sizeof in);
        in.event_type = "Added";
        in.data = "{\"n\":11}";
        in.data_len = strlen(in.data);
        evs_append_result ar;
        CHECK_RC(evs_append(s, "counter-a", 3, &in, 1, &ar, NULL), EVS_OK);
        tc_fold_json(ns, 4, want, sizeof want);
        peek(a, "a", saw, sizeof saw);
        CHECK_STR(saw, want);
        add(a, "a", 1);
        peek_is_fold(a, "a");

        /* deleted and written again: the new stream's fold, not the cached state */
        CHECK_RC(evs_stream_delete(s, "counter-a", 5, 0), EVS_OK);
        add(a, "a", 2);
        add(a, "a", 3);
        peek(a, "a", saw, sizeof saw);
        CHECK_CONTAINS(saw, "\"count\":2,\"sum\":5,");
        peek_is_fold(a, "a");

        /* more aggregates than entries: evicted states are folded again */
        for (int round = 0; round < 3; round++)
            for (int i = 0; i < 4; i++) {
                char id[8];
                snprintf(id, sizeof id, "e%d", i);
                add(a, id, 1 + i + round);
                peek_is_fold(a, id);
            }
        CHECK_RC(evs_app_get_stats(a, &st), EVS_OK);
        CHECK(st.state_cache_entries <= cfg.state_cache_entries);
        if (on) CHECK(st.state_cache_misses >= 12);
        evs_app_close(a);
        evs_store_close(s);
        cf_drop(w);
    }
}

/* A snapshot that does not describe the log (the store replaced under DIR/app/) is refused. */
static void test_foreign_snapshot(const char *d) {
    char sub[1024], cmd[8300];
    snprintf(sub, sizeof sub, "%s/foreign", d);
    evs_store *s = tu_open(sub, EVS_DURABILITY_NONE, 1 << 20);
    evs_app *a = open_app(s, NULL, NULL, "v1");
    for (int i = 0; i < 10; i++) add(a, "f", 100);
    uint64_t v;
    CHECK_RC(evs_aggregate_snapshot(a, "counter", "f", &v), EVS_OK);
    evs_app_close(a);
    evs_store_close(s);
    /* a new log with other events, the old DIR/app/ kept */
    snprintf(cmd, sizeof cmd, "rm -rf %s/keep && mv %s/app %s/keep-app && rm -rf %s/* && mkdir -p %s", sub, sub, d, sub,
             sub);
    CHECK_INT(system(cmd), 0);
    s = tu_open(sub, EVS_DURABILITY_NONE, 1 << 20);
    snprintf(cmd, sizeof cmd, "rm -rf %s/app && mv %s/keep-app %s/app", sub, d, sub);
    CHECK_INT(system(cmd), 0);
    a = open_app(s, NULL, NULL, "v1");
    evs_event_in e = tu_event("Other", "{}");
    evs_append_result ar;
    CHECK_RC(evs_append(s, "x", EVS_EXPECT_ANY, &e, 1, &ar, NULL), EVS_OK);
    long long ns[12];
    for (int i = 0; i < 12; i++) {
        ns[i] = 7;
        add(a, "f", 7);
    }
    char want[256];
    tc_fold_json(ns, 12, want, sizeof want);
    evs_load_info info;
    same_state(a, "f", want, &info);
    CHECK(info.snapshot_version == 0 || info.snapshot_version > 10);
    evs_app_close(a);
    evs_store_close(s);
}

/* ------------------------------------------------------------------- Lua */

static const char *account_lua =
    "return {\n"
    "  schema_version = 2,\n"
    "  init = { balance = 0, open = false },\n"
    "  evolve = {\n"
    "    Opened = function(s, e) s.open = true; s.owner = e.data.owner end,\n"
    "    Deposited = function(s, e) s.balance = s.balance + e.data.cents end,\n"
    "    Closed = function(s, e) return { balance = s.balance, open = false, closed = true } end,\n"
    "  },\n"
    "  commands = {\n"
    "    Open = { fields = { owner = 'string' }, decide = function(s, c)\n"
    "      if s.open or s.closed then return 'account exists' end\n"
    "      return { { type = 'Opened', data = { owner = c.data.owner } } } end },\n"
    "    Deposit = { fields = { cents = 'integer', note = 'string?' }, decide = function(s, c)\n"
    "      if not s.open then return 'account is not open' end\n"
    "      if c.data.cents <= 0 then return 'deposit must be positive' end\n"
    "      return { { type = 'Deposited', data = { cents = c.data.cents } } } end },\n"
    "    Close = { decide = function(s, c) return { { type = 'Closed' } } end },\n"
    "    Hack = { decide = function(s, c) return os.execute('true') end },\n"
    "    Spin = { decide = function(s, c) while true do end end },\n"
    "    Bad = { decide = function(s, c) return { { type = 'X', data = { 1, 2 } } } end },\n"
    /* an event behind a metatable that raises: read raw, so a failure, not an abort */
    "    Meta = { decide = function(s, c)\n"
    "      return { setmetatable({}, { __index = function(t, k) error('no ' .. k) end }) } end },\n"
    /* Lua runs finalizers with hooks off, where no budget could stop this one */
    "    Gc = { decide = function(s, c)\n"
    "      s.g = setmetatable({}, { __gc = function() while true do end end }); return {} end },\n"
    "  },\n"
    "}\n";

static void test_lua(const char *sub) {
    evs_store *s = tu_open(sub, EVS_DURABILITY_NONE, 1 << 20);
    evs_app_config cfg;
    evs_app_config_init(&cfg);
    cfg.snapshot_every = 3;
    cfg.lua_limits.instructions = 100000;
    evs_app *a = open_app(s, NULL, &cfg, NULL);
    evs_command_result r = {0};
    CHECK_RC(evs_app_register_lua_aggregate(a, "account", account_lua, strlen(account_lua)), EVS_OK);
    CHECK_RC(evs_app_register_lua_aggregate(a, "account", account_lua, strlen(account_lua)), EVS_ECONFLICT);
    CHECK_RC(evs_app_register_lua_aggregate(a, "broken", "return {", 8), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "does not compile");
    const char *nocmd = "return { evolve = {} }";
    CHECK_RC(evs_app_register_lua_aggregate(a, "nocmd", nocmd, strlen(nocmd)), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "'commands' table");
    /* the declaration behind a metatable: not consulted (its __index used to raise outside a protected call) */
    const char *meta = "return setmetatable({}, { __index = function(t, k) error('no ' .. k) end })";
    CHECK_RC(evs_app_register_lua_aggregate(a, "meta", meta, strlen(meta)), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "'evolve' table");
    CHECK_RC(run(a, "{\"command_type\":\"Deposit\",\"aggregate_id\":\"a1\",\"data\":{\"cents\":5}}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_REJECTED);
    CHECK_STR(r.reason, "account is not open");
    CHECK_RC(run(a, "{\"command_type\":\"Open\",\"aggregate_id\":\"a1\",\"data\":{}}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_INVALID);
    CHECK_CONTAINS(r.reason, "data.owner is required (string)");
    CHECK_RC(run(a, "{\"command_type\":\"Open\",\"aggregate_id\":\"a1\",\"data\":{\"owner\":\"bo\"}}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    evs_command_result_free(&r);
    for (int i = 1; i <= 10; i++) {
        char j[160];
        snprintf(j, sizeof j, "{\"command_type\":\"Deposit\",\"aggregate_id\":\"a1\",\"data\":{\"cents\":%d}}", i * 100 + 1);
        CHECK_RC(run(a, j, &r), EVS_OK);
        CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
        evs_command_result_free(&r);
    }
    CHECK_RC(run(a, "{\"command_type\":\"Deposit\",\"aggregate_id\":\"a1\",\"data\":{\"cents\":-1}}", &r), EVS_OK);
    CHECK_STR(r.reason, "deposit must be positive");
    CHECK_RC(run(a, "{\"command_type\":\"Hack\",\"aggregate_id\":\"a1\"}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_FAILED);
    CHECK_CONTAINS(r.reason, "os");
    CHECK_RC(run(a, "{\"command_type\":\"Spin\",\"aggregate_id\":\"a1\"}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_FAILED);
    CHECK_CONTAINS(r.reason, "instruction budget");
    CHECK_RC(run(a, "{\"command_type\":\"Bad\",\"aggregate_id\":\"a1\"}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_FAILED);
    CHECK_CONTAINS(r.reason, "must encode as a JSON object");
    CHECK_RC(run(a, "{\"command_type\":\"Meta\",\"aggregate_id\":\"a1\"}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_FAILED);
    CHECK_CONTAINS(r.reason, "without a string 'type'");
    CHECK_RC(run(a, "{\"command_type\":\"Gc\",\"aggregate_id\":\"a1\"}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_FAILED);
    CHECK_CONTAINS(r.reason, "__gc finalizers are not allowed");
    CHECK_RC(evs_app_flush(a), EVS_OK);
    char *js = NULL, *js2 = NULL;
    evs_load_info info;
    CHECK_RC(evs_aggregate_load_json(a, "account", "a1", 0, &js, NULL, &info), EVS_OK);
    CHECK_STR(js, "{\"balance\":5510,\"open\":true,\"owner\":\"bo\"}");
    CHECK(info.snapshot_version > 0);
    CHECK_RC(evs_aggregate_load_json(a, "account", "a1", EVS_LOAD_NO_SNAPSHOT, &js2, NULL, NULL), EVS_OK);
    CHECK_STR(js2, js);
    free(js);
    free(js2);
    CHECK_RC(run(a, "{\"command_type\":\"Close\",\"aggregate_id\":\"a1\"}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    evs_command_result_free(&r);
    CHECK_RC(run(a, "{\"command_type\":\"Open\",\"aggregate_id\":\"a1\",\"data\":{\"owner\":\"x\"}}", &r), EVS_OK);
    CHECK_STR(r.reason, "account exists");
    evs_command_result_free(&r);
    evs_app_close(a);

    /* an edited script: the old snapshots are not applied */
    a = open_app(s, NULL, &cfg, NULL);
    char *edited = malloc(strlen(account_lua) + 32);
    sprintf(edited, "-- edited\n%s", account_lua);
    CHECK_RC(evs_app_register_lua_aggregate(a, "account", edited, strlen(edited)), EVS_OK);
    CHECK_RC(evs_aggregate_load_json(a, "account", "a1", 0, &js, NULL, &info), EVS_OK);
    CHECK_STR(js, "{\"balance\":5510,\"closed\":true,\"open\":false}");
    CHECK_INT(info.snapshot_version, 0);
    CHECK(info.snapshots_ignored >= 1);
    free(js);
    free(edited);
    evs_app_close(a);
    evs_store_close(s);
}

/* ---------------------------------------------------------------- queries */

static const char *totals_lua =
    "return {\n"
    "  filter = { stream_prefix = 'counter-' },\n"
    "  init = function() return { sum = 0, n = 0 } end,\n"
    "  handlers = { Added = function(s, e) s.sum = s.sum + e.data.n; s.n = s.n + 1; s.big = s.sum >= 100 end },\n"
    "}\n";

/* A query on a thread of its own (min_position w->min, the app's timeout), as the server runs one that waits. */
typedef struct waiter {
    evs_app *a;
    uint64_t min;
    int rc;
    evs_query_result res;
    char err[512];
} waiter;

static void *wait_query(void *arg) {
    waiter *w = arg;
    evs_query_params qp;
    memset(&qp, 0, sizeof qp);
    qp.partition = "counter-w";
    qp.min_position = w->min;
    qp.timeout_ms = -1; /* the app's cap */
    w->rc = evs_app_query(w->a, "totals", &qp, &w->res);
    if (w->rc) snprintf(w->err, sizeof w->err, "%s", evs_errmsg());
    return NULL;
}

static void test_queries(const char *sub) {
    evs_store *s = tu_open(sub, EVS_DURABILITY_NONE, 1 << 20);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    evs_app *a = open_app(s, b, NULL, "v1");
    evs_proj_config pc;
    evs_proj_config_init(&pc);
    pc.checkpoint_every = 1;
    evs_projection *p;
    CHECK_RC(evs_proj_open_lua(b, "totals", totals_lua, strlen(totals_lua), NULL, &pc, &p), EVS_OK);
    static const char *const fields[] = {"sum", "n", "big"};
    evs_query_def q = {"totals", "totals", fields, 3, 2, 10};
    CHECK_RC(evs_app_register_query(a, &q), EVS_OK);
    CHECK_RC(evs_app_register_query(a, &q), EVS_ECONFLICT);
    evs_query_def q2 = {"ghost", "nothing", NULL, 0, 0, 0};
    CHECK_RC(evs_app_register_query(a, &q2), EVS_OK);
    add(a, "a", 5);
    add(a, "b", 150);
    add(a, "c", 40);
    add(a, "a", 200);
    size_t n;
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    evs_query_result res;
    evs_query_params qp;
    memset(&qp, 0, sizeof qp);
    qp.sort = "sum";
    qp.descending = 1;
    qp.limit = 10;
    CHECK_RC(evs_app_query(a, "totals", &qp, &res), EVS_OK);
    CHECK_INT(res.position, 4);
    CHECK_INT(res.total, 3);
    CHECK_INT(res.cached, 0);
    CHECK_CONTAINS(res.json, "\"items\":[{\"key\":\"counter-a\",\"state\":{\"big\":true,\"n\":2,\"sum\":205}},"
                             "{\"key\":\"counter-b\"");
    evs_query_result_free(&res);
    CHECK_RC(evs_app_query(a, "totals", &qp, &res), EVS_OK);
    CHECK_INT(res.cached, 1);
    evs_query_result_free(&res);
    /* filters and paging */
    evs_query_filter f = {"big", "false"};
    qp.filters = &f;
    qp.n_filters = 1;
    qp.sort = NULL;
    qp.descending = 0;
    qp.limit = 0; /* the default: 2 */
    CHECK_RC(evs_app_query(a, "totals", &qp, &res), EVS_OK);
    CHECK_INT(res.total, 1);
    CHECK_CONTAINS(res.json, "\"limit\":2,\"items\":[{\"key\":\"counter-c\",\"state\":{\"big\":false,\"n\":1,\"sum\":40}}]");
    evs_query_result_free(&res);
    qp.n_filters = 0;
    qp.offset = 2;
    CHECK_RC(evs_app_query(a, "totals", &qp, &res), EVS_OK);
    CHECK_CONTAINS(res.json, "\"offset\":2,\"limit\":2,\"items\":[{\"key\":\"counter-c\"");
    evs_query_result_free(&res);
    qp.offset = 0;
    evs_query_filter f2 = {"owner", "x"};
    qp.filters = &f2;
    qp.n_filters = 1;
    CHECK_RC(evs_app_query(a, "totals", &qp, &res), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "cannot filter by \"owner\"");
    qp.n_filters = 0;
    qp.limit = 11;
    CHECK_RC(evs_app_query(a, "totals", &qp, &res), EVS_ELIMIT);
    qp.limit = 0;
    CHECK_RC(evs_app_query(a, "nope", &qp, &res), EVS_ENOTFOUND);
    CHECK_RC(evs_app_query(a, "ghost", &qp, &res), EVS_ENOTFOUND);

    /* read-your-writes: a command, then a query at its position */
    evs_command c;
    evs_command_init(&c);
    c.command_type = "Add";
    c.aggregate_id = "c";
    c.data = "{\"n\":70}";
    c.data_len = strlen(c.data);
    evs_command_result cr;
    CHECK_RC(evs_app_execute(a, &c, &cr), EVS_OK);
    qp.min_position = cr.last_position;
    qp.timeout_ms = 50;
    CHECK_RC(evs_app_query(a, "totals", &qp, &res), EVS_ETIMEDOUT); /* nobody polls the projection */
    CHECK_CONTAINS(evs_errmsg(), "is at position 4, not yet at 5");
    /* a wait longer than one slice (query.c) times out as one wait, naming the whole timeout */
    qp.timeout_ms = 250;
    CHECK_RC(evs_app_query(a, "totals", &qp, &res), EVS_ETIMEDOUT);
    CHECK_CONTAINS(evs_errmsg(), "is at position 4, not yet at 5 after 250 ms");
    qp.timeout_ms = 50;
    /* what the server asks before it answers a query on its worker */
    CHECK_INT(evs__app_query_reached(a, "totals", 5, 0), 0);
    CHECK_INT(evs__app_query_reached(a, "totals", 4, 0), 1);
    CHECK_INT(evs__app_query_reached(a, "nope", 5, 0), 1);  /* the query itself says what is wrong */
    CHECK_INT(evs__app_query_reached(a, "ghost", 5, 0), 1);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    qp.partition = "counter-c";
    CHECK_RC(evs_app_query(a, "totals", &qp, &res), EVS_OK);
    CHECK_INT(res.position, 5);
    CHECK_CONTAINS(res.json, "{\"key\":\"counter-c\",\"state\":{\"big\":true,\"n\":2,\"sum\":110}}");
    evs_query_result_free(&res);
    evs_command_result_free(&cr);
    /* the cached sorted answer is not served once the projection moved */
    qp.partition = NULL;
    qp.min_position = 0;
    qp.sort = "sum";
    qp.descending = 1;
    qp.limit = 10;
    CHECK_RC(evs_app_query(a, "totals", &qp, &res), EVS_OK);
    CHECK_INT(res.cached, 0);
    CHECK_INT(res.position, 5);
    CHECK_CONTAINS(res.json, "{\"key\":\"counter-c\",\"state\":{\"big\":true,\"n\":2,\"sum\":110}}");
    evs_query_result_free(&res);
    evs_app_stats st;
    evs_app_get_stats(a, &st);
    CHECK_INT(st.query_cache_hits, 1);
    CHECK(st.query_cache_misses >= 5);
    CHECK_INT(st.query_timeouts, 2);
    /* interrupted (a server stopping): a wait ends with EVS_ECLOSED, one that is already there does not */
    waiter w;
    memset(&w, 0, sizeof w);
    w.a = a;
    w.min = 1000;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, wait_query, &w) == 0);
    usleep(50 * 1000);
    evs__app_interrupt(a);
    pthread_join(t, NULL);
    CHECK_RC(w.rc, EVS_ECLOSED); /* not ETIMEDOUT after the app's 5 s */
    CHECK_CONTAINS(w.err, "the wait for position 1000 ended: the application layer is stopping");
    qp.min_position = 1000;
    CHECK_RC(evs_app_query(a, "totals", &qp, &res), EVS_ECLOSED);
    CHECK_INT(evs__app_query_reached(a, "totals", 1000, 0), 1);
    qp.min_position = 5;
    CHECK_RC(evs_app_query(a, "totals", &qp, &res), EVS_OK);
    CHECK_INT(res.position, 5);
    evs_query_result_free(&res);
    evs_proj_close(p);
    evs_app_close(a);
    evs_bus_close(b);
    evs_store_close(s);
}

/* A given causation id lands on every event; one that is not a UUID is invalid; lookups never run a command. */
static void test_causation_and_lookup(const char *d) {
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_app *a = open_app(s, NULL, NULL, "v1");
    evs_command_result r = {0};
    CHECK_RC(run(a,
                 "{\"command_id\":\"cz-1\",\"command_type\":\"Add\",\"aggregate_id\":\"c\",\"data\":{\"n\":3},"
                 "\"causation_id\":\"0190a4e2-7b1c-7cc0-8000-0000000000ca\"}",
                 &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    evs_reader *rd;
    const evs_event *ev;
    char u[37];
    CHECK_RC(evs_read_stream(s, "counter-c", 1, EVS_FORWARD, 0, &rd), EVS_OK);
    CHECK_RC(evs_reader_next(rd, &ev), EVS_OK);
    CHECK(ev->has_causation_id);
    evs_uuid_format(&ev->causation_id, u);
    CHECK_STR(u, "0190a4e2-7b1c-7cc0-8000-0000000000ca");
    evs_reader_close(rd);
    CHECK_RC(run(a, "{\"command_type\":\"Add\",\"aggregate_id\":\"c\",\"data\":{\"n\":3},\"causation_id\":\"nope\"}", &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_INVALID);
    CHECK_CONTAINS(r.reason, "causation_id \"nope\" is not a UUID");
    CHECK_RC(run(a, "{\"command_type\":\"Add\",\"aggregate_id\":\"c\",\"causation_id\":7}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_INVALID);
    evs_command_result_free(&r);

    /* lookups: accepted (with its events), rejected (kept result), never sent */
    uint64_t head = evs_head(s);
    CHECK_INT(evs__app_command_lookup(a, "cz-1", &r), 1);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    CHECK_INT(r.n_events, 1);
    CHECK_STR(r.stream, "counter-c");
    evs_command_result_free(&r);
    CHECK_RC(run(a, "{\"command_id\":\"cz-2\",\"command_type\":\"Add\",\"aggregate_id\":\"c\",\"data\":{\"n\":0}}", &r),
             EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_REJECTED);
    evs_command_result_free(&r);
    CHECK_INT(evs__app_command_lookup(a, "cz-2", &r), 1);
    CHECK_INT(r.outcome, EVS_CMD_REJECTED);
    CHECK_STR(r.reason, "n must be at least 1");
    evs_command_result_free(&r);
    CHECK_INT(evs__app_command_lookup(a, "cz-3", &r), 0);
    CHECK_INT(evs_head(s), head);
    evs_app_close(a);
    evs_store_close(s);
}

/* ------------------------------------------------- two servers, one database */

/* The events of a stream, read from the database. */
static size_t stream_len(evs_store *s, const char *stream) {
    evs_reader *rd;
    const evs_event *ev;
    size_t n = 0;
    if (evs_read_stream(s, stream, 1, EVS_FORWARD, 0, &rd) != EVS_OK) return 0;
    while (evs_reader_next(rd, &ev) == EVS_OK) n++;
    evs_reader_close(rd);
    return n;
}

/*
 * PostgreSQL: two store handles on one database, each with its bus and app,
 * as two servers have.  A command through A retried through B answers A's
 * result and appends nothing (accepted: its events are the record;
 * rejected: the results table is shared); a query through B with the
 * position of A's command waits for the projection, which runs in A (its
 * lease is A's), and B's cache never serves an answer A's projection has
 * moved past; a snapshot written through A serves B; a script kept through
 * A is loaded by an app opened later on B's store.
 */
static void test_two_servers(const char *url) {
    evs_store *s1 = tu_open(url, EVS_DURABILITY_NONE, 0), *s2 = tu_open(url, EVS_DURABILITY_NONE, 0);
    evs_bus *b1, *b2;
    CHECK_RC(evs_bus_open(s1, &b1), EVS_OK);
    CHECK_RC(evs_bus_open(s2, &b2), EVS_OK);
    evs_app_config cfg;
    evs_app_config_init(&cfg);
    cfg.query_timeout_ms = 60000; /* the wait below ends when the projection passes, long before */
    evs_app *A = open_app(s1, b1, &cfg, "v1"), *B = open_app(s2, b2, &cfg, "v1");
    static const char *const fields[] = {"sum", "n", "big"};
    evs_query_def q = {"totals", "totals", fields, 3, 10, 10};
    CHECK_RC(evs_app_register_query(A, &q), EVS_OK);
    CHECK_RC(evs_app_register_query(B, &q), EVS_OK);
    evs_proj_config pc;
    evs_proj_config_init(&pc);
    pc.checkpoint_every = 1;
    evs_projection *p, *p2 = NULL;
    CHECK_RC(evs_proj_open_lua(b1, "totals", totals_lua, strlen(totals_lua), NULL, &pc, &p), EVS_OK);
    CHECK_RC(evs_proj_open_lua(b2, "totals", totals_lua, strlen(totals_lua), NULL, &pc, &p2), EVS_ELOCKED);

    /* accepted through A, retried through B: A's result, nothing appended */
    evs_command_result r = {0}, r2 = {0};
    const char *cmd = "{\"command_id\":\"two-1\",\"command_type\":\"Add\",\"aggregate_id\":\"w\",\"data\":{\"n\":7}}";
    CHECK_RC(run(A, cmd, &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    CHECK_INT(r.idempotent, 0);
    CHECK_RC(run(B, cmd, &r2), EVS_OK);
    CHECK_INT(r2.outcome, EVS_CMD_ACCEPTED);
    CHECK_INT(r2.idempotent, 1);
    CHECK_INT(r2.first_position, r.first_position);
    CHECK_INT(r2.last_position, r.last_position);
    CHECK_INT(r2.version, r.version);
    CHECK_INT(r2.n_events, r.n_events);
    if (r.n_events == 1 && r2.n_events == 1) CHECK(memcmp(&r.event_ids[0], &r2.event_ids[0], 16) == 0);
    CHECK_INT(stream_len(s1, "counter-w"), 1);
    /* the same id for another aggregate through B: refused, not answered with A's result */
    CHECK_RC(run(B, "{\"command_id\":\"two-1\",\"command_type\":\"Add\",\"aggregate_id\":\"v\",\"data\":{\"n\":7}}", &r2),
             EVS_OK);
    CHECK_INT(r2.outcome, EVS_CMD_INVALID);
    CHECK_CONTAINS(r2.reason, "already used");
    /* rejected through A, retried through B: the recorded rejection */
    const char *rej = "{\"command_id\":\"two-rej\",\"command_type\":\"Add\",\"aggregate_id\":\"w\",\"data\":{\"n\":0}}";
    CHECK_RC(run(A, rej, &r2), EVS_OK);
    CHECK_INT(r2.outcome, EVS_CMD_REJECTED);
    CHECK_INT(r2.idempotent, 0);
    CHECK_RC(run(B, rej, &r2), EVS_OK);
    CHECK_INT(r2.outcome, EVS_CMD_REJECTED);
    CHECK_INT(r2.idempotent, 1);
    CHECK_STR(r2.reason, "n must be at least 1");
    CHECK_INT(stream_len(s1, "counter-w"), 1);
    evs_command_result_free(&r2);

    /* read-your-writes through B while the projection runs in A: nobody has run it yet ... */
    evs_query_params qp;
    evs_query_result res;
    memset(&qp, 0, sizeof qp);
    qp.partition = "counter-w";
    qp.min_position = r.last_position;
    qp.timeout_ms = 0;
    CHECK_RC(evs_app_query(B, "totals", &qp, &res), EVS_ETIMEDOUT);
    /* ... then B waits, and A's projection commits (a commit B's bus is never told of) */
    waiter w;
    memset(&w, 0, sizeof w);
    w.a = B;
    w.min = r.last_position;
    pthread_t th;
    CHECK_INT(pthread_create(&th, NULL, wait_query, &w), 0);
    evs_app_stats st;
    do {
        usleep(1000);
        evs_app_get_stats(B, &st);
    } while (st.query_waits < 2); /* the query is in its wait (or about to be) */
    size_t n;
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    pthread_join(th, NULL);
    if (w.rc) fprintf(stderr, "the wait through B: %s\n", w.err);
    CHECK_RC(w.rc, EVS_OK);
    CHECK(w.res.position >= r.last_position);
    if (w.res.json) CHECK_CONTAINS(w.res.json, "{\"key\":\"counter-w\",\"state\":{\"big\":false,\"n\":1,\"sum\":7}}");
    evs_query_result_free(&w.res);
    evs_command_result_free(&r);

    /* B's cache: a hit while nothing moved, never once A's projection moved */
    memset(&qp, 0, sizeof qp);
    qp.sort = "sum";
    CHECK_RC(evs_app_query(B, "totals", &qp, &res), EVS_OK);
    uint64_t pos0 = res.position;
    evs_query_result_free(&res);
    CHECK_RC(evs_app_query(B, "totals", &qp, &res), EVS_OK);
    CHECK_INT(res.cached, 1);
    evs_query_result_free(&res);
    CHECK_RC(run(A, "{\"command_type\":\"Add\",\"aggregate_id\":\"w\",\"data\":{\"n\":5}}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    evs_command_result_free(&r);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_app_query(B, "totals", &qp, &res), EVS_OK);
    CHECK_INT(res.cached, 0);
    CHECK(res.position > pos0);
    if (res.json) CHECK_CONTAINS(res.json, "\"sum\":12");
    evs_query_result_free(&res);

    /* a snapshot written through A serves B */
    uint64_t v = 0;
    CHECK_RC(evs_aggregate_snapshot(A, "counter", "w", &v), EVS_OK);
    CHECK_INT(v, 2);
    evs_snapshot_info si[4];
    size_t cnt = 0;
    CHECK_RC(evs_aggregate_snapshots(B, "counter", "w", si, 4, &cnt), EVS_OK);
    CHECK_INT(cnt, 1);
    if (cnt == 1) {
        CHECK_INT(si[0].version, 2);
        CHECK(si[0].usable);
    }
    char *js = NULL;
    evs_load_info info;
    CHECK_RC(evs_aggregate_load_json(B, "counter", "w", 0, &js, NULL, &info), EVS_OK);
    CHECK_INT(info.snapshot_version, 2);
    CHECK_INT(info.events_applied, 0);
    free(js);

    /* a script kept through A is loaded by an app opened later on B's store */
    int what = 0;
    CHECK_RC(evs_app_put_lua_aggregate(A, "account", account_lua, strlen(account_lua), &what), EVS_OK);
    CHECK_INT(what, EVS_PUT_CREATED);
    evs_app *C = open_app(s2, b2, &cfg, NULL);
    char report[1024];
    CHECK_RC(evs_app_load_stored(C, report, sizeof report), EVS_OK);
    CHECK_STR(report, "");
    CHECK_RC(run(C, "{\"command_type\":\"Open\",\"aggregate_id\":\"a9\",\"data\":{\"owner\":\"bo\"}}", &r), EVS_OK);
    CHECK_INT(r.outcome, EVS_CMD_ACCEPTED);
    evs_command_result_free(&r);
    char *desc = NULL;
    CHECK_RC(evs_app_describe(C, "account", &desc, NULL), EVS_OK);
    if (desc) CHECK_CONTAINS(desc, "\"origin\":\"stored\"");
    free(desc);
    evs_app_close(C);

    evs_proj_close(p);
    evs_app_close(A);
    evs_app_close(B);
    evs_bus_close(b1);
    evs_bus_close(b2);
    evs_store_close(s1);
    evs_store_close(s2);
}

/* Run test(where) on a fresh store location. */
static void fresh(const char *tag, void (*test)(const char *)) {
    char *w = cf_fresh(tag);
    test(w);
    cf_drop(w);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    fresh("app-cmd", test_commands);
    fresh("app-causation", test_causation_and_lookup);
    test_snapshots();
    test_state_cache("app-cache");
    if (cf_pg) {
        printf("skipped on postgresql: test_foreign_snapshot (it replaces the log under DIR/app/, files only the "
               "embedded engine has)\n");
    } else {
        char *d = tu_tempdir("app");
        test_foreign_snapshot(d);
        tu_rmrf(d);
        free(d);
    }
    fresh("app-lua", test_lua);
    fresh("app-query", test_queries);
    if (cf_pg) fresh("app-two", test_two_servers);
    return TEST_REPORT();
}

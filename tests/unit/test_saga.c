/*
 * test_saga.c — the saga engine in one thread (evs_saga_engine_run) with a
 * fake clock: every transition of the state machine, retries and their
 * schedule, step and saga timeouts, answers and failure events, parallel
 * groups, compensation in reverse and exactly once (also when a crashed
 * run's commands already went out), compensation failures, the operator's
 * actions, leases held by another node, restarts with timers due, the index
 * (listing, stuck, paging, stats), Lua definitions, and bad input.
 *
 * On either storage engine (tests/conformance.h): no argument or
 * "embedded", or "postgresql" (each test on a database of its own).
 */
#include "conformance.h"
#include "saga_fixture.h"

static const char *const N3[] = {"s0", "s1", "s2"};

/* ------------------------------------------------------------- happy path */

static void test_completes(const char *d) {
    sf f;
    sf_open(&f, d, 0, 1000 * SF_SEC);
    sf_register(&f, "job", N3, NULL, 3, NULL);
    sf_launch(&f, "j1", "{\"s0\":{\"res\":\"a\"},\"s1\":{\"res\":[\"b\",\"c\"]},\"s2\":{\"res\":\"d\"}}");
    sf_run(&f);
    char *h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepCompleted(1) SagaStepCompleted(2) SagaCompleted");
    free(h);
    char *x = sf_effects(&f, "j1");
    /* the two commands of the parallel step s1 may be appended in either order */
    const char *par = "Reserved:res-a:a/s0/0/1 Reserved:res-c:a/s1/1/1 Reserved:res-b:a/s1/0/1 Reserved:res-d:a/s2/0/1";
    if (x && strcmp(x, par) == 0) CHECK_STR(x, par);
    else CHECK_STR(x, "Reserved:res-a:a/s0/0/1 Reserved:res-b:a/s1/0/1 Reserved:res-c:a/s1/1/1 Reserved:res-d:a/s2/0/1");
    free(x);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_COMPLETED);
    CHECK_STR(in.stream, "saga-job-j1");
    CHECK_INT(in.step, -1);
    CHECK_INT(in.next_due, 0);

    /* what the commands carry: the saga's correlation id, the trigger as causation, the command id scheme */
    evs_reader *r;
    const evs_event *ev;
    CHECK_RC(evs_read_stream(f.s, "job-j1", 1, EVS_FORWARD, 1, &r), EVS_OK);
    CHECK_RC(evs_reader_next(r, &ev), EVS_OK);
    evs_uuid trigger = ev->event_id;
    evs_reader_close(r);
    CHECK_RC(evs_read_stream(f.s, "res-c", 1, EVS_FORWARD, 1, &r), EVS_OK);
    CHECK_RC(evs_reader_next(r, &ev), EVS_OK);
    CHECK(ev->has_correlation_id && memcmp(&ev->correlation_id, &in.correlation_id, 16) == 0);
    CHECK(ev->has_causation_id && memcmp(&ev->causation_id, &trigger, 16) == 0);
    json_t *m = json_loadb(ev->metadata, ev->metadata_len, 0, NULL);
    CHECK_STR(json_string_value(json_object_get(m, "command_id")), "saga/job/j1/1/a1/1");
    CHECK_STR(json_string_value(json_object_get(m, "saga")), "job");
    CHECK_STR(json_string_value(json_object_get(m, "saga_phase")), "action");
    json_decref(m);
    evs_reader_close(r);
    /* the saga's own events carry its correlation id too */
    CHECK_RC(evs_read_stream(f.s, "saga-job-j1", 1, EVS_FORWARD, 1, &r), EVS_OK);
    CHECK_RC(evs_reader_next(r, &ev), EVS_OK);
    CHECK(ev->has_correlation_id && memcmp(&ev->correlation_id, &in.correlation_id, 16) == 0);
    evs_reader_close(r);

    /* the index: counters, states, step durations */
    evs_saga_type_stats ts[4];
    size_t n;
    CHECK_RC(evs_saga_get_type_stats(f.e, ts, 4, &n), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_STR(ts[0].type, "job");
    CHECK_INT(ts[0].started, 1);
    CHECK_INT(ts[0].completed, 1);
    CHECK_INT(ts[0].by_state[EVS_SAGA_COMPLETED], 1);
    CHECK_INT(ts[0].by_state[EVS_SAGA_RUNNING], 0);
    evs_saga_step_stats ss[8];
    CHECK_RC(evs_saga_get_step_stats(f.e, ss, 8, &n), EVS_OK);
    CHECK_INT(n, 3);
    CHECK_INT(ss[0].count, 1);
    CHECK_STR(ss[1].step, "s1");
    /* launched again (a re-sent command): nothing new */
    sf_launch(&f, "j1", "{}");
    sf_run(&f);
    CHECK_RC(evs_saga_get_type_stats(f.e, ts, 4, &n), EVS_OK);
    CHECK_INT(ts[0].started, 1);
    sf_close(&f);
}

/* A second starting event for an existing instance starts nothing. */
static void test_duplicate_start(const char *d) {
    sf f;
    sf_open(&f, d, 0, 1000 * SF_SEC);
    sf_register(&f, "job", N3, NULL, 1, NULL);
    sf_launch(&f, "j1", "{\"s0\":{\"res\":\"a\"}}");
    sf_run(&f);
    /* a second Launch of job j1 under a new command id: a second JobLaunched for the same id */
    CHECK_INT(sf_cmd(&f, "{\"command_type\":\"Launch\",\"aggregate_id\":\"j1\",\"data\":{\"plan\":{}}}"), EVS_CMD_ACCEPTED);
    sf_run(&f);
    char *h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaCompleted");
    free(h);
    evs_saga_engine_stats es;
    CHECK_RC(evs_saga_get_engine_stats(f.e, &es), EVS_OK);
    CHECK_INT(es.duplicate_starts, 1);
    sf_close(&f);
}

/* ------------------------------------------------------- failures, retries */

static void tweak_retry_rejected(evs_saga_def *d, evs_saga_step_def *s) {
    (void)d;
    s[1].retry.retry_on = EVS_SAGA_ON_REJECTED;
    s[1].retry.max_attempts = 3;
    s[1].retry.initial_delay_ns = SF_SEC;
    s[1].retry.backoff = EVS_BACKOFF_EXPONENTIAL;
}

/* Rejections retried on the fake clock's schedule: 1 s, then 2 s; the third attempt succeeds. */
static void test_retries(const char *d) {
    sf f;
    int64_t t0 = 1000 * SF_SEC;
    sf_open(&f, d, 0, t0);
    sf_register(&f, "job", N3, NULL, 3, tweak_retry_rejected);
    sf_launch(&f, "j1", "{\"s0\":{\"res\":\"a\"},\"s1\":{\"res\":\"b\",\"ok_from\":3},\"s2\":{\"res\":\"c\"}}");
    sf_run(&f);
    char *h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepFailed(1:rejected+r)");
    free(h);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_RUNNING);
    CHECK_STR(in.step_name, "s1");
    CHECK_INT(in.attempt, 2);
    CHECK_INT(in.next_due, t0 + SF_SEC);
    CHECK_CONTAINS(in.last_error, "not yet (attempt 1)");
    /* the timer is indexed */
    evs_saga_engine_stats es;
    CHECK_RC(evs_saga_get_engine_stats(f.e, &es), EVS_OK);
    CHECK_INT(es.timers_pending, 1);
    sf_advance(&f, SF_SEC - 1); /* not yet */
    sf_run(&f);
    h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepFailed(1:rejected+r)");
    free(h);
    sf_advance(&f, 1);
    sf_run(&f);
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.attempt, 3);
    CHECK_INT(in.next_due, t0 + SF_SEC + 2 * SF_SEC); /* exponential: the second wait is 2 s */
    sf_advance(&f, 2 * SF_SEC);
    sf_run(&f);
    h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepFailed(1:rejected+r) SagaStepFailed(1:rejected+r) "
                 "SagaStepCompleted(1) SagaStepCompleted(2) SagaCompleted");
    free(h);
    char *x = sf_effects(&f, "j1");
    CHECK_STR(x, "Reserved:res-a:a/s0/0/1 Reserved:res-b:a/s1/0/3 Reserved:res-c:a/s2/0/1");
    free(x);
    CHECK_RC(evs_saga_get_engine_stats(f.e, &es), EVS_OK);
    CHECK_INT(es.timers_pending, 0);
    CHECK_INT(es.timers_fired, 2);
    evs_saga_type_stats ts;
    size_t n;
    CHECK_RC(evs_saga_get_type_stats(f.e, &ts, 1, &n), EVS_OK);
    CHECK_INT(ts.step_failures, 2);
    sf_close(&f);
}

static void tweak_jitter(evs_saga_def *d, evs_saga_step_def *s) {
    tweak_retry_rejected(d, s);
    s[1].retry.jitter = 0.5;
    s[1].retry.backoff = EVS_BACKOFF_FIXED;
    s[1].retry.initial_delay_ns = 4 * SF_SEC;
}

/* Jitter spreads the delay by the clock's randomness: random = 3/4 of the range gives +25 %. */
static void test_jitter(const char *d) {
    sf f;
    int64_t t0 = 1000 * SF_SEC;
    sf_open(&f, d, 0, t0);
    f.clk.rnd = 0xC000000000000000ull;
    sf_register(&f, "job", N3, NULL, 2, tweak_jitter);
    sf_launch(&f, "j1", "{\"s0\":{\"res\":\"a\"},\"s1\":{\"res\":\"b\",\"ok_from\":2}}");
    sf_run(&f);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.next_due, t0 + 5 * SF_SEC); /* 4 s * (1 + 0.5 * (2 * 0.75 - 1)) */
    sf_advance(&f, 5 * SF_SEC);
    sf_run(&f);
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_COMPLETED);
    sf_close(&f);
}

/* A rejection that is not retried: the steps that took effect are compensated, newest first, once each. */
static void test_compensation_order(const char *d) {
    static const char *const N5[] = {"s0", "s1", "s2", "s3", "s4"};
    sf f;
    sf_open(&f, d, 0, 1000 * SF_SEC);
    sf_register(&f, "job", N5, NULL, 5, NULL);
    /* s3 finds res-x held by someone else */
    CHECK_INT(sf_cmd(&f, "{\"command_type\":\"Reserve\",\"aggregate_id\":\"x\",\"data\":{\"by\":\"other\"}}"),
              EVS_CMD_ACCEPTED);
    sf_launch(&f, "j1",
              "{\"s0\":{\"res\":\"a\"},\"s1\":{\"res\":[\"b\",\"c\"]},\"s2\":{\"res\":\"d\"},\"s3\":{\"res\":[\"e\",\"x\"]},"
              "\"s4\":{\"res\":\"f\"}}");
    sf_run(&f);
    char *h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepCompleted(1) SagaStepCompleted(2) SagaStepFailed(3:rejected) "
                 "SagaCompensating SagaCompensationDone(3) SagaCompensationDone(2) SagaCompensationDone(1) "
                 "SagaCompensationDone(0) SagaCompensated");
    free(h);
    /* s3's first effect (res-e) took effect before res-x refused: it is released too; s4 never ran */
    char *x = sf_effects(&f, "j1");
    /* s1's two releases go out in parallel (max_parallel 5): either order, both between s2's and s0's */
    const char *b1 = strstr(x, "Released:res-b:c/s1/0/1 Released:res-c:c/s1/1/1"),
               *b2 = strstr(x, "Released:res-c:c/s1/1/1 Released:res-b:c/s1/0/1");
    CHECK(b1 || b2);
    /* so do its two reservations */
    const char *f1 = "Reserved:res-a:a/s0/0/1 Reserved:res-b:a/s1/0/1 Reserved:res-c:a/s1/1/1 Reserved:res-d:a/s2/0/1 "
                     "Reserved:res-e:a/s3/0/1 Released:res-e:c/s3/0/1 Released:res-d:c/s2/0/1 Released:res-",
               *f2 = "Reserved:res-a:a/s0/0/1 Reserved:res-c:a/s1/1/1 Reserved:res-b:a/s1/0/1 Reserved:res-d:a/s2/0/1 "
                     "Reserved:res-e:a/s3/0/1 Released:res-e:c/s3/0/1 Released:res-d:c/s2/0/1 Released:res-";
    CHECK(strncmp(x, f1, strlen(f1)) == 0 || strncmp(x, f2, strlen(f2)) == 0);
    CHECK(strstr(x, "Released:res-a:c/s0/0/1") == x + strlen(x) - strlen("Released:res-a:c/s0/0/1"));
    free(x);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_COMPENSATED);
    CHECK_CONTAINS(in.last_error, "held by other");
    evs_saga_type_stats ts;
    size_t n;
    CHECK_RC(evs_saga_get_type_stats(f.e, &ts, 1, &n), EVS_OK);
    CHECK_INT(ts.compensated, 1);
    CHECK_INT(ts.completed, 0);
    sf_close(&f);
}

/* Nothing took effect: the saga fails without compensating. */
static void test_fails_without_effect(const char *d) {
    sf f;
    sf_open(&f, d, 0, 1000 * SF_SEC);
    sf_register(&f, "job", N3, NULL, 2, NULL);
    CHECK_INT(sf_cmd(&f, "{\"command_type\":\"Reserve\",\"aggregate_id\":\"x\",\"data\":{\"by\":\"other\"}}"),
              EVS_CMD_ACCEPTED);
    sf_launch(&f, "j1", "{\"s0\":{\"res\":\"x\"},\"s1\":{\"res\":\"b\"}}");
    sf_run(&f);
    char *h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepFailed(0:rejected) SagaFailed");
    free(h);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_FAILED);
    CHECK_CONTAINS(in.last_error, "nothing to compensate");
    sf_close(&f);
}

/* A crashed run's commands already went out (same ids): the re-run gets their first results, nothing twice. */
static void test_rerun_after_crash(const char *d) {
    sf f;
    sf_open(&f, d, 0, 1000 * SF_SEC);
    sf_register(&f, "job", N3, NULL, 3, NULL);
    sf_launch(&f, "j1", "{\"s0\":{\"res\":\"a\"},\"s1\":{\"res\":\"b\"},\"s2\":{\"res\":\"c\"}}");
    /* what a run killed after sending s0 and s1 but before recording anything leaves behind: the commands */
    CHECK_INT(sf_cmd(&f, "{\"command_id\":\"saga/job/j1/0/a0/1\",\"command_type\":\"Reserve\",\"aggregate_id\":\"a\","
                         "\"data\":{\"by\":\"j1\"},\"metadata\":{\"saga\":\"job\",\"saga_id\":\"j1\",\"saga_step\":\"s0\","
                         "\"saga_phase\":\"action\",\"saga_effect\":0,\"saga_attempt\":1}}"),
              EVS_CMD_ACCEPTED);
    CHECK_INT(sf_cmd(&f, "{\"command_id\":\"saga/job/j1/1/a0/1\",\"command_type\":\"Reserve\",\"aggregate_id\":\"b\","
                         "\"data\":{\"by\":\"j1\"},\"metadata\":{\"saga\":\"job\",\"saga_id\":\"j1\",\"saga_step\":\"s1\","
                         "\"saga_phase\":\"action\",\"saga_effect\":0,\"saga_attempt\":1}}"),
              EVS_CMD_ACCEPTED);
    sf_run(&f);
    char *h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepCompleted(1) SagaStepCompleted(2) SagaCompleted");
    free(h);
    /* one Reserved each: the engine's sends of s0 and s1 were answered from the first run */
    char *x = sf_effects(&f, "j1");
    CHECK_STR(x, "Reserved:res-a:a/s0/0/1 Reserved:res-b:a/s1/0/1 Reserved:res-c:a/s2/0/1");
    free(x);
    sf_close(&f);
}

/* ------------------------------------------------------- answers, timeouts */

static void tweak_wait(evs_saga_def *d, evs_saga_step_def *s) {
    (void)d;
    static const char *const ok[] = {"Answered"}, *const no[] = {"Declined"};
    s[1].complete_on = ok;
    s[1].n_complete_on = 1;
    s[1].fail_on = no;
    s[1].n_fail_on = 1;
    s[1].timeout_ns = 10 * SF_SEC;
    s[1].retry.max_attempts = 2;
    s[1].retry.initial_delay_ns = SF_SEC;
    s[1].retry.retry_on = EVS_SAGA_ON_TIMEOUT;
}

static void test_answers_and_timeouts(const char *d) {
    sf f;
    int64_t t0 = 1000 * SF_SEC;
    sf_open(&f, d, 0, t0);
    sf_register(&f, "job", N3, NULL, 3, tweak_wait);
    /* j1: answered */
    sf_launch(&f, "j1", "{\"s0\":{\"res\":\"a1\"},\"s1\":{\"res\":\"b1\"},\"s2\":{\"res\":\"c1\"}}");
    sf_run(&f);
    char *h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepWaiting(1)");
    free(h);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.next_due, t0 + 10 * SF_SEC);
    sf_answer(&f, "job", "j1", "x1", 1);
    sf_run(&f);
    h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepWaiting(1) SagaStepCompleted(1) SagaStepCompleted(2) SagaCompleted");
    free(h);
    /* an answer for another saga's correlation id completes nothing */
    sf_launch(&f, "j2", "{\"s0\":{\"res\":\"a2\"},\"s1\":{\"res\":\"b2\"},\"s2\":{\"res\":\"c2\"}}");
    sf_run(&f);
    CHECK_INT(sf_cmd(&f, "{\"command_type\":\"Answer\",\"aggregate_id\":\"x9\",\"correlation_id\":"
                         "\"0190a4e2-7b1c-7cc0-8000-0000000000cc\",\"data\":{\"ok\":true}}"),
              EVS_CMD_ACCEPTED);
    sf_run(&f);
    /* j2: the failure event, not retried (retry_on is timeouts only): compensated */
    sf_answer(&f, "job", "j2", "x2", 0);
    sf_run(&f);
    h = sf_history(&f, "job", "j2");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepWaiting(1) SagaStepFailed(1:event) SagaCompensating "
                 "SagaCompensationDone(1) SagaCompensationDone(0) SagaCompensated");
    free(h);
    /* j3: no answer: the timeout, one retry (a new attempt, its effect sent again), the timeout again */
    sf_launch(&f, "j3", "{\"s0\":{\"res\":\"a3\"},\"s1\":{\"res\":\"b3\"},\"s2\":{\"res\":\"c3\"}}");
    sf_run(&f);
    sf_advance(&f, 10 * SF_SEC - 1);
    sf_run(&f);
    CHECK_RC(evs_saga_get(f.e, "job", "j3", &in), EVS_OK);
    CHECK_INT(in.attempt, 1);
    sf_advance(&f, 1);
    sf_run(&f);
    h = sf_history(&f, "job", "j3");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepWaiting(1) SagaStepFailed(1:timeout+r)");
    free(h);
    sf_advance(&f, SF_SEC);
    sf_run(&f);
    h = sf_history(&f, "job", "j3");
    /* attempt 2 re-sends Reserve on b3: held by j3 already, so it is rejected, which fails the step for good */
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepWaiting(1) SagaStepFailed(1:timeout+r) "
                 "SagaStepFailed(1:rejected) SagaCompensating SagaCompensationDone(1) SagaCompensationDone(0) "
                 "SagaCompensated");
    free(h);
    char *x = sf_effects(&f, "j3");
    CHECK_STR(x, "Reserved:res-a3:a/s0/0/1 Reserved:res-b3:a/s1/0/1 Released:res-b3:c/s1/0/1 Released:res-a3:c/s0/0/1");
    free(x);
    sf_close(&f);
}

static void tweak_saga_timeout(evs_saga_def *d, evs_saga_step_def *s) {
    tweak_wait(d, s);
    d->timeout_ns = 5 * SF_SEC;
}

/* The saga's own timeout ends a wait early, without retry. */
static void test_saga_timeout(const char *d) {
    sf f;
    sf_open(&f, d, 0, 1000 * SF_SEC);
    sf_register(&f, "job", N3, NULL, 3, tweak_saga_timeout);
    sf_launch(&f, "j1", "{\"s0\":{\"res\":\"a\"},\"s1\":{\"res\":\"b\"},\"s2\":{\"res\":\"c\"}}");
    sf_run(&f);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.next_due, 1005 * SF_SEC);
    sf_advance(&f, 5 * SF_SEC);
    sf_run(&f);
    char *h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepWaiting(1) SagaStepFailed(1:saga_timeout) SagaCompensating "
                 "SagaCompensationDone(1) SagaCompensationDone(0) SagaCompensated");
    free(h);
    sf_close(&f);
}

/* ---------------------------------------------------------- parallel */

/* s1, s2, s3 in one group: sent together; s2 refused; s1 and s3 compensated together, then s0. */
static void test_parallel(const char *d) {
    static const char *const N5[] = {"s0", "s1", "s2", "s3", "s4"};
    static const uint32_t G[] = {0, 7, 7, 7, 0};
    sf f;
    sf_open(&f, d, 0, 1000 * SF_SEC);
    sf_register(&f, "job", N5, G, 5, NULL);
    sf_launch(&f, "ok", "{\"s0\":{\"res\":\"a\"},\"s1\":{\"res\":\"b\"},\"s2\":{\"res\":\"c\"},\"s3\":{\"res\":\"d\"},"
                        "\"s4\":{\"res\":\"e\"}}");
    sf_run(&f);
    char *h = sf_history(&f, "job", "ok");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepCompleted(1) SagaStepCompleted(2) SagaStepCompleted(3) "
                 "SagaStepCompleted(4) SagaCompleted");
    free(h);
    CHECK_INT(sf_cmd(&f, "{\"command_type\":\"Reserve\",\"aggregate_id\":\"x\",\"data\":{\"by\":\"other\"}}"),
              EVS_CMD_ACCEPTED);
    sf_launch(&f, "bad", "{\"s0\":{\"res\":\"a2\"},\"s1\":{\"res\":\"b2\"},\"s2\":{\"res\":\"x\"},\"s3\":{\"res\":\"d2\"},"
                         "\"s4\":{\"res\":\"e2\"}}");
    sf_run(&f);
    h = sf_history(&f, "job", "bad");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepCompleted(1) SagaStepFailed(2:rejected) SagaStepCompleted(3) "
                 "SagaCompensating SagaCompensationDone(3) SagaCompensationDone(1) SagaCompensationDone(0) "
                 "SagaCompensated");
    free(h);
    /* every effect of the group went out before any compensation; s1 and s3 released before s0 */
    char *x = sf_effects(&f, "bad");
    CHECK_CONTAINS(x, "Reserved:res-a2:a/s0/0/1");
    const char *rb = strstr(x, "Released:res-b2"), *rd = strstr(x, "Released:res-d2"), *ra = strstr(x, "Released:res-a2");
    const char *sd = strstr(x, "Reserved:res-d2");
    CHECK(rb && rd && ra && sd && sd < rb && sd < rd && rb < ra && rd < ra);
    CHECK(!strstr(x, "res-e2"));
    free(x);
    sf_close(&f);
}

/* ---------------------------------------------- compensation failures, ops */

static void tweak_comp_retry(evs_saga_def *d, evs_saga_step_def *s) {
    (void)d;
    for (int i = 0; i < 3; i++) {
        s[i].compensation_retry.initial_delay_ns = SF_SEC;
        s[i].compensation_retry.backoff = EVS_BACKOFF_FIXED;
    }
}

static void test_compensation_failed(const char *d) {
    sf f;
    sf_open(&f, d, 0, 1000 * SF_SEC);
    sf_register(&f, "job", N3, NULL, 3, tweak_comp_retry);
    CHECK_INT(sf_cmd(&f, "{\"command_type\":\"Reserve\",\"aggregate_id\":\"x\",\"data\":{\"by\":\"other\"}}"),
              EVS_CMD_ACCEPTED);
    sf_launch(&f, "j1", "{\"s0\":{\"res\":\"a\"},\"s1\":{\"res\":\"b\",\"comp_fail\":true},\"s2\":{\"res\":\"x\"}}");
    sf_run(&f);
    for (int i = 0; i < 3; i++) {
        sf_advance(&f, SF_SEC);
        sf_run(&f);
    }
    char *h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepCompleted(1) SagaStepFailed(2:rejected) SagaCompensating "
                 "SagaCompensationFailed(1:rejected+r) SagaCompensationFailed(1:rejected+r) "
                 "SagaCompensationFailed(1:rejected)");
    free(h);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_COMPENSATION_FAILED);
    CHECK_STR(in.step_name, "s1");
    CHECK_INT(in.attempt, 3);
    CHECK_CONTAINS(in.last_error, "release refused");
    CHECK_INT(in.next_due, 0);
    /* an operator's alert: listed, and counted */
    evs_saga_info lst[4];
    size_t n;
    evs_saga_query q = {NULL, EVS_SAGA_COMPENSATION_FAILED, 0, NULL, 0};
    CHECK_RC(evs_saga_list(f.e, &q, lst, 4, &n, NULL), EVS_OK);
    CHECK_INT(n, 1);
    evs_saga_type_stats ts;
    CHECK_RC(evs_saga_get_type_stats(f.e, &ts, 1, &n), EVS_OK);
    CHECK_INT(ts.compensation_failed, 1);
    CHECK_INT(ts.compensation_failures, 3);
    CHECK_INT(ts.by_state[EVS_SAGA_COMPENSATION_FAILED], 1);
    /* nothing happens by itself */
    sf_advance(&f, 100 * SF_SEC);
    sf_run(&f);
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_COMPENSATION_FAILED);
    /* retry by hand: a fresh budget, still refused (three more attempts) */
    CHECK_RC(evs_saga_retry_now(f.e, "job", "j1"), EVS_OK);
    sf_run(&f);
    for (int i = 0; i < 3; i++) {
        sf_advance(&f, SF_SEC);
        sf_run(&f);
    }
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_COMPENSATION_FAILED);
    CHECK_INT(in.attempt, 6);
    /* skip it: the rest is compensated */
    CHECK_RC(evs_saga_skip(f.e, "job", "j1", NULL, "released by hand in the warehouse"), EVS_OK);
    sf_run(&f);
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_COMPENSATED);
    char *x = sf_effects(&f, "j1");
    CHECK_STR(x, "Reserved:res-a:a/s0/0/1 Reserved:res-b:a/s1/0/1 Released:res-a:c/s0/0/1");
    free(x);
    CHECK_RC(evs_saga_get_type_stats(f.e, &ts, 1, &n), EVS_OK);
    CHECK_INT(ts.by_state[EVS_SAGA_COMPENSATION_FAILED], 0);
    CHECK_INT(ts.compensated, 1);
    /* a finished saga refuses every action */
    CHECK_RC(evs_saga_pause(f.e, "job", "j1", NULL), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "is compensated");
    CHECK_RC(evs_saga_abort(f.e, "job", "j1", NULL), EVS_ECONFLICT);
    CHECK_RC(evs_saga_retry_now(f.e, "job", "j1"), EVS_ECONFLICT);
    sf_close(&f);
}

static void test_operator(const char *d) {
    sf f;
    int64_t t0 = 1000 * SF_SEC;
    sf_open(&f, d, 0, t0);
    sf_register(&f, "job", N3, NULL, 3, tweak_wait);
    const char *plan = "{\"s0\":{\"res\":\"a\"},\"s1\":{\"res\":\"b\"},\"s2\":{\"res\":\"c\"}}";
    char *h;
    evs_saga_info in;
    /* pause while waiting: the deadline passes, nothing happens; resume shifts it */
    sf_launch(&f, "p", plan);
    sf_run(&f);
    CHECK_RC(evs_saga_pause(f.e, "job", "p", "looking into it"), EVS_OK);
    CHECK_RC(evs_saga_pause(f.e, "job", "p", NULL), EVS_ECONFLICT);
    sf_advance(&f, 20 * SF_SEC);
    sf_run(&f);
    CHECK_RC(evs_saga_get(f.e, "job", "p", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_PAUSED);
    CHECK_INT(in.paused_from, EVS_SAGA_RUNNING);
    CHECK_INT(in.next_due, 0);
    sf_answer(&f, "job", "p", "xp", 1); /* an answer while paused waits for the resume */
    sf_run(&f);
    CHECK_RC(evs_saga_get(f.e, "job", "p", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_PAUSED);
    CHECK_RC(evs_saga_resume(f.e, "job", "p"), EVS_OK);
    sf_run(&f);
    h = sf_history(&f, "job", "p");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepWaiting(1) SagaPaused SagaResumed SagaStepCompleted(1) "
                 "SagaStepCompleted(2) SagaCompleted");
    free(h);
    /* resume shifts the timers by the pause */
    sf_launch(&f, "q", "{\"s0\":{\"res\":\"qa\"},\"s1\":{\"res\":\"qb\"},\"s2\":{\"res\":\"qc\"}}");
    sf_run(&f);
    int64_t t1 = atomic_load(&f.clk.now);
    CHECK_RC(evs_saga_pause(f.e, "job", "q", NULL), EVS_OK);
    sf_advance(&f, 7 * SF_SEC);
    CHECK_RC(evs_saga_resume(f.e, "job", "q"), EVS_OK);
    CHECK_RC(evs_saga_get(f.e, "job", "q", &in), EVS_OK);
    CHECK_INT(in.next_due, t1 + 17 * SF_SEC);
    /* retry now: the wait ends at once with a new attempt */
    CHECK_RC(evs_saga_retry_now(f.e, "job", "q"), EVS_OK);
    sf_run(&f);
    h = sf_history(&f, "job", "q");
    CHECK_CONTAINS(h, "SagaResumed SagaRetryRequested SagaStepFailed(1:rejected)"); /* b is held: attempt 2 refused */
    free(h);
    /* compensate by hand while waiting */
    sf_launch(&f, "c", "{\"s0\":{\"res\":\"ca\"},\"s1\":{\"res\":\"cb\"},\"s2\":{\"res\":\"cc\"}}");
    sf_run(&f);
    CHECK_RC(evs_saga_compensate(f.e, "job", "c", "customer called"), EVS_OK);
    sf_run(&f);
    h = sf_history(&f, "job", "c");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepWaiting(1) SagaStepFailed(1:operator) SagaCompensating "
                 "SagaCompensationDone(1) SagaCompensationDone(0) SagaCompensated");
    free(h);
    char *x = sf_effects(&f, "c");
    CHECK_STR(x, "Reserved:res-ca:a/s0/0/1 Reserved:res-cb:a/s1/0/1 Released:res-cb:c/s1/0/1 Released:res-ca:c/s0/0/1");
    free(x);
    /* skip the waiting step */
    sf_launch(&f, "k", "{\"s0\":{\"res\":\"ka\"},\"s1\":{\"res\":\"kb\"},\"s2\":{\"res\":\"kc\"}}");
    sf_run(&f);
    CHECK_RC(evs_saga_skip(f.e, "job", "k", "nope", NULL), EVS_ECONFLICT);
    CHECK_RC(evs_saga_skip(f.e, "job", "k", "s1", "answered by phone"), EVS_OK);
    sf_run(&f);
    h = sf_history(&f, "job", "k");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepWaiting(1) SagaStepSkipped SagaStepCompleted(2) SagaCompleted");
    free(h);
    /* abort: failed, nothing compensated */
    sf_launch(&f, "b", "{\"s0\":{\"res\":\"ba\"},\"s1\":{\"res\":\"bb\"},\"s2\":{\"res\":\"bc\"}}");
    sf_run(&f);
    CHECK_RC(evs_saga_abort(f.e, "job", "b", "test"), EVS_OK);
    sf_advance(&f, 60 * SF_SEC);
    sf_run(&f);
    CHECK_RC(evs_saga_get(f.e, "job", "b", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_FAILED);
    CHECK_STR(in.last_error, "test");
    x = sf_effects(&f, "b");
    CHECK_STR(x, "Reserved:res-ba:a/s0/0/1 Reserved:res-bb:a/s1/0/1");
    free(x);
    /* bad input */
    CHECK_RC(evs_saga_pause(f.e, "job", "nobody", NULL), EVS_ENOTFOUND);
    CHECK_RC(evs_saga_pause(f.e, "nosuch", "p", NULL), EVS_ENOTFOUND);
    CHECK_RC(evs_saga_pause(f.e, "bad-type", "p", NULL), EVS_EINVAL);
    CHECK_RC(evs_saga_pause(f.e, "job", "", NULL), EVS_EINVAL);
    CHECK_RC(evs_saga_resume(f.e, "job", "k"), EVS_ECONFLICT);

    /* show: the state and the timeline */
    char *js;
    size_t jl;
    CHECK_RC(evs_saga_show_json(f.e, "job", "c", &js, &jl), EVS_OK);
    json_t *o = json_loadb(js, jl, 0, NULL);
    CHECK_STR(json_string_value(json_object_get(o, "status")), "compensated");
    CHECK_INT(json_array_size(json_object_get(o, "timeline")), 8);
    json_t *t3 = json_array_get(json_object_get(o, "timeline"), 3);
    CHECK_STR(json_string_value(json_object_get(t3, "type")), "SagaStepFailed");
    CHECK_STR(json_string_value(json_object_get(t3, "reason")), "customer called");
    CHECK_STR(json_string_value(json_object_get(t3, "name")), "s1");
    CHECK(json_is_string(json_object_get(t3, "at")));
    json_t *s1 = json_array_get(json_object_get(o, "steps"), 1);
    CHECK_STR(json_string_value(json_object_get(json_object_get(s1, "compensation"), "status")), "done");
    CHECK(json_is_object(json_object_get(json_object_get(o, "data"), "plan")));
    json_decref(o);
    free(js);
    CHECK_RC(evs_saga_show_json(f.e, "job", "zzz", &js, &jl), EVS_ENOTFOUND);
    sf_close(&f);
}

/* --------------------------------------------------- leases, restarts */

/* Another node's lease in the stream holds the instance until it expires. */
static void test_lease(const char *d) {
    sf f;
    int64_t t0 = 1000 * SF_SEC;
    sf_open(&f, d, 0, t0);
    sf_register(&f, "job", N3, NULL, 3, tweak_wait);
    sf_launch(&f, "j1", "{\"s0\":{\"res\":\"a\"},\"s1\":{\"res\":\"b\"},\"s2\":{\"res\":\"c\"}}");
    sf_run(&f);
    /* node-b takes the lease for 60 s (as a SagaLeased it would append) */
    evs_saga_info in;
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    char data[256];
    snprintf(data, sizeof data, "{\"at\":%lld,\"lease\":{\"node\":\"node-b\",\"until\":%lld}}", (long long)t0,
             (long long)(t0 + 60 * SF_SEC));
    evs_event_in ev = tu_event("SagaLeased", data);
    ev.correlation_id = &in.correlation_id;
    evs_append_result ar;
    CHECK_RC(evs_append(f.s, "saga-job-j1", (int64_t)in.version, &ev, 1, &ar, NULL), EVS_OK);
    sf_answer(&f, "job", "j1", "x", 1);
    sf_run(&f);
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_RUNNING);
    CHECK_RC(evs_saga_pause(f.e, "job", "j1", NULL), EVS_ELOCKED);
    CHECK_CONTAINS(evs_errmsg(), "leased by node node-b");
    evs_saga_engine_stats es;
    CHECK_RC(evs_saga_get_engine_stats(f.e, &es), EVS_OK);
    CHECK(es.lease_busy >= 1);
    /* expired: node-a takes over (a SagaLeased of its own first) */
    sf_advance(&f, 60 * SF_SEC);
    sf_run(&f);
    char *h = sf_history(&f, "job", "j1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepWaiting(1) SagaLeased SagaLeased SagaStepCompleted(1) "
                 "SagaStepCompleted(2) SagaCompleted");
    free(h);
    sf_close(&f);
}

/* Close with a timer pending; it fires after the reopen (late, not lost); the index picks up where it was. */
static void test_restart(const char *d) {
    sf f;
    int64_t t0 = 1000 * SF_SEC;
    sf_open(&f, d, 0, t0);
    sf_register(&f, "job", N3, NULL, 3, tweak_wait);
    sf_launch(&f, "j1", "{\"s0\":{\"res\":\"a\"},\"s1\":{\"res\":\"b\"},\"s2\":{\"res\":\"c\"}}");
    sf_run(&f);
    sf_launch(&f, "j2", "{\"s0\":{\"res\":\"a2\"},\"s1\":{\"res\":\"b2\"},\"s2\":{\"res\":\"c2\"}}");
    sf_close(&f); /* j2's start was never run */
    sf_open(&f, d, 0, t0 + 30 * SF_SEC);
    sf_register(&f, "job", N3, NULL, 3, tweak_wait);
    sf_run(&f);
    char *h = sf_history(&f, "job", "j1");
    /* the lease ran out while the process was down: taken again (SagaLeased) before anything else */
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepWaiting(1) SagaLeased SagaStepFailed(1:timeout+r)");
    free(h);
    evs_saga_engine_stats es;
    CHECK_RC(evs_saga_get_engine_stats(f.e, &es), EVS_OK);
    CHECK_INT(es.timers_fired, 1);
    CHECK_INT(es.late_hist[EVS_SAGA_LATE_BUCKETS], 1); /* 20 s late: the slowest bucket */
    /* one timer fired: the histogram's sum is its lateness, at least the 20 s */
    CHECK_INT(es.late_sum_ns, es.late_max_ns);
    CHECK(es.late_sum_ns >= 20000000000ull);
    h = sf_history(&f, "job", "j2");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepWaiting(1)");
    free(h);
    evs_saga_type_stats ts;
    size_t n;
    CHECK_RC(evs_saga_get_type_stats(f.e, &ts, 1, &n), EVS_OK);
    CHECK_INT(ts.started, 2);
    sf_close(&f);
}

/* ------------------------------------------------------------- listing */

static void test_listing(const char *d) {
    sf f;
    int64_t t0 = 1000 * SF_SEC;
    sf_open(&f, d, 0, t0);
    sf_register(&f, "job", N3, NULL, 3, tweak_wait);
    for (int i = 0; i < 7; i++) {
        char id[8], plan[256];
        snprintf(id, sizeof id, "w%d", i);
        snprintf(plan, sizeof plan, "{\"s0\":{\"res\":\"a%d\"},\"s1\":{\"res\":\"b%d\"}}", i, i);
        sf_launch(&f, id, plan);
        sf_run(&f);
        sf_advance(&f, SF_SEC / 10);
    }
    sf_answer(&f, "job", "w3", "x", 1);
    sf_run(&f);
    evs_saga_info lst[16];
    size_t n;
    char cur[EVS_SAGA_CURSOR_MAX];
    /* running, oldest transition first, three per page */
    evs_saga_query q = {"job", EVS_SAGA_RUNNING, 0, NULL, 3};
    CHECK_RC(evs_saga_list(f.e, &q, lst, 16, &n, cur), EVS_OK);
    CHECK_INT(n, 3);
    CHECK_STR(lst[0].id, "w0");
    CHECK_STR(lst[2].id, "w2");
    CHECK_STR(lst[0].step_name, "s1");
    CHECK(cur[0] != 0);
    q.cursor = cur;
    CHECK_RC(evs_saga_list(f.e, &q, lst, 16, &n, cur), EVS_OK);
    CHECK_INT(n, 3);
    CHECK_STR(lst[0].id, "w4");
    CHECK_STR(lst[2].id, "w6");
    CHECK_STR(cur, ""); /* the last page */
    /* stuck longer than 0.45 s: the first five (w0..w4 less the completed w3) */
    evs_saga_query stuck = {NULL, -1, SF_SEC * 45 / 100, NULL, 0};
    CHECK_RC(evs_saga_list(f.e, &stuck, lst, 16, &n, NULL), EVS_OK);
    CHECK_INT(n, 3);
    CHECK_STR(lst[0].id, "w0");
    CHECK_STR(lst[2].id, "w2");
    /* any state: completed ones too */
    evs_saga_query all = {"job", -1, 0, NULL, 0};
    CHECK_RC(evs_saga_list(f.e, &all, lst, 16, &n, NULL), EVS_OK);
    CHECK_INT(n, 7);
    CHECK_STR(lst[6].id, "w3");
    CHECK_INT(lst[6].status, EVS_SAGA_COMPLETED);
    evs_saga_query bad = {"job", -1, 0, "zz", 0};
    CHECK_RC(evs_saga_list(f.e, &bad, lst, 16, &n, NULL), EVS_EINVAL);
    bad.cursor = NULL;
    bad.status = 9;
    CHECK_RC(evs_saga_list(f.e, &bad, lst, 16, &n, NULL), EVS_EINVAL);
    evs_saga_type_stats ts;
    CHECK_RC(evs_saga_get_type_stats(f.e, &ts, 1, &n), EVS_OK);
    CHECK_INT(ts.by_state[EVS_SAGA_RUNNING], 6);
    CHECK_INT(ts.timers_pending, 6);
    sf_close(&f);
}

/* ---------------------------------------------------------------- Lua */

static const char lua_saga[] =
    "local function res(d, name) return d.plan[name] and d.plan[name].res end\n"
    "return {\n"
    "  start = { event_types = { 'JobLaunched' }, key = 'stream_id' },\n"
    "  init = function(e) return { plan = e.data.plan, n = 0 } end,\n"
    "  timeout = settings.timeout or 300,\n"
    "  steps = {\n"
    "    { name = 'first',\n"
    "      action = function(d, s) return { command = 'Reserve', aggregate_id = res(d, 'first'), data = { by = s.id } } end,\n"
    "      compensate = function(d, s, acc) return { command = 'Release', aggregate_id = res(d, 'first'), data = { by = s.id } } end,\n"
    "      done = function(d) d.n = d.n + 1 end },\n"
    "    { name = 'fan', group = 'g',\n"
    "      action = function(d, s)\n"
    "        local t = {}\n"
    "        for i, r in ipairs(d.plan.fan) do t[i] = { command = 'Reserve', aggregate_id = r, data = { by = s.id } } end\n"
    "        return t end,\n"
    "      compensate = function(d, s, acc)\n"
    "        local t = {}\n"
    "        for _, i in ipairs(acc) do t[#t + 1] = { command = 'Release', aggregate_id = d.plan.fan[i], data = { by = s.id } } end\n"
    "        return t end },\n"
    "    { name = 'note', group = 'g',\n"
    "      action = function(d, s) return { append = 'log-' .. s.id, type = 'Noted', data = { n = d.n } } end },\n"
    "    { name = 'ask', complete_on = { 'Answered' }, fail_on = 'Declined', timeout = 2.5,\n"
    "      retry = { max_attempts = 1 },\n"
    "      done = function(d, s, answer) d.answered_by = answer.stream end },\n"
    "  },\n"
    "}\n";

static void test_lua(const char *d) {
    sf f;
    int64_t t0 = 1000 * SF_SEC;
    sf_open(&f, d, 0, t0);
    CHECK_RC(evs_saga_register_lua(f.e, "luajob", lua_saga, strlen(lua_saga), "{\"timeout\":100}"), EVS_OK);
    CHECK_RC(evs_saga_register_lua(f.e, "luajob", lua_saga, strlen(lua_saga), NULL), EVS_ECONFLICT);
    sf_launch(&f, "l1", "{\"first\":{\"res\":\"a\"},\"fan\":[\"b\",\"c\",\"d\"]}");
    sf_run(&f);
    char *h = sf_history(&f, "luajob", "l1");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepCompleted(1) SagaStepCompleted(2) SagaStepWaiting(3)");
    free(h);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(f.e, "luajob", "l1", &in), EVS_OK);
    CHECK_INT(in.next_due, t0 + 5 * SF_SEC / 2);
    /* the append effect went through the command bus */
    evs_reader *r;
    const evs_event *ev;
    CHECK_RC(evs_read_stream(f.s, "log-l1", 1, EVS_FORWARD, 0, &r), EVS_OK);
    CHECK_RC(evs_reader_next(r, &ev), EVS_OK);
    CHECK_MEM(ev->data, ev->data_len, "{\"n\":1}");
    evs_reader_close(r);
    sf_answer(&f, "luajob", "l1", "xx", 1);
    sf_run(&f);
    char *js;
    size_t jl;
    CHECK_RC(evs_saga_show_json(f.e, "luajob", "l1", &js, &jl), EVS_OK);
    CHECK_CONTAINS(js, "\"status\":\"completed\"");
    CHECK_CONTAINS(js, "\"answered_by\":\"ext-xx\"");
    free(js);
    /* l2: no answer in 2.5 s, no retry: the fan-out's three reservations and the first are released */
    sf_launch(&f, "l2", "{\"first\":{\"res\":\"a2\"},\"fan\":[\"b2\",\"c2\"]}");
    sf_run(&f);
    sf_advance(&f, 5 * SF_SEC / 2);
    sf_run(&f);
    h = sf_history(&f, "luajob", "l2");
    CHECK_STR(h, "SagaStarted SagaStepCompleted(0) SagaStepCompleted(1) SagaStepCompleted(2) SagaStepWaiting(3) "
                 "SagaStepFailed(3:timeout) SagaCompensating SagaCompensationDone(1) SagaCompensationDone(0) "
                 "SagaCompensated");
    free(h);
    char *x = sf_effects(&f, "l2");
    /* the fan's two releases went out in parallel (either order), both before the first step's */
    const char *rb = strstr(x, "Released:res-b2:c/fan/0/1"), *rc = strstr(x, "Released:res-c2:c/fan/1/1"),
               *ra = strstr(x, "Released:res-a2:c/first/0/1");
    CHECK(rb && rc && ra && rb < ra && rc < ra);
    free(x);
    sf_close(&f);
}

static void test_bad_definitions(const char *d) {
    sf f;
    sf_open(&f, d, 0, 1000 * SF_SEC);
    static const char *const start[] = {"JobLaunched"};
    evs_saga_step_def st[3];
    for (int i = 0; i < 3; i++) evs_saga_step_init(&st[i]);
    st[0].name = "a";
    st[1].name = "b";
    st[2].name = "c";
    evs_saga_def def;
    evs_saga_def_init(&def);
    def.name = "ok";
    def.start_on = start;
    def.n_start_on = 1;
    def.steps = st;
    def.n_steps = 3;
    def.name = "has-dash";
    CHECK_RC(evs_saga_register(f.e, &def), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "no '-'");
    def.name = "";
    CHECK_RC(evs_saga_register(f.e, &def), EVS_EINVAL);
    def.name = "ok";
    def.n_start_on = 0;
    CHECK_RC(evs_saga_register(f.e, &def), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "no starting event type");
    def.n_start_on = 1;
    def.n_steps = 0;
    CHECK_RC(evs_saga_register(f.e, &def), EVS_EINVAL);
    def.n_steps = 3;
    st[2].name = "a";
    CHECK_RC(evs_saga_register(f.e, &def), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "two steps are named \"a\"");
    st[2].name = "c";
    st[0].group = 4;
    st[2].group = 4;
    CHECK_RC(evs_saga_register(f.e, &def), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "not consecutive");
    st[0].group = st[2].group = 0;
    st[1].retry.max_attempts = 0;
    CHECK_RC(evs_saga_register(f.e, &def), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "max_attempts must be 1..1000");
    st[1].retry.max_attempts = 2;
    st[1].retry.jitter = 2;
    CHECK_RC(evs_saga_register(f.e, &def), EVS_EINVAL);
    st[1].retry.jitter = 0;
    def.key_from = EVS_SAGA_KEY_FIELD;
    CHECK_RC(evs_saga_register(f.e, &def), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "key_field is empty");
    def.key_from = EVS_SAGA_KEY_STREAM_ID;
    def.max_parallel = 0;
    CHECK_RC(evs_saga_register(f.e, &def), EVS_EINVAL);
    def.max_parallel = 5;
    CHECK_RC(evs_saga_register(f.e, &def), EVS_OK);
    /* Lua */
    struct {
        const char *src, *want;
    } bad[] = {
        {"return 1", "must return a table"},
        {"return {", "does not compile"},
        {"return { steps = { { name = 'a' } } }", "'start' table"},
        {"return { start = { event_types = {'X'} } }", "'steps' must be a list"},
        {"return { start = { event_types = {'X'}, key = 7 }, steps = { { name = 'a' } } }", "start.key must be"},
        {"return { start = { event_types = {'X'}, key = 'bogus' }, steps = { { name = 'a' } } }", "start.key must be"},
        {"return { start = { event_types = {'X'} }, steps = { { name = 'a', action = 3 } } }", "action must be a function"},
        {"return { start = { event_types = {'X'} }, steps = { { } } }", "needs a 'name'"},
        {"return { start = { event_types = {'X'} }, steps = { { name = 'a', retry = { on = {'sometimes'} } } } }",
         "unknown failure kind \"sometimes\""},
        {"return { start = { event_types = {'X'} }, steps = { { name = 'a', timeout = -1 } } }", "number of seconds"},
        {"while true do end", "instruction budget"},
        {"return { start = { event_types = {} }, steps = { { name = 'a' } } }", "no starting event type"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(evs_saga_register_lua(f.e, "lbad", bad[i].src, strlen(bad[i].src), NULL), EVS_EINVAL);
        CHECK_CONTAINS(evs_errmsg(), bad[i].want);
    }
    CHECK_RC(evs_saga_register_lua(f.e, "lbad", "return {}", 9, "[1]"), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "settings must be a JSON object");
    /* a builder that fails at run time: an error, retried, then compensated / failed */
    const char *boom = "return { start = { event_types = {'JobLaunched'} }, steps = { { name = 'a', retry = { max_attempts = 1 },"
                       " action = function(d) error('boom') end } } }";
    CHECK_RC(evs_saga_register_lua(f.e, "lboom", boom, strlen(boom), NULL), EVS_OK);
    sf_launch(&f, "b1", "{}");
    sf_run(&f);
    char *h = sf_history(&f, "lboom", "b1");
    CHECK_STR(h, "SagaStarted SagaStepFailed(0:error) SagaFailed");
    free(h);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(f.e, "lboom", "b1", &in), EVS_OK);
    CHECK_CONTAINS(in.last_error, "boom");
    sf_close(&f);
}

/* A definition whose steps changed under a running instance pauses it instead of guessing. */
static void test_definition_changed(const char *d) {
    sf f;
    sf_open(&f, d, 0, 1000 * SF_SEC);
    sf_register(&f, "job", N3, NULL, 3, tweak_wait);
    sf_launch(&f, "j1", "{\"s0\":{\"res\":\"a\"},\"s1\":{\"res\":\"b\"},\"s2\":{\"res\":\"c\"}}");
    sf_run(&f);
    sf_close(&f);
    static const char *const other[] = {"s0", "renamed", "s2"};
    sf_open(&f, d, 0, 1000 * SF_SEC);
    sf_register(&f, "job", other, NULL, 3, tweak_wait);
    sf_answer(&f, "job", "j1", "x", 1);
    sf_run(&f);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_PAUSED);
    CHECK_RC(evs_saga_abort(f.e, "job", "j1", "old definition"), EVS_OK);
    CHECK_RC(evs_saga_get(f.e, "job", "j1", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_FAILED);
    sf_close(&f);
}

int main(int argc, char **argv) {
    tu_verbose = getenv("EVS_VERBOSE") != NULL;
    cf_init(argc, argv);
    printf("engine: %s\n", cf_engine());
    struct {
        const char *name;
        void (*fn)(const char *);
    } tests[] = {{"completes", test_completes},
                 {"duplicate_start", test_duplicate_start},
                 {"retries", test_retries},
                 {"jitter", test_jitter},
                 {"compensation_order", test_compensation_order},
                 {"fails_without_effect", test_fails_without_effect},
                 {"rerun_after_crash", test_rerun_after_crash},
                 {"answers_and_timeouts", test_answers_and_timeouts},
                 {"saga_timeout", test_saga_timeout},
                 {"parallel", test_parallel},
                 {"compensation_failed", test_compensation_failed},
                 {"operator", test_operator},
                 {"lease", test_lease},
                 {"restart", test_restart},
                 {"listing", test_listing},
                 {"lua", test_lua},
                 {"bad_definitions", test_bad_definitions},
                 {"definition_changed", test_definition_changed}};
    const char *only = getenv("EVS_ONLY");
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (only && !strstr(only, tests[i].name)) continue;
        char *p = cf_fresh(tests[i].name);
        int before = tu_failures;
        tests[i].fn(p);
        if (tu_failures != before) fprintf(stderr, "  ^ in %s\n", tests[i].name);
        cf_drop(p);
    }
    return TEST_REPORT();
}

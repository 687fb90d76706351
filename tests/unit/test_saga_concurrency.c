/*
 * test_saga_concurrency.c — the saga engine with its threads (dispatcher,
 * timers, four workers): two clients launch 300 sagas while an outside
 * service answers some of their waits, the rest time out, and an operator
 * thread pauses, resumes, retries and compensates instances at random under
 * the workers' feet.  Checked: an instance is never advanced by two threads
 * at once (its builders never overlap), every saga ends completed or
 * compensated, every reservation is made once and, for a compensated saga,
 * released once; the index agrees with the streams.  Also run under TSan.
 * On either storage engine (tests/conformance.h: no argument, "embedded"
 * or "postgresql").
 */
#include <pthread.h>
#include <time.h>

#include "conformance.h"
#include "saga_fixture.h"

#define SAGAS 300

static sf f;
static _Atomic int busy[SAGAS + 1];
static _Atomic int overlaps;
static _Atomic int launched;

static int num_of(const char *id) { return atoi(id + 1); }

/* The fixture's builders, with a check that no two threads run one instance's builders at once. */
static int guarded(int (*fn)(void *, const evs_saga_ctx *, evs_saga_out *, char *, size_t), void *ctx,
                   const evs_saga_ctx *sc, evs_saga_out *out, char *err, size_t cap) {
    int n = num_of(sc->id);
    if (n < 1 || n > SAGAS) return fn(ctx, sc, out, err, cap);
    if (atomic_fetch_add(&busy[n], 1) != 0) atomic_fetch_add(&overlaps, 1);
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
    int r = fn(ctx, sc, out, err, cap);
    atomic_fetch_sub(&busy[n], 1);
    return r;
}

static int g_action(void *ctx, const evs_saga_ctx *sc, evs_saga_out *out, char *err, size_t cap) {
    return guarded(sf_action, ctx, sc, out, err, cap);
}

static int g_compensate(void *ctx, const evs_saga_ctx *sc, evs_saga_out *out, char *err, size_t cap) {
    return guarded(sf_compensate, ctx, sc, out, err, cap);
}

static void tweak(evs_saga_def *d, evs_saga_step_def *s) {
    (void)d;
    static const char *const ok[] = {"Answered"}, *const no[] = {"Declined"};
    for (int i = 0; i < 3; i++) {
        s[i].action = g_action;
        s[i].compensate = g_compensate;
        s[i].compensation_retry.initial_delay_ns = 10000000;
    }
    s[1].complete_on = ok;
    s[1].n_complete_on = 1;
    s[1].fail_on = no;
    s[1].n_fail_on = 1;
    s[1].timeout_ns = 300000000;
    s[1].retry.max_attempts = 1;
}

static void *client(void *arg) {
    int part = (int)(intptr_t)arg;
    for (int i = 1 + part; i <= SAGAS; i += 2) {
        char id[16], plan[256];
        snprintf(id, sizeof id, "j%d", i);
        snprintf(plan, sizeof plan, "{\"s0\":{\"res\":\"a%d\"},\"s1\":{\"res\":[\"b%d\",\"c%d\"]},\"s2\":{\"res\":\"d%d\"}}", i, i,
                 i, i);
        sf_launch(&f, id, plan);
        atomic_fetch_add(&launched, 1);
    }
    return NULL;
}

/* Answers the waits of sagas whose number is divisible by 3 (declines those divisible by 9). */
static void *answerer(void *arg) {
    (void)arg;
    int answered[SAGAS + 1] = {0};
    int64_t until = evs_now_ns() + 60 * SF_SEC;
    int left = SAGAS / 3;
    while (left > 0 && evs_now_ns() < until) {
        for (int i = 3; i <= SAGAS; i += 3) {
            if (answered[i]) continue;
            char id[16], ext[16];
            snprintf(id, sizeof id, "j%d", i);
            evs_saga_info in;
            if (evs_saga_get(f.e, "job", id, &in) != EVS_OK || in.status != EVS_SAGA_RUNNING || in.step != 1) continue;
            snprintf(ext, sizeof ext, "x%d", i);
            sf_answer(&f, "job", id, ext, i % 9 != 0);
            answered[i] = 1;
            left--;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static _Atomic int ops_done;

/* Pauses, resumes, retries and compensates at random; conflicts with the state are fine, nothing else is. */
static void *operator_main(void *arg) {
    (void)arg;
    uint64_t r = 88172645463325252ull;
    int bad = 0;
    while (atomic_load(&launched) < SAGAS || atomic_load(&ops_done) < 400) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        char id[16];
        snprintf(id, sizeof id, "j%d", 1 + (int)(r % SAGAS));
        int rc;
        switch ((r >> 20) % 5) {
        case 0: rc = evs_saga_pause(f.e, "job", id, "look"); break;
        case 1:
        case 2: rc = evs_saga_resume(f.e, "job", id); break;
        case 3: rc = evs_saga_retry_now(f.e, "job", id); break;
        default: rc = (r >> 30) % 4 == 0 ? evs_saga_compensate(f.e, "job", id, "by hand") : EVS_OK; break;
        }
        if (rc != EVS_OK && rc != EVS_ECONFLICT && rc != EVS_ENOTFOUND && bad++ == 0)
            fprintf(stderr, "operator: %s: %s\n", id, evs_errmsg());
        atomic_fetch_add(&ops_done, 1);
    }
    /* leave nothing paused */
    for (int i = 1; i <= SAGAS; i++) {
        char id[16];
        snprintf(id, sizeof id, "j%d", i);
        int rc = evs_saga_resume(f.e, "job", id);
        if (rc != EVS_OK && rc != EVS_ECONFLICT && rc != EVS_ENOTFOUND && bad++ == 0)
            fprintf(stderr, "resume %s: %s\n", id, evs_errmsg());
    }
    return (void *)(intptr_t)bad;
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    printf("engine: %s\n", cf_engine());
    char *d = cf_fresh("sagaconc");
    static const char *const names[] = {"s0", "s1", "s2"};
    sf_open(&f, d, 4, 0);
    sf_register(&f, "job", names, NULL, 3, tweak);
    CHECK_RC(evs_saga_engine_start(f.e), EVS_OK);
    /* on PostgreSQL the dispatcher thread takes the saga lease: the operator acts once it is held */
    evs_saga_engine_stats hs;
    for (int i = 0; i < 3000 && (evs_saga_get_engine_stats(f.e, &hs) || !hs.holding); i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    CHECK_INT(hs.holding, 1);
    pthread_t c[2], a, o;
    for (int i = 0; i < 2; i++) pthread_create(&c[i], NULL, client, (void *)(intptr_t)i);
    pthread_create(&a, NULL, answerer, NULL);
    pthread_create(&o, NULL, operator_main, NULL);
    for (int i = 0; i < 2; i++) pthread_join(c[i], NULL);
    void *bad;
    pthread_join(o, &bad);
    pthread_join(a, NULL);
    CHECK_INT((intptr_t)bad, 0);
    /* everything settles */
    int settled = 0;
    int64_t until = evs_now_ns() + 120 * SF_SEC;
    while (evs_now_ns() < until) {
        settled = 0;
        for (int i = 1; i <= SAGAS; i++) {
            char id[16];
            snprintf(id, sizeof id, "j%d", i);
            evs_saga_info in;
            if (evs_saga_get(f.e, "job", id, &in) == EVS_OK && evs_saga_status_terminal(in.status)) settled++;
        }
        if (settled == SAGAS) break;
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    CHECK_INT(settled, SAGAS);
    CHECK_RC(evs_saga_engine_wait_idle(f.e, 30000), EVS_OK);
    CHECK_INT(atomic_load(&overlaps), 0);
    int completed = 0, compensated = 0;
    problems pr = {0};
    for (int i = 1; i <= SAGAS; i++) {
        char id[16];
        snprintf(id, sizeof id, "j%d", i);
        evs_saga_info in;
        CHECK_RC(evs_saga_get(f.e, "job", id, &in), EVS_OK);
        char *x = sf_effects(&f, id);
        int reserved = 0, released = 0;
        for (const char *p = x; (p = strstr(p, "Reserved:")); p++) reserved++;
        for (const char *p = x; (p = strstr(p, "Released:")); p++) released++;
        if (in.status == EVS_SAGA_COMPLETED) {
            completed++;
            if (reserved != 4 || released != 0) problem(&pr, "%s completed: %s", id, x);
            if (i % 3 != 0) problem(&pr, "%s completed without an answer", id);
        } else if (in.status == EVS_SAGA_COMPENSATED) {
            compensated++;
            if (reserved != released) problem(&pr, "%s compensated: %s", id, x);
            /* once each: no stream reserved twice */
            for (const char *p = x; (p = strstr(p, "Reserved:")); p++) {
                char stream[32];
                sscanf(p + 9, "%31[^:]", stream);
                char pat[48];
                snprintf(pat, sizeof pat, "Reserved:%s:", stream);
                if (strstr(p + 1, pat)) problem(&pr, "%s reserved %s twice", id, stream);
            }
        } else {
            problem(&pr, "%s ended %s", id, evs_saga_status_name(in.status));
        }
        free(x);
    }
    if (pr.count) fprintf(stderr, "%d problems, first: %s\n", pr.count, pr.first);
    CHECK_INT(pr.count, 0);
    CHECK(completed > 0 && compensated > 0);
    evs_saga_type_stats ts;
    size_t n;
    CHECK_RC(evs_saga_get_type_stats(f.e, &ts, 1, &n), EVS_OK);
    CHECK_INT(ts.started, SAGAS);
    CHECK_INT(ts.by_state[EVS_SAGA_COMPLETED], completed);
    CHECK_INT(ts.by_state[EVS_SAGA_COMPENSATED], compensated);
    CHECK_INT(ts.timers_pending, 0);
    evs_saga_engine_stats es;
    CHECK_RC(evs_saga_get_engine_stats(f.e, &es), EVS_OK);
    printf("%d completed, %d compensated; %llu runs, %llu commands, %llu lookups, %llu batches, %llu conflicts, %llu timers\n",
           completed, compensated, (unsigned long long)es.advances, (unsigned long long)es.commands,
           (unsigned long long)es.lookups, (unsigned long long)es.flushes, (unsigned long long)es.conflicts,
           (unsigned long long)es.timers_fired);
    sf_close(&f);
    cf_drop(d);
    return TEST_REPORT();
}

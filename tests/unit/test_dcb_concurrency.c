/*
 * test_dcb_concurrency.c — the classic Dynamic Consistency Boundary
 * examples under 8 concurrent writers (evs_append_if; also run under TSan):
 *
 *   1. Course capacity.  Students subscribe to courses; a course takes at
 *      most CAP students and a student at most MAXC courses.  A decision
 *      spans two entities: each writer reads the events tagged with the
 *      course or the student (one read by tag, "any"), decides, and appends
 *      StudentSubscribed tagged with both, on the condition that no
 *      subscription tagged with the course or with the student was stored
 *      after the position its read reached.  A refused append reads again.
 *      Afterwards no course is over capacity, no student over MAXC, no pair
 *      twice, and the demand was high enough that courses did fill up.
 *   2. Unique usernames.  Writers claim names from a small pool, each
 *      decision reading the name's tag; the condition is "no claim of this
 *      name after what I read".  No name is ever claimed twice, and every
 *      name is claimed in the end.
 *
 * The invariants are checked on a full scan of the log, not through the
 * tag index the writers used, and the store's check must pass.  With
 * EVS_DCB_UNCONDITIONED=1 in the environment the writers append without
 * their condition: the same checks then fail (courses over capacity,
 * names claimed twice), which shows they test what they claim to.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

#if defined(__SANITIZE_THREAD__)
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void) { return "called_from_lib:liblmdb.so\n"; }
#endif

#define NTHREADS 8
#define NCOURSES 6
#define CAP 8
#define NSTUDENTS 40
#define MAXC 2
#define TRIES 60 /* decisions per writer */
#define NNAMES 40

static uint64_t rnd(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

typedef struct warg {
    evs_store *s;
    int t;
    uint64_t seed;
    long decisions, stored, refused, rejected;
    problems p;
} warg;

/* Parse "course:N" / "student:N" / "user:NAME" values out of an event's data {"c":N,"s":M}. */
static int data_int(const evs_event *e, const char *key) {
    const char *p = strstr(e->data, key);
    if (!p || (size_t)(p - e->data) >= e->data_len) return -1;
    return atoi(p + strlen(key));
}

/* ------------------------------------------------------- course capacity */

static void *course_writer(void *arg) {
    warg *a = arg;
    for (int i = 0; i < TRIES; i++) {
        int c = (int)(rnd(&a->seed) % NCOURSES), st = (int)(rnd(&a->seed) % NSTUDENTS);
        char ct[32], sttag[32];
        snprintf(ct, sizeof ct, "course:%d", c);
        snprintf(sttag, sizeof sttag, "student:%d", st);
        const char *both[] = {ct, sttag};
        const char *types[] = {"StudentSubscribed"};
        for (;;) { /* read, decide, append; again when refused */
            evs_filter f;
            memset(&f, 0, sizeof f);
            f.tags = both;
            f.n_tags = 2;
            evs_reader *rd;
            int rc = evs_read_all(a->s, 1, EVS_FORWARD, &f, 0, &rd);
            if (rc) {
                problem(&a->p, "read: %s", evs_errmsg());
                return NULL;
            }
            int in_course = 0, of_student = 0, already = 0;
            const evs_event *e;
            while ((rc = evs_reader_next(rd, &e)) == EVS_OK) {
                int ec = data_int(e, "\"c\":"), es = data_int(e, "\"s\":");
                if (ec == c) in_course++;
                if (es == st) of_student++;
                if (ec == c && es == st) already = 1;
            }
            uint64_t seen = evs_reader_position(rd) - 1;
            evs_reader_close(rd);
            if (rc != EVS_DONE) {
                problem(&a->p, "read: %s", evs_errmsg());
                return NULL;
            }
            a->decisions++;
            if (already || in_course >= CAP || of_student >= MAXC) {
                a->rejected++; /* the decision says no: nothing to append */
                break;
            }
            evs_query_item q[2] = {{types, 1, (const char *const *)&both[0], 1},
                                   {types, 1, (const char *const *)&both[1], 1}};
            evs_append_condition cond = {q, 2, seen};
            char data[64], stream[64];
            snprintf(data, sizeof data, "{\"c\":%d,\"s\":%d}", c, st);
            snprintf(stream, sizeof stream, "subscription-%d-%d", c, st);
            evs_event_in ev = tu_event("StudentSubscribed", data);
            ev.tags = both;
            ev.ntags = 2;
            evs_append_result r;
            rc = evs_append_if(a->s, stream, EVS_EXPECT_ANY, getenv("EVS_DCB_UNCONDITIONED") ? NULL : &cond, &ev, 1, &r, NULL);
            if (rc == EVS_OK) {
                a->stored++;
                break;
            }
            if (rc != EVS_ECONDITION) {
                problem(&a->p, "append: %s", evs_errmsg());
                return NULL;
            }
            if (r.condition_position <= seen) problem(&a->p, "a refusal named position %llu, not after %llu",
                                                      (unsigned long long)r.condition_position,
                                                      (unsigned long long)seen);
            a->refused++;
        }
    }
    return NULL;
}

static void test_course_capacity(void) {
    char *d = tu_tempdir("dcb-course");
    evs_store *s = tu_open(d, EVS_DURABILITY_SYNC, 0);
    pthread_t th[NTHREADS];
    warg a[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        memset(&a[t], 0, sizeof a[t]);
        a[t].s = s, a[t].t = t, a[t].seed = 0x1234567ull * (uint64_t)(t + 1) + 99;
        pthread_create(&th[t], NULL, course_writer, &a[t]);
    }
    long stored = 0, refused = 0;
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        CHECK_INT(a[t].p.count, 0);
        if (a[t].p.count) fprintf(stderr, "writer %d: %s\n", t, a[t].p.first);
        stored += a[t].stored;
        refused += a[t].refused;
    }
    /* the invariants, from a scan of the whole log */
    int per_course[NCOURSES] = {0}, per_student[NSTUDENTS] = {0}, pair[NCOURSES][NSTUDENTS];
    memset(pair, 0, sizeof pair);
    evs_reader *rd;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &rd), EVS_OK);
    const evs_event *e;
    long events = 0;
    while (evs_reader_next(rd, &e) == EVS_OK) {
        int c = data_int(e, "\"c\":"), st = data_int(e, "\"s\":");
        if (c < 0 || c >= NCOURSES || st < 0 || st >= NSTUDENTS) continue;
        per_course[c]++, per_student[st]++, pair[c][st]++;
        events++;
    }
    evs_reader_close(rd);
    CHECK_INT(events, stored);
    int full = 0, over = 0;
    for (int c = 0; c < NCOURSES; c++) {
        if (per_course[c] > CAP) over++;
        if (per_course[c] == CAP) full++;
    }
    CHECK_INT(over, 0);
    CHECK(full >= NCOURSES / 2); /* 480 decisions for 48 seats: the limits were reached */
    int busy = 0, dup = 0;
    for (int st = 0; st < NSTUDENTS; st++) {
        if (per_student[st] > MAXC) busy++;
        for (int c = 0; c < NCOURSES; c++)
            if (pair[c][st] > 1) dup++;
    }
    CHECK_INT(busy, 0);
    CHECK_INT(dup, 0);
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    printf("courses: %ld subscriptions stored, %ld appends refused by their condition and retried, %d of %d "
           "courses full\n", stored, refused, full, NCOURSES);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
}

/* ----------------------------------------------------- unique usernames */

static void *name_writer(void *arg) {
    warg *a = arg;
    for (int i = 0; i < TRIES; i++) {
        int n = (int)(rnd(&a->seed) % NNAMES);
        char tag[32], data[64], stream[64];
        snprintf(tag, sizeof tag, "username:user%d", n);
        const char *tags[] = {tag};
        evs_filter f;
        memset(&f, 0, sizeof f);
        f.tags = tags;
        f.n_tags = 1;
        evs_reader *rd;
        if (evs_read_all(a->s, 1, EVS_FORWARD, &f, 0, &rd)) {
            problem(&a->p, "read: %s", evs_errmsg());
            return NULL;
        }
        const evs_event *e;
        int taken = 0, rc;
        while ((rc = evs_reader_next(rd, &e)) == EVS_OK) taken = 1;
        uint64_t seen = evs_reader_position(rd) - 1;
        evs_reader_close(rd);
        a->decisions++;
        if (taken) {
            a->rejected++;
            continue;
        }
        const char *types[] = {"UsernameClaimed"};
        evs_query_item q = {types, 1, tags, 1};
        evs_append_condition cond = {&q, 1, seen};
        snprintf(data, sizeof data, "{\"u\":%d,\"by\":%d}", n, a->t);
        snprintf(stream, sizeof stream, "account-%d-%d", a->t, i);
        evs_event_in ev = tu_event("UsernameClaimed", data);
        ev.tags = tags;
        ev.ntags = 1;
        evs_append_result r;
        rc = evs_append_if(a->s, stream, EVS_EXPECT_NO_STREAM, getenv("EVS_DCB_UNCONDITIONED") ? NULL : &cond, &ev, 1, &r, NULL);
        if (rc == EVS_OK) a->stored++;
        else if (rc == EVS_ECONDITION) a->refused++;
        else problem(&a->p, "append: %s", evs_errmsg());
    }
    return NULL;
}

static void test_unique_usernames(void) {
    char *d = tu_tempdir("dcb-names");
    evs_store *s = tu_open(d, EVS_DURABILITY_SYNC, 0);
    pthread_t th[NTHREADS];
    warg a[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        memset(&a[t], 0, sizeof a[t]);
        a[t].s = s, a[t].t = t, a[t].seed = 0xabcdefull * (uint64_t)(t + 3) + 7;
        pthread_create(&th[t], NULL, name_writer, &a[t]);
    }
    long stored = 0, refused = 0;
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        CHECK_INT(a[t].p.count, 0);
        if (a[t].p.count) fprintf(stderr, "writer %d: %s\n", t, a[t].p.first);
        stored += a[t].stored;
        refused += a[t].refused;
    }
    int claims[NNAMES] = {0};
    evs_reader *rd;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &rd), EVS_OK);
    const evs_event *e;
    while (evs_reader_next(rd, &e) == EVS_OK) {
        int u = data_int(e, "\"u\":");
        if (u >= 0 && u < NNAMES) claims[u]++;
    }
    evs_reader_close(rd);
    int twice = 0, unclaimed = 0;
    for (int n = 0; n < NNAMES; n++) {
        if (claims[n] > 1) twice++;
        if (claims[n] == 0) unclaimed++;
    }
    CHECK_INT(twice, 0);
    CHECK_INT(unclaimed, 0); /* 480 attempts over 40 names: every name was claimed, once */
    CHECK_INT(stored, NNAMES - unclaimed);
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    printf("usernames: %ld claims stored, %ld refused by their condition\n", stored, refused);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
}

int main(void) {
    test_course_capacity();
    test_unique_usernames();
    return TEST_REPORT();
}

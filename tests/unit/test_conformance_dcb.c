/*
 * test_conformance_dcb.c — dynamic consistency boundaries through the
 * public API, the same on every storage engine (conformance.h: run as
 * `test_conformance_dcb` and `test_conformance_dcb postgresql`):
 *   1. reads by tag: "any" is the union in global order (an event carrying
 *      two of the tags comes once), "all" the intersection, both
 *      directions, with other filters on top, in pages;
 *   2. conditions: types x tags, OR of items, `after`, an empty item, the
 *      expected stream version checked together with the condition both
 *      ways, an idempotent retry, bad conditions refused with the field
 *      named, nothing stored on a failed condition;
 *   3. eight appenders racing for one seat under one condition: exactly
 *      one wins each round, the others name its position;
 *   4. a property test: random appends with random conditions against an
 *      in-memory model that decides which must succeed and names the
 *      first matching position.
 * What only the embedded engine has (its tag index's recovery, conditions
 * inside one group commit) is test_dcb.c.
 */
#include <pthread.h>

#include "conformance.h"
#include "dcb_fixture.h"

/* The embedded engine can also check its files (check is not an operation of the others). */
static void check_if_embedded(evs_store *s) {
    if (cf_pg) return;
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
}

static void test_tag_reads(void) {
    char *d = cf_fresh("dcb_read");
    evs_store *s = cf_open(d);
    fill(s);
    check_fixture_reads(s);
    evs_filter f;
    memset(&f, 0, sizeof f);
    const char *ta[] = {"a"};
    f.tags = ta, f.n_tags = 1;
    f.tag_match = (evs_tag_match)7;
    evs_reader *rd;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "tag_match");
    check_if_embedded(s);
    evs_store_close(s);
    cf_drop(d);
}

/* ------------------------------------------------------------ conditions */

static void test_conditions(void) {
    char *d = cf_fresh("dcb_cond");
    evs_store *s = cf_open(d);
    fill(s);
    const char *tA[] = {"A"}, *tB[] = {"B"}, *tAC[] = {"A", "C"};
    const char *ga[] = {"a"}, *gab[] = {"a", "b"}, *gc[] = {"c"}, *gz[] = {"z"}, *gbc[] = {"b", "c"};
    evs_append_result r;
    const char *newtag[] = {"new"};
    /* each case: query, after, expected first match (0: the append succeeds) */
    struct {
        evs_query_item items[3];
        size_t n;
        uint64_t after, want;
    } cases[] = {
        {{{tA, 1, ga, 1}}, 1, 0, 1},           /* type A with tag a: 1 */
        {{{tA, 1, ga, 1}}, 1, 1, 6},           /* ...after 1: 6 */
        {{{tA, 1, ga, 1}}, 1, 6, 0},           /* ...after 6: none */
        {{{tB, 1, gab, 2}}, 1, 0, 2},          /* B with a and b: 2 */
        {{{tB, 1, gab, 2}}, 1, 2, 0},          /* 7 has a twice, no b */
        {{{NULL, 0, gab, 2}}, 1, 2, 6},        /* any type, a and b */
        {{{NULL, 0, gbc, 2}}, 1, 0, 5},
        {{{tAC, 2, gc, 1}}, 1, 5, 6},          /* A or C with c, after 5 */
        {{{tAC, 2, NULL, 0}}, 1, 6, 8},        /* types only: A or C after 6 -> 8 */
        {{{tB, 1, NULL, 0}}, 1, 7, 0},
        {{{NULL, 0, gz, 1}}, 1, 0, 0},         /* a tag nothing carries */
        {{{NULL, 0, gz, 1}, {tB, 1, ga, 1}}, 2, 2, 7}, /* OR: the second item matches */
        {{{tB, 1, ga, 1}, {tA, 1, gbc, 2}}, 2, 2, 6},  /* OR: the earlier match of the two */
        {{{NULL, 0, NULL, 0}}, 1, 7, 8},       /* an empty item matches any event */
        {{{tA, 1, ga, 1}}, 1, 100, 0},         /* after the head */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        evs_append_condition c = {cases[i].items, cases[i].n, cases[i].after};
        uint64_t head = evs_head(s);
        memset(&r, 0x5a, sizeof r);
        int rc = append_tagged(s, "probe-1", "Probe", newtag, 1, &c, EVS_EXPECT_ANY, &r);
        if (cases[i].want) {
            if (rc != EVS_ECONDITION) fprintf(stderr, "case %zu\n", i);
            CHECK_RC(rc, EVS_ECONDITION);
            CHECK_INT(r.condition_position, cases[i].want);
            char want[64];
            snprintf(want, sizeof want, "global position %llu", (unsigned long long)cases[i].want);
            CHECK_CONTAINS(evs_errmsg(), want);
            CHECK_INT(evs_head(s), head); /* nothing stored */
        } else {
            if (rc != EVS_OK) fprintf(stderr, "case %zu\n", i);
            CHECK_RC(rc, EVS_OK);
            CHECK_INT(r.first_global_position, head + 1);
            CHECK_INT(r.condition_position, 0);
            /* the probe itself is tagged "new": keep the fixture's positions by
               re-appending nothing else; later cases' `after` covers 1..8 only
               except the empty item, which the probe would match: checked last */
        }
    }
    /* the empty item after 8 now sees the probes */
    evs_query_item any = {NULL, 0, NULL, 0};
    evs_append_condition c = {&any, 1, 8};
    CHECK_RC(append_tagged(s, "probe-1", "Probe", NULL, 0, &c, EVS_EXPECT_ANY, &r), EVS_ECONDITION);
    CHECK_INT(r.condition_position, 9);
    CHECK_CONTAINS(evs_errmsg(), "query item 1");

    /* expected version and condition: both must hold, version first */
    evs_query_item q = {NULL, 0, newtag, 1};
    uint64_t head = evs_head(s);
    evs_append_condition holds = {&q, 1, head}, fails = {&q, 1, 8};
    evs_stream_info si;
    CHECK_RC(evs_stream_get_info(s, "probe-1", &si), EVS_OK);
    int64_t v = (int64_t)si.version;
    CHECK_RC(append_tagged(s, "probe-1", "P", NULL, 0, &holds, v + 5, &r), EVS_ECONFLICT); /* version wrong, cond ok */
    CHECK_INT(r.actual_version, v);
    CHECK_RC(append_tagged(s, "probe-1", "P", NULL, 0, &fails, v + 5, &r), EVS_ECONFLICT); /* both wrong: version said */
    CHECK_RC(append_tagged(s, "probe-1", "P", NULL, 0, &fails, v, &r), EVS_ECONDITION);    /* version ok, cond fails */
    CHECK_INT(r.condition_position, 9);
    CHECK_INT(evs_head(s), head);
    CHECK_RC(append_tagged(s, "probe-1", "P", newtag, 1, &holds, v, &r), EVS_OK);          /* both hold */
    CHECK_INT(r.first_stream_position, (uint64_t)v + 1);
    CHECK_RC(append_tagged(s, "probe-2", "P", NULL, 0, &holds, EVS_EXPECT_NO_STREAM, &r), EVS_ECONDITION);
    CHECK_INT(r.condition_position, head + 1); /* the append just made */

    /* an idempotent retry of a conditional append: the original result */
    evs_uuid id;
    evs_uuid_v7(&id);
    evs_event_in e = tu_event("Claimed", "{\"n\":1}");
    const char *claim[] = {"claim:1"};
    e.tags = claim, e.ntags = 1, e.event_id = &id;
    evs_query_item cq = {NULL, 0, claim, 1};
    evs_append_condition cc = {&cq, 1, evs_head(s)};
    evs_append_result r1, r2;
    CHECK_RC(evs_append_if(s, "claim-1", EVS_EXPECT_ANY, &cc, &e, 1, &r1, NULL), EVS_OK);
    CHECK_RC(evs_append_if(s, "claim-1", EVS_EXPECT_ANY, &cc, &e, 1, &r2, NULL), EVS_OK);
    CHECK_INT(r2.idempotent, 1);
    CHECK_INT(r2.first_global_position, r1.first_global_position);
    evs_uuid id2;
    evs_uuid_v7(&id2);
    e.event_id = &id2; /* a new event under the same condition: refused */
    CHECK_RC(evs_append_if(s, "claim-1", EVS_EXPECT_ANY, &cc, &e, 1, &r2, NULL), EVS_ECONDITION);
    CHECK_INT(r2.condition_position, r1.first_global_position);

    /* bad conditions: refused before anything queues, the field named */
    head = evs_head(s);
    evs_append_condition bad = {NULL, 0, 0};
    CHECK_RC(append_tagged(s, "probe-1", "P", NULL, 0, &bad, EVS_EXPECT_ANY, &r), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "at least one item");
    const char *empty[] = {""}, *badutf[] = {"\xff"};
    evs_query_item bi[2] = {{tA, 1, NULL, 0}, {NULL, 0, empty, 1}};
    bad.items = bi, bad.n_items = 2;
    CHECK_RC(append_tagged(s, "probe-1", "P", NULL, 0, &bad, EVS_EXPECT_ANY, &r), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "query item 2: tags 1");
    bi[1].tags = badutf;
    CHECK_RC(append_tagged(s, "probe-1", "P", NULL, 0, &bad, EVS_EXPECT_ANY, &r), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "UTF-8");
    bi[1].tags = NULL; /* NULL list with a count */
    CHECK_RC(append_tagged(s, "probe-1", "P", NULL, 0, &bad, EVS_EXPECT_ANY, &r), EVS_EINVAL);
    bi[1].n_tags = 0;
    bi[1].event_types = empty, bi[1].n_event_types = 1;
    CHECK_RC(append_tagged(s, "probe-1", "P", NULL, 0, &bad, EVS_EXPECT_ANY, &r), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "event types 1");
    bad.n_items = EVS_MAX_QUERY_ITEMS + 1;
    CHECK_RC(append_tagged(s, "probe-1", "P", NULL, 0, &bad, EVS_EXPECT_ANY, &r), EVS_ELIMIT);
    CHECK_INT(evs_head(s), head);
    CHECK_STR(evs_errname(EVS_ECONDITION), "ECONDITION");
    check_if_embedded(s);
    evs_store_close(s);
    cf_drop(d);
}

/* ------------------------------------------------------------------ race */

#define NRACE 8

typedef struct race_arg {
    evs_store *s;
    pthread_barrier_t *bar;
    int t, round;
    uint64_t after;
    int rc;
    evs_append_result r;
} race_arg;

static void *race_thread(void *p) {
    race_arg *a = p;
    char seat[32], stream[32];
    snprintf(seat, sizeof seat, "seat:%d", a->round);
    snprintf(stream, sizeof stream, "claim-%d", a->t);
    const char *tags[] = {seat};
    evs_query_item q = {NULL, 0, tags, 1};
    evs_append_condition c = {&q, 1, a->after};
    pthread_barrier_wait(a->bar);
    a->rc = append_tagged(a->s, stream, "SeatTaken", tags, 1, &c, EVS_EXPECT_ANY, &a->r);
    return NULL;
}

/* Each round a new seat: whatever the interleaving, one claim is stored and seven are refused naming it. */
static void test_race(void) {
    char *d = cf_fresh("dcb_race");
    evs_store *s = cf_open(d);
    for (int round = 0; round < 20; round++) {
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, NRACE);
        race_arg a[NRACE];
        pthread_t th[NRACE];
        uint64_t after = evs_head(s);
        for (int t = 0; t < NRACE; t++) {
            a[t] = (race_arg){s, &bar, t, round, after, 0, {0}};
            pthread_create(&th[t], NULL, race_thread, &a[t]);
        }
        for (int t = 0; t < NRACE; t++) pthread_join(th[t], NULL);
        pthread_barrier_destroy(&bar);
        int wins = 0;
        uint64_t won = 0;
        for (int t = 0; t < NRACE; t++)
            if (a[t].rc == EVS_OK) wins++, won = a[t].r.first_global_position;
        CHECK_INT(wins, 1);
        for (int t = 0; t < NRACE; t++)
            if (a[t].rc != EVS_OK) {
                CHECK_RC(a[t].rc, EVS_ECONDITION);
                CHECK_INT(a[t].r.condition_position, won);
            }
        CHECK_INT(evs_head(s), after + 1);
    }
    /* what was stored: one claim per seat, read back by tag */
    for (int round = 0; round < 20; round++) {
        char seat[32];
        snprintf(seat, sizeof seat, "seat:%d", round);
        const char *tags[] = {seat};
        evs_filter f;
        memset(&f, 0, sizeof f);
        f.tags = tags, f.n_tags = 1;
        uint64_t p[4];
        CHECK_INT(read_pos(s, EVS_FORWARD, &f, p, 4), 1);
    }
    evs_store_close(s);
    cf_drop(d);
}

/* ------------------------------------------------------- property test */

#define M_TYPES 3
#define M_TAGS 5
#define M_MAX 2000

static const char *m_type_names[M_TYPES] = {"T0", "T1", "T2"};
static const char *m_tag_names[M_TAGS] = {"g0", "g1", "g2", "g3", "g4"};

typedef struct m_event {
    int type;
    unsigned tags; /* bit i: m_tag_names[i] */
} m_event;

static uint64_t rnd(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

typedef struct m_item {
    unsigned types; /* bit set; 0: any */
    unsigned tags;  /* all of these */
} m_item;

/* The model: the first event after `after` that an item matches, 0 when none. */
static uint64_t m_first(const m_event *ev, uint64_t n, const m_item *items, size_t ni, uint64_t after) {
    for (uint64_t g = after + 1; g <= n; g++)
        for (size_t i = 0; i < ni; i++) {
            const m_event *e = &ev[g - 1];
            if (items[i].types && !(items[i].types & (1u << e->type))) continue;
            if ((e->tags & items[i].tags) != items[i].tags) continue;
            return g;
        }
    return 0;
}

/*
 * Random appends of 1..3 events with random types and tags, each under a
 * random condition (1..3 items of random types and 0..2 tags, `after`
 * somewhere in the log, often near its end, as a fresh read would leave
 * it).  The model (a list of events and a linear search) says whether the
 * append must succeed and, if not, which position must be named; every
 * so often the store is reopened and reads by tag are compared too.
 */
static void test_model(void) {
    char *d = cf_fresh("dcb_model");
    evs_store *s = cf_open(d);
    static m_event model[M_MAX + 8];
    uint64_t n = 0, x = 0x9e3779b97f4a7c15ull, ok = 0, refused = 0;
    int failures_before = tu_failures;
    for (int step = 0; step < 1500 && n < M_MAX; step++) {
        size_t ne = 1 + rnd(&x) % 3;
        evs_event_in ev[3];
        const char *tagv[3][M_TAGS];
        m_event me[3];
        for (size_t i = 0; i < ne; i++) {
            me[i].type = (int)(rnd(&x) % M_TYPES);
            me[i].tags = (unsigned)(rnd(&x) % (1u << M_TAGS)) & (unsigned)rnd(&x); /* sparse */
            ev[i] = tu_event(m_type_names[me[i].type], "{}");
            size_t k = 0;
            for (int t = 0; t < M_TAGS; t++)
                if (me[i].tags & (1u << t)) tagv[i][k++] = m_tag_names[t];
            ev[i].tags = tagv[i];
            ev[i].ntags = k;
        }
        size_t ni = 1 + rnd(&x) % 3;
        m_item mi[3];
        evs_query_item qi[3];
        const char *qtypes[3][M_TYPES], *qtags[3][M_TAGS];
        for (size_t i = 0; i < ni; i++) {
            mi[i].types = (unsigned)(rnd(&x) % (1u << M_TYPES));
            mi[i].tags = 0;
            size_t want = rnd(&x) % 3;
            for (size_t k = 0; k < want; k++) mi[i].tags |= 1u << (rnd(&x) % M_TAGS);
            size_t nt = 0, ng = 0;
            for (int t = 0; t < M_TYPES; t++)
                if (mi[i].types & (1u << t)) qtypes[i][nt++] = m_type_names[t];
            for (int t = 0; t < M_TAGS; t++)
                if (mi[i].tags & (1u << t)) qtags[i][ng++] = m_tag_names[t];
            qi[i] = (evs_query_item){qtypes[i], nt, qtags[i], ng};
        }
        uint64_t after = rnd(&x) % 4 ? (n > 10 ? n - rnd(&x) % 10 : n) : (n ? rnd(&x) % n : 0);
        evs_append_condition c = {qi, ni, after};
        char stream[16];
        snprintf(stream, sizeof stream, "m-%d", (int)(rnd(&x) % 7));
        evs_append_result r;
        int rc = evs_append_if(s, stream, EVS_EXPECT_ANY, &c, ev, ne, &r, NULL);
        uint64_t want = m_first(model, n, mi, ni, after);
        if (want) {
            CHECK_RC(rc, EVS_ECONDITION);
            CHECK_INT(r.condition_position, want);
            refused++;
        } else {
            CHECK_RC(rc, EVS_OK);
            CHECK_INT(r.first_global_position, n + 1);
            for (size_t i = 0; i < ne; i++) model[n++] = me[i];
            ok++;
        }
        if (tu_failures > failures_before) {
            fprintf(stderr, "model step %d diverged\n", step);
            break;
        }
        if (step % 500 == 499) {
            evs_store_close(s);
            s = cf_open(d);
        }
    }
    CHECK_INT(evs_head(s), n);
    /* both outcomes were exercised plenty */
    CHECK(ok > 200);
    CHECK(refused > 200);
    /* reads by tag against the model: every pair of tags, any and all */
    for (int a = 0; a < M_TAGS; a++)
        for (int b = a; b < M_TAGS; b++)
            for (int mode = 0; mode < 2; mode++) {
                const char *t[2] = {m_tag_names[a], m_tag_names[b]};
                evs_filter f;
                memset(&f, 0, sizeof f);
                f.tags = t, f.n_tags = a == b ? 1 : 2, f.tag_match = mode ? EVS_TAGS_ALL : EVS_TAGS_ANY;
                unsigned mask = (1u << a) | (1u << b);
                evs_reader *rd;
                CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
                const evs_event *e;
                uint64_t g = 0;
                int bad = 0;
                for (;;) {
                    int rc = evs_reader_next(rd, &e);
                    uint64_t next = 0;
                    for (uint64_t k = g + 1; k <= n && !next; k++)
                        if (mode ? (model[k - 1].tags & mask) == mask : (model[k - 1].tags & mask) != 0) next = k;
                    if (rc == EVS_DONE) {
                        if (next) bad++;
                        break;
                    }
                    if (rc != EVS_OK || e->global_position != next) {
                        bad++;
                        break;
                    }
                    g = next;
                }
                evs_reader_close(rd);
                CHECK_INT(bad, 0);
            }
    check_if_embedded(s);
    printf("model: %llu appends stored, %llu refused, %llu events\n", (unsigned long long)ok,
           (unsigned long long)refused, (unsigned long long)n);
    evs_store_close(s);
    cf_drop(d);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    printf("engine: %s\n", cf_engine());
    test_tag_reads();
    test_conditions();
    test_race();
    test_model();
    return TEST_REPORT();
}

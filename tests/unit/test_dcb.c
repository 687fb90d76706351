/*
 * test_dcb.c — the tag index and the DCB conditional append
 * (src/index/index.c `tags`, src/index/ixquery.c, evs_append_if in
 * src/store/store.c):
 *   1. reads by tag walk the index: "any" merges the tags' lists in global
 *      order (an event carrying two of the tags comes once), "all"
 *      intersects them, both directions, with other filters on top;
 *   2. conditions: types x tags, OR of items, `after`, an empty item, the
 *      expected stream version checked together with the condition both
 *      ways, an idempotent retry, bad conditions refused with the field
 *      named, nothing stored on a failed condition;
 *   3. conditions against earlier appends of the same group commit (their
 *      index entries are in the leader's transaction, not yet committed);
 *   4. recovery: a crash (no sync, no clean close), a deleted index and an
 *      index from before the tag index (format 1) all come back with the
 *      tag entries, and `check` finds a missing or a stray tag entry;
 *   5. a property test: random appends with random conditions against an
 *      in-memory model that decides which must succeed and names the
 *      first matching position.
 */
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "store/store_testing.h"
#include "testutil.h"

static int append_tagged(evs_store *s, const char *stream, const char *type, const char *const *tags, size_t ntags,
                         const evs_append_condition *c, int64_t expected, evs_append_result *r) {
    evs_event_in e = tu_event(type, "{}");
    e.tags = tags;
    e.ntags = ntags;
    return evs_append_if(s, stream, expected, c, &e, 1, r, NULL);
}

/* Read $all with f; positions into pos (at most max); returns how many. */
static int read_pos(evs_store *s, int dir, const evs_filter *f, uint64_t *pos, int max) {
    evs_reader *rd;
    if (evs_read_all(s, dir == EVS_FORWARD ? 1 : EVS_POSITION_END, dir, f, 0, &rd)) return -1;
    const evs_event *e;
    int n = 0, rc;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK)
        if (n < max) pos[n++] = e->global_position;
    evs_reader_close(rd);
    return rc == EVS_DONE ? n : -1;
}

#define CHECK_POS(got, n, ...)                                                        \
    do {                                                                              \
        uint64_t want_[] = {__VA_ARGS__};                                             \
        CHECK_INT(n, (int)(sizeof want_ / sizeof want_[0]));                          \
        for (size_t i_ = 0; i_ < sizeof want_ / sizeof want_[0] && (int)i_ < n; i_++) \
            CHECK_INT(got[i_], want_[i_]);                                            \
    } while (0)

/* Events 1..8 of the fixture; see the comments for their type and tags. */
static void fill(evs_store *s) {
    const char *a[] = {"a"}, *ab[] = {"a", "b"}, *b[] = {"b"}, *bc[] = {"b", "c"}, *abc[] = {"c", "a", "b"};
    const char *aa[] = {"a", "a"};
    evs_append_result r;
    CHECK_RC(append_tagged(s, "x-1", "A", a, 1, NULL, EVS_EXPECT_ANY, &r), EVS_OK);   /* 1 A [a] */
    CHECK_RC(append_tagged(s, "x-1", "B", ab, 2, NULL, EVS_EXPECT_ANY, &r), EVS_OK);  /* 2 B [a b] */
    CHECK_RC(append_tagged(s, "x-2", "A", NULL, 0, NULL, EVS_EXPECT_ANY, &r), EVS_OK); /* 3 A [] */
    CHECK_RC(append_tagged(s, "x-2", "A", b, 1, NULL, EVS_EXPECT_ANY, &r), EVS_OK);   /* 4 A [b] */
    CHECK_RC(append_tagged(s, "x-3", "C", bc, 2, NULL, EVS_EXPECT_ANY, &r), EVS_OK);  /* 5 C [b c] */
    CHECK_RC(append_tagged(s, "x-3", "A", abc, 3, NULL, EVS_EXPECT_ANY, &r), EVS_OK); /* 6 A [c a b] */
    CHECK_RC(append_tagged(s, "x-1", "B", aa, 2, NULL, EVS_EXPECT_ANY, &r), EVS_OK);  /* 7 B [a a] */
    CHECK_RC(append_tagged(s, "x-4", "C", NULL, 0, NULL, EVS_EXPECT_ANY, &r), EVS_OK); /* 8 C [] */
}

static void check_fixture_reads(evs_store *s) {
    uint64_t p[16];
    int n;
    const char *ta[] = {"a"}, *tab[] = {"a", "b"}, *tbc[] = {"b", "c"}, *tcab[] = {"c", "a", "b"}, *tz[] = {"z"};
    const char *tza[] = {"z", "a"};
    evs_filter f;
    memset(&f, 0, sizeof f);
    f.tags = ta, f.n_tags = 1;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 1, 2, 6, 7);
    f.tags = tab, f.n_tags = 2; /* any: a union in global order, each event once */
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 1, 2, 4, 5, 6, 7);
    n = read_pos(s, EVS_BACKWARD, &f, p, 16);
    CHECK_POS(p, n, 7, 6, 5, 4, 2, 1);
    f.tag_match = EVS_TAGS_ALL; /* all: the intersection */
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 2, 6);
    n = read_pos(s, EVS_BACKWARD, &f, p, 16);
    CHECK_POS(p, n, 6, 2);
    f.tags = tbc, f.n_tags = 2;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 5, 6);
    f.tags = tcab, f.n_tags = 3;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 6);
    f.tags = tza, f.n_tags = 2; /* a tag nothing carries: the intersection is empty */
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_INT(n, 0);
    f.tag_match = EVS_TAGS_ANY;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 1, 2, 6, 7);
    f.tags = tz, f.n_tags = 1;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_INT(n, 0);
    /* with an event type on top */
    const char *tyA[] = {"A"};
    f.tags = tab, f.n_tags = 2;
    f.event_types = tyA, f.n_event_types = 1;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 1, 4, 6);
    f.tag_match = EVS_TAGS_ALL;
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 6);
    /* a stream type on top (the tag index still leads) */
    memset(&f, 0, sizeof f);
    f.tags = ta, f.n_tags = 1;
    f.stream_prefix = "x-1";
    n = read_pos(s, EVS_FORWARD, &f, p, 16);
    CHECK_POS(p, n, 1, 2, 7);
    /* a page: limit and position to continue from */
    memset(&f, 0, sizeof f);
    f.tags = tab, f.n_tags = 2;
    evs_reader *rd;
    CHECK_RC(evs_read_all(s, 3, EVS_FORWARD, &f, 2, &rd), EVS_OK);
    const evs_event *e;
    CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
    CHECK_INT(e->global_position, 4);
    CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
    CHECK_INT(e->global_position, 5);
    CHECK_RC(evs_reader_next(rd, &e), EVS_DONE);
    CHECK_INT(evs_reader_position(rd), 6);
    evs_reader_close(rd);
}

static void test_tag_reads(void) {
    char *d = tu_tempdir("dcb-read");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 0);
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
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
}

/* ------------------------------------------------------------ conditions */

static void test_conditions(void) {
    char *d = tu_tempdir("dcb-cond");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 0);
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
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
}

/* ------------------------------------------------- same group commit */

#define NSAME 8

typedef struct same_arg {
    evs_store *s;
    pthread_barrier_t *bar;
    int t;
    uint64_t after;
    int rc;
    evs_append_result r;
    char msg[512];
} same_arg;

static void *same_thread(void *p) {
    same_arg *a = p;
    const char *tags[] = {"seat:1"};
    evs_query_item q = {NULL, 0, tags, 1};
    evs_append_condition c = {&q, 1, a->after};
    char stream[32];
    snprintf(stream, sizeof stream, "claim-%d", a->t);
    pthread_barrier_wait(a->bar);
    a->rc = append_tagged(a->s, stream, "SeatTaken", tags, 1, &c, EVS_EXPECT_ANY, &a->r);
    snprintf(a->msg, sizeof a->msg, "%s", a->rc ? evs_errmsg() : "");
    return NULL;
}

/*
 * Eight appenders race for one seat under the same condition.  Whichever
 * batch they land in, exactly one wins and the others name its position.
 * Rounds repeat until a loser was refused by the winner's event in the
 * same group commit (the message says so), which is the case the
 * leader's transaction must handle: the winner's index entries are not
 * committed when the losers are checked.
 */
static void test_same_batch(void) {
    char *d = tu_tempdir("dcb-batch");
    evs_store *s = tu_open(d, EVS_DURABILITY_SYNC, 0);
    int same = 0;
    for (int round = 0; round < 100 && !same; round++) {
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, NSAME);
        same_arg a[NSAME];
        pthread_t th[NSAME];
        uint64_t after = evs_head(s);
        for (int t = 0; t < NSAME; t++) {
            a[t] = (same_arg){s, &bar, t, after, 0, {0}, {0}};
            pthread_create(&th[t], NULL, same_thread, &a[t]);
        }
        for (int t = 0; t < NSAME; t++) pthread_join(th[t], NULL);
        pthread_barrier_destroy(&bar);
        int wins = 0;
        uint64_t won = 0;
        for (int t = 0; t < NSAME; t++)
            if (a[t].rc == EVS_OK) wins++, won = a[t].r.first_global_position;
        CHECK_INT(wins, 1);
        for (int t = 0; t < NSAME; t++)
            if (a[t].rc != EVS_OK) {
                CHECK_RC(a[t].rc, EVS_ECONDITION);
                CHECK_INT(a[t].r.condition_position, won);
                if (strstr(a[t].msg, "same group commit")) same = 1;
            }
        CHECK_INT(evs_head(s), after + 1);
    }
    CHECK(same); /* some loser was checked against its winner's uncommitted entries */
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
}

/* ------------------------------------------------------------- recovery */

static void check_tags_ok(evs_store *s) {
    check_fixture_reads(s);
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    const char *ga[] = {"a"};
    evs_query_item q = {NULL, 0, ga, 1};
    evs_append_condition c = {&q, 1, 6};
    evs_append_result r;
    CHECK_RC(append_tagged(s, "probe-1", "P", NULL, 0, &c, EVS_EXPECT_ANY, &r), EVS_ECONDITION);
    CHECK_INT(r.condition_position, 7);
}

/* Change the index directly (as damage or an older program would). */
static int ix_edit(const char *dir, int what) {
    char path[4200];
    snprintf(path, sizeof path, "%s/index", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, tags;
    int rc = mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, (size_t)64 << 20);
    if ((rc = mdb_env_open(env, path, 0, 0644))) goto out;
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn))) goto out;
    if (!(rc = mdb_dbi_open(txn, "meta", 0, &meta)) && !(rc = mdb_dbi_open(txn, "tags", MDB_DUPSORT, &tags))) {
        uint8_t g[8] = {0, 0, 0, 0, 0, 0, 0, 6};
        MDB_val k = {1, "a"}, v = {8, g};
        if (what == 0) { /* format 1: no tag index, no format key */
            MDB_val fk = {6, "format"};
            if (!(rc = mdb_drop(txn, tags, 1))) rc = mdb_del(txn, meta, &fk, NULL);
        } else if (what == 1) { /* lose the entry of event 6 under "a" */
            rc = mdb_del(txn, tags, &k, &v);
        } else { /* a stray entry: event 3 carries no tag */
            g[7] = 3;
            rc = mdb_put(txn, tags, &k, &v, 0);
        }
    }
    if (rc) mdb_txn_abort(txn);
    else rc = mdb_txn_commit(txn);
out:
    mdb_env_close(env);
    return rc;
}

static void test_recovery(void) {
    char *d = tu_tempdir("dcb-rec");
    evs_store *s = tu_open(d, EVS_DURABILITY_SYNC, 0);
    fill(s);
    evs__store_abandon(s); /* a crash: the index neither synced nor closed cleanly */
    s = tu_open(d, EVS_DURABILITY_SYNC, 0);
    check_tags_ok(s);
    evs_store_close(s);

    /* a deleted index is rebuilt with its tag entries */
    char path[4200];
    snprintf(path, sizeof path, "%s/index", d);
    tu_rmrf(path);
    s = tu_open(d, EVS_DURABILITY_SYNC, 0);
    check_tags_ok(s);
    evs_store_close(s);

    /* an index written before the tag index: a writer rebuilds it, a reader scans */
    CHECK_INT(ix_edit(d, 0), 0);
    evs_store *ro;
    CHECK_RC(evs_store_create(&ro), EVS_OK);
    CHECK_RC(evs_store_open(ro, d, EVS_OPEN_READONLY), EVS_OK);
    check_fixture_reads(ro); /* the same answers, by scanning */
    evs_store_close(ro);
    s = tu_open(d, EVS_DURABILITY_SYNC, 0);
    CHECK_CONTAINS(evs_store_recovery_report(s), "tag index");
    check_tags_ok(s);
    evs_store_close(s);

    /* check finds a missing tag entry, and a stray one */
    for (int what = 1; what <= 2; what++) {
        CHECK_INT(ix_edit(d, what), 0);
        s = tu_open(d, EVS_DURABILITY_SYNC, 0);
        evs_check_report rep;
        CHECK_RC(evs_store_check(s, &rep), EVS_ECORRUPT);
        CHECK_CONTAINS(rep.first_error, what == 1 ? "tag entry missing" : "tags holds entries");
        evs_store_close(s);
        snprintf(path, sizeof path, "%s/index", d);
        tu_rmrf(path); /* the cure: rebuild it */
        s = tu_open(d, EVS_DURABILITY_SYNC, 0);
        CHECK_RC(evs_store_check(s, &rep), EVS_OK);
        evs_store_close(s);
    }
    tu_rmrf(d);
    free(d);
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
    char *d = tu_tempdir("dcb-model");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 0);
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
            s = tu_open(d, EVS_DURABILITY_NONE, 0);
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
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    printf("model: %llu appends stored, %llu refused, %llu events\n", (unsigned long long)ok,
           (unsigned long long)refused, (unsigned long long)n);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
}

int main(void) {
    test_tag_reads();
    test_conditions();
    test_same_batch();
    test_recovery();
    test_model();
    return TEST_REPORT();
}

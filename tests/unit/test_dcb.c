/*
 * test_dcb.c — what the embedded engine's tag index and DCB conditional
 * append (src/index/index.c `tags`, src/index/ixquery.c, evs_append_if in
 * src/store/store.c) must do beyond the engine-neutral suite
 * (test_conformance_dcb.c: reads by tag, conditions, the property test):
 *   1. conditions against earlier appends of the same group commit (their
 *      index entries are in the leader's transaction, not yet committed);
 *   2. recovery: a crash (no sync, no clean close), a deleted index and an
 *      index from before the tag index (format 1) all come back with the
 *      tag entries, and `check` finds a missing or a stray tag entry.
 */
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "dcb_fixture.h"
#include "store/store_testing.h"

/* ------------------------------------------------------------ conditions */

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

int main(void) {
    test_same_batch();
    test_recovery();
    return TEST_REPORT();
}

/*
 * test_scavenge.c — evs_scavenge (src/store/scavenge.c):
 *   1. a dry run finds space to give back and changes nothing;
 *   2. a run gives it back: fewer log bytes, every event readable before is
 *      readable after at the same positions with the same bytes, $all
 *      reports the removed ranges as scavenged, `check` is clean, and the
 *      deleted streams stay deleted (a stream read of a truncated stream
 *      still starts at its first visible event);
 *   3. appends after it continue the positions; a second run finds nothing;
 *   4. the same holds after a reopen and after the index is rebuilt from
 *      the log (the SCAVENGED records carry what the index needs);
 *   5. bad input: unknown flags and a read-only store are refused;
 *   6. the rate limit is a floor on the time taken (bytes examined over the
 *      rate: sleeping can only make it longer, so this cannot fail on a
 *      slow machine), and the cancel flag stops a run after the segment in
 *      progress, the rest of the work left for the next run;
 *   7. I/O failures (io_fault.h) at each kind of file operation the
 *      scavenge makes: it fails naming what failed, and the store, reopened,
 *      holds every event unchanged, checks clean and scavenges to the end.
 */
#include <errno.h>
#include <time.h>

#include "io/io_fault.h"
#include "scavenge_fixture.h"
#include "store/store_testing.h"

static uint64_t log_bytes(evs_store *s) {
    evs_store_stats st;
    CHECK_RC(evs_store_get_stats(s, &st), EVS_OK);
    return st.log_bytes;
}

static void check_clean(evs_store *s) {
    evs_check_report rep;
    int rc = evs_store_check(s, &rep);
    if (rc) fprintf(stderr, "check: %s\n", evs_errmsg());
    CHECK_RC(rc, EVS_OK);
}

static void check_streams(evs_store *s, int rounds) {
    evs_reader *r;
    const evs_event *e;
    CHECK_RC(evs_read_stream(s, "gone-2", 1, EVS_FORWARD, 0, &r), EVS_ENOTFOUND);
    CHECK_RC(evs_read_stream(s, "soft-1", 1, EVS_FORWARD, 0, &r), EVS_ENOTFOUND);
    CHECK_RC(evs_read_stream(s, "trunc-1", 1, EVS_FORWARD, 0, &r), EVS_OK);
    CHECK_RC(evs_reader_next(r, &e), EVS_OK);
    if (e) CHECK_INT(e->stream_position, (uint64_t)rounds / 2);
    evs_reader_close(r);
    CHECK_RC(evs_read_stream(s, "keep-2", 1, EVS_FORWARD, 0, &r), EVS_OK);
    int n = 0;
    while (evs_reader_next(r, &e) == EVS_OK) n++;
    evs_reader_close(r);
    CHECK_INT(n, rounds);
}

static void test_io_faults(const char *pristine, const sf_snap *before) {
    static const evs_fault_op ops[] = {EVS_FOP_OPEN, EVS_FOP_PWRITE, EVS_FOP_FSYNC, EVS_FOP_MAP, EVS_FOP_RENAME,
                                       EVS_FOP_SYNC_DIR};
    char work[4200], cmd[9000];
    snprintf(work, sizeof work, "%s-io", pristine);
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        tu_rmrf(work);
        snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", pristine, work);
        CHECK_INT(system(cmd), 0);
        evs_fault *f;
        CHECK_RC(evs__fault_create(&f), EVS_OK);
        evs_store *s;
        CHECK_RC(evs_store_create(&s), EVS_OK);
        CHECK_RC(evs_store_set_segment_size(s, 64 << 10), EVS_OK);
        CHECK_RC(evs__store_set_io(s, evs__fault_io(f)), EVS_OK);
        CHECK_RC(evs_store_open(s, work, 0), EVS_OK);
        evs__fault_fail(f, ops[i], 1, 1, EIO);
        int rc = evs_scavenge(s, NULL, NULL);
        CHECK(rc != EVS_OK);
        if (rc == EVS_OK) fprintf(stderr, "a failing %s went unnoticed\n", evs__fault_op_name(ops[i]));
        else CHECK_CONTAINS(evs_errmsg(), "segment");
        evs__fault_clear_rules(f);
        (void)evs_store_close(s);
        evs__fault_destroy(f);
        s = tu_open(work, EVS_DURABILITY_SYNC, 64 << 10);
        sf_snap now;
        char why[200] = "";
        CHECK_RC(sf_snapshot(s, &now), EVS_OK);
        if (!sf_same(before, &now, why, sizeof why)) fprintf(stderr, "%s: %s\n", evs__fault_op_name(ops[i]), why);
        CHECK(why[0] == 0);
        sf_free(&now);
        check_clean(s);
        evs_scavenge_progress p;
        CHECK_RC(evs_scavenge(s, NULL, &p), EVS_OK);
        check_clean(s);
        CHECK_RC(evs_store_close(s), EVS_OK);
    }
    tu_rmrf(work);
}

static int cancel_now;

static void cancel_after_first(void *arg, const evs_scavenge_progress *p) {
    (void)arg;
    if (p->segments_rewritten >= 1) __atomic_store_n(&cancel_now, 1, __ATOMIC_RELAXED);
}

static void test_rate_and_cancel(const char *pristine) {
    char work[4200], cmd[9000];
    snprintf(work, sizeof work, "%s-rate", pristine);
    tu_rmrf(work);
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", pristine, work);
    CHECK_INT(system(cmd), 0);
    evs_store *s = tu_open(work, EVS_DURABILITY_SYNC, 64 << 10);
    evs_scavenge_options o;
    memset(&o, 0, sizeof o);
    o.cancel = &cancel_now;
    o.progress = cancel_after_first;
    evs_scavenge_progress p;
    CHECK_RC(evs_scavenge(s, &o, &p), EVS_OK);
    CHECK(p.cancelled && p.segments_rewritten == 1 && p.segments_done < p.segments_total);
    __atomic_store_n(&cancel_now, 0, __ATOMIC_RELAXED);
    memset(&o, 0, sizeof o);
    o.rate_bytes_per_sec = 1000000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_RC(evs_scavenge(s, &o, &p), EVS_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK(!p.cancelled && p.segments_rewritten > 0);
    CHECK(took >= (double)p.bytes_examined / 1e6 * 0.99);
    if (took < (double)p.bytes_examined / 1e6 * 0.99)
        fprintf(stderr, "%llu bytes at 1 MB/s took %.3f s\n", (unsigned long long)p.bytes_examined, took);
    check_clean(s);
    CHECK_RC(evs_store_close(s), EVS_OK);
    tu_rmrf(work);
}

int main(void) {
    const int rounds = 150;
    char *d = tu_tempdir("scavenge");
    evs_store *s = tu_open(d, EVS_DURABILITY_SYNC, 64 << 10);
    sf_populate(s, rounds);
    for (int i = 0; i < 300; i++) sf_append(s, "keep-4", i); /* later segments: the hidden ones are sealed */
    sf_snap before, after;
    CHECK_RC(sf_snapshot(s, &before), EVS_OK);
    CHECK_INT(before.lost_ranges, 0u);
    /* 6. first, on copies of this store */
    CHECK_RC(evs_store_close(s), EVS_OK);
    test_io_faults(d, &before);
    test_rate_and_cancel(d);
    s = tu_open(d, EVS_DURABILITY_SYNC, 64 << 10);
    uint64_t bytes0 = log_bytes(s);

    /* 1. dry run */
    evs_scavenge_options o;
    memset(&o, 0, sizeof o);
    o.flags = EVS_SCAVENGE_DRY_RUN;
    evs_scavenge_progress p;
    CHECK_RC(evs_scavenge(s, &o, &p), EVS_OK);
    CHECK(p.dry_run && p.segments_total > 3 && p.segments_rewritten > 0 && p.bytes_reclaimed > 0);
    CHECK(p.events_removed > (uint64_t)rounds * 3);
    CHECK_INT(log_bytes(s), bytes0);
    CHECK_RC(sf_snapshot(s, &after), EVS_OK);
    CHECK_INT(after.lost_ranges, 0u);
    sf_free(&after);
    uint64_t dry = p.bytes_reclaimed;

    /* 2. the real run */
    o.flags = 0;
    CHECK_RC(evs_scavenge(s, &o, &p), EVS_OK);
    CHECK(!p.dry_run && p.segments_rewritten > 0);
    printf("scavenge: %u of %u segments rewritten, %llu of %llu bytes reclaimed, %llu events removed\n", p.segments_rewritten,
           p.segments_total, (unsigned long long)p.bytes_reclaimed, (unsigned long long)bytes0, (unsigned long long)p.events_removed);
    CHECK_INT(p.bytes_reclaimed, dry);
    CHECK_INT(log_bytes(s), bytes0 - p.bytes_reclaimed);
    evs_scavenge_stats st;
    CHECK_RC(evs_scavenge_get_stats(s, &st), EVS_OK);
    CHECK(!st.running && st.runs == 2 && st.bytes_reclaimed == p.bytes_reclaimed);
    char why[200] = "";
    CHECK_RC(sf_snapshot(s, &after), EVS_OK);
    CHECK(sf_same(&before, &after, why, sizeof why));
    if (why[0]) fprintf(stderr, "%s\n", why);
    CHECK_INT(after.n, before.n);
    CHECK(after.scavenged_ranges > 0 && after.scavenged_ranges == after.lost_ranges);
    CHECK_INT(after.lost_positions, p.events_removed);
    sf_free(&after);
    check_clean(s);
    check_streams(s, rounds);

    /* 3. appends go on; a second run has nothing left to do */
    sf_append(s, "keep-1", 999);
    CHECK_RC(evs_stream_delete(s, "gone-1", EVS_EXPECT_ANY, 0), EVS_EDELETED);
    evs_scavenge_progress p2;
    CHECK_RC(evs_scavenge(s, NULL, &p2), EVS_OK);
    CHECK_INT(p2.bytes_reclaimed, 0u);
    check_clean(s);
    CHECK_RC(evs_store_close(s), EVS_OK);

    /* 4. reopen; then rebuild the index from the log */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            char ix[4200];
            snprintf(ix, sizeof ix, "%s/index", d);
            tu_rmrf(ix);
        }
        s = tu_open(d, EVS_DURABILITY_SYNC, 64 << 10);
        CHECK_RC(sf_snapshot(s, &after), EVS_OK);
        why[0] = 0;
        CHECK(sf_same(&before, &after, why, sizeof why));
        if (why[0]) fprintf(stderr, "pass %d: %s\n", pass, why);
        CHECK_INT(after.n, before.n + 1);
        CHECK_INT(after.lost_positions, p.events_removed);
        sf_free(&after);
        check_clean(s);
        check_streams(s, rounds);
        CHECK_RC(evs_store_close(s), EVS_OK);
    }

    /* 5. bad input */
    s = tu_open(d, EVS_DURABILITY_SYNC, 64 << 10);
    o.flags = 0x80;
    CHECK_RC(evs_scavenge(s, &o, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "unknown flags");
    CHECK_RC(evs_store_close(s), EVS_OK);
    evs_store *ro;
    CHECK_RC(evs_store_create(&ro), EVS_OK);
    CHECK_RC(evs_store_open(ro, d, EVS_OPEN_READONLY), EVS_OK);
    CHECK_RC(evs_scavenge(ro, NULL, NULL), EVS_ECLOSED);
    CHECK_RC(evs_store_close(ro), EVS_OK);
    CHECK_RC(evs_scavenge(NULL, NULL, NULL), EVS_ECLOSED);

    sf_free(&before);
    tu_rmrf(d);
    free(d);
    return TEST_REPORT();
}

/*
 * test_index_map_concurrency.c — the index map follows the index's size
 * (src/index/index.c, "MAP GROWTH"); also run under TSan.
 *
 * Proves:
 *   1. a new store's index file is small (not a 64 GiB sparse file) and
 *      grows with what it holds, staying within a few times its use;
 *   2. readers opened before the map grows (a stream reader, an $all reader
 *      and an $all reader filtered by event type, so every kind of cursor)
 *      read on correctly across several remaps and see exactly their
 *      snapshot;
 *   3. reader threads that open, read and close in a loop while the writer
 *      grows the map see gapless, intact events (no crash, no stale page);
 *   4. a read-only handle opened before the writer grew the map adopts the
 *      new size (MDB_MAP_RESIZED) and reads every event;
 *   5. at its limit (evs_store_set_index_map_size) an append that does not
 *      fit fails with EVS_ELIMIT, changes nothing and leaves the store
 *      writable; after a reopen with a larger limit every acknowledged
 *      event is there;
 *   6. a store whose index file is a large sparse file (as older versions
 *      left it) shrinks to about its use at the next writable open;
 *   7. the library's other readers of the index (the event-id lookup the
 *      application layer uses to find a command's events) run safely while
 *      the writer grows the map;
 *   8. when the map fills in an index commit itself (LMDB saving its free
 *      list, after the batch's frames reached the log), the map grows and
 *      the batch is indexed again: the append is acknowledged, readable at
 *      once, and the store stays writable; at the limit the store fails
 *      (nothing can be indexed) but the next open indexes the batch;
 *   9. with no room kept ahead of batches, so that every growth comes from
 *      MDB_MAP_FULL (a batch taken back from the log buffer and run again,
 *      or a commit redone), appenders, reader threads and a snapshot held
 *      open across the growth see every acknowledged event and nothing else;
 *  10. the same up to the limit: whatever an append answered, what the log
 *      holds after a reopen is exactly what was acknowledged (a refused
 *      batch left no frame behind);
 *  11. large events need no index room for their bytes (the index holds
 *      names, ids and positions, never data): a store with a small limit
 *      takes events of several MiB, and the index file stays small.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "store/store_access.h"
#include "store/store_testing.h"
#include "testutil.h"

#if defined(__SANITIZE_THREAD__)
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void) { return "called_from_lib:liblmdb.so\n"; }
#endif

static uint64_t index_file_size(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/index/data.mdb", dir);
    struct stat sb;
    return stat(p, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static uint64_t index_file_blocks(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/index/data.mdb", dir);
    struct stat sb;
    return stat(p, &sb) == 0 ? (uint64_t)sb.st_blocks * 512 : 0;
}

/* `batches` appends of `per` events to streams s-0..s-(nstreams-1), round robin. */
static int fill(evs_store *s, int batches, int per, int nstreams, const char *tag) {
    evs_event_in ev[100];
    char data[100][96];
    static const char *const types[] = {"Alpha", "Beta", "Gamma"};
    static long seq;
    for (int b = 0; b < batches; b++) {
        for (int i = 0; i < per; i++) {
            long n = seq++;
            snprintf(data[i], sizeof data[i], "{\"n\":%ld,\"tag\":\"%s\",\"pad\":\"%040ld\"}", n, tag, n);
            ev[i] = tu_event(types[n % 3], data[i]);
        }
        char stream[32];
        snprintf(stream, sizeof stream, "s-%d", b % nstreams);
        evs_append_result res;
        int rc = evs_append(s, stream, EVS_EXPECT_ANY, ev, (size_t)per, &res, NULL);
        if (rc) return rc;
    }
    return EVS_OK;
}

/* Read a reader to its end; count events, check gapless global or stream positions. */
static uint64_t drain(evs_reader *r, int by_stream, int *bad) {
    const evs_event *e;
    uint64_t n = 0, last = 0;
    int rc;
    while ((rc = evs_reader_next(r, &e)) == EVS_OK) {
        uint64_t p = by_stream ? e->stream_position : e->global_position;
        if (last && p != last + 1 && by_stream >= 0) (*bad)++;
        if (e->data_len < 10 || e->data[0] != '{') (*bad)++;
        last = p;
        n++;
    }
    if (rc != EVS_DONE) (*bad)++;
    return n;
}

typedef struct reader_arg {
    evs_store *s;
    atomic_int *stop;
    long loops, events;
    char problem[256];
} reader_arg;

static void *reader_main(void *arg) {
    reader_arg *a = arg;
    while (!atomic_load(a->stop)) {
        evs_reader *r;
        if (evs_read_all(a->s, 1, EVS_FORWARD, NULL, 20000, &r)) {
            snprintf(a->problem, sizeof a->problem, "read_all: %s", evs_errmsg());
            return NULL;
        }
        const evs_event *e;
        uint64_t want = 1;
        int rc;
        while ((rc = evs_reader_next(r, &e)) == EVS_OK) {
            if (e->global_position != want || e->data_len < 10 || e->data[0] != '{') {
                snprintf(a->problem, sizeof a->problem, "event at %llu (wanted %llu) is not intact",
                         (unsigned long long)e->global_position, (unsigned long long)want);
                evs_reader_close(r);
                return NULL;
            }
            want++;
            a->events++;
        }
        evs_reader_close(r);
        if (rc != EVS_DONE) {
            snprintf(a->problem, sizeof a->problem, "reader_next: %s", evs_errmsg());
            return NULL;
        }
        evs_stream_info info;
        int irc = evs_stream_get_info(a->s, "s-0", &info);
        if (irc && irc != EVS_ENOTFOUND) {
            snprintf(a->problem, sizeof a->problem, "stream info: %s", evs_errmsg());
            return NULL;
        }
        a->loops++;
    }
    return NULL;
}

typedef struct lookup_arg {
    evs_store *s;
    atomic_int *stop;
    const evs_uuid *ids;
    int nids;
    long lookups;
    char problem[256];
} lookup_arg;

/* Look the known ids up, round and round, until told to stop. */
static void *lookup_main(void *arg) {
    lookup_arg *a = arg;
    for (int i = 0; !atomic_load(a->stop); i = (i + 1) % a->nids) {
        uint64_t g = 0;
        int rc = evs__store_event_position(a->s, &a->ids[i], &g);
        if (rc || g != (uint64_t)i + 1) {
            snprintf(a->problem, sizeof a->problem, "id %d: rc %d, position %llu (%s)", i, rc,
                     (unsigned long long)g, rc ? evs_errmsg() : "wrong position");
            return NULL;
        }
        a->lookups++;
    }
    return NULL;
}

static void test_lookups_during_growth(void) {
    char *dir = tu_tempdir("ixmaplookup");
    evs_store *s = tu_open(dir, EVS_DURABILITY_NONE, 0);
    CHECK(s != NULL);
    if (!s) return;
    enum { NIDS = 64 };
    evs_uuid ids[NIDS];
    for (int i = 0; i < NIDS; i++) {
        evs_uuid_v7(&ids[i]);
        evs_event_in e = tu_event("Known", "{}");
        e.event_id = &ids[i];
        evs_append_result res;
        CHECK_RC(evs_append(s, "known-1", EVS_EXPECT_ANY, &e, 1, &res, NULL), EVS_OK);
    }
    atomic_int stop = 0;
    lookup_arg args[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].s = s;
        args[i].stop = &stop;
        args[i].ids = ids;
        args[i].nids = NIDS;
        pthread_create(&th[i], NULL, lookup_main, &args[i]);
    }
    uint64_t before = index_file_size(dir);
    int rc = EVS_OK;
    for (int k = 0; k < 20 && !rc; k++) rc = fill(s, 100, 100, 997, "l");
    CHECK_RC(rc, EVS_OK);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_STR(args[i].problem, "");
        CHECK(args[i].lookups > 0);
    }
    CHECK(index_file_size(dir) >= 4 * before); /* the map moved at least twice while they looked */
    CHECK_RC(evs_store_close(s), EVS_OK);
    tu_rmrf(dir);
    free(dir);
}

static void test_growth_and_readers(void) {
    char *dir = tu_tempdir("ixmap");
    evs_store *s = tu_open(dir, EVS_DURABILITY_NONE, 0);
    CHECK(s != NULL);
    if (!s) return;
    CHECK_RC(fill(s, 200, 10, 4, "a"), EVS_OK);
    uint64_t small = index_file_size(dir);
    CHECK(small > 0);
    CHECK(small <= 16u << 20); /* not 64 GiB */

    /* snapshot readers opened now, kept open across the remaps below */
    evs_reader *rs, *ra, *rf;
    CHECK_RC(evs_read_stream(s, "s-1", 1, EVS_FORWARD, 0, &rs), EVS_OK);
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &ra), EVS_OK);
    const char *only[] = {"Beta"};
    evs_filter f = {.event_types = only, .n_event_types = 1};
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rf), EVS_OK);
    /* each takes a step before the map moves, so its cursor stands somewhere */
    const evs_event *e;
    CHECK_RC(evs_reader_next(rs, &e), EVS_OK);
    CHECK_RC(evs_reader_next(ra, &e), EVS_OK);
    CHECK_RC(evs_reader_next(rf, &e), EVS_OK);

    atomic_int stop = 0;
    reader_arg args[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].s = s;
        args[i].stop = &stop;
        pthread_create(&th[i], NULL, reader_main, &args[i]);
    }
    /* some 30 MB of index: the map doubles at least twice from 8 MiB */
    int rc = EVS_OK;
    for (int k = 0; k < 20 && !rc; k++) rc = fill(s, 100, 100, 997, "b");
    CHECK_RC(rc, EVS_OK);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_STR(args[i].problem, "");
        CHECK(args[i].loops > 0);
    }
    uint64_t big = index_file_size(dir);
    if (tu_verbose) fprintf(stderr, "index file: %llu then %llu bytes\n", (unsigned long long)small, (unsigned long long)big);
    CHECK(big > small);                      /* it grew ... */
    CHECK(big < (uint64_t)1 << 30);          /* ... with its use, not to a fixed 64 GiB */
    CHECK(big <= 4 * index_file_blocks(dir) + (16u << 20)); /* apparent size within a few times what is stored */

    /* the snapshot readers finish exactly their snapshot */
    int bad = 0;
    CHECK_INT(drain(rs, 1, &bad) + 1, 500);  /* s-1 held 50 appends of 10 events */
    CHECK_INT(drain(ra, 0, &bad) + 1, 2000);
    uint64_t beta = drain(rf, -1, &bad) + 1;
    CHECK(beta >= 660 && beta <= 670);       /* one type in three of 2,000 */
    CHECK_INT(bad, 0);
    evs_reader_close(rs);
    evs_reader_close(ra);
    evs_reader_close(rf);

    /* a fresh reader sees everything */
    evs_reader *r;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    CHECK_INT(drain(r, 0, &bad), 2000 + 200000);
    evs_reader_close(r);
    CHECK_INT(bad, 0);
    CHECK_RC(evs_store_close(s), EVS_OK);
    tu_rmrf(dir);
    free(dir);
}

static void test_readonly_adopts(void) {
    char *dir = tu_tempdir("ixmapro");
    evs_store *w = tu_open(dir, EVS_DURABILITY_NONE, 0);
    CHECK(w != NULL);
    if (!w) return;
    CHECK_RC(fill(w, 10, 10, 3, "c"), EVS_OK);
    evs_store *ro;
    CHECK_RC(evs_store_create(&ro), EVS_OK);
    CHECK_RC(evs_store_open(ro, dir, EVS_OPEN_READONLY), EVS_OK);
    CHECK_INT(evs_head(ro), 100);
    int rc = EVS_OK;
    for (int k = 0; k < 20 && !rc; k++) rc = fill(w, 100, 100, 501, "d");
    CHECK_RC(rc, EVS_OK);
    /* the writer's map is now far larger than the one the reader mapped */
    CHECK_INT(evs_head(ro), 100 + 200000);
    evs_reader *r;
    int bad = 0;
    CHECK_RC(evs_read_all(ro, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    CHECK_INT(drain(r, 0, &bad), 100 + 200000);
    evs_reader_close(r);
    CHECK_INT(bad, 0);
    CHECK_RC(evs_store_close(ro), EVS_OK);
    CHECK_RC(evs_store_close(w), EVS_OK);
    tu_rmrf(dir);
    free(dir);
}

static void test_limit(void) {
    char *dir = tu_tempdir("ixmaplim");
    evs_store *s;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_set_durability(s, EVS_DURABILITY_NONE, 0), EVS_OK);
    CHECK_RC(evs_store_set_index_map_size(s, 8u << 20), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, EVS_OPEN_CREATE), EVS_OK);
    int rc = EVS_OK;
    int k = 0;
    for (; k < 200 && rc == EVS_OK; k++) rc = fill(s, 10, 100, 50, "e");
    CHECK_RC(rc, EVS_ELIMIT);
    CHECK_CONTAINS(evs_errmsg(), "limit");
    uint64_t head = evs_head(s);
    CHECK(head > 0);
    CHECK_RC(evs_store_writable(s, NULL, 0), EVS_OK); /* nothing was written, the store is not failed */
    CHECK_RC(fill(s, 1, 100, 50, "f"), EVS_ELIMIT);
    CHECK_INT(evs_head(s), head);
    CHECK_RC(evs_store_close(s), EVS_OK);
    /* reopen with room: every acknowledged event is there, appends work again */
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, 0), EVS_OK);
    CHECK_INT(evs_head(s), head);
    CHECK_RC(fill(s, 10, 100, 50, "g"), EVS_OK);
    evs_reader *r;
    int bad = 0;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    CHECK_INT(drain(r, 0, &bad), head + 1000);
    evs_reader_close(r);
    CHECK_INT(bad, 0);
    CHECK_RC(evs_store_close(s), EVS_OK);
    tu_rmrf(dir);
    free(dir);
}

static void test_old_sparse_file_shrinks(void) {
    char *dir = tu_tempdir("ixmapold");
    evs_store *s = tu_open(dir, EVS_DURABILITY_NONE, 0);
    CHECK(s != NULL);
    if (!s) return;
    CHECK_RC(fill(s, 50, 10, 5, "h"), EVS_OK);
    CHECK_RC(evs_store_close(s), EVS_OK);
    /* what older versions left: the file extended to a 64 GiB map */
    char p[4200];
    snprintf(p, sizeof p, "%s/index/data.mdb", dir);
    CHECK_INT(truncate(p, (off_t)64 << 30), 0);
    CHECK(index_file_size(dir) == (uint64_t)64 << 30);
    s = tu_open(dir, EVS_DURABILITY_NONE, 0);
    CHECK(s != NULL);
    if (!s) return;
    CHECK(index_file_size(dir) <= 16u << 20);
    CHECK_INT(evs_head(s), 500);
    CHECK_RC(fill(s, 5, 10, 5, "i"), EVS_OK);
    CHECK_RC(evs_store_close(s), EVS_OK);
    tu_rmrf(dir);
    free(dir);
}

/* The events of stream, in order, must be exactly want (checks the data's "n"). */
static uint64_t stream_events(evs_store *s, const char *stream) {
    evs_reader *r;
    if (evs_read_stream(s, stream, 1, EVS_FORWARD, 0, &r)) return 0;
    int bad = 0;
    uint64_t n = drain(r, 1, &bad);
    evs_reader_close(r);
    return bad ? 0 : n;
}

static void test_commit_map_full(void) {
    char *dir = tu_tempdir("ixmapcommit");
    evs_store *s = tu_open(dir, EVS_DURABILITY_SYNC, 0);
    CHECK(s != NULL);
    if (!s) return;
    CHECK_RC(fill(s, 20, 10, 2, "m"), EVS_OK);
    uint64_t size0 = index_file_size(dir);
    /* one failed commit, then three in a row (the map grows each time) */
    CHECK_RC(evs__store_set_index_faults(s, 0, 1), EVS_OK);
    CHECK_RC(fill(s, 1, 10, 1, "n"), EVS_OK);
    CHECK_RC(evs_store_writable(s, NULL, 0), EVS_OK);
    CHECK_INT(evs_head(s), 210);
    CHECK_INT(stream_events(s, "s-0"), 110); /* readable at once, not at the next open */
    CHECK_RC(evs__store_set_index_faults(s, 0, 3), EVS_OK);
    CHECK_RC(fill(s, 2, 10, 2, "o"), EVS_OK);
    CHECK_RC(evs_store_writable(s, NULL, 0), EVS_OK);
    CHECK_INT(evs_head(s), 230);
    CHECK(index_file_size(dir) > size0);
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    CHECK_INT(rep.events, 230);
    CHECK_RC(evs_store_close(s), EVS_OK);

    /* at the limit: the batch stays in the log, the store fails, the next open indexes it */
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_set_index_map_size(s, 8u << 20), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, 0), EVS_OK);
    CHECK_RC(evs__store_set_index_faults(s, 0, 1), EVS_OK);
    CHECK_RC(fill(s, 1, 10, 1, "p"), EVS_OK); /* the map may still grow to its slack */
    CHECK_RC(evs_store_writable(s, NULL, 0), EVS_OK);
    CHECK_RC(evs__store_set_index_faults(s, 0, 1), EVS_OK);
    CHECK_RC(fill(s, 1, 10, 1, "q"), EVS_OK); /* in the log: acknowledged */
    char why[256];
    CHECK_RC(evs_store_writable(s, why, sizeof why), EVS_EFAILED);
    CHECK_CONTAINS(why, "limit");
    CHECK_INT(evs_head(s), 250);
    evs_store_close(s);
    s = tu_open(dir, EVS_DURABILITY_SYNC, 0);
    CHECK(s != NULL);
    if (!s) return;
    CHECK_INT(evs_head(s), 250);
    CHECK_INT(stream_events(s, "s-0"), 140);
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    CHECK_RC(evs_store_close(s), EVS_OK);
    tu_rmrf(dir);
    free(dir);
}

/*
 * After the map grew under appends: the snapshot still reads exactly its own
 * snap_events, $all reads head events gapless, check passes; then the store
 * is closed and reopened with mode and still has head events.  Returns the
 * reopened store (NULL on failure).
 */
static evs_store *verify_grown(evs_store *s, const char *dir, evs_reader *snap, uint64_t snap_events, uint64_t head,
                               evs_durability mode) {
    int bad = 0;
    CHECK_INT(drain(snap, 0, &bad) + 1, snap_events); /* the snapshot still reads exactly itself */
    evs_reader_close(snap);
    evs_reader *r;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    CHECK_INT(drain(r, 0, &bad), head);
    evs_reader_close(r);
    CHECK_INT(bad, 0);
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    CHECK_INT(rep.events, head);
    CHECK_RC(evs_store_close(s), EVS_OK);
    s = tu_open(dir, mode, 0);
    CHECK(s != NULL);
    if (s) CHECK_INT(evs_head(s), head);
    return s;
}

/*
 * Big appends in sync durability put their index entries while the log's
 * flush thread writes and syncs their frames (store.c, EVS_OVERLAP_EVENTS).
 * When the map fills there (a put, with no room kept ahead) or in the commit
 * after it, the frames are already durable: the batch is indexed again in a
 * grown map, acknowledged, and readable at once.
 */
static void test_overlapped_map_full(void) {
    char *dir = tu_tempdir("ixmapoverlap");
    evs_store *s = tu_open(dir, EVS_DURABILITY_SYNC, 0);
    CHECK(s != NULL);
    if (!s) return;
    CHECK_RC(fill(s, 10, 10, 2, "a"), EVS_OK);
    CHECK_RC(evs__store_set_index_faults(s, 0, 1), EVS_OK);
    CHECK_RC(fill(s, 1, 100, 1, "b"), EVS_OK); /* its commit fails once */
    CHECK_RC(evs_store_writable(s, NULL, 0), EVS_OK);
    CHECK_INT(evs_head(s), 200);
    CHECK_INT(stream_events(s, "s-0"), 150);
    uint64_t regrown = evs__store_reindexed(s);
    CHECK_INT(regrown, 1);
    uint64_t size0 = index_file_size(dir);
    CHECK_RC(evs__store_set_index_faults(s, 1, 0), EVS_OK);
    evs_reader *snap; /* held open: the pages it sees cannot be reused, so the map must grow */
    const evs_event *e;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &snap), EVS_OK);
    CHECK_RC(evs_reader_next(snap, &e), EVS_OK);
    int batches = getenv("EVS_SANITIZED") ? 160 : 400; /* a multiple of the 4 streams */
    CHECK_RC(fill(s, batches, 100, 4, "c"), EVS_OK);
    CHECK_RC(evs_store_writable(s, NULL, 0), EVS_OK);
    uint64_t head = 200 + (uint64_t)batches * 100;
    CHECK_INT(evs_head(s), head);
    /* the map filled during these batches' flushes: each growth came from MDB_MAP_FULL
       after the frames were durable (no room is kept ahead), so batches were indexed again */
    CHECK(evs__store_reindexed(s) > regrown);
    regrown = evs__store_reindexed(s) - regrown;
    s = verify_grown(s, dir, snap, 200, head, EVS_DURABILITY_SYNC);
    if (!s) return;
    evs_check_report rep;
    CHECK_INT(stream_events(s, "s-1"), (uint64_t)batches / 4 * 100 + 50);
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    CHECK_RC(evs_store_close(s), EVS_OK);
    printf("overlapped flush, map full: %llu events, %llu batches indexed again, index %llu -> %llu bytes\n",
           (unsigned long long)head, (unsigned long long)regrown, (unsigned long long)size0,
           (unsigned long long)index_file_size(dir));
    tu_rmrf(dir);
    free(dir);
}

typedef struct app_arg {
    evs_store *s;
    int t, appends;
    uint64_t seed, events;
    char problem[256];
} app_arg;

/* Appends of 1..3 events to random streams of this thread's own (s-T-0..s-T-499). */
static void *appender_main(void *arg) {
    app_arg *a = arg;
    for (int i = 0; i < a->appends; i++) {
        a->seed = a->seed * 6364136223846793005ull + 1442695040888963407ull;
        int n = 1 + (int)((a->seed >> 33) % 3);
        char stream[32], data[3][96];
        snprintf(stream, sizeof stream, "s-%d-%d", a->t, (int)((a->seed >> 40) % 500));
        evs_event_in ev[3];
        for (int j = 0; j < n; j++) {
            snprintf(data[j], sizeof data[j], "{\"t\":%d,\"i\":%d,\"pad\":\"%048d\"}", a->t, i, j);
            ev[j] = tu_event(j ? "Beta" : "Alpha", data[j]);
        }
        evs_append_result res;
        int rc = evs_append(a->s, stream, EVS_EXPECT_ANY, ev, (size_t)n, &res, NULL);
        if (rc) {
            snprintf(a->problem, sizeof a->problem, "append %d: %s: %s", i, evs_errname(rc), evs_errmsg());
            return NULL;
        }
        a->events += (uint64_t)n;
    }
    return NULL;
}

static void test_growth_by_map_full(void) {
    char *dir = tu_tempdir("ixmapfull");
    evs_store *s;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_set_durability(s, EVS_DURABILITY_NONE, 0), EVS_OK);
    CHECK_RC(evs__store_set_index_faults(s, 1, 0), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, EVS_OPEN_CREATE), EVS_OK);
    CHECK_RC(fill(s, 10, 10, 3, "r"), EVS_OK);
    uint64_t size0 = index_file_size(dir);
    /* a snapshot held open: the pages it sees cannot be reused, so the map must grow */
    evs_reader *snap;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &snap), EVS_OK);
    const evs_event *e;
    CHECK_RC(evs_reader_next(snap, &e), EVS_OK);
    atomic_int stop = 0;
    reader_arg ra[2];
    pthread_t rt[2], at[8];
    app_arg aa[8];
    int sanitized = getenv("EVS_SANITIZED") != NULL;
    for (int i = 0; i < 2; i++) {
        memset(&ra[i], 0, sizeof ra[i]);
        ra[i].s = s;
        ra[i].stop = &stop;
        pthread_create(&rt[i], NULL, reader_main, &ra[i]);
    }
    for (int t = 0; t < 8; t++) {
        memset(&aa[t], 0, sizeof aa[t]);
        aa[t].s = s;
        aa[t].t = t;
        aa[t].appends = sanitized ? 600 : 2000;
        aa[t].seed = (uint64_t)t * 7919 + 17;
        pthread_create(&at[t], NULL, appender_main, &aa[t]);
    }
    uint64_t acked = 100;
    for (int t = 0; t < 8; t++) {
        pthread_join(at[t], NULL);
        CHECK_STR(aa[t].problem, "");
        acked += aa[t].events;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(rt[i], NULL);
        CHECK_STR(ra[i].problem, "");
    }
    CHECK_RC(evs_store_writable(s, NULL, 0), EVS_OK);
    CHECK_INT(evs_head(s), acked);
    CHECK(index_file_size(dir) >= 4 * size0); /* grown at least twice, each time through MDB_MAP_FULL */
    s = verify_grown(s, dir, snap, 100, acked, EVS_DURABILITY_NONE);
    if (!s) return;
    CHECK_RC(evs_store_close(s), EVS_OK);
    tu_rmrf(dir);
    free(dir);
}

static void test_map_full_at_limit(void) {
    char *dir = tu_tempdir("ixmapfulllim");
    evs_store *s;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_set_durability(s, EVS_DURABILITY_NONE, 0), EVS_OK);
    CHECK_RC(evs_store_set_index_map_size(s, 8u << 20), EVS_OK);
    CHECK_RC(evs__store_set_index_faults(s, 1, 0), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, EVS_OPEN_CREATE), EVS_OK);
    uint64_t acked = 0;
    int refused = 0, failed = 0;
    for (int k = 0; k < 5000 && !failed && refused < 3; k++) {
        uint64_t head = evs_head(s);
        int rc = fill(s, 1, 100, 50, "s");
        if (rc == EVS_OK) acked += 100;
        else if (rc == EVS_ELIMIT) {
            refused++;
            CHECK_INT(evs_head(s), head); /* refused: nothing of it was published */
        } else if (rc == EVS_EFAILED) failed = 1;
        else CHECK_RC(rc, EVS_OK);
        /* the map filled in a commit at the limit: acknowledged, then the store failed */
        if (evs_store_writable(s, NULL, 0) == EVS_EFAILED) failed = 1;
    }
    CHECK(refused > 0 || failed);
    CHECK_INT(evs_head(s), acked);
    evs_store_close(s);
    /* with room: the log holds exactly what was acknowledged, no refused frame */
    s = tu_open(dir, EVS_DURABILITY_NONE, 0);
    CHECK(s != NULL);
    if (!s) return;
    CHECK_INT(evs_head(s), acked);
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    CHECK_INT(rep.events, acked);
    evs_reader *r;
    int bad = 0;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    CHECK_INT(drain(r, 0, &bad), acked);
    evs_reader_close(r);
    CHECK_INT(bad, 0);
    CHECK_RC(evs_store_close(s), EVS_OK);
    tu_rmrf(dir);
    free(dir);
}

static void test_large_events(void) {
    char *dir = tu_tempdir("ixmapbig");
    evs_store *s;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_set_durability(s, EVS_DURABILITY_NONE, 0), EVS_OK);
    CHECK_RC(evs_store_set_index_map_size(s, 32u << 20), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, EVS_OPEN_CREATE), EVS_OK);
    size_t n = 12u << 20;
    char *data = malloc(n + 32);
    memcpy(data, "{\"blob\":\"", 9);
    memset(data + 9, 'x', n);
    memcpy(data + 9 + n, "\"}", 3);
    for (int i = 0; i < 4; i++) {
        evs_event_in e = tu_event("Blob", data);
        evs_append_result res;
        CHECK_RC(evs_append(s, "blob-1", EVS_EXPECT_ANY, &e, 1, &res, NULL), EVS_OK);
    }
    CHECK_INT(evs_head(s), 4);
    CHECK(index_file_size(dir) <= 16u << 20); /* 48 MiB of data, a few KiB of index */
    evs_reader *r = NULL;
    const evs_event *ev = NULL;
    CHECK_RC(evs_read_stream(s, "blob-1", 4, EVS_FORWARD, 0, &r), EVS_OK);
    if (r) CHECK_RC(evs_reader_next(r, &ev), EVS_OK);
    if (ev) CHECK_INT(ev->data_len, n + 11);
    evs_reader_close(r);
    CHECK_RC(evs_store_close(s), EVS_OK);
    tu_rmrf(dir);
    /* with the default limit the map stays near its use, not eight times the data */
    s = tu_open(dir, EVS_DURABILITY_NONE, 0);
    CHECK(s != NULL);
    if (s) {
        for (int i = 0; i < 4; i++) {
            evs_event_in e = tu_event("Blob", data);
            evs_append_result res;
            CHECK_RC(evs_append(s, "blob-2", EVS_EXPECT_ANY, &e, 1, &res, NULL), EVS_OK);
        }
        CHECK(index_file_size(dir) <= 16u << 20);
        CHECK_RC(evs_store_close(s), EVS_OK);
    }
    free(data);
    tu_rmrf(dir);
    free(dir);
}

int main(void) {
    tu_verbose = getenv("EVS_TEST_VERBOSE") != NULL;
    test_growth_and_readers();
    test_readonly_adopts();
    test_limit();
    test_old_sparse_file_shrinks();
    test_lookups_during_growth();
    test_commit_map_full();
    test_overlapped_map_full();
    test_growth_by_map_full();
    test_map_full_at_limit();
    test_large_events();
    return TEST_REPORT();
}

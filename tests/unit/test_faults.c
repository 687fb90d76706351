/*
 * test_faults.c — proves how the store behaves when file I/O fails, by running
 * it on the fault-injecting I/O table (src/io/io_fault.h) through the
 * evs__store_set_io test hook.
 *
 *   1. A failing fdatasync fails that append with an I/O error naming the
 *      fdatasync; every later append returns EVS_EFAILED (sticky) and the
 *      fdatasync is never retried (the table's fdatasync count does not grow
 *      after the failure, not even at close); reads still work; after close
 *      and reopen the store is consistent and gapless and every acknowledged
 *      event is intact.  Closing the failed store syncs nothing and returns
 *      EVS_EFAILED.
 *   1b. In batch and none durability the close's fdatasync is what makes the
 *      last acknowledged appends durable: when it fails, evs_store_close
 *      returns EVS_EIO naming it; a clean close (and a close with nothing to
 *      sync) returns EVS_OK.
 *   2. A short write fails that append with EVS_EIO, later appends return
 *      EVS_EFAILED, and reopening recovers to the last whole record, both when
 *      the writer could zero the partial record and when it could not (then
 *      the recovery report says a torn tail was cut).
 *   3. ENOSPC from fallocate when a new segment is needed fails the append
 *      with a message containing the errno's text; nothing acknowledged is
 *      lost, no half-made segment file is left, and after reopening appends
 *      continue into a new segment.
 *   4. Power loss: for at least 100 seeds, a store in sync mode appended to by
 *      three threads is crashed by the table's crash function (keep a random
 *      subset of the unsynced writes, by whole write or by 4 KiB page, and
 *      tear one) — either right after an injected fdatasync failure or at a
 *      random moment while appends are in flight — and abandoned without a
 *      clean close.  After reopening, every acknowledged event is present and
 *      intact, no append is partly visible, positions are gapless, stream
 *      versions match, evs_store_check passes and appends continue.
 * EVS_FAULT_SEEDS sets the number of crash seeds (default 120); EVS_SEED
 * moves the seed range.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>

#include "io/io_fault.h"
#include "store/store_testing.h"
#include "testutil.h"

#define SEGSZ (64 * 1024)
#define NSTREAMS 12
#define MAXN 80  /* events per append at most (the crash trials: 4, or now and then a big one) */
#define BIGN 72  /* at least EVS_OVERLAP_EVENTS (store.c): indexed while the flush thread syncs */

/* ------------------------------------------------------------ helpers */


/* Report a problems list as one check. */
#define CHECK_PROBLEMS(label, p)                                                                    \
    do {                                                                                            \
        if ((p)->count) fprintf(stderr, "%s: %d problem(s), first: %s\n", label, (p)->count, (p)->first); \
        CHECK_INT((p)->count, 0);                                                                   \
    } while (0)

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* One acknowledged append. */
typedef struct ack {
    uint64_t gpos, spos;
    uint32_t count;
    int k;
    evs_uuid ids[MAXN];
} ack;

typedef struct acks {
    ack *a;
    size_t n, cap;
} acks;

static void acks_add(acks *l, const ack *a) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->a = realloc(l->a, l->cap * sizeof *l->a);
        if (!l->a) exit(2);
    }
    l->a[l->n++] = *a;
}

static void stream_name(int k, char *buf, size_t n) { snprintf(buf, n, "ft-%02d", k); }

/* The data of event i of n at stream position spos: it names all of them, plus padding. */
static size_t event_data(char *buf, size_t cap, int k, uint64_t spos, unsigned i, unsigned n, const evs_uuid *id,
                         size_t pad) {
    char u[37], name[16];
    evs_uuid_format(id, u);
    stream_name(k, name, sizeof name);
    int w = snprintf(buf, cap, "{\"s\":\"%s\",\"p\":%llu,\"i\":%u,\"n\":%u,\"id\":\"%s\",\"pad\":\"", name,
                     (unsigned long long)spos, i, n, u);
    size_t len = (size_t)w;
    if (pad == SIZE_MAX) pad = (size_t)((spos * 131 + (uint64_t)k * 17) % 900);
    for (size_t j = 0; j < pad && len + 3 < cap; j++) buf[len++] = (char)('a' + (spos + j) % 26);
    buf[len++] = '"';
    buf[len++] = '}';
    buf[len] = 0;
    return len;
}

/*
 * Append n events to stream k expecting version *version; on success record
 * the acknowledgement and advance *version.  pad: bytes of padding per event
 * (SIZE_MAX: derived from the position).
 */
static int append_n(evs_store *s, int k, uint64_t *version, unsigned n, size_t pad, acks *out) {
    char (*data)[8192] = malloc((size_t)n * sizeof *data);
    if (!data) exit(2);
    evs_event_in ev[MAXN];
    evs_uuid ids[MAXN];
    for (unsigned i = 0; i < n; i++) {
        evs_uuid_v7(&ids[i]);
        size_t len = event_data(data[i], sizeof data[i], k, *version + 1 + i, i, n, &ids[i], pad);
        ev[i] = tu_event("Fault", data[i]);
        ev[i].data_len = len;
        ev[i].event_id = &ids[i];
    }
    char name[16];
    stream_name(k, name, sizeof name);
    evs_append_result r;
    int rc = evs_append(s, name, (int64_t)*version, ev, n, &r, NULL);
    if (rc == EVS_OK) {
        ack a;
        memset(&a, 0, sizeof a);
        a.gpos = r.first_global_position;
        a.spos = r.first_stream_position;
        a.count = n;
        a.k = k;
        memcpy(a.ids, ids, n * sizeof ids[0]);
        acks_add(out, &a);
        *version = r.last_stream_position;
    }
    free(data);
    return rc;
}

/* Event ev is what its writer appended: its data names its stream, position and id. */
static int event_ok(const evs_event *ev, int *k_out, unsigned *i_out, unsigned *n_out) {
    char head[160];
    size_t hl = ev->data_len < sizeof head - 1 ? ev->data_len : sizeof head - 1;
    memcpy(head, ev->data, hl);
    head[hl] = 0;
    int k;
    unsigned long long spos;
    unsigned i, n;
    if (sscanf(head, "{\"s\":\"ft-%d\",\"p\":%llu,\"i\":%u,\"n\":%u,", &k, &spos, &i, &n) != 4 || k < 0 ||
        k >= NSTREAMS || n < 1 || n > MAXN || i >= n)
        return 0;
    /* the padding length is not derivable when the writer chose it: rebuild up to it */
    const char *pad = memmem(ev->data, ev->data_len, "\"pad\":\"", 7);
    if (!pad) return 0;
    size_t padlen = ev->data_len - (size_t)(pad + 7 - ev->data) - 2;
    char want[8192], name[16];
    size_t wl = event_data(want, sizeof want, k, spos, i, n, &ev->event_id, padlen);
    stream_name(k, name, sizeof name);
    if (wl != ev->data_len || memcmp(want, ev->data, wl) != 0) return 0;
    if (spos != ev->stream_position || ev->stream_len != strlen(name) || memcmp(ev->stream, name, ev->stream_len))
        return 0;
    *k_out = k;
    *i_out = i;
    *n_out = n;
    return 1;
}

/*
 * The store is consistent and holds every acknowledged event: $all gapless
 * 1..head, every event intact, appends whole, acknowledged events at their
 * positions with their ids, stream versions equal event counts, check passes.
 */
static void verify_store(evs_store *s, const acks *l, problems *p) {
    uint64_t head = evs_head(s);
    evs_uuid *ids = calloc(head + 2, sizeof *ids);
    int *gk = calloc(head + 2, sizeof *gk);
    uint64_t *gsp = calloc(head + 2, sizeof *gsp);
    uint64_t count[NSTREAMS] = {0};
    evs_reader *r;
    const evs_event *ev;
    int rc = evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r);
    if (rc) {
        problem(p, "read $all: %s: %s", evs_errname(rc), evs_errmsg());
        goto out;
    }
    uint64_t want = 1;
    int open_k = -1;
    unsigned open_i = 0, open_n = 0;
    while (want <= head + 1 && (rc = evs_reader_next(r, &ev)) == EVS_OK) {
        int k;
        unsigned i, n;
        if (ev->global_position != want) {
            problem(p, "$all returned %llu where %llu was due", (unsigned long long)ev->global_position,
                    (unsigned long long)want);
            break;
        }
        if (!event_ok(ev, &k, &i, &n)) {
            problem(p, "event %llu is not what was appended", (unsigned long long)want);
            want++;
            continue;
        }
        if (open_k >= 0 ? (k != open_k || n != open_n || i != open_i + 1) : i != 0)
            problem(p, "event %llu (%u of %u in ft-%02d) breaks an append apart", (unsigned long long)want, i + 1, n,
                    k);
        if (i + 1 < n) open_k = k, open_i = i, open_n = n;
        else open_k = -1;
        ids[want] = ev->event_id;
        gk[want] = k + 1;
        gsp[want] = ev->stream_position;
        count[k]++;
        want++;
    }
    if (rc != EVS_OK && rc != EVS_DONE) problem(p, "$all next: %s: %s", evs_errname(rc), evs_errmsg());
    evs_reader_close(r);
    if (want != head + 1)
        problem(p, "$all ended at %llu, the head is %llu", (unsigned long long)(want - 1), (unsigned long long)head);
    if (open_k >= 0) problem(p, "the store ends inside an append of ft-%02d", open_k);
    for (size_t a = 0; a < l->n; a++) {
        const ack *x = &l->a[a];
        for (uint32_t i = 0; i < x->count; i++) {
            uint64_t g = x->gpos + i;
            if (g > head) {
                problem(p, "acknowledged event %llu is beyond the head %llu", (unsigned long long)g,
                        (unsigned long long)head);
                break;
            }
            if (memcmp(&ids[g], &x->ids[i], 16) != 0 || gk[g] != x->k + 1 || gsp[g] != x->spos + i)
                problem(p, "acknowledged event %llu (ft-%02d@%llu) is not there", (unsigned long long)g, x->k,
                        (unsigned long long)(x->spos + i));
        }
    }
    for (int k = 0; k < NSTREAMS; k++) {
        char name[16];
        stream_name(k, name, sizeof name);
        evs_stream_info info;
        rc = evs_stream_get_info(s, name, &info);
        if (count[k] ? (rc != EVS_OK || info.version != count[k]) : rc != EVS_ENOTFOUND)
            problem(p, "%s: version %llu (%s), $all holds %llu of its events", name,
                    rc ? 0ull : (unsigned long long)info.version, evs_errname(rc), (unsigned long long)count[k]);
    }
    evs_check_report cr;
    rc = evs_store_check(s, &cr);
    if (rc != EVS_OK || cr.events != head)
        problem(p, "check: %s, %llu events of %llu (%s)", evs_errname(rc), (unsigned long long)cr.events,
                (unsigned long long)head, cr.first_error);
out:
    free(ids);
    free(gk);
    free(gsp);
}

/* zero_ahead 0: the log's zero thread is off, so that its calls do not
   shift the count of a rule that fails the Nth call (the crash trials keep
   it on: its writes and syncs are part of what a crash may cut). */
static evs_store *open_store(const char *dir, evs_fault *f, int create, int zero_ahead) {
    evs_store *s = NULL;
    int rc = evs_store_create(&s);
    if (!rc) rc = evs_store_set_segment_size(s, SEGSZ);
    if (!rc && !zero_ahead) rc = evs__store_set_zero_ahead(s, 0);
    if (!rc) rc = evs_store_set_index_map_size(s, 64u << 20);
    if (!rc && f) rc = evs__store_set_io(s, evs__fault_io(f));
    if (!rc) rc = evs_store_open(s, dir, create ? EVS_OPEN_CREATE : 0);
    if (rc) {
        fprintf(stderr, "open %s: %s: %s\n", dir, evs_errname(rc), evs_errmsg());
        evs_store_close(s);
        return NULL;
    }
    return s;
}

/* Reopen on plain POSIX I/O, verify, append once more, close. */
static void reopen_verify(const char *dir, const acks *l, const char *label, const char *report_has,
                          uint64_t *head_out) {
    problems p = {0};
    evs_store *s = open_store(dir, NULL, 0, 1);
    CHECK(s != NULL);
    if (!s) return;
    if (report_has) CHECK_CONTAINS(evs_store_recovery_report(s), report_has);
    verify_store(s, l, &p);
    uint64_t head = evs_head(s);
    if (head_out) *head_out = head;
    evs_event_in e = tu_event("After", "{\"after\":1}");
    evs_append_result r;
    CHECK_RC(evs_append(s, "after-1", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
    CHECK_INT(r.first_global_position, head + 1);
    evs_store_close(s);
    CHECK_PROBLEMS(label, &p);
}

/* --------------------------------------------------- 1. failing fdatasync */

static void test_fsync_failure(void) {
    char *dir = tu_tempdir("faults-fsync");
    evs_fault *f;
    CHECK_INT(evs__fault_create(&f), 0);
    evs_store *s = open_store(dir, f, 1, 0);
    CHECK(s != NULL);
    if (!s) return;
    acks l = {0};
    uint64_t ver[NSTREAMS] = {0}, rs = 7;
    for (int i = 0; i < 30; i++) {
        int k = i % 5;
        CHECK_RC(append_n(s, k, &ver[k], 1 + (unsigned)(rnd(&rs) % 3), SIZE_MAX, &l), EVS_OK);
    }
    uint64_t head = evs_head(s);
    uint64_t syncs = evs__fault_count(f, EVS_FOP_FDATASYNC);
    CHECK(syncs >= 30);
    evs__fault_fail(f, EVS_FOP_FDATASYNC, 1, 0, EIO);
    int rc = append_n(s, 0, &ver[0], 2, SIZE_MAX, &l);
    CHECK(rc == -EIO || rc == EVS_EIO);
    CHECK_CONTAINS(evs_errmsg(), "fdatasync");
    CHECK_CONTAINS(evs_errmsg(), strerror(EIO));
    uint64_t after = evs__fault_count(f, EVS_FOP_FDATASYNC);
    CHECK_INT(after, syncs + 1);
    /* sticky: the rule was for one call only, yet nothing is written or synced again */
    uint64_t writes = evs__fault_count(f, EVS_FOP_PWRITE);
    for (int i = 0; i < 5; i++) {
        CHECK_RC(append_n(s, 1 + i % 4, &ver[1 + i % 4], 1, SIZE_MAX, &l), EVS_EFAILED);
        CHECK_CONTAINS(evs_errmsg(), "reopen");
    }
    CHECK_INT(evs__fault_count(f, EVS_FOP_FDATASYNC), after);
    CHECK_INT(evs__fault_count(f, EVS_FOP_PWRITE), writes);
    /* reads still work and show exactly what was acknowledged */
    CHECK_INT(evs_head(s), head);
    evs_reader *r;
    const evs_event *ev;
    uint64_t n = 0;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    while (evs_reader_next(r, &ev) == EVS_OK && n <= head) {
        int k;
        unsigned i, cnt;
        CHECK(event_ok(ev, &k, &i, &cnt));
        n++;
    }
    evs_reader_close(r);
    CHECK_INT(n, head);
    CHECK_RC(evs_read_stream(s, "ft-00", 1, EVS_FORWARD, 0, &r), EVS_OK);
    CHECK_RC(evs_reader_next(r, &ev), EVS_OK);
    evs_reader_close(r);
    /* closing a failed store must not sync either, and says it did not */
    CHECK_RC(evs_store_close(s), EVS_EFAILED);
    CHECK_CONTAINS(evs_errmsg(), "fdatasync");
    CHECK_CONTAINS(evs_errmsg(), "may not be on disk");
    CHECK_INT(evs__fault_count(f, EVS_FOP_FDATASYNC), after);
    evs__fault_destroy(f);
    uint64_t head2 = 0;
    reopen_verify(dir, &l, "fdatasync failure: after reopen", NULL, &head2);
    /* the failed append was never acknowledged; whether its bytes survived is open, not a partial state */
    CHECK(head2 == head || head2 == head + 2);
    printf("fdatasync failure: %llu events acknowledged, %llu after reopen; %llu fdatasyncs, none after the failure\n",
           (unsigned long long)head, (unsigned long long)head2, (unsigned long long)after);
    free(l.a);
    tu_rmrf(dir);
    free(dir);
}

/*
 * 1a. The same with big appends: their frames are written and synced by the
 * log's flush thread while the index entries are put.  A failing fdatasync
 * there fails the append the same way (the message travels back from the
 * thread), nothing is acknowledged or synced again, and the store reopens
 * with every acknowledged event.
 */
/* A thread of this process is named name (/proc/self/task/N/comm). */
static int have_thread(const char *name) {
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int found = 0;
    while (d && !found && (e = readdir(d))) {
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0;
        fclose(f);
        found = strcmp(comm, name) == 0;
    }
    if (d) closedir(d);
    return found;
}

static void test_fsync_failure_big(void) {
    char *dir = tu_tempdir("faults-fsync-big");
    evs_fault *f;
    CHECK_INT(evs__fault_create(&f), 0);
    evs_store *s = open_store(dir, f, 1, 0);
    CHECK(s != NULL);
    if (!s) return;
    acks l = {0};
    uint64_t ver[NSTREAMS] = {0};
    CHECK(!have_thread("evs-flush")); /* started by the first big append, not before */
    for (int i = 0; i < 12; i++) CHECK_RC(append_n(s, i % 3, &ver[i % 3], i % 2 ? BIGN : 2, 100, &l), EVS_OK);
    CHECK(have_thread("evs-flush"));
    uint64_t head = evs_head(s);
    uint64_t syncs = evs__fault_count(f, EVS_FOP_FDATASYNC);
    evs__fault_fail(f, EVS_FOP_FDATASYNC, 1, 0, EIO);
    int rc = append_n(s, 0, &ver[0], MAXN, 100, &l);
    CHECK(rc == -EIO || rc == EVS_EIO);
    CHECK_CONTAINS(evs_errmsg(), "fdatasync");
    CHECK_CONTAINS(evs_errmsg(), strerror(EIO));
    CHECK_INT(evs__fault_count(f, EVS_FOP_FDATASYNC), syncs + 1);
    CHECK_INT(evs_head(s), head);
    uint64_t writes = evs__fault_count(f, EVS_FOP_PWRITE);
    CHECK_RC(append_n(s, 1, &ver[1], BIGN, 100, &l), EVS_EFAILED);
    CHECK_RC(append_n(s, 2, &ver[2], 1, 100, &l), EVS_EFAILED);
    CHECK_INT(evs__fault_count(f, EVS_FOP_PWRITE), writes);
    CHECK_INT(evs__fault_count(f, EVS_FOP_FDATASYNC), syncs + 1);
    CHECK_RC(evs_store_close(s), EVS_EFAILED);
    evs__fault_destroy(f);
    uint64_t head2 = 0;
    reopen_verify(dir, &l, "fdatasync failure, big appends: after reopen", NULL, &head2);
    CHECK(head2 == head || head2 == head + MAXN);
    printf("fdatasync failure on the flush thread: %llu events acknowledged, %llu after reopen\n",
           (unsigned long long)head, (unsigned long long)head2);
    free(l.a);
    tu_rmrf(dir);
    free(dir);
}

/*
 * 1b. In batch and none durability an append is acknowledged before any
 * fdatasync, and the close's sync is the one that makes the last appends
 * durable: when it fails, evs_store_close says so (EVS_EIO naming the
 * fdatasync).  A close that syncs fine returns EVS_OK, and so do closes with
 * nothing to sync.  The failed close released everything: the store reopens
 * (the unsynced bytes are still in the page cache here) with every event.
 */
static void test_close_sync_failure(evs_durability mode, int fail) {
    const char *label = mode == EVS_DURABILITY_NONE ? "none" : "batch";
    char *dir = tu_tempdir("faults-close");
    evs_fault *f;
    CHECK_INT(evs__fault_create(&f), 0);
    evs_store *s = NULL;
    int rc = evs_store_create(&s);
    if (!rc) rc = evs_store_set_segment_size(s, SEGSZ);
    if (!rc) rc = evs_store_set_index_map_size(s, 64u << 20);
    /* a batch interval longer than the test: no periodic sync runs before the close */
    if (!rc) rc = evs_store_set_durability(s, mode, 60000);
    if (!rc) rc = evs__store_set_zero_ahead(s, 0); /* the count of fdatasyncs below is the writer's alone */
    if (!rc) rc = evs__store_set_io(s, evs__fault_io(f));
    if (!rc) rc = evs_store_open(s, dir, EVS_OPEN_CREATE);
    CHECK_RC(rc, EVS_OK);
    if (rc) return;
    acks l = {0};
    uint64_t ver[NSTREAMS] = {0};
    for (int i = 0; i < 12; i++) CHECK_RC(append_n(s, i % 4, &ver[i % 4], 1 + (unsigned)(i % 3), 200, &l), EVS_OK);
    uint64_t syncs = evs__fault_count(f, EVS_FOP_FDATASYNC);
    if (fail) evs__fault_fail(f, EVS_FOP_FDATASYNC, 1, 1, EIO);
    rc = evs_store_close(s);
    /* the close tried exactly one fdatasync: the log's final sync */
    CHECK_INT(evs__fault_count(f, EVS_FOP_FDATASYNC), syncs + 1);
    if (fail) {
        CHECK_RC(rc, EVS_EIO);
        CHECK_CONTAINS(evs_errmsg(), "close: the final sync of the log failed");
        CHECK_CONTAINS(evs_errmsg(), "fdatasync");
        CHECK_CONTAINS(evs_errmsg(), strerror(EIO));
    } else {
        CHECK_RC(rc, EVS_OK);
    }
    evs__fault_destroy(f);
    char what[64];
    snprintf(what, sizeof what, "close sync %s (%s)", fail ? "failure" : "ok", label);
    reopen_verify(dir, &l, what, NULL, NULL);
    free(l.a);
    tu_rmrf(dir);
    free(dir);
}

/* Closes that have nothing to sync, or nothing opened, report success. */
static void test_close_trivial(void) {
    CHECK_RC(evs_store_close(NULL), EVS_OK);
    evs_store *s = NULL;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_close(s), EVS_OK); /* never opened */
    char *dir = tu_tempdir("faults-close-ro");
    s = open_store(dir, NULL, 1, 1);
    CHECK(s != NULL);
    CHECK_RC(evs_store_close(s), EVS_OK);
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, EVS_OPEN_READONLY), EVS_OK);
    CHECK_RC(evs_store_close(s), EVS_OK);
    tu_rmrf(dir);
    free(dir);
}

/* ------------------------------------------------------- 2. short write */

static void test_short_write(int scrub_fails) {
    char *dir = tu_tempdir("faults-short");
    evs_fault *f;
    CHECK_INT(evs__fault_create(&f), 0);
    evs_store *s = open_store(dir, f, 1, 0);
    CHECK(s != NULL);
    if (!s) return;
    acks l = {0};
    uint64_t ver[NSTREAMS] = {0};
    for (int i = 0; i < 20; i++) CHECK_RC(append_n(s, i % 3, &ver[i % 3], 1 + (unsigned)(i % 2), 300, &l), EVS_OK);
    uint64_t head = evs_head(s);
    /* the next write stops after 40 bytes: a frame header and a little payload */
    evs__fault_short_write(f, 1, 40);
    if (scrub_fails) evs__fault_fail(f, EVS_FOP_PWRITE, 2, 1, EIO); /* the writer cannot zero it */
    int rc = append_n(s, 0, &ver[0], 3, 300, &l);
    CHECK_RC(rc, EVS_EIO);
    CHECK_CONTAINS(evs_errmsg(), "short write");
    CHECK_RC(append_n(s, 1, &ver[1], 1, 300, &l), EVS_EFAILED);
    CHECK_INT(evs_head(s), head);
    CHECK_RC(evs_store_close(s), EVS_EFAILED);
    CHECK_CONTAINS(evs_errmsg(), "short write");
    evs__fault_destroy(f);
    uint64_t head2 = 0;
    reopen_verify(dir, &l, scrub_fails ? "short write, torn bytes left" : "short write, zeroed",
                  scrub_fails ? "cut a torn tail" : NULL, &head2);
    CHECK_INT(head2, head);
    free(l.a);
    tu_rmrf(dir);
    free(dir);
}

/* ----------------------------------------------------- 3. ENOSPC on rollover */

static int tmp_files(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%.4000s/log", dir);
    DIR *d = opendir(path);
    int n = 0;
    if (!d) return -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) n += strstr(de->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

static void test_enospc(void) {
    char *dir = tu_tempdir("faults-enospc");
    evs_fault *f;
    CHECK_INT(evs__fault_create(&f), 0);
    evs_store *s = open_store(dir, f, 1, 0);
    CHECK(s != NULL);
    if (!s) return;
    acks l = {0};
    uint64_t ver[NSTREAMS] = {0};
    /* from now on no file can be given space */
    evs__fault_fail(f, EVS_FOP_FALLOCATE, 1, 1, ENOSPC);
    int rc = EVS_OK, i;
    for (i = 0; i < 400 && rc == EVS_OK; i++) rc = append_n(s, i % 4, &ver[i % 4], 1, 1000, &l);
    CHECK(i > 20); /* the first segment filled up before anything failed */
    CHECK_RC(rc, -ENOSPC);
    CHECK_CONTAINS(evs_errmsg(), strerror(ENOSPC));
    CHECK_CONTAINS(evs_errmsg(), "segment 00000002.seg");
    char msg[512];
    snprintf(msg, sizeof msg, "%s", evs_errmsg());
    CHECK(evs__fault_count(f, EVS_FOP_FALLOCATE) >= 1);
    CHECK_INT(tmp_files(dir), 0);
    uint64_t head = evs_head(s);
    CHECK_INT(head, l.n);
    /* a later append is refused too (the store stops at the first write failure) */
    rc = append_n(s, 0, &ver[0], 1, 10, &l);
    CHECK(rc != EVS_OK);
    printf("ENOSPC: %llu appends acknowledged, then \"%s\"; next append: %s\n", (unsigned long long)head, msg,
           evs_errname(rc));
    evs_store_close(s);
    evs__fault_destroy(f);
    uint64_t head2 = 0;
    reopen_verify(dir, &l, "ENOSPC: after reopen", NULL, &head2);
    CHECK_INT(head2, head);
    /* with space again, appends roll into segment 2 */
    s = open_store(dir, NULL, 0, 1);
    CHECK(s != NULL);
    if (s) {
        acks l2 = {0};
        uint64_t v = 0;
        evs_stream_info info;
        if (evs_stream_get_info(s, "ft-05", &info) == EVS_OK) v = info.version;
        for (i = 0; i < 80; i++) CHECK_RC(append_n(s, 5, &v, 1, 1000, &l2), EVS_OK);
        evs_store_stats st;
        CHECK_RC(evs_store_get_stats(s, &st), EVS_OK);
        CHECK(st.segments >= 2);
        evs_store_close(s);
        free(l2.a);
    }
    free(l.a);
    tu_rmrf(dir);
    free(dir);
}

/* --------------------------------------------------- 4. crash simulation */

typedef struct crash_run {
    evs_store *s;
    atomic_uint acked;
    atomic_int running;
} crash_run;

typedef struct crash_thread {
    crash_run *run;
    int t;
    uint64_t seed;
    acks l;
    int errors_other; /* failures other than the expected I/O ones */
    int last_rc;
} crash_thread;

static void *crash_appender(void *arg) {
    crash_thread *ct = arg;
    uint64_t ver[NSTREAMS] = {0};
    for (int a = 0; a < 60; a++) {
        int k = ct->t + 3 * (int)(rnd(&ct->seed) % (NSTREAMS / 3)); /* thread t owns streams k % 3 == t */
        /* one in eight a big append, whose index entries are put while the flush thread writes and syncs */
        unsigned n = rnd(&ct->seed) % 8 == 0 ? BIGN + (unsigned)(rnd(&ct->seed) % (MAXN - BIGN + 1))
                                             : 1 + (unsigned)(rnd(&ct->seed) % 4);
        int rc = append_n(ct->run->s, k, &ver[k], n, SIZE_MAX, &ct->l);
        ct->last_rc = rc;
        if (rc != EVS_OK) {
            if (rc != EVS_EFAILED && rc != -EIO && rc != EVS_EIO) ct->errors_other++;
            break;
        }
        atomic_fetch_add(&ct->run->acked, 1);
    }
    atomic_fetch_sub(&ct->run->running, 1);
    return NULL;
}

typedef struct crash_stats {
    int seeds, reports, failed_seeds;
    uint64_t acked, present;
} crash_stats;

static void crash_one(uint64_t seed, crash_stats *cs) {
    int before = tu_failures;
    char *dir = tu_tempdir("faults-crash");
    evs_fault *f;
    CHECK_INT(evs__fault_create(&f), 0);
    evs__fault_track(f, 1);
    evs_store *s = open_store(dir, f, 1, 1);
    CHECK(s != NULL);
    if (!s) return;
    uint64_t rs = seed * 2654435761u + 1;
    int mode = (int)(seed % 2);
    if (mode == 0) /* a batch written and not synced: its fdatasync fails */
        evs__fault_fail(f, EVS_FOP_FDATASYNC, 2 + rnd(&rs) % 40, 0, EIO);
    crash_run run;
    run.s = s;
    atomic_store(&run.acked, 0);
    atomic_store(&run.running, 3);
    crash_thread ct[3];
    pthread_t th[3];
    memset(ct, 0, sizeof ct);
    for (int t = 0; t < 3; t++) {
        ct[t].run = &run;
        ct[t].t = t;
        ct[t].seed = seed * 97 + (uint64_t)t + 1;
        pthread_create(&th[t], NULL, crash_appender, &ct[t]);
    }
    if (mode == 1) { /* crash while appends are in flight, after some acknowledgements */
        unsigned k = 1 + (unsigned)(rnd(&rs) % 80);
        struct timespec ts = {0, 50000};
        /* bounded: the appenders stop after 60 appends each */
        while (atomic_load(&run.acked) < k && atomic_load(&run.running) > 0) nanosleep(&ts, NULL);
        CHECK_INT(evs__fault_crash(f, seed), 0);
    }
    for (int t = 0; t < 3; t++) pthread_join(th[t], NULL);
    if (mode == 0) CHECK_INT(evs__fault_crash(f, seed), 0);
    evs__store_abandon(s);
    evs__fault_destroy(f);
    acks all = {0};
    for (int t = 0; t < 3; t++) {
        if (ct[t].errors_other)
            fprintf(stderr, "crash seed %llu: thread %d: unexpected %s\n", (unsigned long long)seed, t,
                    evs_errname(ct[t].last_rc));
        CHECK_INT(ct[t].errors_other, 0);
        for (size_t i = 0; i < ct[t].l.n; i++) acks_add(&all, &ct[t].l.a[i]);
        free(ct[t].l.a);
    }
    /* after the power loss: plain I/O, recovery, then every acknowledged event */
    problems p = {0};
    s = open_store(dir, NULL, 0, 1);
    CHECK(s != NULL);
    if (s) {
        if (evs_store_recovery_report(s)[0]) cs->reports++;
        verify_store(s, &all, &p);
        uint64_t head = evs_head(s);
        uint64_t acked_events = 0;
        for (size_t i = 0; i < all.n; i++) acked_events += all.a[i].count;
        cs->acked += acked_events;
        cs->present += head;
        evs_event_in e = tu_event("After", "{\"after\":1}");
        evs_append_result r;
        CHECK_RC(evs_append(s, "after-1", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
        CHECK_INT(r.first_global_position, head + 1);
        evs_store_close(s);
    }
    char label[64];
    snprintf(label, sizeof label, "crash seed %llu (mode %d)", (unsigned long long)seed, mode);
    CHECK_PROBLEMS(label, &p);
    free(all.a);
    tu_rmrf(dir);
    free(dir);
    cs->seeds++;
    if (tu_failures != before) cs->failed_seeds++;
}

int main(void) {
    const char *e = getenv("EVS_SEED");
    uint64_t base = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
    e = getenv("EVS_FAULT_SEEDS");
    int seeds = e ? atoi(e) : 120;
    if (seeds < 1) seeds = 1;
    test_fsync_failure();
    test_fsync_failure_big();
    test_close_trivial();
    test_close_sync_failure(EVS_DURABILITY_NONE, 1);
    test_close_sync_failure(EVS_DURABILITY_BATCH, 1);
    test_close_sync_failure(EVS_DURABILITY_NONE, 0);
    test_close_sync_failure(EVS_DURABILITY_BATCH, 0);
    test_short_write(0);
    test_short_write(1);
    test_enospc();
    crash_stats cs = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < seeds; i++) crash_one(base + (uint64_t)i, &cs);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("crash simulation: seeds %llu..%llu (EVS_SEED repeats), %d seeds, %d failed; %llu events acknowledged, "
           "%llu present after recovery, %d recovery reports; %.1fs\n",
           (unsigned long long)base, (unsigned long long)(base + (uint64_t)seeds - 1), cs.seeds, cs.failed_seeds,
           (unsigned long long)cs.acked, (unsigned long long)cs.present, cs.reports,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return TEST_REPORT();
}

/*
 * test_log_concurrency.c — readers of the log running while the writer
 * appends, rolls to new segments (some sized for one oversized frame) and
 * creates segments ahead of need.  Run under ThreadSanitizer by `make test`.
 *
 * The writer publishes the end after each flush with a release store, as
 * the store does; readers load it with acquire and read every frame below
 * it, checking positions are gapless and payloads are what was appended
 * (generated from the global position, so nothing is shared but the log).
 * A checker thread runs evs__log_check and evs__log_usage meanwhile.  No
 * timing is asserted: readers simply run until they have seen the end.
 *
 * A second part opens the log read-only, again and again, while a writer
 * appends and syncs into a large segment, as `evstore info` or a NATS
 * publisher does beside another process that holds the store: every open
 * must succeed.  Frames that land while an open looks for data after its
 * walk's end once made such an open call the log damaged in the middle.
 */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "core/core.h"
#include "log/log.h"

#define FAILF(...)                                                            \
    do {                                                                      \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                       \
        fprintf(stderr, __VA_ARGS__);                                         \
        fprintf(stderr, "\n  last error: %s\n", evs_errmsg());                \
        exit(1);                                                              \
    } while (0)

#define CHECK_RC(expr, want)                                                                      \
    do {                                                                                          \
        int g_ = (expr), w_ = (want);                                                             \
        if (g_ != w_) FAILF("%s: got %s (%d), wanted %s (%d)", #expr, evs_errname(g_), g_, evs_errname(w_), w_); \
    } while (0)

#define NFRAMES 6000
#define NREADERS 3
#define SEG (64u * 1024)

static evs_log *g_log;
static _Atomic uint64_t g_pub_end;   /* readers may read below this */
static _Atomic int g_done;           /* the writer published its last end */

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Frame shape by its first global position: mostly small, now and then
   larger than a segment. */
static uint32_t len_for(uint64_t gpos) {
    uint64_t r = mix64(gpos);
    if (r % 400 == 0) return 100 * 1024 + (uint32_t)(r % 5000);
    return 1 + (uint32_t)(r % 3000);
}

static uint32_t count_for(uint64_t gpos) { return 1 + (uint32_t)(mix64(gpos ^ 0xABCD) % 3); }

static void gen_payload(uint64_t gpos, uint8_t *buf, uint32_t len) {
    uint64_t s = mix64(gpos * 31 + 7);
    for (uint32_t i = 0; i < len; i++) {
        if ((i & 7) == 0) s = mix64(s);
        buf[i] = (uint8_t)(s >> ((i & 7) * 8));
    }
}

static void *reader(void *arg) {
    uint8_t *want = malloc(200 * 1024);
    evs_lsn at = evs__log_start(g_log);
    uint64_t gpos = 1, frames = 0;
    for (;;) {
        int done = atomic_load_explicit(&g_done, memory_order_acquire);
        evs_lsn lim = atomic_load_explicit(&g_pub_end, memory_order_acquire);
        evs_frame f;
        int rc;
        while ((rc = evs__log_read(g_log, at, lim, &f)) == EVS_OK) {
            if (f.first_gpos != gpos) FAILF("reader: got position %" PRIu64 ", wanted %" PRIu64, f.first_gpos, gpos);
            if (f.len != len_for(gpos) || f.count != count_for(gpos))
                FAILF("reader: frame %" PRIu64 ": got len %u count %u, wanted %u %u", gpos, f.len, f.count,
                      len_for(gpos), count_for(gpos));
            gen_payload(gpos, want, f.len);
            if (memcmp(want, f.payload, f.len) != 0) FAILF("reader: frame %" PRIu64 ": payload differs", gpos);
            gpos += f.count;
            at = f.next;
            frames++;
        }
        CHECK_RC(rc, EVS_DONE);
        if (done && at == lim) break;
        sched_yield();
    }
    if (frames != NFRAMES) FAILF("reader: got %" PRIu64 " frames, wanted %d", frames, NFRAMES);
    free(want);
    return arg;
}

static void *checker(void *arg) {
    uint64_t last = 0;
    while (!atomic_load_explicit(&g_done, memory_order_acquire)) {
        evs_log_check ck;
        CHECK_RC(evs__log_check(g_log, NULL, NULL, &ck), EVS_OK);
        if (ck.errors) FAILF("check during appends: %" PRIu64 " errors, first: %s", ck.errors, ck.first_error);
        if (ck.frames < last) FAILF("check: got %" PRIu64 " frames, fewer than the %" PRIu64 " before", ck.frames, last);
        last = ck.frames;
        uint64_t segs, bytes;
        evs__log_usage(g_log, &segs, &bytes);
        if (segs < ck.segments) FAILF("usage: got %" PRIu64 " segments, check saw %" PRIu64, segs, ck.segments);
        sched_yield();
    }
    return arg;
}

static void rm_rf(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            rm_rf(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* ---------------------------------------------- read-only opens beside a writer */

#define RO_SEG (8u * 1024 * 1024) /* a few segments: rollover and the segment made ahead happen meanwhile */
#define RO_OPENS 40
#define RO_MAX_FRAMES 30000 /* a cap, so a slow (sanitized) reader does not walk an ever longer log */

static _Atomic int g_ro_stop;
static _Atomic int g_ro_done;
static _Atomic uint64_t g_ro_written;
#define RO_PREFILL 10000 /* frames before the opens start: past the first segment (~1.1 KB each) */

static void *ro_writer(void *arg) {
    evs_log *log = arg;
    uint8_t buf[2048];
    uint64_t gpos = evs__log_next_gpos(log), last = gpos + RO_MAX_FRAMES;
    while (!atomic_load_explicit(&g_ro_stop, memory_order_acquire) && gpos < last) {
        uint32_t len = 200 + (uint32_t)(mix64(gpos) % 1800);
        gen_payload(gpos, buf, len);
        CHECK_RC(evs__log_append(log, buf, len, gpos, 1, NULL), EVS_OK);
        CHECK_RC(evs__log_flush(log, 1), EVS_OK);
        gpos++;
        atomic_fetch_add_explicit(&g_ro_written, 1, memory_order_relaxed);
        struct timespec pace = {0, 100000L};
        nanosleep(&pace, NULL);
    }
    atomic_store_explicit(&g_ro_done, 1, memory_order_release);
    return NULL;
}

static void ro_start(pthread_t *th, evs_log *w) {
    atomic_store(&g_ro_stop, 0);
    atomic_store(&g_ro_done, 0);
    pthread_create(th, NULL, ro_writer, w);
}

static void ro_stop(pthread_t th) {
    atomic_store_explicit(&g_ro_stop, 1, memory_order_release);
    pthread_join(th, NULL);
}

static void flip_byte(const char *path, off_t at) {
    FILE *f = fopen(path, "r+b");
    if (!f) FAILF("open %s", path);
    int c;
    if (fseeko(f, at, SEEK_SET) || (c = fgetc(f)) == EOF || fseeko(f, at, SEEK_SET) || fputc(c ^ 0x5a, f) == EOF)
        FAILF("flip a byte of %s", path);
    fclose(f);
}

/*
 * Read-only opens while a writer appends and syncs, as `evstore info` or
 * a NATS publisher beside the process that holds the store: every open
 * succeeds and sees no less than the one before, whether it walks from the
 * start or from where the last one ended (an index checkpoint's start).
 * Then a byte of a frame the writer finished long ago is flipped: a
 * read-only open beside the same writer must still call that damage.
 */
static void readonly_opens(const char *base) {
    char dir[256], seg1[300];
    snprintf(dir, sizeof dir, "%s/evs-test-logro-XXXXXX", base);
    if (!mkdtemp(dir)) FAILF("mkdtemp");
    snprintf(seg1, sizeof seg1, "%s/log/00000001.seg", dir);
    evs_log_config wcfg = {.io = NULL, .segment_size = RO_SEG, .readonly = 0};
    evs_log_config rcfg = {.io = NULL, .segment_size = RO_SEG, .readonly = 1};
    evs_log_recovery rec;
    evs_log *w;
    CHECK_RC(evs__log_open(dir, &wcfg, 0, 0, &w, &rec), EVS_OK);
    pthread_t th;
    ro_start(&th, w);
    while (atomic_load_explicit(&g_ro_written, memory_order_relaxed) < RO_PREFILL &&
           !atomic_load_explicit(&g_ro_done, memory_order_acquire)) {
        struct timespec ms = {0, 1000000L};
        nanosleep(&ms, NULL);
    }
    uint64_t last = 1;
    evs_lsn last_end = 0;
    int opens = 0, beside = 0;
    for (; opens < RO_OPENS; opens++) {
        evs_log *r;
        int from_last = (opens & 1) && last_end;
        int rc = evs__log_open(dir, &rcfg, from_last ? last_end : 0, from_last ? last : 0, &r, &rec);
        if (rc) FAILF("read-only open %d beside the writer (from %s): %s", opens, from_last ? "the last end" : "the start",
                      evs_errmsg());
        uint64_t next = evs__log_next_gpos(r);
        if (next < last) FAILF("read-only open %d: log ends at %" PRIu64 ", before the %" PRIu64 " seen earlier", opens, next, last);
        last = next;
        last_end = evs__log_end(r);
        evs__log_close(r);
        if (atomic_load_explicit(&g_ro_done, memory_order_acquire)) break; /* the writer stopped: nothing more to race */
        beside++;
    }
    ro_stop(th);
    uint64_t written = evs__log_next_gpos(w) - 1;
    evs_lsn wend = evs__log_end(w);

    /* Damage inside segment 1, well before the writer's end. */
    uint64_t s1_end = EVS_LSN_SEG(wend) > 1 ? RO_SEG / 2 : EVS_LSN_OFF(wend);
    if (s1_end < 64 * 1024) FAILF("the writer wrote only %" PRIu64 " bytes", s1_end);
    flip_byte(seg1, (off_t)(s1_end / 2));
    ro_start(&th, w);
    evs_log *r = NULL;
    int rc = evs__log_open(dir, &rcfg, 0, 0, &r, &rec);
    ro_stop(th);
    if (rc != EVS_ECORRUPT) FAILF("read-only open of a damaged log beside a writer: got %s (%d), wanted EVS_ECORRUPT; %s",
                                  evs_errname(rc), rc, rc ? evs_errmsg() : "it opened");
    if (!strstr(evs_errmsg(), "damaged")) FAILF("the refusal does not say the log is damaged: %s", evs_errmsg());
    evs__log_close(w);
    rm_rf(dir);
    printf("ok read-only opens beside a writer (%d opens, %d of them while it wrote, %" PRIu64
           " frames, %u segments; damage still reported)\n",
           opens, beside, written, EVS_LSN_SEG(wend));
}

int main(void) {
    char dir[256];
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/evs-test-logc-XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    evs_log_config cfg = {.io = NULL, .segment_size = SEG, .readonly = 0};
    evs_log_recovery rec;
    CHECK_RC(evs__log_open(dir, &cfg, 0, 0, &g_log, &rec), EVS_OK);
    atomic_store(&g_pub_end, evs__log_end(g_log));

    pthread_t rd[NREADERS], ck;
    for (int i = 0; i < NREADERS; i++) pthread_create(&rd[i], NULL, reader, NULL);
    pthread_create(&ck, NULL, checker, NULL);

    /* The writer: this thread. */
    uint8_t *buf = malloc(200 * 1024);
    uint64_t gpos = 1;
    int batch = 0;
    for (int i = 0; i < NFRAMES; i++) {
        uint32_t len = len_for(gpos);
        gen_payload(gpos, buf, len);
        CHECK_RC(evs__log_append(g_log, buf, len, gpos, count_for(gpos), NULL), EVS_OK);
        gpos += count_for(gpos);
        if (++batch >= 1 + (int)(mix64((uint64_t)i) % 8) || i == NFRAMES - 1) {
            CHECK_RC(evs__log_flush(g_log, 0), EVS_OK);
            atomic_store_explicit(&g_pub_end, evs__log_end(g_log), memory_order_release);
            batch = 0;
        }
    }
    atomic_store_explicit(&g_done, 1, memory_order_release);
    for (int i = 0; i < NREADERS; i++) pthread_join(rd[i], NULL);
    pthread_join(ck, NULL);

    evs_log_check res;
    CHECK_RC(evs__log_check(g_log, NULL, NULL, &res), EVS_OK);
    if (res.errors) FAILF("check: %" PRIu64 " errors, first: %s", res.errors, res.first_error);
    if (res.frames != NFRAMES) FAILF("check: got %" PRIu64 " frames, wanted %d", res.frames, NFRAMES);
    evs__log_close(g_log);
    free(buf);
    rm_rf(dir);
    printf("ok log concurrency (%d frames, %d readers, %" PRIu64 " segments)\n", NFRAMES, NREADERS, res.segments);
    readonly_opens(base);
    return 0;
}

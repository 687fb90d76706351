/*
 * test_corruption.c — proves that damage to the log on disk is either
 * repaired by recovery (a torn tail) or reported as corruption (damage in the
 * middle), and that no read ever returns bytes other than those appended.
 *
 * A store of a few thousand events over 64 KiB segments is built once and
 * closed.  Every event's stream, stream position, id and data are functions
 * of its global position, so any read can be checked exactly.  The test
 * parses the segments itself, following the format documented at the top of
 * src/log/log.c (64-byte segment header; frames of a 32-byte header, payload
 * and zero padding to 8 bytes), to aim damage at chosen records.  Each trial
 * damages a fresh copy of the store:
 *   (a) tail cut: the last segment's data is zeroed from a random offset to
 *       the end of its written region; or the file is cut with truncate(2)
 *       to a random length;
 *   (b) a random byte of the last record is flipped;
 *   (c) a random byte is flipped in each of k (1..4) middle records;
 *   (d) a 4 KiB page in the middle of an earlier segment is zeroed;
 *   (e) directed: the header of one middle record is zeroed, so the log's
 *       "no more frames here" marker appears where the index says a record is
 *       (chosen so that another stream's record at the same stream position
 *       opens the next segment); and the first record of a segment damaged
 *       with the index removed;
 *   (f) directed: two adjacent middle records are damaged.
 * Expectations:
 *   (a)/(b) open succeeds; the recovery report says what was cut; every
 *       event before the damage reads back intact; nothing after it is
 *       returned; the stream versions agree; evs_store_check passes; and an
 *       append continues at the next global position.
 *   (c)-(f) open fails with EVS_ECORRUPT naming the segment and offset of
 *       the first damaged record (always so when the index is removed, which
 *       makes open verify the whole log), or open succeeds because the
 *       damage lies below the index checkpoint: then every read of a damaged
 *       event ($all and stream reads) fails with EVS_ECORRUPT naming that
 *       record's segment and offset, every other event reads back intact,
 *       and evs_store_check reports EVS_ECORRUPT with at least one error per
 *       damaged record and the first damaged record's segment and offset.
 * Only bytes a record's checksum covers are damaged (its 32-byte header and
 * payload, not its zero padding).  EVS_CORRUPTION_TRIALS scales the number
 * of random trials (default 16 per kind); EVS_SEED repeats a run.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <time.h>

#include "testutil.h"

#define SEGSZ (64 * 1024)
#define NSTREAMS 11
#define TARGET_EVENTS 2500
#define PAGE 4096
#define SEG_HDR 64
#define FRAME_HDR 32

/* ------------------------------------------------------------ the content */

static uint64_t total;                 /* events in the base store */
static int *g_stream;                  /* [g] stream index */
static uint64_t *g_spos;               /* [g] stream position */
static uint64_t *s_gpos[NSTREAMS];     /* [k][p] global position of stream k's position p */
static uint64_t s_count[NSTREAMS];

static uint64_t mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s) {
    *s = mix(*s);
    return *s;
}

static void make_id(uint64_t g, evs_uuid *id) {
    uint64_t a = mix(g), b = mix(g ^ 0xABCDEF);
    memcpy(id->b, &a, 8);
    memcpy(id->b + 8, &b, 8);
    id->b[6] = (uint8_t)(0x70 | (id->b[6] & 0x0f));
    id->b[8] = (uint8_t)(0x80 | (id->b[8] & 0x3f));
}

static size_t make_data(uint64_t g, int k, char *buf, size_t cap) {
    int w = snprintf(buf, cap, "{\"g\":%llu,\"k\":%d,\"pad\":\"", (unsigned long long)g, k);
    size_t len = (size_t)w, pl = (size_t)((g * 53) % 360);
    for (size_t j = 0; j < pl && len + 3 < cap; j++) buf[len++] = (char)('a' + (g + j) % 26);
    buf[len++] = '"';
    buf[len++] = '}';
    buf[len] = 0;
    return len;
}

static void stream_name(int k, char *buf, size_t n) { snprintf(buf, n, "cx-%d", k); }

/* 1 when ev is exactly the event appended at global position g. */
static int event_is(const evs_event *ev, uint64_t g) {
    char data[512], name[16];
    evs_uuid id;
    if (g < 1 || g > total) return 0;
    size_t dl = make_data(g, g_stream[g], data, sizeof data);
    stream_name(g_stream[g], name, sizeof name);
    make_id(g, &id);
    return ev->global_position == g && ev->stream_position == g_spos[g] && ev->stream_len == strlen(name) &&
           !memcmp(ev->stream, name, ev->stream_len) && !memcmp(&ev->event_id, &id, 16) && ev->data_len == dl &&
           !memcmp(ev->data, data, dl) && ev->event_type_len == 4 && !memcmp(ev->event_type, "Cx", 2);
}

/* ------------------------------------------------------- the log, parsed */

typedef struct frame {
    uint32_t seg, off, len, size; /* size: header + payload + padding */
    uint64_t gpos;
    uint32_t count;
} frame;

static frame *frames;
static size_t nframes;
static uint64_t *g_frame;              /* [g] index into frames */
static uint32_t nsegs;                 /* segment files */
static uint8_t **seg_bytes;            /* [seg] the base store's segment contents */

static uint32_t get32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static char *path_of(const char *dir, uint32_t seg) {
    static char p[4096];
    snprintf(p, sizeof p, "%.3800s/log/%08u.seg", dir, seg);
    return p;
}

static uint8_t *read_file(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return NULL;
    off_t size = lseek(fd, 0, SEEK_END);
    uint8_t *b = calloc(1, (size_t)size + 1);
    if (pread(fd, b, (size_t)size, 0) != size) {
        free(b);
        b = NULL;
    }
    close(fd);
    *len = (size_t)size;
    return b;
}

/* Walk the frames of every segment of dir per log.c's documented format. */
static void parse_log(const char *dir) {
    size_t cap = 1024;
    frames = calloc(cap, sizeof *frames);
    seg_bytes = calloc(100000, sizeof *seg_bytes);
    uint64_t expect = 1;
    for (uint32_t s = 1;; s++) {
        size_t len;
        uint8_t *b = read_file(path_of(dir, s), &len);
        if (!b) break;
        nsegs = s;
        seg_bytes[s] = b;
        if (len != SEGSZ || memcmp(b, "EVSLOG01", 8) != 0) {
            fprintf(stderr, "segment %u: unexpected size %zu or magic\n", s, len);
            exit(2);
        }
        for (size_t off = SEG_HDR; off + FRAME_HDR <= len;) {
            uint32_t l = get32(b + off);
            if (l == 0) break;
            if (nframes == cap) frames = realloc(frames, (cap *= 2) * sizeof *frames);
            frame *f = &frames[nframes++];
            f->seg = s;
            f->off = (uint32_t)off;
            f->len = l;
            f->size = FRAME_HDR + ((l + 7) & ~7u);
            f->gpos = get64(b + off + 8);
            f->count = get32(b + off + 16);
            if (f->gpos != expect) {
                fprintf(stderr, "segment %u offset %zu: frame at gpos %llu, expected %llu\n", s, off,
                        (unsigned long long)f->gpos, (unsigned long long)expect);
                exit(2);
            }
            expect += f->count;
            off += f->size;
        }
    }
    g_frame = calloc(total + 2, sizeof *g_frame);
    for (size_t i = 0; i < nframes; i++)
        for (uint32_t j = 0; j < frames[i].count; j++) g_frame[frames[i].gpos + j] = i;
    CHECK_INT(expect, total + 1);
}

/* The end of a frame's checksummed bytes. */
static uint32_t covered_end(const frame *f) { return f->off + FRAME_HDR + f->len; }

/* Just past a frame's last non-zero byte (its payload may end in zero padding of its own). */
static uint32_t nonzero_end(const frame *f) {
    uint32_t e = covered_end(f);
    while (e > f->off && seg_bytes[f->seg][e - 1] == 0) e--;
    return e;
}

/* ------------------------------------------------------------ file helpers */

static void copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0) {
        fprintf(stderr, "copy %s -> %s: %s\n", from, to, strerror(errno));
        exit(2);
    }
    off_t size = lseek(in, 0, SEEK_END), pos = 0;
    static char buf[1 << 16];
    /* sparse-aware: the index file is mostly a hole */
    while (pos < size) {
        off_t d = lseek(in, pos, SEEK_DATA);
        if (d < 0) break;
        off_t h = lseek(in, d, SEEK_HOLE);
        if (h < 0) h = size;
        for (off_t o = d; o < h;) {
            size_t n = (size_t)(h - o) < sizeof buf ? (size_t)(h - o) : sizeof buf;
            ssize_t r = pread(in, buf, n, o);
            if (r <= 0 || pwrite(out, buf, (size_t)r, o) != r) {
                fprintf(stderr, "copy %s: %s\n", from, strerror(errno));
                exit(2);
            }
            o += r;
        }
        pos = h;
    }
    if (ftruncate(out, size) != 0) exit(2);
    close(in);
    close(out);
}

static void copy_tree(const char *from, const char *to) {
    mkdir(to, 0755);
    DIR *d = opendir(from);
    if (!d) exit(2);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%.3800s/%.255s", from, de->d_name);
        snprintf(b, sizeof b, "%.3800s/%.255s", to, de->d_name);
        struct stat st;
        if (stat(a, &st) != 0) exit(2);
        if (S_ISDIR(st.st_mode)) copy_tree(a, b);
        else copy_file(a, b);
    }
    closedir(d);
}

static void seg_write(const char *dir, uint32_t seg, uint64_t off, const void *buf, size_t n) {
    int fd = open(path_of(dir, seg), O_WRONLY);
    if (fd < 0 || pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
        fprintf(stderr, "damaging segment %u: %s\n", seg, strerror(errno));
        exit(2);
    }
    close(fd);
}

static void zero_range(const char *dir, uint32_t seg, uint64_t from, uint64_t to) {
    static const uint8_t zeros[SEGSZ];
    if (to > from) seg_write(dir, seg, from, zeros, (size_t)(to - from));
}

static void flip_byte(const char *dir, uint32_t seg, uint64_t off, uint8_t mask) {
    uint8_t b = (uint8_t)(seg_bytes[seg][off] ^ mask);
    seg_write(dir, seg, off, &b, 1);
}

/* ------------------------------------------------------------ one trial */

typedef struct trial {
    char what[160];
    int drop_index;         /* remove DIR/index: open verifies the whole log */
    int tail;               /* (a)/(b): recovery must cut and succeed */
    uint64_t head;          /* tail: the head after recovery */
    const char *report_has; /* tail: the recovery report contains this */
    unsigned char *damaged; /* middle: [g] the event's record was hit */
    size_t first_damaged;   /* middle: frame index of the first damaged record */
    uint64_t nrecords;      /* middle: records damaged */
} trial;

typedef struct tally {
    int trials, failed, opened, refused, reports;
    uint64_t corrupt_reads;
} tally;

static void where(const frame *f, char *buf, size_t n) {
    snprintf(buf, n, "segment %08u.seg offset %u", f->seg, f->off);
}


/* A read of g failed with rc: fine only for a damaged event, as ECORRUPT naming its record. */
static void read_failed(const trial *t, uint64_t g, int rc, problems *p, tally *ty) {
    char w[64];
    where(&frames[g_frame[g]], w, sizeof w);
    if (!t->damaged || !t->damaged[g])
        problem(p, "event %llu (undamaged) failed to read: %s: %s", (unsigned long long)g, evs_errname(rc),
                evs_errmsg());
    else if (rc != EVS_ECORRUPT || !strstr(evs_errmsg(), w))
        problem(p, "damaged event %llu read as %s (\"%s\"), wanted ECORRUPT naming %s", (unsigned long long)g,
                evs_errname(rc), evs_errmsg(), w);
    else
        ty->corrupt_reads++;
}

/* Every read of s: $all and each stream, restarting after each failed event. */
static void check_reads(evs_store *s, const trial *t, uint64_t head, problems *p, tally *ty) {
    evs_reader *r = NULL;
    const evs_event *ev;
    int rc;
    /* $all */
    uint64_t g = 1;
    while (g <= head + 1) { /* each pass ends one position further on, so this is bounded */
        if ((rc = evs_read_all(s, g, EVS_FORWARD, NULL, 0, &r))) {
            problem(p, "read $all from %llu: %s", (unsigned long long)g, evs_errname(rc));
            return;
        }
        while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
            if (!event_is(ev, g))
                problem(p, "$all returned gpos %llu where %llu was due, or its bytes differ from the appended ones",
                        (unsigned long long)ev->global_position, (unsigned long long)g);
            else if (t->damaged && t->damaged[g])
                problem(p, "damaged event %llu was returned", (unsigned long long)g);
            if (ev->global_position > head) problem(p, "$all returned gpos %llu past the head", (unsigned long long)g);
            g = ev->global_position + 1;
        }
        evs_reader_close(r);
        if (rc == EVS_DONE) break;
        read_failed(t, g, rc, p, ty);
        g++;
    }
    if (g != head + 1)
        problem(p, "$all ended at %llu, the head is %llu", (unsigned long long)(g - 1), (unsigned long long)head);
    /* streams */
    for (int k = 0; k < NSTREAMS; k++) {
        char name[16];
        stream_name(k, name, sizeof name);
        uint64_t want = 0;
        for (uint64_t q = 1; q <= s_count[k]; q++)
            if (s_gpos[k][q] <= head) want = q;
        evs_stream_info info;
        rc = evs_stream_get_info(s, name, &info);
        if (want == 0) {
            if (rc != EVS_ENOTFOUND) problem(p, "%s: %s where no event should be", name, evs_errname(rc));
            continue;
        }
        if (rc != EVS_OK || info.version != want) {
            problem(p, "%s: version %llu (%s), wanted %llu", name, (unsigned long long)info.version, evs_errname(rc),
                    (unsigned long long)want);
            continue;
        }
        uint64_t q = 1;
        while (q <= want + 1) {
            if ((rc = evs_read_stream(s, name, q, EVS_FORWARD, 0, &r))) {
                problem(p, "read %s from %llu: %s", name, (unsigned long long)q, evs_errname(rc));
                break;
            }
            while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
                uint64_t gq = q <= s_count[k] ? s_gpos[k][q] : 0;
                if (!event_is(ev, gq))
                    problem(p, "%s position %llu returned %.*s@%llu (gpos %llu): not the appended event", name,
                            (unsigned long long)q, (int)ev->stream_len, ev->stream,
                            (unsigned long long)ev->stream_position, (unsigned long long)ev->global_position);
                else if (t->damaged && t->damaged[gq])
                    problem(p, "%s: damaged event %llu was returned", name, (unsigned long long)gq);
                q++;
            }
            evs_reader_close(r);
            if (rc == EVS_DONE) break;
            read_failed(t, s_gpos[k][q], rc, p, ty);
            q++;
        }
        if (q != want + 1)
            problem(p, "%s: read ended at %llu, version %llu", name, (unsigned long long)(q - 1),
                    (unsigned long long)want);
    }
}

/* Open the damaged copy in dir and check the expectations of the file comment. */
static void run_trial(const char *dir, trial *t, tally *ty) {
    int before = tu_failures;
    problems p = {0};
    ty->trials++;
    evs_store *s;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    evs_store_set_segment_size(s, SEGSZ);
    evs_store_set_index_map_size(s, 64u << 20);
    int rc = evs_store_open(s, dir, 0);
    char w[64] = "";
    if (!t->tail) where(&frames[t->first_damaged], w, sizeof w);
    if (t->tail) {
        CHECK_RC(rc, EVS_OK);
    } else if (rc != EVS_OK) {
        ty->refused++;
        if (rc != EVS_ECORRUPT || !strstr(evs_errmsg(), w))
            problem(&p, "open: %s (\"%s\"), wanted ECORRUPT naming %s", evs_errname(rc), evs_errmsg(), w);
    } else if (t->drop_index) {
        problem(&p, "open verified the whole log (index removed) but did not find the damage at %s", w);
    }
    if (rc == EVS_OK) {
        ty->opened++;
        const char *rep = evs_store_recovery_report(s);
        if (rep[0]) ty->reports++;
        uint64_t head = t->tail ? t->head : total;
        CHECK_INT(evs_head(s), head);
        if (t->tail && t->report_has && !strstr(rep, t->report_has))
            problem(&p, "recovery report \"%s\" does not contain \"%s\"", rep, t->report_has);
        check_reads(s, t, head, &p, ty);
        evs_check_report cr;
        rc = evs_store_check(s, &cr);
        if (t->tail) {
            CHECK_RC(rc, EVS_OK);
            CHECK_INT(cr.events, head);
            /* appending continues right after what survived */
            evs_event_in e = tu_event("After", "{\"after\":true}");
            evs_append_result res;
            CHECK_RC(evs_append(s, "after-1", EVS_EXPECT_ANY, &e, 1, &res, NULL), EVS_OK);
            CHECK_INT(res.first_global_position, head + 1);
        } else {
            if (rc != EVS_ECORRUPT) problem(&p, "check: %s, wanted ECORRUPT", evs_errname(rc));
            if (cr.errors < t->nrecords)
                problem(&p, "check found %llu error(s) for %llu damaged record(s) (first: %s)",
                        (unsigned long long)cr.errors, (unsigned long long)t->nrecords, cr.first_error);
            if (!strstr(cr.first_error, w))
                problem(&p, "check's first error \"%s\" does not name %s", cr.first_error, w);
        }
    }
    evs_store_close(s);
    if (p.count) fprintf(stderr, "trial %d (%s): %d problem(s), first: %s\n", ty->trials, t->what, p.count, p.first);
    CHECK_INT(p.count, 0);
    if (tu_failures != before) ty->failed++;
}

/* ------------------------------------------------------------ trial kinds */

static size_t last_frame(void) { return nframes - 1; }

/* Frames eligible as "middle" records: not in the last data segment. */
static size_t middle_limit(void) {
    uint32_t lastseg = frames[last_frame()].seg;
    size_t i = 0;
    while (i < nframes && frames[i].seg < lastseg) i++;
    return i;
}

static void mark_frame(trial *t, size_t fi) {
    const frame *f = &frames[fi];
    for (uint32_t j = 0; j < f->count; j++) t->damaged[f->gpos + j] = 1;
}

/* The head when everything from byte `cut` of the last data segment is lost. */
static uint64_t head_if_cut(uint32_t seg, uint64_t cut, int whole_frames) {
    uint64_t head = 0;
    for (size_t i = 0; i < nframes; i++) {
        const frame *f = &frames[i];
        /* zeroing from `cut` changes nothing in a frame whose bytes from there on are zero */
        uint64_t end = whole_frames ? (uint64_t)f->off + f->size : nonzero_end(f);
        if (f->seg < seg || end <= cut) head = f->gpos + f->count - 1;
        else break;
    }
    return head;
}

static void prepare(const char *base, const char *dir) {
    tu_rmrf(dir);
    copy_tree(base, dir);
}

/* Remove the index of the copy: open then verifies the whole log. */
static void drop_index(const char *dir, int drop) {
    char ix[4096];
    snprintf(ix, sizeof ix, "%.4000s/index", dir);
    if (drop) tu_rmrf(ix);
}

static void trial_zero_tail(const char *base, const char *dir, uint64_t *rs, tally *ty) {
    const frame *lf = &frames[last_frame()];
    uint32_t seg = lf->seg;
    uint64_t end = (uint64_t)lf->off + lf->size;
    uint64_t x = SEG_HDR + rnd(rs) % (end - SEG_HDR);
    if (rnd(rs) % 4 == 0) { /* sometimes exactly at a record boundary */
        size_t i = middle_limit() + (size_t)(rnd(rs) % (nframes - middle_limit()));
        x = frames[i].off;
    }
    prepare(base, dir);
    zero_range(dir, seg, x, end);
    trial t = {0};
    t.tail = 1;
    t.head = head_if_cut(seg, x, 0);
    /* a record hit inside its checksummed bytes is cut; a clean cut only rebuilds the index */
    int inside = 0;
    for (size_t i = 0; i < nframes; i++)
        if (frames[i].seg == seg && frames[i].off < x && x < nonzero_end(&frames[i])) inside = 1;
    t.report_has = t.head == total ? NULL : inside ? "cut a torn tail" : "index rebuilt";
    snprintf(t.what, sizeof t.what, "(a) zero segment %u from %llu to %llu", seg, (unsigned long long)x,
             (unsigned long long)end);
    run_trial(dir, &t, ty);
}

static void trial_truncate_tail(const char *base, const char *dir, uint64_t *rs, tally *ty) {
    const frame *lf = &frames[last_frame()];
    uint32_t seg = lf->seg;
    uint64_t end = (uint64_t)lf->off + lf->size;
    uint64_t len = SEG_HDR + rnd(rs) % (end - SEG_HDR + 1);
    prepare(base, dir);
    if (truncate(path_of(dir, seg), (off_t)len) != 0) exit(2);
    trial t = {0};
    t.tail = 1;
    t.head = head_if_cut(seg, len & ~(uint64_t)7, 1);
    t.report_has = "cut a torn tail"; /* of this segment, or the previous one when this one goes */
    snprintf(t.what, sizeof t.what, "(a) truncate segment %u to %llu bytes", seg, (unsigned long long)len);
    run_trial(dir, &t, ty);
}

static void trial_flip_tail(const char *base, const char *dir, uint64_t *rs, tally *ty) {
    const frame *lf = &frames[last_frame()];
    uint64_t off = lf->off + rnd(rs) % (FRAME_HDR + lf->len);
    uint8_t mask = (uint8_t)(1 + rnd(rs) % 255);
    prepare(base, dir);
    flip_byte(dir, lf->seg, off, mask);
    trial t = {0};
    t.tail = 1;
    t.head = lf->gpos - 1;
    t.report_has = "cut a torn tail";
    snprintf(t.what, sizeof t.what, "(b) flip byte %llu of segment %u (last record at %u) with 0x%02x",
             (unsigned long long)off, lf->seg, lf->off, mask);
    run_trial(dir, &t, ty);
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Flip one covered byte in each of the given frames. */
static void trial_flip_frames(const char *base, const char *dir, size_t *fi, size_t k, int drop, uint64_t *rs,
                              const char *label, tally *ty) {
    qsort(fi, k, sizeof *fi, cmp_size);
    prepare(base, dir);
    trial t = {0};
    t.damaged = calloc(total + 2, 1);
    t.drop_index = drop;
    t.nrecords = k;
    t.first_damaged = fi[0];
    int n = snprintf(t.what, sizeof t.what, "%s: flip %zu record(s)%s:", label, k, drop ? ", index removed" : "");
    for (size_t i = 0; i < k; i++) {
        const frame *f = &frames[fi[i]];
        uint64_t off = f->off + rnd(rs) % (FRAME_HDR + f->len);
        flip_byte(dir, f->seg, off, (uint8_t)(1 + rnd(rs) % 255));
        mark_frame(&t, fi[i]);
        if (n > 0 && (size_t)n < sizeof t.what)
            n += snprintf(t.what + n, sizeof t.what - (size_t)n, " %u:%llu", f->seg, (unsigned long long)off);
    }
    drop_index(dir, drop);
    run_trial(dir, &t, ty);
    free(t.damaged);
}

static void trial_flip_middle(const char *base, const char *dir, uint64_t *rs, int drop, tally *ty) {
    size_t lim = middle_limit(), k = 1 + (size_t)(rnd(rs) % 4), fi[4];
    for (size_t i = 0; i < k; i++) {
        size_t c;
        int dup;
        do { /* distinct records; bounded since there are far more than 4 */
            c = (size_t)(rnd(rs) % lim);
            dup = 0;
            for (size_t j = 0; j < i; j++) dup |= fi[j] == c;
        } while (dup);
        fi[i] = c;
    }
    trial_flip_frames(base, dir, fi, k, drop, rs, "(c)", ty);
}

static void trial_zero_page(const char *base, const char *dir, uint64_t *rs, int drop, tally *ty) {
    uint32_t seg = frames[middle_limit()].seg; /* pick among the segments before the last data segment */
    seg = 1 + (uint32_t)(rnd(rs) % (seg - 1));
    uint64_t data_end = 0;
    for (size_t i = 0; i < nframes; i++)
        if (frames[i].seg == seg) data_end = (uint64_t)frames[i].off + frames[i].size;
    uint64_t pages = data_end / PAGE; /* whole pages of data after the header page */
    uint64_t pg = 1 + rnd(rs) % (pages > 1 ? pages - 1 : 1);
    uint64_t from = pg * PAGE, to = from + PAGE;
    prepare(base, dir);
    zero_range(dir, seg, from, to);
    trial t = {0};
    t.damaged = calloc(total + 2, 1);
    t.drop_index = drop;
    t.first_damaged = SIZE_MAX;
    for (size_t i = 0; i < nframes; i++) {
        const frame *f = &frames[i];
        if (f->seg != seg) continue;
        uint64_t a = f->off > from ? f->off : from, b = covered_end(f) < to ? covered_end(f) : to;
        int hit = 0;
        for (uint64_t o = a; o < b && !hit; o++) hit = seg_bytes[seg][o] != 0;
        if (!hit) continue;
        if (t.first_damaged == SIZE_MAX) t.first_damaged = i;
        mark_frame(&t, i);
    }
    t.nrecords = 1; /* one zeroed stretch: at least one error */
    snprintf(t.what, sizeof t.what, "(d) zero page %llu of segment %u%s", (unsigned long long)pg, seg,
             drop ? ", index removed" : "");
    drop_index(dir, drop);
    if (t.first_damaged != SIZE_MAX) run_trial(dir, &t, ty);
    free(t.damaged);
}

/*
 * (e) The 32-byte header of a middle record zeroed, so its length reads 0
 * ("no more frames in this segment"): the record is gone and reads of it
 * must fail as corruption, never return the record the log finds elsewhere.
 * The record chosen, where possible, is one whose events' stream positions
 * equal those of the next segment's first record, in another stream: a read
 * that followed the log to the next segment would find a plausible event.
 */
static void trial_zero_header(const char *base, const char *dir, int drop, tally *ty) {
    size_t lim = middle_limit(), pick = lim / 2;
    for (size_t i = 0; i < lim; i++) {
        const frame *f = &frames[i];
        size_t nx = i;
        while (nx < nframes && frames[nx].seg == f->seg) nx++;
        if (nx >= nframes || f->off == SEG_HDR) continue;
        const frame *g = &frames[nx]; /* first record of the next segment */
        if (g_stream[g->gpos] != g_stream[f->gpos] && g_spos[g->gpos] == g_spos[f->gpos]) {
            pick = i;
            break;
        }
    }
    prepare(base, dir);
    const frame *f = &frames[pick];
    zero_range(dir, f->seg, f->off, f->off + FRAME_HDR);
    trial t = {0};
    t.damaged = calloc(total + 2, 1);
    t.drop_index = drop;
    t.first_damaged = pick;
    t.nrecords = 1;
    mark_frame(&t, pick);
    drop_index(dir, drop);
    snprintf(t.what, sizeof t.what, "(e) zero the header of the record at segment %u offset %u (cx-%d@%llu)%s",
             f->seg, f->off, g_stream[f->gpos], (unsigned long long)g_spos[f->gpos], drop ? ", index removed" : "");
    run_trial(dir, &t, ty);
    free(t.damaged);
}

/* ------------------------------------------------------------------ main */

static void build(const char *base) {
    evs_store *s;
    if (evs_store_create(&s) || evs_store_set_segment_size(s, SEGSZ) ||
        evs_store_set_index_map_size(s, 64u << 20) || evs_store_open(s, base, EVS_OPEN_CREATE)) {
        fprintf(stderr, "cannot create %s: %s\n", base, evs_errmsg());
        exit(2);
    }
    g_stream = calloc(TARGET_EVENTS + 8, sizeof *g_stream);
    g_spos = calloc(TARGET_EVENTS + 8, sizeof *g_spos);
    for (int k = 0; k < NSTREAMS; k++) s_gpos[k] = calloc(TARGET_EVENTS + 8, sizeof *s_gpos[k]);
    static char data[4][512];
    for (unsigned i = 0; total < TARGET_EVENTS; i++) {
        int k = (int)(i % NSTREAMS);
        unsigned n = 1 + (i * 7) % 4;
        if (total + n > TARGET_EVENTS) n = (unsigned)(TARGET_EVENTS - total);
        evs_event_in ev[4];
        evs_uuid ids[4];
        for (unsigned j = 0; j < n; j++) {
            uint64_t g = total + 1 + j;
            size_t dl = make_data(g, k, data[j], sizeof data[j]);
            make_id(g, &ids[j]);
            ev[j] = tu_event(g % 2 ? "CxA1" : "CxB2", data[j]);
            ev[j].data_len = dl;
            ev[j].event_id = &ids[j];
        }
        char name[16];
        stream_name(k, name, sizeof name);
        evs_append_result r;
        int rc = evs_append(s, name, (int64_t)s_count[k], ev, n, &r, NULL);
        if (rc || r.first_global_position != total + 1) {
            fprintf(stderr, "build: append %u: %s: %s\n", i, evs_errname(rc), evs_errmsg());
            exit(2);
        }
        for (unsigned j = 0; j < n; j++) {
            uint64_t g = total + 1 + j;
            g_stream[g] = k;
            g_spos[g] = ++s_count[k];
            s_gpos[k][g_spos[g]] = g;
        }
        total += n;
    }
    evs_store_close(s);
}

int main(void) {
    const char *e = getenv("EVS_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
    e = getenv("EVS_CORRUPTION_TRIALS");
    int per = e ? atoi(e) : 16;
    if (per < 1) per = 1;
    tu_verbose = getenv("EVS_VERBOSE") != NULL;
    printf("crash_corruption: %d trials per kind, seed %llu (EVS_SEED repeats a run)\n", per,
           (unsigned long long)seed);
    char *root = tu_tempdir("corruption");
    char base[4096], dir[4096];
    snprintf(base, sizeof base, "%s/base", root);
    snprintf(dir, sizeof dir, "%s/trial", root);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    build(base);
    parse_log(base);
    printf("base store: %llu events in %zu records over %u segments\n", (unsigned long long)total, nframes, nsegs);
    CHECK(nsegs >= 5);

    /* the undamaged copy: the reference every trial departs from */
    {
        prepare(base, dir);
        trial t = {0};
        tally ty0 = {0};
        t.tail = 1;
        t.head = total;
        snprintf(t.what, sizeof t.what, "undamaged copy");
        run_trial(dir, &t, &ty0);
    }

    uint64_t rs = seed ? seed : 1;
    tally ty[7];
    memset(ty, 0, sizeof ty);
    const char *kinds[7] = {"(a) zeroed tail", "(a) truncated file", "(b) tail byte flip",
                            "(c) middle byte flips", "(d) zeroed middle page", "(e) directed",
                            "(f) adjacent records"};
    for (int i = 0; i < per; i++) {
        trial_zero_tail(base, dir, &rs, &ty[0]);
        trial_truncate_tail(base, dir, &rs, &ty[1]);
        trial_flip_tail(base, dir, &rs, &ty[2]);
        trial_flip_middle(base, dir, &rs, 0, &ty[3]);
        trial_flip_middle(base, dir, &rs, 1, &ty[3]);
        trial_zero_page(base, dir, &rs, i % 2, &ty[4]);
    }
    trial_zero_header(base, dir, 0, &ty[5]);
    trial_zero_header(base, dir, 1, &ty[5]);
    {
        /* the first record of a segment damaged: open must name it, not the previous segment's end */
        size_t c = middle_limit() / 2;
        while (c + 1 < middle_limit() && frames[c].seg == frames[c - 1].seg) c++;
        size_t fi[1] = {c};
        trial_flip_frames(base, dir, fi, 1, 1, &rs, "(e) first record of a segment", &ty[5]);
    }
    {
        /* two and three neighbours inside one segment, and a pair across a segment boundary */
        size_t a = middle_limit() / 3, b = middle_limit() / 2, c = 1;
        while (a + 1 < nframes && frames[a + 1].seg != frames[a].seg) a++;
        while (b + 2 < nframes && frames[b + 2].seg != frames[b].seg) b++;
        while (c < middle_limit() && frames[c].seg == frames[c - 1].seg) c++;
        size_t fi[2] = {a, a + 1}, fj[3] = {b, b + 1, b + 2}, fk[2] = {c - 1, c};
        trial_flip_frames(base, dir, fi, 2, 0, &rs, "(f) adjacent in a segment", &ty[6]);
        trial_flip_frames(base, dir, fj, 3, 0, &rs, "(f) adjacent in a segment", &ty[6]);
        trial_flip_frames(base, dir, fk, 2, 0, &rs, "(f) adjacent across segments", &ty[6]);
        trial_flip_frames(base, dir, fk, 2, 1, &rs, "(f) adjacent across segments", &ty[6]);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int trials = 0, failed = 0;
    for (int k = 0; k < 7; k++) {
        printf("  %-24s %3d trials, %3d failed; opened %d, refused as corrupt %d, recovery reports %d, "
               "corrupt reads %llu\n",
               kinds[k], ty[k].trials, ty[k].failed, ty[k].opened, ty[k].refused, ty[k].reports,
               (unsigned long long)ty[k].corrupt_reads);
        trials += ty[k].trials;
        failed += ty[k].failed;
    }
    printf("crash_corruption: %d trials in %.1fs\n", trials,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    printf("trials: %d passed, %d failed\n", trials - failed, failed);
    for (uint32_t s = 1; s <= nsegs; s++) free(seg_bytes[s]);
    free(seg_bytes);
    free(frames);
    free(g_frame);
    free(g_stream);
    free(g_spos);
    for (int k = 0; k < NSTREAMS; k++) free(s_gpos[k]);
    tu_rmrf(root);
    free(root);
    return TEST_REPORT();
}

/*
 * test_corruption.c — damage to the log on disk never drops or renumbers an
 * acknowledged event in silence, and damaged bytes are never served.
 *
 * Two base stores of the same content are built: one closed cleanly, one
 * whose writer was killed with SIGKILL right after its last append was
 * acknowledged.  Every event's stream, stream position, id and data are
 * functions of its global position, so any read can be checked exactly.
 * The test parses the segments itself (the format at the top of
 * src/log/log.c) to aim damage at chosen records.  Each trial damages a
 * fresh copy of a base store:
 *   - a single byte of one record flipped (every record of both bases, the
 *     last one included, plus random ones);
 *   - a range zeroed, from inside one record over up to several records,
 *     across segment ends too (every record of both bases as the start);
 *   - the last segment truncated;
 *   - some trials with the index removed as well.
 * and then asserts one thing per trial, the invariant:
 *   no acknowledged event is lost without open failing or `repair` naming
 *   it, no position is reused, and damaged data is never served.
 * In detail:
 *   1. open either fails with EVS_ECORRUPT naming the segment and offset of
 *      a damaged record and changing no byte of the log, or succeeds with
 *      the head unchanged; then every read of a damaged event fails with
 *      EVS_ECORRUPT naming its record, every other event reads back exactly,
 *      and evs_store_check reports the damage;
 *   2. a dry-run repair names exactly the damaged records' events (position,
 *      stream, stream position, id) and changes nothing;
 *   3. repair names them again, the head stays where it was;
 *   4. the repaired store opens; reads report the removed positions as lost
 *      (EVS_ELOST) and return every other event exactly; stream versions
 *      are unchanged; check passes and counts the lost events; an append
 *      takes the next global position and the next stream position.
 * With the index removed (the floor deleted by hand) the log's own
 * evidence is all there is: damage followed by a valid record still fails
 * open, the repair names positions only, and global positions are still
 * never reused.  Some repairs are interrupted by an injected write failure:
 * open then refuses the store until a second repair finishes.
 *
 * EVS_CORRUPTION_STRIDE visits every Nth record in the sweeps (default 1;
 * the sanitizer runs use a larger one), EVS_CORRUPTION_TRIALS the random
 * trials per kind, EVS_SEED repeats a run.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>

#include "io/io_fault.h"
#include "store/store_testing.h"
#include "testutil.h"

#define SEGSZ (64 * 1024)
#define NSTREAMS 7
#define TARGET_EVENTS 700
#define SEG_HDR 64
#define FRAME_HDR 32

/* ------------------------------------------------------------ the content */

static uint64_t total;                 /* events in a base store */
static int *g_stream;                  /* [g] stream index */
static uint64_t *g_spos;               /* [g] stream position */
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

/* The global position of stream k's position q (0 if none). */
static uint64_t gpos_of(int k, uint64_t q) {
    for (uint64_t g = 1; g <= total; g++)
        if (g_stream[g] == k && g_spos[g] == q) return g;
    return 0;
}

/* ------------------------------------------------------- the log, parsed */

typedef struct frame {
    uint32_t seg, off, len, size; /* size: header + payload + padding */
    uint64_t gpos;
    uint32_t count;
} frame;

typedef struct base {
    const char *label;
    char dir[4096];
    frame *frames;
    size_t nframes;
    uint32_t nsegs;
    uint8_t **seg;         /* [no] segment bytes */
    size_t *seg_len;
} base;

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

/* Walk the frames of every segment per log.c's documented format. */
static void parse_log(base *b) {
    size_t cap = 1024;
    b->frames = calloc(cap, sizeof *b->frames);
    b->seg = calloc(1000, sizeof *b->seg);
    b->seg_len = calloc(1000, sizeof *b->seg_len);
    uint64_t expect = 1;
    for (uint32_t s = 1; s < 1000; s++) {
        size_t len;
        uint8_t *d = read_file(path_of(b->dir, s), &len);
        if (!d) break;
        b->nsegs = s;
        b->seg[s] = d;
        b->seg_len[s] = len;
        if (memcmp(d, "EVSLOG01", 8) != 0) {
            fprintf(stderr, "%s segment %u: bad magic\n", b->label, s);
            exit(2);
        }
        for (size_t off = SEG_HDR; off + FRAME_HDR <= len;) {
            uint32_t l = get32(d + off);
            if (l == 0) break;
            if (b->nframes == cap) b->frames = realloc(b->frames, (cap *= 2) * sizeof *b->frames);
            frame *f = &b->frames[b->nframes++];
            f->seg = s;
            f->off = (uint32_t)off;
            f->len = l;
            f->size = FRAME_HDR + ((l + 7) & ~7u);
            f->gpos = get64(d + off + 8);
            f->count = get32(d + off + 16);
            if (f->gpos != expect) {
                fprintf(stderr, "%s segment %u offset %zu: frame at gpos %llu, expected %llu\n", b->label, s, off,
                        (unsigned long long)f->gpos, (unsigned long long)expect);
                exit(2);
            }
            expect += f->count;
            off += f->size;
        }
    }
    CHECK_INT(expect, total + 1);
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
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, "LOCK")) continue;
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

/* Every log segment's bytes, to prove that a refused open changed nothing. */
typedef struct snapshot {
    uint32_t n;
    uint8_t *b[1000];
    size_t len[1000];
} snapshot;

static void snap_take(const char *dir, snapshot *s) {
    memset(s, 0, sizeof *s);
    for (uint32_t no = 1; no < 1000; no++) {
        if (!(s->b[no] = read_file(path_of(dir, no), &s->len[no]))) break;
        s->n = no;
    }
}

static int snap_same(const char *dir, const snapshot *s) {
    snapshot t;
    snap_take(dir, &t);
    int same = t.n == s->n;
    for (uint32_t no = 1; no <= s->n && same; no++)
        same = t.len[no] == s->len[no] && !memcmp(t.b[no], s->b[no], s->len[no]);
    for (uint32_t no = 1; no <= t.n; no++) free(t.b[no]);
    return same;
}

static void snap_free(snapshot *s) {
    for (uint32_t no = 1; no <= s->n; no++) free(s->b[no]);
}

/* ------------------------------------------------------------ one trial */

typedef struct trial {
    const base *b;
    char what[200];
    int drop_index;
    int interrupt;          /* make the first repair fail part-way */
    unsigned char *hit;     /* [frame] damaged */
    unsigned char *lost;    /* [g] the event's record was damaged */
    uint64_t nlost;
    size_t first_hit;
} trial;

typedef struct tally {
    int trials, failed, refused, opened, interrupted;
    uint64_t lost, corrupt_reads;
} tally;

static void where_of(const frame *f, char *buf, size_t n) {
    snprintf(buf, n, "segment %08u.seg offset %u", f->seg, f->off);
}

static int names_hit(const trial *t, const char *msg) {
    char w[64];
    for (size_t i = 0; i < t->b->nframes; i++)
        if (t->hit[i]) {
            where_of(&t->b->frames[i], w, sizeof w);
            if (strstr(msg, w)) return 1;
        }
    return 0;
}

static evs_store *store_new(const evs_io *io) {
    evs_store *s;
    if (evs_store_create(&s)) exit(2);
    evs_store_set_segment_size(s, SEGSZ);
    evs_store_set_index_map_size(s, 64u << 20);
    if (io) evs__store_set_io(s, io);
    return s;
}

/*
 * Read everything of an open damaged or repaired store.  repaired: lost
 * events must be reported as EVS_ELOST; otherwise a damaged event must fail
 * as EVS_ECORRUPT naming its record.  Either way no wrong byte is returned.
 */
static void check_reads(evs_store *s, const trial *t, int repaired, problems *p, tally *ty) {
    evs_reader *r = NULL;
    const evs_event *ev;
    int rc;
    const base *b = t->b;
    /* $all, restarting after each failed read */
    uint64_t g = 1, lost_seen = 0;
    while (g <= total) {
        if ((rc = evs_read_all(s, g, EVS_FORWARD, NULL, 0, &r))) {
            problem(p, "read $all from %llu: %s", (unsigned long long)g, evs_errname(rc));
            return;
        }
        for (;;) {
            rc = evs_reader_next(r, &ev);
            if (rc == EVS_ELOST && repaired) {
                uint64_t a, z;
                if (evs_reader_lost(r, &a, &z) || a != g)
                    problem(p, "$all reported a lost range starting at %llu where %llu was due",
                            (unsigned long long)a, (unsigned long long)g);
                for (; g <= z; g++) {
                    if (!t->lost[g]) problem(p, "$all: undamaged event %llu reported lost", (unsigned long long)g);
                    lost_seen++;
                }
                continue;
            }
            if (rc != EVS_OK) break;
            if (!event_is(ev, g))
                problem(p, "$all returned gpos %llu where %llu was due, or its bytes differ from the appended ones",
                        (unsigned long long)ev->global_position, (unsigned long long)g);
            else if (t->lost[g])
                problem(p, "damaged event %llu was returned", (unsigned long long)g);
            g = ev->global_position + 1;
        }
        evs_reader_close(r);
        if (rc == EVS_DONE) break;
        if (!t->lost[g] || repaired) {
            problem(p, "$all at %llu: %s (%s)", (unsigned long long)g, evs_errname(rc), evs_errmsg());
            return;
        }
        size_t fi = 0;
        while (fi < b->nframes && !(b->frames[fi].gpos <= g && g < b->frames[fi].gpos + b->frames[fi].count)) fi++;
        char w[64];
        where_of(&b->frames[fi], w, sizeof w);
        if (rc != EVS_ECORRUPT || !strstr(evs_errmsg(), w))
            problem(p, "damaged event %llu read as %s (\"%s\"), wanted ECORRUPT naming %s", (unsigned long long)g,
                    evs_errname(rc), evs_errmsg(), w);
        else
            ty->corrupt_reads++;
        g++;
    }
    if (g != total + 1) problem(p, "$all ended at %llu, the head is %llu", (unsigned long long)(g - 1),
                                (unsigned long long)total);
    if (repaired && lost_seen != t->nlost)
        problem(p, "$all reported %llu lost events, %llu were damaged", (unsigned long long)lost_seen,
                (unsigned long long)t->nlost);
    /* every stream: its version and every position, forward */
    for (int k = 0; k < NSTREAMS; k++) {
        char name[16];
        stream_name(k, name, sizeof name);
        evs_stream_info info;
        rc = evs_stream_get_info(s, name, &info);
        if (rc != EVS_OK || info.version != s_count[k]) {
            if (!(t->drop_index && repaired))
                problem(p, "%s: version %llu (%s), wanted %llu", name, (unsigned long long)info.version,
                        evs_errname(rc), (unsigned long long)s_count[k]);
            continue;
        }
        uint64_t q = 1;
        while (q <= s_count[k]) {
            if ((rc = evs_read_stream(s, name, q, EVS_FORWARD, 0, &r))) {
                problem(p, "read %s from %llu: %s", name, (unsigned long long)q, evs_errname(rc));
                break;
            }
            for (;;) {
                rc = evs_reader_next(r, &ev);
                if (rc == EVS_ELOST && repaired) {
                    uint64_t a, z;
                    evs_reader_lost(r, &a, &z);
                    if (a != q) problem(p, "%s: lost run from %llu, wanted %llu", name, (unsigned long long)a,
                                        (unsigned long long)q);
                    for (; q <= z; q++)
                        if (!t->lost[gpos_of(k, q)])
                            problem(p, "%s: undamaged position %llu reported lost", name, (unsigned long long)q);
                    continue;
                }
                if (rc != EVS_OK) break;
                uint64_t gq = gpos_of(k, q);
                if (!event_is(ev, gq))
                    problem(p, "%s position %llu: not the appended event", name, (unsigned long long)q);
                else if (t->lost[gq])
                    problem(p, "%s: damaged event %llu was returned", name, (unsigned long long)gq);
                q++;
            }
            evs_reader_close(r);
            if (rc == EVS_DONE) break;
            uint64_t gq = gpos_of(k, q);
            if (repaired || !t->lost[gq] || rc != EVS_ECORRUPT)
                problem(p, "%s at %llu: %s (%s)", name, (unsigned long long)q, evs_errname(rc), evs_errmsg());
            q++;
        }
        if (q != s_count[k] + 1 && !(t->drop_index && repaired))
            problem(p, "%s: read ended at %llu, version %llu", name, (unsigned long long)(q - 1),
                    (unsigned long long)s_count[k]);
    }
}

typedef struct listing {
    const trial *t;
    problems *p;
    uint64_t n, next;
    unsigned char *named;  /* [g] named by some run (an interrupted repair and the one that finishes it) */
} listing;

/* Repair's callback: exactly the damaged events, in order, named as appended. */
static int on_lost(void *arg, const evs_lost_event *ev) {
    listing *l = arg;
    const trial *t = l->t;
    uint64_t g = ev->global_position;
    while (l->next <= total && !t->lost[l->next]) l->next++;
    if (g != l->next) problem(l->p, "repair named global position %llu, the next damaged one is %llu",
                              (unsigned long long)g, (unsigned long long)l->next);
    l->next = g + 1;
    l->n++;
    if (g < 1 || g > total || !t->lost[g]) return 0;
    l->named[g] = 1;
    if (t->drop_index) {
        if (ev->known) problem(l->p, "repair without an index claims to know event %llu", (unsigned long long)g);
        return 0;
    }
    char name[16];
    evs_uuid id;
    stream_name(g_stream[g], name, sizeof name);
    make_id(g, &id);
    if (!ev->known || strcmp(ev->stream, name) || ev->stream_position != g_spos[g] || memcmp(&ev->event_id, &id, 16))
        problem(l->p, "repair named event %llu as %s@%llu (known %d), appended as %s@%llu", (unsigned long long)g,
                ev->stream, (unsigned long long)ev->stream_position, ev->known, name,
                (unsigned long long)g_spos[g]);
    if (!names_hit(t, ev->where)) problem(l->p, "repair's damage \"%s\" names no damaged record", ev->where);
    return 0;
}

/*
 * One repair run.  named: the events named by an earlier, interrupted run
 * (NULL: none); every damaged event must be named by this run or that one.
 */
static void run_repair(const char *dir, const trial *t, unsigned flags, const evs_io *io, problems *p,
                       unsigned char *named, int *rc_out) {
    unsigned char *own = named ? named : calloc(total + 2, 1);
    listing l = {t, p, 0, 1, own};
    evs_repair_report rep;
    evs_store *s = store_new(io);
    int rc = evs_store_repair(s, dir, flags, on_lost, &l, &rep);
    evs_store_close(s);
    *rc_out = rc;
    uint64_t all = 0;
    for (uint64_t g = 1; g <= total; g++) all += own[g];
    if (!named) free(own);
    if (rc || io) return;
    if (all != t->nlost)
        problem(p, "repair%s named %llu events, %llu were damaged", flags ? " --dry-run" : "",
                (unsigned long long)all, (unsigned long long)t->nlost);
    if (rep.head != total)
        problem(p, "repair%s: head %llu, wanted %llu", flags ? " --dry-run" : "", (unsigned long long)rep.head,
                (unsigned long long)total);
}

static void run_trial(const char *dir, trial *t, tally *ty) {
    int before = tu_failures;
    problems p = {0};
    ty->trials++;
    const base *b = t->b;
    t->nlost = 0;
    for (uint64_t g = 1; g <= total; g++) t->nlost += t->lost[g];
    t->first_hit = SIZE_MAX;
    for (size_t i = 0; i < b->nframes && t->first_hit == SIZE_MAX; i++)
        if (t->hit[i]) t->first_hit = i;
    if (t->drop_index) {
        char ix[4096];
        snprintf(ix, sizeof ix, "%.4000s/index", dir);
        tu_rmrf(ix);
    }
    int valid_after = 0; /* an undamaged record after the first damaged one: the log's own evidence */
    for (size_t i = t->first_hit == SIZE_MAX ? b->nframes : t->first_hit; i < b->nframes; i++) valid_after |= !t->hit[i];
    snapshot before_open;
    snap_take(dir, &before_open);

    /* 1. open */
    evs_store *s = store_new(NULL);
    int rc = evs_store_open(s, dir, 0);
    if (rc != EVS_OK) {
        ty->refused++;
        if (rc != EVS_ECORRUPT || !names_hit(t, evs_errmsg()))
            problem(&p, "open: %s (\"%s\"), wanted ECORRUPT naming a damaged record", evs_errname(rc), evs_errmsg());
        if (!snap_same(dir, &before_open)) problem(&p, "the refused open changed the log");
    } else if (t->drop_index && t->nlost && !valid_after) {
        /* no floor and no later record: the log cannot tell this from a torn write */
        ty->opened++;
        CHECK_INT(evs_head(s), b->frames[t->first_hit].gpos - 1);
        evs_store_close(s);
        snap_free(&before_open);
        goto done;
    } else {
        ty->opened++;
        if (t->nlost && t->drop_index)
            problem(&p, "open without an index did not find damage followed by valid records");
        if (evs_head(s) != total)
            problem(&p, "open succeeded with head %llu; %llu events were acknowledged", (unsigned long long)evs_head(s),
                    (unsigned long long)total);
        check_reads(s, t, 0, &p, ty);
        evs_check_report cr;
        rc = evs_store_check(s, &cr);
        if (t->nlost && rc != EVS_ECORRUPT)
            problem(&p, "check: %s, wanted ECORRUPT", evs_errname(rc));
        if (!t->nlost && rc != EVS_OK) problem(&p, "check of an undamaged store: %s", cr.first_error);
    }
    evs_store_close(s);
    snap_free(&before_open);
    if (!t->nlost) goto done;

    /* 2. dry run */
    snapshot before_dry;
    snap_take(dir, &before_dry);
    run_repair(dir, t, EVS_REPAIR_DRY_RUN, NULL, &p, NULL, &rc);
    if (rc) problem(&p, "repair --dry-run: %s (%s)", evs_errname(rc), evs_errmsg());
    if (!snap_same(dir, &before_dry)) problem(&p, "repair --dry-run changed the log");
    snap_free(&before_dry);

    /* 3. repair, interrupted first in some trials */
    unsigned char *named = calloc(total + 2, 1);
    if (t->interrupt) {
        evs_fault *f;
        evs__fault_create(&f);
        evs__fault_fail(f, EVS_FOP_PWRITE, 1 + (uint64_t)t->interrupt % 3, 1, EIO);
        run_repair(dir, t, 0, evs__fault_io(f), &p, named, &rc);
        evs__fault_destroy(f);
        if (rc != EVS_OK) {
            ty->interrupted++;
            s = store_new(NULL);
            rc = evs_store_open(s, dir, 0);
            if (rc != EVS_ECORRUPT || !strstr(evs_errmsg(), "repair"))
                problem(&p, "open after an interrupted repair: %s (\"%s\"), wanted ECORRUPT asking for a repair",
                        evs_errname(rc), evs_errmsg());
            evs_store_close(s);
        }
    }
    run_repair(dir, t, 0, NULL, &p, named, &rc);
    free(named);
    if (rc) problem(&p, "repair: %s (%s)", evs_errname(rc), evs_errmsg());
    ty->lost += t->nlost;

    /* 4. the repaired store */
    s = store_new(NULL);
    rc = evs_store_open(s, dir, 0);
    if (rc) {
        problem(&p, "open after repair: %s (%s)", evs_errname(rc), evs_errmsg());
    } else {
        if (evs_head(s) != total) problem(&p, "head after repair %llu, wanted %llu", (unsigned long long)evs_head(s),
                                          (unsigned long long)total);
        check_reads(s, t, 1, &p, ty);
        evs_check_report cr;
        if ((rc = evs_store_check(s, &cr)))
            problem(&p, "check after repair: %s", cr.first_error);
        else if (cr.lost_events != t->nlost)
            problem(&p, "check counts %llu lost events, %llu were removed", (unsigned long long)cr.lost_events,
                    (unsigned long long)t->nlost);
        /* positions continue above the lost ones */
        int k = g_stream[b->frames[t->first_hit].gpos];
        char name[16];
        stream_name(k, name, sizeof name);
        evs_event_in e = tu_event("After", "{\"after\":true}");
        evs_append_result res;
        rc = evs_append(s, name, EVS_EXPECT_ANY, &e, 1, &res, NULL);
        if (rc) problem(&p, "append after repair: %s", evs_errname(rc));
        if (res.first_global_position != total + 1)
            problem(&p, "append after repair took global position %llu, wanted %llu",
                    (unsigned long long)res.first_global_position, (unsigned long long)(total + 1));
        if (!t->drop_index && res.first_stream_position != s_count[k] + 1)
            problem(&p, "append to %s after repair took stream position %llu, wanted %llu", name,
                    (unsigned long long)res.first_stream_position, (unsigned long long)(s_count[k] + 1));
    }
    evs_store_close(s);
done:
    if (p.count) fprintf(stderr, "%s trial %d (%s): %d problem(s), first: %s\n", b->label, ty->trials, t->what,
                         p.count, p.first);
    CHECK_INT(p.count, 0);
    if (tu_failures != before) ty->failed++;
}

/* ------------------------------------------------------------ damage */

static void prepare(const base *b, const char *dir, trial *t) {
    tu_rmrf(dir);
    copy_tree(b->dir, dir);
    memset(t, 0, sizeof *t);
    t->b = b;
    t->hit = calloc(b->nframes, 1);
    t->lost = calloc(total + 2, 1);
}

static void trial_free(trial *t) {
    free(t->hit);
    free(t->lost);
}

/* Which frames the bytes now in dir changed (header, payload or padding). */
static void mark_hits(const char *dir, trial *t) {
    const base *b = t->b;
    for (uint32_t no = 1; no <= b->nsegs; no++) {
        size_t len;
        uint8_t *now = read_file(path_of(dir, no), &len);
        for (size_t i = 0; i < b->nframes; i++) {
            const frame *f = &b->frames[i];
            if (f->seg != no) continue;
            int changed = !now || (size_t)f->off + f->size > len ||
                          memcmp(now + f->off, b->seg[no] + f->off, f->size) != 0;
            if (!changed) continue;
            t->hit[i] = 1;
            for (uint32_t j = 0; j < f->count; j++) t->lost[f->gpos + j] = 1;
        }
        free(now);
    }
}

static void flip(const char *dir, trial *t, size_t fi, uint64_t *rs) {
    const frame *f = &t->b->frames[fi];
    uint64_t off = f->off + rnd(rs) % f->size;
    uint8_t v = (uint8_t)(t->b->seg[f->seg][off] ^ (uint8_t)(1 + rnd(rs) % 255));
    seg_write(dir, f->seg, off, &v, 1);
    snprintf(t->what, sizeof t->what, "flip byte %llu of segment %u (record %zu of %zu at offset %u)",
             (unsigned long long)off, f->seg, fi + 1, t->b->nframes, f->off);
}

/* Zero from inside record fi over up to `span` bytes, crossing into the next segment when it reaches the end. */
static void zero_from(const char *dir, trial *t, size_t fi, uint64_t span, uint64_t *rs) {
    const base *b = t->b;
    const frame *f = &b->frames[fi];
    static const uint8_t zeros[SEGSZ];
    uint64_t off = f->off + rnd(rs) % f->size, left = span;
    uint32_t no = f->seg;
    snprintf(t->what, sizeof t->what, "zero %llu bytes from segment %u offset %llu (record %zu of %zu)",
             (unsigned long long)span, no, (unsigned long long)off, fi + 1, b->nframes);
    while (left && no <= b->nsegs) {
        uint64_t end = b->seg_len[no];
        uint64_t k = end - off < left ? end - off : left;
        seg_write(dir, no, off, zeros, (size_t)k);
        left -= k;
        no++;
        off = SEG_HDR;
    }
}

static void truncate_last(const char *dir, trial *t, uint64_t *rs) {
    const base *b = t->b;
    const frame *lf = &b->frames[b->nframes - 1];
    uint64_t end = (uint64_t)lf->off + lf->size;
    uint64_t len = SEG_HDR + rnd(rs) % (end - SEG_HDR);
    if (truncate(path_of(dir, lf->seg), (off_t)len) != 0) exit(2);
    snprintf(t->what, sizeof t->what, "truncate segment %u to %llu bytes", lf->seg, (unsigned long long)len);
}

/* ------------------------------------------------------------------ build */

/* The appends, in order: the same for both bases.  n events for stream k. */
static unsigned plan(unsigned i, int *k) {
    *k = (int)(i % NSTREAMS);
    return 1 + (i * 7) % 4;
}

static void build(const char *dir, int crash) {
    evs_store *s;
    if (evs_store_create(&s) || evs_store_set_segment_size(s, SEGSZ) ||
        evs_store_set_index_map_size(s, 64u << 20) || evs_store_open(s, dir, EVS_OPEN_CREATE)) {
        fprintf(stderr, "cannot create %s: %s\n", dir, evs_errmsg());
        exit(2);
    }
    static char data[4][512];
    uint64_t n_done = 0;
    uint64_t count[NSTREAMS] = {0};
    for (unsigned i = 0; n_done < TARGET_EVENTS; i++) {
        int k;
        unsigned n = plan(i, &k);
        if (n_done + n > TARGET_EVENTS) n = (unsigned)(TARGET_EVENTS - n_done);
        evs_event_in ev[4];
        evs_uuid ids[4];
        for (unsigned j = 0; j < n; j++) {
            uint64_t g = n_done + 1 + j;
            size_t dl = make_data(g, k, data[j], sizeof data[j]);
            make_id(g, &ids[j]);
            ev[j] = tu_event(g % 2 ? "CxA1" : "CxB2", data[j]);
            ev[j].data_len = dl;
            ev[j].event_id = &ids[j];
        }
        char name[16];
        stream_name(k, name, sizeof name);
        evs_append_result r;
        int rc = evs_append(s, name, (int64_t)count[k], ev, n, &r, NULL);
        if (rc || r.first_global_position != n_done + 1) {
            fprintf(stderr, "build: append %u: %s: %s\n", i, evs_errname(rc), evs_errmsg());
            exit(2);
        }
        count[k] += n;
        n_done += n;
    }
    if (crash) raise(SIGKILL); /* every append acknowledged; nothing closed */
    evs_store_close(s);
}

/* The content every base holds, computed as build() appends it. */
static void plan_content(void) {
    g_stream = calloc(TARGET_EVENTS + 8, sizeof *g_stream);
    g_spos = calloc(TARGET_EVENTS + 8, sizeof *g_spos);
    for (unsigned i = 0; total < TARGET_EVENTS; i++) {
        int k;
        unsigned n = plan(i, &k);
        if (total + n > TARGET_EVENTS) n = (unsigned)(TARGET_EVENTS - total);
        for (unsigned j = 0; j < n; j++) {
            uint64_t g = total + 1 + j;
            g_stream[g] = k;
            g_spos[g] = ++s_count[k];
        }
        total += n;
    }
}

static void make_base(base *b, const char *root, const char *label, int crash) {
    b->label = label;
    snprintf(b->dir, sizeof b->dir, "%s/%s", root, label);
    if (crash) {
        pid_t pid = fork();
        if (pid == 0) {
            build(b->dir, 1);
            _exit(3);
        }
        int st;
        waitpid(pid, &st, 0);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
            fprintf(stderr, "the crashed base's writer was not killed\n");
            exit(2);
        }
    } else {
        build(b->dir, 0);
    }
    parse_log(b);
}

/* ------------------------------------------------------------------ main */

int main(void) {
    const char *e = getenv("EVS_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
    e = getenv("EVS_CORRUPTION_TRIALS");
    int per = e ? atoi(e) : 12;
    if (per < 1) per = 1;
    e = getenv("EVS_CORRUPTION_STRIDE");
    size_t stride = e ? (size_t)atoi(e) : getenv("EVS_SANITIZED") ? 7 : 1;
    if (stride < 1) stride = 1;
    tu_verbose = getenv("EVS_VERBOSE") != NULL;
    printf("crash_corruption: stride %zu, %d random trials per kind, seed %llu (EVS_SEED repeats a run)\n", stride,
           per, (unsigned long long)seed);
    char *root = tu_tempdir("corruption");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/trial", root);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    plan_content();
    base bases[2];
    memset(bases, 0, sizeof bases);
    make_base(&bases[0], root, "clean-close", 0);
    make_base(&bases[1], root, "after-kill9", 1);
    for (int i = 0; i < 2; i++)
        printf("base %s: %llu events in %zu records over %u segments\n", bases[i].label, (unsigned long long)total,
               bases[i].nframes, bases[i].nsegs);
    CHECK(bases[0].nsegs >= 4);

    uint64_t rs = seed ? seed : 1;
    enum { K_FLIP, K_ZERO, K_TRUNC, K_NOINDEX, K_INTERRUPT, NKINDS };
    const char *kinds[NKINDS] = {"byte flip", "zeroed range", "truncated", "index removed", "repair interrupted"};
    tally ty[2][NKINDS];
    memset(ty, 0, sizeof ty);
    for (int bi = 0; bi < 2; bi++) {
        base *b = &bases[bi];
        trial t;
        /* the undamaged copy opens, reads back and checks */
        prepare(b, dir, &t);
        snprintf(t.what, sizeof t.what, "undamaged copy");
        run_trial(dir, &t, &ty[bi][K_FLIP]);
        trial_free(&t);
        /* every record, the last included: a flipped byte, and a zeroed range starting inside it */
        for (size_t fi = 0; fi < b->nframes; fi++) {
            if (fi % stride && fi != b->nframes - 1) continue;
            prepare(b, dir, &t);
            flip(dir, &t, fi, &rs);
            mark_hits(dir, &t);
            run_trial(dir, &t, &ty[bi][K_FLIP]);
            trial_free(&t);
            prepare(b, dir, &t);
            uint64_t span = 1 + rnd(&rs) % (rnd(&rs) % 4 == 0 ? 3 * SEGSZ / 2 : 2048);
            zero_from(dir, &t, fi, span, &rs);
            mark_hits(dir, &t);
            run_trial(dir, &t, &ty[bi][K_ZERO]);
            trial_free(&t);
        }
        for (int i = 0; i < per; i++) {
            prepare(b, dir, &t);
            truncate_last(dir, &t, &rs);
            mark_hits(dir, &t);
            run_trial(dir, &t, &ty[bi][K_TRUNC]);
            trial_free(&t);
            /* index removed: damage in any record but the last (which nothing then protects) */
            prepare(b, dir, &t);
            size_t fi = (size_t)(rnd(&rs) % (b->nframes - 1));
            if (i % 2) flip(dir, &t, fi, &rs);
            else zero_from(dir, &t, fi, 1 + rnd(&rs) % 4096, &rs);
            mark_hits(dir, &t);
            t.drop_index = 1;
            run_trial(dir, &t, &ty[bi][K_NOINDEX]);
            trial_free(&t);
            /* a repair that fails part-way, then runs again */
            prepare(b, dir, &t);
            fi = (size_t)(rnd(&rs) % b->nframes);
            zero_from(dir, &t, fi, 1 + rnd(&rs) % 4096, &rs);
            mark_hits(dir, &t);
            t.interrupt = 1 + i;
            run_trial(dir, &t, &ty[bi][K_INTERRUPT]);
            trial_free(&t);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int trials = 0, failed = 0;
    for (int bi = 0; bi < 2; bi++)
        for (int k = 0; k < NKINDS; k++) {
            tally *x = &ty[bi][k];
            printf("  %-12s %-20s %4d trials, %3d failed; refused at open %d, opened %d, repairs interrupted %d, "
                   "events removed and named %llu, corrupt reads refused %llu\n",
                   bases[bi].label, kinds[k], x->trials, x->failed, x->refused, x->opened, x->interrupted,
                   (unsigned long long)x->lost, (unsigned long long)x->corrupt_reads);
            trials += x->trials;
            failed += x->failed;
        }
    printf("crash_corruption: %d trials in %.1fs\n", trials,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    printf("trials: %d passed, %d failed\n", trials - failed, failed);
    for (int bi = 0; bi < 2; bi++) {
        for (uint32_t s = 1; s <= bases[bi].nsegs; s++) free(bases[bi].seg[s]);
        free(bases[bi].seg);
        free(bases[bi].seg_len);
        free(bases[bi].frames);
    }
    free(g_stream);
    free(g_spos);
    tu_rmrf(root);
    free(root);
    return TEST_REPORT();
}

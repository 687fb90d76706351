/*
 * fuzz_log.c — fuzz target for everything that reads a store's log from
 * disk: segment headers and the frame reader (src/log/log.c), recovery at
 * open, the index rebuilt from records (the record decoder fed raw segment
 * bytes), reads, evs_store_check and evs_store_repair (src/store/repair.c).
 * Only the public API is called; the input becomes files.
 *
 * The first byte chooses how:
 *   bit 0 clear — a log built from the input alone, no index (so open
 *     rebuilds it from the log).  Segment headers are well formed unless the
 *     input asks otherwise; then come frames, each
 *       ctl (1) | count (1) | length (2, LE) | payload
 *     with the frame header made by the harness and its checksum computed
 *     with the segment's salt, unless ctl says: 0x01 leave the checksum
 *     wrong, 0x02 LOST flag, 0x04 a position one too far, 0x08 start the
 *     next segment first, 0x10 garbage padding, 0x20 synced_to past the
 *     frame itself, 0x40 the bytes are copied raw (no header made).
 *     Byte 0 bit 1: the first segment's header is the next 64 input bytes
 *     (bit 2: with its checksum fixed); bit 3: segment files end where
 *     their data ends instead of at the segment size.
 *   bit 0 set — a real store made once per run (8 appends, 14 events over
 *     two segments; bit 1 chooses the copy that was closed cleanly or the
 *     one whose writer died right after its last acknowledged append), then
 *     edited by the rest of the input, op after op:
 *       0 patch bytes, 1 zero a range, 2 cut a segment file short,
 *       3 append a frame after the log's end (checksummed, ctl as above),
 *       4 remove the index, 5 flip bits of one byte.
 *
 * Invariants, on every input:
 *   - a failed open, check or repair returns a status with a message, and a
 *     failed open changes no byte of the log;
 *   - a read-only open changes no byte of the log, whatever it finds;
 *   - an event is never served with other bytes than were acknowledged:
 *     every event read at a position the base store acknowledged is that
 *     event exactly, or the read fails (EVS_ECORRUPT, EVS_ELOST);
 *   - with the index in place (the floor): open fails, or no acknowledged
 *     event is missing (the head is not below the base's) — loss is never
 *     silent; and after a repair every acknowledged event reads back
 *     exactly or is reported lost (EVS_ELOST) and was named by the repair;
 *   - after an open that rebuilt the index from the log, check passes and
 *     every position up to the head reads as an event or a lost range;
 *   - check reports damage whenever a read met some;
 *   - a dry-run repair changes no byte of the log; a repair that succeeds
 *     leaves a store that opens, checks clean, keeps the head it reported,
 *     and takes appends at the next position; positions are never reused:
 *     with the floor, the next append lands above the base's head.
 */
#define FUZZ_NAME "fuzz_log"
#include "fuzz_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/core.h"
#include "log/record.h"

#define SEGSZ (64u * 1024)
#define MAPSZ (1u << 20)
#define MAX_SEGS 4
#define NACK 14

/* FUZZ_VERBOSE=1 in the environment: say what each step did (replaying one input). */
static int verbose = -1;

/* ------------------------------------------------------------ files */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rmrf(const char *dir) { nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static void write_file(const char *path, const void *p, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    FUZZ_ASSERT(fd >= 0, "create %s", path);
    FUZZ_ASSERT(n == 0 || write(fd, p, n) == (ssize_t)n, "write %s", path);
    close(fd);
}

static uint8_t *read_file(const char *path, size_t *n) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return NULL;
    struct stat st;
    fstat(fd, &st);
    uint8_t *p = malloc((size_t)st.st_size + 1);
    ssize_t r = read(fd, p, (size_t)st.st_size);
    close(fd);
    FUZZ_ASSERT(r == st.st_size, "read %s", path);
    *n = (size_t)st.st_size;
    return p;
}

static void copy_tree(const char *from, const char *to) {
    mkdir(to, 0755);
    DIR *d = opendir(from);
    FUZZ_ASSERT(d, "open %s", from);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char a[1024], b[1024];
        snprintf(a, sizeof a, "%s/%s", from, de->d_name);
        snprintf(b, sizeof b, "%s/%s", to, de->d_name);
        struct stat st;
        stat(a, &st);
        if (S_ISDIR(st.st_mode)) {
            copy_tree(a, b);
        } else if (strcmp(de->d_name, "LOCK") != 0) {
            size_t n;
            uint8_t *p = read_file(a, &n);
            FUZZ_ASSERT(p, "read %s", a);
            write_file(b, p, n);
            free(p);
        }
    }
    closedir(d);
}

static char *seg_path(const char *dir, unsigned no) {
    static char p[1024];
    snprintf(p, sizeof p, "%s/log/%08u.seg", dir, no);
    return p;
}

/* Every segment's bytes, to prove a call changed none. */
typedef struct snap {
    uint8_t *p[MAX_SEGS + 2];
    size_t n[MAX_SEGS + 2];
    int have[MAX_SEGS + 2];
} snap;

static void snap_take(const char *dir, snap *s) {
    for (unsigned i = 0; i < MAX_SEGS + 2; i++) {
        s->p[i] = read_file(seg_path(dir, i + 1), &s->n[i]);
        s->have[i] = s->p[i] != NULL;
    }
}

static void snap_same(const char *dir, const snap *s, const char *what) {
    for (unsigned i = 0; i < MAX_SEGS + 2; i++) {
        size_t n = 0;
        uint8_t *p = read_file(seg_path(dir, i + 1), &n);
        FUZZ_ASSERT((p != NULL) == s->have[i], "%s: segment %u %s", what, i + 1, p ? "appeared" : "disappeared");
        if (p) FUZZ_ASSERT(n == s->n[i] && memcmp(p, s->p[i], n) == 0, "%s changed segment %u", what, i + 1);
        free(p);
    }
}

static void snap_free(snap *s) {
    for (unsigned i = 0; i < MAX_SEGS + 2; i++) free(s->p[i]);
}

/* ------------------------------------------------------------ frames */

static uint32_t frame_crc(const uint8_t salt[8], const uint8_t *f, uint32_t len) {
    uint32_t c = evs__crc32c(0, salt, 8);
    c = evs__crc32c(c, f, 4);
    c = evs__crc32c(c, f + 8, 24);
    return evs__crc32c(c, f + 32, len);
}

static void seg_header(uint8_t *h, unsigned no, uint64_t first_gpos) {
    memset(h, 0, 64);
    memcpy(h, "EVSLOG01", 8);
    evs__put32(h + 8, 1);
    evs__put32(h + 12, 64);
    evs__put64(h + 16, no);
    evs__put64(h + 24, 0x5A17000000000000ull + no);
    evs__put64(h + 32, first_gpos);
    evs__put64(h + 40, SEGSZ);
    evs__put32(h + 60, evs__crc32c(0, h, 60));
}

/*
 * The writer never stores an event id twice, nor a stream position twice
 * (the index keys on both); a log that does holds conflicting identities,
 * which no check inside one record can see.  The library does not defend
 * against that (docs/testing.md), so the harness keeps generated records
 * to unique identities: a record that the index would take gets fresh
 * event ids and its stream's next positions, a LOST frame's entries the
 * next positions of theirs.  Everything else stays as the input says.
 */
typedef struct stream_next {
    char name[256];
    size_t len;
    uint64_t next;
} stream_next;
static stream_next streams[64];
static size_t nstreams;
static uint64_t id_serial;

static uint64_t *next_of(const char *name, size_t len) {
    for (size_t i = 0; i < nstreams; i++)
        if (streams[i].len == len && memcmp(streams[i].name, name, len) == 0) return &streams[i].next;
    if (nstreams == sizeof streams / sizeof streams[0]) return NULL;
    stream_next *e = &streams[nstreams++];
    memcpy(e->name, name, len);
    e->len = len;
    e->next = 1;
    return &e->next;
}

static void unique_identities(uint8_t *p, uint32_t len, uint32_t count, int lost) {
    char why[128];
    if (lost) {
        if (evs__lost_valid(p, len, count, why, sizeof why)) return;
        evs_lost_iter it = {0, 0};
        evs_lost_stream e;
        size_t at = EVS_LOST_HEADER;
        while (evs__lost_next(p, len, &it, &e, NULL) == EVS_OK) {
            uint64_t *nx = next_of(e.stream, e.stream_len);
            if (nx) {
                evs__put64(p + at, *nx);
                *nx += e.count;
            }
            at = it.off;
        }
        return;
    }
    if (evs__record_valid(p, len, count, why, sizeof why)) return;
    uint64_t *nx = next_of((const char *)p + 18, evs__get16(p + 16));
    if (!nx) return;
    evs__put64(p, *nx);
    *nx += count;
    size_t off = evs__record_first_event(p, len);
    for (uint32_t i = 0; i < count; i++) {
        evs_event ev;
        size_t next = evs__record_decode(p, len, off, 1, i, &ev);
        uint8_t *id = p + off + 16;
        memset(id, 0, 16);
        id[0] = 0xEE;
        evs__put64(id + 8, ++id_serial);
        off = next;
    }
}

typedef struct cursor {
    const uint8_t *p;
    size_t n, at;
} cursor;

static unsigned take8(cursor *c) { return c->at < c->n ? c->p[c->at++] : 0; }
static unsigned take16(cursor *c) { return take8(c) | take8(c) << 8; }

/*
 * One frame at seg[off] described by the input (ctl, count, length,
 * payload).  Returns its size, 0 when it does not fit (nothing written).
 */
static size_t put_frame(cursor *c, uint8_t *seg, size_t off, size_t lim, uint64_t *gpos, unsigned segno) {
    unsigned ctl = take8(c), count = take8(c), len = take16(c);
    if (len > c->n - c->at) len = (unsigned)(c->n - c->at);
    if (ctl & 0x40) { /* raw bytes */
        if (off + len > lim) len = (unsigned)(lim - off);
        memcpy(seg + off, c->p + c->at, len);
        c->at += len;
        return (len + 7) & ~7u;
    }
    size_t size = 32 + (((size_t)len + 7) & ~(size_t)7);
    if (off + size > lim || len == 0) {
        c->at += len;
        return 0;
    }
    uint8_t *f = seg + off;
    memset(f, 0, size);
    evs__put32(f, len);
    evs__put64(f + 8, *gpos + ((ctl & 0x04) ? 1 : 0));
    evs__put32(f + 16, count);
    evs__put32(f + 20, (ctl & 0x02) ? 1 : 0);
    evs__put64(f + 24, ((uint64_t)segno << 32) | (uint32_t)(off + ((ctl & 0x20) ? 8 : 0)));
    memcpy(f + 32, c->p + c->at, len);
    c->at += len;
    unique_identities(f + 32, len, count, ctl & 0x02);
    if ((ctl & 0x10) && size > 32 + len) f[size - 1] = 0xA5;
    uint32_t crc = frame_crc(seg + 24, f, len);
    evs__put32(f + 4, (ctl & 0x01) ? crc ^ 0x10000 : crc);
    *gpos += count;
    return size;
}

/* Mode A: a log from the input alone. */
static void build_log(const char *dir, cursor *c, unsigned mode) {
    char p[1024];
    snprintf(p, sizeof p, "%s/log", dir);
    mkdir(dir, 0755);
    mkdir(p, 0755);
    static uint8_t seg[MAX_SEGS][SEGSZ];
    size_t end[MAX_SEGS] = {0};
    unsigned nseg = 1;
    memset(seg, 0, sizeof seg);
    seg_header(seg[0], 1, 1);
    if (mode & 0x02) {
        for (unsigned i = 0; i < 64; i++) seg[0][i] = (uint8_t)take8(c);
        /* A segment size up to 2 GiB is legal, and open extends a short file to
           it: that costs memory on /dev/shm and time, not coverage. */
        if (evs__get64(seg[0] + 40) > (1u << 20)) evs__put64(seg[0] + 40, evs__get64(seg[0] + 40) % (1u << 20));
        if (mode & 0x04) evs__put32(seg[0] + 60, evs__crc32c(0, seg[0], 60));
    }
    end[0] = 64;
    uint64_t gpos = 1;
    while (c->at < c->n) {
        if ((c->p[c->at] & 0x08) && nseg < MAX_SEGS) {
            seg_header(seg[nseg], nseg + 1, gpos);
            end[nseg++] = 64;
        }
        size_t k = put_frame(c, seg[nseg - 1], end[nseg - 1], SEGSZ, &gpos, nseg);
        end[nseg - 1] += k;
        if (!k && nseg == MAX_SEGS) break;
    }
    for (unsigned i = 0; i < nseg; i++)
        write_file(seg_path(dir, i + 1), seg[i], (mode & 0x08) ? (end[i] > 64 ? end[i] : 64) : SEGSZ);
}

/* ------------------------------------------------------------ the base store */

typedef struct ack {
    uint64_t g, spos;
    const char *stream;
    evs_uuid id;
    char data[16 * 1024 + 64];
    size_t dlen;
} ack;

static ack acks[NACK];
static char base_clean[600], base_killed[600], run_dir[600];
/* where each base's data ends, per segment, and how many segments it has */
static size_t base_end[2][MAX_SEGS];
static unsigned base_nseg[2];

static evs_store *store_new(void) {
    evs_store *s = NULL;
    FUZZ_ASSERT(evs_store_create(&s) == EVS_OK, "create");
    FUZZ_ASSERT(evs_store_set_segment_size(s, SEGSZ) == EVS_OK && evs_store_set_index_map_size(s, MAPSZ) == EVS_OK,
                "settings: %s", evs_errmsg());
    return s;
}

static void fill_base(const char *dir) {
    static const struct {
        const char *stream;
        int n;
        size_t pad;
    } plan[] = {{"order-1", 1, 10}, {"order-1", 3, 300}, {"cart-7", 2, 15000}, {"order-2", 1, 0},
                {"cart-7", 2, 16000}, {"order-1", 1, 5}, {"user-x", 3, 2000}, {"order-2", 1, 12000}};
    evs_store *s = store_new();
    FUZZ_ASSERT(evs_store_open(s, dir, EVS_OPEN_CREATE) == EVS_OK, "open base: %s", evs_errmsg());
    size_t k = 0;
    uint64_t sv[4] = {0};
    const char *names[4] = {"order-1", "cart-7", "order-2", "user-x"};
    for (size_t a = 0; a < sizeof plan / sizeof plan[0]; a++) {
        evs_event_in in[3];
        memset(in, 0, sizeof in);
        int si = 0;
        while (strcmp(names[si], plan[a].stream)) si++;
        for (int i = 0; i < plan[a].n; i++) {
            ack *e = &acks[k + (size_t)i];
            e->g = k + (size_t)i + 1;
            e->stream = plan[a].stream;
            e->spos = ++sv[si];
            memset(&e->id, 0, sizeof e->id);
            e->id.b[0] = 0x01;
            e->id.b[6] = 0x70;
            e->id.b[8] = 0x80;
            e->id.b[15] = (uint8_t)e->g;
            int m = snprintf(e->data, sizeof e->data, "{\"g\":%llu,\"pad\":\"", (unsigned long long)e->g);
            memset(e->data + m, 'a' + (int)(e->g % 26), plan[a].pad);
            memcpy(e->data + (size_t)m + plan[a].pad, "\"}", 3);
            e->dlen = (size_t)m + plan[a].pad + 2;
            in[i].event_type = e->g % 2 ? "Odd" : "Even";
            in[i].data = e->data;
            in[i].data_len = e->dlen;
            in[i].event_id = &e->id;
        }
        evs_append_result res;
        FUZZ_ASSERT(evs_append(s, plan[a].stream, EVS_EXPECT_ANY, in, (size_t)plan[a].n, &res, NULL) == EVS_OK,
                    "base append: %s", evs_errmsg());
        FUZZ_ASSERT(res.first_global_position == k + 1, "base positions");
        k += (size_t)plan[a].n;
    }
    FUZZ_ASSERT(k == NACK, "base holds %zu events", k);
    if (strcmp(dir, base_killed) == 0) _exit(0); /* acknowledged (synced), never closed */
    FUZZ_ASSERT(evs_store_close(s) == EVS_OK, "close base: %s", evs_errmsg());
}

/* Where each segment's frames end, walking the headers (docs/format.md). */
static void base_layout(const char *dir, int which) {
    for (unsigned no = 1; no <= MAX_SEGS; no++) {
        size_t n;
        uint8_t *p = read_file(seg_path(dir, no), &n);
        if (!p) break;
        size_t off = 64;
        while (off + 32 <= n && evs__get32(p + off)) off += 32 + ((evs__get32(p + off) + 7u) & ~7u);
        base_end[which][no - 1] = off;
        base_nseg[which] = no;
        free(p);
    }
    FUZZ_ASSERT(base_nseg[which] >= 2, "the base store should span two segments");
}

static void make_bases(void) {
    snprintf(base_clean, sizeof base_clean, "%s/base-clean", fuzz_dir());
    snprintf(base_killed, sizeof base_killed, "%s/base-killed", fuzz_dir());
    snprintf(run_dir, sizeof run_dir, "%s/run", fuzz_dir());
    fill_base(base_clean);
    pid_t pid = fork();
    FUZZ_ASSERT(pid >= 0, "fork");
    if (pid == 0) fill_base(base_killed);
    int st;
    waitpid(pid, &st, 0);
    FUZZ_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the writer of the killed base failed");
    base_layout(base_clean, 0);
    base_layout(base_killed, 1);
    if (verbose > 0)
        for (int w = 0; w < 2; w++)
            for (unsigned i = 0; i < base_nseg[w]; i++)
                fprintf(stderr, "fuzz_log: base %d segment %u: data ends at %zu\n", w, i + 1, base_end[w][i]);
}

/* Mode B: a copy of a base store, edited.  Returns 1 when the index is still there. */
static int edit_base(const char *dir, cursor *c, int which) {
    copy_tree(which ? base_killed : base_clean, dir);
    int have_index = 1;
    unsigned nseg = base_nseg[which];
    size_t end = base_end[which][nseg - 1];
    uint64_t gpos = NACK + 1;
    while (c->at < c->n) {
        unsigned op = take8(c) % 6, no = 1 + take8(c) % nseg;
        char *path = seg_path(dir, no);
        if (op == 4) {
            char p[1024];
            snprintf(p, sizeof p, "%s/index", dir);
            rmrf(p);
            have_index = 0;
            continue;
        }
        size_t n;
        uint8_t *seg = read_file(path, &n);
        if (!seg) continue;
        size_t off = op == 3 ? 0 : take16(c) % (n ? n : 1);
        if (verbose > 0) fprintf(stderr, "fuzz_log: edit %u on segment %u at %zu of %zu\n", op, no, off, n);
        if (op == 0) {
            unsigned len = 1 + take8(c) % 32;
            for (unsigned i = 0; i < len && off + i < n; i++) seg[off + i] = (uint8_t)take8(c);
        } else if (op == 1) {
            size_t len = take16(c);
            memset(seg + off, 0, len < n - off ? len : n - off);
        } else if (op == 2) {
            n = off;
        } else if (op == 3) {
            if (no == nseg && n == SEGSZ) {
                size_t k = put_frame(c, seg, end, SEGSZ, &gpos, no);
                end += k;
            }
        } else {
            unsigned x = take8(c);
            seg[off] ^= (uint8_t)(x ? x : 1);
        }
        write_file(path, seg, n);
        free(seg);
    }
    return have_index;
}

/* ------------------------------------------------------------ checks */

typedef struct named {
    uint64_t g[256];
    size_t n;
} named;

static int on_lost(void *arg, const evs_lost_event *ev) {
    named *l = arg;
    if (l->n < 256) l->g[l->n++] = ev->global_position;
    if (ev->known) FUZZ_ASSERT(ev->stream[0] && ev->stream_position >= 1, "repair names a known event badly");
    return 0;
}

static int was_named(const named *l, uint64_t g) {
    for (size_t i = 0; i < l->n; i++)
        if (l->g[i] == g) return 1;
    return 0;
}

static void say(const char *what, int rc) {
    if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "fuzz_log: %s: %s%s%s\n", what, evs_errname(rc), rc ? ": " : "", rc ? evs_errmsg() : "");
}

static void check_msg(int rc, const char *what) {
    const char *m = evs_errmsg();
    FUZZ_ASSERT(m && *m, "%s failed (%s) without a message", what, evs_errname(rc));
}

/* An event read at g is the one acknowledged there, exactly. */
static void same_as_ack(const evs_event *ev, uint64_t g) {
    const ack *a = &acks[g - 1];
    FUZZ_ASSERT(ev->global_position == g && memcmp(&ev->event_id, &a->id, 16) == 0 && ev->data_len == a->dlen &&
                    memcmp(ev->data, a->data, a->dlen) == 0 && ev->stream_len == strlen(a->stream) &&
                    memcmp(ev->stream, a->stream, ev->stream_len) == 0 && ev->stream_position == a->spos,
                "position %llu is served with other bytes than were acknowledged", (unsigned long long)g);
}

/*
 * Read $all forward.  base: positions the base acknowledged (0 in mode A).
 * Returns how many reads failed with ECORRUPT; *lost_ok says whether every
 * ELOST range only covers positions in `named` (when given).
 */
static int read_all(evs_store *s, uint64_t base, const named *nm, int full) {
    evs_reader *r;
    int bad = 0;
    uint64_t head = evs_head(s), expect = 1;
    int rc = evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r);
    FUZZ_ASSERT(rc == EVS_OK, "read_all: %s", evs_errmsg());
    for (int guard = 0; guard < 100000; guard++) {
        const evs_event *ev;
        rc = evs_reader_next(r, &ev);
        if (rc == EVS_DONE) break;
        if (rc == EVS_OK) {
            FUZZ_ASSERT(ev->global_position <= head && ev->global_position >= expect, "position %llu after %llu",
                        (unsigned long long)ev->global_position, (unsigned long long)expect);
            FUZZ_ASSERT(!full || ev->global_position == expect, "position %llu skipped to %llu",
                        (unsigned long long)expect, (unsigned long long)ev->global_position);
            if (ev->global_position <= base) same_as_ack(ev, ev->global_position);
            expect = ev->global_position + 1;
        } else if (rc == EVS_ELOST) {
            uint64_t f, l;
            FUZZ_ASSERT(evs_reader_lost(r, &f, &l) == EVS_OK && f >= expect && f <= l && l <= head, "lost range");
            if (nm)
                for (uint64_t g = f; g <= l && g <= base; g++)
                    FUZZ_ASSERT(was_named(nm, g), "position %llu reported lost, never named by the repair",
                                (unsigned long long)g);
            expect = l + 1;
        } else {
            check_msg(rc, "read");
            FUZZ_ASSERT(rc == EVS_ECORRUPT || rc == EVS_EINDEX, "read: %s", evs_errname(rc));
            bad++;
            break; /* a reader stops at damage */
        }
    }
    if (full && !bad) FUZZ_ASSERT(expect == head + 1, "read ended at %llu of %llu", (unsigned long long)expect - 1,
                                  (unsigned long long)head);
    evs_reader_close(r);
    return bad;
}

/* Every acknowledged event, by position: exact, or a read error (never other data). */
static int read_each(evs_store *s, uint64_t base, const named *nm) {
    int bad = 0;
    for (uint64_t g = 1; g <= base && g <= evs_head(s); g++) {
        evs_reader *r;
        FUZZ_ASSERT(evs_read_all(s, g, EVS_FORWARD, NULL, 1, &r) == EVS_OK, "read_all %llu", (unsigned long long)g);
        const evs_event *ev;
        int rc = evs_reader_next(r, &ev);
        if (rc == EVS_OK) {
            same_as_ack(ev, g);
        } else if (rc == EVS_ELOST) {
            if (nm) FUZZ_ASSERT(was_named(nm, g), "position %llu lost, never named", (unsigned long long)g);
        } else {
            check_msg(rc, "read");
            FUZZ_ASSERT(rc == EVS_ECORRUPT || rc == EVS_EINDEX, "read %llu: %s", (unsigned long long)g,
                        evs_errname(rc));
            bad++;
        }
        evs_reader_close(r);
    }
    return bad;
}

/* evs_store_check passes. */
static void check_clean(evs_store *s, const char *when) {
    evs_check_report cr;
    int rc = evs_store_check(s, &cr);
    FUZZ_ASSERT(rc == EVS_OK, "check %s: %s", when, cr.first_error);
}

/* Append one event: it must take the next position. */
static void append_next(evs_store *s, uint64_t above) {
    uint64_t head = evs_head(s);
    evs_event_in in;
    memset(&in, 0, sizeof in);
    in.event_type = "Fuzzed";
    in.data = "{}";
    in.data_len = 2;
    evs_append_result res;
    int rc = evs_append(s, "fuzz-1", EVS_EXPECT_ANY, &in, 1, &res, NULL);
    FUZZ_ASSERT(rc == EVS_OK, "append after open: %s", evs_errmsg());
    FUZZ_ASSERT(res.first_global_position == head + 1 && res.first_global_position > above,
                "append took position %llu (head %llu, floor %llu)", (unsigned long long)res.first_global_position,
                (unsigned long long)head, (unsigned long long)above);
}

/* Open, read everything, check, append, close, reopen: the store is sound. */
static void sound_store(const char *dir, uint64_t base, const named *nm, uint64_t floor, uint64_t want_head) {
    evs_store *s = store_new();
    int rc = evs_store_open(s, dir, 0);
    say("open after the repair", rc);
    FUZZ_ASSERT(rc == EVS_OK, "open after a successful repair: %s", evs_errmsg());
    if (want_head) FUZZ_ASSERT(evs_head(s) == want_head, "head %llu, the repair said %llu",
                               (unsigned long long)evs_head(s), (unsigned long long)want_head);
    FUZZ_ASSERT(evs_head(s) >= floor, "head %llu below %llu", (unsigned long long)evs_head(s), (unsigned long long)floor);
    FUZZ_ASSERT(read_all(s, base, nm, 1) == 0 && read_each(s, base, nm) == 0, "damage left after a repair");
    check_clean(s, "after a repair");
    append_next(s, floor);
    uint64_t head = evs_head(s);
    FUZZ_ASSERT(evs_store_close(s) == EVS_OK, "close: %s", evs_errmsg());
    s = store_new();
    FUZZ_ASSERT(evs_store_open(s, dir, 0) == EVS_OK && evs_head(s) == head, "reopen: %s", evs_errmsg());
    FUZZ_ASSERT(evs_store_close(s) == EVS_OK, "close: %s", evs_errmsg());
}

static void repair_and_check(const char *dir, uint64_t base, uint64_t floor) {
    snap before, unrepaired;
    snap_take(dir, &before);
    snap_take(dir, &unrepaired);
    named dry = {.n = 0}, real = {.n = 0};
    evs_repair_report rep;
    evs_store *s = store_new();
    int rc = evs_store_repair(s, dir, EVS_REPAIR_DRY_RUN, on_lost, &dry, &rep);
    say("dry-run repair", rc);
    evs_store_close(s);
    if (rc) check_msg(rc, "dry-run repair");
    snap_same(dir, &before, "a dry-run repair");
    snap_free(&before);
    s = store_new();
    int rc2 = evs_store_repair(s, dir, 0, on_lost, &real, &rep);
    say("repair", rc2);
    evs_store_close(s);
    if (rc2) {
        /* e.g. a segment header no repair can trust: refused before any change */
        check_msg(rc2, "repair");
        snap_same(dir, &unrepaired, "a failed repair");
        snap_free(&unrepaired);
        char p[1024];
        snprintf(p, sizeof p, "%s/REPAIRING", dir);
        FUZZ_ASSERT(access(p, F_OK) != 0, "a repair that changed nothing left REPAIRING behind");
        return;
    }
    snap_free(&unrepaired);
    FUZZ_ASSERT(rc == EVS_OK && dry.n == real.n, "the dry run (%s, %zu named) and the repair (%zu) disagree",
                evs_errname(rc), dry.n, real.n);
    FUZZ_ASSERT(rep.head >= floor, "repair head %llu below %llu", (unsigned long long)rep.head,
                (unsigned long long)floor);
    sound_store(dir, base, &real, floor, rep.head);
}

static void verify(const char *dir, uint64_t base, int floor_kept) {
    uint64_t floor = floor_kept ? base : 0;
    snap before;
    snap_take(dir, &before);
    if (floor_kept) {
        /* read-only: serves nothing wrong and writes nothing */
        evs_store *ro = store_new();
        if (evs_store_open(ro, dir, EVS_OPEN_READONLY) == EVS_OK) {
            (void)read_all(ro, base, NULL, 0);
            (void)read_each(ro, base, NULL);
            evs_check_report cr;
            (void)evs_store_check(ro, &cr);
        }
        evs_store_close(ro);
        snap_same(dir, &before, "a read-only open");
    }
    evs_store *s = store_new();
    int rc = evs_store_open(s, dir, 0);
    say("open", rc);
    int need_repair = 0;
    if (rc != EVS_OK) {
        check_msg(rc, "open");
        evs_store_close(s);
        snap_same(dir, &before, "a failed open");
        need_repair = 1;
    } else {
        uint64_t head = evs_head(s);
        if (floor_kept) FUZZ_ASSERT(head >= base, "open dropped acknowledged events: head %llu of %llu",
                                    (unsigned long long)head, (unsigned long long)base);
        int bad = read_all(s, base, NULL, !floor_kept) + read_each(s, base, NULL);
        evs_check_report cr;
        int crc = evs_store_check(s, &cr);
        if (crc) FUZZ_ASSERT(crc == EVS_ECORRUPT && cr.errors > 0 && cr.first_error[0], "check: %s", evs_errname(crc));
        if (bad) FUZZ_ASSERT(crc == EVS_ECORRUPT, "reads met damage, check found none");
        if (!floor_kept) check_clean(s, "after rebuilding the index");
        need_repair = bad || (crc && floor_kept);
        if (!need_repair) {
            append_next(s, floor);
            uint64_t h = evs_head(s);
            FUZZ_ASSERT(evs_store_close(s) == EVS_OK, "close: %s", evs_errmsg());
            s = store_new();
            FUZZ_ASSERT(evs_store_open(s, dir, 0) == EVS_OK && evs_head(s) == h, "reopen: %s", evs_errmsg());
        }
        FUZZ_ASSERT(evs_store_close(s) == EVS_OK || need_repair, "close: %s", evs_errmsg());
    }
    snap_free(&before);
    if (need_repair) repair_and_check(dir, base, floor);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (!base_clean[0]) make_bases();
    if (size == 0) return 0;
    cursor c = {data, size, 1};
    rmrf(run_dir);
    nstreams = 0;
    if (data[0] & 1) /* the base's streams go on from their versions */
        for (size_t i = 0; i < NACK; i++) *next_of(acks[i].stream, strlen(acks[i].stream)) = acks[i].spos + 1;
    if (getenv("FUZZ_BUILD_ONLY")) { /* leave the files as the input makes them, for a look */
        if (data[0] & 1) edit_base(run_dir, &c, (data[0] >> 1) & 1);
        else build_log(run_dir, &c, data[0]);
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cp -r %s %s", run_dir, getenv("FUZZ_BUILD_ONLY"));
        FUZZ_ASSERT(system(cmd) == 0, "%s", cmd);
        return 0;
    }
    if (data[0] & 1) {
        int have_index = edit_base(run_dir, &c, (data[0] >> 1) & 1);
        verify(run_dir, NACK, have_index);
    } else {
        build_log(run_dir, &c, data[0]);
        verify(run_dir, 0, 0);
    }
    return 0;
}

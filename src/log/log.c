/*
 * log.c — the segmented, CRC-framed, append-only log (see log.h).
 *
 * ON-DISK FORMAT (also in docs/format.md).  All integers little-endian.
 *
 * Directory: DIR/log/00000001.seg, 00000002.seg, ... (8 decimal digits).
 * Numbers are contiguous from 1.  A segment is created at its full size
 * (fallocate), its header written and fsync'd, under the name NNNNNNNN.seg.tmp,
 * then renamed and the directory synced: a name without ".tmp" is always a
 * complete segment with a valid header.
 *
 * Segment header, 64 bytes at offset 0:
 *   off size  field
 *     0    8  magic "EVSLOG01"
 *     8    4  format version = 1
 *    12    4  header size = 64
 *    16    8  segment number (equals the file name's)
 *    24    8  salt: random per segment
 *    32    8  first global position of the segment (informative; 0 when the
 *             segment was created ahead of need and not known yet)
 *    40    8  segment size in bytes (the file's size)
 *    48    4  version: times scavenge rewrote this segment (0: never; see SCAVENGE)
 *    52    8  reserved, zero
 *    60    4  crc32c of bytes 0..59
 *
 * Frame, at an 8-byte aligned offset >= 64:
 *   off size  field
 *     0    4  payload_len (0 here means "no more frames in this segment")
 *     4    4  crc
 *     8    8  first_gpos: global position of the frame's first event
 *    16    4  event_count (>= 1)
 *    20    4  flags: 0 for a record; 1 (LOST) for a record that stands
 *             where `evstore repair` removed damaged records (see REPAIR);
 *             3 (LOST|SCAVENGED) where scavenge removed hidden records
 *    24    8  synced_to: the log location (segment << 32 | offset) up to
 *             which the log was known durable (fdatasync'd) when this frame
 *             was appended; always <= the frame's own location
 *    32  len  payload (opaque: src/log/record.c)
 *     .   ..  zero padding to a multiple of 8
 *   crc = crc32c over: the segment's salt (8 bytes, LE), frame bytes 0..3,
 *   frame bytes 8..31, the payload.  The salt makes bytes left over from any
 *   other segment (another salt) fail to verify.
 *
 * A frame at offset X of segment S is VALID when payload_len > 0, the frame
 * including padding fits in the segment, the crc verifies, the padding is
 * zero, event_count >= 1, flags is 0, 1 or 3, and first_gpos equals the expected
 * next global position (the previous frame's first_gpos + event_count; 1
 * for the first frame).
 *
 * INVARIANTS
 *  1. A segment's frames are contiguous from offset 64.  Where a frame would
 *     start and payload_len is 0, or fewer than 32 bytes remain, the
 *     segment's data ends; the next frame is at offset 64 of the next
 *     segment.  Preallocated space reads as zeros, so no end marker is
 *     written.  A zero payload_len counts as the end only if the rest of the
 *     segment is zero too (invariant 3); otherwise a frame header was zeroed
 *     and readers, recovery and check all report damage at that offset,
 *     never step over it into the next segment.
 *  2. Global positions are gapless across frames and segments.
 *  3. After the end of the log, and after the end of data in every segment,
 *     every byte is zero.  Recovery zeroes what it cuts (rather than just
 *     moving the end back): otherwise a later, shorter frame could make an
 *     old dropped frame line up at a frame boundary and verify again.
 *  4. Every byte before a frame's synced_to was durable before the frame was
 *     written.  This is what tells a torn tail from damage in the middle:
 *     after a power loss the unsynced tail may come back with holes (the
 *     kernel writes dirty pages back in any order), so "a valid frame
 *     follows the bad one" alone proves nothing; but a valid frame whose
 *     synced_to lies beyond the end of the verified data proves that the
 *     data there had been synced, so losing it is corruption, not a crash.
 *  5. Sticky failure: once a write or fdatasync fails, the writer accepts
 *     nothing more (EVS_EFAILED) until the log is reopened.  A failed
 *     fdatasync is never retried: the kernel may have dropped the dirty pages
 *     and a retry could "succeed" without the data.
 *
 * RECOVERY (evs__log_open).  Verification starts at `from` (see log.h) and
 * walks frames, crossing segments per invariant 1, until the first position
 * where no valid frame is: the end of verified data E.  Then every 8-byte
 * offset from E to the end of the last segment is searched for a frame that
 * verifies with its segment's salt and has synced_to > E.  If there is one,
 * the log is damaged in the middle: EVS_ECORRUPT, nothing changed.  If not,
 * whatever lies after E is a torn tail: it is zeroed up to the last non-zero
 * byte of E's segment, later segments are removed (highest first, so no gap
 * in the numbering can appear) except one all-zero segment right after E's,
 * which is kept as the next segment, and E's segment is fdatasync'd.
 * Read-only opens change nothing and report what would be cut.
 *
 * WRITER.  evs__log_append frames the payload into a write buffer, noting
 * one extent (segment, offset, length) per segment touched; evs__log_flush
 * issues one pwrite per extent and, when asked, one fdatasync per segment
 * holding unsynced data.  In steady state neither allocates nor makes any
 * other system call.  When the current segment passes half full the next
 * one is created ahead, so the rollover itself costs nothing.
 *
 * ZERO-AHEAD (cfg->zero_ahead > 0).  Segments are preallocated with
 * fallocate, which leaves unwritten extents: every fdatasync after an append
 * into them must also write the inode to record the unwritten->written
 * conversion, a second synchronous write per commit (measured 1.15-1.6x
 * slower than overwriting zeros; docs/benchmarks.md).  A background thread
 * therefore keeps up to zero_ahead bytes after the writer's flushed end
 * (in its segment and the one made ahead) written with real zeros and
 * fdatasync'd, in chunks, through the I/O table and its own descriptor (so
 * a writeback error is still reported to the writer's descriptor).  The
 * bytes stay zero, so nothing that reads the log can tell zeroed space from
 * preallocated space: invariant 3 holds either way, and recovery, check
 * and repair treat both alike.  Only the writer ever writes below its
 * flushed end; the thread claims a chunk only at or above it, and the
 * writer, before writing, waits for a zero pwrite in flight that starts
 * below the end it is about to write (a page-cache copy, never the thread's
 * fdatasync).  When the writer catches up it simply writes into unwritten
 * space, as without zero-ahead.  A failure of the thread's own calls only
 * stops zeroing; it never fails an append.
 *
 * FLUSH THREAD (evs__log_flush_begin/end).  The writer may hand one flush at
 * a time to a second thread and do work that does not touch the log (the
 * store's index entries of the same batch) while it writes and syncs; the
 * writer touches nothing of the log until it has collected the outcome, so
 * the log still has exactly one writer at any moment.  The flush is the
 * same call, with the same failure rules; only the thread differs.
 *
 * READERS.  Every segment is mapped read-only at its full size once it
 * exists.  Segment pointers live in a large array indexed by segment number,
 * reserved with mmap so untouched entries cost no memory; the writer fills an
 * entry (release) before any location in that segment is published, and
 * readers load it (acquire).  Segment structs are immutable once published
 * and are freed only at close.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>

#include "core/core.h"
#include "log/log.h"

#define SEG_HDR 64u
#define FRAME_HDR 32u
#define SEG_MAGIC "EVSLOG01"
#define SEG_VERSION 1u
#define DEFAULT_SEGMENT_SIZE (64ull << 20)
#define MIN_SEGMENT_SIZE 4096ull
/* Offsets are 32 bits in a location; stay well clear of the top. */
#define MAX_SEGMENT_SIZE (1ull << 31)
#define MAX_PAYLOAD ((uint32_t)(MAX_SEGMENT_SIZE - SEG_HDR - FRAME_HDR - 4096))
/* Capacity of the segment table: 4M segments of at least 4 KiB. */
#define MAX_SEGMENTS (1u << 22)
#define VERIFIED_SLOTS 256u           /* recently verified frames remembered by readers */
#define PIN_SLOTS 4096u               /* reader generations told apart (SCAVENGE) */
/* A write buffer grown past this by one large batch is shrunk back after the flush. */
#define BUF_KEEP (16u << 20)
#define BUF_SHRINK_TO (1u << 20)

#define SEGFMT "segment %08" PRIu32 ".seg"

typedef struct evs_seg {
    uint32_t no;
    uint32_t ver;         /* header bytes 48..51: times scavenge rewrote this segment */
    uint64_t gen;         /* the log generation from which readers use this version (SCAVENGE) */
    _Atomic(struct evs_seg *) older;  /* the version it replaced, kept while a reader may use it */
    int fd;
    uint64_t size;        /* from the header */
    uint64_t avail;       /* readable bytes: min(file size, size), multiple of 8 */
    uint64_t fsize;       /* file size when opened, if shorter than size (else size) */
    uint8_t salt[8];      /* as stored: little-endian */
    const uint8_t *map;
    uint64_t serial;      /* tells a segment replaced under the same number apart (ZERO-AHEAD) */
} evs_seg;

/* Zero-ahead state (ZERO-AHEAD above), shared by the writer and the zero thread under mu. */
typedef struct log_zero {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t work;        /* the thread waits here for something to zero, or stop */
    pthread_cond_t idle;        /* the writer waits here for a zero pwrite in flight */
    uint64_t window, chunk;
    /* Published by the writer at each flush: its segment, where its data
       ends there, and the segment made ahead (0 size: none yet). */
    uint32_t cur_no;
    uint64_t cur_size, cur_serial, frontier;
    uint64_t next_size, next_serial;
    evs_lsn done;               /* zeroed and synced up to here */
    evs_lsn busy_at;            /* with busy: a zero pwrite from here is in flight */
    int busy, waiting, stop, failed;
    uint64_t bytes, writes;     /* zeros written, chunks (for tests and benchmarks) */
} log_zero;

typedef struct log_extent {
    evs_seg *seg;
    uint64_t off;         /* file offset */
    size_t start, len;    /* bytes of the write buffer */
} log_extent;

struct evs_log {
    const evs_io *io;
    char *dir;            /* DIR/log */
    uint64_t seg_size;    /* for new segments */
    int readonly;

    _Atomic(evs_seg *) *slots;  /* [segment number]; see READERS */
    size_t slots_bytes;
    _Atomic uint32_t nseg;      /* segment files, numbered 1..nseg */

    /* Writer state (the writer thread only). */
    evs_seg *cur;               /* segment holding the end (NULL: read-only empty log) */
    uint64_t w_off;             /* where the next frame goes in cur */
    uint64_t next_gpos;
    evs_lsn synced_to;          /* everything before it is durable */
    uint64_t bytes_before_cur;  /* sizes of the segments before cur */
    uint32_t unsynced_lo, unsynced_hi; /* segments written but not synced (0: none) */
    int ahead_failed;           /* creating the next segment early failed once; wait for the roll */
    uint8_t *buf;
    size_t blen, bcap;
    log_extent *ext;
    size_t next, extcap;
    int failed;                 /* sticky: the first failure's code (invariant 5) */
    char failed_msg[400];

    /* Published for other threads (check, usage). */
    _Atomic uint64_t flushed_end;
    _Atomic uint64_t used_bytes;

    /* Readers: frames verified lately, by LSN (see evs__log_read). */
    _Atomic uint64_t verified[VERIFIED_SLOTS];

    /* Segment versions (see SCAVENGE below). */
    _Atomic uint64_t gen;       /* the current generation */
    _Atomic uint64_t pins[PIN_SLOTS]; /* readers pinned at generation g count in pins[g % PIN_SLOTS] */
    pthread_rwlock_t pub;       /* readers: index snapshot + pin; scavenge: commit + publish */
    _Atomic uint64_t reclaimed; /* bytes given back by scavenge since open */

    uint64_t seg_serial;        /* segments made or loaded so far (evs_seg.serial) */
    log_zero *z;                /* NULL: no zero-ahead */
    struct log_flusher *fl;     /* NULL until the first evs__log_flush_begin */
};

/* Zeros to write from: tail cuts, scrubs, repair and zero-ahead chunks. */
#define ZERO_CHUNK (256u << 10)
static const uint8_t log_zeros[ZERO_CHUNK];

/* How much of a frame evs__log_prefetch asks for: eight cache lines. */
#define PREFETCH_BYTES 512u

static inline uint64_t align8(uint64_t v) { return (v + 7) & ~(uint64_t)7; }

static inline size_t verified_slot(evs_lsn at) { return (size_t)((at * 0x9E3779B97F4A7C15ull) >> 56) % VERIFIED_SLOTS; }

static inline evs_seg *slot_get(const evs_log *log, uint32_t no) {
    if (no == 0 || no >= MAX_SEGMENTS) return NULL;
    return atomic_load_explicit(&log->slots[no], memory_order_acquire);
}

static inline void slot_set(evs_log *log, uint32_t no, evs_seg *sg) {
    atomic_store_explicit(&log->slots[no], sg, memory_order_release);
}

static int log_path(const evs_log *log, char *buf, size_t n, uint32_t no, const char *suffix) {
    int k = snprintf(buf, n, "%s/%08" PRIu32 ".seg%s", log->dir, no, suffix);
    if (k < 0 || (size_t)k >= n) return evs__err(EVS_EINVAL, "log directory path too long: %s", log->dir);
    return 0;
}

/* ------------------------------------------------------------ frames */

typedef struct frame_info {
    uint32_t len, count, flags;
    uint64_t gpos;
    evs_lsn synced_to;
    uint64_t size;        /* header + payload + padding */
} frame_info;

static uint32_t frame_crc(const uint8_t salt[8], const uint8_t *f, uint32_t len) {
    uint32_t c = evs__crc32c(0, salt, 8);
    c = evs__crc32c(c, f, 4);
    c = evs__crc32c(c, f + 8, 24);
    return evs__crc32c(c, f + FRAME_HDR, len);
}

/*
 * Does the frame at off verify (everything but the expected position)?
 * Returns NULL and fills *fi if so, else a short reason for messages.
 * Assumes off + FRAME_HDR <= sg->avail.
 */
static const char *frame_check(const evs_seg *sg, uint64_t off, frame_info *fi) {
    const uint8_t *p = sg->map + off;
    uint32_t len = evs__get32(p);
    if (len == 0) return "zero bytes where a frame should be";
    uint64_t size = FRAME_HDR + align8(len);
    if (len > MAX_PAYLOAD || off + size > sg->avail) return "frame length runs past the segment end";
    if (frame_crc(sg->salt, p, len) != evs__get32(p + 4)) return "checksum mismatch";
    /* the CRC stops at the payload: padding must be zero, so that every flipped byte is found */
    for (uint64_t i = FRAME_HDR + len; i < size; i++)
        if (p[i]) return "non-zero padding after the payload";
    fi->len = len;
    fi->count = evs__get32(p + 16);
    fi->gpos = evs__get64(p + 8);
    fi->synced_to = evs__get64(p + 24);
    fi->size = size;
    fi->flags = evs__get32(p + 20);
    if (fi->count == 0) return "frame with zero events";
    if (!EVS_FRAME_FLAGS_OK(fi->flags)) return "unknown frame flags";
    return NULL;
}

/* Is off (8-aligned) the end of this segment's data (invariant 1)? */
static inline int seg_data_ends(const evs_seg *sg, uint64_t off) {
    return off + FRAME_HDR > sg->avail || evs__get32(sg->map + off) == 0;
}

/*
 * Zero scans.  Invariants 3 and 4 make an open look at every byte after the
 * data: the rest of the last segment and any segment made ahead, 64 MiB of
 * zeros on a young store.  Those pages are never touched through the
 * mapping otherwise, and the first touch of a page of a fresh mapping costs
 * this paravirtualised machine ~1.5 us, more than copying it: so ranges of
 * at least ZSCAN_MIN bytes are read with pread, ZSCAN_CHUNK at a time, and
 * compared with memcmp (docs/decisions.md, "Zero scans read the file").
 * Short ranges, a failed read or a failed allocation use the mapping: the
 * answer is the same, only slower.
 */
#define ZSCAN_MIN (64u << 10)
#define ZSCAN_CHUNK (256u << 10)

/* Are the n bytes at p all zero? */
static inline int bytes_zero(const uint8_t *p, size_t n) { return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1)); }

/* End (exclusive, 8-aligned) of the last non-zero 8-byte word of the n bytes at p (n a multiple of 8), or 0. */
static size_t bytes_last_nonzero(const uint8_t *p, size_t n) {
    while (n >= 4096 && bytes_zero(p + n - 4096, 4096)) n -= 4096;
    while (n >= 8 && evs__get64(p + n - 8) == 0) n -= 8;
    return n;
}

/* A buffer for a pread scan of [from, to), or NULL: scan the mapping. */
static uint8_t *zscan_buf(const evs_seg *sg, uint64_t from, uint64_t to) {
    if (to - from < ZSCAN_MIN || sg->fd < 0) return NULL;
    return malloc(ZSCAN_CHUNK);
}

/* Read [at, at + n) of sg into buf; 0, or -1 (short or failed: use the mapping). */
static int zscan_read(const evs_log *log, const evs_seg *sg, uint8_t *buf, uint64_t at, size_t n) {
    ssize_t r = log->io->pread(log->io->ctx, sg->fd, buf, n, (off_t)at);
    return r == (ssize_t)n ? 0 : -1;
}

/*
 * Invariant 3: is every byte from off (8-aligned) to the end of the segment
 * zero?  Only then is a zero payload_len really the end of the segment's
 * data; otherwise a frame header was zeroed and data follows it.
 */
static int seg_zero_from(const evs_log *log, const evs_seg *sg, uint64_t off) {
    uint64_t end = sg->avail;
    if (off >= end) return 1;
    uint8_t *buf = zscan_buf(sg, off, end);
    if (buf) {
        for (; off < end; off += ZSCAN_CHUNK) {
            size_t n = end - off < ZSCAN_CHUNK ? (size_t)(end - off) : ZSCAN_CHUNK;
            if (zscan_read(log, sg, buf, off, n)) break;
            if (!bytes_zero(buf, n)) {
                free(buf);
                return 0;
            }
        }
        free(buf);
        if (off >= end) return 1;
    }
    return bytes_zero(sg->map + off, (size_t)(end - off));
}

/* End (exclusive, 8-aligned) of the last non-zero byte in [from, avail), or from if none. */
static uint64_t seg_last_nonzero(const evs_log *log, const evs_seg *sg, uint64_t from) {
    uint64_t end = sg->avail;
    if (from >= end) return from;
    uint8_t *buf = zscan_buf(sg, from, end);
    if (buf) {
        while (end > from) {
            size_t n = end - from < ZSCAN_CHUNK ? (size_t)(end - from) : ZSCAN_CHUNK;
            if (zscan_read(log, sg, buf, end - n, n)) break;
            size_t nz = bytes_last_nonzero(buf, n);
            if (nz) {
                free(buf);
                return end - n + nz;
            }
            end -= n;
        }
        free(buf);
        if (end <= from) return from;
    }
    size_t nz = bytes_last_nonzero(sg->map + from, (size_t)(end - from));
    return from + nz;
}

/* ------------------------------------------------------------ reading */

evs_lsn evs__log_start(const evs_log *log) { return EVS_LSN(1, SEG_HDR); }

/* The version of segment no that a reader of generation gen uses (SCAVENGE). */
static inline evs_seg *seg_version(const evs_log *log, uint32_t no, uint64_t gen) {
    evs_seg *sg = slot_get(log, no);
    while (sg && sg->gen > gen) sg = atomic_load_explicit(&sg->older, memory_order_acquire);
    return sg;
}

/* The verified cache's key: the location, told apart from the same location in another version. */
static inline uint64_t verified_key(const evs_seg *sg, evs_lsn at) {
    return at | (sg->ver & 7u) | ((uint64_t)((sg->ver >> 3) & 1u) << 31);
}

int evs__log_read(evs_log *log, evs_lsn at, evs_lsn limit, evs_frame *out) {
    return evs__log_read_at(log, UINT64_MAX, at, limit, out);
}

int evs__log_read_at(evs_log *log, uint64_t gen, evs_lsn at, evs_lsn limit, evs_frame *out) {
    if (at >= limit) return EVS_DONE;
    uint32_t no = EVS_LSN_SEG(at);
    uint64_t off = EVS_LSN_OFF(at);
    const evs_seg *sg = seg_version(log, no, gen);
    if (EVS_UNLIKELY(!sg || off < SEG_HDR || (off & 7) || off > sg->avail))
        return evs__err(EVS_EINVAL, SEGFMT " offset %" PRIu64 ": not a frame location of this log", no, off);
    if (seg_data_ends(sg, off)) {
        /* Invariant 1: the next frame opens the next segment, provided the
           rest of this one is empty (invariant 3).  The end being in a later
           segment also means the writer is done with this one. */
        evs_lsn nxt = EVS_LSN(no + 1, SEG_HDR);
        const evs_seg *nx = seg_version(log, no + 1, gen);
        if (EVS_UNLIKELY(nxt >= limit || !nx || !seg_zero_from(log, sg, off)))
            return evs__err(EVS_ECORRUPT, SEGFMT " offset %" PRIu64 ": zero bytes where a frame should be", no, off);
        sg = nx;
        no++;
        off = SEG_HDR;
        at = nxt;
    }
    frame_info fi;
    /* A frame verified moments ago by another read is not checksummed
       again: consumers that fetch events one by one (groups, DLQ retries)
       would otherwise checksum a whole 1,000-event record per event.  The
       bytes of a flushed frame never change under an open store (appends
       only add; the tail is cut only at open, before any reader). */
    _Atomic uint64_t *vs = &log->verified[verified_slot(at)];
    uint64_t vkey = verified_key(sg, at);
    if (atomic_load_explicit(vs, memory_order_relaxed) == vkey && off + FRAME_HDR <= sg->avail &&
        off + FRAME_HDR + align8(evs__get32(sg->map + off)) <= sg->avail) {
        const uint8_t *p = sg->map + off;
        fi.len = evs__get32(p);
        fi.count = evs__get32(p + 16);
        fi.flags = evs__get32(p + 20);
        fi.gpos = evs__get64(p + 8);
        fi.size = FRAME_HDR + align8(fi.len);
    } else {
        const char *why = frame_check(sg, off, &fi);
        if (EVS_UNLIKELY(why != NULL))
            return evs__err(EVS_ECORRUPT, SEGFMT " offset %" PRIu64 ": %s", no, off, why);
        atomic_store_explicit(vs, vkey, memory_order_relaxed);
    }
    out->payload = sg->map + off + FRAME_HDR;
    out->len = fi.len;
    out->count = fi.count;
    out->flags = fi.flags;
    out->first_gpos = fi.gpos;
    out->at = at;
    out->next = EVS_LSN(no, off + fi.size);
    return EVS_OK;
}

void evs__log_prefetch(const evs_log *log, uint64_t gen, evs_lsn at) {
    const evs_seg *sg = seg_version(log, EVS_LSN_SEG(at), gen);
    uint64_t off = EVS_LSN_OFF(at);
    if (!sg || off + PREFETCH_BYTES > sg->avail) return;
    /* the header and the start of the payload: most events are a few hundred bytes */
    for (uint64_t i = 0; i < PREFETCH_BYTES; i += 64) __builtin_prefetch(sg->map + off + i);
}

/* ------------------------------------------------------------ segments */

/* Free a segment struct and every older version still chained to it. */
static void seg_free(evs_log *log, evs_seg *sg) {
    while (sg) {
        evs_seg *older = atomic_load_explicit(&sg->older, memory_order_relaxed);
        if (sg->map) log->io->unmap(log->io->ctx, (void *)sg->map, (size_t)sg->size);
        if (sg->fd >= 0) log->io->close(log->io->ctx, sg->fd);
        free(sg);
        sg = older;
    }
}

/*
 * Open and map an existing segment file, verifying its header.
 * EVS_EFORMAT for a file that is not a segment of this format,
 * EVS_ECORRUPT for a damaged header.
 */
static int seg_load(evs_log *log, uint32_t no, evs_seg **out) {
    char path[4096];
    uint8_t h[SEG_HDR];
    int rc;
    evs_seg *sg = calloc(1, sizeof *sg);
    if (!sg) return evs__err(EVS_ENOMEM, SEGFMT ": out of memory", no);
    sg->no = no;
    sg->fd = -1;
    if ((rc = log_path(log, path, sizeof path, no, ""))) goto fail;
    int fd = log->io->open(log->io->ctx, path, log->readonly ? O_RDONLY : O_RDWR, 0);
    if (fd < 0) {
        rc = evs__err_errno(fd, SEGFMT ": open %s", no, path);
        goto fail;
    }
    sg->fd = fd;
    off_t fsize = log->io->size(log->io->ctx, fd);
    if (fsize < 0) {
        rc = evs__err_errno((int)fsize, SEGFMT ": size", no);
        goto fail;
    }
    ssize_t r = log->io->pread(log->io->ctx, fd, h, SEG_HDR, 0);
    if (r < 0) {
        rc = evs__err_errno((int)r, SEGFMT ": reading the header", no);
        goto fail;
    }
    if (r < (ssize_t)SEG_HDR) {
        rc = evs__err(EVS_ECORRUPT, SEGFMT ": file is %zd bytes, shorter than a segment header", no, r);
        goto fail;
    }
    if (memcmp(h, SEG_MAGIC, 8) != 0) {
        rc = evs__err(EVS_EFORMAT, SEGFMT ": bad magic, not an evstore log segment", no);
        goto fail;
    }
    if (evs__get32(h + 8) != SEG_VERSION) {
        rc = evs__err(EVS_EFORMAT, SEGFMT ": log format version %" PRIu32 ", this build reads version %u", no,
                      evs__get32(h + 8), SEG_VERSION);
        goto fail;
    }
    if (evs__get32(h + 12) != SEG_HDR) {
        rc = evs__err(EVS_EFORMAT, SEGFMT ": header size %" PRIu32 ", expected %u", no, evs__get32(h + 12), SEG_HDR);
        goto fail;
    }
    if (evs__crc32c(0, h, 60) != evs__get32(h + 60)) {
        rc = evs__err(EVS_ECORRUPT, SEGFMT ": header checksum mismatch", no);
        goto fail;
    }
    if (evs__get64(h + 16) != no) {
        rc = evs__err(EVS_ECORRUPT, SEGFMT ": header says segment %" PRIu64, no, evs__get64(h + 16));
        goto fail;
    }
    sg->size = evs__get64(h + 40);
    if (sg->size < SEG_HDR + FRAME_HDR || sg->size > MAX_SEGMENT_SIZE || (sg->size & 7)) {
        rc = evs__err(EVS_ECORRUPT, SEGFMT ": implausible segment size %" PRIu64, no, sg->size);
        goto fail;
    }
    memcpy(sg->salt, h + 24, 8);
    sg->ver = evs__get32(h + 48);
    /* A file cut short (by hand; the writer never makes one) reads as zeros
       past its end; never touch the mapping there (SIGBUS). */
    sg->fsize = (uint64_t)fsize < sg->size ? (uint64_t)fsize : sg->size;
    sg->avail = sg->fsize & ~(uint64_t)7;
    void *map;
    if ((rc = log->io->map(log->io->ctx, fd, (size_t)sg->size, &map))) {
        rc = evs__err_errno(rc, SEGFMT ": mapping %" PRIu64 " bytes", no, sg->size);
        goto fail;
    }
    sg->map = map;
    sg->serial = ++log->seg_serial;
    *out = sg;
    return 0;
fail:
    seg_free(log, sg);
    return rc;
}

/* Sticky failure (invariant 5): remember the first error and return its code. */
static int log_fail(evs_log *log, int code) {
    if (!log->failed) {
        log->failed = code;
        snprintf(log->failed_msg, sizeof log->failed_msg, "%s", evs_errmsg());
    }
    return code;
}

static int log_failed_err(const evs_log *log) {
    return evs__err(EVS_EFAILED, "log refuses writes after an earlier failure (%s); reopen it", log->failed_msg);
}

/*
 * Create segment `no` of `size` bytes: temp name, preallocate, header,
 * fsync, map, rename over the real name (replacing a segment made ahead that
 * turned out too small), sync the directory.  Failures before the rename
 * leave nothing behind and are plain errors; failures after it are sticky,
 * since the directory's state is then unknown.
 */
static int seg_create(evs_log *log, uint32_t no, uint64_t size, uint64_t first_gpos, evs_seg **out) {
    char tmp[4096], path[4096];
    uint8_t h[SEG_HDR];
    int rc, renamed = 0;
    const evs_io *io = log->io;
    if (no >= MAX_SEGMENTS || no > 99999999u)
        return evs__err(EVS_ELIMIT, SEGFMT ": the log has reached its maximum number of segments", no);
    if ((rc = log_path(log, tmp, sizeof tmp, no, ".tmp")) || (rc = log_path(log, path, sizeof path, no, "")))
        return rc;
    evs_seg *sg = calloc(1, sizeof *sg);
    if (!sg) return evs__err(EVS_ENOMEM, SEGFMT ": out of memory", no);
    sg->no = no;
    sg->size = sg->avail = sg->fsize = size;
    sg->fd = io->open(io->ctx, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (sg->fd < 0) {
        rc = evs__err_errno(sg->fd, SEGFMT ": creating %s", no, tmp);
        goto fail;
    }
    if ((rc = io->fallocate(io->ctx, sg->fd, 0, (off_t)size))) {
        rc = evs__err_errno(rc, SEGFMT ": reserving %" PRIu64 " bytes", no, size);
        goto fail;
    }
    uint64_t salt;
    evs__random(&salt, sizeof salt);
    memset(h, 0, sizeof h);
    memcpy(h, SEG_MAGIC, 8);
    evs__put32(h + 8, SEG_VERSION);
    evs__put32(h + 12, SEG_HDR);
    evs__put64(h + 16, no);
    evs__put64(h + 24, salt);
    evs__put64(h + 32, first_gpos);
    evs__put64(h + 40, size);
    evs__put32(h + 60, evs__crc32c(0, h, 60));
    memcpy(sg->salt, h + 24, 8);
    ssize_t w = io->pwrite(io->ctx, sg->fd, h, SEG_HDR, 0);
    if (w != (ssize_t)SEG_HDR) {
        rc = w < 0 ? evs__err_errno((int)w, SEGFMT ": writing the header", no)
                   : evs__err(EVS_EIO, SEGFMT ": short write of the header (%zd of %u bytes)", no, w, SEG_HDR);
        goto fail;
    }
    /* fsync, not fdatasync: the allocation and size must be durable too. */
    if ((rc = io->fsync(io->ctx, sg->fd))) {
        rc = evs__err_errno(rc, SEGFMT ": fsync of the new segment", no);
        goto fail;
    }
    void *map;
    if ((rc = io->map(io->ctx, sg->fd, (size_t)size, &map))) {
        rc = evs__err_errno(rc, SEGFMT ": mapping %" PRIu64 " bytes", no, size);
        goto fail;
    }
    sg->map = map;
    if ((rc = io->rename(io->ctx, tmp, path))) {
        rc = evs__err_errno(rc, SEGFMT ": renaming %s into place", no, tmp);
        goto fail;
    }
    renamed = 1;
    if ((rc = io->sync_dir(io->ctx, log->dir))) {
        rc = evs__err_errno(rc, SEGFMT ": syncing directory %s", no, log->dir);
        goto fail;
    }
    sg->serial = ++log->seg_serial;
    *out = sg;
    return 0;
fail:
    if (!renamed && sg->fd >= 0) io->unlink(io->ctx, tmp);
    seg_free(log, sg);
    if (renamed) return log_fail(log, rc);
    return rc;
}

/* ------------------------------------------------------------ writer */

evs_lsn evs__log_end(const evs_log *log) {
    return log->cur ? EVS_LSN(log->cur->no, log->w_off) : EVS_LSN(1, SEG_HDR);
}

uint64_t evs__log_next_gpos(const evs_log *log) { return log->next_gpos; }

/* Move the writer to the next segment, which must hold `need` bytes after its header. */
static int log_roll(evs_log *log, uint64_t fsize) {
    uint32_t no = log->cur->no + 1;
    evs_seg *nx = slot_get(log, no);
    if (!nx || nx->size < SEG_HDR + fsize) {
        /* No segment made ahead, or one too small for this frame: a segment
           sized to hold exactly this frame replaces it under the same number. */
        uint64_t size = log->seg_size;
        if (SEG_HDR + fsize > size) size = SEG_HDR + fsize;
        evs_seg *made;
        int rc = seg_create(log, no, size, log->next_gpos, &made);
        if (rc) return rc;
        /* Nothing in a segment past the end is ever read, so the old
           struct can go at once. */
        slot_set(log, no, made);
        if (nx) seg_free(log, nx);
        else atomic_fetch_add_explicit(&log->nseg, 1, memory_order_relaxed);
        nx = made;
    }
    log->bytes_before_cur += log->cur->size;
    log->cur = nx;
    log->w_off = SEG_HDR;
    log->ahead_failed = 0;
    return 0;
}

/*
 * Create the next segment now, while the current one still has room, so
 * the rollover needs no file creation.  A failure here is not the append's:
 * it is retried (and reported) at the rollover.
 */
static void log_make_ahead(evs_log *log) {
    uint32_t no = log->cur->no + 1;
    if (slot_get(log, no)) return;
    evs_seg *made;
    if (seg_create(log, no, log->seg_size, 0, &made)) {
        log->ahead_failed = 1;
        evs__err_clear();
        return;
    }
    slot_set(log, no, made);
    atomic_fetch_add_explicit(&log->nseg, 1, memory_order_relaxed);
}

static int buf_reserve(evs_log *log, size_t more) {
    if (log->bcap - log->blen >= more && log->next < log->extcap) return 0;
    if (log->next == log->extcap) {
        size_t cap = log->extcap ? log->extcap * 2 : 8;
        log_extent *ne = realloc(log->ext, cap * sizeof *ne);
        if (!ne) return evs__err(EVS_ENOMEM, "log: out of memory for the write buffer");
        log->ext = ne;
        log->extcap = cap;
    }
    if (log->bcap - log->blen < more) {
        size_t cap = log->bcap ? log->bcap : 64 * 1024;
        while (cap - log->blen < more) cap *= 2;
        uint8_t *nb = realloc(log->buf, cap);
        if (!nb) return evs__err(EVS_ENOMEM, "log: out of memory for a %zu-byte write buffer", cap);
        log->buf = nb;
        log->bcap = cap;
    }
    return 0;
}

int evs__log_append(evs_log *log, const void *payload, uint32_t len, uint64_t first_gpos, uint32_t count,
                    evs_lsn *where) {
    return evs__log_append_flags(log, payload, len, first_gpos, count, 0, where);
}

int evs__log_append_flags(evs_log *log, const void *payload, uint32_t len, uint64_t first_gpos, uint32_t count,
                          uint32_t flags, evs_lsn *where) {
    int rc;
    if (EVS_UNLIKELY(log->failed)) return log_failed_err(log);
    if (EVS_UNLIKELY(log->readonly)) return evs__err(EVS_ECLOSED, "log %s is open read-only", log->dir);
    if (EVS_UNLIKELY(len == 0 || count == 0))
        return evs__err(EVS_EINVAL, "log: a frame needs a payload and at least one event (len %" PRIu32
                                    ", count %" PRIu32 ")", len, count);
    if (EVS_UNLIKELY(first_gpos != log->next_gpos))
        return evs__err(EVS_EINVAL, "log: frame starts at global position %" PRIu64 ", the log expects %" PRIu64
                                    " (positions are gapless)", first_gpos, log->next_gpos);
    if (EVS_UNLIKELY(len > MAX_PAYLOAD))
        return evs__err(EVS_ELIMIT, "log: frame of %" PRIu32 " bytes exceeds the maximum of %" PRIu32, len,
                        MAX_PAYLOAD);
    uint64_t fsize = FRAME_HDR + align8(len);
    if (log->w_off + fsize > log->cur->size && (rc = log_roll(log, fsize))) return rc;
    if ((rc = buf_reserve(log, (size_t)fsize))) return rc;

    if (log->next == 0 || log->ext[log->next - 1].seg != log->cur)
        log->ext[log->next++] = (log_extent){.seg = log->cur, .off = log->w_off, .start = log->blen, .len = 0};
    uint8_t *f = log->buf + log->blen;
    evs__put32(f, len);
    evs__put64(f + 8, first_gpos);
    evs__put32(f + 16, count);
    evs__put32(f + 20, flags);
    evs__put64(f + 24, log->synced_to);
    memcpy(f + FRAME_HDR, payload, len);
    memset(f + FRAME_HDR + len, 0, (size_t)(fsize - FRAME_HDR - len));
    evs__put32(f + 4, frame_crc(log->cur->salt, f, len));
    log->blen += (size_t)fsize;
    log->ext[log->next - 1].len += (size_t)fsize;

    if (where) *where = EVS_LSN(log->cur->no, log->w_off);
    log->w_off += fsize;
    log->next_gpos += count;
    if (!log->ahead_failed && log->w_off > log->cur->size / 2) log_make_ahead(log);
    return 0;
}

void evs__log_mark(const evs_log *log, evs_log_mark *m) {
    m->cur = log->cur;
    m->w_off = log->w_off;
    m->next_gpos = log->next_gpos;
    m->bytes_before_cur = log->bytes_before_cur;
    m->blen = log->blen;
    m->next = log->next;
    m->last_len = log->next ? log->ext[log->next - 1].len : 0;
    m->ahead_failed = log->ahead_failed;
}

void evs__log_rewind(evs_log *log, const evs_log_mark *m) {
    /* a segment made or replaced since the mark stays: it is the next one,
       empty, which is what the log keeps ahead anyway */
    log->cur = m->cur;
    log->w_off = m->w_off;
    log->next_gpos = m->next_gpos;
    log->bytes_before_cur = m->bytes_before_cur;
    log->blen = m->blen;
    log->next = m->next;
    if (log->next) log->ext[log->next - 1].len = m->last_len;
    log->ahead_failed = m->ahead_failed;
}

/* Best effort after a short write: zero what did reach the file, so no torn frame is left. */
static void log_scrub(evs_log *log, evs_seg *sg, uint64_t off, size_t n) {
    while (n > 0) {
        size_t k = n < sizeof log_zeros ? n : sizeof log_zeros;
        if (log->io->pwrite(log->io->ctx, sg->fd, log_zeros, k, (off_t)off) != (ssize_t)k) return;
        off += k;
        n -= k;
    }
}

/* fdatasync every segment holding written but unsynced data. */
static int log_sync_written(evs_log *log) {
    for (uint32_t no = log->unsynced_lo; no && no <= log->unsynced_hi; no++) {
        evs_seg *sg = slot_get(log, no);
        int rc = log->io->fdatasync(log->io->ctx, sg->fd);
        if (rc) return log_fail(log, evs__err_errno(rc, SEGFMT ": fdatasync", no));
    }
    log->unsynced_lo = log->unsynced_hi = 0;
    log->synced_to = atomic_load_explicit(&log->flushed_end, memory_order_relaxed);
    return 0;
}

/* ------------------------------------------------------------ zero-ahead */

/*
 * The next chunk the zero thread should write, from the writer's last
 * publication: at or above the writer's end (never below: only the writer
 * writes there), within the window, in the writer's segment or the one made
 * ahead.  Returns 0 when there is nothing to do.  z->mu held.
 */
static int zero_next(const log_zero *z, uint32_t *no, uint64_t *lo, uint64_t *hi, uint64_t *serial) {
    if (z->failed || !z->cur_no) return 0;
    uint64_t f = (z->frontier + 4095) & ~(uint64_t)4095;
    evs_lsn start = EVS_LSN(z->cur_no, f < z->cur_size ? f : z->cur_size);
    if (z->done > start) start = z->done;
    uint32_t n = EVS_LSN_SEG(start);
    uint64_t off = EVS_LSN_OFF(start), size, ser;
    if (n == z->cur_no && off >= z->cur_size) n++, off = SEG_HDR;
    if (n == z->cur_no) size = z->cur_size, ser = z->cur_serial;
    else if (n == z->cur_no + 1 && z->next_size) size = z->next_size, ser = z->next_serial;
    else return 0;
    if (off >= size) return 0;
    uint64_t ahead = n == z->cur_no ? off - z->frontier : z->cur_size - z->frontier + off - SEG_HDR;
    if (ahead >= z->window) return 0;
    uint64_t end = ((off + z->chunk) & ~(uint64_t)4095);
    if (end <= off) end = off + 4096;
    *no = n;
    *lo = off;
    *hi = end < size ? end : size;
    *serial = ser;
    return 1;
}

/* The zero thread: write and sync chunks of zeros ahead of the writer until told to stop. */
static void *zero_main(void *arg) {
    evs_log *log = arg;
    log_zero *z = log->z;
    /* named, so `top -H` shows it and the tests' sync-failing shim can leave its syncs alone */
    pthread_setname_np(pthread_self(), "evs-zero");
    const evs_io *io = log->io;
    int fd = -1;
    uint32_t fd_no = 0;
    uint64_t fd_serial = 0;
    pthread_mutex_lock(&z->mu);
    while (!z->stop) {
        uint32_t no;
        uint64_t lo, hi, serial;
        if (!zero_next(z, &no, &lo, &hi, &serial)) {
            z->waiting = 1;
            pthread_cond_broadcast(&z->idle); /* evs__log_zero_settle */
            pthread_cond_wait(&z->work, &z->mu);
            z->waiting = 0;
            continue;
        }
        z->busy = 1;
        z->busy_at = EVS_LSN(no, lo);
        pthread_mutex_unlock(&z->mu);
        int rc = 0;
        if (fd < 0 || fd_no != no || fd_serial != serial) {
            /* Our own descriptor: an fdatasync error reported to it is still reported to the writer's. */
            char path[4096];
            if (fd >= 0) io->close(io->ctx, fd);
            fd = -1;
            rc = log_path(log, path, sizeof path, no, "") ? -ENAMETOOLONG : io->open(io->ctx, path, O_RDWR, 0);
            if (rc >= 0) fd = rc, fd_no = no, fd_serial = serial, rc = 0;
        }
        if (!rc) {
            ssize_t w = io->pwrite(io->ctx, fd, log_zeros, (size_t)(hi - lo), (off_t)lo);
            if (w != (ssize_t)(hi - lo)) rc = w < 0 ? (int)w : -EIO;
        }
        pthread_mutex_lock(&z->mu);
        z->busy = 0;
        pthread_cond_broadcast(&z->idle);
        pthread_mutex_unlock(&z->mu);
        if (!rc) rc = io->fdatasync(io->ctx, fd);
        pthread_mutex_lock(&z->mu);
        if (rc) {
            /* Stop zeroing for this session; the writer goes on into unwritten space. */
            z->failed = rc;
        } else {
            z->done = EVS_LSN(no, hi);
            z->bytes += hi - lo;
            z->writes++;
        }
    }
    pthread_mutex_unlock(&z->mu);
    if (fd >= 0) io->close(io->ctx, fd);
    return NULL;
}

/*
 * Writer, before writing anything buffered: publish where the data will end
 * (the zero thread stays at or above it), wait for a zero pwrite in flight
 * below that end, and wake the thread if there is a chunk to write.
 */
static void zero_publish(evs_log *log) {
    log_zero *z = log->z;
    evs_lsn end = evs__log_end(log);
    const evs_seg *nx = slot_get(log, log->cur->no + 1);
    pthread_mutex_lock(&z->mu);
    z->cur_no = log->cur->no;
    z->cur_size = log->cur->size;
    z->cur_serial = log->cur->serial;
    z->frontier = log->w_off;
    z->next_size = nx ? nx->size : 0;
    z->next_serial = nx ? nx->serial : 0;
    while (z->busy && z->busy_at < end) pthread_cond_wait(&z->idle, &z->mu);
    uint32_t no;
    uint64_t lo, hi, serial;
    /* A wake-up crosses vCPUs: only when a whole chunk is due. */
    if (z->waiting && zero_next(z, &no, &lo, &hi, &serial)) pthread_cond_signal(&z->work);
    pthread_mutex_unlock(&z->mu);
}

/* Start the zero thread for an open writable log (best effort: without it the log works as before). */
static void zero_start(evs_log *log, uint64_t window) {
    log_zero *z = calloc(1, sizeof *z);
    if (!z) return;
    pthread_mutex_init(&z->mu, NULL);
    pthread_cond_init(&z->work, NULL);
    pthread_cond_init(&z->idle, NULL);
    z->window = (window + 4095) & ~(uint64_t)4095;
    z->chunk = z->window < ZERO_CHUNK ? z->window : ZERO_CHUNK;
    z->done = evs__log_end(log);
    log->z = z;
    if (pthread_create(&z->th, NULL, zero_main, log) != 0) {
        log->z = NULL;
        pthread_cond_destroy(&z->idle);
        pthread_cond_destroy(&z->work);
        pthread_mutex_destroy(&z->mu);
        free(z);
        return;
    }
    /* Nothing is zeroed until the first flush publishes where the writer
       is: an open that never appends writes nothing. */
}

/* Stop and join the zero thread (no zero write is in flight afterwards). */
static void zero_stop(evs_log *log) {
    log_zero *z = log->z;
    if (!z) return;
    pthread_mutex_lock(&z->mu);
    z->stop = 1;
    pthread_cond_signal(&z->work);
    pthread_mutex_unlock(&z->mu);
    pthread_join(z->th, NULL);
    pthread_cond_destroy(&z->idle);
    pthread_cond_destroy(&z->work);
    pthread_mutex_destroy(&z->mu);
    free(z);
    log->z = NULL;
}

int evs__log_zero_settle(evs_log *log, evs_log_zero_stats *out) {
    memset(out, 0, sizeof *out);
    log_zero *z = log->z;
    if (!z) return EVS_DONE;
    pthread_mutex_lock(&z->mu);
    uint32_t no;
    uint64_t lo, hi, serial;
    while (!z->failed && (z->busy || !z->waiting || zero_next(z, &no, &lo, &hi, &serial))) {
        if (z->waiting) pthread_cond_signal(&z->work);
        pthread_cond_wait(&z->idle, &z->mu);
    }
    out->bytes = z->bytes;
    out->writes = z->writes;
    out->failed = z->failed;
    out->done = z->done;
    pthread_mutex_unlock(&z->mu);
    return EVS_OK;
}

int evs__log_flush(evs_log *log, int sync) {
    int rc = 0;
    if (EVS_UNLIKELY(log->failed)) return log_failed_err(log);
    if (log->z && log->next) zero_publish(log);
    for (size_t i = 0; i < log->next; i++) {
        log_extent *e = &log->ext[i];
        ssize_t w = log->io->pwrite(log->io->ctx, e->seg->fd, log->buf + e->start, e->len, (off_t)e->off);
        if (EVS_UNLIKELY(w != (ssize_t)e->len)) {
            if (w < 0) {
                rc = evs__err_errno((int)w, SEGFMT " offset %" PRIu64 ": writing %zu bytes", e->seg->no, e->off,
                                    e->len);
            } else {
                rc = evs__err(EVS_EIO, SEGFMT " offset %" PRIu64 ": short write (%zd of %zu bytes)", e->seg->no,
                              e->off, w, e->len);
                log_scrub(log, e->seg, e->off, (size_t)w);
            }
            goto fail;
        }
        if (!log->unsynced_lo) log->unsynced_lo = e->seg->no;
        log->unsynced_hi = e->seg->no;
    }
    log->blen = 0;
    log->next = 0;
    atomic_store_explicit(&log->flushed_end, evs__log_end(log), memory_order_release);
    atomic_store_explicit(&log->used_bytes, log->bytes_before_cur + log->w_off, memory_order_relaxed);
    if (sync && (rc = log_sync_written(log))) return rc;
    if (EVS_UNLIKELY(log->bcap > BUF_KEEP)) {
        /* One huge batch must not pin its buffer for the life of the store. */
        uint8_t *nb = realloc(log->buf, BUF_SHRINK_TO);
        if (nb) {
            log->buf = nb;
            log->bcap = BUF_SHRINK_TO;
        }
    }
    return 0;
fail:
    return log_fail(log, rc);
}

/*
 * The flush thread (evs__log_flush_begin).  One request at a time: the
 * writer posts it (state 1) and waits for state 2 in evs__log_flush_end;
 * between the two the thread owns the log's write side, which the writer
 * leaves alone meanwhile.  Its error message travels back in msg (messages
 * are per thread).
 */
typedef struct log_flusher {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* 0 idle, 1 flush requested, 2 flushed (rc, msg) */
    int stop, sync, rc;
    char msg[512];
} log_flusher;

static void *flush_main(void *arg) {
    evs_log *log = arg;
    log_flusher *f = log->fl;
    pthread_setname_np(pthread_self(), "evs-flush");
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (f->state != 1 && !f->stop) pthread_cond_wait(&f->cv, &f->mu);
        if (f->state != 1) break;
        int sync = f->sync;
        pthread_mutex_unlock(&f->mu);
        int rc = evs__log_flush(log, sync);
        pthread_mutex_lock(&f->mu);
        f->rc = rc;
        if (rc) snprintf(f->msg, sizeof f->msg, "%s", evs_errmsg());
        f->state = 2;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

int evs__log_flush_begin(evs_log *log, int sync) {
    if (!log->fl) {
        log_flusher *f = calloc(1, sizeof *f);
        if (!f) return 0;
        pthread_mutex_init(&f->mu, NULL);
        pthread_cond_init(&f->cv, NULL);
        log->fl = f;
        if (pthread_create(&f->th, NULL, flush_main, log) != 0) {
            log->fl = NULL;
            pthread_cond_destroy(&f->cv);
            pthread_mutex_destroy(&f->mu);
            free(f);
            return 0;
        }
    }
    log_flusher *f = log->fl;
    pthread_mutex_lock(&f->mu);
    f->sync = sync;
    f->state = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return 1;
}

int evs__log_flush_end(evs_log *log) {
    log_flusher *f = log->fl;
    pthread_mutex_lock(&f->mu);
    while (f->state != 2) pthread_cond_wait(&f->cv, &f->mu);
    f->state = 0;
    int rc = f->rc;
    if (rc) evs__err(rc, "%s", f->msg);
    pthread_mutex_unlock(&f->mu);
    return rc;
}

/* Stop and join the flush thread (no flush is in flight: every begin was ended). */
static void flusher_stop(evs_log *log) {
    log_flusher *f = log->fl;
    if (!f) return;
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->th, NULL);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    log->fl = NULL;
}

int evs__log_sync(evs_log *log) {
    if (EVS_UNLIKELY(log->failed)) return log_failed_err(log);
    return log_sync_written(log);
}

void evs__log_usage(const evs_log *log, uint64_t *segments, uint64_t *bytes) {
    if (segments) *segments = atomic_load_explicit(&log->nseg, memory_order_relaxed);
    if (bytes)
        *bytes = atomic_load_explicit(&log->used_bytes, memory_order_relaxed) -
                 atomic_load_explicit(&log->reclaimed, memory_order_relaxed);
}

/* ------------------------------------------------------------ open / recovery */

static void log_free(evs_log *log) {
    if (!log) return;
    flusher_stop(log); /* before the zero thread: a flush publishes to it */
    zero_stop(log);
    if (log->slots) {
        uint32_t n = atomic_load_explicit(&log->nseg, memory_order_relaxed);
        for (uint32_t no = 1; no <= n; no++) seg_free(log, slot_get(log, no));
        munmap((void *)log->slots, log->slots_bytes);
    }
    free(log->buf);
    free(log->ext);
    free(log->dir);
    pthread_rwlock_destroy(&log->pub);
    free(log);
}

void evs__log_close(evs_log *log) {
    if (!log) return;
    zero_stop(log);
    if (!log->failed && !log->readonly && log->blen) (void)evs__log_flush(log, 0);
    log_free(log);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* "NNNNNNNN.seg" -> number; 0 if the name is anything else. */
static uint32_t seg_number(const char *name, const char *suffix) {
    for (int i = 0; i < 8; i++)
        if (name[i] < '0' || name[i] > '9') return 0;
    if (strcmp(name + 8, suffix) != 0) return 0;
    return (uint32_t)strtoul(name, NULL, 10);
}

/* List, load and map the segments; they must be numbered 1..n. */
static int log_load_segments(evs_log *log) {
    int rc = 0;
    uint32_t *nums = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(log->dir);
    if (!d) return evs__err_errno(-errno, "log: opening directory %s", log->dir);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint32_t no = seg_number(de->d_name, ".seg");
        if (!no) {
            /* A half-created segment from a crash: never real (see seg_create). */
            if (!log->readonly && seg_number(de->d_name, ".seg.tmp")) {
                char path[4096];
                if (!log_path(log, path, sizeof path, seg_number(de->d_name, ".seg.tmp"), ".tmp"))
                    log->io->unlink(log->io->ctx, path);
            }
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint32_t *nn = realloc(nums, cap * sizeof *nn);
            if (!nn) {
                rc = evs__err(EVS_ENOMEM, "log: out of memory listing %s", log->dir);
                goto out;
            }
            nums = nn;
        }
        nums[n++] = no;
    }
    if (n) qsort(nums, n, sizeof *nums, cmp_u32);
    for (size_t i = 0; i < n; i++) {
        if (nums[i] != i + 1) {
            rc = evs__err(EVS_ECORRUPT, "log %s: segment %08zu.seg is missing (the next one found is %08" PRIu32 ".seg)",
                          log->dir, i + 1, nums[i]);
            goto out;
        }
        if (nums[i] >= MAX_SEGMENTS) {
            rc = evs__err(EVS_ELIMIT, "log %s: more than %u segments", log->dir, MAX_SEGMENTS - 1);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        evs_seg *sg;
        if ((rc = seg_load(log, nums[i], &sg))) goto out;
        slot_set(log, nums[i], sg);
        atomic_store_explicit(&log->nseg, nums[i], memory_order_relaxed);
    }
out:
    closedir(d);
    free(nums);
    return rc;
}

static const char log_gap_msg[] = "gap in global positions";
static const char log_zero_msg[] = "zero bytes where a frame should be";

/* Where verification stopped, and why. */
typedef struct log_scan {
    evs_lsn good_end;      /* end of verified data: the new log end */
    uint64_t expected;     /* first_gpos the next frame must carry */
    uint64_t frames;
    const char *why;       /* NULL: data simply ended */
    evs_lsn bad_at;        /* where `why` applies */
    uint64_t want, found;  /* for a gap */
    int passed;            /* walked through `through` with the right position */
    uint64_t held_end;     /* a sound frame whose payload was refused: the position after its own... */
    evs_lsn bad_next;      /* ...and the location after it */
    char why_buf[96];      /* `why` when the payload check refused the frame */
    int zero_after;        /* it stopped at its segment's data end, and every byte after that read
                              zero, there and in the next segment if any: the zero scans after
                              the walk need not read them again */
} log_scan;

/*
 * Walk valid frames from pos.  adopt: take the first frame's position as
 * given (used when starting from a frame's synced_to).  through/through_gpos:
 * note whether the walk passes that location expecting that position.
 * check (may be NULL) judges each valid frame's payload; a refusal stops the
 * walk there like damage.
 */
static void log_walk(const evs_log *log, evs_lsn pos, uint64_t expected, int adopt, evs_lsn through,
                     uint64_t through_gpos, evs_payload_check check, void *arg, log_scan *st) {
    memset(st, 0, sizeof *st);
    st->good_end = pos;
    /* Where the walk last crossed a segment end, until a frame after it
       verifies: a gap found right there means the records that are missing
       lay at the end of the segment before (its data ends early, e.g. its
       last frames were zeroed), so the damage is named there, not at the
       sound frame that starts the next segment. */
    evs_lsn crossed = 0;
    for (;;) {
        if (pos == through && !adopt) st->passed = expected == through_gpos;
        uint32_t no = EVS_LSN_SEG(pos);
        uint64_t off = EVS_LSN_OFF(pos);
        const evs_seg *sg = slot_get(log, no);
        if (seg_data_ends(sg, off)) {
            if (!seg_zero_from(log, sg, off)) {
                st->why = log_zero_msg;
                st->bad_at = pos;
                break;
            }
            /* Cross when the next segment holds anything: if its first
               frame header was zeroed, the walk stops right there. */
            const evs_seg *nx = slot_get(log, no + 1);
            if (nx && (!seg_data_ends(nx, SEG_HDR) || !seg_zero_from(log, nx, SEG_HDR))) {
                crossed = pos;
                pos = EVS_LSN(no + 1, SEG_HDR);
                continue;
            }
            st->zero_after = 1;
            break;
        }
        frame_info fi;
        const char *why = frame_check(sg, off, &fi);
        if (!why && adopt) {
            /* The first frame after a synced point sets the expected position. */
            expected = fi.gpos;
            adopt = 0;
            if (pos == through) st->passed = expected == through_gpos;
        }
        if (!why && fi.gpos != expected) {
            why = log_gap_msg;
            st->want = expected;
            st->found = fi.gpos;
        }
        if (!why && check) {
            evs_frame f = {.payload = sg->map + off + FRAME_HDR, .len = fi.len, .count = fi.count, .flags = fi.flags,
                           .first_gpos = fi.gpos, .at = pos, .next = EVS_LSN(no, off + fi.size)};
            if (check(arg, &f, st->why_buf, sizeof st->why_buf)) {
                why = st->why_buf;
                st->held_end = fi.gpos + fi.count;
                st->bad_next = f.next;
            }
        }
        if (why) {
            st->why = why;
            st->bad_at = why == log_gap_msg && crossed ? crossed : pos;
            break;
        }
        crossed = 0;
        expected += fi.count;
        st->frames++;
        pos = st->good_end = EVS_LSN(no, off + fi.size);
    }
    st->expected = expected;
}

/*
 * Invariant 4: is there, anywhere from good_end on, a frame that verifies
 * and was written after data beyond good_end had been synced?
 */
static int log_durable_after(const evs_log *log, evs_lsn good_end, int zero_after, evs_lsn *found) {
    uint32_t n = atomic_load_explicit(&log->nseg, memory_order_relaxed);
    /* zero_after (log_scan): nothing after good_end in its segment and the next */
    for (uint32_t no = EVS_LSN_SEG(good_end) + (zero_after ? 2 : 0); no <= n; no++) {
        const evs_seg *sg = slot_get(log, no);
        uint64_t off = no == EVS_LSN_SEG(good_end) ? EVS_LSN_OFF(good_end) : SEG_HDR;
        /* no frame starts where every byte to the end is zero: look below the last non-zero word only */
        uint64_t lim = seg_last_nonzero(log, sg, off);
        for (; off < lim && off + FRAME_HDR <= sg->avail; off += 8) {
            const uint8_t *p = sg->map + off;
            /* Cheap filters first: almost every offset fails one of them. */
            uint32_t len = evs__get32(p);
            if (len == 0 || off + FRAME_HDR + (uint64_t)len > sg->avail) continue;
            if (evs__get64(p + 24) <= good_end) continue;
            frame_info fi;
            if (frame_check(sg, off, &fi) == NULL && fi.synced_to > good_end && fi.synced_to <= EVS_LSN(no, off)) {
                *found = EVS_LSN(no, off);
                return 1;
            }
        }
    }
    return 0;
}

/* Find the anchor for a `from` that is not the start: see evs__log_open. */
static int log_anchor(const evs_log *log, evs_lsn from, uint64_t from_gpos, evs_lsn *anchor) {
    uint32_t no = EVS_LSN_SEG(from);
    uint64_t off = EVS_LSN_OFF(from);
    const evs_seg *sg = slot_get(log, no);
    if (!sg || off < SEG_HDR || (off & 7) || off > sg->avail)
        return evs__err(EVS_EINDEX, SEGFMT " offset %" PRIu64 ": not a location in the log", no, off);
    frame_info fi;
    /* The frame at from, if it is the one expected there... */
    if (!seg_data_ends(sg, off) && !frame_check(sg, off, &fi) && fi.gpos == from_gpos) {
        *anchor = fi.synced_to;
        return 0;
    }
    /* ...or the frame that ends exactly at from (searching back 8 bytes at a time). */
    for (uint64_t p = off >= SEG_HDR + FRAME_HDR + 8 ? off - FRAME_HDR - 8 : 0; p >= SEG_HDR; p -= 8) {
        uint32_t len = evs__get32(sg->map + p);
        if (len && p + FRAME_HDR + align8(len) == off && !frame_check(sg, p, &fi) && fi.gpos + fi.count == from_gpos) {
            *anchor = fi.synced_to;
            return 0;
        }
    }
    return evs__err(EVS_EINDEX, SEGFMT " offset %" PRIu64 ": no frame ends or starts there with global position %" PRIu64,
                    no, off, from_gpos);
}

static int log_mkdir(evs_log *log, const char *parent) {
    if (mkdir(log->dir, 0755) == 0) {
        int rc = log->io->sync_dir(log->io->ctx, parent);
        if (rc) return evs__err_errno(rc, "log: syncing directory %s", parent);
        return 0;
    }
    if (errno == EEXIST) return 0;
    return evs__err_errno(-errno, "log: creating directory %s", log->dir);
}

/* Zero [off, end) of a segment through the file. */
static int seg_zero(evs_log *log, evs_seg *sg, uint64_t off, uint64_t end) {
    while (off < end) {
        size_t k = end - off < sizeof log_zeros ? (size_t)(end - off) : sizeof log_zeros;
        ssize_t w = log->io->pwrite(log->io->ctx, sg->fd, log_zeros, k, (off_t)off);
        if (w != (ssize_t)k)
            return w < 0 ? evs__err_errno((int)w, SEGFMT " offset %" PRIu64 ": zeroing a torn tail", sg->no, off)
                         : evs__err(EVS_EIO, SEGFMT " offset %" PRIu64 ": short write zeroing a torn tail", sg->no, off);
        off += k;
    }
    return 0;
}

/* Remove segment no (the highest one) from disk and from the table. */
static int seg_remove(evs_log *log, uint32_t no) {
    char path[4096];
    int rc;
    if ((rc = log_path(log, path, sizeof path, no, ""))) return rc;
    evs_seg *sg = slot_get(log, no);
    slot_set(log, no, NULL);
    atomic_store_explicit(&log->nseg, no - 1, memory_order_relaxed);
    seg_free(log, sg);
    if ((rc = log->io->unlink(log->io->ctx, path))) return evs__err_errno(rc, SEGFMT ": removing %s", no, path);
    /* Synced one at a time so that a crash can never leave a gap in the numbering. */
    if ((rc = log->io->sync_dir(log->io->ctx, log->dir)))
        return evs__err_errno(rc, SEGFMT ": syncing directory %s after removal", no, log->dir);
    return 0;
}

/*
 * Everything after the verified end is a torn tail: cut it (or, read-only,
 * say what would be cut).  Appends to rep.
 */
static int log_cut_tail(evs_log *log, const log_scan *st, evs_log_recovery *rec) {
    int rc;
    uint32_t eno = EVS_LSN_SEG(st->good_end);
    uint64_t eoff = EVS_LSN_OFF(st->good_end);
    evs_seg *es = slot_get(log, eno);
    uint64_t nz = st->zero_after ? eoff : seg_last_nonzero(log, es, eoff);
    /* A file cut short may end in a partial word past avail: cut that too. */
    if (es->fsize > nz) nz = es->fsize > es->avail ? es->fsize : nz;
    uint64_t dropped = nz - eoff;
    uint32_t n = atomic_load_explicit(&log->nseg, memory_order_relaxed);
    /* An all-zero segment right after the end's (made ahead of need) stays
       as the next segment; every later one goes. */
    uint32_t keep = eno;
    if (n > eno) {
        evs_seg *sg = slot_get(log, eno + 1);
        if (sg->avail == sg->size && (st->zero_after || seg_last_nonzero(log, sg, SEG_HDR) == SEG_HDR))
            keep = eno + 1;
    }
    uint32_t removed_with_data = 0;
    for (uint32_t no = keep + 1; no <= n; no++) {
        evs_seg *sg = slot_get(log, no);
        uint64_t snz = seg_last_nonzero(log, sg, SEG_HDR);
        dropped += snz - SEG_HDR;
        if (snz > SEG_HDR || sg->avail < sg->size) removed_with_data++;
    }
    uint32_t removing = n - keep;
    int short_file = es->avail < es->size;
    rec->dropped_bytes = dropped;
    if (!dropped && !removed_with_data && !short_file) {
        /* Clean: only (empty) segments past the end, e.g. two made ahead. */
        if (log->readonly) return 0;
        for (uint32_t no = n; no > keep; no--)
            if ((rc = seg_remove(log, no))) return rc;
        return 0;
    }

    char what[160];
    if (st->why == log_gap_msg)
        snprintf(what, sizeof what, "%s: expected %" PRIu64 ", found %" PRIu64, st->why, st->want, st->found);
    else
        snprintf(what, sizeof what, "%s", st->why ? st->why : "bytes after the last frame that form no frame");
    /* Read-only, the bytes after the valid end may also be what the process holding the store
       writes right now: say so rather than call them torn. */
    int k = log->readonly
                ? snprintf(rec->report, sizeof rec->report, SEGFMT " offset %" PRIu64 ": read-only, %" PRIu64
                           " bytes after the last valid frame left as they are (%s: a torn tail, or an append "
                           "the process holding the store is writing now)", eno, eoff, dropped, what)
                : snprintf(rec->report, sizeof rec->report, SEGFMT " offset %" PRIu64 ": cut a torn tail of %" PRIu64
                           " bytes (%s)", eno, eoff, dropped, what);
    if (removing && k > 0 && (size_t)k < sizeof rec->report)
        k += snprintf(rec->report + k, sizeof rec->report - (size_t)k, "; %s %" PRIu32 " later segment%s",
                      log->readonly ? "would remove" : "removed", removing, removing == 1 ? "" : "s");
    if (short_file && k > 0 && (size_t)k < sizeof rec->report)
        snprintf(rec->report + k, sizeof rec->report - (size_t)k, "; file was %" PRIu64 " of %" PRIu64 " bytes%s",
                 es->avail, es->size, log->readonly ? "" : ", extended");
    if (log->readonly) return 0;

    for (uint32_t no = n; no > keep; no--)
        if ((rc = seg_remove(log, no))) return rc;
    if (nz > eoff && (rc = seg_zero(log, es, eoff, nz))) return rc;
    if (short_file) {
        if ((rc = log->io->fallocate(log->io->ctx, es->fd, 0, (off_t)es->size)))
            return evs__err_errno(rc, SEGFMT ": extending to %" PRIu64 " bytes", eno, es->size);
        es->avail = es->fsize = es->size;
    }
    if ((rc = log->io->fdatasync(log->io->ctx, es->fd))) return evs__err_errno(rc, SEGFMT ": fdatasync", eno);
    return 0;
}

/*
 * The walk from the last durable point stopped short of the floor: the
 * frames it could not verify were acknowledged, so this is damage.  Name the
 * first bad frame (or where the data ends) and how far short it stopped.
 */
static int log_floor_err(const log_scan *st, uint64_t floor_gpos) {
    evs_lsn at = st->why ? st->bad_at : st->good_end;
    char gap[96] = "";
    if (st->why == log_gap_msg)
        snprintf(gap, sizeof gap, " (expected %" PRIu64 ", found %" PRIu64 ")", st->want, st->found);
    return evs__err(EVS_ECORRUPT, SEGFMT " offset %" PRIu32 ": %s%s; the valid records end at global position %" PRIu64
                    " (position %" PRIu64 " was stored)", EVS_LSN_SEG(at), EVS_LSN_OFF(at),
                    st->why ? st->why : "the log's data ends here", gap, st->expected - 1, floor_gpos - 1);
}

int evs__log_open(const char *dir, const evs_log_config *cfg, evs_lsn from, uint64_t from_gpos, evs_log **out,
                  evs_log_recovery *rec) {
    int rc = 0;
    evs_log_recovery local;
    if (!rec) rec = &local;
    memset(rec, 0, sizeof *rec);
    *out = NULL;
    uint64_t seg_size = cfg && cfg->segment_size ? cfg->segment_size : DEFAULT_SEGMENT_SIZE;
    seg_size = (seg_size + 4095) & ~(uint64_t)4095;
    if (seg_size < MIN_SEGMENT_SIZE || seg_size > MAX_SEGMENT_SIZE)
        return evs__err(EVS_EINVAL, "log: segment size %" PRIu64 " outside %llu..%llu", seg_size,
                        MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE);

    evs_log *log = calloc(1, sizeof *log);
    if (!log) return evs__err(EVS_ENOMEM, "log: out of memory");
    pthread_rwlockattr_t pa;
    pthread_rwlockattr_init(&pa);
    /* a publish waits only for snapshots being taken, never behind a stream of new ones */
    pthread_rwlockattr_setkind_np(&pa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&log->pub, &pa);
    pthread_rwlockattr_destroy(&pa);
    log->io = cfg && cfg->io ? cfg->io : evs__io_posix();
    log->seg_size = seg_size;
    log->readonly = cfg ? cfg->readonly : 0;
    size_t dl = strlen(dir);
    log->dir = malloc(dl + 5);
    if (!log->dir) {
        rc = evs__err(EVS_ENOMEM, "log: out of memory");
        goto fail;
    }
    memcpy(log->dir, dir, dl);
    memcpy(log->dir + dl, "/log", 5);
    /* Reserved, not committed: untouched pages of the table cost nothing. */
    log->slots_bytes = (size_t)MAX_SEGMENTS * sizeof *log->slots;
    void *sl = mmap(NULL, log->slots_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (sl == MAP_FAILED) {
        rc = evs__err_errno(-errno, "log: reserving the segment table");
        goto fail;
    }
    log->slots = sl;

    if (log->readonly) {
        struct stat st;
        if (stat(log->dir, &st) != 0) {
            rc = evs__err_errno(-errno, "log: directory %s", log->dir);
            goto fail;
        }
    } else if ((rc = log_mkdir(log, dir))) {
        goto fail;
    }
    if ((rc = log_load_segments(log))) goto fail;

    uint32_t n = atomic_load_explicit(&log->nseg, memory_order_relaxed);
    evs_lsn start = EVS_LSN(1, SEG_HDR);
    int floor = cfg && cfg->from_is_floor && from != 0 && from != start;
    if (cfg && cfg->scan_only) {
        *out = log;
        return 0;
    }
    if (n == 0) {
        if ((from != 0 && from != start) || from_gpos > 1) {
            rc = evs__err(floor ? EVS_ECORRUPT : EVS_EINDEX,
                          "log %s has no segments, but global positions up to %" PRIu64 " were stored in it",
                          log->dir, from_gpos - 1);
            goto fail;
        }
        rec->end = rec->scanned_from = start;
        rec->next_gpos = 1;
        log->next_gpos = 1;
        log->synced_to = start;
        if (!log->readonly) {
            evs_seg *sg;
            if ((rc = seg_create(log, 1, log->seg_size, 1, &sg))) goto fail;
            slot_set(log, 1, sg);
            atomic_store_explicit(&log->nseg, 1, memory_order_relaxed);
            log->cur = sg;
            log->w_off = SEG_HDR;
        }
        atomic_store_explicit(&log->flushed_end, start, memory_order_relaxed);
        atomic_store_explicit(&log->used_bytes, SEG_HDR, memory_order_relaxed);
        if (!log->readonly && cfg && cfg->zero_ahead) zero_start(log, cfg->zero_ahead);
        *out = log;
        return 0;
    }

    /* Where to start verifying.  For a `from` other than the start, the
       frame there (or the one ending there) carries synced_to, a point known
       durable when it was written: walking from that point through `from`
       proves from is a frame boundary of what is on disk now, not of data an
       index saw before a crash lost it. */
    evs_lsn scan_from = start;
    int adopt = 0;
    if (from == 0 || from == start) {
        from = start;
        if (!from_gpos) from_gpos = 1;
        if (from_gpos != 1) {
            rc = evs__err(EVS_EINDEX, "log %s starts at global position 1, not %" PRIu64, log->dir, from_gpos);
            goto fail;
        }
    } else if (log_anchor(log, from, from_gpos, &scan_from)) {
        if (!floor) {
            rc = EVS_EINDEX;
            goto fail;
        }
        /* The frame at or ending at the floor is itself damaged: only a
           walk from the start can say where the damage begins. */
        evs__err_clear();
        scan_from = start;
    } else {
        /* the frame at or before from verified; after a clean close that is enough */
        if (cfg && cfg->from_is_durable) scan_from = from;
        const evs_seg *as = slot_get(log, EVS_LSN_SEG(scan_from));
        if (scan_from < start || scan_from > from || !as || EVS_LSN_OFF(scan_from) < SEG_HDR ||
            (EVS_LSN_OFF(scan_from) & 7) || EVS_LSN_OFF(scan_from) > as->avail) {
            if (!floor) {
                rc = evs__err(EVS_EINDEX, SEGFMT " offset %" PRIu32 ": frame refers to an impossible synced location",
                              EVS_LSN_SEG(from), EVS_LSN_OFF(from));
                goto fail;
            }
            scan_from = start;
        }
        adopt = scan_from != start;
    }
    log_scan st;
    if (scan_from == from) adopt = 0;
    log_walk(log, scan_from, adopt ? 0 : (scan_from == from ? from_gpos : 1), adopt, from, from_gpos,
             cfg ? cfg->check : NULL, cfg ? cfg->check_arg : NULL, &st);
    if (!st.passed) {
        if (!floor) {
            rc = evs__err(EVS_EINDEX, SEGFMT " offset %" PRIu32 ": not a frame boundary with global position %" PRIu64
                          " of the log as it is on disk", EVS_LSN_SEG(from), EVS_LSN_OFF(from), from_gpos);
            goto fail;
        }
        rc = log_floor_err(&st, from_gpos);
        goto fail;
    }

    evs_lsn found;
    /* Read-only beside a writer (another process holds the store and appends): what it wrote
       while this walk ran looks like "valid records after damage".  But the frame found carries
       synced_to beyond the stop, so the writer had written and synced the bytes at the stop
       before it wrote that frame: a walk taken now gets past the stop unless they are damaged.
       If it does, the stop was the writer's end at that moment, which is where this reader's
       view ends (walking on would chase a busy writer).  Three walks ~1 ms apart, in case the
       writer's stores reach this CPU late.  The answer is the last look, never a fresh look
       after it: the writer may append between two.  A writable open is alone: the store's lock. */
    int after = !st.held_end && log_durable_after(log, st.good_end, st.zero_after, &found);
    for (int tries = 0; log->readonly && after && tries < 3; tries++) {
        if (tries) {
            struct timespec ms = {0, 1000000L};
            nanosleep(&ms, NULL);
        }
        log_scan more;
        log_walk(log, st.good_end, st.expected, 0, st.good_end, st.expected, cfg ? cfg->check : NULL,
                 cfg ? cfg->check_arg : NULL, &more);
        if (more.good_end != st.good_end || more.held_end) {
            /* further on, or a frame written since whose payload the check refuses (reported below) */
            more.frames += st.frames;
            more.passed = st.passed;
            st = more;
            after = 0;
            break;
        }
    }
    if (st.held_end) {
        /* a frame that verifies was written whole: not a torn tail to cut */
        rc = evs__err(EVS_ECORRUPT, SEGFMT " offset %" PRIu32 ": %s (global positions %" PRIu64 "..%" PRIu64
                      "); the log is damaged", EVS_LSN_SEG(st.bad_at), EVS_LSN_OFF(st.bad_at), st.why, st.expected,
                      st.held_end - 1);
        goto fail;
    }
    if (after) {
        uint32_t no = EVS_LSN_SEG(st.good_end);
        uint64_t off = EVS_LSN_OFF(st.good_end);
        /* Name the first bad frame: where the walk stopped (a gap right
           after a segment end is named at that end), or the end of the good data. */
        const char *why = log_zero_msg;
        char gap[96] = "";
        if (st.why) {
            no = EVS_LSN_SEG(st.bad_at);
            off = EVS_LSN_OFF(st.bad_at);
            why = st.why;
            if (why == log_gap_msg)
                snprintf(gap, sizeof gap, " (expected %" PRIu64 ", found %" PRIu64 ")", st.want, st.found);
        }
        rc = evs__err(EVS_ECORRUPT, SEGFMT " offset %" PRIu64 ": %s%s, valid records follow (" SEGFMT " offset %" PRIu32
                      "); the log is damaged in the middle", no, off, why, gap, EVS_LSN_SEG(found), EVS_LSN_OFF(found));
        goto fail;
    }
    if ((rc = log_cut_tail(log, &st, rec))) goto fail;

    uint32_t eno = EVS_LSN_SEG(st.good_end);
    log->cur = slot_get(log, eno);
    log->w_off = EVS_LSN_OFF(st.good_end);
    log->next_gpos = st.expected;
    for (uint32_t no = 1; no < eno; no++) log->bytes_before_cur += slot_get(log, no)->size;
    if (!log->readonly) {
        /* Whatever an earlier process wrote without syncing becomes durable
           now, so that synced_to in new frames tells the truth.  Segments
           with nothing dirty make this a cheap call each. */
        for (uint32_t no = 1; no <= eno; no++) {
            evs_seg *sg = slot_get(log, no);
            if ((rc = log->io->fdatasync(log->io->ctx, sg->fd))) {
                rc = evs__err_errno(rc, SEGFMT ": fdatasync at open", no);
                goto fail;
            }
        }
    }
    log->synced_to = st.good_end;
    atomic_store_explicit(&log->flushed_end, st.good_end, memory_order_relaxed);
    atomic_store_explicit(&log->used_bytes, log->bytes_before_cur + log->w_off, memory_order_relaxed);
    rec->end = st.good_end;
    rec->next_gpos = st.expected;
    rec->scanned_from = scan_from;
    rec->frames_scanned = st.frames;
    if (!log->readonly && cfg && cfg->zero_ahead) zero_start(log, cfg->zero_ahead);
    *out = log;
    return 0;
fail:
    log_free(log);
    return rc;
}

/* ------------------------------------------------------------ check */

static void check_error(evs_log_check *out, uint32_t no, uint64_t off, const char *fmt, const char *why,
                        uint64_t a, uint64_t b) {
    if (out->errors++ == 0) {
        int k = snprintf(out->first_error, sizeof out->first_error, SEGFMT " offset %" PRIu64 ": ", no, off);
        if (k > 0 && (size_t)k < sizeof out->first_error)
            snprintf(out->first_error + k, sizeof out->first_error - (size_t)k, fmt, why, a, b);
    }
}

/*
 * Could the bytes at off be a frame header written by this log, checksum
 * aside?  Used to step over damaged frames one at a time, so that adjacent
 * damaged frames are each found: a frame whose payload was hit still has a
 * sound header.  gmin..gmax bounds the first_gpos it may carry.
 */
static int check_plausible(const evs_seg *sg, uint64_t off, uint64_t lim, uint64_t gmin, uint64_t gmax) {
    const uint8_t *p = sg->map + off;
    uint32_t len = evs__get32(p);
    if (len == 0 || len > MAX_PAYLOAD || off + FRAME_HDR + align8(len) > lim) return 0;
    uint64_t gpos = evs__get64(p + 8);
    return evs__get32(p + 16) >= 1 && EVS_FRAME_FLAGS_OK(evs__get32(p + 20)) && gpos >= gmin && gpos <= gmax &&
           evs__get64(p + 24) <= EVS_LSN(sg->no, off);
}

/* After damage at off: the next offset in (off, lim) holding a frame that
   verifies or a plausible header at or past position gmin; lim if none. */
static uint64_t check_resync(const evs_seg *sg, uint64_t off, uint64_t lim, uint64_t gmin) {
    frame_info fi;
    for (off += 8; off + FRAME_HDR <= lim; off += 8) {
        uint32_t len = evs__get32(sg->map + off);
        if (len == 0 || off + FRAME_HDR + (uint64_t)len > lim) continue;
        if (!frame_check(sg, off, &fi) || check_plausible(sg, off, lim, gmin, gmin + (1u << 24))) return off;
    }
    return lim;
}

int evs__log_check(evs_log *log, evs_frame_cb cb, void *arg, evs_log_check *out) {
    return evs__log_check_at(log, UINT64_MAX, 0, cb, arg, out);
}

int evs__log_check_at(evs_log *log, uint64_t gen, evs_lsn upto, evs_frame_cb cb, void *arg, evs_log_check *out) {
    evs_log_check local;
    if (!out) out = &local;
    memset(out, 0, sizeof *out);
    evs_lsn end = atomic_load_explicit(&log->flushed_end, memory_order_acquire);
    if (upto && upto < end) end = upto;
    uint32_t n = atomic_load_explicit(&log->nseg, memory_order_relaxed);
    uint32_t eno = EVS_LSN_SEG(end);
    out->segments = n;
    uint64_t expected = 1;
    int resynced = 0; /* expected is only a lower bound after skipping damage */
    uint64_t prev_end = 0; /* where the previous segment's data ended (see log_walk's `crossed`) */
    for (uint32_t no = 1; no <= eno && no <= n; no++) {
        const evs_seg *sg = seg_version(log, no, gen);
        uint64_t lim = no == eno ? EVS_LSN_OFF(end) : sg->avail;
        uint64_t off = SEG_HDR;
        while (off < lim && off + FRAME_HDR <= sg->avail) {
            frame_info fi;
            if (evs__get32(sg->map + off) == 0) {
                /* The end of this segment's data if all the rest is zero
                   (invariant 3); in the end's segment, below the end, never. */
                if (no < eno && seg_zero_from(log, sg, off)) break;
                check_error(out, no, off, "%s", log_zero_msg, 0, 0);
                off = check_resync(sg, off, lim, expected);
                resynced = 1;
                continue;
            }
            const char *why = frame_check(sg, off, &fi);
            if (why) {
                check_error(out, no, off, "%s", why, 0, 0);
                /* A sound header (only the contents were hit) says where the
                   next frame is and what it must carry; believe it if the
                   bytes there agree, else search. */
                const uint8_t *p = sg->map + off;
                uint64_t next = off + FRAME_HDR + align8(evs__get32(p));
                uint64_t after = evs__get64(p + 8) + evs__get32(p + 16);
                int sound = check_plausible(sg, off, lim, expected, resynced ? expected + (1u << 24) : expected);
                if (sound && (next >= lim || seg_data_ends(sg, next) || !frame_check(sg, next, &fi) ||
                              check_plausible(sg, next, lim, after, after))) {
                    off = next;
                    expected = after;
                    resynced = 0;
                } else {
                    uint64_t to = check_resync(sg, off, lim, expected);
                    /* The search stepped past where this frame's sound header
                       says the next one starts: that one is damaged too (its
                       header), and counts as an error of its own. */
                    if (sound && next + FRAME_HDR <= to && next < lim)
                        check_error(out, no, next, "%s", "damaged frame header", 0, 0);
                    off = to;
                    resynced = 1;
                }
                continue;
            }
            if (fi.gpos != expected && !resynced) {
                /* a gap at a segment's first frame: what is missing ended the segment before */
                uint32_t at_no = off == SEG_HDR && no > 1 ? no - 1 : no;
                check_error(out, at_no, at_no == no ? off : prev_end, "%s: expected %" PRIu64 ", found %" PRIu64,
                            log_gap_msg, expected, fi.gpos);
            }
            resynced = 0;
            expected = fi.gpos + fi.count;
            out->frames++;
            out->events += fi.count;
            if (cb) {
                evs_frame f = {.payload = sg->map + off + FRAME_HDR,
                               .len = fi.len,
                               .count = fi.count,
                               .flags = fi.flags,
                               .first_gpos = fi.gpos,
                               .at = EVS_LSN(no, off),
                               .next = EVS_LSN(no, off + fi.size)};
                int rc = cb(arg, &f);
                if (rc) return rc;
            }
            off += fi.size;
        }
        prev_end = off;
    }
    /* Damage is reported in *out, not as the return value (log.h): the
       caller wants the counts and the first error either way. */
    return EVS_OK;
}

/*
 * The store calls this when something outside the log (the index) failed
 * after frames were buffered: those frames were never acknowledged, so they
 * must never reach the file, not even at close.
 */
void evs__log_poison(evs_log *log, int code) {
    if (log) (void)log_fail(log, code);
}

/* ------------------------------------------------------------ repair */

/*
 * After damage at `at`: the next frame that verifies with its segment's
 * salt, carries a position >= gmin and a plausible synced_to, searching
 * 8 bytes at a time through this and every later segment.  0 if none.
 */
static evs_lsn repair_resync(const evs_log *log, evs_lsn at, uint64_t gmin, frame_info *out) {
    uint32_t n = atomic_load_explicit(&log->nseg, memory_order_relaxed);
    for (uint32_t no = EVS_LSN_SEG(at); no <= n; no++) {
        const evs_seg *sg = slot_get(log, no);
        uint64_t off = no == EVS_LSN_SEG(at) ? EVS_LSN_OFF(at) : SEG_HDR;
        for (; off + FRAME_HDR <= sg->avail; off += 8) {
            uint32_t len = evs__get32(sg->map + off);
            if (len == 0 || off + FRAME_HDR + (uint64_t)len > sg->avail) continue;
            if (!frame_check(sg, off, out) && out->gpos >= gmin && out->synced_to <= EVS_LSN(no, off))
                return EVS_LSN(no, off);
        }
    }
    return 0;
}

int evs__log_damage_scan(evs_log *log, evs_payload_check check, void *arg, evs_log_damage **out, size_t *nout,
                         uint64_t *next_gpos, evs_lsn *end) {
    *out = NULL;
    *nout = 0;
    evs_log_damage *a = NULL;
    size_t n = 0, cap = 0;
    evs_lsn pos = EVS_LSN(1, SEG_HDR);
    uint64_t expected = 1;
    *end = pos;
    if (atomic_load_explicit(&log->nseg, memory_order_relaxed) == 0) {
        *next_gpos = 1;
        return EVS_OK;
    }
    for (;;) {
        log_scan st;
        log_walk(log, pos, expected, 0, 0, 0, check, arg, &st);
        expected = st.expected;
        *end = st.good_end;
        int hole = 0;
        if (!st.why) {
            /* The data ends, yet a later frame proves that bytes past the end
               had been synced (open calls this damage in the middle): a hole,
               e.g. a segment's frames all zeroed.  Otherwise it is the end. */
            evs_lsn later;
            if (!log_durable_after(log, st.good_end, st.zero_after, &later)) break;
            st.why = log_zero_msg;
            st.bad_at = st.good_end;
            hole = 1;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            evs_log_damage *na = realloc(a, cap * sizeof *na);
            if (!na) {
                free(a);
                return evs__err(EVS_ENOMEM, "log: out of memory listing damage");
            }
            a = na;
        }
        evs_log_damage *d = &a[n++];
        memset(d, 0, sizeof *d);
        d->at = st.bad_at;
        d->good_end = st.good_end;
        d->expected = expected;
        d->held_end = st.held_end;
        if (st.why == log_gap_msg)
            snprintf(d->why, sizeof d->why, "%s: expected %" PRIu64 ", found %" PRIu64, st.why, st.want, st.found);
        else
            snprintf(d->why, sizeof d->why, "%s", st.why);
        frame_info fi;
        /* a frame with an unexpected position may itself be where the log resumes; after a
           sound frame whose payload was refused, the search starts where it ends */
        evs_lsn from = st.why == log_gap_msg || hole ? st.bad_at : st.held_end ? st.bad_next : st.bad_at + 8;
        evs_lsn r = repair_resync(log, from, expected, &fi);
        evs_lsn ev;
        d->synced_beyond = log_durable_after(log, st.good_end, 0, &ev);
        if (!r) break; /* the tail */
        d->resume = r;
        d->resume_gpos = fi.gpos;
        pos = r;
        expected = fi.gpos;
    }
    *out = a;
    *nout = n;
    *next_gpos = expected;
    return EVS_OK;
}

uint64_t evs__log_segment_size(const evs_log *log, uint32_t no) {
    const evs_seg *sg = slot_get(log, no);
    return sg ? sg->size : 0;
}

uint32_t evs__log_segments(const evs_log *log) { return atomic_load_explicit(&log->nseg, memory_order_relaxed); }

int evs__log_repair_zero(evs_log *log, evs_lsn from, uint64_t to_off) {
    evs_seg *sg = slot_get(log, EVS_LSN_SEG(from));
    if (!sg || log->readonly) return evs__err(EVS_EINVAL, "log: cannot write segment %" PRIu32, EVS_LSN_SEG(from));
    if (to_off > sg->size) to_off = sg->size;
    return seg_zero(log, sg, EVS_LSN_OFF(from), to_off);
}

int evs__log_repair_frame_fits(const evs_log *log, evs_lsn at, uint64_t size, uint32_t count, size_t plen) {
    const evs_seg *sg = slot_get(log, EVS_LSN_SEG(at));
    uint64_t off = EVS_LSN_OFF(at);
    if (!sg) return evs__err(EVS_EINVAL, "log: no segment %" PRIu32, EVS_LSN_SEG(at));
    if (count == 0)
        return evs__err(EVS_EINVAL, SEGFMT " offset %" PRIu64 ": a frame must hold at least one position", sg->no, off);
    if (size < FRAME_HDR + 8 || (size & 7) || off + size > sg->size || size - FRAME_HDR < plen ||
        size - FRAME_HDR > MAX_PAYLOAD)
        return evs__err(EVS_ELIMIT, SEGFMT " offset %" PRIu64 ": no room for a %" PRIu64 "-byte frame holding %zu bytes",
                        sg->no, off, size, plen);
    return EVS_OK;
}

int evs__log_repair_frame(evs_log *log, evs_lsn at, uint64_t size, uint64_t first_gpos, uint32_t count,
                          uint32_t flags, const uint8_t *payload, size_t plen) {
    evs_seg *sg = slot_get(log, EVS_LSN_SEG(at));
    uint64_t off = EVS_LSN_OFF(at);
    if (!sg || log->readonly) return evs__err(EVS_EINVAL, "log: cannot write segment %" PRIu32, EVS_LSN_SEG(at));
    int rc = evs__log_repair_frame_fits(log, at, size, count, plen);
    if (rc) return rc;
    uint32_t len = (uint32_t)(size - FRAME_HDR);
    uint8_t h[FRAME_HDR];
    memset(h, 0, sizeof h);
    evs__put32(h, len);
    evs__put64(h + 8, first_gpos);
    evs__put32(h + 16, count);
    evs__put32(h + 20, flags);
    evs__put64(h + 24, at); /* nothing after it is claimed durable */
    uint32_t c = evs__crc32c(0, sg->salt, 8);
    c = evs__crc32c(c, h, 4);
    c = evs__crc32c(c, h + 8, 24);
    c = evs__crc32c(c, payload, plen);
    for (uint64_t left = len - plen; left;) {
        size_t k = left < sizeof log_zeros ? (size_t)left : sizeof log_zeros;
        c = evs__crc32c(c, log_zeros, k);
        left -= k;
    }
    evs__put32(h + 4, c);
    if (sg->fsize < sg->size && (rc = log->io->fallocate(log->io->ctx, sg->fd, 0, (off_t)sg->size)))
        return evs__err_errno(rc, SEGFMT ": extending to %" PRIu64 " bytes", sg->no, sg->size);
    if ((rc = seg_zero(log, sg, off + FRAME_HDR + plen, off + size))) return rc;
    ssize_t w = log->io->pwrite(log->io->ctx, sg->fd, payload, plen, (off_t)(off + FRAME_HDR));
    if (w == (ssize_t)plen) w = log->io->pwrite(log->io->ctx, sg->fd, h, FRAME_HDR, (off_t)off) == FRAME_HDR ? w : -EIO;
    if (w != (ssize_t)plen)
        return w < 0 ? evs__err_errno((int)w, SEGFMT " offset %" PRIu64 ": writing a repair frame", sg->no, off)
                     : evs__err(EVS_EIO, SEGFMT " offset %" PRIu64 ": short write of a repair frame", sg->no, off);
    return EVS_OK;
}

int evs__log_repair_sync(evs_log *log) {
    uint32_t n = atomic_load_explicit(&log->nseg, memory_order_relaxed);
    for (uint32_t no = 1; no <= n; no++) {
        evs_seg *sg = slot_get(log, no);
        int rc = log->io->fdatasync(log->io->ctx, sg->fd);
        if (rc) return evs__err_errno(rc, SEGFMT ": fdatasync", no);
    }
    return EVS_OK;
}

/* ------------------------------------------------------------ scavenge
 *
 * SCAVENGE (driven by src/store/scavenge.c).  A sealed segment is rewritten
 * whole into NNNNNNNN.seg.scav: the same number and salt, header bytes
 * 48..51 (`ver`) one more than the segment it replaces, the size exactly
 * what its frames take (no preallocated tail: the data ends where the file
 * does, invariant 1).  Frames are written with the segment's salt; a frame
 * whose location moved gets synced_to = the start of its segment (every
 * earlier segment was durable, and the file is fsync'd before it is
 * renamed in), one that stays where it was keeps its bytes exactly.  Then
 * the file is renamed over the segment and the directory synced.
 *
 * Readers that hold index entries from before the swap must keep reading
 * the old bytes: every segment struct carries the generation from which it
 * is current (`gen`) and a pointer to the version it replaced (`older`).
 * A reader pins the log's generation when it takes its index snapshot (both
 * under `pub`, shared), and reads the newest version not newer than its
 * pin.  The scavenger commits the index and publishes the new version with
 * the generation bumped under `pub` held alone, so a snapshot and a pin
 * always describe the same moment.  An old version is unmapped (and its
 * blocks freed by the file system, the file being unlinked by the rename)
 * once no pinned generation may still need it (evs__log_reap).  Pins count
 * in PIN_SLOTS counters by generation modulo PIN_SLOTS; the scavenger never
 * bumps the generation onto a slot a live reader still holds.
 */

void evs__log_pub_rlock(evs_log *log) { pthread_rwlock_rdlock(&log->pub); }
void evs__log_pub_runlock(evs_log *log) { pthread_rwlock_unlock(&log->pub); }
void evs__log_pub_wlock(evs_log *log) { pthread_rwlock_wrlock(&log->pub); }
void evs__log_pub_wunlock(evs_log *log) { pthread_rwlock_unlock(&log->pub); }

uint64_t evs__log_pin(evs_log *log) {
    uint64_t g = atomic_load(&log->gen);
    atomic_fetch_add(&log->pins[g % PIN_SLOTS], 1);
    return g;
}

void evs__log_unpin(evs_log *log, uint64_t gen) { atomic_fetch_sub(&log->pins[gen % PIN_SLOTS], 1); }

int evs__log_gen_room(evs_log *log) {
    uint64_t g = atomic_load(&log->gen);
    return atomic_load(&log->pins[(g + 1) % PIN_SLOTS]) == 0;
}

uint64_t evs__log_reclaimed(const evs_log *log) { return atomic_load_explicit(&log->reclaimed, memory_order_relaxed); }

void evs__log_reap(evs_log *log) {
    /* the oldest pinned generation (none: the current one) */
    evs__log_pub_wlock(log);
    uint64_t g = atomic_load(&log->gen), minp = g;
    for (uint64_t k = 0; k < PIN_SLOTS && k <= g; k++)
        if (atomic_load(&log->pins[(g - k) % PIN_SLOTS])) minp = g - k;
    evs__log_pub_wunlock(log);
    uint32_t n = atomic_load_explicit(&log->nseg, memory_order_relaxed);
    for (uint32_t no = 1; no <= n; no++) {
        /* readers pinned at minp or later stop at the first version not newer than their pin */
        for (evs_seg *cur = slot_get(log, no); cur; cur = atomic_load(&cur->older)) {
            if (cur->gen <= minp) {
                evs_seg *old = atomic_exchange(&cur->older, NULL);
                seg_free(log, old);
                break;
            }
        }
    }
}

evs_lsn evs__log_frame_synced_to(const evs_frame *f) { return evs__get64(f->payload - FRAME_HDR + 24); }

int evs__log_seg_frames(evs_log *log, uint32_t no, evs_frame_cb cb, void *arg) {
    const evs_seg *sg = slot_get(log, no);
    if (!sg) return evs__err(EVS_EINVAL, SEGFMT ": no such segment", no);
    uint64_t off = SEG_HDR;
    while (!seg_data_ends(sg, off)) {
        frame_info fi;
        const char *why = frame_check(sg, off, &fi);
        if (why) return evs__err(EVS_ECORRUPT, SEGFMT " offset %" PRIu64 ": %s", no, off, why);
        evs_frame f = {.payload = sg->map + off + FRAME_HDR, .len = fi.len, .count = fi.count, .flags = fi.flags,
                       .first_gpos = fi.gpos, .at = EVS_LSN(no, off), .next = EVS_LSN(no, off + fi.size)};
        int rc = cb(arg, &f);
        if (rc) return rc;
        off += fi.size;
    }
    if (!seg_zero_from(log, sg, off))
        return evs__err(EVS_ECORRUPT, SEGFMT " offset %" PRIu64 ": %s", no, off, log_zero_msg);
    return EVS_OK;
}

uint64_t evs__log_frame_size(uint32_t len) { return FRAME_HDR + align8(len); }
uint64_t evs__log_header_size(void) { return SEG_HDR; }

struct evs_log_segw {
    evs_log *log;
    uint32_t no, ver;
    int fd, installed;
    uint64_t size, off, written;
    uint8_t salt[8];
    uint8_t *buf;
    size_t blen, bcap;
    evs_seg *seg;         /* mapped by finish; the log's once published */
    char tmp[4096], path[4096];
};

#define SEGW_BUF (1u << 20)

int evs__log_segw_begin(evs_log *log, uint32_t no, uint64_t size, evs_log_segw **out) {
    int rc;
    *out = NULL;
    const evs_seg *sg = slot_get(log, no);
    if (!sg || log->readonly) return evs__err(EVS_EINVAL, SEGFMT ": cannot rewrite it", no);
    if (size < SEG_HDR + FRAME_HDR || size > sg->size || (size & 7))
        return evs__err(EVS_EINVAL, SEGFMT ": a rewrite of %" PRIu64 " bytes is impossible", no, size);
    evs_log_segw *w = calloc(1, sizeof *w);
    if (!w) return evs__err(EVS_ENOMEM, SEGFMT ": out of memory", no);
    w->log = log;
    w->no = no;
    w->ver = sg->ver + 1;
    w->size = size;
    w->fd = -1;
    memcpy(w->salt, sg->salt, 8);
    if ((rc = log_path(log, w->tmp, sizeof w->tmp, no, ".scav")) || (rc = log_path(log, w->path, sizeof w->path, no, "")))
        goto fail;
    if (!(w->buf = malloc(SEGW_BUF + 64))) {
        rc = evs__err(EVS_ENOMEM, SEGFMT ": out of memory", no);
        goto fail;
    }
    w->bcap = SEGW_BUF;
    w->fd = log->io->open(log->io->ctx, w->tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (w->fd < 0) {
        rc = evs__err_errno(w->fd, SEGFMT ": creating %s", no, w->tmp);
        w->fd = -1;
        goto fail;
    }
    uint8_t *h = w->buf;
    memcpy(h, sg->map, SEG_HDR);
    evs__put32(h + 48, w->ver);
    evs__put64(h + 40, size);
    evs__put32(h + 60, evs__crc32c(0, h, 60));
    w->blen = SEG_HDR;
    w->off = SEG_HDR;
    *out = w;
    return EVS_OK;
fail:
    evs__log_segw_abort(w);
    return rc;
}

static int segw_flush(evs_log_segw *w) {
    if (!w->blen) return EVS_OK;
    ssize_t k = w->log->io->pwrite(w->log->io->ctx, w->fd, w->buf, w->blen, (off_t)w->written);
    if (k != (ssize_t)w->blen)
        return k < 0 ? evs__err_errno((int)k, SEGFMT ": writing %s", w->no, w->tmp)
                     : evs__err(EVS_EIO, SEGFMT ": short write to %s", w->no, w->tmp);
    w->written += w->blen;
    w->blen = 0;
    return EVS_OK;
}

int evs__log_segw_frame(evs_log_segw *w, const uint8_t *payload, uint32_t len, uint64_t first_gpos, uint32_t count,
                        uint32_t flags, evs_lsn synced_to, evs_lsn *where) {
    uint64_t fsize = FRAME_HDR + align8(len);
    if (len == 0 || count == 0 || !EVS_FRAME_FLAGS_OK(flags) || w->off + fsize > w->size)
        return evs__err(EVS_EINVAL, SEGFMT ": frame at global position %" PRIu64 " does not fit the rewrite", w->no,
                        first_gpos);
    evs_lsn at = EVS_LSN(w->no, w->off);
    if (synced_to > at) synced_to = EVS_LSN(w->no, SEG_HDR);
    uint8_t h[FRAME_HDR];
    evs__put32(h, len);
    evs__put64(h + 8, first_gpos);
    evs__put32(h + 16, count);
    evs__put32(h + 20, flags);
    evs__put64(h + 24, synced_to);
    uint32_t c = evs__crc32c(0, w->salt, 8);
    c = evs__crc32c(c, h, 4);
    c = evs__crc32c(c, h + 8, 24);
    c = evs__crc32c(c, payload, len);
    evs__put32(h + 4, c);
    static const uint8_t zeros[8];
    const uint8_t *parts[3] = {h, payload, zeros};
    size_t lens[3] = {FRAME_HDR, len, (size_t)(fsize - FRAME_HDR - len)};
    for (int i = 0; i < 3; i++) {
        size_t done = 0;
        while (done < lens[i]) {
            if (w->blen == w->bcap) {
                int rc = segw_flush(w);
                if (rc) return rc;
            }
            size_t k = lens[i] - done < w->bcap - w->blen ? lens[i] - done : w->bcap - w->blen;
            memcpy(w->buf + w->blen, parts[i] + done, k);
            w->blen += k;
            done += k;
        }
    }
    w->off += fsize;
    if (where) *where = at;
    return EVS_OK;
}

int evs__log_segw_finish(evs_log_segw *w) {
    int rc;
    const evs_io *io = w->log->io;
    if (w->off != w->size)
        return evs__err(EVS_EINVAL, SEGFMT ": rewrite holds %" PRIu64 " bytes, %" PRIu64 " were planned", w->no, w->off,
                        w->size);
    if ((rc = segw_flush(w))) return rc;
    if ((rc = io->fsync(io->ctx, w->fd))) return evs__err_errno(rc, SEGFMT ": fsync of %s", w->no, w->tmp);
    evs_seg *sg = calloc(1, sizeof *sg);
    if (!sg) return evs__err(EVS_ENOMEM, SEGFMT ": out of memory", w->no);
    sg->no = w->no;
    sg->ver = w->ver;
    sg->fd = -1;
    sg->size = sg->avail = sg->fsize = w->size;
    memcpy(sg->salt, w->salt, 8);
    void *map;
    if ((rc = io->map(io->ctx, w->fd, (size_t)w->size, &map))) {
        free(sg);
        return evs__err_errno(rc, SEGFMT ": mapping %s", w->no, w->tmp);
    }
    sg->map = map;
    sg->fd = w->fd;
    w->fd = -1;
    w->seg = sg;
    return EVS_OK;
}

int evs__log_segw_install(evs_log_segw *w) {
    const evs_io *io = w->log->io;
    int rc;
    if (!w->seg) return evs__err(EVS_EINVAL, SEGFMT ": rewrite not finished", w->no);
    if ((rc = io->rename(io->ctx, w->tmp, w->path)))
        return evs__err_errno(rc, SEGFMT ": renaming %s into place", w->no, w->tmp);
    w->installed = 1;
    if ((rc = io->sync_dir(io->ctx, w->log->dir)))
        return evs__err_errno(rc, SEGFMT ": syncing directory %s", w->no, w->log->dir);
    return EVS_OK;
}

void evs__log_segw_publish(evs_log_segw *w) {
    evs_log *log = w->log;
    evs_seg *old = slot_get(log, w->no), *sg = w->seg;
    sg->gen = atomic_load(&log->gen) + 1;
    atomic_store(&sg->older, old);
    slot_set(log, w->no, sg);
    atomic_store(&log->gen, sg->gen);
    atomic_fetch_add(&log->reclaimed, old->size - sg->size);
    w->seg = NULL;
}

uint64_t evs__log_segw_written(const evs_log_segw *w) { return w->off; }
uint32_t evs__log_segw_version(const evs_log_segw *w) { return w->ver; }

void evs__log_segw_abort(evs_log_segw *w) {
    if (!w) return;
    if (w->seg) seg_free(w->log, w->seg);
    if (w->fd >= 0) w->log->io->close(w->log->io->ctx, w->fd);
    if (!w->installed && w->tmp[0]) w->log->io->unlink(w->log->io->ctx, w->tmp);
    free(w->buf);
    free(w);
}

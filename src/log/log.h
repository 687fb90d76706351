/*
 * log.h — the segmented, CRC-framed, append-only log (internal API).
 *
 * The log knows frames, not events: a frame is an opaque payload (one
 * atomic append, encoded by src/log/record.c) plus the global position of
 * its first event and its event count.  The log guarantees that frames are
 * gapless in global position (each frame's first_gpos equals the previous
 * frame's first_gpos + count), that a frame is returned only if its CRC
 * verifies, and that a torn tail is cut back to the last whole frame at open.
 * The on-disk format is written at the top of log.c and in docs/format.md.
 *
 * Thread rules: one writer thread calls evs__log_append / flush / sync;
 * any number of threads may call evs__log_read concurrently with it, for
 * locations below the end the writer has published to them (the store
 * publishes after a flush).  Segment mappings stay valid until close.
 *
 * A location (evs_lsn) packs the segment number in the high 32 bits and the
 * byte offset in the segment in the low 32 bits.
 */
#ifndef EVS_LOG_H
#define EVS_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "io/io.h"

typedef uint64_t evs_lsn;
#define EVS_LSN(seg, off) (((uint64_t)(seg) << 32) | (uint32_t)(off))
#define EVS_LSN_SEG(l) ((uint32_t)((l) >> 32))
#define EVS_LSN_OFF(l) ((uint32_t)(l))

typedef struct evs_log evs_log;
typedef struct evs_frame evs_frame;

/*
 * Judges the payload of a frame that verifies (the log itself never looks
 * inside payloads; src/log/record.c's evs__frame_payload_check is the one
 * judge): 0 to accept it, nonzero to refuse it, with the reason in why.
 */
typedef int (*evs_payload_check)(void *arg, const evs_frame *f, char *why, size_t cap);

typedef struct evs_log_config {
    const evs_io *io;          /* NULL: evs__io_posix() */
    uint64_t segment_size;     /* bytes per segment file, preallocated */
    int readonly;              /* map and read only: no recovery writes */
    /* The caller knows every byte before `from` is durable (the last session
       synced the log and closed cleanly): verification starts at `from`
       instead of at the synced point recorded in the frame before it. */
    int from_is_durable;
    /* Every frame up to `from` was acknowledged (the index holds it): if the
       log does not verify through `from`, that is damage, never a torn
       tail.  Open then fails with EVS_ECORRUPT naming the first bad frame
       and changes nothing, instead of returning EVS_EINDEX. */
    int from_is_floor;
    /* Map and load the segments only: no verification, no recovery, no
       writes (evstore repair scans the log itself).  Implies readonly. */
    int scan_only;
    /* Optional: every frame verified at open must also pass this, or open
       fails with EVS_ECORRUPT naming it before it changes anything (a frame
       that verifies was written whole, so it is never cut as a torn tail). */
    evs_payload_check check;
    void *check_arg;
    /* Bytes after the writer's end that a background thread keeps written
       with real zeros and synced, so that appends overwrite instead of
       converting unwritten extents (ZERO-AHEAD in log.c).  0: off.  Only
       for a writable log; its calls go through io like every other. */
    uint64_t zero_ahead;
} evs_log_config;

/* What the store asks for when it syncs every commit (EVS_DURABILITY_SYNC). */
#define EVS_LOG_ZERO_AHEAD (2ull << 20)

typedef struct evs_log_recovery {
    evs_lsn end;               /* where the next frame will go */
    uint64_t next_gpos;        /* first_gpos the next frame must carry */
    evs_lsn scanned_from;      /* where verification started */
    uint64_t frames_scanned;   /* valid frames found from scanned_from to end */
    uint64_t dropped_bytes;    /* torn/corrupt tail bytes cut off (0: clean) */
    char report[512];          /* human-readable, "" when clean */
} evs_log_recovery;

/*
 * Open the log in dir (creating the first segment if there is none and not
 * readonly).  Verification starts at `from` (a frame boundary the caller
 * knows to be valid, with from_gpos the first_gpos of the frame there; 0/1
 * for the very start) and runs to the end: a torn or corrupt tail with no
 * valid frame after it is cut off (zeroed and synced, later empty segments
 * removed) and described in rec->report.  A bad frame followed by valid ones
 * is corruption in the middle: EVS_ECORRUPT with segment and offset in the
 * message, nothing changed.  If `from` is not a valid frame boundary (an
 * index ahead of the log), returns EVS_EINDEX so the caller can rebuild from
 * the start, or, with cfg->from_is_floor, EVS_ECORRUPT (see there).
 * Ownership: on success *out is the caller's, released with evs__log_close.
 */
int evs__log_open(const char *dir, const evs_log_config *cfg, evs_lsn from, uint64_t from_gpos,
                  evs_log **out, evs_log_recovery *rec);

/*
 * Zero-ahead, for tests and benchmarks: wait until the zero thread has
 * nothing left to do (or has stopped after a failure), then report what it
 * did.  done: zeros written and synced up to there.  EVS_DONE when the log
 * runs without zero-ahead.
 */
typedef struct evs_log_zero_stats {
    uint64_t bytes, writes;
    int failed;                /* the -errno that stopped it, 0 while it runs */
    evs_lsn done;
} evs_log_zero_stats;
int evs__log_zero_settle(evs_log *log, evs_log_zero_stats *out);

/* Flush buffered frames (no sync), unmap, close.  NULL is a no-op. */
void evs__log_close(evs_log *log);

/* The location of the very first frame of the log (segment 1, after its header). */
evs_lsn evs__log_start(const evs_log *log);

/*
 * Writer: copy one frame into the write buffer, rolling to a new segment
 * when it does not fit (a frame larger than a segment gets a segment of its
 * own).  first_gpos must equal the log's next_gpos.  *where receives the
 * frame's location.  Nothing reaches the file until evs__log_flush.
 */
int evs__log_append(evs_log *log, const void *payload, uint32_t len, uint64_t first_gpos,
                    uint32_t count, evs_lsn *where);

/* The same with frame flags (EVS_FRAME_LOST for repair's placeholders). */
int evs__log_append_flags(evs_log *log, const void *payload, uint32_t len, uint64_t first_gpos, uint32_t count,
                          uint32_t flags, evs_lsn *where);

/*
 * Writer: where the buffered frames end, so that frames appended after it
 * can be taken back before they are flushed (a batch the index could not
 * take, see store.c).  evs__log_rewind forgets every frame appended since
 * the mark; the mark must be newer than the last flush.
 */
typedef struct evs_log_mark {
    void *cur;
    uint64_t w_off, next_gpos, bytes_before_cur;
    size_t blen, next, last_len;
    int ahead_failed;
} evs_log_mark;
void evs__log_mark(const evs_log *log, evs_log_mark *m);
void evs__log_rewind(evs_log *log, const evs_log_mark *m);

/*
 * Writer: write everything buffered (one pwrite per touched segment) and,
 * when sync is nonzero, fdatasync every touched segment.  On any failure the
 * log enters a sticky failed state: every later append/flush returns
 * EVS_EFAILED, and nothing buffered may be acknowledged.
 */
int evs__log_flush(evs_log *log, int sync);

/*
 * Writer: the same flush (write, then fdatasync) run by the log's flush
 * thread while the caller goes on with work that does not touch the log
 * (the store's index entries for the same batch), so the two overlap.
 * evs__log_flush_begin returns 1 when the flush was handed over, 0 when it
 * was not (the thread could not be started): the caller then calls
 * evs__log_flush itself.  After a 1, the caller must call
 * evs__log_flush_end, which waits and returns what evs__log_flush would
 * have returned (with its message), before it calls anything else on the
 * log.  The thread starts at the first hand-over and stops at close.
 */
int evs__log_flush_begin(evs_log *log, int sync);
int evs__log_flush_end(evs_log *log);

/*
 * Writer: enter the sticky failed state on behalf of the caller (a failure
 * outside the log after frames were buffered): nothing buffered is ever
 * written, and later appends return EVS_EFAILED.
 */
void evs__log_poison(evs_log *log, int code);

/* Writer: fdatasync whatever was flushed but not yet synced (batch mode). */
int evs__log_sync(evs_log *log);

/* Location just past the last appended frame, and the next global position. */
evs_lsn evs__log_end(const evs_log *log);
uint64_t evs__log_next_gpos(const evs_log *log);

/* Frame flags.  LOST: the frame stands for records that `evstore repair`
   removed; its payload describes them (src/store/record.c), its positions
   stay taken. */
#define EVS_FRAME_LOST 1u
/* SCAVENGED, always with LOST (flags 3): the frame stands for records that
   scavenge removed because stream metadata hid them (src/store/scavenge.c);
   the payload is a LOST payload, so everything that handles LOST frames
   handles these, and messages can tell the two apart. */
#define EVS_FRAME_SCAVENGED 2u
#define EVS_FRAME_FLAGS_OK(f) ((f) == 0 || (f) == EVS_FRAME_LOST || (f) == (EVS_FRAME_LOST | EVS_FRAME_SCAVENGED))

struct evs_frame {
    const uint8_t *payload;    /* points into the mapping: valid until close */
    uint32_t len;
    uint32_t count;
    uint32_t flags;            /* EVS_FRAME_LOST or 0 */
    uint64_t first_gpos;
    evs_lsn at;                /* this frame */
    evs_lsn next;              /* the frame after it (may be in the next segment) */
};

/*
 * Reader: the frame at `at`, which must be below `limit` (the published
 * end).  Crosses to the next segment when `at` is a segment's end.  Returns
 * EVS_OK, EVS_DONE when at >= limit, or EVS_ECORRUPT (message names the
 * segment file and offset) when the frame does not verify.
 */
int evs__log_read(evs_log *log, evs_lsn at, evs_lsn limit, evs_frame *out);
/* The same for a reader pinned at generation gen (see "segment versions" below). */
int evs__log_read_at(evs_log *log, uint64_t gen, evs_lsn at, evs_lsn limit, evs_frame *out);
/*
 * A hint, never an access: start loading the first bytes of the frame at
 * `at` into the CPU's cache, so that a reader that knows where its next
 * frames are (a stream read, from the index) waits for memory once per
 * batch instead of once per frame.  Does nothing for a location the
 * segment does not hold, nor within 512 bytes of its end; cannot fault.
 */
void evs__log_prefetch(const evs_log *log, uint64_t gen, evs_lsn at);

/*
 * Verify every frame from the start to the end.  Calls cb for each valid
 * frame (cb may be NULL; a nonzero return from cb stops the walk and is
 * returned).  Corrupt regions are reported (errors, first_error) and
 * skipped by resynchronising on the next valid frame, so every damaged
 * frame is found.
 */
typedef int (*evs_frame_cb)(void *arg, const evs_frame *f);
typedef struct evs_log_check {
    uint64_t frames;
    uint64_t events;
    uint64_t segments;
    uint64_t errors;
    char first_error[512];
} evs_log_check;
int evs__log_check(evs_log *log, evs_frame_cb cb, void *arg, evs_log_check *out);
/* The same over the segment versions of generation gen, and only up to upto
   (0: the flushed end), e.g. the checkpoint of the index snapshot it is
   compared with while appends go on. */
int evs__log_check_at(evs_log *log, uint64_t gen, evs_lsn upto, evs_frame_cb cb, void *arg, evs_log_check *out);

/* Number of segment files and total bytes of frames. */
void evs__log_usage(const evs_log *log, uint64_t *segments, uint64_t *bytes);

/* ------------------------------------------------------------ repair
 * Used by `evstore repair` (src/store/repair.c) on a log opened with
 * cfg->scan_only: find every damaged stretch, then overwrite it in place
 * with LOST frames or zeros.  Nothing here runs while a store is open. */

typedef struct evs_log_damage {
    evs_lsn at;                /* the first bad frame (or non-zero bytes where data should end) */
    evs_lsn good_end;          /* end of the valid frames before it */
    uint64_t expected;         /* the position the bad frame should have carried */
    char why[96];
    evs_lsn resume;            /* the next valid frame, 0: none (the damage runs to the end) */
    uint64_t resume_gpos;      /* its position */
    int synced_beyond;         /* a later valid frame proves bytes past `at` had been synced */
    uint64_t held_end;         /* the frame at `at` is sound but its payload was refused (see
                                  evs_payload_check): the position after the ones it holds; else 0 */
} evs_log_damage;

/*
 * Walk the whole log; list every damaged stretch in order: frames that do
 * not verify, and with check (may be NULL) frames whose payload it refuses.
 * *next_gpos gets the position after the last valid frame, *end where it
 * ends.  Ownership: *out is malloc'd (NULL when the log is clean); the
 * caller frees it.
 */
int evs__log_damage_scan(evs_log *log, evs_payload_check check, void *arg, evs_log_damage **out, size_t *n,
                         uint64_t *next_gpos, evs_lsn *end);

/* Size of segment no (0 if there is none) and the number of segments. */
uint64_t evs__log_segment_size(const evs_log *log, uint32_t no);
uint32_t evs__log_segments(const evs_log *log);

/* Zero [from, to_off) of from's segment (to_off capped at the segment's size). */
int evs__log_repair_zero(evs_log *log, evs_lsn from, uint64_t to_off);

/*
 * Write at `at` a frame of exactly `size` bytes (header included) whose
 * payload is payload[0..plen) followed by zeros, checksummed with the
 * segment's salt; synced_to is `at` itself.
 */
int evs__log_repair_frame(evs_log *log, evs_lsn at, uint64_t size, uint64_t first_gpos, uint32_t count,
                          uint32_t flags, const uint8_t *payload, size_t plen);
/* Would evs__log_repair_frame take these?  EVS_OK, or why not (nothing is written). */
int evs__log_repair_frame_fits(const evs_log *log, evs_lsn at, uint64_t size, uint32_t count, size_t plen);

/* fdatasync every segment. */
int evs__log_repair_sync(evs_log *log);

/* ------------------------------------------------------------ segment versions
 * Used by scavenge (src/store/scavenge.c; the design is at SCAVENGE in
 * log.c).  A sealed segment is rewritten into a new file and swapped in
 * while readers go on; readers that took their index snapshot before the
 * swap keep reading the version they started with.
 *
 * Readers: take `pub` shared around taking an index snapshot and
 * evs__log_pin; read with evs__log_read_at / evs__log_check_at at the pinned
 * generation; evs__log_unpin when done (any thread).  The writer thread and
 * code that holds the store's writer role read the newest version. */
void evs__log_pub_rlock(evs_log *log);
void evs__log_pub_runlock(evs_log *log);
void evs__log_pub_wlock(evs_log *log);
void evs__log_pub_wunlock(evs_log *log);
uint64_t evs__log_pin(evs_log *log);
void evs__log_unpin(evs_log *log, uint64_t gen);

/* Scavenger (one at a time): may the generation be bumped now (no live
   reader holds the pin slot it would reuse)? */
int evs__log_gen_room(evs_log *log);
/* Scavenger: unmap the versions no pinned reader can still use. */
void evs__log_reap(evs_log *log);
/* Bytes scavenge gave back since open (evs__log_usage already subtracts them). */
uint64_t evs__log_reclaimed(const evs_log *log);

/* synced_to recorded in a frame's header. */
evs_lsn evs__log_frame_synced_to(const evs_frame *f);
/* Bytes a frame of payload len takes, and the segment header's size. */
uint64_t evs__log_frame_size(uint32_t len);
uint64_t evs__log_header_size(void);
/* Call cb for every frame of (the newest version of) segment no, verified. */
int evs__log_seg_frames(evs_log *log, uint32_t no, evs_frame_cb cb, void *arg);

/*
 * Rewrite segment no: begin creates log/NNNNNNNN.seg.scav with a header
 * for exactly `size` bytes; frame appends (returning the new location);
 * finish checks the size, fsyncs and maps it; install renames it over the
 * segment and syncs the directory; publish (with pub held alone) makes it
 * the current version under a new generation; abort frees what is left
 * and removes the temporary file if it was not installed.
 * Ownership: *out is the caller's, released with evs__log_segw_abort
 * (also after publish).
 */
typedef struct evs_log_segw evs_log_segw;
int evs__log_segw_begin(evs_log *log, uint32_t no, uint64_t size, evs_log_segw **out);
int evs__log_segw_frame(evs_log_segw *w, const uint8_t *payload, uint32_t len, uint64_t first_gpos, uint32_t count,
                        uint32_t flags, evs_lsn synced_to, evs_lsn *where);
int evs__log_segw_finish(evs_log_segw *w);
int evs__log_segw_install(evs_log_segw *w);
void evs__log_segw_publish(evs_log_segw *w);
uint64_t evs__log_segw_written(const evs_log_segw *w);
/* The header version the new segment carries (its predecessor's + 1). */
uint32_t evs__log_segw_version(const evs_log_segw *w);
void evs__log_segw_abort(evs_log_segw *w);

#endif

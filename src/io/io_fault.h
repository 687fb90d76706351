/*
 * io_fault.h — a fault-injecting, crash-simulating I/O table for tests.
 *
 * It wraps the POSIX table (io_posix.c) and can, at run time:
 *   - count the calls of every operation;
 *   - fail the Nth call of an operation (counted from when the rule is set,
 *     1 = the next call), or every call from the Nth on, with an errno;
 *   - make the Nth pwrite short: write only k bytes and return k;
 *   - simulate a power loss.  With crash tracking on, every pwrite is
 *     remembered (offset, the bytes it overwrote, the bytes it wrote) until
 *     a successful fdatasync/fsync of the same file.  evs__fault_crash(seed)
 *     then rewinds every file to its last synced image and re-applies a
 *     random subset of the unsynced writes, cut into 4 KiB pages as the page
 *     cache would write them back (so a later page of a write may survive
 *     while an earlier one is lost), and tears one kept page at a random
 *     byte.  After a crash the table refuses every further change (-EIO)
 *     so that closing the crashed handle cannot write anything; reopen with
 *     evs__io_posix() or after evs__fault_reset().
 *
 * Directory operations (rename, unlink) are treated as durable at once;
 * the log syncs its directory after each of them anyway.
 *
 * Compiled into the evstore_testsupport library only.  Thread-safe: every
 * call takes the table's mutex around its bookkeeping.
 */
#ifndef EVS_IO_FAULT_H
#define EVS_IO_FAULT_H

#include <stddef.h>
#include <stdint.h>

#include "io/io.h"

typedef enum evs_fault_op {
    EVS_FOP_OPEN,
    EVS_FOP_CLOSE,
    EVS_FOP_PWRITE,
    EVS_FOP_PREAD,
    EVS_FOP_FDATASYNC,
    EVS_FOP_FSYNC,
    EVS_FOP_FALLOCATE,
    EVS_FOP_FTRUNCATE,
    EVS_FOP_SIZE,
    EVS_FOP_UNLINK,
    EVS_FOP_RENAME,
    EVS_FOP_SYNC_DIR,
    EVS_FOP_MAP,
    EVS_FOP_UNMAP,
    EVS_FOP_COUNT
} evs_fault_op;

typedef struct evs_fault evs_fault;

/*
 * A new fault table with no rules, tracking off.
 * Ownership: *out is the caller's, released with evs__fault_destroy after
 * every handle using its table is closed.
 */
int evs__fault_create(evs_fault **out);
void evs__fault_destroy(evs_fault *f);

/* The I/O table to pass to the log or store; valid until destroy. */
const evs_io *evs__fault_io(evs_fault *f);

/*
 * Fail the nth call of op from now (1: the next one) with -err; with
 * every_after nonzero, that call and every later one fail.  One rule per
 * operation: setting a new one replaces the old.
 */
void evs__fault_fail(evs_fault *f, evs_fault_op op, uint64_t nth, int every_after, int err);
/* Make the nth pwrite from now write only k bytes (k < its length) and return k. */
void evs__fault_short_write(evs_fault *f, uint64_t nth, size_t k);
/* Remove all failure and short-write rules (counters and tracking stay). */
void evs__fault_clear_rules(evs_fault *f);

/* Calls of op since creation or the last reset, failed ones included. */
uint64_t evs__fault_count(evs_fault *f, evs_fault_op op);

/* Start or stop remembering unsynced writes (stopping forgets them). */
void evs__fault_track(evs_fault *f, int on);

/*
 * Simulate a power loss now (see the file comment); deterministic in seed.
 * Returns 0, or -errno if a file image could not be rewritten.
 */
int evs__fault_crash(evs_fault *f, uint64_t seed);

/* Forget rules, counters, tracked writes and the crashed state. */
void evs__fault_reset(evs_fault *f);

/* Short name of an operation ("pwrite"), for messages. */
const char *evs__fault_op_name(evs_fault_op op);

#endif

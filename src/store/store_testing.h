/*
 * store_testing.h — hooks for tests only: run a store on another I/O table
 * (e.g. the fault-injecting one in io/io_fault.h).  Not part of the API.
 */
#ifndef EVS_STORE_TESTING_H
#define EVS_STORE_TESTING_H

#include "evstore.h"
#include "io/io.h"

/* Before evs_store_open: every file operation of the log goes through io. */
int evs__store_set_io(evs_store *s, const evs_io *io);

/*
 * Before evs_store_open: bytes the log keeps zeroed ahead of the writer in
 * sync durability (default EVS_LOG_ZERO_AHEAD; 0: off).  Tests that count
 * or fail the Nth call of an operation turn it off, since the zero thread's
 * calls go through the same table.
 */
int evs__store_set_zero_ahead(evs_store *s, uint64_t bytes);

/*
 * Abandon an open store as a killed process would: stop the writer and free
 * everything WITHOUT syncing the log or the index and without writing the
 * clean-close flag.  For crash simulations (io_fault.h's evs__fault_crash).
 * In batch durability the writer's final periodic sync may still run.
 */
void evs__store_abandon(evs_store *s);

/*
 * Index map faults.  no_reserve: keep no room in the map ahead of a batch,
 * so that every growth comes from MDB_MAP_FULL in whichever step it hits
 * (a put, or the commit saving LMDB's free list).  fail_commits: the next
 * that many index commits of appends fail with MDB_MAP_FULL, as LMDB's do
 * when the map fills during the commit (the transaction is gone, the
 * batch's frames are already in the log).  Call before evs_store_open, or
 * while no append is in flight.
 */
int evs__store_set_index_faults(evs_store *s, int no_reserve, int fail_commits);

/*
 * How many times a batch was indexed again in a grown map after its frames
 * had become durable (the map filled in the commit, or in the puts made
 * while the flush thread synced).  Lets a test tell that it reached that path.
 */
uint64_t evs__store_reindexed(evs_store *s);

/*
 * The clock max_age compares recorded_at with (meta.c): now(ctx) in ns since
 * the epoch, NULL for the wall clock.  Call while no reader is open.
 */
int evs__store_set_clock(evs_store *s, int64_t (*now)(void *ctx), void *ctx);

#endif

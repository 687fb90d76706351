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

#endif

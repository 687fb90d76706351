/*
 * start.h — where a reader of the log starts, for a requested `from`
 * (bus.c).  Consumers use it, and so does every layer above that keeps a
 * position of its own (the saga engine's index): one rule and one message
 * for a start past what is stored, which would skip every event appended
 * up to there.
 */
#ifndef EVS_BUS_START_H
#define EVS_BUS_START_H

#include <stdint.h>

#include "evstore_bus.h"

/*
 * The next position a reader of stream (NULL or "": $all) starts at, for a
 * requested `from`: EVS_SUB_FROM_START is 1, EVS_SUB_FROM_NOW one past what
 * is stored (the stream's version + 1, or the head + 1).  A position beyond
 * that is EVS_EINVAL naming both.
 */
int evs__bus_start_next(evs_store *s, const char *stream, uint64_t from, uint64_t *next);

#endif

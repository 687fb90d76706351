/*
 * bus_testing.h — a hook for tests only: fail a consumer-environment write
 * at a named point between its steps, to show that the steps share one
 * transaction (nothing of the write is visible afterwards).  Not part of
 * the API; NULL outside tests.
 *
 * Points:
 *   "proj_reset"  evs_proj_reset, after the record moves the projection back
 *                 and before its DLQ is emptied.
 */
#ifndef EVS_BUS_TESTING_H
#define EVS_BUS_TESTING_H

/* Called at each point; nonzero fails the write there with EVS_EIO. */
extern int (*evs__bus_fault_hook)(const char *point);

#endif

/*
 * agg_asof.c — an aggregate's state as of a point in the global order.
 *
 * The point is first turned into a version of the aggregate's stream: the
 * stream is read backwards from its end to the last event at or before the
 * position and the time (recorded_at grows with the position, so this is
 * the stream's prefix).  The load then starts from the newest usable
 * snapshot at or before that version and folds up to it; snapshots newer
 * than the point are never looked at.
 */
#include <stdlib.h>
#include <string.h>

#include "app/app_internal.h"

/* The last stream version at or before the point (0: none). */
static int version_at(evs_app *a, const char *stream, const evs_as_of *at, uint64_t *version) {
    evs_reader *r;
    const evs_event *ev;
    *version = 0;
    int rc = evs_read_stream(a->store, stream, EVS_POSITION_END, EVS_BACKWARD, 0, &r);
    if (rc == EVS_ENOTFOUND) return EVS_OK;
    if (rc) return rc;
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK || rc == EVS_ELOST) {
        if (rc == EVS_ELOST) continue;
        if ((at->position && ev->global_position > at->position) || (at->time && ev->recorded_at > at->time)) continue;
        *version = ev->stream_position;
        break;
    }
    evs_reader_close(r);
    return rc == EVS_OK || rc == EVS_DONE ? EVS_OK : rc;
}

int evs_aggregate_load_as_of(evs_app *a, const char *type, const char *id, const evs_as_of *at, unsigned flags,
                             char **json, size_t *len, evs_load_info *info) {
    char stream[EVS_MAX_STREAM_NAME + 1], err[512];
    evs__agg *g;
    evs__loaded l;
    if (!json || !at) return evs__err(EVS_EINVAL, "aggregate_load_as_of: NULL argument");
    *json = NULL;
    if (at->time < 0) return evs__err(EVS_EINVAL, "as_of time is before 1970");
    int rc = evs__agg_lookup(a, type, id, &g, stream);
    if (rc) return rc;
    if (!g->def.encode) return evs__err(EVS_EINVAL, "aggregate type \"%s\" has no encode", type);
    int64_t t0 = evs__mono_ns();
    uint64_t v;
    if ((rc = version_at(a, stream, at, &v))) return rc;
    /* before the stream's first event: the initial state */
    if (v == 0) flags |= EVS_LOAD_NO_SNAPSHOT | EVS__LOAD_INITIAL;
    if ((rc = evs__agg_load_upto(a, g, stream, flags, v, &l, err, sizeof err))) return rc;
    int64_t dt = evs__mono_ns() - t0;
    return evs__agg_answer(g, &l, stream, dt, json, len, info);
}

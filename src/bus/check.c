/*
 * check.c — evs_bus_check: the consumers' half of `evstore check`.
 *
 * The store's check proves the log and its index agree.  This proves that
 * what the consumers kept in DIR/consumers/ still fits that log: no
 * checkpoint lies beyond the events that exist (a checkpoint past the head
 * would make a consumer skip events appended later), and every DLQ entry
 * names an event that exists, at the stream and stream position it says.
 * It reads only, through the public API of the bus and the store.
 */
#include <stdio.h>
#include <string.h>

#include "bus/bus_internal.h"
#include "core/core.h"

static void problem(evs_bus_check_report *rep, const char *fmt, const char *name, unsigned long long a,
                    unsigned long long b) {
    if (rep->errors++ == 0) {
        int k = snprintf(rep->first_error, sizeof rep->first_error, "consumer \"%s\": ", name);
        if (k > 0 && (size_t)k < sizeof rep->first_error)
            snprintf(rep->first_error + k, sizeof rep->first_error - (size_t)k, fmt, a, b);
    }
}

/* One DLQ entry: the event at its global position must exist and be the one it names. */
static int check_entry(evs_bus *b, const evs_consumer_info *ci, const evs_dlq_entry *e, evs_bus_check_report *rep) {
    evs_reader *r = NULL;
    const evs_event *ev;
    int rc = evs_read_all(b->store, e->position, EVS_FORWARD, NULL, 1, &r);
    if (!rc) rc = evs_reader_next(r, &ev);
    if (rc == EVS_OK && ev->global_position == e->position) {
        if (ev->stream_len != strlen(e->stream) || memcmp(ev->stream, e->stream, ev->stream_len) ||
            ev->stream_position != e->stream_position)
            problem(rep, "DLQ entry at global position %llu names another event than the one stored there "
                         "(stream position %llu)", ci->name, (unsigned long long)e->position,
                    (unsigned long long)e->stream_position);
        rc = EVS_OK;
    } else if (rc == EVS_OK || rc == EVS_DONE || rc == EVS_ELOST) {
        problem(rep, "DLQ entry at global position %llu points at no stored event (head %llu)", ci->name,
                (unsigned long long)e->position, (unsigned long long)evs_head(b->store));
        rc = EVS_OK;
    } else if (rc == EVS_ECORRUPT) {
        problem(rep, "DLQ entry at global position %llu: its event is damaged (stream position %llu)", ci->name,
                (unsigned long long)e->position, (unsigned long long)e->stream_position);
        rc = EVS_OK;
    }
    evs_reader_close(r);
    evs__err_clear();
    return rc;
}

int evs_bus_check(evs_bus *b, evs_bus_check_report *rep) {
    if (!b || !rep) return evs__err(EVS_EINVAL, "bus_check: NULL argument");
    memset(rep, 0, sizeof *rep);
    uint64_t head = evs_head(b->store);
    evs_consumer_info ci[32];
    char after[EVS_BUS_MAX_NAME + 1] = "";
    int rc;
    for (;;) {
        size_t n = 0;
        if ((rc = evs_consumer_list(b, after[0] ? after : NULL, ci, 32, &n))) return rc;
        for (size_t i = 0; i < n; i++) {
            rep->consumers++;
            const evs_consumer_info *c = &ci[i];
            if (c->stream[0]) {
                evs_stream_info si;
                uint64_t version = evs_stream_get_info(b->store, c->stream, &si) == EVS_OK ? si.version : 0;
                evs__err_clear();
                if (c->checkpoint > version)
                    problem(rep, "checkpoint %llu lies beyond the stream's version %llu", c->name,
                            (unsigned long long)c->checkpoint, (unsigned long long)version);
            } else if (c->checkpoint > head) {
                problem(rep, "checkpoint %llu lies beyond the store's head %llu", c->name,
                        (unsigned long long)c->checkpoint, (unsigned long long)head);
            }
            uint64_t pos = 0;
            for (;;) {
                evs_dlq_entry e[16];
                size_t m = 0;
                if ((rc = evs_dlq_list(b, c->name, pos, e, 16, &m))) return rc;
                for (size_t j = 0; j < m; j++) {
                    rep->dlq_entries++;
                    if ((rc = check_entry(b, c, &e[j], rep))) return rc;
                    pos = e[j].position;
                }
                if (m < 16) break;
            }
        }
        if (n < 32) break;
        size_t nl = strnlen(ci[n - 1].name, EVS_BUS_MAX_NAME);
        memcpy(after, ci[n - 1].name, nl);
        after[nl] = 0;
    }
    return rep->errors ? evs__err(EVS_ECORRUPT, "consumers: %llu problem(s); first: %s",
                                  (unsigned long long)rep->errors, rep->first_error)
                       : EVS_OK;
}

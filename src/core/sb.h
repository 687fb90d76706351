/*
 * sb.h — the one growable byte buffer (internal), for whatever builds text
 * of unknown length: response bodies in the server, request bodies and URLs
 * in the CLI's HTTP client, rendered pages of events.
 *
 * Failure sticks: when an allocation fails, `oom` is set and every later
 * add is a no-op, so a builder makes all its calls and checks once at the
 * end (evs__sb_take returns NULL, or the caller looks at `oom`).  The bytes
 * are always NUL-terminated once anything was added.
 */
#ifndef EVS_SB_H
#define EVS_SB_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "evstore.h"

typedef struct evs__sb {
    char *p;
    size_t len, cap;
    int oom;
} evs__sb;

/* Room for `more` bytes plus the NUL: 0, or -1 with `oom` set. */
int evs__sb_reserve(evs__sb *b, size_t more);
void evs__sb_add(evs__sb *b, const void *p, size_t n);
void evs__sb_adds(evs__sb *b, const char *s);
void evs__sb_printf(evs__sb *b, const char *fmt, ...) EVS_PRINTF(2, 3);
/* s[0..n) as a JSON string, quotes included, escaped by evs__json_escape. */
void evs__sb_json_str(evs__sb *b, const char *s, size_t n);
/* An RFC 3339 time as a JSON string, or null for 0. */
void evs__sb_json_time(evs__sb *b, int64_t ns);
/* One event as evs_event_to_json renders it, without a temporary copy. */
void evs__sb_event(evs__sb *b, const evs_event *ev);
/*
 * Take the bytes (NUL-terminated; "" when nothing was added); the buffer is
 * emptied.  NULL after an allocation failure (the buffer is freed then).
 * Ownership: the caller frees the result.
 */
char *evs__sb_take(evs__sb *b, size_t *len);
/* Release the bytes; the buffer is empty and usable again (oom cleared). */
void evs__sb_free(evs__sb *b);

#endif

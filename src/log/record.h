/*
 * record.h — the payload of one log frame: one atomic append (internal).
 *
 * The log treats payloads as opaque bytes; this module lays out the events
 * of an append inside one payload, so that an append is atomic by
 * construction (one frame, one checksum).  The layout is documented at the
 * top of record.c and in docs/format.md.  It sits in src/log/, below the
 * index and the store that both use it (record.c says why).
 */
#ifndef EVS_RECORD_H
#define EVS_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "evstore.h"
#include "log/log.h"

/* Fixed offsets the writer patches once positions are known. */
#define EVS_REC_OFF_STREAM_POS 0
#define EVS_REC_OFF_RECORDED_AT 8
#define EVS_REC_HEADER 16          /* then u16 stream_len, stream, pad to 8 */
#define EVS_REC_EVENT_HEADER 80

/* An event's fixed part, as decoded (pointers into the payload). */
typedef struct evs_rec_event {
    const uint8_t *at;        /* start of the entry */
    uint32_t entry_len;
} evs_rec_event;

/*
 * Encode n validated events of one append for stream into a new buffer.
 * stream_types[i] and the tag JSON arrays are already resolved by the
 * caller.  Ownership: on success *out is malloc'd, the caller frees it.
 */
int evs__record_encode(const char *stream, size_t stream_len, const evs_event_in *events,
                       const evs_uuid *ids, const char *const *stream_types, const size_t *stream_type_lens,
                       const char *const *tags_json, const size_t *tags_json_lens, size_t n,
                       uint8_t **out, size_t *out_len);

/* Stream name and first stream position of a payload. */
int evs__record_stream(const uint8_t *p, size_t len, const char **stream, size_t *stream_len);
uint64_t evs__record_first_stream_pos(const uint8_t *p);
int64_t evs__record_recorded_at(const uint8_t *p);
/* Offset of the first event entry. */
size_t evs__record_first_event(const uint8_t *p, size_t len);

/*
 * Decode the entry at offset off of a payload into ev (views into p).
 * first_gpos/first_spos are the frame's, idx the event's index in the
 * record.  Returns the offset of the next entry, or 0 if the entry is
 * malformed (a checksummed frame should never be; treat it as corruption).
 */
size_t evs__record_decode(const uint8_t *p, size_t len, size_t off, uint64_t first_gpos, uint32_t idx,
                          evs_event *ev);

/*
 * Can the index take this payload as a record of `count` events: a stream
 * name, then `count` entries that decode, each with an event type and a
 * stream type of at least one byte?  A frame's checksum proves its bytes
 * are the ones written, not that this build's writer wrote them; the index
 * (evs__index_add_record) and `evstore repair` (which replaces a record
 * that fails this by a LOST frame) judge by this one function.  EVS_OK, or
 * EVS_ECORRUPT with the reason in why (cap bytes).
 */
int evs__record_valid(const uint8_t *p, size_t len, uint32_t count, char *why, size_t cap);

/*
 * The one judge of payloads (an evs_payload_check, arg unused): a LOST
 * frame's by evs__lost_valid, any other by evs__record_valid.  The store
 * passes it to the log at open, and repair to its damage scan.
 */
int evs__frame_payload_check(void *arg, const evs_frame *f, char *why, size_t cap);

/*
 * The payload of a LOST frame (log.h's EVS_FRAME_LOST): where `evstore
 * repair` removed damaged records, one frame keeps their global positions
 * taken and says which stream positions they held, so that neither is ever
 * given to another event.  Layout, little-endian:
 *
 *   0   i64  repaired_at (ns)
 *   8   u32  number of stream entries (0 when the streams are unknown)
 *   12  u32  reserved, zero
 *   16  ...  entries, each at a multiple of 8:
 *            u64 first stream position, u32 count, u16 name length (1..255),
 *            u16 zero, name, zero padding to 8
 *   then zero bytes to the end of the payload (a frame may fill the space
 *   the damaged records took)
 */
typedef struct evs_lost_stream {
    const char *stream;
    size_t stream_len;
    uint64_t first;           /* first stream position lost */
    uint32_t count;
} evs_lost_stream;

#define EVS_LOST_HEADER 16

/* Bytes the payload needs for n entries (before any zero fill). */
size_t evs__lost_size(const evs_lost_stream *e, size_t n);
/* Write the payload into p (room for evs__lost_size bytes, zeroed by the caller). */
void evs__lost_encode(uint8_t *p, int64_t repaired_at, const evs_lost_stream *e, size_t n);
/* Walks the entries of a LOST payload; zero it before the first call. */
typedef struct evs_lost_iter {
    size_t off;
    uint32_t i;
} evs_lost_iter;
/*
 * The next entry: EVS_OK, EVS_DONE after the last, or EVS_ECORRUPT for a
 * malformed payload.  *repaired_at (may be NULL) gets the header's time.
 */
int evs__lost_next(const uint8_t *p, size_t len, evs_lost_iter *it, evs_lost_stream *out, int64_t *repaired_at);
/*
 * Can the index take this payload as a LOST frame of `count` positions:
 * every entry reads, no range wraps past the largest position, and the
 * entries' stream positions add up to no more than `count` (each lost event
 * held one stream position)?  EVS_OK, or EVS_ECORRUPT with why.
 */
int evs__lost_valid(const uint8_t *p, size_t len, uint32_t count, char *why, size_t cap);

#endif

/*
 * nats_dist.h — the store's events carried to and from a NATS JetStream
 * stream (the distribution layer, between the bus and the server/CLI; only
 * this folder links libnats).
 *
 * The relay publishes $all in global order, one JetStream message per event:
 *
 *   subject   PREFIX.STREAM_TYPE.EVENT_TYPE  (tokens with '.', '*', '>',
 *             spaces or control bytes get '_' there; headers carry the
 *             exact names)
 *   body      the event's data, byte for byte
 *   headers   Nats-Msg-Id = event id (JetStream's duplicate window drops a
 *             second copy), Evs-Event-Id, Evs-Stream, Evs-Stream-Type,
 *             Evs-Event-Type, Evs-Event-Version, Evs-Global-Position,
 *             Evs-Stream-Position, Evs-Occurred-At and Evs-Recorded-At (ns
 *             since the epoch), Evs-Metadata, and when present
 *             Evs-Causation-Id, Evs-Correlation-Id, Evs-Tags (JSON array).
 *             A value that a header cannot carry as is (CR, LF, or spaces
 *             at its ends) goes base64-encoded under NAME-B64 instead.
 *
 * Invariant: the JetStream stream is the store's alone and the message at
 * stream sequence N is the event at global position N.  Every publish says
 * so to the server (Nats-Expected-Last-Sequence = N - 1), so a message can
 * only be stored right after its predecessor: a lost or reordered publish
 * (a NATS node dying with messages in flight) is refused, never stored out
 * of place.  The relay's checkpoint is therefore the stream's last
 * sequence, kept by JetStream itself (replicated, durable): the relay
 * reads it at start and after any failure and goes on from the next
 * position, and advances its own count only on publish acknowledgements.
 * A publish retried after a lost acknowledgement is dropped by the
 * duplicate window (same Nats-Msg-Id).
 *
 * The mirror reads the JetStream stream in sequence order and appends each
 * event to a store of its own with the same event id, stream position
 * (expected version = position - 1) and therefore the same global
 * position; its store's head is its checkpoint (appended and checkpointed
 * in one step), so a redelivered message is recognised by position and
 * skipped after checking its event id.  recorded_at is the mirror's own
 * (the store sets it); occurred_at and everything else are the source's.
 *
 * The importer reads a JetStream stream that other services publish to
 * (plain messages, not the relay's) through a durable pull consumer and
 * appends each message to a store stream named by a template:
 *
 *   target stream   --to TEMPLATE: literal text with {subject}, {N} / {-N}
 *                   (subject token N, 1-based, or counted from the end) and
 *                   {header:NAME}
 *   event type      --event-type TEMPLATE, else the Evs-Event-Type header,
 *                   else the subject's last token
 *   event id        Nats-Msg-Id when it is a UUID, else a UUIDv8 derived
 *                   from it; without one a UUIDv8 derived from (JetStream
 *                   stream name, stream sequence)
 *   data            the body, which must be a JSON object
 *   metadata        {"source":"nats","nats_stream":..,"nats_seq":..,
 *                   "nats_subject":..[,"nats_msg_id":..]}
 *   occurred_at     when JetStream stored the message
 *   optional        Evs-Expected-Version (a version, any, no_stream,
 *                   exists), Evs-Stream-Type, Evs-Correlation-Id,
 *                   Evs-Causation-Id
 *
 * It acknowledges (AckAll) only what the store has made durable, appends
 * in stream order, and answers redeliveries with idempotent re-appends, so
 * each message enters the store once (nats_import.c says how).
 *
 * A relay with a filter (stream prefix, stream type, event types, as the
 * store's $all filters) publishes only the matching events: sequence N is
 * then the N-th matching event, and the checkpoint is the global position
 * in the last message's Evs-Global-Position header (the store's event there
 * must carry the message's id); the order and the no-gap rule hold as
 * before.  The mirror needs an unfiltered stream (positions are kept).
 *
 * Threads: a relay or mirror object is used by one thread at a time, except
 * evs__nats_relay_stats, which any thread may call while it runs.
 */
#ifndef EVS_NATS_DIST_H
#define EVS_NATS_DIST_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "evstore.h"

#define EVS_NATS_MAX_SERVERS 16
#define EVS_NATS_DEFAULT_STREAM "EVSTORE"
#define EVS_NATS_DEFAULT_PREFIX "evs"
#define EVS_NATS_DEFAULT_WINDOW 256u       /* publishes in flight before waiting for their acks */
#define EVS_NATS_MAX_WINDOW 10000u
#define EVS_NATS_DEFAULT_TIMEOUT_MS 5000u

typedef struct evs_nats_config {
    const char *urls;           /* "nats://h:p[,nats://h:p...]": any server of the cluster */
    const char *stream;         /* the JetStream stream (NULL: EVSTORE) */
    const char *subject_prefix; /* NULL: "evs"; the stream takes PREFIX.> */
    unsigned replicas;          /* for a stream the relay creates (0: 1) */
    unsigned window;            /* 0: EVS_NATS_DEFAULT_WINDOW */
    unsigned timeout_ms;        /* publish acks and API requests (0: default) */
    FILE *log;                  /* failures and recoveries, one line each; NULL: none */
    /* The relay only (the mirror needs neither): */
    const char *subject_template; /* after the prefix: {stream}, {stream_type}, {event_type} and
                                     literal tokens; NULL: "{stream_type}.{event_type}" */
    const char *filter_stream_prefix, *filter_stream_type; /* publish only matching events */
    const char *filter_event_types; /* comma-separated: any of these */
} evs_nats_config;

/* Check cfg's settings without connecting: EVS_OK or EVS_EINVAL naming the bad one. */
int evs__nats_config_check(const evs_nats_config *cfg);

/* ------------------------------------------------------------------ relay */

typedef struct evs_nats_relay evs_nats_relay;

typedef struct evs_nats_relay_stats {
    uint64_t published;   /* last global position JetStream acknowledged (the checkpoint) */
    uint64_t head;        /* the store's head when last looked at */
    uint64_t errors;      /* failed rounds (each followed by a recovery from JetStream) */
    int connected;        /* 1 while the connection is up */
} evs_nats_relay_stats;

/* cfg's settings, the relay's subject template and filter too, without connecting. */
int evs__nats_relay_check(const evs_nats_config *cfg);

/*
 * Connect to the cluster and make sure the stream exists (created with
 * cfg->replicas when missing), and check that what it holds came from this
 * store (its last message's event id is ours at that position).  cfg's
 * strings are copied.
 * Ownership: on success *out is the caller's, released with
 * evs__nats_relay_destroy, and s must outlive it; on failure *out is NULL
 * and evs_errmsg() says what is wrong.
 */
int evs__nats_relay_create(evs_store *s, const evs_nats_config *cfg, evs_nats_relay **out);

/*
 * Publish from the checkpoint.  follow = 0: until the head seen at the start
 * is published, then EVS_OK.  follow = 1: until *stop becomes nonzero,
 * waiting for new events; failures (a NATS node gone, no quorum for a
 * while) are logged, counted and recovered from by re-reading the
 * checkpoint, after a pause of retry_ms.  With follow = 0 a failure is
 * retried the same way up to `attempts` times, then returned.
 * EVS_EINVAL/EVS_ELOST when the store cannot be published as it is (a
 * repaired range of lost events would break the sequence = position
 * invariant; the message names the range).
 */
int evs__nats_relay_run(evs_nats_relay *r, int follow, volatile sig_atomic_t *stop, unsigned retry_ms,
                        unsigned attempts);

void evs__nats_relay_stats(evs_nats_relay *r, evs_nats_relay_stats *out);
/* NULL: nothing to do. */
void evs__nats_relay_destroy(evs_nats_relay *r);

/* ----------------------------------------------------------------- mirror */

/*
 * Bring store s (empty, or an earlier mirror of the same stream) up to the
 * stream's last sequence (follow = 0) or keep following it until *stop
 * (follow = 1).  *appended counts the events it appended.  EVS_ECONFLICT
 * when s holds other events than the stream at the same positions, with
 * the position named; EVS_EINVAL when the stream does not start at
 * sequence 1 (it was trimmed: positions could not be kept).
 */
int evs__nats_mirror(evs_store *s, const evs_nats_config *cfg, int follow, volatile sig_atomic_t *stop,
                     uint64_t *appended);

/* --------------------------------------------------------------- importer */

#define EVS_NATS_DEFAULT_CONSUMER "evstore-import"

typedef struct evs_nats_import_stats {
    uint64_t imported;          /* messages appended as new events */
    uint64_t already;           /* appended before (a redelivery or a rerun): no-ops */
    uint64_t duplicates;        /* a Nats-Msg-Id already imported with other content: skipped */
    uint64_t rejected;          /* sent to the dead-letter stream */
    uint64_t errors;            /* NATS failures recovered from (each rewinds the consumer) */
    uint64_t last_seq;          /* the last stream sequence appended or rejected */
} evs_nats_import_stats;

typedef struct evs_nats_import_config {
    evs_nats_config nats;       /* urls, stream (the stream to read: required), timeout_ms, log */
    const char *subject;        /* the consumer's subject filter; NULL: all the stream's subjects */
    const char *consumer;       /* the durable consumer (NULL: "evstore-import"); one per importer */
    const char *target;         /* target stream template (required) */
    const char *event_type;     /* event type template; NULL: Evs-Event-Type, else the last token */
    const char *dead_letter;    /* store stream for messages that cannot be imported; NULL: stop there */
    unsigned batch;             /* messages per fetch (0: EVS_NATS_DEFAULT_WINDOW) */
    unsigned ack_wait_ms;       /* the consumer's ack wait (0: 30000) */
    /* Called from the importing thread after every batch with the run's counts so far; NULL: none. */
    void (*progress)(void *arg, const evs_nats_import_stats *st);
    void *progress_arg;
} evs_nats_import_config;

/* Check cfg without connecting: EVS_OK, or EVS_EINVAL naming the bad setting. */
int evs__nats_import_check(const evs_nats_import_config *cfg);

/*
 * Import into s (opened writable, default durability: the acks rely on
 * appends being durable when they return).  follow = 0: until the consumer
 * has nothing pending; 1: until *stop.  NATS failures are logged and
 * recovered from (30 in a row end a one-shot run).  A message that cannot
 * be imported stops the run with its code (EVS_EINVAL, EVS_EJSON,
 * EVS_ECONFLICT, EVS_EDUPLICATE ...) and a message naming the stream,
 * sequence, subject and reason, unless cfg->dead_letter takes it.
 * *stats (may be NULL) is filled in either case.
 */
int evs__nats_import(evs_store *s, const evs_nats_import_config *cfg, int follow, volatile sig_atomic_t *stop,
                     evs_nats_import_stats *stats);

/* ------------------------------------------------------------------- info */

typedef struct evs_nats_stream_state {
    uint64_t messages, first_seq, last_seq, bytes;
    unsigned replicas;
    char leader[128];
} evs_nats_stream_state;

/* The stream's state.  EVS_ENOTFOUND when it does not exist. */
int evs__nats_stream_state(const evs_nats_config *cfg, evs_nats_stream_state *out);

/* Release nats.c's own threads and memory; call once, after every relay and mirror is gone. */
void evs__nats_library_close(void);

#endif

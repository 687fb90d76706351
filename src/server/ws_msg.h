/*
 * ws_msg.h — what a WebSocket client's message says (the protocol is in
 * ws.c's header comment): the JSON, its op, and each op's fields, read and
 * checked without a client or a socket, so that the reading can be fuzzed
 * on its own (tests/fuzz/fuzz_ws.c).  ws.c keeps what depends on the
 * client (already subscribed? consuming a group?) and acts on the result.
 *
 * Every reader returns 0 with its fields, or -1 with the refusal in *e:
 * the message and the detail of the {"op":"error"} reply, which
 * evs__ws_error_json renders.
 */
#ifndef EVS_WS_MSG_H
#define EVS_WS_MSG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sb.h"
#include "evstore_bus.h"
#include "server/query.h"

#define EVS_WS_MAX_ACKS 1000 /* deliveries answered by one ack message */

#define EVS_WS_MAX_REF 256     /* bytes of a command's ref, as JSON */

enum {
    EVS_WS_SUBSCRIBE,
    EVS_WS_UNSUBSCRIBE,
    EVS_WS_PING,
    EVS_WS_CONSUME,
    EVS_WS_ACK,
    EVS_WS_NACK,
    EVS_WS_LEAVE,
    EVS_WS_COMMAND
};

typedef struct evs__ws_msg {
    json_t *root;                 /* the caller's: evs__ws_msg_free */
    int op;                       /* EVS_WS_* */
} evs__ws_msg;

typedef struct evs__ws_err {
    char msg[512];
    char detail[160];             /* JSON, "" for null */
} evs__ws_err;

/* One text message: a JSON object with a known "op".  On -1 nothing needs freeing. */
int evs__ws_msg_parse(const char *p, size_t n, evs__ws_msg *m, evs__ws_err *e);
void evs__ws_msg_free(evs__ws_msg *m);

/*
 * subscribe: the filter (type and tag: a name or an array of names;
 * tag_match any|all, stream_type, stream, causation_id), filled in place
 * into lf (which must be empty; on -1 it is left empty) and finished, the
 * start: *from_now, or the global position in *from (0 means 1), and
 * *upcast (1 for "upcast":"latest").
 */
int evs__ws_msg_subscribe(const evs__ws_msg *m, evs__live_filter *lf, int *from_now, uint64_t *from, int *upcast,
                          evs__ws_err *e);
/* consume: the group's name and the consumer's ("" when the client gave none). */
int evs__ws_msg_consume(const evs__ws_msg *m, char group[EVS_BUS_MAX_NAME + 1], char consumer[EVS_BUS_MAX_NAME + 1],
                        evs__ws_err *e);
/*
 * ack: one delivery, or {"deliveries": [...]} of 1..EVS_WS_MAX_ACKS, all
 * checked before any is taken.  Ownership: *ids is malloc'd; the caller
 * frees it.
 */
int evs__ws_msg_ack(const evs__ws_msg *m, evs_delivery_id **ids, size_t *n, evs__ws_err *e);
/* nack: the delivery, the action (and its name as sent), the reason (NULL, or a string inside m). */
int evs__ws_msg_nack(const evs__ws_msg *m, evs_delivery_id *id, evs_nack_action *act, const char **action_name,
                     const char **reason, evs__ws_err *e);

/*
 * command: the command as JSON text (the message without "op" and "ref",
 * for the command runners, which judge it), and ref (a string, a number or
 * null, at most EVS_WS_MAX_REF bytes as JSON) as JSON text, NULL when the
 * message has none.  Ownership: *text and *ref_text are malloc'd for the
 * caller (both NULL on -1).
 */
int evs__ws_msg_command(const evs__ws_msg *m, char **text, size_t *len, char **ref_text, evs__ws_err *e);

/* A refusal of our own (ws.c's state checks): fills *e, returns -1. */
int evs__ws_refuse(evs__ws_err *e, const char *detail_json, const char *fmt, ...) EVS_PRINTF(3, 4);
/* {"op":"error","error":msg,"detail":detail or null} into b. */
void evs__ws_error_json(evs__sb *b, const char *detail_json, const char *msg);

#endif

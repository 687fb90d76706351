/*
 * routes_bus.h — the event-driven side of `evstore serve` (routes_bus.c):
 * Lua projections run by the server, competing-consumer groups over
 * long-poll HTTP, the records of every durable consumer, their dead-letter
 * queues, and their series in /metrics.
 *
 * Lifecycle, called from serve.c: evs__bus_srv_start after the store is
 * open and before the daemon accepts connections; evs__bus_srv_quiesce
 * while shutting down, with the live streams; evs__bus_srv_stop after the
 * daemon stopped (no request can reach a consumer any more) and before the
 * store closes.
 */
#ifndef EVS_ROUTES_BUS_H
#define EVS_ROUTES_BUS_H

#include "evstore_bus.h"
#include "server/srv.h"

/*
 * Open DIR/consumers/ and start a runner for every stored Lua projection.
 * 0, or -1 with why[] saying why (the server then does not start).
 * Ownership: the state hangs off srv->bus until evs__bus_srv_stop.
 */
int evs__bus_srv_start(evs__srv *srv, char *why, size_t whycap);
/*
 * Shutdown step 3 (with the live streams): end every group long-poll and
 * wait, bounded, until their connections are resumed, so that the daemon
 * can stop.  New long-polls are refused from here on.
 */
void evs__bus_srv_quiesce(evs__srv *srv);
/* Stop every runner (committing its projection), close groups and the bus.  No-op when not started. */
void evs__bus_srv_stop(evs__srv *srv);

/*
 * The daemon's access and completion callbacks.  Paths under /projections,
 * /subscriptions and /groups are answered here; every other request is
 * handed to evs__http_access / evs__http_completed unchanged.
 */
enum MHD_Result evs__bus_http_access(void *cls, struct MHD_Connection *c, const char *url,
                                     const char *method, const char *version, const char *upload,
                                     size_t *upload_size, void **con_cls);
void evs__bus_http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                             enum MHD_RequestTerminationCode toe);

/*
 * Group consumers tied to a WebSocket connection (ws.c), all called from
 * the WebSocket thread.  A member joined here never idles out; it leaves
 * with evs__gconn_leave, or earlier when the group is closed under it
 * (update, reset, delete, DELETE of the consumer, shutdown): the next call
 * then returns EVS_ECLOSED and the handle only awaits its leave.  Failures
 * put a readable message into msg.
 *
 * Ownership: *out of evs__gconn_join is the caller's, released with
 * evs__gconn_leave; *d of evs__gconn_next with evs_delivery_free.
 */
typedef struct evs__gconn evs__gconn;
int evs__gconn_join(evs__srv *srv, const char *group, const char *consumer, evs__gconn **out, char *msg,
                    size_t cap);
/* A delivery if one is due now (never waits): EVS_OK, EVS_ETIMEDOUT for none, or an error. */
int evs__gconn_next(evs__gconn *gc, evs_delivery **d, char *msg, size_t cap);
/* Ack (nack 0) or nack a delivery; errors as evs_group_ack / evs_group_nack. */
int evs__gconn_answer(evs__gconn *gc, int nack, evs_delivery_id id, evs_nack_action action, const char *reason,
                      char *msg, size_t cap);
const char *evs__gconn_group(const evs__gconn *gc);
void evs__gconn_leave(evs__gconn *gc);

/* Append the per-consumer families to a /metrics body (nothing when there are no consumers). */
void evs__bus_metrics(evs__srv *srv, evs__sb *b);

#endif

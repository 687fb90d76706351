/*
 * http.h — the server's one front door (http.c): the callbacks serve.c
 * hands to libmicrohttpd.  Every request enters through evs__http_access
 * and is routed by the one route table there.
 */
#ifndef EVS_HTTP_H
#define EVS_HTTP_H

#include <microhttpd.h>
#include <sys/socket.h>

#include "server/state.h"

/* The access handler (cls: the evs__srv) and the request's completion. */
enum MHD_Result evs__http_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls);
void evs__http_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe);
/* Paths are split raw: libmicrohttpd must not decode them (see http.c). */
size_t evs__http_unescape_none(void *cls, struct MHD_Connection *c, char *s);
/*
 * The connection limit, enforced here as well: with a thread pool
 * libmicrohttpd splits its own limit between the workers, so one busy
 * worker could refuse while another accepts past the total.  While
 * shutting down nothing new is accepted.
 */
enum MHD_Result evs__http_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
void evs__http_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                           enum MHD_ConnectionNotificationCode toe);

#endif

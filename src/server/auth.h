/*
 * auth.h — who may call a route: the need of each route row (http.c's
 * table gives one to every row), the check of the request's API key
 * against it, the 401 and 403 answers, and the permission filter that
 * keeps reads and live streams of a restricted key to what it may see.
 * The keys themselves are src/auth/keys.c's.
 *
 * A need is a permission (keys.h: read, append, subscribe, admin) and a
 * scope: the route's {stream} (the key must hold the permission on that
 * stream), "any" (on some streams: the route shows only what the key may
 * see, as /all and /subscribe do), or "all" (on every stream and type: the
 * route's answer is not per stream, e.g. projection state).  Open routes
 * (/health, the console's static files) need nothing.
 *
 * With authentication off (serve.c: no --auth and no keys) every check
 * passes and rq->who stays NULL.
 */
#ifndef EVS_AUTH_H
#define EVS_AUTH_H

#include "auth/keys.h"
#include "server/query.h"
#include "server/respond.h"

enum { EVS_SCOPE_STREAM = 1, EVS_SCOPE_ANY = 2, EVS_SCOPE_ALL = 3 };
#define EVS_NEED(perm, scope) ((perm) | ((scope) << 4))
#define EVS_NEED_OPEN 0
#define EVS_NEED_PERM(need) ((unsigned)(need) & 15u)
#define EVS_NEED_SCOPE(need) ((need) >> 4)

/* Reasons of evstore_auth_failures_total. */
enum { EVS_AUTHF_MISSING, EVS_AUTHF_MALFORMED, EVS_AUTHF_UNKNOWN, EVS_AUTHF_REVOKED, EVS_AUTHF_FORBIDDEN,
       EVS_AUTHF_COUNT };
const char *evs__authf_name(int reason);

/* "open", "read:stream", "subscribe:any", "admin:all", ... */
void evs__auth_need_text(int need, char *buf, size_t cap);

/*
 * Authenticate the request (Authorization: Bearer KEY) and check need; a
 * {stream} scope only authenticates (http.c checks the stream once the path
 * is decoded).  0: go on (rq->who is
 * the key's principal, released at completion; NULL with auth off or on an
 * open route).  -1: answered 401 or 403, *mr for libmicrohttpd.
 */
int evs__auth_check(evs__req *rq, int need, enum MHD_Result *mr);
/* 403 naming the permission, the stream and (when not NULL) the event type; counted. */
enum MHD_Result evs__auth_forbid(evs__req *rq, unsigned perm, const char *stream, size_t stream_len,
                                 const char *type, size_t type_len);
/* who may see ev with perm (who NULL: anyone). */
int evs__auth_event_ok(const evs__principal *who, unsigned perm, const evs_event *ev);
/*
 * Make lf pass only what rq's key holds perm on (nothing to do when the key
 * holds it on everything, or auth is off): lf takes a reference to the key.
 */
void evs__auth_filter(evs__req *rq, evs__live_filter *lf, unsigned perm);

#endif

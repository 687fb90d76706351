/*
 * nats_internal.h — what the relay, the mirror and the info call share:
 * connecting to a list of servers, turning nats.c's status into our error
 * message, subject tokens, and the header codec (see nats_dist.h for the
 * message layout).
 */
#ifndef EVS_NATS_INTERNAL_H
#define EVS_NATS_INTERNAL_H

#include <nats/nats.h>

#include "dist/nats_dist.h"

/* The settings with defaults filled in and strings owned. */
typedef struct evs__nats_settings {
    char *urls_buf;                       /* owns the server strings */
    const char *servers[EVS_NATS_MAX_SERVERS];
    int nservers;
    char *stream, *prefix;
    unsigned replicas, window, timeout_ms;
    FILE *log;
} evs__nats_settings;

/*
 * Check and copy cfg (EVS_EINVAL naming the bad setting).
 * Ownership: on success the caller releases *out with evs__nats_settings_free.
 */
int evs__nats_settings_init(const evs_nats_config *cfg, evs__nats_settings *out);
void evs__nats_settings_free(evs__nats_settings *st);
/* One line "evstore: ..." to st->log (none when NULL), written and flushed at once: the server's other
   threads log too. */
void evs__nats_log(const evs__nats_settings *st, const char *fmt, ...) EVS_PRINTF(2, 3);

/*
 * Connect to any of the servers (nats.c reconnects to the others for ever
 * after) and open a JetStream context with jsopts (NULL: defaults).
 * Ownership: on success the caller destroys *js then *nc; on failure both
 * are NULL and evs_errmsg() names the servers tried.
 */
int evs__nats_connect(const evs__nats_settings *st, jsOptions *jsopts, natsConnection **nc, jsCtx **js);

/* EVS_EIO with "what: <nats status text>[ (JetStream error N)]: <last error>". */
int evs__nats_fail(natsStatus s, jsErrCode jerr, const char *what);

/* A subject token for name[0..n): '_' for bytes a token cannot hold, "_" when empty. */
void evs__nats_token(const char *name, size_t n, char *out, size_t cap);

/* Set header key to value[0..n), as NAME-B64 when it cannot go as is.  NATS_OK or an error. */
natsStatus evs__nats_hdr_set(natsMsg *m, const char *key, const char *value, size_t n);
/*
 * Header key (or its NAME-B64 form, decoded) into buf (cap bytes, NUL-
 * terminated); *n its length.  EVS_ENOTFOUND when absent, EVS_EINVAL when
 * it does not fit or is not base64.
 */
int evs__nats_hdr_get(natsMsg *m, const char *key, char *buf, size_t cap, size_t *n);
/* The header as an unsigned decimal; EVS_EINVAL when absent or malformed. */
int evs__nats_hdr_u64(natsMsg *m, const char *key, uint64_t *out);

/* The stream's info.  EVS_ENOTFOUND when the stream does not exist.  The caller destroys *si. */
int evs__nats_stream_info(jsCtx *js, const char *stream, jsStreamInfo **si);

#endif

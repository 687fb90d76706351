/*
 * nats_mirror.c — the consumer side: a store rebuilt from the relay's
 * JetStream stream, event for event (nats_dist.h states what is kept).
 *
 * It reads with an ordered consumer (nats.c recreates it from the last
 * sequence it delivered after a gap, a reconnect or a missed heartbeat), so
 * messages arrive in sequence order.  The mirror's own head is its
 * checkpoint: a message at or below the head is a redelivery and is only
 * checked (same event id at that position), the one after it is appended
 * with the expected version its stream position implies, and anything
 * further on is a gap and an error.  Nothing is acknowledged to JetStream:
 * restarting from the head needs no consumer state on the server.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "core/json.h"
#include "dist/nats_internal.h"

/* The stored event at global position gp has event id `id`?  EVS_OK, or EVS_ECONFLICT naming both. */
static int check_same(evs_store *s, uint64_t gp, const char *id) {
    evs_reader *rd = NULL;
    const evs_event *ev = NULL;
    char ours[37] = "";
    int rc = evs_read_all(s, gp, EVS_FORWARD, NULL, 1, &rd);
    if (rc) return rc;
    if (evs_reader_next(rd, &ev) == EVS_OK && ev->global_position == gp) evs_uuid_format(&ev->event_id, ours);
    evs_reader_close(rd);
    if (strcmp(ours, id) != 0)
        return evs__err(EVS_ECONFLICT, "NATS mirror: global position %llu holds event %s in the store but %s in "
                                       "the stream: the store is not a mirror of this stream",
                        (unsigned long long)gp, ours[0] ? ours : "nothing", id);
    return EVS_OK;
}

/*
 * Before mirroring into a store that is not empty: its head must not be
 * past the stream's end, and the event at min(head, last) must be the
 * stream's message there (positions before it then match as well: both
 * sides are gapless and this one was appended in order).
 */
static int check_start(jsCtx *js, evs_store *s, const char *stream, uint64_t head, uint64_t last) {
    if (head > last)
        return evs__err(EVS_ECONFLICT, "NATS mirror: the store's head is %llu but stream %s ends at sequence %llu: "
                                       "the store is not a mirror of this stream",
                        (unsigned long long)head, stream, (unsigned long long)last);
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus ns = js_GetMsg(&m, js, stream, head, NULL, &jerr);
    if (ns != NATS_OK) return evs__nats_fail(ns, jerr, "NATS mirror: cannot read the stream's message at the store's head");
    char id[64];
    size_t n = 0;
    int rc = evs__nats_hdr_get(m, "Evs-Event-Id", id, sizeof id, &n);
    if (rc == EVS_ENOTFOUND) rc = evs__err(EVS_EINVAL, "NATS mirror: stream %s, sequence %llu: no Evs-Event-Id header",
                                           stream, (unsigned long long)head);
    if (rc == EVS_OK) rc = check_same(s, head, id);
    natsMsg_Destroy(m);
    return rc;
}

/* Parse a UUID header into *out.  EVS_EINVAL naming the header. */
static int hdr_uuid(natsMsg *m, const char *key, evs_uuid *out, int required, int *present) {
    char buf[64];
    size_t n = 0;
    int rc = evs__nats_hdr_get(m, key, buf, sizeof buf, &n);
    if (present) *present = rc == EVS_OK;
    if (rc == EVS_ENOTFOUND && !required) return EVS_OK;
    if (rc == EVS_ENOTFOUND) return evs__err(EVS_EINVAL, "message without a %s header", key);
    if (rc) return rc;
    if (evs_uuid_parse(buf, n, out)) return evs__err(EVS_EINVAL, "header %s: \"%s\" is not a UUID", key, buf);
    return EVS_OK;
}

static int hdr_i64(natsMsg *m, const char *key, int64_t *out) {
    uint64_t v = 0;
    const char *t = NULL;
    if (natsMsgHeader_Get(m, key, &t) == NATS_OK && t && t[0] == '-')
        return evs__err(EVS_EINVAL, "header %s: \"%s\" is negative", key, t);
    int rc = evs__nats_hdr_u64(m, key, &v);
    if (rc) return rc;
    if (v > INT64_MAX) return evs__err(EVS_EINVAL, "header %s: out of range", key);
    *out = (int64_t)v;
    return EVS_OK;
}

/* Split a tags array (as the store renders it: JSON strings) into decoded strings. */
static int parse_tags(const char *p, size_t n, char *buf, size_t cap, const char **ptrs, size_t *ntags) {
    evs_json_error je;
    *ntags = 0;
    if (evs__json_validate(p, n, &je)) return evs__err(EVS_EINVAL, "header Evs-Tags: %s", je.msg);
    evs_json_span root = evs__json_root(p, n), el;
    if (root.type != EVS_JSON_ARRAY) return evs__err(EVS_EINVAL, "header Evs-Tags is not a JSON array");
    evs_json_iter it;
    evs__json_iter_init(&it, root);
    size_t used = 0;
    while (evs__json_iter_element(&it, &el)) {
        if (*ntags == EVS_MAX_TAGS || el.type != EVS_JSON_STRING)
            return evs__err(EVS_EINVAL, "header Evs-Tags: more than %u tags, or one is not a string", EVS_MAX_TAGS);
        long l = evs__json_string_decode(el, buf + used, cap - used);
        if (l < 0) return evs__err(EVS_EINVAL, "header Evs-Tags: a tag does not decode");
        ptrs[(*ntags)++] = buf + used;
        used += (size_t)l + 1;
    }
    return EVS_OK;
}

/* Buffers for one message's fields; sized to the store's limits. */
typedef struct mirror_buf {
    char stream[EVS_MAX_STREAM_NAME + 1], stream_type[EVS_MAX_TYPE_NAME + 1], event_type[EVS_MAX_TYPE_NAME + 1];
    char id[64];
    char *meta;                       /* EVS_MAX_EVENT_BYTES + 1 */
    char *tags_json, *tags;           /* EVS_MAX_TAGS * (EVS_MAX_TAG_BYTES * 6 + 4) + 3 */
    const char *tag_ptrs[EVS_MAX_TAGS];
} mirror_buf;

#define TAGS_CAP ((size_t)EVS_MAX_TAGS * (EVS_MAX_TAG_BYTES * 6 + 4) + 3)

/* Append (or check) the event one message carries.  *appended += 1 when it was new. */
static int mirror_one(evs_store *s, natsMsg *m, mirror_buf *b, uint64_t *appended) {
    uint64_t gp = 0, sp = 0, ver = 0;
    size_t n = 0, nstream = 0, nmeta = 0, ntj = 0, ntags = 0;
    int64_t occurred = 0;
    int rc, has_c = 0, has_r = 0;
    evs_uuid id, cause, corr;
    if ((rc = evs__nats_hdr_u64(m, "Evs-Global-Position", &gp))) return rc;
    if ((rc = evs__nats_hdr_get(m, "Evs-Event-Id", b->id, sizeof b->id, &n)))
        return rc == EVS_ENOTFOUND ? evs__err(EVS_EINVAL, "message without an Evs-Event-Id header") : rc;
    uint64_t head = evs_head(s);
    if (gp <= head) return check_same(s, gp, b->id); /* a redelivery */
    if (gp != head + 1)
        return evs__err(EVS_EINVAL, "NATS mirror: the stream skips from global position %llu to %llu",
                        (unsigned long long)head, (unsigned long long)gp);
    if ((rc = evs__nats_hdr_u64(m, "Evs-Stream-Position", &sp)) || (rc = evs__nats_hdr_u64(m, "Evs-Event-Version", &ver)) ||
        (rc = hdr_i64(m, "Evs-Occurred-At", &occurred)) || (rc = hdr_uuid(m, "Evs-Event-Id", &id, 1, NULL)) ||
        (rc = hdr_uuid(m, "Evs-Causation-Id", &cause, 0, &has_c)) ||
        (rc = hdr_uuid(m, "Evs-Correlation-Id", &corr, 0, &has_r)))
        return rc;
    if (sp == 0 || ver == 0 || ver > UINT32_MAX)
        return evs__err(EVS_EINVAL, "message at global position %llu: stream position or event version is not valid",
                        (unsigned long long)gp);
    if ((rc = evs__nats_hdr_get(m, "Evs-Stream", b->stream, sizeof b->stream, &nstream)) ||
        (rc = evs__nats_hdr_get(m, "Evs-Stream-Type", b->stream_type, sizeof b->stream_type, &n)) ||
        (rc = evs__nats_hdr_get(m, "Evs-Event-Type", b->event_type, sizeof b->event_type, &n)) ||
        (rc = evs__nats_hdr_get(m, "Evs-Metadata", b->meta, EVS_MAX_EVENT_BYTES + 1, &nmeta)))
        return rc == EVS_ENOTFOUND ? evs__err(EVS_EINVAL, "message at global position %llu lacks a header "
                                                          "(Evs-Stream, Evs-Stream-Type, Evs-Event-Type, Evs-Metadata)",
                                              (unsigned long long)gp)
                                   : rc;
    rc = evs__nats_hdr_get(m, "Evs-Tags", b->tags_json, TAGS_CAP, &ntj);
    if (rc == EVS_OK) rc = parse_tags(b->tags_json, ntj, b->tags, TAGS_CAP, b->tag_ptrs, &ntags);
    else if (rc == EVS_ENOTFOUND) rc = EVS_OK;
    if (rc) return rc;
    evs_event_in in = {
        .event_type = b->event_type,
        .data = natsMsg_GetData(m),
        .data_len = (size_t)natsMsg_GetDataLength(m),
        .metadata = b->meta,
        .metadata_len = nmeta,
        .event_id = &id,
        .causation_id = has_c ? &cause : NULL,
        .correlation_id = has_r ? &corr : NULL,
        .stream_type = b->stream_type,
        .tags = ntags ? b->tag_ptrs : NULL,
        .ntags = ntags,
        .event_version = (uint32_t)ver,
        .occurred_at = occurred,
    };
    if (!in.data) in.data = "";
    evs_append_result res;
    if (memchr(b->stream, '\0', nstream))
        return evs__err(EVS_EINVAL, "message at global position %llu: stream name holds a NUL", (unsigned long long)gp);
    rc = evs_append(s, b->stream, (int64_t)(sp - 1), &in, 1, &res, NULL);
    if (rc == EVS_ECONFLICT)
        return evs__err(EVS_ECONFLICT, "NATS mirror: event %s is position %llu of stream %s in the stream, but the "
                                       "mirror's stream is at version %llu: the store is not a mirror of this stream",
                        b->id, (unsigned long long)sp, b->stream, (unsigned long long)res.actual_version);
    if (rc) return evs__err_prefix(rc, "NATS mirror: global position %llu: ", (unsigned long long)gp);
    if (res.first_global_position != gp)
        return evs__err(EVS_ECONFLICT, "NATS mirror: event %s landed at global position %llu, not %llu: another "
                                       "writer appended to the mirror",
                        b->id, (unsigned long long)res.first_global_position, (unsigned long long)gp);
    if (!res.idempotent) (*appended)++;
    return EVS_OK;
}

#define MIRROR_ATTEMPTS 30u

static void pause_1s(volatile sig_atomic_t *stop) {
    for (int i = 0; i < 20 && !(stop && *stop); i++) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}

int evs__nats_mirror(evs_store *s, const evs_nats_config *cfg, int follow, volatile sig_atomic_t *stop,
                     uint64_t *appended) {
    evs__nats_settings st;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    natsSubscription *sub = NULL;
    natsMsg *m = NULL;
    mirror_buf b;
    memset(&b, 0, sizeof b);
    uint64_t dummy = 0;
    if (!appended) appended = &dummy;
    *appended = 0;
    int rc = evs__nats_settings_init(cfg, &st);
    if (rc) return rc;
    b.meta = malloc(EVS_MAX_EVENT_BYTES + 1);
    b.tags_json = malloc(TAGS_CAP);
    b.tags = malloc(TAGS_CAP);
    if (!b.meta || !b.tags_json || !b.tags) {
        rc = evs__err(EVS_ENOMEM, "NATS mirror: out of memory");
        goto cleanup;
    }
    if ((rc = evs__nats_connect(&st, NULL, &nc, &js))) goto cleanup;
    if ((rc = evs__nats_stream_info(js, st.stream, &si))) goto cleanup;
    uint64_t last = si->State.LastSeq, first = si->State.FirstSeq;
    char subj[256];
    snprintf(subj, sizeof subj, "%s", si->Config && si->Config->SubjectsLen ? si->Config->Subjects[0] : ">");
    jsStreamInfo_Destroy(si);
    si = NULL;
    uint64_t head = evs_head(s);
    if (last > 0 && first > 1 && head + 1 < first) {
        rc = evs__err(EVS_EINVAL, "NATS mirror: stream %s starts at sequence %llu, so global positions 1..%llu are "
                                  "gone from it and the mirror could not keep positions",
                      st.stream, (unsigned long long)first, (unsigned long long)(first - 1));
        goto cleanup;
    }
    /* A store that holds events must hold the stream's, up to where both reach. */
    if (head > 0 && (rc = check_start(js, s, st.stream, head, last))) goto cleanup;
    if (!follow && head >= last) goto cleanup;
    /* A consumer cannot be made, or the subscription breaks, while the
       cluster elects leaders after a node's death: subscribe again from
       the head, a second apart, up to MIRROR_ATTEMPTS times in a row. */
    unsigned failures = 0;
    natsStatus ns = NATS_OK;
    while (!(stop && *stop)) {
        if (!follow && evs_head(s) >= last) break;
        if (!sub) {
            jsSubOptions so;
            jsSubOptions_Init(&so);
            so.Stream = st.stream;
            so.Ordered = true;
            so.Config.DeliverPolicy = js_DeliverByStartSequence;
            so.Config.OptStartSeq = evs_head(s) + 1;
            jsErrCode jerr = 0;
            ns = js_SubscribeSync(&sub, js, subj, NULL, &so, &jerr);
            if (ns != NATS_OK) {
                sub = NULL;
                rc = evs__nats_fail(ns, jerr, "NATS mirror: cannot subscribe to the stream");
                if (++failures > MIRROR_ATTEMPTS) goto cleanup;
                if (st.log) fprintf(st.log, "evstore: %s (retrying in 1 s)\n", evs_errmsg());
                pause_1s(stop);
                rc = EVS_OK;
                continue;
            }
        }
        ns = natsSubscription_NextMsg(&m, sub, 500);
        if (ns == NATS_TIMEOUT) continue;
        if (ns != NATS_OK) {
            rc = evs__nats_fail(ns, 0, "NATS mirror: reading the stream");
            natsSubscription_Destroy(sub);
            sub = NULL;
            if (++failures > MIRROR_ATTEMPTS) goto cleanup;
            if (st.log) fprintf(st.log, "evstore: %s (subscribing again in 1 s)\n", evs_errmsg());
            pause_1s(stop);
            rc = EVS_OK;
            continue;
        }
        rc = mirror_one(s, m, &b, appended);
        natsMsg_Destroy(m);
        m = NULL;
        if (rc) goto cleanup;
        failures = 0;
    }
cleanup:
    natsMsg_Destroy(m);
    if (sub) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    evs__nats_settings_free(&st);
    free(b.meta);
    free(b.tags_json);
    free(b.tags);
    return rc;
}

/*
 * nats_import.c — the importer: plain messages that other services publish
 * to a JetStream stream, appended into the store's streams, each exactly
 * once (nats_dist.h states the mapping; docs/distribution.md the options).
 *
 * Exactly once is idempotency plus order, not a distributed transaction:
 *
 *   1. Every message gets an event id that depends on the message alone:
 *      its Nats-Msg-Id when that is a UUID, one derived from the Nats-Msg-Id
 *      otherwise, one derived from (JetStream stream name, stream sequence)
 *      when it has none.  The metadata the importer adds is a function of
 *      the message too.  A message appended twice is therefore the same
 *      append twice, which the store answers as an idempotent retry.
 *   2. The JetStream consumer is durable, pull based, with AckAll: an ack
 *      of sequence S acknowledges every message up to S.  The importer acks
 *      the last message of a batch only after its append returned, and the
 *      store runs with its default durability (an append returns once it is
 *      fdatasync'd), so the ack floor never passes a message that is not
 *      durable in the store.
 *   3. Messages are appended in stream order.  JetStream redelivers an
 *      unacknowledged message only after the consumer's ack wait, and meanwhile
 *      hands out later ones, which would break the order.  So every delivery
 *      is checked against the consumer's delivery sequence (one more per
 *      delivery): a gap, an error, a lost connection, or unacked deliveries
 *      found at start (a killed importer) make the importer "rewind": delete
 *      the consumer and create it again under the same name, starting right
 *      after the last message it appended.  What comes again is re-appended
 *      idempotently (1).  A kill between the delete and the create leaves no
 *      consumer; the next run then starts from the stream's first message
 *      and re-appends everything as no-ops: slow, never wrong.
 *
 * A message that cannot be imported (a body that is not a JSON object, a
 * header value that is not what it must be, a target stream name the store
 * refuses, an expected-version conflict, a seq-derived id already used by
 * other content) stops the importer with the sequence, subject and reason
 * named, its predecessors acknowledged and it not: a rerun meets it again.
 * With a dead-letter stream it is appended there instead (event type
 * ImportRejected, its own derived id, reason and body inside) and the
 * importer goes on.  A second message under a Nats-Msg-Id already imported
 * with other content is what JetStream's duplicate window drops too: it is
 * skipped and counted as a duplicate.
 */
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "core/json.h"
#include "core/sb.h"
#include "dist/nats_internal.h"

#define IMPORT_ATTEMPTS 30u       /* rewinds in a row before a one-shot run gives up */
#define META_CAP 1400u            /* the metadata the importer writes (names are capped) */

/* One message made ready to append. */
typedef struct import_item {
    natsMsg *msg;
    uint64_t seq;                  /* JetStream stream sequence */
    const char *subject;
    char target[EVS_MAX_STREAM_NAME + 1];
    char event_type[EVS_MAX_TYPE_NAME + 1];
    char stream_type[EVS_MAX_TYPE_NAME + 1];
    char meta[META_CAP];
    evs_uuid id, cause, corr;
    int has_stream_type, has_cause, has_corr, id_from_msg_id;
    int64_t expected;              /* EVS_EXPECT_ANY unless the message says otherwise */
    int has_expected;
    int64_t occurred_at;           /* when JetStream stored it */
    evs_event_in in;
} import_item;

typedef struct importer {
    evs_store *store;
    const evs_nats_import_config *cfg;
    evs__nats_settings st;
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    const char *consumer;
    unsigned batch, ack_wait_ms;
    uint64_t done;                 /* last stream sequence appended (or rejected) for good */
    uint64_t next_dseq;            /* the delivery sequence the next message must carry */
    import_item *items;
    evs_event_in *ins;
    evs_nats_import_stats *stats;
    volatile sig_atomic_t *stop;
} importer;

/* --------------------------------------------------------------- templates */

/* The subject's token k (1-based; negative counts from the end) into out[cap].  0 when there is none. */
static int subject_token(const char *subj, long k, char *out, size_t cap) {
    long n = 1;
    for (const char *p = subj; *p; p++) n += *p == '.';
    if (k < 0) k = n + 1 + k;
    if (k < 1 || k > n) return 0;
    const char *p = subj;
    for (long i = 1; i < k; i++) p = strchr(p, '.') + 1;
    size_t len = strcspn(p, ".");
    if (len + 1 > cap) return 0;
    memcpy(out, p, len);
    out[len] = '\0';
    return 1;
}

/*
 * Check a template without a message: literal text with {subject}, {N} or
 * {-N} (a subject token, 1-based or from the end), {header:NAME}.
 * EVS_EINVAL naming the option and what is wrong.
 */
static int template_check(const char *what, const char *tpl) {
    if (!tpl || !*tpl) return evs__err(EVS_EINVAL, "NATS import: %s is empty", what);
    for (const char *p = tpl; *p; p++) {
        if (*p == '}') return evs__err(EVS_EINVAL, "NATS import: %s \"%s\": a '}' without its '{'", what, tpl);
        if (*p != '{') continue;
        const char *e = strchr(p, '}');
        if (!e) return evs__err(EVS_EINVAL, "NATS import: %s \"%s\": a '{' without its '}'", what, tpl);
        size_t n = (size_t)(e - p - 1);
        const char *k = p + 1;
        int ok = (n == 7 && memcmp(k, "subject", 7) == 0) || (n > 7 && memcmp(k, "header:", 7) == 0);
        if (!ok && n > 0) {
            size_t i = *k == '-' ? 1 : 0;
            ok = n > i && n - i <= 3;
            for (; i < n && ok; i++) ok = k[i] >= '0' && k[i] <= '9';
            if (ok && atol(*k == '-' ? k + 1 : k) == 0) ok = 0;
        }
        if (!ok)
            return evs__err(EVS_EINVAL, "NATS import: %s \"%s\": {%.*s} is not {subject}, {N}, {-N} or {header:NAME}",
                            what, tpl, (int)n, k);
        p = e;
    }
    return EVS_OK;
}

/* Expand a checked template for message m.  EVS_EINVAL naming the missing token or header. */
static int template_expand(const char *what, const char *tpl, natsMsg *m, const char *subj, char *out, size_t cap) {
    size_t k = 0;
    char piece[EVS_MAX_STREAM_NAME + 1];
    for (const char *p = tpl; *p; p++) {
        const char *add = p;
        size_t n = 1;
        if (*p == '{') {
            const char *e = strchr(p, '}');
            const char *key = p + 1;
            size_t kn = (size_t)(e - key);
            if (kn == 7 && memcmp(key, "subject", 7) == 0) {
                add = subj;
                n = strlen(subj);
            } else if (kn > 7 && memcmp(key, "header:", 7) == 0) {
                char hname[64];
                snprintf(hname, sizeof hname, "%.*s", (int)(kn - 7), key + 7);
                int rc = evs__nats_hdr_get(m, hname, piece, sizeof piece, &n);
                if (rc == EVS_ENOTFOUND || (rc == EVS_OK && n == 0))
                    return evs__err(EVS_EINVAL, "%s {header:%s}: the message has no %s header", what, hname, hname);
                if (rc) return evs__err_prefix(rc, "%s: ", what);
                add = piece;
            } else {
                long t = atol(key);
                if (!subject_token(subj, t, piece, sizeof piece))
                    return evs__err(EVS_EINVAL, "%s {%ld}: subject \"%s\" has no token %ld", what, t, subj, t);
                add = piece;
                n = strlen(piece);
            }
            p = e;
        }
        if (k + n >= cap)
            return evs__err(EVS_EINVAL, "%s: more than %zu bytes for subject \"%s\"", what, cap - 1, subj);
        memcpy(out + k, add, n);
        k += n;
    }
    out[k] = '\0';
    if (k == 0) return evs__err(EVS_EINVAL, "%s: empty for subject \"%s\"", what, subj);
    if (memchr(out, '\0', k)) return evs__err(EVS_EINVAL, "%s: holds a NUL byte", what);
    return EVS_OK;
}

/* ------------------------------------------------------------------ ids */

/* A name-based UUID (version 8, RFC 9562's custom layout): BLAKE2b-128 of the parts, NUL-separated. */
static void derive_id(evs_uuid *out, const char *kind, const char *a, const char *b) {
    crypto_generichash_state h;
    unsigned char z = 0;
    crypto_generichash_init(&h, NULL, 0, sizeof out->b);
    crypto_generichash_update(&h, (const unsigned char *)"evstore-nats-import", 19);
    crypto_generichash_update(&h, &z, 1);
    crypto_generichash_update(&h, (const unsigned char *)kind, strlen(kind));
    crypto_generichash_update(&h, &z, 1);
    crypto_generichash_update(&h, (const unsigned char *)a, strlen(a));
    crypto_generichash_update(&h, &z, 1);
    crypto_generichash_update(&h, (const unsigned char *)b, strlen(b));
    crypto_generichash_final(&h, out->b, sizeof out->b);
    out->b[6] = (uint8_t)((out->b[6] & 0x0f) | 0x80);
    out->b[8] = (uint8_t)((out->b[8] & 0x3f) | 0x80);
}

/* ------------------------------------------------------------ one message */

/* A UUID header, optional.  EVS_EINVAL naming it when present and not a UUID. */
static int opt_uuid(natsMsg *m, const char *key, evs_uuid *out, int *present) {
    char buf[80];
    size_t n = 0;
    int rc = evs__nats_hdr_get(m, key, buf, sizeof buf, &n);
    *present = 0;
    if (rc == EVS_ENOTFOUND) return EVS_OK;
    if (rc) return rc;
    if (evs_uuid_parse(buf, n, out)) return evs__err(EVS_EINVAL, "header %s: \"%s\" is not a UUID", key, buf);
    *present = 1;
    return EVS_OK;
}

/* Evs-Expected-Version: a version (0 = the stream must not exist), any, no_stream or exists. */
static int parse_expected(natsMsg *m, int64_t *out, int *present) {
    const char *v = NULL;
    *out = EVS_EXPECT_ANY;
    *present = 0;
    if (natsMsgHeader_Get(m, "Evs-Expected-Version", &v) != NATS_OK || !v) return EVS_OK;
    *present = 1;
    if (strcmp(v, "any") == 0) return EVS_OK;
    if (strcmp(v, "no_stream") == 0) return (*out = EVS_EXPECT_NO_STREAM), EVS_OK;
    if (strcmp(v, "exists") == 0) return (*out = EVS_EXPECT_EXISTS), EVS_OK;
    uint64_t x = 0;
    int ok = *v != '\0' && strlen(v) <= 18;
    for (const char *p = v; ok && *p; p++) {
        ok = *p >= '0' && *p <= '9';
        x = x * 10 + (uint64_t)(*p - '0');
    }
    if (!ok)
        return evs__err(EVS_EINVAL, "header Evs-Expected-Version: \"%s\" is not a version (a number, any, "
                                    "no_stream or exists)", v);
    *out = (int64_t)x;
    return EVS_OK;
}

/*
 * Everything but the append: target stream, event type, id, metadata, the
 * optional headers, and the body checked as a JSON object.  EVS_EINVAL /
 * EVS_EJSON naming the header or template; the caller adds the sequence.
 */
static int prepare(importer *im, natsMsg *m, uint64_t seq, int64_t ts, import_item *it) {
    memset(it, 0, sizeof *it);
    it->msg = m;
    it->seq = seq;
    it->subject = natsMsg_GetSubject(m);
    it->occurred_at = ts;
    int rc;
    size_t n = 0;
    if ((rc = template_expand("target stream", im->cfg->target, m, it->subject, it->target, sizeof it->target)))
        return rc;
    if (im->cfg->event_type) {
        if ((rc = template_expand("event type", im->cfg->event_type, m, it->subject, it->event_type,
                                  sizeof it->event_type)))
            return rc;
    } else {
        rc = evs__nats_hdr_get(m, "Evs-Event-Type", it->event_type, sizeof it->event_type, &n);
        if (rc == EVS_OK && n == 0) return evs__err(EVS_EINVAL, "header Evs-Event-Type is empty");
        if (rc == EVS_ENOTFOUND && !subject_token(it->subject, -1, it->event_type, sizeof it->event_type))
            return evs__err(EVS_EINVAL, "no Evs-Event-Type header and subject \"%s\" has no last token", it->subject);
        if (rc && rc != EVS_ENOTFOUND) return rc;
    }
    rc = evs__nats_hdr_get(m, "Evs-Stream-Type", it->stream_type, sizeof it->stream_type, &n);
    if (rc == EVS_OK) it->has_stream_type = 1;
    else if (rc != EVS_ENOTFOUND) return rc;
    if ((rc = opt_uuid(m, "Evs-Correlation-Id", &it->corr, &it->has_corr)) ||
        (rc = opt_uuid(m, "Evs-Causation-Id", &it->cause, &it->has_cause)) ||
        (rc = parse_expected(m, &it->expected, &it->has_expected)))
        return rc;
    /* the event id: Nats-Msg-Id, as is or derived, else (stream, sequence) */
    char seqtxt[24], msgid[EVS_MAX_STREAM_NAME + 1];
    snprintf(seqtxt, sizeof seqtxt, "%llu", (unsigned long long)seq);
    rc = evs__nats_hdr_get(m, "Nats-Msg-Id", msgid, sizeof msgid, &n);
    if (rc == EVS_OK && n > 0) {
        it->id_from_msg_id = 1;
        if (evs_uuid_parse(msgid, n, &it->id) || evs_uuid_is_nil(&it->id)) derive_id(&it->id, "msg-id", msgid, "");
    } else if (rc == EVS_OK || rc == EVS_ENOTFOUND) {
        msgid[0] = '\0';
        derive_id(&it->id, "seq", im->st.stream, seqtxt);
    } else {
        return rc;
    }
    /* the body */
    const char *data = natsMsg_GetData(m);
    size_t dlen = (size_t)natsMsg_GetDataLength(m);
    evs_json_error je;
    if (!data || dlen == 0) return evs__err(EVS_EJSON, "the body is empty, not a JSON object");
    if (evs__json_validate_object(data, dlen, &je)) return evs__err(EVS_EJSON, "the body is not a JSON object: %s", je.msg);
    /* the source, in the metadata: a function of the message only (see the top) */
    evs__sb b = {0};
    evs__sb_adds(&b, "{\"source\":\"nats\",\"nats_stream\":");
    evs__sb_json_str(&b, im->st.stream, strlen(im->st.stream));
    evs__sb_printf(&b, ",\"nats_seq\":%llu,\"nats_subject\":", (unsigned long long)seq);
    evs__sb_json_str(&b, it->subject, strlen(it->subject));
    if (msgid[0]) {
        evs__sb_adds(&b, ",\"nats_msg_id\":");
        evs__sb_json_str(&b, msgid, strlen(msgid));
    }
    evs__sb_adds(&b, "}");
    if (b.oom || b.len >= sizeof it->meta) {
        int code = b.oom ? EVS_ENOMEM : EVS_EINVAL;
        evs__sb_free(&b);
        return evs__err(code, "the subject or Nats-Msg-Id is too long for the metadata");
    }
    memcpy(it->meta, b.p, b.len + 1);
    it->in = (evs_event_in){
        .event_type = it->event_type,
        .data = data,
        .data_len = dlen,
        .metadata = it->meta,
        .metadata_len = b.len,
        .event_id = &it->id,
        .causation_id = it->has_cause ? &it->cause : NULL,
        .correlation_id = it->has_corr ? &it->corr : NULL,
        .stream_type = it->has_stream_type ? it->stream_type : NULL,
        .occurred_at = it->occurred_at,
    };
    evs__sb_free(&b);
    return EVS_OK;
}

/* Errors that concern one message (rejected), not the store or the machine (fatal). */
static int message_error(int rc) {
    return rc == EVS_EINVAL || rc == EVS_EJSON || rc == EVS_ELIMIT || rc == EVS_ECONFLICT || rc == EVS_EDUPLICATE ||
           rc == EVS_EDELETED || rc == EVS_ECONDITION;
}

/*
 * A message that cannot be imported: to the dead-letter stream when there
 * is one (EVS_OK, counted), else EVS_EINVAL/ECONFLICT... with the message
 * naming the sequence (the caller stops there).  rc/why: the failure.
 */
static int reject(importer *im, natsMsg *m, uint64_t seq, const char *target, int rc) {
    char why[600];
    snprintf(why, sizeof why, "%s", evs_errmsg());
    const char *subj = natsMsg_GetSubject(m);
    if (!im->cfg->dead_letter)
        return evs__err(rc, "NATS import: stream %s, sequence %llu (subject %s): %s", im->st.stream,
                        (unsigned long long)seq, subj, why);
    evs__sb b = {0};
    const char *data = natsMsg_GetData(m);
    size_t dlen = (size_t)natsMsg_GetDataLength(m);
    size_t b64cap = sodium_base64_encoded_len(dlen, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(b64cap);
    char seqtxt[24];
    snprintf(seqtxt, sizeof seqtxt, "%llu", (unsigned long long)seq);
    if (!b64) return evs__err(EVS_ENOMEM, "NATS import: out of memory for a dead letter");
    sodium_bin2base64(b64, b64cap, (const unsigned char *)(data ? data : ""), dlen, sodium_base64_VARIANT_ORIGINAL);
    evs__sb_adds(&b, "{\"reason\":");
    evs__sb_json_str(&b, why, strlen(why));
    evs__sb_printf(&b, ",\"error\":\"%s\",\"nats_stream\":", evs_errname(rc));
    evs__sb_json_str(&b, im->st.stream, strlen(im->st.stream));
    evs__sb_printf(&b, ",\"nats_seq\":%llu,\"nats_subject\":", (unsigned long long)seq);
    evs__sb_json_str(&b, subj, strlen(subj));
    if (target && *target) {
        evs__sb_adds(&b, ",\"target_stream\":");
        evs__sb_json_str(&b, target, strlen(target));
    }
    evs__sb_adds(&b, ",\"body_base64\":\"");
    evs__sb_adds(&b, b64);
    evs__sb_adds(&b, "\"}");
    free(b64);
    evs_uuid id;
    derive_id(&id, "dead-letter", im->st.stream, seqtxt);
    int out = EVS_ENOMEM;
    if (!b.oom) {
        evs_event_in in = {.event_type = "ImportRejected", .data = b.p, .data_len = b.len, .event_id = &id};
        evs_append_result res;
        out = evs_append(im->store, im->cfg->dead_letter, EVS_EXPECT_ANY, &in, 1, &res, NULL);
        /* the same message rejected again (a redelivery) may read otherwise
           now (the stream moved on): its id says it is there already */
        if (out == EVS_EDUPLICATE) out = EVS_OK;
        if (out) evs__err_prefix(out, "NATS import: dead-letter stream %s: ", im->cfg->dead_letter);
    }
    evs__sb_free(&b);
    if (out) return out;
    im->stats->rejected++;
    evs__nats_log(&im->st, "NATS import: stream %s, sequence %llu (subject %s) went to dead-letter stream %s: %s", im->st.stream,
            (unsigned long long)seq, subj, im->cfg->dead_letter, why);
    return EVS_OK;
}

/* Append one prepared item on its own.  EVS_OK (imported, already there, duplicate or dead-lettered) or the stop. */
static int append_one(importer *im, import_item *it) {
    evs_append_result res;
    int rc = evs_append(im->store, it->target, it->expected, &it->in, 1, &res, NULL);
    if (rc == EVS_OK) {
        if (res.idempotent) im->stats->already++;
        else im->stats->imported++;
        return EVS_OK;
    }
    if (rc == EVS_EDUPLICATE && it->id_from_msg_id) {
        /* the producer's idempotency key, seen before with other content or
           elsewhere: the message JetStream's duplicate window would drop */
        im->stats->duplicates++;
        evs__nats_log(&im->st, "NATS import: stream %s, sequence %llu skipped: %s", im->st.stream, (unsigned long long)it->seq,
                evs_errmsg());
        return EVS_OK;
    }
    if (!message_error(rc)) return evs__err_prefix(rc, "NATS import: stream %s, sequence %llu: ", im->st.stream,
                                                   (unsigned long long)it->seq);
    if (rc == EVS_ECONFLICT) evs__err_prefix(rc, "stream \"%s\" (Evs-Expected-Version): ", it->target);
    return reject(im, it->msg, it->seq, it->target, rc);
}

/*
 * Append items[0..n) in order: runs to the same stream without an expected
 * version go as one append (one fdatasync), falling back to one by one when
 * that append fails on a message's account (a redelivered batch cut
 * differently, a bad event inside).
 */
static int append_items(importer *im, import_item *items, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1, bytes = items[i].in.data_len;
        if (!items[i].has_expected)
            while (j < n && j - i < EVS_MAX_EVENTS_PER_APPEND && !items[j].has_expected &&
                   strcmp(items[j].target, items[i].target) == 0 && bytes + items[j].in.data_len < EVS_MAX_APPEND_BYTES / 2)
                bytes += items[j++].in.data_len;
        int rc = EVS_EINVAL;
        if (j - i > 1) {
            evs_append_result res;
            for (size_t k = i; k < j; k++) im->ins[k - i] = items[k].in;
            rc = evs_append(im->store, items[i].target, EVS_EXPECT_ANY, im->ins, j - i, &res, NULL);
            if (rc == EVS_OK) {
                if (res.idempotent) im->stats->already += j - i;
                else im->stats->imported += j - i;
            } else if (!message_error(rc)) {
                return evs__err_prefix(rc, "NATS import: stream %s, sequences %llu..%llu: ", im->st.stream,
                                       (unsigned long long)items[i].seq, (unsigned long long)items[j - 1].seq);
            }
        }
        if (rc != EVS_OK)
            for (size_t k = i; k < j; k++) {
                if ((rc = append_one(im, &items[k]))) return rc;
                im->done = items[k].seq;
            }
        im->done = items[j - 1].seq;
        i = j;
    }
    return EVS_OK;
}

/* --------------------------------------------------------------- consumer */

static void drop_sub(importer *im) {
    if (im->sub) natsSubscription_Destroy(im->sub); /* keeps the durable consumer (nats.c >= 3.4) */
    im->sub = NULL;
}

static int bind_sub(importer *im) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = im->st.stream;
    so.Consumer = im->consumer;
    jsErrCode jerr = 0;
    natsStatus s = js_PullSubscribe(&im->sub, im->js, im->cfg->subject ? im->cfg->subject : NULL, im->consumer, NULL,
                                    &so, &jerr);
    if (s != NATS_OK) {
        im->sub = NULL;
        return evs__nats_fail(s, jerr, "NATS import: cannot subscribe to the consumer");
    }
    return EVS_OK;
}

/*
 * Make the consumer start right after im->done (rewind, see the top), or
 * from the first message when the importer never appended anything.
 */
static int rewind_consumer(importer *im) {
    drop_sub(im);
    jsErrCode jerr = 0;
    natsStatus s = js_DeleteConsumer(im->js, im->st.stream, im->consumer, NULL, &jerr);
    if (s != NATS_OK && s != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr)
        return evs__nats_fail(s, jerr, "NATS import: cannot delete the consumer to rewind it");
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = im->consumer;
    cc.AckPolicy = js_AckAll;
    cc.AckWait = (int64_t)im->ack_wait_ms * 1000000;
    cc.MaxAckPending = (int64_t)im->batch * 4;
    cc.FilterSubject = im->cfg->subject;
    if (im->done > 0) {
        cc.DeliverPolicy = js_DeliverByStartSequence;
        cc.OptStartSeq = im->done + 1;
    } else {
        cc.DeliverPolicy = js_DeliverAll;
    }
    jsConsumerInfo *ci = NULL;
    jerr = 0;
    s = js_AddConsumer(&ci, im->js, im->st.stream, &cc, NULL, &jerr);
    jsConsumerInfo_Destroy(ci);
    if (s != NATS_OK) return evs__nats_fail(s, jerr, "NATS import: cannot create the consumer");
    im->next_dseq = 1;
    return bind_sub(im);
}

/* At start: take the consumer over as it is when nothing is in flight, else rewind it to its ack floor. */
static int open_consumer(importer *im) {
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, im->js, im->st.stream, im->consumer, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) {
        im->done = 0;
        return rewind_consumer(im);
    }
    if (s != NATS_OK) return evs__nats_fail(s, jerr, "NATS import: cannot read the consumer's state");
    const char *f = ci->Config && ci->Config->FilterSubject ? ci->Config->FilterSubject : "";
    const char *want = im->cfg->subject ? im->cfg->subject : "";
    int rc = EVS_OK;
    if (strcmp(f, want) != 0 || !ci->Config || ci->Config->AckPolicy != js_AckAll) {
        rc = evs__err(EVS_EINVAL, "NATS import: consumer %s of stream %s exists with subject filter \"%s\" (or "
                                  "another ack policy), not \"%s\": give another --consumer",
                      im->consumer, im->st.stream, f, want);
    } else {
        im->done = ci->AckFloor.Stream;
        if (ci->NumAckPending == 0 && ci->NumRedelivered == 0) {
            im->next_dseq = ci->Delivered.Consumer + 1;
            rc = bind_sub(im);
        } else {
            evs__nats_log(&im->st, "NATS import: consumer %s has %lld unacknowledged deliveries: starting again after sequence %llu",
                    im->consumer, (long long)ci->NumAckPending, (unsigned long long)im->done);
            rc = rewind_consumer(im);
        }
    }
    jsConsumerInfo_Destroy(ci);
    return rc;
}

/* ------------------------------------------------------------------ batch */

#define NEED_REWIND 1

/*
 * Import one fetched list in order, then ack the last message appended.
 * EVS_OK; NEED_REWIND when a delivery is out of sequence or the ack failed
 * (what was appended stays appended: im->done says how far); an error to
 * stop on.  *pending: the NumPending of the last message (0: caught up).
 */
static int import_list(importer *im, natsMsgList *list, uint64_t *pending) {
    size_t n = 0;
    int rc = EVS_OK, rewind = 0;
    for (int i = 0; i < list->Count; i++) {
        natsMsg *m = list->Msgs[i];
        jsMsgMetaData *md = NULL;
        if (natsMsg_GetMetaData(&md, m) != NATS_OK) {
            rewind = 1; /* a status message, not a delivery */
            break;
        }
        uint64_t dseq = md->Sequence.Consumer, seq = md->Sequence.Stream;
        int64_t ts = md->Timestamp;
        *pending = md->NumPending;
        jsMsgMetaData_Destroy(md);
        if (dseq != im->next_dseq) {
            evs__nats_log(&im->st, "NATS import: delivery %llu (sequence %llu) where %llu was due: rewinding to sequence %llu",
                    (unsigned long long)dseq, (unsigned long long)seq, (unsigned long long)im->next_dseq,
                    (unsigned long long)im->done + 1);
            rewind = 1;
            break;
        }
        im->next_dseq++;
        if (seq <= im->done) continue; /* a redelivery of a message appended already */
        import_item *it = &im->items[n];
        int prc = prepare(im, m, seq, ts, it);
        if (prc) {
            /* bad input: what came before it goes in first, in order */
            char why[900];
            snprintf(why, sizeof why, "%s", evs_errmsg());
            if ((rc = append_items(im, im->items, n))) break;
            n = 0;
            evs__err(prc, "%s", why);
            if ((rc = reject(im, m, seq, it->target, prc))) break;
            im->done = seq;
            continue;
        }
        n++;
    }
    if (rc == EVS_OK) rc = append_items(im, im->items, n);
    /* ack up to the last message whose append returned (AckAll) */
    natsMsg *ack = NULL;
    for (int i = 0; i < list->Count; i++) {
        jsMsgMetaData *md = NULL;
        if (natsMsg_GetMetaData(&md, list->Msgs[i]) != NATS_OK) break;
        uint64_t seq = md->Sequence.Stream;
        jsMsgMetaData_Destroy(md);
        if (seq > im->done) break;
        ack = list->Msgs[i];
    }
    if (ack) {
        jsErrCode jerr = 0;
        if (natsMsg_AckSync(ack, NULL, &jerr) != NATS_OK && rc == EVS_OK) rewind = 1;
    }
    if (rc) return rc;
    return rewind ? NEED_REWIND : EVS_OK;
}

/* ------------------------------------------------------------------- run */

static void pause_1s(volatile sig_atomic_t *stop) {
    for (int i = 0; i < 20 && !(stop && *stop); i++) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}

int evs__nats_import_check(const evs_nats_import_config *cfg) {
    int rc;
    if (!cfg) return evs__err(EVS_EINVAL, "NATS import: no settings");
    if ((rc = evs__nats_config_check(&cfg->nats))) return rc;
    if (!cfg->nats.stream) return evs__err(EVS_EINVAL, "NATS import: no JetStream stream to read (--stream NAME)");
    if ((rc = template_check("target stream (--to)", cfg->target))) return rc;
    if (cfg->event_type && (rc = template_check("event type (--event-type)", cfg->event_type))) return rc;
    if (cfg->consumer) {
        const char *c = cfg->consumer;
        int ok = *c && strlen(c) <= 64;
        for (; ok && *c; c++) ok = *c > ' ' && *c != '.' && *c != '*' && *c != '>' && (unsigned char)*c < 0x7f;
        if (!ok)
            return evs__err(EVS_EINVAL, "NATS import: consumer name \"%s\" is not a JetStream durable name "
                                        "(1..64 printable bytes without spaces, '.', '*', '>')", cfg->consumer);
    }
    if (cfg->dead_letter && !*cfg->dead_letter) return evs__err(EVS_EINVAL, "NATS import: the dead-letter stream name is empty");
    if (cfg->batch > EVS_NATS_MAX_WINDOW)
        return evs__err(EVS_EINVAL, "NATS import: batch %u is above the limit %u", cfg->batch, EVS_NATS_MAX_WINDOW);
    return EVS_OK;
}

int evs__nats_import(evs_store *s, const evs_nats_import_config *cfg, int follow, volatile sig_atomic_t *stop,
                     evs_nats_import_stats *stats) {
    importer im;
    evs_nats_import_stats dummy;
    memset(&im, 0, sizeof im);
    if (!stats) stats = &dummy;
    memset(stats, 0, sizeof *stats);
    int rc = evs__nats_import_check(cfg);
    if (rc) return rc;
    if (sodium_init() < 0) return evs__err(EVS_EIO, "NATS import: libsodium failed to initialise");
    im.store = s;
    im.cfg = cfg;
    im.stats = stats;
    im.stop = stop;
    im.consumer = cfg->consumer ? cfg->consumer : EVS_NATS_DEFAULT_CONSUMER;
    im.batch = cfg->batch ? cfg->batch : EVS_NATS_DEFAULT_WINDOW;
    im.ack_wait_ms = cfg->ack_wait_ms ? cfg->ack_wait_ms : 30000;
    if ((rc = evs__nats_settings_init(&cfg->nats, &im.st))) return rc;
    im.items = calloc(im.batch, sizeof *im.items);
    im.ins = calloc(im.batch, sizeof *im.ins);
    if (!im.items || !im.ins) {
        rc = evs__err(EVS_ENOMEM, "NATS import: out of memory for a batch of %u", im.batch);
        goto cleanup;
    }
    if ((rc = evs__nats_connect(&im.st, NULL, &im.nc, &im.js))) goto cleanup;
    /* A stream that does not exist is refused here; NATS trouble (a timed-out request while the cluster
       elects a leader) is not: the loop below retries it as it retries any later failure, as the relay does */
    jsStreamInfo *si = NULL;
    rc = evs__nats_stream_info(im.js, im.st.stream, &si);
    jsStreamInfo_Destroy(si);
    if (rc == EVS_EIO) {
        evs__nats_log(&im.st, "%s (retrying when the importer runs)", evs_errmsg());
        evs__err_clear();
        rc = EVS_OK;
    }
    if (rc) goto cleanup;
    unsigned failures = 0;
    int opened = 0;
    while (!(stop && *stop)) {
        if (!opened) {
            rc = open_consumer(&im);
            if (rc == EVS_EINVAL) goto cleanup;
        } else if (!im.sub) {
            rc = rewind_consumer(&im);
        } else {
            natsMsgList list = {0};
            jsErrCode jerr = 0;
            natsStatus ns = natsSubscription_Fetch(&list, im.sub, (int)im.batch, follow ? 1000 : 2000, &jerr);
            if (ns == NATS_TIMEOUT && list.Count == 0) {
                natsMsgList_Destroy(&list);
                if (follow) continue;
                /* caught up?  the consumer says: nothing pending, nothing unacknowledged */
                jsConsumerInfo *ci = NULL;
                ns = js_GetConsumerInfo(&ci, im.js, im.st.stream, im.consumer, NULL, &jerr);
                if (ns == NATS_OK) {
                    int caught_up = ci->NumPending == 0 && ci->NumAckPending == 0;
                    int lost = ci->NumAckPending > 0;
                    jsConsumerInfo_Destroy(ci);
                    if (caught_up) break;
                    if (lost) drop_sub(&im);
                    continue;
                }
                rc = evs__nats_fail(ns, jerr, "NATS import: cannot read the consumer's state");
            } else if (ns != NATS_OK && list.Count == 0) {
                natsMsgList_Destroy(&list);
                rc = evs__nats_fail(ns, jerr, "NATS import: fetching messages");
            } else {
                uint64_t pending = 1;
                rc = import_list(&im, &list, &pending);
                natsMsgList_Destroy(&list);
                stats->last_seq = im.done;
                if (cfg->progress) cfg->progress(cfg->progress_arg, stats);
                if (rc == EVS_OK) {
                    if (failures) evs__nats_log(&im.st, "NATS import: importing again (sequence %llu appended)",
                                          (unsigned long long)im.done);
                    failures = 0;
                    if (!follow && pending == 0) break;
                    continue;
                }
                if (rc == NEED_REWIND) {
                    drop_sub(&im);
                    continue;
                }
                goto cleanup; /* a message to stop at, or the store failed */
            }
        }
        if (rc == EVS_OK) {
            opened = 1;
            continue;
        }
        /* NATS trouble (a node gone, no quorum yet): rewind after a pause */
        stats->errors++;
        drop_sub(&im);
        if (++failures > IMPORT_ATTEMPTS && !follow) goto cleanup;
        evs__nats_log(&im.st, "%s (rewinding to sequence %llu in 1 s)", evs_errmsg(), (unsigned long long)im.done + 1);
        pause_1s(stop);
        rc = EVS_OK;
    }
    rc = EVS_OK;
cleanup:
    stats->last_seq = im.done;
    if (cfg->progress) cfg->progress(cfg->progress_arg, stats);
    drop_sub(&im);
    jsCtx_Destroy(im.js);
    natsConnection_Destroy(im.nc);
    evs__nats_settings_free(&im.st);
    free(im.items);
    free(im.ins);
    return rc;
}

/*
 * nats_relay.c — the publisher: $all, in global order, into one JetStream
 * stream (message layout and the sequence = position invariant in
 * nats_dist.h).
 *
 * One round publishes up to `window` events asynchronously, each saying
 * which sequence must precede it, then waits for every acknowledgement.
 * Only a round that was acknowledged in full moves the checkpoint.  Any
 * failure (a refused or unanswered publish, a lost connection) ends the
 * round; the next one starts from the stream's own last sequence, read
 * back from JetStream, so a publish that did land while its acknowledgement
 * was lost is not sent again, and one that did not is.
 *
 * With a filter the stream's sequence counts the matching events only
 * (r->seq), and the checkpoint r->pos is the global position the last
 * message carries; a round that finds nothing to publish still moves
 * r->pos to where its read stopped (the next round would find nothing
 * there either).  After a restart the read starts again from the last
 * published event: the events skipped since are not published, so nothing
 * is lost or doubled.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "dist/nats_internal.h"

struct evs_nats_relay {
    evs_store *store;
    evs__nats_settings st;
    natsConnection *nc;
    jsCtx *js;
    uint64_t pos;                 /* the checkpoint, as the running thread knows it */
    uint64_t seq;                 /* the stream's last sequence (= pos without a filter) */
    char *tpl;                    /* the subject template after the prefix */
    char *fbuf;                   /* owns the filter's strings */
    const char *ftypes[EVS_MAX_QUERY_TYPES];
    evs_filter filter;
    int filtered;
    int need_stream;              /* make sure the stream exists before the next round */
    int need_checkpoint;          /* read it back from JetStream before the next round */
    _Atomic uint64_t published, head, errors;
    /* Set by nats.c's thread when a publish is refused or times out. */
    pthread_mutex_t mu;
    int failed;
    char why[400];
};

/* nats.c calls this from its own thread for a publish that failed; the
   message is destroyed by the library when we return. */
static void on_pub_error(jsCtx *js, jsPubAckErr *pae, void *closure) {
    evs_nats_relay *r = closure;
    pthread_mutex_lock(&r->mu);
    if (!r->failed) {
        const char *pos = NULL;
        if (pae->Msg) natsMsgHeader_Get(pae->Msg, "Evs-Global-Position", &pos);
        snprintf(r->why, sizeof r->why, "publish of global position %s refused: %s%s%s (JetStream error %d)",
                 pos ? pos : "?", natsStatus_GetText(pae->Err), pae->ErrText ? ": " : "",
                 pae->ErrText ? pae->ErrText : "", (int)pae->ErrCode);
        r->failed = 1;
    }
    pthread_mutex_unlock(&r->mu);
}

/* Create the stream when missing; refuse one that does not take our subjects. */
static int ensure_stream(evs_nats_relay *r) {
    jsStreamInfo *si = NULL;
    char subj[256];
    snprintf(subj, sizeof subj, "%s.>", r->st.prefix);
    int rc = evs__nats_stream_info(r->js, r->st.stream, &si);
    if (rc == EVS_ENOTFOUND) {
        jsStreamConfig cfg;
        jsStreamConfig_Init(&cfg);
        const char *subjects[1] = {subj};
        cfg.Name = r->st.stream;
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.Storage = js_FileStorage;
        cfg.Replicas = r->st.replicas;
        cfg.Duplicates = (int64_t)600 * 1000000000; /* 10 minutes: far longer than any retry */
        jsErrCode jerr = 0;
        natsStatus s = js_AddStream(&si, r->js, &cfg, NULL, &jerr);
        if (s != NATS_OK) {
            char what[400];
            snprintf(what, sizeof what, "NATS: cannot create stream %s (subjects %s, %u replicas)", r->st.stream,
                     subj, r->st.replicas);
            return evs__nats_fail(s, jerr, what);
        }
        jsStreamInfo_Destroy(si);
        return EVS_OK;
    }
    if (rc) return rc;
    int found = 0;
    for (int i = 0; si->Config && i < si->Config->SubjectsLen; i++)
        if (strcmp(si->Config->Subjects[i], subj) == 0) found = 1;
    jsStreamInfo_Destroy(si);
    if (!found)
        return evs__err(EVS_EINVAL, "NATS: stream %s exists but does not take the subjects %s "
                                    "(give its prefix with --subject-prefix, or another --stream)",
                        r->st.stream, subj);
    return EVS_OK;
}

/*
 * The checkpoint: the stream's last sequence, after checking that the
 * message there is this store's event at that position (a stream filled
 * from another store, or a store replaced under a stream, is refused with
 * EVS_EINVAL rather than continued with a silent mix).
 */
static int read_checkpoint(evs_nats_relay *r, uint64_t *pos, uint64_t *seqp) {
    jsStreamInfo *si = NULL;
    natsMsg *m = NULL;
    evs_reader *rd = NULL;
    int rc = evs__nats_stream_info(r->js, r->st.stream, &si);
    if (rc) return rc;
    uint64_t last = si->State.LastSeq, first = si->State.FirstSeq, msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    if (last == 0) {
        *pos = 0;
        *seqp = 0;
        return EVS_OK;
    }
    uint64_t head = evs_head(r->store);
    if (last > head && !r->filtered) {
        return evs__err(EVS_EINVAL, "NATS: stream %s ends at sequence %llu but the store's head is %llu: "
                                    "it holds another store's events",
                        r->st.stream, (unsigned long long)last, (unsigned long long)head);
    }
    if (first != 1 || msgs != last)
        return evs__err(EVS_EINVAL, "NATS: stream %s holds %llu messages at sequences %llu..%llu, not 1..%llu: "
                                    "it was trimmed or had messages deleted, so sequence = global position no "
                                    "longer holds",
                        r->st.stream, (unsigned long long)msgs, (unsigned long long)first,
                        (unsigned long long)last, (unsigned long long)last);
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(&m, r->js, r->st.stream, last, NULL, &jerr);
    if (s != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what, "NATS: stream %s: cannot read its last message", r->st.stream);
        return evs__nats_fail(s, jerr, what);
    }
    uint64_t gp = 0;
    char idtxt[64];
    size_t idn = 0;
    if ((rc = evs__nats_hdr_u64(m, "Evs-Global-Position", &gp)) ||
        (rc = evs__nats_hdr_get(m, "Evs-Event-Id", idtxt, sizeof idtxt, &idn))) {
        evs__err_prefix(EVS_EINVAL, "NATS: stream %s, sequence %llu: ", r->st.stream, (unsigned long long)last);
        rc = EVS_EINVAL;
        goto cleanup;
    }
    const evs_event *ev = NULL;
    char ours[37] = "";
    if (gp > head || gp < last) {
        rc = evs__err(EVS_EINVAL, "NATS: stream %s, sequence %llu holds global position %llu, but the store's head is "
                                  "%llu: the stream holds another store's events",
                      r->st.stream, (unsigned long long)last, (unsigned long long)gp, (unsigned long long)head);
        goto cleanup;
    }
    if ((rc = evs_read_all(r->store, gp, EVS_FORWARD, NULL, 1, &rd))) goto cleanup;
    if (evs_reader_next(rd, &ev) == EVS_OK && ev->global_position == gp) evs_uuid_format(&ev->event_id, ours);
    if (gp != last && !r->filtered) {
        rc = evs__err(EVS_EINVAL, "NATS: stream %s, sequence %llu holds global position %llu: a relay with a filter "
                                  "filled it (give the same --filter-* options) or another store did",
                      r->st.stream, (unsigned long long)last, (unsigned long long)gp);
        goto cleanup;
    }
    if (strcmp(idtxt, ours) != 0) {
        rc = evs__err(EVS_EINVAL, "NATS: stream %s, sequence %llu holds event %s at global position %llu, but the "
                                  "store has %s there: the stream holds another store's events",
                      r->st.stream, (unsigned long long)last, idtxt, (unsigned long long)gp, ours[0] ? ours : "nothing");
        goto cleanup;
    }
    *pos = gp;
    *seqp = last;
cleanup:
    evs_reader_close(rd);
    natsMsg_Destroy(m);
    return rc;
}

/*
 * The subject template and the filter, checked and copied.  A template is
 * dot-separated tokens, each literal text or one of {stream}, {stream_type},
 * {event_type} (whole tokens: an expanded name may not build several).
 */
static int relay_options(evs_nats_relay *r, const evs_nats_config *cfg) {
    const char *tpl = cfg->subject_template ? cfg->subject_template : "{stream_type}.{event_type}";
    size_t n = strlen(tpl);
    if (n == 0 || n > 200 || tpl[0] == '.' || tpl[n - 1] == '.' || strstr(tpl, ".."))
        return evs__err(EVS_EINVAL, "NATS: subject template \"%s\" is not tokens separated by single dots", tpl);
    for (const char *t = tpl; *t;) {
        size_t len = strcspn(t, ".");
        int ok = 1;
        if (*t == '{')
            ok = (len == 8 && memcmp(t, "{stream}", 8) == 0) || (len == 13 && memcmp(t, "{stream_type}", 13) == 0) ||
                 (len == 12 && memcmp(t, "{event_type}", 12) == 0);
        for (size_t i = 0; ok && *t != '{' && i < len; i++)
            ok = t[i] > ' ' && t[i] != '*' && t[i] != '>' && t[i] != '{' && t[i] != '}' && (unsigned char)t[i] < 0x7f;
        if (!ok)
            return evs__err(EVS_EINVAL, "NATS: subject template \"%s\": token \"%.*s\" is neither literal text nor "
                                        "{stream}, {stream_type} or {event_type}", tpl, (int)len, t);
        t += len;
        if (*t == '.') t++;
    }
    if (!(r->tpl = strdup(tpl))) return evs__err(EVS_ENOMEM, "NATS relay: out of memory");
    const char *sp = cfg->filter_stream_prefix, *st = cfg->filter_stream_type, *et = cfg->filter_event_types;
    if (!sp && !st && !et) return EVS_OK;
    size_t cap = (sp ? strlen(sp) : 0) + (st ? strlen(st) : 0) + (et ? strlen(et) : 0) + 3;
    char *b = r->fbuf = malloc(cap);
    if (!b) return evs__err(EVS_ENOMEM, "NATS relay: out of memory");
    if (sp) {
        if (!*sp) return evs__err(EVS_EINVAL, "NATS relay: the stream prefix filter is empty");
        r->filter.stream_prefix = strcpy(b, sp);
        b += strlen(sp) + 1;
    }
    if (st) {
        if (!*st) return evs__err(EVS_EINVAL, "NATS relay: the stream type filter is empty");
        r->filter.stream_type = strcpy(b, st);
        b += strlen(st) + 1;
    }
    if (et) {
        strcpy(b, et);
        for (char *save = NULL, *tok = strtok_r(b, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (r->filter.n_event_types == EVS_MAX_QUERY_TYPES)
                return evs__err(EVS_EINVAL, "NATS relay: more than %u event types in the filter", EVS_MAX_QUERY_TYPES);
            r->ftypes[r->filter.n_event_types++] = tok;
        }
        if (!r->filter.n_event_types) return evs__err(EVS_EINVAL, "NATS relay: the event type filter is empty");
        r->filter.event_types = r->ftypes;
    }
    r->filtered = 1;
    return EVS_OK;
}

int evs__nats_relay_check(const evs_nats_config *cfg) {
    evs_nats_relay tmp;
    memset(&tmp, 0, sizeof tmp);
    int rc = evs__nats_config_check(cfg);
    if (rc == EVS_OK) rc = relay_options(&tmp, cfg);
    free(tmp.tpl);
    free(tmp.fbuf);
    return rc;
}

/* NATS errors that a later attempt may not meet (EVS_EIO: a timeout, a lost
   connection, no leader yet; EVS_ENOTFOUND: a stream not visible yet). */
static int retryable(int rc) { return rc == EVS_EIO || rc == EVS_ENOTFOUND; }

int evs__nats_relay_create(evs_store *s, const evs_nats_config *cfg, evs_nats_relay **out) {
    *out = NULL;
    if (!s) return evs__err(EVS_EINVAL, "NATS relay: no store");
    evs_nats_relay *r = calloc(1, sizeof *r);
    if (!r) return evs__err(EVS_ENOMEM, "NATS relay: out of memory");
    int rc;
    pthread_mutex_init(&r->mu, NULL);
    r->store = s;
    if ((rc = evs__nats_settings_init(cfg, &r->st))) goto fail;
    if ((rc = relay_options(r, cfg))) goto fail;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.ErrHandler = on_pub_error;
    jo.PublishAsync.ErrHandlerClosure = r;
    jo.PublishAsync.MaxPending = r->st.window;
    if ((rc = evs__nats_connect(&r->st, &jo, &r->nc, &r->js))) goto fail;
    /* A refusal (the stream takes other subjects, holds another store's
       events) ends here.  NATS trouble once connected (a request timed out
       while the cluster elects a leader, or is slow) does not: the run
       retries it as it retries a failed round, so a relay started while a
       node dies waits for the cluster instead of exiting. */
    rc = ensure_stream(r);
    if (rc == EVS_OK) rc = read_checkpoint(r, &r->pos, &r->seq);
    if (retryable(rc)) {
        evs__nats_log(&r->st, "%s (retrying when the relay runs)", evs_errmsg());
        r->need_stream = 1;
        r->need_checkpoint = 1;
        atomic_fetch_add(&r->errors, 1);
        evs__err_clear();
    } else if (rc) {
        goto fail;
    }
    atomic_store(&r->published, r->pos);
    atomic_store(&r->head, evs_head(s));
    *out = r;
    return EVS_OK;
fail:
    evs__nats_relay_destroy(r);
    return rc;
}

void evs__nats_relay_destroy(evs_nats_relay *r) {
    if (!r) return;
    jsCtx_Destroy(r->js);
    natsConnection_Destroy(r->nc);
    evs__nats_settings_free(&r->st);
    free(r->tpl);
    free(r->fbuf);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void evs__nats_relay_stats(evs_nats_relay *r, evs_nats_relay_stats *out) {
    memset(out, 0, sizeof *out);
    if (!r) return;
    out->published = atomic_load(&r->published);
    out->head = evs_head(r->store);
    out->errors = atomic_load(&r->errors);
    out->connected = r->nc && natsConnection_Status(r->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* One event as a message: subject, body = data, headers (nats_dist.h). */
static natsStatus build_msg(evs_nats_relay *r, const evs_event *ev, natsMsg **out) {
    char subj[1200], tok[260], num[32], id[37];
    size_t k = (size_t)snprintf(subj, sizeof subj, "%s", r->st.prefix);
    for (const char *t = r->tpl; *t;) {
        size_t len = strcspn(t, ".");
        if (len == 8 && memcmp(t, "{stream}", 8) == 0) evs__nats_token(ev->stream, ev->stream_len, tok, sizeof tok);
        else if (len == 13 && memcmp(t, "{stream_type}", 13) == 0)
            evs__nats_token(ev->stream_type, ev->stream_type_len, tok, sizeof tok);
        else if (len == 12 && memcmp(t, "{event_type}", 12) == 0)
            evs__nats_token(ev->event_type, ev->event_type_len, tok, sizeof tok);
        else snprintf(tok, sizeof tok, "%.*s", (int)len, t);
        k += (size_t)snprintf(subj + k, sizeof subj - k, ".%s", tok); /* 201 + 4 x 260 bytes fit */
        t += len;
        if (*t == '.') t++;
    }
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subj, NULL, ev->data, (int)ev->data_len);
    evs_uuid_format(&ev->event_id, id);
#define HDR(k, v, n) \
    if (s == NATS_OK) s = evs__nats_hdr_set(m, k, v, n)
#define HDR_NUM(k, fmt, x)                                   \
    if (s == NATS_OK) {                                      \
        int l = snprintf(num, sizeof num, fmt, x);           \
        s = evs__nats_hdr_set(m, k, num, (size_t)l);         \
    }
    HDR("Evs-Event-Id", id, 36);
    HDR("Evs-Stream", ev->stream, ev->stream_len);
    HDR("Evs-Stream-Type", ev->stream_type, ev->stream_type_len);
    HDR("Evs-Event-Type", ev->event_type, ev->event_type_len);
    HDR_NUM("Evs-Event-Version", "%u", (unsigned)ev->event_version);
    HDR_NUM("Evs-Global-Position", "%llu", (unsigned long long)ev->global_position);
    HDR_NUM("Evs-Stream-Position", "%llu", (unsigned long long)ev->stream_position);
    HDR_NUM("Evs-Occurred-At", "%lld", (long long)ev->occurred_at);
    HDR_NUM("Evs-Recorded-At", "%lld", (long long)ev->recorded_at);
    HDR("Evs-Metadata", ev->metadata, ev->metadata_len);
    if (ev->tags && ev->tags_len) HDR("Evs-Tags", ev->tags, ev->tags_len);
    if (ev->has_causation_id) {
        evs_uuid_format(&ev->causation_id, id);
        HDR("Evs-Causation-Id", id, 36);
    }
    if (ev->has_correlation_id) {
        evs_uuid_format(&ev->correlation_id, id);
        HDR("Evs-Correlation-Id", id, 36);
    }
#undef HDR
#undef HDR_NUM
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        m = NULL;
    }
    *out = m;
    return s;
}

/*
 * Publish the events after r->pos, at most a window of them, and wait for
 * their acknowledgements.  EVS_OK with r->pos advanced; EVS_EIO when NATS
 * failed (the caller recovers); EVS_ELOST/EVS_ECORRUPT from the store.
 */
static int publish_round(evs_nats_relay *r) {
    evs_reader *rd = NULL;
    const evs_event *ev = NULL;
    uint64_t next = r->pos + 1;
    natsStatus s = NATS_OK;
    int rc;
    pthread_mutex_lock(&r->mu);
    r->failed = 0;
    r->why[0] = '\0';
    pthread_mutex_unlock(&r->mu);
    uint64_t seq = r->seq, read_to = r->pos;
    if ((rc = evs_read_all(r->store, next, EVS_FORWARD, r->filtered ? &r->filter : NULL, r->st.window, &rd)))
        return rc;
    while ((rc = evs_reader_next(rd, &ev)) == EVS_OK) {
        if (r->filtered) next = ev->global_position;
        if (ev->global_position != next) {
            rc = evs__err(EVS_ELOST, "NATS relay: the store has no event at global position %llu "
                                     "(next is %llu): sequence = global position cannot hold",
                          (unsigned long long)next, (unsigned long long)ev->global_position);
            break;
        }
        natsMsg *m = NULL;
        char id[37];
        evs_uuid_format(&ev->event_id, id);
        if ((s = build_msg(r, ev, &m)) != NATS_OK) {
            rc = evs__nats_fail(s, 0, "NATS relay: cannot build a message");
            break;
        }
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        po.ExpectStream = r->st.stream;
        po.ExpectLastSeq = seq; /* 0 (the first message) is not checked by the server */
        po.MaxWait = r->st.timeout_ms;
        s = js_PublishMsgAsync(r->js, &m, &po);
        natsMsg_Destroy(m); /* NULL when the library took it */
        if (s != NATS_OK) {
            rc = evs__nats_fail(s, 0, "NATS relay: publish");
            break;
        }
        next++;
        seq++;
    }
    if (rc == EVS_DONE && r->filtered) read_to = evs_reader_position(rd) - 1;
    if (rc == EVS_ELOST) {
        uint64_t a = 0, b = 0;
        evs_reader_lost(rd, &a, &b);
        rc = evs__err(EVS_ELOST, "NATS relay: global positions %llu..%llu were lost in a repair: the stream "
                                 "cannot carry the gap (sequence = global position)",
                      (unsigned long long)a, (unsigned long long)b);
    }
    evs_reader_close(rd);
    /* Wait for what was sent even after an error: nothing may be in
       flight when the next round reads the checkpoint back. */
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = r->st.timeout_ms;
    natsStatus cs = js_PublishAsyncComplete(r->js, &po);
    if (cs != NATS_OK) {
        natsMsgList pending = {0};
        if (js_PublishAsyncGetPendingList(&pending, r->js) == NATS_OK) natsMsgList_Destroy(&pending);
        if (rc == EVS_DONE || rc == EVS_OK) rc = evs__nats_fail(cs, 0, "NATS relay: waiting for publish acknowledgements");
    }
    pthread_mutex_lock(&r->mu);
    if (r->failed && (rc == EVS_DONE || rc == EVS_OK)) rc = evs__err(EVS_EIO, "NATS relay: %s", r->why);
    pthread_mutex_unlock(&r->mu);
    if (rc != EVS_DONE && rc != EVS_OK) return rc;
    r->pos = next - 1 > read_to ? next - 1 : read_to;
    r->seq = seq;
    atomic_store(&r->published, r->pos);
    return EVS_OK;
}

static void pause_ms(unsigned ms, volatile sig_atomic_t *stop) {
    for (unsigned done = 0; done < ms && !(stop && *stop); done += 50) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}

int evs__nats_relay_run(evs_nats_relay *r, int follow, volatile sig_atomic_t *stop, unsigned retry_ms,
                        unsigned attempts) {
    uint64_t target = evs_head(r->store);
    unsigned failures = 0;
    int rc = EVS_OK;
    while (!(stop && *stop)) {
        if (r->need_stream) {
            rc = ensure_stream(r);
            if (rc == EVS_OK) r->need_stream = 0;
            else if (!retryable(rc)) return rc;
        }
        if (rc == EVS_OK && r->need_checkpoint) {
            uint64_t pos = 0, seq = 0;
            rc = read_checkpoint(r, &pos, &seq);
            if (rc == EVS_EINVAL) return rc;
            if (rc == EVS_OK) {
                evs__nats_log(&r->st, "NATS relay: resuming after the stream's last sequence, %llu", (unsigned long long)pos);
                r->pos = pos;
                r->seq = seq;
                atomic_store(&r->published, pos);
                r->need_checkpoint = 0;
            }
        }
        if (rc == EVS_OK) {
            uint64_t head = evs_head(r->store);
            atomic_store(&r->head, head);
            if (!follow && r->pos >= target) return EVS_OK;
            if (head <= r->pos) {
                evs_wait_for(r->store, r->pos + 1, 200, NULL);
                continue;
            }
            rc = publish_round(r);
            if (rc == EVS_OK) {
                if (failures) evs__nats_log(&r->st, "NATS relay: publishing again (global position %llu acknowledged)", (unsigned long long)r->pos);
                failures = 0;
                continue;
            }
            if (rc == EVS_ELOST || rc == EVS_ECORRUPT || rc == EVS_EINVAL) return rc;
        }
        atomic_fetch_add(&r->errors, 1);
        failures++;
        evs__nats_log(&r->st, "%s (retrying in %u ms from the stream's last sequence)", evs_errmsg(), retry_ms);
        if (!follow && failures > attempts) return rc;
        r->need_checkpoint = 1;
        pause_ms(retry_ms, stop);
        rc = EVS_OK;
    }
    return EVS_OK;
}

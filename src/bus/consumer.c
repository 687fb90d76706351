/*
 * consumer.c — the engine under every subscription and projection.
 *
 * A poll is a loop of pages:
 *
 *     head0 = head; read up to page_size events from rec.next
 *     for each event: filter (tag, stream-subscription filter), per-stream
 *       parking, deliver; rec.next = position + 1
 *     a page that ended by itself moves rec.next to evs_reader_position,
 *       which passes events a filter skipped
 *     checkpoint every N events / T ms
 *     a short page means caught up: wait for head0 + 1 (in slices, so a
 *       cancel is noticed), then read again
 *
 * Catch-up and live are the same loop, so the switch has neither gap nor
 * duplicate, and the only buffer is the reader's page.
 *
 * Failure of the event at P:
 *   1. Stateful consumers (projections) first make the committed state
 *      describe exactly the events below P: when events were applied since
 *      the last commit, the uncommitted state is dropped, rec.next goes back
 *      to the committed position and the loop replays up to P ("stop_before")
 *      and commits there.  Handlers are deterministic, so the replay gives
 *      the same state; then P is read again and fails on clean state.
 *   2. Retries k = 1..max_retries: sleep delay(k) on the consumer's clock,
 *      drop partial state, read P again, deliver.
 *   3. Exhausted: park (DLQ entry + rec.next = P + 1, one transaction) or
 *      stop (status error, rec.next = P).
 *
 * A commit writes, in ONE transaction of DIR/consumers/, the consumer's
 * pending state (projections), one DLQ change, and the record with
 * rec.next: after a crash the consumer resumes exactly where its state is.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_internal.h"
#include "core/json.h"

#define EVS_WAIT_SLICE_MS 100

static int is_stream_sub(const evs__consumer *c) { return c->rec.stream[0] != 0; }

/*
 * Hand ev to the consumer, through its map when it has one (upcasting,
 * evstore_bus.h): a map that fails fails the event like its handler would.
 */
static int deliver(evs__consumer *c, const evs_event *ev, char *err, size_t cap) {
    if (!c->map.fn) return c->ops->deliver(c, ev, err, cap);
    evs_event seen = *ev;
    void *owned = NULL;
    if (c->map.fn(c->map.ctx, ev, &seen, &owned, err, cap) != 0) {
        free(owned);
        if (!err[0]) snprintf(err, cap, "the consumer's event map failed");
        return 1;
    }
    int rc = c->ops->deliver(c, &seen, err, cap);
    free(owned);
    return rc;
}

int evs__consumer_init(evs__consumer *c, evs_bus *b, int kind, const char *name, const char *owner,
                       const char *stream, const evs_filter *f, const char *tag, uint64_t from) {
    int rc;
    evs__kv_txn *txn = NULL;
    if ((rc = evs__bus_check_name(name))) return rc;
    if (stream && strlen(stream) > EVS_MAX_STREAM_NAME) return evs__err(EVS_EINVAL, "stream name too long");
    if ((rc = evs__bus_claim(b, name))) return rc;
    evs__dlq_build_owner(name, c->build_owner);
    c->lease = evs__bus_lease(b, name);
    c->bus = b;
    c->store = b->store;
    if ((rc = evs__kv_begin(b->kv, c->lease, 0, &txn))) {
        rc = evs__bus_kv_err(rc, "begin");
        goto fail;
    }
    rc = evs__record_get(b, txn, name, &c->rec);
    if (rc == EVS_ENOTFOUND) {
        memset(&c->rec, 0, sizeof c->rec);
        snprintf(c->rec.name, sizeof c->rec.name, "%s", name);
        c->rec.kind = kind;
        c->rec.created_at = evs_now_ns();
        snprintf(c->rec.stream, sizeof c->rec.stream, "%s", stream ? stream : "");
        if ((rc = evs__bus_start_next(b->store, stream, from, &c->rec.next))) goto fail;
        evs__err_clear();
    } else if (rc) {
        goto fail;
    } else if (c->rec.kind != kind) {
        rc = evs__err(EVS_EINVAL, "consumer \"%s\" is a %s", name, evs__kind_name(c->rec.kind));
        goto fail;
    } else if (strcmp(c->rec.stream, stream ? stream : "") != 0) {
        rc = evs__err(EVS_EINVAL, "subscription \"%s\" reads %s%s%s, not %s%s%s", name,
                      c->rec.stream[0] ? "stream \"" : "", c->rec.stream[0] ? c->rec.stream : "$all",
                      c->rec.stream[0] ? "\"" : "", stream ? "stream \"" : "", stream ? stream : "$all",
                      stream ? "\"" : "");
        goto fail;
    }
    snprintf(c->rec.owner, sizeof c->rec.owner, "%s", owner ? owner : "");
    if ((rc = evs__record_set_filter(&c->rec, f, tag))) goto fail;
    c->rec.max_retries = c->retry.max_retries;
    if ((rc = evs__record_put(b, txn, &c->rec))) goto fail;
    rc = evs__kv_commit(txn);
    txn = NULL;
    if (rc) {
        rc = evs__bus_kv_err(rc, "commit");
        goto fail;
    }
    c->filter.event_types = (const char *const *)c->rec.event_types;
    c->filter.n_event_types = c->rec.n_event_types;
    c->filter.stream_type = c->rec.stream_type;
    c->filter.stream_prefix = c->rec.stream_prefix;
    c->filter.correlation_id = c->rec.has_corr ? &c->rec.corr : NULL;
    c->committed_next = c->rec.next;
    c->committed_processed = c->rec.processed;
    c->last_commit_ns = evs__mono_ns();
    return EVS_OK;
fail:
    if (txn) evs__kv_abort(txn);
    evs__record_free(&c->rec);
    evs__bus_release(b, name);
    c->bus = NULL;
    return rc;
}

static void free_parked(evs__consumer *c) {
    for (size_t i = 0; i < c->n_parked; i++) free(c->parked[i]);
    free(c->parked);
    free(c->parked_first);
    c->parked = NULL;
    c->parked_first = NULL;
    c->n_parked = 0;
}

void evs__consumer_fini(evs__consumer *c) {
    if (!c->bus) return;
    evs__bus_release(c->bus, c->rec.name);
    evs__record_free(&c->rec);
    free_parked(c);
    c->bus = NULL;
}

/* ----------------------------------------------------------------- commit */

/* Where this consumer parks now: a rebuild parks apart until its swap (bus_internal.h). */
static const char *dlq_owner(const evs__consumer *c) { return c->rec.build_gen ? c->build_owner : c->rec.name; }

int evs__consumer_commit(evs__consumer *c, const evs__dlq_op *op) {
    int rc;
    evs__kv_txn *txn;
    evs_bus *b = c->bus;
    const char *owner = dlq_owner(c);
    /* on the holder's lease: a consumer that lost it (PostgreSQL) cannot commit over its successor */
    if ((rc = evs__kv_begin(b->kv, c->lease, 0, &txn))) return evs__bus_kv_err(rc, "begin");
    if (c->ops->flush && (rc = c->ops->flush(c, txn))) goto fail;
    if (op && op->kind == 1) {
        if ((rc = evs__dlq_put(b, txn, owner, &op->e, 1))) goto fail;
        if ((c->dlq_max_count || c->dlq_max_age_ns) &&
            (rc = evs__dlq_prune_txn(b, txn, owner, c->dlq_max_age_ns, c->dlq_max_count,
                                     evs__clock_now(c->clock), NULL)))
            goto fail;
    } else if (op && op->kind == 2) {
        if ((rc = evs__dlq_put(b, txn, owner, &op->e, 0))) goto fail;
    } else if (op && op->kind == 3) {
        if ((rc = evs__dlq_del(b, txn, owner, op->e.position))) goto fail;
    }
    if (c->since_commit) c->rec.last_processed_at = evs__clock_now(c->clock);
    if ((rc = evs__record_put(b, txn, &c->rec))) goto fail;
    if ((rc = evs__kv_commit(txn))) {
        rc = evs__bus_kv_err(rc, "commit");
        goto lost;
    }
    c->committed_next = c->rec.next;
    c->committed_processed = c->rec.processed;
    c->since_commit = 0;
    c->record_dirty = 0;
    c->last_commit_ns = evs__mono_ns();
    if (op && op->kind) atomic_fetch_add(&b->dlq_gen, 1);
    evs__bus_notify_commit(b);
    return EVS_OK;
fail:
    evs__kv_abort(txn);
lost:
    /* the flushed state is gone with the transaction: start again from the commit */
    if (c->ops->discard) c->ops->discard(c);
    c->rec.next = c->committed_next;
    c->rec.processed = c->committed_processed;
    c->since_commit = 0;
    return rc;
}

static int maybe_commit(evs__consumer *c, int force) {
    if (c->rec.next == c->committed_next && !c->record_dirty && !c->since_commit) return EVS_OK;
    if (!force && c->since_commit < c->checkpoint_every &&
        evs__mono_ns() - c->last_commit_ns < (int64_t)c->checkpoint_ms * 1000000)
        return EVS_OK;
    return evs__consumer_commit(c, NULL);
}

int evs__consumer_set_status(evs__consumer *c, int status) {
    c->rec.status = status;
    if (status == EVS_CONSUMER_ACTIVE) c->rec.last_error[0] = 0;
    c->record_dirty = 1;
    return evs__consumer_commit(c, NULL);
}

int evs__consumer_info(evs__consumer *c, evs_consumer_info *out) {
    evs__kv_txn *txn;
    int rc = evs__kv_begin(c->bus->kv, NULL, EVS__KV_RDONLY, &txn);
    if (rc) return evs__bus_kv_err(rc, "begin");
    rc = evs__record_info(c->bus, txn, &c->rec, out);
    evs__kv_abort(txn);
    return rc;
}

/* ---------------------------------------------------------------- filters */

int evs__bus_has_tag(const evs_event *ev, const char *tag) {
    if (!ev->tags || !ev->tags_len) return 0;
    evs_json_iter it;
    evs_json_span v;
    if (evs__json_iter_init(&it, evs__json_root(ev->tags, ev->tags_len))) return 0;
    char buf[EVS_MAX_TAG_BYTES + 1];
    while (evs__json_iter_element(&it, &v))
        if (evs__json_string_decode(v, buf, sizeof buf) >= 0 && strcmp(buf, tag) == 0) return 1;
    return 0;
}

static int span_eq(const char *p, size_t n, const char *s) { return strlen(s) == n && memcmp(p, s, n) == 0; }

/* Conditions the reader did not apply: the tag, and every filter of a stream subscription. */
static int extra_match(const evs__consumer *c, const evs_event *ev) {
    const evs__record *r = &c->rec;
    if (is_stream_sub(c)) {
        if (r->n_event_types) {
            size_t i;
            for (i = 0; i < r->n_event_types; i++)
                if (span_eq(ev->event_type, ev->event_type_len, r->event_types[i])) break;
            if (i == r->n_event_types) return 0;
        }
        if (r->stream_type && !span_eq(ev->stream_type, ev->stream_type_len, r->stream_type)) return 0;
        if (r->stream_prefix &&
            (ev->stream_len < strlen(r->stream_prefix) || memcmp(ev->stream, r->stream_prefix, strlen(r->stream_prefix))))
            return 0;
        if (r->has_corr && (!ev->has_correlation_id || memcmp(&r->corr, &ev->correlation_id, 16))) return 0;
    }
    if (r->tag && !evs__bus_has_tag(ev, r->tag)) return 0;
    return 1;
}

/* --------------------------------------------------------- per-stream order */

/* Append owner's parked streams whose first parked position is below `below`. */
static int scan_parked(evs__consumer *c, evs__kv_txn *txn, const char *name, uint64_t below, size_t *cap) {
    evs__kv_cursor *cur;
    int rc;
    if ((rc = evs__kv_cursor_open(txn, c->bus->dlq_streams, &cur))) return evs__bus_kv_err(rc, "cursor");
    size_t nl = strlen(name);
    evs__kv_val k = {nl + 1, (void *)name}, v;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size < nl + 1 || memcmp(k.data, name, nl + 1) != 0) break;
        uint64_t first = v.size == 16 ? evs__get64be((uint8_t *)v.data + 8) : 0;
        if (first >= below) continue;
        if (c->n_parked == *cap) {
            *cap = *cap ? *cap * 2 : 8;
            char **np = realloc(c->parked, *cap * sizeof *np);
            if (np) c->parked = np;
            uint64_t *nf = np ? realloc(c->parked_first, *cap * sizeof *nf) : NULL;
            if (nf) c->parked_first = nf;
            if (!np || !nf) {
                rc = evs__err(EVS_ENOMEM, "out of memory");
                break;
            }
        }
        size_t sl = k.size - nl - 1;
        char *s = malloc(sl + 1);
        if (!s) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            break;
        }
        memcpy(s, (char *)k.data + nl + 1, sl);
        s[sl] = 0;
        c->parked_first[c->n_parked] = first;
        c->parked[c->n_parked++] = s;
    }
    evs__kv_cursor_close(cur);
    if (rc && rc != EVS__KV_NOTFOUND) return rc < 0 ? rc : evs__bus_kv_err(rc, "scan parked streams");
    return EVS_OK;
}

/*
 * The streams parked for this consumer.  During a rebuild from F: the
 * rebuild's own parks, and the live entries below F (the rebuild does not
 * replay those events, so they still block their streams); live entries
 * at F and after are what the rebuild is computing anew.
 */
static int load_parked(evs__consumer *c) {
    uint64_t gen = atomic_load(&c->bus->dlq_gen);
    if (c->parked_loaded && gen == c->parked_gen) return EVS_OK;
    free_parked(c);
    evs__kv_txn *txn;
    int rc = evs__kv_begin(c->bus->kv, NULL, EVS__KV_RDONLY, &txn);
    if (rc) return evs__bus_kv_err(rc, "begin");
    size_t cap = 0;
    rc = scan_parked(c, txn, c->rec.name, c->rec.build_gen ? c->rec.build_from : UINT64_MAX, &cap);
    if (!rc && c->rec.build_gen) rc = scan_parked(c, txn, c->build_owner, UINT64_MAX, &cap);
    evs__kv_abort(txn);
    if (rc) return rc;
    c->parked_loaded = 1;
    c->parked_gen = gen;
    return EVS_OK;
}

/* An earlier event of ev's stream is parked (a replay may meet events before it). */
static int is_parked(const evs__consumer *c, const evs_event *ev) {
    for (size_t i = 0; i < c->n_parked; i++) /* a stream may be listed twice while rebuilding */
        if (c->parked_first[i] < ev->global_position && span_eq(ev->stream, ev->stream_len, c->parked[i])) return 1;
    return 0;
}

static void fill_entry(evs_dlq_entry *e, const evs_event *ev) {
    memset(e, 0, sizeof *e);
    e->position = ev->global_position;
    e->stream_position = ev->stream_position;
    snprintf(e->stream, sizeof e->stream, "%.*s", (int)ev->stream_len, ev->stream);
    snprintf(e->event_type, sizeof e->event_type, "%.*s", (int)ev->event_type_len, ev->event_type);
}

/* Park ev behind an earlier parked event of its stream. */
static int park_behind(evs__consumer *c, const evs_event *ev, uint64_t next) {
    evs__dlq_op op = {1, {0}};
    fill_entry(&op.e, ev);
    evs__kv_txn *txn;
    int rc = evs__kv_begin(c->bus->kv, NULL, EVS__KV_RDONLY, &txn);
    if (rc) return evs__bus_kv_err(rc, "begin");
    rc = evs__dlq_stream_first(c->bus, txn, dlq_owner(c), ev->stream, ev->stream_len, &op.e.blocked_by);
    if (!rc && c->rec.build_gen) { /* or a live entry below the rebuild's start */
        uint64_t live = 0;
        rc = evs__dlq_stream_first(c->bus, txn, c->rec.name, ev->stream, ev->stream_len, &live);
        if (!rc && live && live < c->rec.build_from && (!op.e.blocked_by || live < op.e.blocked_by))
            op.e.blocked_by = live;
    }
    evs__kv_abort(txn);
    if (rc) return rc;
    op.e.first_failure_at = op.e.last_failure_at = evs__clock_now(c->clock);
    evs__bus_fmt(op.e.last_error, sizeof op.e.last_error, "waiting behind position %llu of stream \"%s\"",
             (unsigned long long)op.e.blocked_by, op.e.stream);
    c->rec.next = next;
    c->rec.parked++;
    return evs__consumer_commit(c, &op);
}

/* ---------------------------------------------------------------- failure */

/*
 * The reader's next event, reading past ranges a repair removed (EVS_ELOST):
 * a consumer cannot wait for events that no longer exist, so it goes on,
 * and says so in its record's last_error, where status shows it.
 */
static int next_event(evs__consumer *c, evs_reader *r, const evs_event **ev) {
    int rc;
    while ((rc = evs_reader_next(r, ev)) == EVS_ELOST) {
        evs__bus_fmt(c->rec.last_error, sizeof c->rec.last_error, "read past lost events: %s", evs_errmsg());
        c->rec.next = evs_reader_position(r);
        c->record_dirty = 1;
    }
    return rc;
}

/* Read the event at global position gpos (no filter). */
static int read_at(evs__consumer *c, uint64_t gpos, evs_reader **r, const evs_event **ev) {
    int rc = evs_read_all(c->store, gpos, EVS_FORWARD, NULL, 1, r);
    if (rc) return rc;
    rc = evs_reader_next(*r, ev);
    if (rc == EVS_OK && (*ev)->global_position != gpos) rc = EVS_DONE;
    if (rc == EVS_DONE) rc = evs__err(EVS_ENOTFOUND, "event at global position %llu not found", (unsigned long long)gpos);
    if (rc) {
        evs_reader_close(*r);
        *r = NULL;
    }
    return rc;
}

/*
 * The event at gpos (consumer position pos) failed with err.  Returns EVS_OK
 * when the loop may continue (replay scheduled, delivered on retry, parked),
 * EVS_EFAILED when the consumer stopped, or another error.
 */
static int handle_failure(evs__consumer *c, uint64_t pos, uint64_t gpos, char *err, size_t errcap,
                          size_t *delivered) {
    int rc;
    if (c->ops->discard && c->since_commit > 0) {
        /* step 1: roll back to the last commit and replay up to pos */
        c->ops->discard(c);
        *delivered -= *delivered < c->since_commit ? *delivered : c->since_commit;
        c->rec.processed = c->committed_processed;
        c->rec.next = c->committed_next;
        c->since_commit = 0;
        c->stop_before = pos;
        return EVS_OK;
    }
    if (c->ops->discard) c->ops->discard(c);
    c->rec.next = pos;
    int64_t first = evs__clock_now(c->clock), last = first;
    uint32_t attempts = 1;
    for (uint32_t k = 1; k <= c->retry.max_retries; k++) {
        if (atomic_load(&c->cancelled)) return EVS_OK; /* the next poll starts over at pos */
        evs__clock_sleep(c->clock, evs_retry_delay_ns(&c->retry, k, evs__clock_random(c->clock)));
        c->rec.retry_count++;
        c->record_dirty = 1;
        evs_reader *r = NULL;
        const evs_event *ev;
        if ((rc = read_at(c, gpos, &r, &ev))) return rc;
        err[0] = 0;
        int frc = deliver(c, ev, err, errcap);
        evs_reader_close(r);
        attempts++;
        if (frc == 0) {
            c->rec.next = pos + 1;
            c->rec.processed++;
            c->since_commit++;
            (*delivered)++;
            return EVS_OK;
        }
        if (c->ops->discard) c->ops->discard(c);
        last = evs__clock_now(c->clock);
    }
    c->rec.failed++;
    if (!err[0]) snprintf(err, errcap, "handler failed");
    evs_dlq_entry e;
    {
        evs_reader *r = NULL;
        const evs_event *ev;
        if ((rc = read_at(c, gpos, &r, &ev))) return rc;
        fill_entry(&e, ev);
        evs_reader_close(r);
    }
    evs__bus_fmt(c->rec.last_error, sizeof c->rec.last_error, "position %llu (stream \"%s\", %s): %s",
             (unsigned long long)gpos, e.stream, e.event_type, err);
    if (c->on_failure == EVS_ON_FAILURE_STOP) {
        c->rec.status = EVS_CONSUMER_ERROR;
        c->rec.next = pos;
        c->record_dirty = 1;
        if ((rc = evs__consumer_commit(c, NULL))) return rc;
        return evs__err(EVS_EFAILED, "consumer \"%s\" stopped: %s", c->rec.name, c->rec.last_error);
    }
    evs__dlq_op op = {1, e};
    snprintf(op.e.last_error, sizeof op.e.last_error, "%s", err);
    op.e.attempts = attempts;
    op.e.first_failure_at = first;
    op.e.last_failure_at = last;
    c->rec.parked++;
    c->rec.next = pos + 1;
    return evs__consumer_commit(c, &op);
}

/* ------------------------------------------------------------------- poll */

int evs__consumer_poll(evs__consumer *c, int timeout_ms, size_t max, size_t *delivered_out) {
    int rc = EVS_OK;
    size_t delivered = 0;
    int64_t t_start = evs__mono_ns();
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : t_start + (int64_t)timeout_ms * 1000000;
    char err[512];
    if (delivered_out) *delivered_out = 0;
    if (atomic_exchange(&c->cancelled, 0)) return EVS_OK;
    for (;;) {
        if (atomic_load(&c->cancelled)) break;
        if (c->rec.status == EVS_CONSUMER_PAUSED) break;
        if (c->rec.status == EVS_CONSUMER_ERROR) {
            rc = evs__err(EVS_EFAILED, "consumer \"%s\" is stopped: %s", c->rec.name, c->rec.last_error);
            break;
        }
        if (c->per_stream_order && (rc = load_parked(c))) break;
        uint64_t head0 = evs_head(c->store);
        size_t lim = c->page_size;
        if (max && max - delivered < lim) lim = max - delivered;
        evs_reader *r = NULL;
        if (is_stream_sub(c)) {
            rc = evs_read_stream(c->store, c->rec.stream, c->rec.next, EVS_FORWARD, lim, &r);
            if (rc == EVS_ENOTFOUND) rc = EVS_OK, r = NULL, evs__err_clear();
        } else {
            rc = evs_read_all(c->store, c->rec.next, EVS_FORWARD, &c->filter, lim, &r);
        }
        if (rc) break;
        size_t count = 0;
        int broke = 0, stopped = 0;
        uint64_t fail_pos = 0, fail_gpos = 0;
        const evs_event *ev;
        int nrc = EVS_DONE;
        while (r && (nrc = next_event(c, r, &ev)) == EVS_OK) {
            count++;
            uint64_t pos = is_stream_sub(c) ? ev->stream_position : ev->global_position;
            if (c->stop_before && pos >= c->stop_before) {
                broke = stopped = 1;
                break;
            }
            if (!extra_match(c, ev)) {
                c->rec.next = pos + 1;
                continue;
            }
            if (c->per_stream_order && c->n_parked && is_parked(c, ev)) {
                if ((rc = park_behind(c, ev, pos + 1))) break;
                continue;
            }
            err[0] = 0;
            if (deliver(c, ev, err, sizeof err) != 0) {
                fail_pos = pos;
                fail_gpos = ev->global_position;
                broke = 1;
                break;
            }
            c->rec.next = pos + 1;
            c->rec.processed++;
            c->since_commit++;
            delivered++;
        }
        if (!rc && nrc != EVS_DONE && nrc != EVS_OK) rc = nrc;
        if (!rc && r && !broke) {
            uint64_t rp = evs_reader_position(r);
            if (rp > c->rec.next) c->rec.next = rp;
        }
        evs_reader_close(r);
        if (rc) break;
        if (stopped) {
            c->rec.next = c->stop_before;
            c->stop_before = 0;
            if ((rc = evs__consumer_commit(c, NULL))) break;
            continue;
        }
        if (fail_pos) {
            rc = handle_failure(c, fail_pos, fail_gpos, err, sizeof err, &delivered);
            if (rc) break;
            continue;
        }
        if ((rc = maybe_commit(c, 0))) break;
        if (max && delivered >= max) break;
        if (count >= lim) continue; /* a full page: more may be there */
        if (c->stop_before) {
            /* the failing event vanished from the filter's view: nothing to replay */
            c->stop_before = 0;
        }
        if (c->ops->caught_up && (rc = c->ops->caught_up(c))) break;
        if (delivered > 0) break;
        int64_t now = evs__mono_ns();
        if (now >= deadline) break;
        int64_t left_ms = (deadline - now + 999999) / 1000000;
        int slice = left_ms > EVS_WAIT_SLICE_MS ? EVS_WAIT_SLICE_MS : (int)left_ms;
        uint64_t h;
        int wrc = evs_wait_for(c->store, head0 + 1, slice, &h);
        if (wrc == EVS_ECLOSED) {
            rc = wrc;
            break;
        }
        evs__err_clear();
    }
    /* a checkpoint that only moved because of filtered-out events is still written on time */
    if (!rc) rc = maybe_commit(c, 0);
    atomic_store(&c->cancelled, 0);
    if (delivered) {
        int64_t dt = evs__mono_ns() - t_start;
        if (dt > 0) c->rate = (double)delivered * 1e9 / (double)dt;
    }
    if (delivered_out) *delivered_out = delivered;
    return rc;
}

/* ------------------------------------------------------------ DLQ retries */

int evs__consumer_dlq_retry(evs__consumer *c, uint64_t pos) {
    int rc;
    evs__kv_txn *txn;
    evs__dlq_op op = {0, {0}};
    if (c->rec.build_gen)
        return evs__err(EVS_ECONFLICT, "projection \"%s\" is rebuilding: its DLQ is being computed anew; retry "
                        "after the rebuild swaps in", c->rec.name);
    if ((rc = evs__kv_begin(c->bus->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    rc = evs__dlq_get_txn(c->bus, txn, c->rec.name, pos, &op.e);
    uint64_t earlier = 0;
    if (!rc && c->per_stream_order)
        rc = evs__dlq_earlier_of_stream(c->bus, txn, c->rec.name, op.e.stream, pos, &earlier);
    evs__kv_abort(txn);
    if (rc) return rc;
    if (earlier)
        return evs__err(EVS_ECONFLICT, "consumer \"%s\": position %llu of stream \"%s\" waits behind position %llu",
                        c->rec.name, (unsigned long long)pos, op.e.stream, (unsigned long long)earlier);
    /* pending state first, so the retried event applies to committed state */
    if ((rc = maybe_commit(c, 1))) return rc;
    evs_reader *r = NULL;
    const evs_event *ev;
    if ((rc = read_at(c, pos, &r, &ev))) return rc;
    char err[512] = "";
    int frc = deliver(c, ev, err, sizeof err);
    evs_reader_close(r);
    if (frc == 0) {
        op.kind = 3;
        c->rec.processed++;
        c->since_commit++;
        return evs__consumer_commit(c, &op);
    }
    if (c->ops->discard) c->ops->discard(c);
    op.kind = 2;
    op.e.attempts++;
    op.e.last_failure_at = evs__clock_now(c->clock);
    op.e.blocked_by = 0;
    snprintf(op.e.last_error, sizeof op.e.last_error, "%s", err[0] ? err : "handler failed");
    c->rec.retry_count++;
    c->record_dirty = 1;
    if ((rc = evs__consumer_commit(c, &op))) return rc;
    return evs__err(EVS_EFAILED, "consumer \"%s\": retry of position %llu failed: %s", c->rec.name,
                    (unsigned long long)pos, op.e.last_error);
}

int evs__consumer_dlq_retry_all(evs__consumer *c, size_t *released, size_t *failed) {
    size_t ok = 0, bad = 0;
    if (c->rec.build_gen)
        return evs__err(EVS_ECONFLICT, "projection \"%s\" is rebuilding: its DLQ is being computed anew; retry "
                        "after the rebuild swaps in", c->rec.name);
    uint64_t after = 0;
    evs_dlq_entry page[64];
    int rc = EVS_OK;
    for (;;) {
        size_t n;
        if ((rc = evs_dlq_list(c->bus, c->rec.name, after, page, 64, &n))) break;
        if (n == 0) break;
        for (size_t i = 0; i < n; i++) {
            after = page[i].position;
            int r1 = evs__consumer_dlq_retry(c, page[i].position);
            if (r1 == EVS_OK) ok++;
            else if (r1 == EVS_EFAILED || r1 == EVS_ECONFLICT) bad++;
            else {
                rc = r1;
                goto out;
            }
        }
    }
out:
    if (released) *released = ok;
    if (failed) *failed = bad;
    if (!rc) evs__err_clear();
    return rc;
}

/*
 * command.c — the command bus: validation, dispatch, idempotency, and the
 * load/decide/append loop with optimistic retries.
 *
 * Idempotency without a second write.  Event i of command C gets the id
 * UUIDv8(BLAKE2b("e:" C be32(i))).  A command therefore leaves its own
 * record in the log, atomically with its events: before running, the bus
 * looks up the id of event 0 in the store's event-id index; when present,
 * the command ran, and its result is rebuilt from its events (an append is
 * contiguous in the global order, so they are gpos, gpos+1, ... while the
 * ids keep matching).  This holds after a crash at any point (the events
 * are durable or absent) and when two copies race: the loser's append
 * carries the same ids and the store answers idempotent or EDUPLICATE, or
 * it conflicts and the retry finds the winner's events.
 *
 * Results without events (rejected, or accepted with nothing to append)
 * have no such record, so they are written to DIR/app/ (results.c: "results", with
 * "results_t" ordering them by time for pruning) and kept for the window
 * (idempotency_window_ns) and at most idempotency_max of them.  They are
 * written without fsync: a power loss may forget a rejection, and the
 * re-sent command is then decided again (it had no effect the first time).
 *
 * A command id that comes back with another command type or target is
 * refused as invalid rather than answered with the other command's result.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app_internal.h"
#include "app/app_access.h"
#include "store/store_access.h"

/* Set the result's reason, truncating silently (messages built from long names). */
static void reasonf(evs_command_result *res, const char *fmt, ...) EVS_PRINTF(2, 3);
static void reasonf(evs_command_result *res, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof res->reason, fmt, ap);
    va_end(ap);
}

/* Name the member an invalid command got wrong. */
static void fieldf(evs_command_result *res, const char *fmt, ...) EVS_PRINTF(2, 3);
static void fieldf(evs_command_result *res, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->field, sizeof res->field, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------- ids */

static void v8(uint8_t b[16]) {
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x80);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
}

static void event_id(const char *cmd_id, uint32_t i, evs_uuid *out) {
    size_t n = strlen(cmd_id);
    uint8_t buf[2 + EVS_APP_MAX_ID + 4];
    memcpy(buf, "e:", 2);
    memcpy(buf + 2, cmd_id, n);
    evs__put32(buf + 2 + n, i);
    evs__app_hash(buf, 2 + n + 4, NULL, 0, out->b);
    v8(out->b);
}

/* The causation id: the command id itself when it is a UUID, else a name-based one. */
static void causation_of(const char *cmd_id, evs_uuid *out) {
    if (evs_uuid_parse(cmd_id, strlen(cmd_id), out) == EVS_OK) return;
    evs__app_hash("c:", 2, cmd_id, strlen(cmd_id), out->b);
    v8(out->b);
}

/* ------------------------------------------------------- the event record */

static int result_events_add(evs_command_result *r, const evs_uuid *id) {
    evs_uuid *n = realloc(r->event_ids, (r->n_events + 1) * sizeof *n);
    if (!n) return evs__err(EVS_ENOMEM, "out of memory");
    r->event_ids = n;
    n[r->n_events++] = *id;
    return EVS_OK;
}

/*
 * Did command cmd_id append events?  1 with res filled (idempotent), 0 no,
 * < 0 error.  type/stream (may be NULL) must match the original command.
 */
static int find_ran(evs_app *a, const char *cmd_id, const char *type, const char *stream, evs_command_result *res) {
    evs_uuid want;
    uint64_t gpos;
    event_id(cmd_id, 0, &want);
    int rc = evs__store_event_position(a->store, &want, &gpos);
    if (rc == EVS_ENOTFOUND) return 0;
    if (rc) return rc;
    evs_reader *r;
    const evs_event *ev;
    if ((rc = evs_read_all(a->store, gpos, EVS_FORWARD, NULL, 0, &r))) return rc;
    evs_command_result_free(res);
    int mismatch = 0;
    for (uint32_t i = 0; (rc = evs_reader_next(r, &ev)) == EVS_OK; i++) {
        event_id(cmd_id, i, &want);
        if (memcmp(&want, &ev->event_id, sizeof want) != 0) break;
        if (i == 0) {
            snprintf(res->stream, sizeof res->stream, "%.*s", (int)ev->stream_len, ev->stream);
            if (ev->has_correlation_id) res->correlation_id = ev->correlation_id;
            res->first_position = ev->global_position;
            json_t *m = json_loadb(ev->metadata, ev->metadata_len, 0, NULL);
            const char *ot = evs__app_json_str(m, "command_type");
            if ((type && ot && strcmp(type, ot) != 0) || (stream && strcmp(stream, res->stream) != 0)) {
                mismatch = 1;
                snprintf(res->reason, sizeof res->reason,
                         "command id \"%s\" was already used by a %s command on stream %s", cmd_id, ot ? ot : "?",
                         res->stream);
                fieldf(res, "command_id");
            }
            json_decref(m);
            if (mismatch) break;
        }
        if ((rc = result_events_add(res, &ev->event_id))) break;
        res->last_position = ev->global_position;
        res->version = ev->stream_position;
    }
    evs_reader_close(r);
    if (rc != EVS_OK && rc != EVS_DONE) return rc;
    res->outcome = mismatch ? EVS_CMD_INVALID : EVS_CMD_ACCEPTED;
    res->idempotent = !mismatch;
    if (mismatch) evs_command_result_free(res);
    return 1;
}

/* ------------------------------------------------------------ validation */

static const char *jtype_name(json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

static const char *ftype_name(int t) {
    static const char *const n[] = {"any", "string", "integer", "number", "boolean", "object", "array"};
    return t >= 0 && t <= EVS_FIELD_ARRAY ? n[t] : "?";
}

static int type_ok(int t, json_t *v) {
    switch (t) {
    case EVS_FIELD_ANY: return 1;
    case EVS_FIELD_STRING: return json_is_string(v);
    case EVS_FIELD_INTEGER: return json_is_integer(v);
    case EVS_FIELD_NUMBER: return json_is_number(v);
    case EVS_FIELD_BOOLEAN: return json_is_boolean(v);
    case EVS_FIELD_OBJECT: return json_is_object(v);
    case EVS_FIELD_ARRAY: return json_is_array(v);
    }
    return 0;
}

/* 0, or 1 with the reason in res. */
static int validate(const evs__handler *h, json_t *data, evs_command_result *res) {
    for (size_t i = 0; i < h->n_fields; i++) {
        const evs_field_spec *f = &h->fields[i];
        json_t *v = json_object_get(data, f->name);
        if (!v || json_is_null(v)) {
            if (!f->required) continue;
            snprintf(res->reason, sizeof res->reason, "command %s: data.%s is required (%s)", h->type, f->name,
                     ftype_name(f->type));
            fieldf(res, "data.%s", f->name);
            return 1;
        }
        if (!type_ok(f->type, v)) {
            snprintf(res->reason, sizeof res->reason, "command %s: data.%s must be %s %s, got %s", h->type, f->name,
                     f->type == EVS_FIELD_INTEGER || f->type == EVS_FIELD_OBJECT || f->type == EVS_FIELD_ARRAY ? "an"
                                                                                                              : "a",
                     ftype_name(f->type), jtype_name(v));
            fieldf(res, "data.%s", f->name);
            return 1;
        }
    }
    return 0;
}

static int check_id(const char *what, const char *s, evs_command_result *res) {
    size_t n = strlen(s);
    fieldf(res, "%s", what);
    if (!n || n > EVS_APP_MAX_ID) {
        snprintf(res->reason, sizeof res->reason, "%s must be 1..%u bytes", what, EVS_APP_MAX_ID);
        return 1;
    }
    if (!evs__utf8_valid(s, n, NULL)) {
        snprintf(res->reason, sizeof res->reason, "%s is not valid UTF-8", what);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20) {
            snprintf(res->reason, sizeof res->reason, "%s contains a control character", what);
            return 1;
        }
    res->field[0] = 0;
    return 0;
}

/* ------------------------------------------------------------- appending */

/* What every event of one command shares. */
typedef struct cmdctx {
    const evs_command *cmd;
    const char *cmd_id;
    evs__handler *h;
    json_t *data, *meta;          /* parsed */
    char *meta_text;              /* the events' metadata: command metadata + command_id, command_type */
    size_t meta_len;
    evs_uuid causation, correlation;
    char stream[EVS_MAX_STREAM_NAME + 1];
} cmdctx;

static int append_events(evs_app *a, cmdctx *x, int64_t expected, size_t n, char **types, char **data, size_t *lens,
                         char **metas, evs_append_result *ar, evs_command_result *res) {
    evs_event_in stack_in[8];
    evs_uuid stack_ids[8];
    evs_event_in *in = n <= 8 ? stack_in : calloc(n, sizeof *in);
    evs_uuid *ids = n <= 8 ? stack_ids : calloc(n, sizeof *ids);
    int rc;
    if (!in || !ids) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    memset(in, 0, n * sizeof *in);
    for (size_t i = 0; i < n; i++) {
        event_id(x->cmd_id, (uint32_t)i, &ids[i]);
        in[i].event_type = types[i];
        in[i].data = data[i];
        in[i].data_len = lens[i];
        in[i].metadata = metas && metas[i] ? metas[i] : x->meta_text;
        in[i].metadata_len = strlen(in[i].metadata);
        in[i].event_id = &ids[i];
        in[i].causation_id = &x->causation;
        in[i].correlation_id = &x->correlation;
    }
    rc = evs_append(a->store, x->stream, expected, in, n, ar, NULL);
    if (rc == EVS_OK) {
        evs_command_result_free(res);
        for (size_t i = 0; i < n && !rc; i++) rc = result_events_add(res, &ids[i]);
    }
out:
    if (in != stack_in) free(in);
    if (ids != stack_ids) free(ids);
    return rc;
}

static void accepted(evs_command_result *res, const char *stream, const evs_append_result *ar) {
    res->outcome = EVS_CMD_ACCEPTED;
    snprintf(res->stream, sizeof res->stream, "%s", stream);
    res->first_position = ar->first_global_position;
    res->last_position = ar->last_global_position;
    res->version = ar->last_stream_position;
    res->idempotent = ar->idempotent;
}

/* An append failed with EDUPLICATE or a conflict: did another copy of this command win? */
static int raced(evs_app *a, cmdctx *x, evs_command_result *res) {
    return find_ran(a, x->cmd_id, x->h->type, x->stream, res);
}

static int run_aggregate(evs_app *a, cmdctx *x, evs_command_result *res) {
    evs__agg *g = x->h->agg;
    evs_decision d;
    char err[512];
    int rc;
    memset(&d, 0, sizeof d);
    if (!x->cmd->aggregate_id) {
        res->outcome = EVS_CMD_INVALID;
        snprintf(res->reason, sizeof res->reason, "command %s: aggregate_id is required", x->h->type);
        fieldf(res, "aggregate_id");
        return EVS_OK;
    }
    if (evs__agg_stream(g, x->cmd->aggregate_id, x->stream)) {
        res->outcome = EVS_CMD_INVALID;
        snprintf(res->reason, sizeof res->reason, "%s", evs_errmsg());
        fieldf(res, "aggregate_id");
        return EVS_OK;
    }
    snprintf(res->stream, sizeof res->stream, "%s", x->stream);
    for (uint32_t attempt = 0;; attempt++) {
        evs__loaded l;
        rc = evs__agg_load(a, g, x->stream, EVS__LOAD_CACHED, &l, err, sizeof err);
        if (rc == EVS_EINVAL) {
            res->outcome = EVS_CMD_FAILED;
            snprintf(res->reason, sizeof res->reason, "%s", evs_errmsg());
            rc = EVS_OK;
            break;
        }
        if (rc) break;
        if (x->cmd->expected_version >= 0 && l.version != (uint64_t)x->cmd->expected_version) {
            res->outcome = EVS_CMD_CONFLICT;
            res->version = l.version;
            snprintf(res->reason, sizeof res->reason, "%s: expected version %lld, actual version %llu", x->stream,
                     (long long)x->cmd->expected_version, (unsigned long long)l.version);
            evs__agg_release(a, g, x->stream, &l);
            break;
        }
        evs__decision_reset(&d);
        err[0] = 0;
        int drc = g->def.decide(g->def.ctx, l.state, l.version, x->cmd, &d, err, sizeof err);
        if (drc || d.error[0]) {
            res->outcome = EVS_CMD_FAILED;
            reasonf(res, "%s: decide failed: %s", x->stream, d.error[0] ? d.error : err[0] ? err : "no reason given");
            evs__agg_release(a, g, x->stream, &l);
            break;
        }
        if (d.rejected || d.n == 0) {
            res->outcome = d.rejected ? EVS_CMD_REJECTED : EVS_CMD_ACCEPTED;
            res->version = l.version;
            snprintf(res->reason, sizeof res->reason, "%s", d.rejected ? d.reason : "");
            evs__agg_release(a, g, x->stream, &l);
            rc = evs__results_put(a, x->h->type, res);
            break;
        }
        evs_append_result ar;
        rc = append_events(a, x, (int64_t)l.version, d.n, d.types, d.data, d.lens, NULL, &ar, res);
        if (rc == EVS_OK) {
            accepted(res, x->stream, &ar);
            uint32_t every = a->cfg.snapshot_every;
            if (every && g->def.encode && ar.last_stream_position - l.snapshot_version >= every)
                evs__agg_queue_snapshot(a, g, x->stream, &l);
            else evs__agg_release(a, g, x->stream, &l);
            break;
        }
        evs__agg_release(a, g, x->stream, &l);
        if (rc == EVS_EDUPLICATE || rc == EVS_ECONFLICT) {
            int r2 = raced(a, x, res);
            if (r2 < 0) {
                rc = r2;
                break;
            }
            if (r2 == 1) {
                rc = EVS_OK;
                break;
            }
        }
        if (rc != EVS_ECONFLICT) break;
        if (attempt >= a->cfg.max_retries) {
            res->outcome = EVS_CMD_CONFLICT;
            res->version = ar.actual_version;
            snprintf(res->reason, sizeof res->reason, "%s: still conflicting after %u retries (actual version %llu)",
                     x->stream, attempt, (unsigned long long)ar.actual_version);
            rc = EVS_OK;
            break;
        }
        res->retries++;
        atomic_fetch_add(&a->st_retries, 1);
    }
    evs__decision_free(&d);
    return rc;
}

/* The "append these events" handler: data.events to the command's target. */
static int run_append(evs_app *a, cmdctx *x, evs_command_result *res) {
    json_t *evs = json_object_get(x->data, "events");
    size_t n = json_array_size(evs);
    const char *target = x->cmd->target;
    int rc = EVS_OK;
    if (!target || !*target) {
        res->outcome = EVS_CMD_INVALID;
        snprintf(res->reason, sizeof res->reason, "command %s: target (the stream) is required", x->h->type);
        fieldf(res, "target");
        return EVS_OK;
    }
    if (strlen(target) > EVS_MAX_STREAM_NAME) {
        res->outcome = EVS_CMD_INVALID;
        snprintf(res->reason, sizeof res->reason, "command %s: target is longer than %u bytes", x->h->type,
                 EVS_MAX_STREAM_NAME);
        fieldf(res, "target");
        return EVS_OK;
    }
    snprintf(x->stream, sizeof x->stream, "%s", target);
    snprintf(res->stream, sizeof res->stream, "%s", target);
    if (!json_is_array(evs) || n == 0 || n > EVS_MAX_EVENTS_PER_APPEND) {
        res->outcome = EVS_CMD_INVALID;
        snprintf(res->reason, sizeof res->reason, "command %s: data.events must be an array of 1..%u events",
                 x->h->type, EVS_MAX_EVENTS_PER_APPEND);
        fieldf(res, "data.events");
        return EVS_OK;
    }
    char **types = calloc(n, sizeof *types), **data = calloc(n, sizeof *data), **metas = calloc(n, sizeof *metas);
    size_t *lens = calloc(n, sizeof *lens);
    if (!types || !data || !metas || !lens) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(evs, i), *t = json_object_get(e, "event_type"), *dd = json_object_get(e, "data"),
               *m = json_object_get(e, "metadata");
        if (!json_is_string(t) || !json_is_object(dd) || (m && !json_is_object(m) && !json_is_null(m))) {
            res->outcome = EVS_CMD_INVALID;
            snprintf(res->reason, sizeof res->reason,
                     "command %s: data.events[%zu] needs event_type (string), data (object), metadata (object, optional)",
                     x->h->type, i);
            fieldf(res, "data.events[%zu]", i);
            goto out;
        }
        types[i] = (char *)json_string_value(t);
        data[i] = json_dumps(dd, JSON_COMPACT);
        if (json_is_object(m)) {
            json_t *mm = json_deep_copy(x->meta);
            /* an event's own metadata may add members, not change the command's */
            if (mm) {
                json_object_update(mm, m);
                json_object_set_new(mm, "command_id", json_string(x->cmd_id));
                json_object_set_new(mm, "command_type", json_string(x->h->type));
            }
            metas[i] = mm ? json_dumps(mm, JSON_COMPACT) : NULL;
            json_decref(mm);
        }
        if (!data[i] || (json_is_object(m) && !metas[i])) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            goto out;
        }
        lens[i] = strlen(data[i]);
    }
    evs_append_result ar;
    rc = append_events(a, x, x->cmd->expected_version, n, types, data, lens, metas, &ar, res);
    if (rc == EVS_OK) {
        accepted(res, target, &ar);
    } else if (rc == EVS_EDUPLICATE || rc == EVS_ECONFLICT) {
        int r2 = raced(a, x, res);
        if (r2 < 0) {
            rc = r2;
        } else if (r2 == 1) {
            rc = EVS_OK;
        } else if (rc == EVS_ECONFLICT) {
            res->outcome = EVS_CMD_CONFLICT;
            res->version = ar.actual_version;
            snprintf(res->reason, sizeof res->reason, "%s: expected version %lld, actual version %llu", target,
                     (long long)x->cmd->expected_version, (unsigned long long)ar.actual_version);
            rc = EVS_OK;
        }
    } else if (rc == EVS_EINVAL || rc == EVS_EJSON || rc == EVS_ELIMIT) {
        res->outcome = EVS_CMD_INVALID;
        snprintf(res->reason, sizeof res->reason, "%s", evs_errmsg());
        fieldf(res, "data.events");
        rc = EVS_OK;
    }
out:
    for (size_t i = 0; data && i < n; i++) free(data[i]);
    for (size_t i = 0; metas && i < n; i++) free(metas[i]);
    free(types);
    free(data);
    free(metas);
    free(lens);
    return rc;
}

/* ---------------------------------------------------------------- execute */

static void note(evs_app *a, evs__handler *h, evs_command_result *res, int64_t t0) {
    int64_t dt = evs__mono_ns() - t0;
    res->duration_ns = dt;
    atomic_fetch_add(&a->st_cmd[res->outcome], 1);
    if (h) atomic_fetch_add(&h->outcomes[res->outcome], 1);
    if (res->idempotent) atomic_fetch_add(&a->st_idem, 1);
    if (res->outcome == EVS_CMD_INVALID) atomic_fetch_add(&a->st_invalid, 1);
    if (res->outcome == EVS_CMD_UNKNOWN) atomic_fetch_add(&a->st_unknown, 1);
    static const uint64_t bounds[EVS_CMD_BUCKETS] = EVS_CMD_BOUNDS_US;
    uint64_t us = (uint64_t)dt / 1000;
    int b = 0;
    while (b < EVS_CMD_BUCKETS && us > bounds[b]) b++;
    atomic_fetch_add(&a->st_hist[b], 1);
    atomic_fetch_add(&a->st_dur_ns, (uint64_t)dt);
}

static int invalid(evs_command_result *res, const char *field, const char *fmt, const char *arg) {
    res->outcome = EVS_CMD_INVALID;
    snprintf(res->reason, sizeof res->reason, fmt, arg);
    fieldf(res, "%s", field);
    return EVS_OK;
}

static int execute(evs_app *a, const evs_command *cmd, evs_command_result *res, evs__handler **hout) {
    int rc = EVS_OK;
    cmdctx x;
    memset(&x, 0, sizeof x);
    *hout = NULL;
    x.cmd = cmd;
    if (!cmd->command_type || !*cmd->command_type) return invalid(res, "command_type", "%scommand_type is required", "");
    if (cmd->command_id) {
        if (check_id("command_id", cmd->command_id, res)) {
            res->outcome = EVS_CMD_INVALID;
            return EVS_OK;
        }
        snprintf(res->command_id, sizeof res->command_id, "%s", cmd->command_id);
    } else {
        evs_uuid u;
        evs_uuid_v7(&u);
        evs_uuid_format(&u, res->command_id);
    }
    x.cmd_id = res->command_id;
    if (cmd->aggregate_id && check_id("aggregate_id", cmd->aggregate_id, res)) {
        res->outcome = EVS_CMD_INVALID;
        return EVS_OK;
    }
    pthread_rwlock_rdlock(&a->reg_lock);
    x.h = evs__app_find_handler(a, cmd->command_type);
    pthread_rwlock_unlock(&a->reg_lock);
    *hout = x.h;
    if (!x.h) {
        res->outcome = EVS_CMD_UNKNOWN;
        snprintf(res->reason, sizeof res->reason, "no handler for command type \"%s\"", cmd->command_type);
        return EVS_OK;
    }
    /* data and metadata */
    json_error_t je;
    x.data = cmd->data ? json_loadb(cmd->data, cmd->data_len, JSON_REJECT_DUPLICATES, &je) : json_object();
    if (!x.data) return invalid(res, "data", "data is not valid JSON: %s", je.text);
    if (!json_is_object(x.data)) {
        invalid(res, "data", "%sdata must be a JSON object", "");
        goto out;
    }
    x.meta = cmd->metadata ? json_loadb(cmd->metadata, cmd->metadata_len, JSON_REJECT_DUPLICATES, &je) : json_object();
    if (!x.meta) {
        invalid(res, "metadata", "metadata is not valid JSON: %s", je.text);
        goto out;
    }
    if (!json_is_object(x.meta)) {
        invalid(res, "metadata", "%smetadata must be a JSON object", "");
        goto out;
    }
    if (validate(x.h, x.data, res)) {
        res->outcome = EVS_CMD_INVALID;
        goto out;
    }
    /* a command seen before answers with its first result */
    const char *idem_stream = NULL;
    char agg_stream[EVS_MAX_STREAM_NAME + 1];
    if (x.h->kind == EVS_HANDLER_AGGREGATE && cmd->aggregate_id && !evs__agg_stream(x.h->agg, cmd->aggregate_id, agg_stream))
        idem_stream = agg_stream;
    else if (x.h->kind == EVS_HANDLER_APPEND)
        idem_stream = cmd->target;
    if (cmd->command_id) {
        int r = find_ran(a, x.cmd_id, x.h->type, idem_stream, res);
        if (r == 0) r = evs__results_get(a, x.cmd_id, x.h->type, idem_stream, res);
        if (r < 0) rc = r;
        if (r) goto out;
    }
    /* correlation: given, else from metadata, else new */
    const char *corr = cmd->correlation_id ? cmd->correlation_id : evs__app_json_str(x.meta, "correlation_id");
    if (corr) {
        if (evs_uuid_parse(corr, strlen(corr), &x.correlation)) {
            invalid(res, cmd->correlation_id ? "correlation_id" : "metadata.correlation_id",
                    "correlation_id \"%s\" is not a UUID", corr);
            goto out;
        }
    } else {
        evs_uuid_v7(&x.correlation);
    }
    res->correlation_id = x.correlation;
    if (cmd->causation_id) {
        if (evs_uuid_parse(cmd->causation_id, strlen(cmd->causation_id), &x.causation)) {
            invalid(res, "causation_id", "causation_id \"%s\" is not a UUID", cmd->causation_id);
            goto out;
        }
    } else {
        causation_of(x.cmd_id, &x.causation);
    }
    json_object_set_new(x.meta, "command_id", json_string(x.cmd_id));
    json_object_set_new(x.meta, "command_type", json_string(x.h->type));
    json_object_del(x.meta, "correlation_id"); /* it is the event's own field */
    if (!(x.meta_text = json_dumps(x.meta, JSON_COMPACT))) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    x.meta_len = strlen(x.meta_text);
    rc = x.h->kind == EVS_HANDLER_APPEND ? run_append(a, &x, res) : run_aggregate(a, &x, res);
out:
    json_decref(x.data);
    json_decref(x.meta);
    free(x.meta_text);
    return rc;
}

int evs_app_execute(evs_app *a, const evs_command *cmd, evs_command_result *res) {
    if (!a || !cmd || !res) return evs__err(EVS_EINVAL, "app_execute: NULL argument");
    int64_t t0 = evs__mono_ns();
    memset(res, 0, sizeof *res);
    evs__handler *h;
    int rc = execute(a, cmd, res, &h);
    if (rc == EVS_OK) note(a, h, res, t0);
    else evs_command_result_free(res);
    return rc;
}

int evs_app_execute_json(evs_app *a, const char *command_type, const char *json, size_t len, evs_command_result *res) {
    if (!a || !json || !res) return evs__err(EVS_EINVAL, "app_execute_json: NULL argument");
    int64_t t0 = evs__mono_ns();
    memset(res, 0, sizeof *res);
    json_error_t je;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    char *data = NULL, *meta = NULL, idbuf[32];
    int rc = EVS_OK;
    evs_command c;
    evs_command_init(&c);
    if (!o || !json_is_object(o)) {
        res->outcome = EVS_CMD_INVALID;
        if (o) snprintf(res->reason, sizeof res->reason, "a command must be a JSON object");
        else snprintf(res->reason, sizeof res->reason, "command is not valid JSON: %s (line %d, column %d)", je.text,
                      je.line, je.column);
        goto done;
    }
    static const char *const known[] = {"command_id", "command_type", "aggregate_id", "target", "data",
                                        "metadata", "expected_version", "correlation_id", "causation_id"};
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(k, known[i])) i++;
        if (i == sizeof known / sizeof known[0]) {
            res->outcome = EVS_CMD_INVALID;
            snprintf(res->reason, sizeof res->reason, "unknown command member \"%s\"", k);
            fieldf(res, "%s", k);
            goto done;
        }
        int str = !strcmp(k, "command_id") || !strcmp(k, "command_type") || !strcmp(k, "target") ||
                  !strcmp(k, "correlation_id") || !strcmp(k, "causation_id");
        if ((str && !json_is_string(v)) || (!strcmp(k, "aggregate_id") && !json_is_string(v) && !json_is_integer(v)) ||
            ((!strcmp(k, "data") || !strcmp(k, "metadata")) && !json_is_object(v) && !json_is_null(v)) ||
            (!strcmp(k, "expected_version") && !json_is_null(v) &&
             !(json_is_integer(v) && json_integer_value(v) >= 0))) {
            res->outcome = EVS_CMD_INVALID;
            if (json_is_integer(v)) /* only expected_version refuses an integer: a negative one */
                snprintf(res->reason, sizeof res->reason,
                         "command member \"%s\" is %lld; it must be an aggregate version (0 for a new one) or null",
                         k, (long long)json_integer_value(v));
            else
                snprintf(res->reason, sizeof res->reason, "command member \"%s\" has the wrong type (%s)", k,
                         jtype_name(v));
            fieldf(res, "%s", k);
            goto done;
        }
    }
    c.command_id = json_string_value(json_object_get(o, "command_id"));
    c.command_type = json_string_value(json_object_get(o, "command_type"));
    if (command_type) {
        if (c.command_type && strcmp(c.command_type, command_type) != 0) {
            res->outcome = EVS_CMD_INVALID;
            snprintf(res->reason, sizeof res->reason, "command_type \"%.200s\" in the body differs from \"%.200s\"",
                     c.command_type, command_type);
            fieldf(res, "command_type");
            goto done;
        }
        c.command_type = command_type;
    }
    json_t *ag = json_object_get(o, "aggregate_id");
    if (json_is_integer(ag)) {
        snprintf(idbuf, sizeof idbuf, "%lld", (long long)json_integer_value(ag));
        c.aggregate_id = idbuf;
    } else {
        c.aggregate_id = json_string_value(ag);
    }
    c.target = json_string_value(json_object_get(o, "target"));
    c.correlation_id = json_string_value(json_object_get(o, "correlation_id"));
    c.causation_id = json_string_value(json_object_get(o, "causation_id"));
    json_t *d = json_object_get(o, "data"), *m = json_object_get(o, "metadata"), *ev = json_object_get(o, "expected_version");
    if (json_is_object(d) && !(data = json_dumps(d, JSON_COMPACT))) goto oom;
    if (json_is_object(m) && !(meta = json_dumps(m, JSON_COMPACT))) goto oom;
    c.data = data;
    c.data_len = data ? strlen(data) : 0;
    c.metadata = meta;
    c.metadata_len = meta ? strlen(meta) : 0;
    if (json_is_integer(ev)) c.expected_version = json_integer_value(ev);
    evs__handler *h;
    if ((rc = execute(a, &c, res, &h)) == EVS_OK) note(a, h, res, t0);
    goto out;
oom:
    rc = evs__err(EVS_ENOMEM, "out of memory");
    goto out;
done:
    if (res->outcome == EVS_CMD_INVALID) note(a, NULL, res, t0);
out:
    json_decref(o);
    free(data);
    free(meta);
    if (rc != EVS_OK) evs_command_result_free(res);
    return rc;
}

int evs__app_command_lookup(evs_app *a, const char *cmd_id, evs_command_result *res) {
    if (!a || !cmd_id || !res) return evs__err(EVS_EINVAL, "command_lookup: NULL argument");
    memset(res, 0, sizeof *res);
    snprintf(res->command_id, sizeof res->command_id, "%s", cmd_id);
    int r = find_ran(a, cmd_id, NULL, NULL, res);
    if (r == 0) r = evs__results_get(a, cmd_id, NULL, NULL, res);
    if (r != 1) evs_command_result_free(res);
    return r;
}

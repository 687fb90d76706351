/*
 * results.c — the results of commands that appended nothing (rejected, or
 * accepted with no events), kept in the app's tables (DIR/app/, or the
 * database on PostgreSQL, where every server on it sees them) so a re-sent
 * command id gets the same answer within the idempotency window.  Commands that appended
 * events need no row: their deterministic event ids are the record (see
 * command.c).  "results" maps a command id to its result as JSON;
 * "results_t" orders them by time (8-byte big-endian ns + id) for pruning.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app_internal.h"
#include "core/core.h"

/* ------------------------------------------------- results without events */

static size_t rt_key(uint8_t *buf, int64_t at, const char *id, size_t n) {
    evs__put64be(buf, (uint64_t)at);
    memcpy(buf + 8, id, n);
    return 8 + n;
}

int evs__results_put(evs_app *a, const char *type, const evs_command_result *res) {
    int64_t now = evs_now_ns();
    json_t *o = json_pack("{s:i,s:s,s:s,s:I,s:s,s:I}", "outcome", res->outcome, "type", type, "stream", res->stream,
                          "version", (json_int_t)res->version, "reason", res->reason, "at", (json_int_t)now);
    char u[37];
    if (o && !evs_uuid_is_nil(&res->correlation_id)) {
        evs_uuid_format(&res->correlation_id, u);
        json_object_set_new(o, "correlation_id", json_string(u));
    }
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) return evs__err(EVS_ENOMEM, "out of memory");
    size_t n = strlen(res->command_id);
    uint8_t kb[8 + EVS_APP_MAX_ID];
    evs__kv_val k = {n, (void *)res->command_id}, v = {strlen(s), s}, tk = {rt_key(kb, now, res->command_id, n), kb},
                tv = {0, ""};
    evs__kv_txn *txn = NULL;
    int rc = evs__kv_begin(a->kv, NULL, 0, &txn);
    if (!rc && !(rc = evs__kv_put(txn, EVS__AK_RESULTS, &k, &v, 0)) &&
        !(rc = evs__kv_put(txn, EVS__AK_RESULTS_T, &tk, &tv, 0)))
        rc = evs__kv_commit(txn);
    else
        evs__kv_abort(txn); /* NULL when begin failed */
    free(s);
    return rc ? evs__app_kv_err(rc, "write command result") : EVS_OK;
}

int evs__results_get(evs_app *a, const char *cmd_id, const char *type, const char *stream, evs_command_result *res) {
    evs__kv_txn *txn;
    int rc = evs__kv_begin(a->kv, NULL, EVS__KV_RDONLY, &txn);
    if (rc) return evs__app_kv_err(rc, "begin");
    evs__kv_val k = {strlen(cmd_id), (void *)cmd_id}, v;
    rc = evs__kv_get(txn, EVS__AK_RESULTS, &k, &v);
    json_t *o = rc == 0 ? json_loadb(v.data, v.size, 0, NULL) : NULL;
    evs__kv_abort(txn);
    if (rc == EVS__KV_NOTFOUND) return 0;
    if (rc) return evs__app_kv_err(rc, "read command result");
    if (!o) return 0;
    int found = 0;
    int64_t at = (int64_t)json_integer_value(json_object_get(o, "at"));
    if (evs_now_ns() - at <= a->cfg.idempotency_window_ns) {
        const char *ot = evs__app_json_str(o, "type"), *os = evs__app_json_str(o, "stream");
        found = 1;
        if ((type && ot && strcmp(type, ot) != 0) || (stream && os && strcmp(stream, os) != 0)) {
            res->outcome = EVS_CMD_INVALID;
            snprintf(res->reason, sizeof res->reason, "command id \"%s\" was already used by a %s command on stream %s",
                     cmd_id, ot ? ot : "?", os ? os : "?");
            snprintf(res->field, sizeof res->field, "command_id");
        } else {
            res->outcome = (int)json_integer_value(json_object_get(o, "outcome"));
            res->idempotent = 1;
            snprintf(res->stream, sizeof res->stream, "%s", os ? os : "");
            res->version = (uint64_t)json_integer_value(json_object_get(o, "version"));
            snprintf(res->reason, sizeof res->reason, "%s", evs__app_json_str(o, "reason") ? evs__app_json_str(o, "reason") : "");
            const char *c = evs__app_json_str(o, "correlation_id");
            if (c) evs_uuid_parse(c, strlen(c), &res->correlation_id);
        }
    }
    json_decref(o);
    return found;
}

int evs__results_prune(evs_app *a, int64_t now) {
    evs__kv_txn *txn;
    evs__kv_cursor *cur = NULL;
    size_t left;
    int rc = evs__kv_begin(a->kv, NULL, 0, &txn);
    if (rc) return evs__app_kv_err(rc, "begin");
    if ((rc = evs__kv_count(txn, EVS__AK_RESULTS_T, &left)) || (rc = evs__kv_cursor_open(txn, EVS__AK_RESULTS_T, &cur)))
        goto out;
    evs__kv_val k = {0, NULL}, v;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_FIRST); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size < 8) continue;
        int64_t at = (int64_t)evs__get64be(k.data);
        if (now - at <= a->cfg.idempotency_window_ns && left <= a->cfg.idempotency_max) break;
        evs__kv_val rk = {k.size - 8, (uint8_t *)k.data + 8}, rv;
        /* the row may have been replaced by a later result of the same id */
        if ((rc = evs__kv_get(txn, EVS__AK_RESULTS, &rk, &rv)) == 0) {
            json_t *o = json_loadb(rv.data, rv.size, 0, NULL);
            if (o && (int64_t)json_integer_value(json_object_get(o, "at")) == at)
                rc = evs__kv_del(txn, EVS__AK_RESULTS, &rk);
            json_decref(o);
        }
        if (rc && rc != EVS__KV_NOTFOUND) break;
        if ((rc = evs__kv_cursor_del(cur))) break;
        left--;
    }
    if (rc == EVS__KV_NOTFOUND) rc = EVS_OK;
out:
    evs__kv_cursor_close(cur);
    if (rc) {
        evs__kv_abort(txn);
        return evs__app_kv_err(rc, "prune results");
    }
    return evs__kv_commit(txn);
}

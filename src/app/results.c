/*
 * results.c — the results of commands that appended nothing (rejected, or
 * accepted with no events), kept in DIR/app/ so a re-sent command id gets
 * the same answer within the idempotency window.  Commands that appended
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
    MDB_val k = {n, (void *)res->command_id}, v = {strlen(s), s}, tk = {rt_key(kb, now, res->command_id, n), kb},
            tv = {0, ""};
    MDB_txn *txn;
    int rc = mdb_txn_begin(a->env, NULL, 0, &txn);
    if (!rc && !(rc = mdb_put(txn, a->results, &k, &v, 0)) && !(rc = mdb_put(txn, a->results_t, &tk, &tv, 0)))
        rc = mdb_txn_commit(txn);
    else if (txn && rc)
        mdb_txn_abort(txn);
    free(s);
    return rc ? evs__app_mdb_err(rc, "write command result") : EVS_OK;
}

int evs__results_get(evs_app *a, const char *cmd_id, const char *type, const char *stream, evs_command_result *res) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(a->env, NULL, MDB_RDONLY, &txn);
    if (rc) return evs__app_mdb_err(rc, "begin");
    MDB_val k = {strlen(cmd_id), (void *)cmd_id}, v;
    rc = mdb_get(txn, a->results, &k, &v);
    json_t *o = rc == 0 ? json_loadb(v.mv_data, v.mv_size, 0, NULL) : NULL;
    mdb_txn_abort(txn);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return evs__app_mdb_err(rc, "read command result");
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
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_stat st;
    int rc = mdb_txn_begin(a->env, NULL, 0, &txn);
    if (rc) return evs__app_mdb_err(rc, "begin");
    if ((rc = mdb_stat(txn, a->results_t, &st)) || (rc = mdb_cursor_open(txn, a->results_t, &cur))) {
        mdb_txn_abort(txn);
        return evs__app_mdb_err(rc, "prune results");
    }
    uint64_t left = st.ms_entries;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 8) continue;
        int64_t at = (int64_t)evs__get64be(k.mv_data);
        if (now - at <= a->cfg.idempotency_window_ns && left <= a->cfg.idempotency_max) break;
        MDB_val rk = {k.mv_size - 8, (uint8_t *)k.mv_data + 8}, rv;
        /* the row may have been replaced by a later result of the same id */
        if (mdb_get(txn, a->results, &rk, &rv) == 0) {
            json_t *o = json_loadb(rv.mv_data, rv.mv_size, 0, NULL);
            if (o && (int64_t)json_integer_value(json_object_get(o, "at")) == at) mdb_del(txn, a->results, &rk, NULL);
            json_decref(o);
        }
        if ((rc = mdb_cursor_del(cur, 0))) break;
        left--;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return evs__app_mdb_err(rc, "prune results");
    }
    if ((rc = mdb_txn_commit(txn))) return evs__app_mdb_err(rc, "commit");
    return EVS_OK;
}

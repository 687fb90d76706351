/*
 * store_engine.c — the store handle's side of the engine boundary
 * (engine/engine.h): which engine a URL names, opening a store on an
 * engine, and the few public calls that need more than a one-line
 * dispatch (appends are checked here first, readers are wrapped so
 * evs_reader stays one opaque type).
 *
 * A store on an engine keeps s->dir NULL: every subsystem that needs the
 * embedded store's directory (consumers, schemas, apps, sagas, backup)
 * therefore sees no directory and asks evs__store_native_only, which
 * answers EVS_ENOTSUP naming the subsystem.
 *
 * Encrypted streams (crypt.c): an append is sealed here after validation,
 * as the embedded engine seals it, with the stream's "$encrypt" mode as
 * this handle last saw it.  Another handle may have made the stream
 * encrypted since; the engine then refuses the unsealed events (EVS_EKEY)
 * and the append is sealed with the metadata read afresh and sent again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "pg/pg.h"
#include "store/crypt.h"
#include "store/store_access.h"
#include "store/store_internal.h"

const evs_engine *evs__engine_for(const char *where) {
    if (!where) return NULL;
    if (!strncmp(where, "postgresql://", 13) || !strncmp(where, "postgres://", 11)) return evs__pg_engine();
    return NULL;
}

int evs__store_engine_open(evs_store *s, const char *url, unsigned flags) {
    const evs_engine *e = evs__engine_for(url);
    if (!e) return evs__err(EVS_EINVAL, "open: no storage engine for this URL");
    if (flags & ~(EVS_OPEN_CREATE | EVS_OPEN_READONLY)) return evs__err(EVS_EINVAL, "open: unknown flags 0x%x", flags);
    evs__engine_settings set = {.flags = flags, .durability = s->durability};
    void *h = NULL;
    int rc = e->open(url, &set, &h);
    if (rc) return rc;
    s->readonly = (flags & EVS_OPEN_READONLY) != 0;
    s->engine = e;
    s->eng = h;
    /* the master key, when given, must be the one the engine's subject keys were made with */
    if ((rc = evs__keystore_open(s))) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", evs_errmsg());
        e->close(h);
        s->engine = NULL;
        s->eng = NULL;
        return evs__err(rc, "%s", msg);
    }
    return EVS_OK;
}

int evs__store_engine_close(evs_store *s) {
    int rc = s->engine->close(s->eng);
    evs__keystore_free(s);
    free(s);
    return rc;
}

int evs__store_engine_append_reserved(evs_store *s, const char *stream, const evs_event_in *ev, evs_append_result *res) {
    if (s->readonly) return evs__err(EVS_ECLOSED, "append: the store is open read-only");
    const uint64_t lims[4] = {s->lim_event_bytes, s->lim_events, s->lim_append_bytes, s->lim_stream_name};
    evs__engine_append *a;
    int rc = evs__engine_append_prepare_reserved(lims, stream, EVS_EXPECT_ANY, ev, 1, &a);
    if (rc) return rc;
    rc = s->engine->append(s->eng, a, res);
    evs__engine_append_free(a);
    return rc;
}

int evs__store_engine_append(evs_store *s, const char *stream, int64_t expected, const evs_append_condition *cond,
                             const evs_event_in *events, size_t n, evs_append_result *res, evs_uuid *generated_ids) {
    if (!res) return evs__err(EVS_EINVAL, "append: result pointer is NULL");
    memset(res, 0, sizeof *res);
    if (s->readonly) return evs__err(EVS_ECLOSED, "append: the store is open read-only");
    if (cond && !s->engine->append_if)
        return evs__engine_unsupported(s->engine, "a conditional append (evs_append_if with a condition)");
    int rc;
    if (cond && (rc = evs__condition_validate(cond))) return rc;
    const uint64_t lims[4] = {s->lim_event_bytes, s->lim_events, s->lim_append_bytes, s->lim_stream_name};
    evs__engine_append *a;
    if ((rc = evs__engine_append_prepare(lims, stream, expected, events, n, &a))) return rc;
    /* the schema registry's hook, per event with its defaults applied, as the embedded prepare calls it */
    for (size_t i = 0; s->validator && i < n; i++)
        if ((rc = s->validator(s->validator_ctx, a->stream, a->stream_len, a->stypes[i], strlen(a->stypes[i]),
                               &a->ev[i], i))) {
            evs__engine_append_free(a);
            return rc;
        }
    /* a->ev is the prepared copy of the events: sealing points its data at envelopes that seal owns */
    evs__crypt_seal seal = {0};
    evs_event_in *ev = (evs_event_in *)a->ev;
    for (int attempt = 0;; attempt++) {
        if ((rc = evs__crypt_seal_append(s, a->stream, a->stream_len, ev, n, a->ids, &seal))) break;
        rc = cond ? s->engine->append_if(s->eng, a, cond, res) : s->engine->append(s->eng, a, res);
        /* refused as plaintext in an encrypted stream: read its metadata again, once; still plaintext there
           (its "$encrypt" went again in between) leaves the refusal as the answer */
        if (rc != EVS_EKEY || seal.env || attempt) break;
        char prefix[EVS_MAX_SUBJECT + 1], msg[512];
        size_t plen;
        snprintf(msg, sizeof msg, "%s", evs_errmsg());
        int mode = evs__crypt_engine_mode(s, a->stream, a->stream_len, 1, prefix, sizeof prefix, &plen);
        if (mode <= 0) {
            if (mode == 0) evs__err(rc, "%s", msg);
            else rc = mode;
            break;
        }
        memset(res, 0, sizeof *res);
    }
    if (!rc && generated_ids) memcpy(generated_ids, a->ids, n * sizeof *a->ids);
    evs__crypt_seal_free(&seal);
    evs__engine_append_free(a);
    return rc;
}

int evs__store_engine_read(evs_store *s, const char *stream, uint64_t from, int direction, const evs_filter *f,
                           size_t limit, evs_reader **out) {
    if (!out) return evs__err(EVS_EINVAL, "read: out is NULL");
    *out = NULL;
    if (direction != EVS_FORWARD && direction != EVS_BACKWARD)
        return evs__err(EVS_EINVAL, "read: direction must be forward or backward");
    void *impl = NULL;
    int rc;
    if (stream) {
        size_t slen;
        if ((rc = evs__check_stream_name(s, stream, &slen))) return rc;
        rc = s->engine->read_stream(s->eng, stream, from, direction, limit, &impl);
    } else {
        if ((rc = evs__filter_check(f))) return rc;
        rc = s->engine->read_all(s->eng, from, direction, f, limit, &impl);
    }
    if (rc) return rc;
    return evs__reader_wrap(s, impl, out);
}

int evs__store_engine_info(evs_store *s, const char *stream, evs_stream_info *out) {
    size_t slen;
    int rc;
    if (!out) return evs__err(EVS_EINVAL, "info: out is NULL");
    if ((rc = evs__check_stream_name(s, stream, &slen))) return rc;
    return s->engine->stream_info(s->eng, stream, out);
}

int evs__store_engine_stats(evs_store *s, evs_store_stats *out) {
    if (!out) return evs__err(EVS_EINVAL, "stats: out is NULL");
    memset(out, 0, sizeof *out);
    out->durability = (int)s->durability;
    return s->engine->stats(s->eng, out);
}

const char *evs__store_engine_name(const evs_store *s) { return s && s->engine ? s->engine->name : NULL; }

int evs__store_native_only(const evs_store *s, const char *what) {
    if (s && s->engine) return evs__engine_unsupported(s->engine, what);
    return EVS_OK;
}

/*
 * meta.c — stream metadata, soft and hard delete, and the one check of
 * whether readers show an event.
 *
 * A stream's metadata is a JSON object stored as a "$metadata" event in the
 * reserved stream "$$<stream>" (names starting with '$' are refused to
 * callers, so only this file writes them); the last one is in force and
 * the metadata version is that stream's version.  Deletes are metadata
 * writes too: a soft delete sets truncate_before past the last event, a
 * hard delete adds "$tombstone": true.  Nothing is removed from the log
 * and no position changes: readers skip what the metadata hides.
 *
 * Readers need the metadata on every event they return, so the store keeps
 * a cache: one entry per stream that has metadata (with that stream's
 * current version, for max_count), loaded at open from the "$$" streams and
 * changed by the writer right after each commit, before the new head is
 * published.  The cache is an array of entries with an open-addressing
 * hash index over it (a linear scan cost a $all read 4x at 100 streams
 * with metadata; bench/bench_meta.c), and a store with none pays one
 * atomic load per event.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/json.h"
#include "core/sb.h"
#include "store/crypt.h"
#include "store/store_access.h"
#include "store/store_internal.h"
#include "store/store_testing.h"

struct evs__meta_entry {
    char *name;                   /* the stream it is about */
    size_t len;
    uint64_t hash;
    evs_stream_metadata m;
    uint64_t version;             /* the stream's version */
    uint64_t meta_version;        /* the "$$" stream's version */
    char *json;                   /* the stored object */
    size_t json_len;
};

int evs__store_set_clock(evs_store *s, int64_t (*now)(void *ctx), void *ctx) {
    if (!s) return evs__err(EVS_EINVAL, "set_clock: store is NULL");
    s->t_clock = now;
    s->t_clock_ctx = ctx;
    return EVS_OK;
}

/* ------------------------------------------------------------ parsing */

static void meta_none(evs_stream_metadata *m) {
    m->max_age = -1;
    m->max_count = -1;
    m->truncate_before = 0;
    m->tombstone = 0;
}

/* A known key's value: null (unset) or an integer >= 0. */
static int nonneg(const char *key, evs_json_span v, int64_t *out) {
    if (v.type == EVS_JSON_NULL) return 0;
    if (v.type != EVS_JSON_NUMBER || evs__json_int64(v, out) || *out < 0)
        return evs__err(EVS_EINVAL, "metadata: \"%s\" must be an integer >= 0 or null, not %.*s", key,
                        (int)(v.n > 40 ? 40 : v.n), v.p);
    return 1;
}

/*
 * Check and parse a metadata object.  reserved: "$tombstone" may appear
 * (stored metadata; callers may not set it).
 */
static int meta_parse(const char *json, size_t len, int reserved, evs_stream_metadata *m) {
    evs_json_error jerr;
    meta_none(m);
    if (!json) return evs__err(EVS_EINVAL, "metadata is missing (it must be a JSON object)");
    if (evs__json_validate_object(json, len, &jerr)) return evs__err(EVS_EJSON, "metadata: %s", jerr.msg);
    evs_json_iter it;
    evs_json_span k, v;
    evs__json_iter_init(&it, evs__json_root(json, len));
    while (evs__json_iter_member(&it, &k, &v)) {
        char key[64];
        long kl = evs__json_string_decode(k, key, sizeof key);
        if (kl < 0) continue; /* a long custom key: kept as given */
        int64_t x;
        int rc;
        if (!strcmp(key, "max_age")) {
            if ((rc = nonneg(key, v, &x)) < 0) return rc;
            m->max_age = rc ? x : -1;
        } else if (!strcmp(key, "max_count")) {
            if ((rc = nonneg(key, v, &x)) < 0) return rc;
            m->max_count = rc ? x : -1;
        } else if (!strcmp(key, "truncate_before")) {
            if ((rc = nonneg(key, v, &x)) < 0) return rc;
            m->truncate_before = rc ? (uint64_t)x : 0;
        } else if (!strcmp(key, "$tombstone") && reserved) {
            m->tombstone = v.type == EVS_JSON_TRUE;
        } else if (!strcmp(key, "$encrypt")) { /* crypt.c */
            if ((rc = evs__crypt_check_mode(v))) return rc;
        } else if (key[0] == '$') {
            return evs__err(EVS_EINVAL, "metadata: key \"%s\" is reserved (keys starting with '$' are the store's)",
                            key);
        }
    }
    return EVS_OK;
}

/* -------------------------------------------------------------- cache */

static uint64_t name_hash(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

/* Slots hold entry index + 1 (0: empty); there are at least twice as many slots as entries. */
static struct evs__meta_entry *find(evs_store *s, const char *name, size_t len) {
    if (!s->nmeta) return NULL;
    uint64_t h = name_hash(name, len);
    size_t mask = s->nslots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t x = s->slots[i];
        if (!x) return NULL;
        struct evs__meta_entry *e = &s->meta[x - 1];
        if (e->hash == h && e->len == len && !memcmp(e->name, name, len)) return e;
    }
}

static void slot_put(uint32_t *slots, size_t nslots, uint64_t h, uint32_t idx1) {
    size_t mask = nslots - 1;
    size_t i = h & mask;
    while (slots[i]) i = (i + 1) & mask;
    slots[i] = idx1;
}

/* Caller holds meta_lock for writing.  EVS_ENOMEM leaves the cache as it was. */
static int put(evs_store *s, const char *name, size_t len, const evs_stream_metadata *m, const char *json,
               size_t json_len, uint64_t meta_version, uint64_t version) {
    char *j = malloc(json_len + 1);
    if (!j) return evs__err(EVS_ENOMEM, "out of memory caching stream metadata");
    memcpy(j, json, json_len);
    j[json_len] = 0;
    struct evs__meta_entry *e = find(s, name, len);
    if (!e) {
        if (s->nmeta == s->capmeta) {
            size_t cap = s->capmeta ? s->capmeta * 2 : 16;
            struct evs__meta_entry *n = realloc(s->meta, cap * sizeof *n);
            if (!n) goto nomem;
            s->meta = n;
            s->capmeta = cap;
        }
        if ((s->nmeta + 1) * 2 > s->nslots) {
            size_t ns = s->nslots ? s->nslots * 2 : 32;
            uint32_t *sl = calloc(ns, sizeof *sl);
            if (!sl) goto nomem;
            for (size_t i = 0; i < s->nmeta; i++) slot_put(sl, ns, s->meta[i].hash, (uint32_t)i + 1);
            free(s->slots);
            s->slots = sl;
            s->nslots = ns;
        }
        e = &s->meta[s->nmeta];
        memset(e, 0, sizeof *e);
        if (!(e->name = malloc(len + 1))) goto nomem;
        memcpy(e->name, name, len);
        e->name[len] = 0;
        e->len = len;
        e->hash = name_hash(name, len);
        slot_put(s->slots, s->nslots, e->hash, (uint32_t)s->nmeta + 1);
        s->nmeta++;
        atomic_store(&s->meta_count, s->nmeta);
    }
    free(e->json);
    e->json = j;
    e->json_len = json_len;
    e->m = *m;
    e->meta_version = meta_version;
    if (version > e->version) e->version = version;
    return EVS_OK;
nomem:
    free(j);
    return evs__err(EVS_ENOMEM, "out of memory caching stream metadata");
}

void evs__meta_free(evs_store *s) {
    for (size_t i = 0; i < s->nmeta; i++) {
        free(s->meta[i].name);
        free(s->meta[i].json);
    }
    free(s->meta);
    free(s->slots);
    s->meta = NULL;
    s->slots = NULL;
    s->nmeta = s->capmeta = s->nslots = 0;
    atomic_store(&s->meta_count, 0);
    pthread_rwlock_destroy(&s->meta_lock);
}

/* The version of a stream as the index has it (0: none). */
static int raw_version(evs_store *s, const char *name, size_t len, uint64_t *v) {
    MDB_txn *txn;
    int rc = evs__index_rbegin(&s->ix, &txn);
    if (rc) return rc;
    evs_ix_stream st;
    rc = evs__index_stream_get(&s->ix, txn, name, len, &st);
    evs__index_rend(&s->ix, txn);
    if (rc == EVS_ENOTFOUND) {
        *v = 0;
        return EVS_OK;
    }
    if (!rc) *v = st.version;
    return rc;
}

/* The last readable "$metadata" event of one "$$" stream into the cache. */
static int load_one(evs_store *s, const evs_stream_info *info) {
    evs_reader *r;
    int rc = evs__read_stream_any(s, info->name, EVS_POSITION_END, EVS_BACKWARD, 0, &r);
    if (rc) return rc;
    const evs_event *ev;
    while ((rc = evs_reader_next(r, &ev)) == EVS_ELOST) {
    } /* a repair removed it: the one before is in force */
    if (rc == EVS_OK) {
        evs_stream_metadata m;
        const char *target = info->name + strlen(EVS_META_PREFIX);
        size_t tlen = strlen(target);
        uint64_t v = 0;
        char why[512];
        if ((rc = meta_parse(ev->data, ev->data_len, 1, &m))) {
            snprintf(why, sizeof why, "%s", evs_errmsg());
            rc = evs__err(rc, "stream \"%s\" position %llu: %s", info->name,
                          (unsigned long long)ev->stream_position, why);
        }
        else if (!(rc = raw_version(s, target, tlen, &v))) {
            pthread_rwlock_wrlock(&s->meta_lock);
            rc = put(s, target, tlen, &m, ev->data, ev->data_len, ev->stream_position, v);
            pthread_rwlock_unlock(&s->meta_lock);
        }
    } else if (rc == EVS_DONE) {
        rc = EVS_OK;
    }
    evs_reader_close(r);
    return rc;
}

int evs__meta_load(evs_store *s) {
    evs_stream_info page[32];
    char after[EVS_MAX_STREAM_NAME + 1] = "";
    for (;;) {
        size_t n = 0;
        int rc = evs_list_streams(s, EVS_META_PREFIX, after[0] ? after : NULL, page, 32, &n);
        if (rc) return rc;
        for (size_t i = 0; i < n; i++)
            if ((rc = load_one(s, &page[i]))) {
                char why[512];
                snprintf(why, sizeof why, "%s", evs_errmsg());
                return evs__err(rc, "loading stream metadata: %s", why);
            }
        if (n < 32) return EVS_OK;
        memcpy(after, page[n - 1].name, sizeof after);
    }
}

int evs__meta_state(evs_store *s, const char *stream, size_t len, uint64_t version) {
    if (!atomic_load(&s->meta_count)) return 0;
    int st = 0;
    pthread_rwlock_rdlock(&s->meta_lock);
    struct evs__meta_entry *e = find(s, stream, len);
    if (e && e->m.tombstone) st = 2;
    else if (e && e->m.truncate_before > version) st = 1;
    pthread_rwlock_unlock(&s->meta_lock);
    return st;
}

uint64_t evs__meta_truncate_before(evs_store *s, const char *stream, size_t len) {
    if (!atomic_load(&s->meta_count)) return 0;
    pthread_rwlock_rdlock(&s->meta_lock);
    struct evs__meta_entry *e = find(s, stream, len);
    uint64_t tb = e ? e->m.truncate_before : 0;
    pthread_rwlock_unlock(&s->meta_lock);
    return tb;
}

void evs__meta_committed(evs_store *s, const char *stream, size_t len, uint64_t version, const evs__meta_write *mw,
                         uint64_t target_version) {
    if (mw) {
        pthread_rwlock_wrlock(&s->meta_lock);
        /* out of memory: the metadata is stored and the next open loads it */
        if (put(s, mw->target, mw->target_len, &mw->m, mw->json, mw->json_len, version, target_version))
            evs__err_clear();
        pthread_rwlock_unlock(&s->meta_lock);
        return;
    }
    if (!atomic_load(&s->meta_count) || (len && stream[0] == '$')) return;
    pthread_rwlock_wrlock(&s->meta_lock);
    struct evs__meta_entry *e = find(s, stream, len);
    if (e && version > e->version) e->version = version;
    pthread_rwlock_unlock(&s->meta_lock);
}

static int64_t now_ns(evs_store *s) { return s->t_clock ? s->t_clock(s->t_clock_ctx) : evs_now_ns(); }

/* Caller holds meta_lock. */
static int shown(evs_store *s, const struct evs__meta_entry *e, uint64_t spos, int64_t recorded_at) {
    if (e->m.tombstone) return 0;
    if (spos < e->m.truncate_before) return 0;
    if (e->m.max_count >= 0 && spos + (uint64_t)e->m.max_count <= e->version) return 0;
    if (e->m.max_age >= 0) {
        int64_t age = now_ns(s) - recorded_at;
        if (age > 0 && (uint64_t)age > (uint64_t)e->m.max_age * 1000000000u) return 0;
    }
    return 1;
}

int evs_event_visible(evs_store *s, const evs_event *ev) {
    if (!s || !ev || !atomic_load(&s->meta_count)) return 1;
    if (ev->stream_len && ev->stream[0] == '$') return 1;
    int ok = 1;
    pthread_rwlock_rdlock(&s->meta_lock);
    struct evs__meta_entry *e = find(s, ev->stream, ev->stream_len);
    if (e) ok = shown(s, e, ev->stream_position, ev->recorded_at);
    pthread_rwlock_unlock(&s->meta_lock);
    return ok;
}

uint64_t evs__meta_first_visible(evs_store *s, const char *stream, size_t len, uint64_t version, uint64_t from) {
    if (!atomic_load(&s->meta_count)) return from;
    pthread_rwlock_rdlock(&s->meta_lock);
    struct evs__meta_entry *e = find(s, stream, len);
    if (e) {
        if (e->m.truncate_before > from) from = e->m.truncate_before;
        if (e->m.max_count >= 0 && version > (uint64_t)e->m.max_count && version - (uint64_t)e->m.max_count + 1 > from)
            from = version - (uint64_t)e->m.max_count + 1;
    }
    pthread_rwlock_unlock(&s->meta_lock);
    return from;
}

/* ------------------------------------------------------------------ API */

static int open_for_write(evs_store *s, const char *what) {
    if (!s || !s->dir) return evs__err(EVS_ECLOSED, "%s: the store is not open", what);
    if (s->readonly) return evs__err(EVS_ECLOSED, "%s: the store is open read-only", what);
    return EVS_OK;
}

/* Write mw as the metadata of stream (name already checked). */
static int write_meta(evs_store *s, const char *stream, size_t slen, int64_t expected, evs__meta_write *mw,
                      uint64_t *version_out) {
    char name[EVS_MAX_STREAM_NAME + 8];
    if (slen + strlen(EVS_META_PREFIX) > EVS_MAX_STREAM_NAME)
        return evs__err(EVS_ELIMIT, "stream \"%s\": its metadata stream name would exceed %u bytes", stream,
                        EVS_MAX_STREAM_NAME);
    snprintf(name, sizeof name, "%s%s", EVS_META_PREFIX, stream);
    mw->target = stream;
    mw->target_len = slen;
    evs_append_result res;
    int rc = evs__append_meta(s, name, expected, mw, &res);
    /* a refusal's actual version (the metadata's, or for a delete the stream's) goes to the caller as
       the message has it: read again later it could be another */
    if (rc == EVS_ECONFLICT && version_out) *version_out = res.actual_version;
    if (rc == EVS_ECONFLICT && !mw->has_target_expected)
        return evs__err(EVS_ECONFLICT, "stream \"%s\": expected metadata version %lld, actual %llu", stream,
                        (long long)expected, (unsigned long long)res.actual_version);
    if (!rc && version_out) *version_out = res.last_stream_position;
    return rc;
}

/* Another engine stores metadata itself (engine.h meta_get/meta_set); EVS_ENOTSUP when it does not. */
static int engine_meta(evs_store *s, int write, const char *what) {
    if (write ? !s->engine->meta_set : !s->engine->meta_get) return evs__engine_unsupported(s->engine, "stream metadata");
    if (write && s->readonly) return evs__err(EVS_ECLOSED, "%s: the store is open read-only", what);
    return EVS_OK;
}

/* Store mw as stream's metadata at metadata version `expected`, on whichever engine the store has. */
static int store_meta(evs_store *s, const char *stream, size_t slen, int64_t expected, evs__meta_write *mw,
                      uint64_t *version_out) {
    if (!s->engine) return write_meta(s, stream, slen, expected, mw, version_out);
    /* "$encrypt" goes to the engine as well, which refuses unsealed events in the stream from then on */
    char prefix[EVS_MAX_SUBJECT + 1], enc[EVS_MAX_SUBJECT + 8];
    size_t plen = 0;
    int mode = evs__crypt_mode_of(mw->json, mw->json_len, prefix, sizeof prefix, &plen);
    if (mode && !s->engine->key_get)
        return evs__engine_unsupported(s->engine, "an encrypted stream (\"$encrypt\" in its metadata)");
    if (mode) {
        snprintf(enc, sizeof enc, "%s%s", mode == 1 ? "stream" : "tag:", mode == 1 ? "" : prefix);
        mw->encrypt = enc;
        mw->encrypt_len = strlen(enc);
    }
    mw->target = stream;
    mw->target_len = slen;
    int rc = s->engine->meta_set(s->eng, mw, expected, version_out);
    /* this handle's own appends see it at once (other handles within their cache's age, or by the refusal) */
    if (!rc) evs__ks_mode_put(s, stream, slen, mode, prefix, plen);
    return rc;
}

int evs_stream_set_metadata(evs_store *s, const char *stream, int64_t expected, const char *json, size_t len,
                            uint64_t *version_out) {
    int rc;
    size_t slen;
    if (s && s->engine) rc = engine_meta(s, 1, "set metadata");
    else rc = open_for_write(s, "set metadata");
    if (rc) return rc;
    if ((rc = evs__check_stream_name(s, stream, &slen))) return rc;
    evs__meta_write mw;
    memset(&mw, 0, sizeof mw);
    if ((rc = meta_parse(json, len, 0, &mw.m))) {
        char why[512]; /* the message is rewritten in place: copy it first */
        snprintf(why, sizeof why, "%s", evs_errmsg());
        return evs__err(rc, "stream \"%s\": %s", stream, why);
    }
    mw.json = json;
    mw.json_len = len;
    return store_meta(s, stream, slen, expected, &mw, version_out);
}

/* evs_stream_get_metadata on another engine; *stream_version: the stream's own version. */
static int engine_get(evs_store *s, const char *stream, char **json_out, size_t *len_out, uint64_t *version_out,
                      evs_stream_metadata *parsed, uint64_t *stream_version) {
    int rc;
    size_t slen;
    char *j = NULL;
    size_t jl = 0;
    uint64_t mv = 0, v = 0;
    evs_stream_metadata m;
    meta_none(&m);
    if (json_out) *json_out = NULL;
    if ((rc = engine_meta(s, 0, "get metadata")) || (rc = evs__check_stream_name(s, stream, &slen))) return rc;
    if ((rc = s->engine->meta_get(s->eng, stream, &j, &jl, &mv, &m, &v))) return rc;
    if (!j) {
        if (!v) return evs__err(EVS_ENOTFOUND, "stream \"%s\" not found (and has no metadata)", stream);
        if (!(j = strdup("{}"))) return evs__err(EVS_ENOMEM, "out of memory copying metadata");
        jl = 2, mv = 0;
        meta_none(&m);
    }
    if (json_out) *json_out = j;
    else free(j);
    if (len_out) *len_out = jl;
    if (version_out) *version_out = mv;
    if (parsed) *parsed = m;
    if (stream_version) *stream_version = v;
    return EVS_OK;
}

int evs_stream_get_metadata(evs_store *s, const char *stream, char **json_out, size_t *len_out,
                            uint64_t *version_out, evs_stream_metadata *parsed) {
    if (s && s->engine) return engine_get(s, stream, json_out, len_out, version_out, parsed, NULL);
    int rc;
    size_t slen;
    if (!s || !s->dir) return evs__err(EVS_ECLOSED, "get metadata: the store is not open");
    if ((rc = evs__check_stream_name(s, stream, &slen))) return rc;
    if (json_out) *json_out = NULL;
    char *j = NULL;
    size_t jl = 2;
    uint64_t mv = 0;
    evs_stream_metadata m;
    meta_none(&m);
    int found = 0;
    pthread_rwlock_rdlock(&s->meta_lock);
    struct evs__meta_entry *e = find(s, stream, slen);
    if (e) {
        found = 1;
        m = e->m;
        mv = e->meta_version;
        jl = e->json_len;
        if (json_out && !(j = malloc(jl + 1))) rc = EVS_ENOMEM;
        else if (j) memcpy(j, e->json, jl + 1);
    }
    pthread_rwlock_unlock(&s->meta_lock);
    if (rc) return evs__err(rc, "out of memory copying metadata");
    if (!found) {
        uint64_t v;
        if ((rc = raw_version(s, stream, slen, &v))) return rc;
        if (!v) return evs__err(EVS_ENOTFOUND, "stream \"%s\" not found (and has no metadata)", stream);
        if (json_out && !(j = strdup("{}"))) return evs__err(EVS_ENOMEM, "out of memory copying metadata");
    }
    if (json_out) *json_out = j;
    if (len_out) *len_out = jl;
    if (version_out) *version_out = mv;
    if (parsed) *parsed = m;
    return EVS_OK;
}

int evs_stream_delete(evs_store *s, const char *stream, int64_t expected, int hard) {
    return evs__stream_delete(s, stream, expected, hard, NULL);
}

int evs__stream_delete(evs_store *s, const char *stream, int64_t expected, int hard, uint64_t *actual_out) {
    int rc;
    size_t slen;
    if (s && s->engine) rc = engine_meta(s, 1, "delete");
    else rc = open_for_write(s, "delete");
    if (rc) return rc;
    if ((rc = evs__check_stream_name(s, stream, &slen))) return rc;
    if (expected < EVS_EXPECT_EXISTS)
        return evs__err(EVS_EINVAL, "expected version %lld is invalid (any, no-stream, exists or a version >= 0)",
                        (long long)expected);
    char *old = NULL;
    size_t oldlen = 0;
    evs_stream_metadata m;
    uint64_t v;
    if (s->engine) rc = engine_get(s, stream, &old, &oldlen, NULL, &m, &v);
    else if (!(rc = raw_version(s, stream, slen, &v))) rc = evs_stream_get_metadata(s, stream, &old, &oldlen, NULL, &m);
    if (rc) return rc;
    evs__sb b = {0};
    evs__meta_write mw;
    memset(&mw, 0, sizeof mw);
    if (m.tombstone) {
        rc = evs__err(EVS_EDELETED, "stream \"%s\" is already hard-deleted", stream);
        goto cleanup;
    }
    if (!hard && (v == 0 || m.truncate_before > v)) {
        rc = evs__err(EVS_ENOTFOUND, "stream \"%s\" not found (%s)", stream, v ? "already deleted" : "no events");
        goto cleanup;
    }
    /* the stored object with truncate_before (soft) or "$tombstone" (hard) set, other keys as they were */
    evs__sb_adds(&b, "{");
    int first = 1;
    evs_json_iter it;
    evs_json_span k, val;
    evs__json_iter_init(&it, evs__json_root(old, oldlen));
    while (evs__json_iter_member(&it, &k, &val)) {
        if (!hard && evs__json_string_eq(k, "truncate_before")) continue;
        if (!first) evs__sb_adds(&b, ",");
        first = 0;
        evs__sb_add(&b, k.p, k.n);
        evs__sb_adds(&b, ":");
        evs__sb_add(&b, val.p, val.n);
    }
    if (!first) evs__sb_adds(&b, ",");
    if (hard) evs__sb_adds(&b, "\"$tombstone\":true}");
    else evs__sb_printf(&b, "\"truncate_before\":%llu}", (unsigned long long)v + 1);
    if (b.oom) {
        rc = evs__err(EVS_ENOMEM, "out of memory building the delete's metadata");
        goto cleanup;
    }
    if ((rc = meta_parse(b.p, b.len, 1, &mw.m))) goto cleanup;
    mw.json = b.p;
    mw.json_len = b.len;
    mw.has_target_expected = 1;
    mw.target_expected = expected;
    uint64_t actual = 0;
    rc = store_meta(s, stream, slen, EVS_EXPECT_ANY, &mw, &actual);
    if (rc == EVS_ECONFLICT && actual_out) *actual_out = actual;
cleanup:
    evs__sb_free(&b);
    free(old);
    return rc;
}

int evs__meta_encrypt(evs_store *s, const char *stream, size_t len, char *prefix, size_t cap, size_t *prefix_len) {
    if (!atomic_load(&s->meta_count)) return 0;
    int mode = 0;
    pthread_rwlock_rdlock(&s->meta_lock);
    struct evs__meta_entry *e = find(s, stream, len);
    if (e) mode = evs__crypt_mode_of(e->json, e->json_len, prefix, cap, prefix_len);
    pthread_rwlock_unlock(&s->meta_lock);
    return mode;
}

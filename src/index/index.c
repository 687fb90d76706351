/*
 * index.c — LMDB index over the log: environment, databases, and the one
 * function that turns a log record into index entries.
 *
 * evs__index_add_record serves both the writer (inside the group-commit
 * transaction) and recovery (re-indexing the log's tail), so the two can
 * never disagree about what a record contributes to the index.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "core/json.h"
#include "index/index.h"
#include "log/record.h"
#include <stdlib.h>

static _Thread_local int ix_was_full;

int evs__index_was_full(void) {
    int f = ix_was_full;
    ix_was_full = 0;
    return f;
}

int evs__index_err(int rc, const char *what) {
    if (rc == MDB_MAP_FULL) {
        ix_was_full = 1;
        return evs__err(EVS_ELIMIT, "index: %s: the index map is full (raise the index map size)", what);
    }
    if (rc == MDB_NOTFOUND) return evs__err(EVS_ENOTFOUND, "index: %s: not found", what);
    if (rc > 0) return evs__err_errno(-rc, "index: %s", what);
    return evs__err(EVS_EINDEX, "index: %s: %s", what, mdb_strerror(rc));
}

static int open_dbi(MDB_txn *txn, const char *name, unsigned flags, MDB_dbi *dbi) {
    int rc = mdb_dbi_open(txn, name, flags, dbi);
    if (rc) return evs__index_err(rc, name);
    return EVS_OK;
}

static int format_put(evs_index *ix, MDB_txn *txn) {
    uint8_t b[4];
    evs__put32(b, EVS_IX_FORMAT);
    MDB_val k = {6, "format"}, v = {4, b};
    int rc = mdb_put(txn, ix->meta, &k, &v, 0);
    return rc ? evs__index_err(rc, "write format") : EVS_OK;
}

/*
 * The format the index was written in (see EVS_IX_FORMAT).  Opened after
 * every database; `tags` is opened here since a reader of a format-1 index
 * has none.
 */
static int format_check(evs_index *ix, MDB_txn *txn) {
    MDB_val k = {6, "format"}, v;
    uint32_t fmt = 1;
    int rc = mdb_get(txn, ix->meta, &k, &v);
    if (rc == 0 && v.mv_size == 4) fmt = evs__get32(v.mv_data);
    else if (rc == 0) return evs__err(EVS_EFORMAT, "index: malformed format entry (%zu bytes)", v.mv_size);
    else if (rc != MDB_NOTFOUND) return evs__index_err(rc, "read format");
    if (fmt > EVS_IX_FORMAT)
        return evs__err(EVS_EFORMAT, "index: format %u is newer than this program's %u (remove DIR/index to "
                        "rebuild it from the log, or use a newer evstore)", fmt, EVS_IX_FORMAT);
    int fresh = 0;
    if (rc == MDB_NOTFOUND) {
        MDB_val ck = {10, "checkpoint"};
        int crc = mdb_get(txn, ix->meta, &ck, &v);
        if (crc && crc != MDB_NOTFOUND) return evs__index_err(crc, "read checkpoint");
        fresh = crc == MDB_NOTFOUND;
    }
    rc = mdb_dbi_open(txn, "tags", ix->readonly ? MDB_DUPSORT | MDB_DUPFIXED
                                                : MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED, &ix->tags);
    if (rc == MDB_NOTFOUND && ix->readonly) ix->tags = 0, rc = 0;
    if (rc) return evs__index_err(rc, "tags");
    if (fmt < 2 && !ix->readonly) {
        if (fresh) return format_put(ix, txn);
        ix->stale = 1; /* entries without tags: store open rebuilds it, writing the format */
    }
    if (fmt < 2 && ix->readonly) ix->tags = 0; /* an older writer's index: no tag entries to trust */
    return EVS_OK;
}

int evs__index_open(evs_index *ix, const char *path, uint64_t map_max, unsigned maxreaders, int readonly) {
    int rc;
    MDB_txn *txn = NULL;
    memset(ix, 0, sizeof *ix);
    ix->readonly = readonly;
    ix->map_max = map_max < EVS_IX_MAP_MIN ? EVS_IX_MAP_MIN : map_max;
    snprintf(ix->data_path, sizeof ix->data_path, "%s/data.mdb", path);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* a remap waits only for calls in progress, never behind a stream of new ones */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ix->remap, &ra);
    pthread_rwlockattr_destroy(&ra);
    if (!readonly && mkdir(path, 0755) != 0 && errno != EEXIST) {
        rc = evs__err_errno(-errno, "index: cannot create directory %s", path);
        goto fail_lock;
    }
    if ((rc = mdb_env_create(&ix->env))) {
        rc = evs__index_err(rc, "create environment");
        goto fail_lock;
    }
    mdb_env_set_maxdbs(ix->env, 16);
    mdb_env_set_maxreaders(ix->env, maxreaders);
    /* Start small: LMDB raises the map to what the file already holds.  A
       writer then keeps some room free (evs__index_room); a reader maps
       what the file's size says the writer mapped. */
    uint64_t start = EVS_IX_MAP_MIN;
    struct stat sb;
    if (readonly && stat(ix->data_path, &sb) == 0 && (uint64_t)sb.st_size > start) start = (uint64_t)sb.st_size;
    mdb_env_set_mapsize(ix->env, (size_t)start);
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD | (readonly ? MDB_RDONLY : MDB_NOSYNC | MDB_WRITEMAP);
    if ((rc = mdb_env_open(ix->env, path, flags, 0644))) {
        rc = evs__index_err(rc, path);
        goto fail;
    }
    MDB_envinfo info;
    mdb_env_info(ix->env, &info);
    ix->map_size = info.me_mapsize;
    if ((rc = mdb_txn_begin(ix->env, NULL, readonly ? MDB_RDONLY : 0, &txn))) {
        rc = evs__index_err(rc, "begin");
        goto fail;
    }
    unsigned c = readonly ? 0 : MDB_CREATE, dup = MDB_DUPSORT | MDB_DUPFIXED;
    if ((rc = open_dbi(txn, "meta", c, &ix->meta)) || (rc = open_dbi(txn, "streams", c, &ix->streams)) ||
        (rc = open_dbi(txn, "stream_ev", c, &ix->stream_ev)) ||
        (rc = open_dbi(txn, "event_ids", c, &ix->event_ids)) || (rc = open_dbi(txn, "records", c, &ix->records)) ||
        (rc = open_dbi(txn, "types", c | dup, &ix->types)) || (rc = open_dbi(txn, "stypes", c | dup, &ix->stypes)) ||
        (rc = open_dbi(txn, "corr", c | dup, &ix->corr)) || (rc = open_dbi(txn, "times", c, &ix->times)))
        goto fail;
    /* `lost` came later: a store written before it has none, even read-only */
    rc = mdb_dbi_open(txn, "lost", c, &ix->lost);
    if (rc == MDB_NOTFOUND && readonly) ix->lost = 0, rc = 0;
    if (rc && (rc = evs__index_err(rc, "lost")))
        goto fail;
    if ((rc = format_check(ix, txn))) goto fail;
    if ((rc = mdb_txn_commit(txn))) {
        txn = NULL;
        rc = evs__index_err(rc, "commit");
        goto fail;
    }
    /* at its limit the store still opens: reads work, appends say why they cannot */
    if (!readonly && evs__index_room(ix, EVS_IX_MAP_MIN / 2)) evs__err_clear();
    return EVS_OK;
fail:
    if (txn) mdb_txn_abort(txn);
    mdb_env_close(ix->env);
    ix->env = NULL;
fail_lock:
    pthread_rwlock_destroy(&ix->remap);
    return rc;
}

void evs__index_close(evs_index *ix) {
    if (!ix || !ix->env) return;
    if (!ix->readonly) mdb_env_sync(ix->env, 1);
    mdb_env_close(ix->env);
    ix->env = NULL;
    pthread_rwlock_destroy(&ix->remap);
}

/*
 * MAP GROWTH.  The map (and, with MDB_WRITEMAP, the file: LMDB sizes the
 * file to the map) starts at about what the index holds and doubles when
 * the free room runs short, up to map_max.  mdb_env_set_mapsize unmaps and
 * maps again, so nothing may be using the old map: the writer has no write
 * transaction open when it grows (it aborts a batch that hit MDB_MAP_FULL
 * and runs it again), and readers hold ix->remap (shared) for as long as
 * they touch the map.  A read transaction itself holds no pointer into the
 * map (LMDB copies the database roots into it), so an evs_reader keeps its
 * snapshot across a remap and only renews its cursors.  A read-only
 * process learns that the writer grew the map from MDB_MAP_RESIZED and
 * adopts the new size the same way.
 */
static int remap_to(evs_index *ix, uint64_t size) {
    pthread_rwlock_wrlock(&ix->remap);
    int rc = mdb_env_set_mapsize(ix->env, (size_t)size);
    if (!rc) {
        MDB_envinfo info;
        mdb_env_info(ix->env, &info);
        ix->map_size = info.me_mapsize;
        atomic_fetch_add(&ix->gen, 1);
    }
    pthread_rwlock_unlock(&ix->remap);
    return rc ? evs__index_err(rc, "resize the map") : EVS_OK;
}

static uint64_t ix_used(evs_index *ix) {
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(ix->env, &info);
    mdb_env_stat(ix->env, &st);
    return ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
}

/* Past map_max the map keeps this much more, so that a commit admitted
   below the limit (evs__index_room) never runs out of pages half way. */
#define MAP_SLACK ((uint64_t)EVS_IX_MAP_MIN)

static int limit_err(const evs_index *ix) {
    return evs__err(EVS_ELIMIT, "index: the map is full at its limit of %llu MiB (raise it with "
                    "evs_store_set_index_map_size)", (unsigned long long)(ix->map_max >> 20));
}

static int grow_to_fit(evs_index *ix, uint64_t want) {
    if (ix->map_size >= ix->map_max + MAP_SLACK) return limit_err(ix);
    uint64_t size = ix->map_size * 2;
    if (size < want) size = want;
    size = (size + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
    if (size > ix->map_max) size = ix->map_max + MAP_SLACK;
    return remap_to(ix, size);
}

int evs__index_room(evs_index *ix, uint64_t reserve) {
    uint64_t used = ix_used(ix);
    if (used + reserve > ix->map_max) return limit_err(ix);
    if (used + reserve <= ix->map_size) return EVS_OK;
    return grow_to_fit(ix, used + 2 * reserve);
}

int evs__index_grow(evs_index *ix) { return grow_to_fit(ix, 0); }

void evs__index_rlock(evs_index *ix) { pthread_rwlock_rdlock(&ix->remap); }
void evs__index_runlock(evs_index *ix) { pthread_rwlock_unlock(&ix->remap); }

int evs__index_txn_read(evs_index *ix, MDB_txn **txn) {
    for (;;) {
        int rc = mdb_txn_begin(ix->env, NULL, MDB_RDONLY, txn);
        if (rc != MDB_MAP_RESIZED) return rc ? evs__index_err(rc, "begin read") : EVS_OK;
        /* the writer (another process) grew the map past ours */
        pthread_rwlock_unlock(&ix->remap);
        pthread_rwlock_wrlock(&ix->remap);
        struct stat sb;
        uint64_t size = stat(ix->data_path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        rc = mdb_env_set_mapsize(ix->env, (size_t)size); /* LMDB raises it to what is in use */
        if (!rc) atomic_fetch_add(&ix->gen, 1);
        pthread_rwlock_unlock(&ix->remap);
        pthread_rwlock_rdlock(&ix->remap);
        if (rc) return evs__index_err(rc, "adopt the writer's map size");
    }
}

int evs__index_rbegin(evs_index *ix, MDB_txn **txn) {
    pthread_rwlock_rdlock(&ix->remap);
    int rc = evs__index_txn_read(ix, txn);
    if (rc) pthread_rwlock_unlock(&ix->remap);
    return rc;
}

void evs__index_rend(evs_index *ix, MDB_txn *txn) {
    if (txn) mdb_txn_abort(txn);
    pthread_rwlock_unlock(&ix->remap);
}

int evs__index_clear(evs_index *ix) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(ix->env, NULL, 0, &txn);
    if (rc) return evs__index_err(rc, "begin clear");
    MDB_dbi all[] = {ix->meta, ix->streams, ix->stream_ev, ix->event_ids, ix->records,
                     ix->types, ix->stypes, ix->corr, ix->times, ix->lost, ix->tags};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if ((rc = mdb_drop(txn, all[i], 0))) {
            mdb_txn_abort(txn);
            return evs__index_err(rc, "clear");
        }
    if ((rc = format_put(ix, txn))) {
        mdb_txn_abort(txn);
        return rc;
    }
    if ((rc = mdb_txn_commit(txn))) return evs__index_err(rc, "commit clear");
    ix->stale = 0;
    return EVS_OK;
}

static MDB_val sval(const void *p, size_t n) {
    MDB_val v = {n, (void *)p};
    return v;
}

int evs__index_checkpoint_get(evs_index *ix, MDB_txn *txn, evs_lsn *lsn, uint64_t *next_gpos) {
    MDB_val k = sval("checkpoint", 10), v;
    int rc = mdb_get(txn, ix->meta, &k, &v);
    if (rc == MDB_NOTFOUND) return EVS_ENOTFOUND;
    if (rc) return evs__index_err(rc, "read checkpoint");
    if (v.mv_size != 16) return evs__err(EVS_EINDEX, "index: checkpoint has %zu bytes, expected 16", v.mv_size);
    *lsn = evs__get64(v.mv_data);
    *next_gpos = evs__get64((uint8_t *)v.mv_data + 8);
    return EVS_OK;
}

int evs__index_checkpoint_put(evs_index *ix, MDB_txn *txn, evs_lsn lsn, uint64_t next_gpos) {
    uint8_t b[16];
    evs__put64(b, lsn);
    evs__put64(b + 8, next_gpos);
    MDB_val k = sval("checkpoint", 10), v = sval(b, 16);
    int rc = mdb_put(txn, ix->meta, &k, &v, 0);
    return rc ? evs__index_err(rc, "write checkpoint") : EVS_OK;
}

/* Stream record: u64 id, version, first, last, i64 created, updated, u8 stype_len, stype. */
int evs__index_stream_decode(const MDB_val *v, evs_ix_stream *st) {
    const uint8_t *p = v->mv_data;
    if (v->mv_size < 49 || v->mv_size != 49u + p[48]) return evs__err(EVS_EINDEX, "index: malformed stream record");
    st->id = evs__get64(p);
    st->version = evs__get64(p + 8);
    st->first_gpos = evs__get64(p + 16);
    st->last_gpos = evs__get64(p + 24);
    st->created = (int64_t)evs__get64(p + 32);
    st->updated = (int64_t)evs__get64(p + 40);
    st->stype_len = p[48];
    memcpy(st->stype, p + 49, st->stype_len);
    st->stype[st->stype_len] = '\0';
    return EVS_OK;
}

int evs__index_stream_get(evs_index *ix, MDB_txn *txn, const char *name, size_t len, evs_ix_stream *st) {
    MDB_val k = sval(name, len), v;
    int rc = mdb_get(txn, ix->streams, &k, &v);
    if (rc == MDB_NOTFOUND) {
        memset(st, 0, sizeof *st);
        return EVS_ENOTFOUND;
    }
    if (rc) return evs__index_err(rc, "read stream");
    return evs__index_stream_decode(&v, st);
}

int evs__index_event_id_get(evs_index *ix, MDB_txn *txn, const evs_uuid *id, uint64_t *gpos, uint64_t *sid,
                            uint64_t *spos) {
    MDB_val k = sval(id->b, 16), v;
    int rc = mdb_get(txn, ix->event_ids, &k, &v);
    if (rc == MDB_NOTFOUND) return EVS_ENOTFOUND;
    if (rc) return evs__index_err(rc, "read event id");
    if (v.mv_size != 24) return evs__err(EVS_EINDEX, "index: malformed event id entry");
    *gpos = evs__get64(v.mv_data);
    *sid = evs__get64((uint8_t *)v.mv_data + 8);
    *spos = evs__get64((uint8_t *)v.mv_data + 16);
    return EVS_OK;
}

int evs__index_each_tag(const char *tags_json, size_t len, int (*fn)(void *arg, const char *tag, size_t n), void *arg) {
    evs_json_iter it;
    evs_json_span v;
    char buf[EVS_MAX_TAGS][EVS_MAX_TAG_BYTES + 1];
    size_t lens[EVS_MAX_TAGS], n = 0;
    if (evs__json_iter_init(&it, evs__json_root(tags_json, len))) return -1;
    while (evs__json_iter_element(&it, &v)) {
        if (n == EVS_MAX_TAGS) return -1;
        long l = evs__json_string_decode(v, buf[n], sizeof buf[n]);
        if (l <= 0) return -1;
        size_t j;
        for (j = 0; j < n; j++)
            if (lens[j] == (size_t)l && !memcmp(buf[j], buf[n], (size_t)l)) break;
        if (j < n) continue; /* listed twice: one entry */
        lens[n] = (size_t)l;
        int rc = fn(arg, buf[n], lens[n]);
        if (rc) return rc;
        n++;
    }
    return 0;
}

typedef struct tag_put {
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val gpos;
    int mdb_rc;
} tag_put;

static int put_tag(void *arg, const char *tag, size_t n) {
    tag_put *t = arg;
    MDB_val k = {n, (void *)tag}, v = t->gpos;
    t->mdb_rc = mdb_put(t->txn, t->dbi, &k, &v, 0);
    return t->mdb_rc ? 1 : 0;
}

static int next_stream_id(evs_index *ix, MDB_txn *txn, uint64_t *id) {
    MDB_val k = sval("next_stream_id", 14), v;
    uint64_t next = 1;
    int rc = mdb_get(txn, ix->meta, &k, &v);
    if (rc == 0 && v.mv_size == 8) next = evs__get64(v.mv_data);
    else if (rc && rc != MDB_NOTFOUND) return evs__index_err(rc, "read stream id");
    *id = next;
    uint8_t b[8];
    evs__put64(b, next + 1);
    v = sval(b, 8);
    rc = mdb_put(txn, ix->meta, &k, &v, 0);
    return rc ? evs__index_err(rc, "write stream id") : EVS_OK;
}

int evs__index_add_record(evs_index *ix, MDB_txn *txn, const uint8_t *payload, uint32_t len, uint64_t first_gpos,
                          uint32_t count, evs_lsn lsn, evs_ix_stream *st) {
    int rc;
    const char *stream;
    size_t stream_len;
    char why[128];
    if (evs__record_valid(payload, len, count, why, sizeof why) ||
        evs__record_stream(payload, len, &stream, &stream_len))
        return evs__err(EVS_ECORRUPT, "record at global position %llu: %s", (unsigned long long)first_gpos, why);
    uint64_t spos0 = evs__record_first_stream_pos(payload);
    int64_t recorded = evs__record_recorded_at(payload);
    size_t off = evs__record_first_event(payload, len);
    if (st->id == 0) {
        if ((rc = next_stream_id(ix, txn, &st->id))) return rc;
        st->first_gpos = first_gpos;
        st->created = recorded;
    }
    uint8_t kb[16], vb[24];
    MDB_val k, v;
    for (uint32_t i = 0; i < count; i++) {
        evs_event ev;
        size_t next = off ? evs__record_decode(payload, len, off, first_gpos, i, &ev) : 0;
        if (!next)
            return evs__err(EVS_ECORRUPT, "record at global position %llu: event %u is malformed",
                            (unsigned long long)first_gpos, i + 1);
        if (i == 0 && st->stype_len == 0) {
            st->stype_len = (uint32_t)ev.stream_type_len;
            memcpy(st->stype, ev.stream_type, ev.stream_type_len);
            st->stype[st->stype_len] = '\0';
        }
        uint64_t gpos = first_gpos + i, spos = spos0 + i;
        uint8_t gbe[8];
        evs__put64be(gbe, gpos);
        /* stream_ev */
        evs__put64be(kb, st->id);
        evs__put64be(kb + 8, spos);
        evs__put64(vb, lsn);
        evs__put32(vb + 8, i);
        k = sval(kb, 16);
        v = sval(vb, 12);
        if ((rc = mdb_put(txn, ix->stream_ev, &k, &v, 0))) return evs__index_err(rc, "write stream entry");
        /* event_ids */
        evs__put64(vb, gpos);
        evs__put64(vb + 8, st->id);
        evs__put64(vb + 16, spos);
        k = sval(ev.event_id.b, 16);
        v = sval(vb, 24);
        if ((rc = mdb_put(txn, ix->event_ids, &k, &v, 0))) return evs__index_err(rc, "write event id");
        /* types, stream types, correlation */
        v = sval(gbe, 8);
        k = sval(ev.event_type, ev.event_type_len);
        if ((rc = mdb_put(txn, ix->types, &k, &v, 0))) return evs__index_err(rc, "write type entry");
        k = sval(ev.stream_type, ev.stream_type_len);
        if ((rc = mdb_put(txn, ix->stypes, &k, &v, 0))) return evs__index_err(rc, "write stream type entry");
        if (ev.has_correlation_id) {
            k = sval(ev.correlation_id.b, 16);
            if ((rc = mdb_put(txn, ix->corr, &k, &v, 0))) return evs__index_err(rc, "write correlation entry");
        }
        if (ev.tags_len) {
            tag_put t = {txn, ix->tags, sval(gbe, 8), 0};
            rc = evs__index_each_tag(ev.tags, ev.tags_len, put_tag, &t);
            if (t.mdb_rc) return evs__index_err(t.mdb_rc, "write tag entry");
            if (rc)
                return evs__err(EVS_ECORRUPT, "record at global position %llu: event %u has malformed tags",
                                (unsigned long long)first_gpos, i + 1);
        }
        off = next;
    }
    /* records: first gpos -> lsn, count.  Appended in order, so MDB_APPEND keeps pages full. */
    evs__put64be(kb, first_gpos);
    evs__put64(vb, lsn);
    evs__put32(vb + 8, count);
    k = sval(kb, 8);
    v = sval(vb, 12);
    if ((rc = mdb_put(txn, ix->records, &k, &v, MDB_APPEND)) == MDB_KEYEXIST)
        rc = mdb_put(txn, ix->records, &k, &v, 0);
    if (rc) return evs__index_err(rc, "write record entry");
    evs__put64be(kb, (uint64_t)(recorded < 0 ? 0 : recorded));
    evs__put64be(kb + 8, first_gpos);
    k = sval(kb, 16);
    v = sval("", 0);
    if ((rc = mdb_put(txn, ix->times, &k, &v, MDB_APPEND)) == MDB_KEYEXIST)
        rc = mdb_put(txn, ix->times, &k, &v, 0);
    if (rc) return evs__index_err(rc, "write time entry");
    /* the stream */
    st->version = spos0 + count - 1;
    st->last_gpos = first_gpos + count - 1;
    st->updated = recorded;
    uint8_t sb[49 + EVS_MAX_TYPE_NAME];
    evs__put64(sb, st->id);
    evs__put64(sb + 8, st->version);
    evs__put64(sb + 16, st->first_gpos);
    evs__put64(sb + 24, st->last_gpos);
    evs__put64(sb + 32, (uint64_t)st->created);
    evs__put64(sb + 40, (uint64_t)st->updated);
    sb[48] = (uint8_t)st->stype_len;
    memcpy(sb + 49, st->stype, st->stype_len);
    k = sval(stream, stream_len);
    v = sval(sb, 49 + st->stype_len);
    if ((rc = mdb_put(txn, ix->streams, &k, &v, 0))) return evs__index_err(rc, "write stream");
    return EVS_OK;
}

int evs__index_find_record(evs_index *ix, MDB_cursor *cur, uint64_t gpos, uint64_t *first_gpos, evs_lsn *lsn,
                           uint32_t *count) {
    (void)ix;
    uint8_t kb[8];
    evs__put64be(kb, gpos);
    MDB_val k = sval(kb, 8), v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && evs__get64be(k.mv_data) == gpos) goto found;
    if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = mdb_cursor_get(cur, &k, &v, rc == 0 ? MDB_PREV : MDB_LAST);
        if (rc == MDB_NOTFOUND) return EVS_ENOTFOUND;
    }
    if (rc) return evs__index_err(rc, "find record");
found:
    if (v.mv_size != 12) return evs__err(EVS_EINDEX, "index: malformed record entry");
    *first_gpos = evs__get64be(k.mv_data);
    *lsn = evs__get64(v.mv_data);
    *count = evs__get32((uint8_t *)v.mv_data + 8);
    if (gpos >= *first_gpos + *count) return EVS_ENOTFOUND;
    return EVS_OK;
}

int evs__index_first_at_or_after(evs_index *ix, MDB_txn *txn, int64_t t, uint64_t *gpos) {
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, ix->times, &cur);
    if (rc) return evs__index_err(rc, "open time cursor");
    uint8_t kb[16];
    evs__put64be(kb, (uint64_t)(t < 0 ? 0 : t));
    evs__put64be(kb + 8, 0);
    MDB_val k = sval(kb, 16), v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0) *gpos = evs__get64be((uint8_t *)k.mv_data + 8);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) return EVS_ENOTFOUND;
    return rc ? evs__index_err(rc, "time lookup") : EVS_OK;
}

/* The stream record, written back after a change. */
static int stream_put(evs_index *ix, MDB_txn *txn, const char *name, size_t len, const evs_ix_stream *st) {
    uint8_t sb[49 + EVS_MAX_TYPE_NAME];
    evs__put64(sb, st->id);
    evs__put64(sb + 8, st->version);
    evs__put64(sb + 16, st->first_gpos);
    evs__put64(sb + 24, st->last_gpos);
    evs__put64(sb + 32, (uint64_t)st->created);
    evs__put64(sb + 40, (uint64_t)st->updated);
    sb[48] = (uint8_t)st->stype_len;
    memcpy(sb + 49, st->stype, st->stype_len);
    MDB_val k = sval(name, len), v = sval(sb, 49 + st->stype_len);
    int rc = mdb_put(txn, ix->streams, &k, &v, 0);
    return rc ? evs__index_err(rc, "write stream") : EVS_OK;
}

int evs__index_add_lost(evs_index *ix, MDB_txn *txn, const uint8_t *payload, uint32_t len, uint64_t first_gpos,
                        uint32_t count, evs_lsn lsn) {
    int rc;
    int64_t at = 0;
    evs_lost_iter it = {0, 0};
    evs_lost_stream e;
    uint8_t kb[16], vb[16];
    MDB_val k, v;
    char why[128];
    if (evs__lost_valid(payload, len, count, why, sizeof why))
        return evs__err(EVS_ECORRUPT, "lost-record at global position %llu: %s", (unsigned long long)first_gpos, why);
    while ((rc = evs__lost_next(payload, len, &it, &e, &at)) == EVS_OK) {
        evs_ix_stream st;
        rc = evs__index_stream_get(ix, txn, e.stream, e.stream_len, &st);
        if (rc && rc != EVS_ENOTFOUND) return rc;
        if (st.id == 0) {
            if ((rc = next_stream_id(ix, txn, &st.id))) return rc;
            st.first_gpos = first_gpos;
            st.created = at;
            /* the stream's own events are gone: its type is the default one */
            const char *dash = memchr(e.stream, '-', e.stream_len);
            st.stype_len = (uint32_t)(dash && dash > e.stream ? (size_t)(dash - e.stream) : e.stream_len);
            memcpy(st.stype, e.stream, st.stype_len);
            st.stype[st.stype_len] = 0;
        }
        st.updated = at;
        for (uint32_t i = 0; i < e.count; i++) {
            evs__put64be(kb, st.id);
            evs__put64be(kb + 8, e.first + i);
            evs__put64(vb, lsn);
            evs__put32(vb + 8, EVS_IX_LOST);
            k = sval(kb, 16);
            v = sval(vb, 12);
            if ((rc = mdb_put(txn, ix->stream_ev, &k, &v, 0))) return evs__index_err(rc, "write lost stream entry");
        }
        if (e.first + e.count - 1 > st.version) st.version = e.first + e.count - 1;
        if (first_gpos + count - 1 > st.last_gpos) st.last_gpos = first_gpos + count - 1;
        if ((rc = stream_put(ix, txn, e.stream, e.stream_len, &st))) return rc;
    }
    if (rc != EVS_DONE)
        return evs__err(EVS_ECORRUPT, "lost-record at global position %llu is malformed",
                        (unsigned long long)first_gpos);
    evs__put64be(kb, first_gpos);
    evs__put64(vb, lsn);
    evs__put32(vb + 8, count);
    k = sval(kb, 8);
    v = sval(vb, 12);
    if ((rc = mdb_put(txn, ix->records, &k, &v, 0))) return evs__index_err(rc, "write record entry");
    evs__put64(vb, count);
    evs__put64(vb + 8, (uint64_t)at);
    v = sval(vb, 16);
    if ((rc = mdb_put(txn, ix->lost, &k, &v, 0))) return evs__index_err(rc, "write lost entry");
    return EVS_OK;
}

int evs__index_lost_load(evs_index *ix, MDB_txn *txn, evs_lost_range **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!ix->lost) return EVS_OK;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, ix->lost, &cur);
    if (rc) return evs__index_err(rc, "open lost cursor");
    evs_lost_range *a = NULL;
    size_t cap = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8 || v.mv_size != 16) {
            rc = evs__err(EVS_EINDEX, "index: malformed lost entry");
            goto out;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            evs_lost_range *na = realloc(a, cap * sizeof *na);
            if (!na) {
                rc = evs__err(EVS_ENOMEM, "out of memory loading lost ranges");
                goto out;
            }
            a = na;
        }
        uint64_t first = evs__get64be(k.mv_data);
        a[*n].first = first;
        a[*n].last = first + evs__get64(v.mv_data) - 1;
        a[*n].repaired_at = (int64_t)evs__get64((uint8_t *)v.mv_data + 8);
        (*n)++;
    }
    rc = rc == MDB_NOTFOUND ? EVS_OK : evs__index_err(rc, "read lost ranges");
out:
    mdb_cursor_close(cur);
    if (rc) {
        free(a);
        *n = 0;
        return rc;
    }
    *out = a;
    return EVS_OK;
}

/*
 * replay.c — a Lua projection's state as of a point in the global order,
 * and what-if runs: the script replayed into a temporary state that lives
 * only in this call's sandbox.  Nothing of the live projection (record
 * state rows, checkpoint, DLQ) is read beyond its stored script, nor
 * written.
 *
 * Memory.  Events are streamed from one reader (a view each, never kept);
 * what grows is the partitions' states, which live in the sandbox's Lua heap
 * and so are bounded by its memory cap (evs_lua_limits), plus one small
 * C entry per partition.  `partition` keeps a single one for a point query
 * over a partitioned projection.
 *
 * What-if.  Exclusions are checked per event (positions by binary search in
 * a sorted copy); inserts are sorted by the position they follow (stable, so
 * several after the same position keep the request's order) and delivered
 * before the first stored event past that position.  Inserted events pass
 * the script's filter as if they had been appended.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_internal.h"
#include "core/sb.h"

#define REPLAY_PROGRESS_EVERY 65536u

typedef struct rpart {
    char *key;                    /* NULL: empty slot */
    size_t klen;
    int ref;                      /* the state table in the sandbox's registry */
} rpart;

typedef struct replay {
    evs__lua *lua;
    evs__lua_decl decl;
    int partitioning;
    rpart *tab;
    size_t cap, used;
    uint64_t *excl;               /* sorted positions */
    size_t n_excl;
    const evs_replay_insert **ins; /* sorted by `after` */
    size_t n_ins, next_ins;
    evs_replay_result *res;
} replay;

static uint64_t hash(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static rpart *slot(rpart *tab, size_t cap, const char *k, size_t n) {
    size_t i = (size_t)hash(k, n) & (cap - 1);
    while (tab[i].key && !(tab[i].klen == n && memcmp(tab[i].key, k, n) == 0)) i = (i + 1) & (cap - 1);
    return &tab[i];
}

static int grow(replay *r) {
    size_t ncap = r->cap ? r->cap * 2 : 64;
    rpart *nt = calloc(ncap, sizeof *nt);
    if (!nt) return evs__err(EVS_ENOMEM, "out of memory");
    for (size_t i = 0; i < r->cap; i++)
        if (r->tab[i].key) *slot(nt, ncap, r->tab[i].key, r->tab[i].klen) = r->tab[i];
    free(r->tab);
    r->tab = nt;
    r->cap = ncap;
    return EVS_OK;
}

/* The state of partition k, created from the script's init on first use. */
static int part_get(replay *r, const char *k, size_t n, rpart **out, char *err, size_t cap) {
    if ((r->used + 1) * 2 > r->cap) {
        int rc = grow(r);
        if (rc) return rc;
    }
    rpart *e = slot(r->tab, r->cap, k, n);
    if (!e->key) {
        int ref = 0, rc = evs__lua_load_state(r->lua, NULL, 0, &ref, err, cap);
        if (rc) return rc;
        if (!(e->key = malloc(n + 1))) {
            evs__lua_unref(r->lua, ref);
            return evs__err(EVS_ENOMEM, "out of memory");
        }
        memcpy(e->key, k, n);
        e->key[n] = 0;
        e->klen = n;
        e->ref = ref;
        r->used++;
    }
    *out = e;
    return EVS_OK;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_ins(const void *a, const void *b) {
    const evs_replay_insert *x = *(const evs_replay_insert *const *)a, *y = *(const evs_replay_insert *const *)b;
    if (x->after != y->after) return x->after < y->after ? -1 : 1;
    return x < y ? -1 : x > y; /* the request's order among equals */
}

static int name_in(const char *s, size_t n, const char *const *list, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (strlen(list[i]) == n && memcmp(list[i], s, n) == 0) return 1;
    return 0;
}

static int excluded(const replay *r, const evs_replay_opts *o, const evs_event *ev) {
    if (r->n_excl && bsearch(&ev->global_position, r->excl, r->n_excl, sizeof *r->excl, cmp_u64)) return 1;
    if (name_in(ev->event_type, ev->event_type_len, o->exclude_types, o->n_exclude_types)) return 1;
    return name_in(ev->stream, ev->stream_len, o->exclude_streams, o->n_exclude_streams);
}

/* The script's filter, for inserted events (stored ones were filtered by the read). */
static int decl_match(const replay *r, const evs_event *ev) {
    const evs_filter *f = &r->decl.filter;
    if (f->n_event_types && !name_in(ev->event_type, ev->event_type_len, f->event_types, f->n_event_types)) return 0;
    if (f->stream_prefix) {
        size_t pl = strlen(f->stream_prefix);
        if (ev->stream_len < pl || memcmp(ev->stream, f->stream_prefix, pl) != 0) return 0;
    }
    if (f->stream_type && !name_in(ev->stream_type, ev->stream_type_len, &f->stream_type, 1)) return 0;
    return 1;
}

/* Fold one event (through the map) into its partition. */
static int apply(replay *r, const evs_replay_opts *o, const evs_event *stored) {
    char err[512] = "";
    evs_event seen = *stored;
    void *owned = NULL;
    int rc = EVS_OK;
    const evs_event *ev = stored;
    if (o->map.fn) {
        if (o->map.fn(o->map.ctx, stored, &seen, &owned, err, sizeof err)) {
            rc = evs__err(EVS_EINVAL, "event at position %llu (%.*s): the event map failed: %s",
                          (unsigned long long)stored->global_position, (int)stored->event_type_len,
                          stored->event_type, err);
            goto cleanup;
        }
        ev = &seen;
    }
    char part[EVS_MAX_STREAM_NAME + 1];
    size_t pn = 0;
    if (r->partitioning == EVS_PARTITION_CUSTOM) {
        int n = evs__lua_partition(r->lua, ev, part, sizeof part, err, sizeof err);
        if (n < 0) {
            rc = evs__err(EVS_EINVAL, "event at position %llu: partition function: %s",
                          (unsigned long long)ev->global_position, err);
            goto cleanup;
        }
        pn = (size_t)n;
    } else if (r->partitioning == EVS_PARTITION_BY_STREAM) {
        memcpy(part, ev->stream, ev->stream_len);
        pn = ev->stream_len;
    }
    part[pn] = 0;
    if (o->partition && !(strlen(o->partition) == pn && memcmp(o->partition, part, pn) == 0)) goto cleanup;
    rpart *e = NULL;
    if ((rc = part_get(r, part, pn, &e, err, sizeof err))) goto cleanup;
    if (evs__lua_apply(r->lua, &e->ref, ev, err, sizeof err)) {
        rc = evs__err(EVS_EINVAL, "handler for %.*s failed at position %llu: %s", (int)ev->event_type_len,
                      ev->event_type, (unsigned long long)ev->global_position, err);
        goto cleanup;
    }
    r->res->events_applied++;
cleanup:
    free(owned);
    return rc;
}

/* Deliver the inserts that follow positions below `before` (UINT64_MAX: all that remain). */
static int flush_inserts(replay *r, const evs_replay_opts *o, uint64_t before, int64_t prev_recorded) {
    while (r->next_ins < r->n_ins && r->ins[r->next_ins]->after < before) {
        const evs_replay_insert *in = r->ins[r->next_ins++];
        evs_event ev;
        memset(&ev, 0, sizeof ev);
        ev.stream = in->stream;
        ev.stream_len = strlen(in->stream);
        if (in->stream_type) {
            ev.stream_type = in->stream_type;
            ev.stream_type_len = strlen(in->stream_type);
        } else {
            const char *dash = memchr(in->stream, '-', ev.stream_len);
            ev.stream_type = in->stream;
            ev.stream_type_len = dash ? (size_t)(dash - in->stream) : ev.stream_len;
        }
        ev.event_type = in->event_type;
        ev.event_type_len = strlen(in->event_type);
        ev.data = in->data ? in->data : "{}";
        ev.data_len = in->data ? in->data_len : 2;
        ev.metadata = in->metadata;
        ev.metadata_len = in->metadata ? in->metadata_len : 0;
        ev.event_version = 1;
        ev.global_position = in->after; /* it has none of its own: the one it follows */
        ev.recorded_at = ev.occurred_at = in->recorded_at ? in->recorded_at : prev_recorded;
        if (!decl_match(r, &ev)) continue;
        r->res->events_inserted++;
        int rc = apply(r, o, &ev);
        if (rc) return evs__err_prefix(rc, "inserted event %s after %llu: ", in->event_type,
                                       (unsigned long long)in->after);
    }
    return EVS_OK;
}

static int cmp_part(const void *a, const void *b) {
    const rpart *x = *(const rpart *const *)a, *y = *(const rpart *const *)b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

static const char *part_name(int p) {
    return p == EVS_PARTITION_NONE ? "none" : p == EVS_PARTITION_CUSTOM ? "custom" : "stream";
}

static int encode(replay *r, const char *name, const evs_replay_opts *o) {
    evs_replay_result *res = r->res;
    evs__sb sb = {0};
    rpart **order = NULL;
    int rc = EVS_OK;
    if (r->used && !(order = malloc(r->used * sizeof *order))) return evs__err(EVS_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < r->cap; i++)
        if (r->tab[i].key) order[n++] = &r->tab[i];
    if (n) qsort(order, n, sizeof *order, cmp_part);
    evs__sb_adds(&sb, "{\"projection\":");
    if (name) evs__sb_json_str(&sb, name, strlen(name));
    else evs__sb_adds(&sb, "null");
    evs__sb_printf(&sb, ",\"partitioning\":\"%s\",\"as_of\":{\"position\":", part_name(r->partitioning));
    if (o->as_of.position) evs__sb_printf(&sb, "%llu", (unsigned long long)o->as_of.position);
    else evs__sb_adds(&sb, "null");
    evs__sb_adds(&sb, ",\"time\":");
    evs__sb_json_time(&sb, o->as_of.time);
    evs__sb_printf(&sb,
                   "},\"position\":%llu,\"events_read\":%llu,\"events_applied\":%llu,\"events_excluded\":%llu,"
                   "\"events_inserted\":%llu,\"partitions\":{",
                   (unsigned long long)res->position, (unsigned long long)res->events_read,
                   (unsigned long long)res->events_applied, (unsigned long long)res->events_excluded,
                   (unsigned long long)res->events_inserted);
    for (size_t i = 0; i < n; i++) {
        char err[256] = "", *js = NULL;
        size_t jl = 0;
        if ((rc = evs__lua_encode(r->lua, order[i]->ref, &js, &jl, err, sizeof err))) {
            rc = evs__err(rc, "partition \"%s\": the state cannot be encoded as JSON: %s", order[i]->key, err);
            goto cleanup;
        }
        if (i) evs__sb_adds(&sb, ",");
        evs__sb_json_str(&sb, order[i]->key, order[i]->klen);
        evs__sb_adds(&sb, ":");
        evs__sb_add(&sb, js, jl);
        free(js);
    }
    evs__sb_adds(&sb, "}}");
    if (!(res->json = evs__sb_take(&sb, &res->len))) rc = evs__err(EVS_ENOMEM, "out of memory");
    res->partitions = n;
cleanup:
    free(order);
    evs__sb_free(&sb);
    return rc;
}

/* The stored script of projection `name` (malloc'd). */
static int stored_source(evs_bus *b, const char *name, char **src) {
    evs__record rec;
    int rc = evs__record_read(b, name, &rec);
    if (rc) return rc;
    if (rec.kind != EVS__KIND_PROJ || !rec.lua_source) rc = evs__err(EVS_EINVAL, "\"%s\" is not a Lua projection", name);
    else if (!(*src = strdup(rec.lua_source))) rc = evs__err(EVS_ENOMEM, "out of memory");
    evs__record_free(&rec);
    return rc;
}

static int check_inserts(const evs_replay_opts *o, uint64_t bound) {
    for (size_t i = 0; i < o->n_inserts; i++) {
        const evs_replay_insert *in = &o->inserts[i];
        if (!in->stream || !*in->stream || strlen(in->stream) > EVS_MAX_STREAM_NAME)
            return evs__err(EVS_EINVAL, "insert %zu: stream must be 1..%u bytes", i + 1, EVS_MAX_STREAM_NAME);
        if (!in->event_type || !*in->event_type || strlen(in->event_type) > EVS_MAX_TYPE_NAME)
            return evs__err(EVS_EINVAL, "insert %zu: event type must be 1..%u bytes", i + 1, EVS_MAX_TYPE_NAME);
        if (in->after > bound)
            return evs__err(EVS_EINVAL, "insert %zu: after position %llu is past the end of the replay (%llu)", i + 1,
                            (unsigned long long)in->after, (unsigned long long)bound);
    }
    return EVS_OK;
}

int evs_proj_replay(evs_bus *b, const char *name, const char *source, size_t source_len,
                    const evs_replay_opts *opts, evs_replay_result *res) {
    int rc;
    replay r;
    evs_replay_opts def;
    evs_reader *rd = NULL;
    char *stored = NULL;
    memset(&r, 0, sizeof r);
    if (!res) return evs__err(EVS_EINVAL, "proj_replay: res is NULL");
    memset(res, 0, sizeof *res);
    if (!b || (!name && !source)) return evs__err(EVS_EINVAL, "proj_replay: a bus and a name or a source are required");
    if (!opts) {
        memset(&def, 0, sizeof def);
        opts = &def;
    }
    if (opts->partition && strlen(opts->partition) > EVS_MAX_STREAM_NAME)
        return evs__err(EVS_EINVAL, "partition name is over %u bytes", EVS_MAX_STREAM_NAME);
    if (opts->as_of.time < 0) return evs__err(EVS_EINVAL, "as_of time is before 1970");
    if (name && (rc = evs__bus_check_name(name))) return rc;
    r.res = res;
    if (!source) {
        if ((rc = stored_source(b, name, &stored))) return rc;
        source = stored;
        source_len = strlen(stored);
    }
    if ((rc = evs__lua_new(source, source_len, opts->limits, &r.lua, &r.decl))) {
        rc = name ? evs__err_prefix(rc, "projection \"%s\": ", name) : evs__err_prefix(rc, "script: ");
        goto cleanup;
    }
    r.partitioning = r.decl.partitioning;
    uint64_t head = evs_head(b->store);
    uint64_t bound = opts->as_of.position && opts->as_of.position < head ? opts->as_of.position : head;
    if ((rc = check_inserts(opts, bound))) goto cleanup;
    if (opts->n_exclude_positions) {
        if (!(r.excl = malloc(opts->n_exclude_positions * sizeof *r.excl))) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            goto cleanup;
        }
        memcpy(r.excl, opts->exclude_positions, opts->n_exclude_positions * sizeof *r.excl);
        qsort(r.excl, opts->n_exclude_positions, sizeof *r.excl, cmp_u64);
        r.n_excl = opts->n_exclude_positions;
    }
    if (opts->n_inserts) {
        if (!(r.ins = malloc(opts->n_inserts * sizeof *r.ins))) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < opts->n_inserts; i++) r.ins[i] = &opts->inserts[i];
        qsort(r.ins, opts->n_inserts, sizeof *r.ins, cmp_ins);
        r.n_ins = opts->n_inserts;
    }
    evs_filter f = r.decl.filter;
    if (opts->as_of.time) f.until = opts->as_of.time + 1; /* recorded_at <= time */
    uint64_t every = opts->progress_every ? opts->progress_every : REPLAY_PROGRESS_EVERY, tick = every;
    int64_t last_recorded = 0;
    if (bound && (rc = evs_read_all(b->store, 1, EVS_FORWARD, &f, 0, &rd))) goto cleanup;
    while (rd) {
        const evs_event *ev;
        rc = evs_reader_next(rd, &ev);
        if (rc == EVS_ELOST) continue; /* a repaired gap: nothing to fold */
        if (rc == EVS_DONE) break;
        if (rc) goto cleanup;
        if (ev->global_position > bound) break;
        if ((rc = flush_inserts(&r, opts, ev->global_position, last_recorded))) goto cleanup;
        last_recorded = ev->recorded_at;
        res->position = ev->global_position;
        res->events_read++;
        if (excluded(&r, opts, ev)) res->events_excluded++;
        else if ((rc = apply(&r, opts, ev))) goto cleanup;
        if (opts->progress && --tick == 0) {
            tick = every;
            if (opts->progress(opts->progress_ctx, ev->global_position, res->events_read, bound)) {
                rc = evs__err(EVS_EINVAL, "replay stopped by its progress callback at position %llu",
                              (unsigned long long)ev->global_position);
                goto cleanup;
            }
        }
    }
    rc = EVS_OK;
    /* inserts after the last position in range; with a time bound, the last event read */
    uint64_t last = opts->as_of.time ? res->position : bound;
    if ((rc = flush_inserts(&r, opts, last + 1, last_recorded))) goto cleanup;
    if (opts->progress) opts->progress(opts->progress_ctx, res->position, res->events_read, bound);
    rc = encode(&r, name, opts);
cleanup:
    if (rd) evs_reader_close(rd);
    if (r.tab) {
        for (size_t i = 0; i < r.cap; i++) free(r.tab[i].key); /* the refs go with the sandbox */
        free(r.tab);
    }
    evs__lua_free(r.lua);
    evs__lua_decl_free(&r.decl);
    free(r.excl);
    free(r.ins);
    free(stored);
    if (rc) evs_replay_result_free(res);
    return rc;
}

void evs_replay_result_free(evs_replay_result *res) {
    if (!res) return;
    free(res->json);
    res->json = NULL;
    res->len = 0;
}

int evs_as_of_parse(const char *s, size_t len, evs_as_of *out) {
    if (!s || !out) return evs__err(EVS_EINVAL, "as_of_parse: NULL argument");
    memset(out, 0, sizeof *out);
    if (len == 4 && memcmp(s, "head", 4) == 0) return EVS_OK;
    size_t i = 0;
    uint64_t v = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return evs__err(EVS_EINVAL, "as_of \"%.*s\" is out of range", (int)(len > 64 ? 64 : len), s);
        v = v * 10 + (uint64_t)(s[i++] - '0');
    }
    if (len && i == len) {
        if (v == 0) return evs__err(EVS_EINVAL, "as_of position 0 names no event (positions start at 1)");
        out->position = v;
        return EVS_OK;
    }
    int64_t t;
    /* a number of ns would read as a position above: only RFC 3339 text reaches here */
    if (len && evs_time_parse(s, len, &t) == EVS_OK && t > 0) {
        out->time = t;
        return EVS_OK;
    }
    return evs__err(EVS_EINVAL, "as_of \"%.*s\" is neither a global position, \"head\" nor an RFC 3339 time",
                    (int)(len > 64 ? 64 : len), s);
}

/* ------------------------------------------------------------ live state */

static int live_part(void *ctx, const char *part, size_t plen, const char *state, size_t slen) {
    evs__sb *sb = ctx;
    if (sb->len > 1) evs__sb_adds(sb, ",");
    evs__sb_json_str(sb, part, plen);
    evs__sb_adds(sb, ":");
    evs__sb_add(sb, state, slen);
    return 0;
}

int evs_proj_live_json(evs_bus *b, const char *name, char **json, size_t *len, uint64_t *position) {
    if (!json) return evs__err(EVS_EINVAL, "proj_live_json: json is NULL");
    *json = NULL;
    evs__sb sb = {0};
    evs__sb_adds(&sb, "{");
    uint64_t pos = 0;
    int rc = evs_proj_scan(b, name, live_part, &sb, &pos);
    evs__sb_adds(&sb, "}");
    if (!rc && !(*json = evs__sb_take(&sb, len))) rc = evs__err(EVS_ENOMEM, "out of memory");
    if (!rc && position) *position = pos;
    evs__sb_free(&sb);
    return rc;
}

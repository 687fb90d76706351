/*
 * pg_read.c — the PostgreSQL engine's readers, stream info and listing.
 *
 * A reader fetches a page of rows at a time (keyset pagination on the
 * position it stands at, never OFFSET) and serves events as views into
 * the page's PGresult, which stays alive until the next page: the same
 * lifetime evs_reader promises.  It holds no connection between pages, so
 * any number of open readers cost no connections.
 *
 * An $all page is one statement that reads the head row and the events at
 * or below it in the same snapshot.  Appends commit in position order
 * (migrate.c), so a page never shows position n without every position
 * before it: a forward reader (and through it a subscriber) cannot step
 * over an event that commits late.  When a page comes back short, every
 * position up to that head has been examined, and the reader's position
 * moves past the head even when the filter matched nothing there.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "pg/pg_internal.h"

#define PAGE 256
#define MAX_PARAMS 12
/* Read-ahead: range pages in flight at most, and the length (in pages) from which a stream read uses it. */
#define AHEAD 2
#define AHEAD_MIN_PAGES 4

/* The event columns, in the order row_event decodes them. */
#define EVENT_COLS                                                                                                   \
    "e.global_position, e.event_id, e.aggregate_id, e.stream_type, e.stream_position, e.event_type, e.event_version, " \
    "e.event_data, e.metadata, to_json(e.tags)::text AS tags_json, e.causation_id, e.correlation_id, e.occurred_at, "  \
    "e.recorded_at"

/*
 * What the metadata of stream $3 hides, as two values computed once per page
 * (each an InitPlan: one probe of event_stream_metadata's key): the first
 * position it shows and the oldest recorded_at it shows.  They say what
 * EVS_PG_HIDDEN says for one stream (tombstone: nothing; truncate_before;
 * max_count: the last max_count positions up to the version; max_age), but
 * as bounds of the index range instead of a join per row.  PostgreSQL
 * planned the NOT EXISTS as an anti join and guessed most of a stream hidden
 * (12,358 of 99,596 rows shown), so a page of a long stream was one bad
 * estimate away from a sort of the whole stream; with the bounds, the page
 * is the first LIMIT entries of the (aggregate_id, stream_position) index.
 * No metadata: 0 and -infinity.
 */
#define STREAM_FROM                                                                                                 \
    "coalesce((SELECT CASE WHEN m.tombstone THEN 9223372036854775807 "                                              \
    "ELSE greatest(m.truncate_before, s.version - m.max_count + 1) END FROM event_stream_metadata m "              \
    "LEFT JOIN event_streams s ON s.aggregate_id = m.aggregate_id WHERE m.aggregate_id = $3), 0)"
#define STREAM_AGE                                                                                                  \
    "coalesce(statement_timestamp() - (SELECT m.max_age * interval '1 second' FROM event_stream_metadata m "        \
    "WHERE m.aggregate_id = $3), '-infinity')"

typedef struct pg_reader {
    evs_pg *pg;
    int all, dir;
    uint64_t next;           /* the next position a page starts at (stream or global) */
    uint64_t position;       /* evs_reader_position */
    size_t limit, returned;
    int last_page;           /* the page in hand is the last one */
    PGresult *page;
    int row, nrows, col0;    /* col0: 1 when column 0 is the head ($all) */
    evs_event ev;
    char *sql;
    int stmt;                /* the named statement of sql (EVS_PG_Q_*), -1: unnamed */
    int nparams;             /* $1 position, $2 page size, then the filter's */
    /* a forward stream read (fetch_range): pages are ranges of positions up to ra_end, the version the
       stream had at open (the read ends there, as on the embedded engine); a long one has up to AHEAD
       ranges in flight, each on a connection of its own */
    int ranges;              /* 1: this reader reads ranges */
    int ahead;               /* 1: ... and reads them ahead */
    uint64_t ra_end;         /* the last position it reads */
    uint64_t ra_cons;        /* the first position of the next range to hand out */
    int ra_n;                /* ranges in flight: ra_cons, ra_cons + PAGE, ... */
    PGconn *ra_conn[AHEAD];
    char *vals[MAX_PARAMS];
    int lens[MAX_PARAMS], fmts[MAX_PARAMS];
    Oid types[MAX_PARAMS];
} pg_reader;

/* Wait out the ranges in flight and give their connections back. */
static void ahead_drop(pg_reader *r) {
    for (int i = 0; i < r->ra_n; i++) {
        PGresult *x;
        while ((x = PQgetResult(r->ra_conn[i]))) PQclear(x);
        evs__pg_put(r->pg, r->ra_conn[i]);
    }
    r->ra_n = 0;
}

void evs__pg_reader_close(void *p) {
    pg_reader *r = p;
    if (!r) return;
    ahead_drop(r);
    PQclear(r->page);
    for (int i = 0; i < r->nparams; i++) free(r->vals[i]);
    free(r->sql);
    free(r);
}

uint64_t evs__pg_reader_position(const void *p) { return ((const pg_reader *)p)->position; }

static int add_text(pg_reader *r, Oid type, const char *v) {
    if (r->nparams >= MAX_PARAMS) return evs__err(EVS_EINVAL, "postgresql: too many filter parameters");
    int i = r->nparams++;
    if (!(r->vals[i] = strdup(v))) return evs__err(EVS_ENOMEM, "out of memory for a reader");
    r->types[i] = type;
    return EVS_OK;
}

static int add_text_array(pg_reader *r, const char *const *v, size_t n) {
    if (r->nparams >= MAX_PARAMS) return evs__err(EVS_EINVAL, "postgresql: too many filter parameters");
    evs_pgbuf b = {0};
    evs__pg_array_begin(&b, EVS_PG_TEXT, n);
    for (size_t i = 0; i < n; i++) evs__pg_array_elem(&b, v[i] ? v[i] : "", v[i] ? strlen(v[i]) : 0);
    if (b.oom) {
        free(b.p);
        return evs__err(EVS_ENOMEM, "out of memory for a reader");
    }
    int i = r->nparams++;
    r->vals[i] = b.p;
    r->lens[i] = (int)b.len;
    r->fmts[i] = 1;
    r->types[i] = EVS_PG_TEXT_ARRAY;
    return EVS_OK;
}

static int new_reader(evs_pg *pg, int all, int dir, size_t limit, pg_reader **out) {
    *out = NULL; /* written first: GCC -O3 cannot tell that evs__err() returns non-zero */
    pg_reader *r = calloc(1, sizeof *r);
    if (!r) return evs__err(EVS_ENOMEM, "out of memory for a reader");
    r->pg = pg, r->all = all, r->dir = dir, r->limit = limit, r->stmt = -1;
    /* $1 and $2 are set before each page */
    int rc;
    if ((rc = add_text(r, EVS_PG_INT8, "0")) || (rc = add_text(r, EVS_PG_INT8, "0"))) {
        evs__pg_reader_close(r);
        return rc;
    }
    *out = r;
    return EVS_OK;
}

/*
 * Forward stream reads.  A stream's positions have no gaps and what its
 * metadata hides is always a prefix, so the pages of a read up to the
 * version seen at open are known ranges of positions, and a page that
 * shows nothing is not the end (the metadata came to hide it during the
 * read).  A long read (W4, an aggregate's load, a catch-up) reads them
 * ahead: one backend answering one page at a time left the client and the
 * second core idle, and the backend's work per row (index, heap, send)
 * cannot be cut much; so the reader sends the next AHEAD ranges at once,
 * each on a connection of its own, and the backends fill them while the
 * caller consumes the page in hand.  Connections come only from the pool's
 * spare half (evs__pg_try_get); without one a range is read when needed.
 */
static const char RANGE_SQL[] =
    "SELECT " EVENT_COLS " FROM event_store e WHERE e.aggregate_id = $3 AND e.stream_position >= $1 AND "
    "e.stream_position < $1 + $2 AND e.stream_position >= " STREAM_FROM " AND e.recorded_at >= " STREAM_AGE
    " ORDER BY e.stream_position LIMIT $2";

/* Set $1 = from and $2 = size. */
static int set_page(pg_reader *r, uint64_t from, size_t size) {
    char a[24], b[24];
    snprintf(a, sizeof a, "%llu", (unsigned long long)(from > INT64_MAX ? INT64_MAX : from));
    snprintf(b, sizeof b, "%zu", size);
    free(r->vals[0]);
    free(r->vals[1]);
    r->vals[0] = strdup(a);
    r->vals[1] = strdup(b);
    if (!r->vals[0] || !r->vals[1]) return evs__err(EVS_ENOMEM, "out of memory for a reader");
    return EVS_OK;
}

/* The positions of the range at from: a page, less at the end. */
static size_t range_len(const pg_reader *r, uint64_t from) {
    return from > r->ra_end ? 0 : r->ra_end - from + 1 < PAGE ? (size_t)(r->ra_end - from + 1) : PAGE;
}

/* Send the ranges after those in flight, while there are ranges to read and connections to spare. */
static void ahead_fill(pg_reader *r) {
    while (r->ahead && r->ra_n < AHEAD) {
        uint64_t from = r->ra_cons + (uint64_t)r->ra_n * PAGE;
        size_t len = range_len(r, from);
        PGconn *c;
        if (!len || set_page(r, from, len) || evs__pg_try_get(r->pg, &c)) return;
        if (!evs__pg_send_named(c, EVS_PG_Q_STREAM_RANGE, RANGE_SQL, r->nparams, r->types,
                                (const char *const *)r->vals, r->lens, r->fmts, 1)) {
            evs__pg_put(r->pg, c); /* its error goes with it; the range is read when needed */
            return;
        }
        r->ra_conn[r->ra_n++] = c;
    }
}

/* The page of the range at r->ra_cons (there is one): from the first connection in flight, or read now. */
static int fetch_range(pg_reader *r) {
    PQclear(r->page);
    r->page = NULL;
    size_t len = range_len(r, r->ra_cons);
    if (!r->ra_n) ahead_fill(r);
    if (r->ra_n) {
        PGconn *c = r->ra_conn[0];
        PGresult *x, *got = PQgetResult(c);
        while ((x = PQgetResult(c))) PQclear(x);
        evs__pg_put(r->pg, c);
        memmove(r->ra_conn, r->ra_conn + 1, (size_t)--r->ra_n * sizeof r->ra_conn[0]);
        if (PQresultStatus(got) == PGRES_TUPLES_OK) r->page = got;
        else PQclear(got); /* a broken connection, a statement to prepare again: the query below handles both */
    }
    if (!r->page) {
        /* no more positions than the limit leaves (a range in flight has no limit: ahead reads have none) */
        if (r->limit && r->limit - r->returned < len) len = r->limit - r->returned;
        int rc = set_page(r, r->ra_cons, len);
        if (!rc)
            rc = evs__pg_query_named(r->pg, EVS_PG_Q_STREAM_RANGE, RANGE_SQL, r->nparams, r->types,
                                     (const char *const *)r->vals, r->lens, r->fmts, 1, "postgresql: read", &r->page);
        if (rc) {
            ahead_drop(r);
            return rc;
        }
    }
    r->ra_cons += len;
    ahead_fill(r); /* the backends work on the next ranges while the caller consumes this one */
    r->row = 0;
    r->nrows = PQntuples(r->page);
    r->last_page = r->ra_cons > r->ra_end;
    return EVS_OK;
}

/* Run the reader's query for the page starting at r->next. */
static int fetch(pg_reader *r) {
    if (r->ranges) return fetch_range(r);
    size_t want = PAGE;
    if (r->limit && r->limit - r->returned < want) want = r->limit - r->returned;
    int rc = set_page(r, r->next, want);
    if (rc) return rc;
    PQclear(r->page);
    r->page = NULL;
    rc = r->stmt >= 0 ? evs__pg_query_named(r->pg, r->stmt, r->sql, r->nparams, r->types,
                                                 (const char *const *)r->vals, r->lens, r->fmts, 1, "postgresql: read",
                                                 &r->page)
                          : evs__pg_query(r->pg, r->sql, r->nparams, r->types, (const char *const *)r->vals, r->lens,
                                          r->fmts, 1, "postgresql: read", &r->page);
    if (rc) return rc;
    r->row = 0;
    r->nrows = PQntuples(r->page);
    /* an $all page with nothing in range is one row of NULL event columns */
    if (r->col0 && r->nrows == 1 && PQgetisnull(r->page, 0, 1)) r->nrows = 0;
    r->last_page = (size_t)r->nrows < want;
    return EVS_OK;
}

static void row_event(pg_reader *r, int row) {
    PGresult *p = r->page;
    int c = r->col0;
    evs_event *e = &r->ev;
    memset(e, 0, sizeof *e);
    e->global_position = evs__pg_be64(PQgetvalue(p, row, c + 0));
    memcpy(e->event_id.b, PQgetvalue(p, row, c + 1), 16);
    e->stream = PQgetvalue(p, row, c + 2);
    e->stream_len = (size_t)PQgetlength(p, row, c + 2);
    e->stream_type = PQgetvalue(p, row, c + 3);
    e->stream_type_len = (size_t)PQgetlength(p, row, c + 3);
    e->stream_position = evs__pg_be64(PQgetvalue(p, row, c + 4));
    e->event_type = PQgetvalue(p, row, c + 5);
    e->event_type_len = (size_t)PQgetlength(p, row, c + 5);
    e->event_version = evs__pg_be32(PQgetvalue(p, row, c + 6));
    e->data = PQgetvalue(p, row, c + 7);
    e->data_len = (size_t)PQgetlength(p, row, c + 7);
    e->metadata = PQgetvalue(p, row, c + 8);
    e->metadata_len = (size_t)PQgetlength(p, row, c + 8);
    if (!PQgetisnull(p, row, c + 9)) {
        e->tags = PQgetvalue(p, row, c + 9);
        e->tags_len = (size_t)PQgetlength(p, row, c + 9);
    }
    if ((e->has_causation_id = !PQgetisnull(p, row, c + 10))) memcpy(e->causation_id.b, PQgetvalue(p, row, c + 10), 16);
    if ((e->has_correlation_id = !PQgetisnull(p, row, c + 11)))
        memcpy(e->correlation_id.b, PQgetvalue(p, row, c + 11), 16);
    e->occurred_at = evs__pg_ts_ns(PQgetvalue(p, row, c + 12));
    e->recorded_at = evs__pg_ts_ns(PQgetvalue(p, row, c + 13));
}

int evs__pg_reader_next(void *p, const evs_event **ev) {
    pg_reader *r = p;
    *ev = NULL;
    if (r->limit && r->returned >= r->limit) return EVS_DONE;
    while (r->row >= r->nrows) {
        if (r->page && r->last_page) return EVS_DONE;
        if (r->ranges && r->ra_cons > r->ra_end) return EVS_DONE;
        if (r->dir == EVS_BACKWARD && r->next == 0) return EVS_DONE;
        int rc = fetch(r);
        if (rc) return rc;
        /* a range with nothing shown is not the end: the metadata came to hide it during the read */
        if (r->nrows == 0 && !r->ranges) {
            /* everything up to the page's head was examined (an $all read) */
            if (r->all && r->dir == EVS_FORWARD && !PQgetisnull(r->page, 0, 0)) {
                uint64_t h = evs__pg_be64(PQgetvalue(r->page, 0, 0));
                if (h + 1 > r->position) r->position = h + 1;
            }
            if (r->all && r->dir == EVS_BACKWARD) r->position = 0;
            return EVS_DONE;
        }
    }
    row_event(r, r->row++);
    uint64_t at = r->all ? r->ev.global_position : r->ev.stream_position;
    r->next = r->dir == EVS_FORWARD ? at + 1 : at - 1;
    r->position = r->next;
    /* the last row of a short $all page: the reader has examined up to the head */
    if (r->all && r->dir == EVS_FORWARD && r->row == r->nrows && r->last_page) {
        uint64_t h = evs__pg_be64(PQgetvalue(r->page, 0, 0));
        if ((!r->limit || r->returned + 1 < r->limit) && h + 1 > r->position) r->position = h + 1;
    }
    r->returned++;
    *ev = &r->ev;
    return EVS_OK;
}

static int stream_row(evs_pg *pg, const char *stream, evs_stream_info *out, evs_stream_metadata *hide, int *dstate);

int evs__pg_read_stream(void *e, const char *stream, uint64_t from, int direction, size_t limit, void **out) {
    evs_pg *pg = e;
    pg_reader *r;
    evs_stream_info info;
    evs_stream_metadata hide = {0};
    int dstate = 0;
    int rc = stream_row(pg, stream, &info, &hide, &dstate);
    if (rc) return rc;
    if (dstate) return evs__err(EVS_ENOTFOUND, "stream \"%s\" not found (%s)", stream, dstate == 2 ? "hard-deleted" : "deleted");
    if ((rc = new_reader(pg, 0, direction, limit, &r))) return rc;
    if ((rc = add_text(r, EVS_PG_TEXT, stream))) goto fail;
    /* what the stream's metadata hides is left out by the query (max_age needs the time of the page);
       forward reads run RANGE_SQL */
    if (direction == EVS_BACKWARD &&
        !(r->sql = strdup("SELECT " EVENT_COLS " FROM event_store e WHERE e.aggregate_id = $3 AND "
                          "e.stream_position <= $1 AND e.stream_position >= " STREAM_FROM " AND e.recorded_at >= "
                          STREAM_AGE " ORDER BY e.stream_position DESC LIMIT $2"))) {
        rc = evs__err(EVS_ENOMEM, "out of memory for a reader");
        goto fail;
    }
    r->stmt = EVS_PG_Q_STREAM_BWD;
    if (direction == EVS_FORWARD) {
        /* start at the first event the metadata shows rather than skip the hidden ones row by row */
        r->next = from ? from : 1;
        if (r->next < hide.truncate_before) r->next = hide.truncate_before;
        if (hide.max_count >= 0 && info.version > (uint64_t)hide.max_count &&
            r->next < info.version - (uint64_t)hide.max_count + 1)
            r->next = info.version - (uint64_t)hide.max_count + 1;
        /* the read ends at the version now; a long one (and no small limit) reads ahead */
        r->ranges = 1;
        r->ra_end = info.version;
        r->ra_cons = r->next;
        r->ahead = r->next <= info.version && info.version - r->next + 1 >= (uint64_t)AHEAD_MIN_PAGES * PAGE &&
                   (!limit || limit >= (size_t)AHEAD_MIN_PAGES * PAGE);
    } else {
        r->next = from > info.version ? info.version : from;
    }
    r->position = r->next;
    *out = r;
    return EVS_OK;
fail:
    evs__pg_reader_close(r);
    return rc;
}

/* recorded_at is stored in µs: the first µs whose ns value is >= ns */
static int64_t ceil_us(int64_t ns) { return ns >= 0 ? (ns + 999) / 1000 : ns / 1000; }

int evs__pg_read_all(void *e, uint64_t from, int direction, const evs_filter *f, size_t limit, void **out) {
    evs_pg *pg = e;
    pg_reader *r;
    int rc = new_reader(pg, 1, direction, limit, &r);
    if (rc) return rc;
    r->col0 = 1;
    char where[1024] = "";
    size_t w = 0;
#define COND(...) w += (size_t)snprintf(where + w, sizeof where - w, __VA_ARGS__)
    if (f) {
        char b[37], num[24];
        if (f->n_event_types) {
            if ((rc = add_text_array(r, f->event_types, f->n_event_types))) goto fail;
            COND(" AND e.event_type = ANY ($%d)", r->nparams);
        }
        if (f->stream_type) {
            if ((rc = add_text(r, EVS_PG_TEXT, f->stream_type))) goto fail;
            COND(" AND e.stream_type = $%d", r->nparams);
        }
        if (f->stream_prefix && *f->stream_prefix) {
            if ((rc = add_text(r, EVS_PG_TEXT, f->stream_prefix))) goto fail;
            COND(" AND starts_with(e.aggregate_id, $%d)", r->nparams);
        }
        if (f->correlation_id) {
            evs_uuid_format(f->correlation_id, b);
            if ((rc = add_text(r, EVS_PG_UUID, b))) goto fail;
            COND(" AND e.correlation_id = $%d", r->nparams);
        }
        if (f->causation_id) {
            evs_uuid_format(f->causation_id, b);
            if ((rc = add_text(r, EVS_PG_UUID, b))) goto fail;
            COND(" AND e.causation_id = $%d", r->nparams);
        }
        if (f->since) {
            snprintf(num, sizeof num, "%lld", (long long)ceil_us(f->since));
            if ((rc = add_text(r, EVS_PG_INT8, num))) goto fail;
            COND(" AND e.recorded_at >= to_timestamp($%d::double precision / 1e6)", r->nparams);
        }
        if (f->until) {
            snprintf(num, sizeof num, "%lld", (long long)ceil_us(f->until));
            if ((rc = add_text(r, EVS_PG_INT8, num))) goto fail;
            COND(" AND e.recorded_at < to_timestamp($%d::double precision / 1e6)", r->nparams);
        }
        if (f->n_tags) { /* checked by the store (evs__filter_check) */
            if ((rc = add_text_array(r, f->tags, f->n_tags))) goto fail;
            COND(" AND e.tags %s $%d", f->tag_match == EVS_TAGS_ALL ? "@>" : "&&", r->nparams);
        }
    }
#undef COND
    if (w >= sizeof where) {
        rc = evs__err(EVS_EINVAL, "filter: too many conditions");
        goto fail;
    }
    const char *cmp = direction == EVS_FORWARD ? ">=" : "<=";
    const char *order = direction == EVS_FORWARD ? "" : " DESC";
    size_t cap = strlen(where) + 1024;
    if (!(r->sql = malloc(cap))) {
        rc = evs__err(EVS_ENOMEM, "out of memory for a reader");
        goto fail;
    }
    snprintf(r->sql, cap,
             "SELECT h.global_position AS head, e.* FROM event_store_head h LEFT JOIN LATERAL (SELECT " EVENT_COLS
             " FROM event_store e WHERE e.global_position %s $1 AND e.global_position <= h.global_position%s "
             "AND NOT " EVS_PG_HIDDEN " ORDER BY e.global_position%s LIMIT $2) e ON true WHERE h.id = 1",
             cmp, where, order);
    /* without a filter the text is one of two: prepared once per connection.  A filter's plan depends on its
       values (a rare event type takes its index, a common one the global order), so those keep a plan each */
    if (!w) r->stmt = direction == EVS_FORWARD ? EVS_PG_Q_ALL_FWD : EVS_PG_Q_ALL_BWD;
    if (direction == EVS_FORWARD) r->next = from ? from : 1;
    else r->next = from;
    r->position = r->next;
    *out = r;
    return EVS_OK;
fail:
    evs__pg_reader_close(r);
    return rc;
}

/* ------------------------------------------------------------- streams */

#define STREAM_COLS \
    "aggregate_id, stream_type, version, first_global_position, last_global_position, created_at, updated_at"

static void row_info(const PGresult *p, int row, evs_stream_info *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", PQgetvalue(p, row, 0));
    snprintf(out->stream_type, sizeof out->stream_type, "%s", PQgetvalue(p, row, 1));
    out->version = evs__pg_be64(PQgetvalue(p, row, 2));
    out->first_global_position = evs__pg_be64(PQgetvalue(p, row, 3));
    out->last_global_position = evs__pg_be64(PQgetvalue(p, row, 4));
    out->created_at = evs__pg_ts_ns(PQgetvalue(p, row, 5));
    out->updated_at = evs__pg_ts_ns(PQgetvalue(p, row, 6));
}

/* A deleted stream: its metadata's truncate_before lies past its version (soft) or it has a tombstone. */
#define DELETED_COND "(m.tombstone OR m.truncate_before > s.version)"

/*
 * The stream's row and what its metadata hides: *dstate 0 shown, 1 soft-
 * deleted, 2 hard-deleted.  EVS_ENOTFOUND when the stream has no events.
 */
static int stream_row(evs_pg *pg, const char *stream, evs_stream_info *out, evs_stream_metadata *hide, int *dstate) {
    const char *vals[1] = {stream};
    PGresult *r;
    int rc = evs__pg_query(pg,
                           "SELECT " STREAM_COLS ", m.truncate_before, m.max_count, m.tombstone FROM event_streams s "
                           "LEFT JOIN event_stream_metadata m USING (aggregate_id) WHERE s.aggregate_id = $1",
                           1, NULL, vals, NULL, NULL, 1, "postgresql: stream info", &r);
    if (rc) return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return evs__err(EVS_ENOTFOUND, "stream \"%s\" not found", stream);
    }
    row_info(r, 0, out);
    hide->truncate_before = PQgetisnull(r, 0, 7) ? 0 : evs__pg_be64(PQgetvalue(r, 0, 7));
    hide->max_count = PQgetisnull(r, 0, 8) ? -1 : (int64_t)evs__pg_be64(PQgetvalue(r, 0, 8));
    hide->tombstone = !PQgetisnull(r, 0, 9) && PQgetvalue(r, 0, 9)[0];
    hide->max_age = -1;
    *dstate = hide->tombstone ? 2 : hide->truncate_before > out->version ? 1 : 0;
    PQclear(r);
    return EVS_OK;
}

int evs__pg_stream_info(void *e, const char *stream, evs_stream_info *out) {
    evs_stream_metadata hide = {0};
    int dstate = 0;
    int rc = stream_row(e, stream, out, &hide, &dstate);
    if (!rc && dstate) {
        memset(out, 0, sizeof *out);
        rc = evs__err(EVS_ENOTFOUND, "stream \"%s\" not found (deleted)", stream);
    }
    return rc;
}

int evs__pg_list_streams(void *e, const char *prefix, const char *after, evs_stream_info *out, size_t max,
                         size_t *count) {
    evs_pg *pg = e;
    if (!count || (max && !out)) return evs__err(EVS_EINVAL, "list: NULL argument");
    *count = 0;
    if (!max) return EVS_OK;
    char lim[24];
    snprintf(lim, sizeof lim, "%zu", max);
    const char *vals[3] = {prefix ? prefix : "", after, lim};
    PGresult *r;
    int rc = evs__pg_query(pg,
                           "SELECT " STREAM_COLS " FROM event_streams s WHERE starts_with(aggregate_id, $1) AND "
                           "($2::text IS NULL OR aggregate_id > $2) AND NOT EXISTS (SELECT 1 FROM "
                           "event_stream_metadata m WHERE m.aggregate_id = s.aggregate_id AND " DELETED_COND ") "
                           "ORDER BY aggregate_id LIMIT $3::bigint",
                           3, NULL, vals, NULL, NULL, 1, "postgresql: list streams", &r);
    if (rc) return rc;
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) row_info(r, i, &out[i]);
    *count = (size_t)n;
    PQclear(r);
    return rc;
}

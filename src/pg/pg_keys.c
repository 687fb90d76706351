/*
 * pg_keys.c — the subject keys of crypto-shredding on the PostgreSQL
 * engine: the engine table's key_get, key_forget, key_master and
 * key_generation (engine/engine.h).  src/store/keystore.c does everything
 * cryptographic (it wraps and unwraps keys with the master key, which never
 * reaches the database); this file only keeps the wrapped bytes in the
 * tables of migration 6 (migrate.c): evs_subject_keys and
 * evs_subject_master.
 *
 * One key per subject across servers: creation is one call of the SQL
 * function evs_subject_key, an INSERT ... ON CONFLICT DO NOTHING and then a
 * read of the row that won.  A forget (evs_forget_subject) sets the wrapped
 * key to NULL and NOTIFYs EVS_PG_KEYS_CHANNEL at commit; pg.c's listener
 * raises pg->keys_gen on each such notification and on each reconnect (a
 * notification may have been lost while it was away), and the key store
 * drops its cached keys when the generation moves (keystore.c bounds a
 * cached key's life besides).
 *
 * Every statement here may run twice (evs__pg_query retries on a broken
 * connection): creating is idempotent (the second run reads the first's
 * row), forgetting a forgotten subject changes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "evstore_crypt.h"
#include "pg/pg_internal.h"

static void subject_copy(const char *subject, size_t n, char out[EVS_MAX_SUBJECT + 1]) {
    memcpy(out, subject, n);
    out[n] = '\0';
}

/* A binary bytea value of row 0, column col into out (cap bytes): its length, or EVS_ECORRUPT when too long. */
static int bytes_out(const PGresult *r, int col, const char *what, uint8_t *out, size_t cap, size_t *out_len) {
    size_t n = (size_t)PQgetlength(r, 0, col);
    if (n > cap) return evs__err(EVS_ECORRUPT, "postgresql: %s holds %zu bytes, more than the %zu expected", what, n, cap);
    memcpy(out, PQgetvalue(r, 0, col), n);
    *out_len = n;
    return EVS_OK;
}

int evs__pg_key_get(void *e, const char *subject, size_t n, const uint8_t *create, size_t create_len, int *state,
                    uint8_t *out, size_t cap, size_t *out_len) {
    evs_pg *pg = e;
    char subj[EVS_MAX_SUBJECT + 1];
    if (n == 0 || n > EVS_MAX_SUBJECT) return evs__err(EVS_EINVAL, "subject must be 1..%u bytes", EVS_MAX_SUBJECT);
    subject_copy(subject, n, subj);
    const char *vals[2] = {subj, (const char *)create};
    int lens[2] = {0, (int)create_len}, fmts[2] = {0, 1};
    PGresult *r;
    *state = EVS_SUBJECT_NONE;
    *out_len = 0;
    int rc = evs__pg_query(pg, "SELECT o_state, o_wrapped FROM evs_subject_key($1, $2)", 2, NULL, vals, lens, fmts,
                           1, "postgresql: subject key", &r);
    if (rc) return rc;
    if (PQntuples(r) == 1) {
        uint32_t st = evs__pg_be32(PQgetvalue(r, 0, 0));
        if (st == EVS_SUBJECT_LIVE && !PQgetisnull(r, 0, 1)) {
            rc = bytes_out(r, 1, "a wrapped subject key", out, cap, out_len);
            if (!rc) *state = EVS_SUBJECT_LIVE;
        } else if (st == EVS_SUBJECT_FORGOTTEN) {
            *state = EVS_SUBJECT_FORGOTTEN;
        } else {
            rc = evs__err(EVS_ECORRUPT, "postgresql: evs_subject_keys: subject \"%s\" has state %u", subj, st);
        }
    }
    PQclear(r);
    return rc;
}

int evs__pg_key_forget(void *e, const char *subject, size_t n) {
    evs_pg *pg = e;
    char subj[EVS_MAX_SUBJECT + 1];
    if (n == 0 || n > EVS_MAX_SUBJECT) return evs__err(EVS_EINVAL, "subject must be 1..%u bytes", EVS_MAX_SUBJECT);
    subject_copy(subject, n, subj);
    const char *vals[1] = {subj};
    PGresult *r;
    int rc = evs__pg_query(pg, "SELECT evs_forget_subject($1)", 1, NULL, vals, NULL, NULL, 0,
                           "postgresql: forget a subject", &r);
    if (rc) return rc;
    int found = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!found) return evs__err(EVS_ENOTFOUND, "subject \"%s\" has no key (nothing was encrypted under it)", subj);
    return EVS_OK;
}

int evs__pg_key_master(void *e, const uint8_t *check, size_t len, uint8_t *out, size_t cap, size_t *out_len) {
    evs_pg *pg = e;
    const char *vals[1] = {(const char *)check};
    int lens[1] = {(int)len}, fmts[1] = {1};
    PGresult *r;
    *out_len = 0;
    int rc = evs__pg_query(pg, "SELECT evs_subject_master_check($1)", 1, NULL, vals, lens, fmts, 1,
                           "postgresql: the master key's check", &r);
    if (rc) return rc;
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) rc = bytes_out(r, 0, "evs_subject_master", out, cap, out_len);
    PQclear(r);
    return rc;
}

uint64_t evs__pg_key_generation(void *e) { return atomic_load(&((evs_pg *)e)->keys_gen); }

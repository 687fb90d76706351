/*
 * conformance.h — the storage-engine fixture of the conformance suite
 * (tests/unit/test_conformance*.c): one suite of the store's behaviour,
 * written against the public API only, run once per engine.
 *
 * The engine comes from the command line: no argument (or "embedded") runs
 * on a fresh directory per store; "postgresql" runs on a fresh database
 * per store in the private cluster that tests/pg_cluster.py started (its
 * state file is named by EVS_PG_STATE; CMakeLists.txt registers each suite
 * a second time with that argument and the fixture "pg_cluster").  Without
 * a cluster the PostgreSQL run exits 77 (skipped), saying why.
 */
#ifndef EVS_CONFORMANCE_H
#define EVS_CONFORMANCE_H

#include <libpq-fe.h>

#include "testutil.h"

static int cf_pg;               /* 1: the PostgreSQL engine */
static char cf_base[512];       /* the cluster's URL (database "postgres") */
static int cf_seq;

static inline const char *cf_engine(void) { return cf_pg ? "postgresql" : "embedded"; }

/* Pick the engine from argv; exit 77 when PostgreSQL is asked for but not there. */
static void cf_init(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "embedded")) return;
    if (strcmp(argv[1], "postgresql") != 0) {
        fprintf(stderr, "usage: %s [embedded|postgresql]\n", argv[0]);
        exit(2);
    }
    cf_pg = 1;
    const char *st = getenv("EVS_PG_STATE");
    FILE *f = st ? fopen(st, "r") : NULL;
    char buf[2048] = "";
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    const char *u = strstr(buf, "\"url\": \"");
    if (!u) {
        fprintf(stderr, "skipped: no PostgreSQL cluster (EVS_PG_STATE=%s; tests/pg_cluster.py start it)\n",
                st ? st : "(unset)");
        exit(77);
    }
    u += 8;
    const char *end = strchr(u, '"');
    snprintf(cf_base, sizeof cf_base, "%.*s", (int)(end - u), u);
}

static void cf_sql(const char *sql) {
    PGconn *c = PQconnectdb(cf_base);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
        exit(2);
    }
    PQclear(r);
    PQfinish(c);
}

/* Where a fresh store lives: a new directory, or a new database.  Free with cf_drop. */
static char *cf_fresh(const char *tag) {
    if (!cf_pg) return tu_tempdir(tag);
    char db[64], sql[128];
    snprintf(db, sizeof db, "evs_%s_%d_%d", tag, (int)getpid(), ++cf_seq);
    for (char *p = db; *p; p++)
        if (*p == '-') *p = '_';
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
    cf_sql(sql);
    char *url = malloc(600);
    const char *slash = strrchr(cf_base, '/');
    snprintf(url, 600, "%.*s/%s", (int)(slash - cf_base), cf_base, db);
    return url;
}

/* Remove what cf_fresh made (the store must be closed). */
static void cf_drop(char *where) {
    if (!cf_pg) {
        tu_rmrf(where);
    } else {
        char sql[160];
        snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", strrchr(where, '/') + 1);
        cf_sql(sql);
    }
    free(where);
}

/* Open (creating) the store at where; exits on failure. */
static inline evs_store *cf_open(const char *where) {
    evs_store *s = NULL;
    if (evs_store_create(&s) || evs_store_set_durability(s, EVS_DURABILITY_BATCH, 5) ||
        evs_store_open(s, where, EVS_OPEN_CREATE)) {
        fprintf(stderr, "cannot open store %s: %s\n", where, evs_errmsg());
        exit(2);
    }
    return s;
}

#endif

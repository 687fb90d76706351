/*
 * test_keys.c — the API-key store (src/auth/keys.c): create, verify,
 * revoke; the keys written whole and re-read by another keystore; grants
 * and roles; a bad secret or keys document refused with a message naming
 * where and the fault (and nothing changed); and that verification
 * compares hashes with libsodium's constant-time crypto_verify_32 for
 * every key presented, known id or not.
 *
 * One suite for both engines (conformance.h): embedded, the keys are the
 * files of the store directory; with "postgresql", rows of the store's
 * database (evs_bus_kv db 40 and 41), and the second keystore opened on
 * the URL stands for another server or the CLI: a key it revokes is
 * refused by the first once EVS__KEYS_RECHECK_NS has passed, without
 * anything else telling it.
 *
 * EVS_WRAP: crypto_verify_32
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/keys.h"
#include "conformance.h"
#include "core/core.h"

/* Every call of crypto_verify_32 from the library comes here first. */
int __real_crypto_verify_32(const unsigned char *x, const unsigned char *y);
int __wrap_crypto_verify_32(const unsigned char *x, const unsigned char *y);
static _Atomic int verify_calls; /* atomic: test_threads verifies from several threads */
int __wrap_crypto_verify_32(const unsigned char *x, const unsigned char *y) {
    verify_calls++;
    return __real_crypto_verify_32(x, y);
}

static void put_file(const char *dir, const char *name, const char *text, size_t n, mode_t mode) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    FILE *f = fopen(path, "w");
    if (!f || fwrite(text, 1, n, f) != n || fclose(f)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    chmod(path, mode);
}

/* The file's bytes (NUL-terminated, *n their number), NULL when there is none.  The caller frees. */
static char *slurp(const char *dir, const char *name, size_t *n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *b = calloc(1, 1 << 16);
    *n = fread(b, 1, (1 << 16) - 1, f);
    fclose(f);
    return b;
}

/* PostgreSQL: run sql on the store's database with params (the last one binary when bin is set). */
static PGresult *pg_run(const char *url, const char *sql, int n, const char *const *vals, const int *lens, int bin) {
    PGconn *c = PQconnectdb(url);
    int fmts[3] = {0, 0, bin};
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, lens, fmts, 1);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
        exit(2);
    }
    PQfinish(c);
    return r;
}

/* What is stored under name: keys.json or keys.secret in the directory, or the row of evs_bus_kv that holds
   it (db 40 "keys.json", db 41 "secret").  NULL when there is none; the caller frees. */
static char *stored(const char *where, const char *name, size_t *n) {
    *n = 0;
    if (!cf_pg) return slurp(where, strcmp(name, "secret") == 0 ? "keys.secret" : name, n);
    const char *vals[2] = {strcmp(name, "secret") == 0 ? "41" : "40", name};
    PGresult *r = pg_run(where, "SELECT v FROM evs_bus_kv WHERE db = $1::smallint AND k = convert_to($2, 'UTF8')", 2,
                         vals, NULL, 0);
    char *b = NULL;
    if (PQntuples(r) == 1) {
        *n = (size_t)PQgetlength(r, 0, 0);
        b = calloc(1, *n + 1);
        memcpy(b, PQgetvalue(r, 0, 0), *n);
    }
    PQclear(r);
    return b;
}

/* Replace what is stored under name (as above) with n bytes of text, behind the keystores' backs; on
   PostgreSQL the generation moves too, as a writer's would, so a keystore reads it again. */
static void put_stored(const char *where, const char *name, const char *text, size_t n, mode_t mode) {
    if (!cf_pg) {
        put_file(where, strcmp(name, "secret") == 0 ? "keys.secret" : name, text, n, mode);
        return;
    }
    const char *vals[3] = {strcmp(name, "secret") == 0 ? "41" : "40", name, text};
    int lens[3] = {0, 0, (int)n};
    PQclear(pg_run(where,
                   "INSERT INTO evs_bus_kv VALUES ($1::smallint, convert_to($2, 'UTF8'), $3) "
                   "ON CONFLICT (db, k) DO UPDATE SET v = EXCLUDED.v",
                   3, vals, lens, 1));
    PQclear(pg_run(where,
                   "INSERT INTO evs_bus_kv VALUES (41, 'gen', "
                   "int8send((extract(epoch FROM clock_timestamp()) * 1000000)::bigint)) "
                   "ON CONFLICT (db, k) DO UPDATE SET v = EXCLUDED.v",
                   0, NULL, NULL, 0));
}

/* Remove what is stored under name. */
static void del_stored(const char *where, const char *name) {
    if (!cf_pg) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", where, name);
        unlink(path);
        return;
    }
    const char *vals[1] = {name};
    PQclear(pg_run(where, "DELETE FROM evs_bus_kv WHERE db = 40 AND k = convert_to($1, 'UTF8')", 1, vals, NULL, 0));
}

/* Long enough for a keystore to have compared the stored keys again (PostgreSQL; files are compared on
   every call). */
static void wait_recheck(void) {
    if (cf_pg) usleep((useconds_t)(EVS__KEYS_RECHECK_NS / 1000 + 50000));
}

/* The server's keystore: on its open store, as `evstore serve` opens it. */
static evs__keystore *open_server(const char *where, evs_store **s) {
    *s = cf_open(where);
    evs__keystore *ks = NULL;
    CHECK_RC(evs__keys_open_store(*s, 1, &ks), EVS_OK);
    if (!ks) exit(2);
    return ks;
}

static void close_server(evs__keystore *ks, evs_store *s) {
    evs__keys_close(ks);
    CHECK_RC(evs_store_close(s), EVS_OK);
}

static void test_create_verify_revoke(void) {
    char *where = cf_fresh("keys");
    evs_store *s;
    evs__keystore *ks = open_server(where, &s);
    CHECK_INT(evs__keys_active(ks), 0);
    char key[EVS_KEY_TEXT_MAX];
    json_t *info = NULL;
    CHECK_RC(evs__keys_create(ks, "writer", NULL, 0, "ci", key, sizeof key, &info), EVS_OK);
    CHECK_INT(strlen(key), 4 + 12 + 1 + 43);
    CHECK(strncmp(key, "evs_", 4) == 0);
    const char *id = json_string_value(json_object_get(info, "id"));
    CHECK(id && strncmp(key + 4, id, 12) == 0);
    CHECK(json_object_get(info, "hash") == NULL);
    CHECK_STR(json_string_value(json_object_get(info, "name")), "ci");
    char idc[16];
    snprintf(idc, sizeof idc, "%s", id);
    json_decref(info);

    /* the secret is stored nowhere, only its hash */
    size_t n;
    char *doc = stored(where, "keys.json", &n);
    CHECK(doc != NULL);
    CHECK(doc && strstr(doc, key + 17) == NULL);
    CHECK_CONTAINS(doc ? doc : "", "\"hash\"");
    free(doc);
    free(stored(where, "secret", &n));
    CHECK_INT(n, 32);
    if (!cf_pg) {
        struct stat st;
        char sp[4200];
        snprintf(sp, sizeof sp, "%s/keys.secret", where);
        CHECK(stat(sp, &st) == 0);
        CHECK_INT(st.st_mode & 0777, 0600);
    }
    /* and none of it is an event: nothing to read through the event API */
    CHECK_INT(evs_head(s), 0);

    evs__principal *who = NULL;
    int before = verify_calls;
    CHECK_INT(evs__keys_verify(ks, key, &who), EVS_AUTH_OK);
    CHECK_INT(verify_calls, before + 1);
    CHECK(who != NULL);
    CHECK_STR(who->id, idc);
    CHECK(evs__principal_allows_all(who, EVS_PERM_APPEND));
    CHECK(evs__principal_allows_all(who, EVS_PERM_SUBSCRIBE));
    CHECK(!evs__principal_allows_any(who, EVS_PERM_ADMIN));

    /* one changed character of the secret: unknown, still one constant-time compare */
    char bad[EVS_KEY_TEXT_MAX];
    snprintf(bad, sizeof bad, "%s", key);
    bad[30] = bad[30] == 'A' ? 'B' : 'A';
    evs__principal *none = NULL;
    before = verify_calls;
    CHECK_INT(evs__keys_verify(ks, bad, &none), EVS_AUTH_UNKNOWN);
    CHECK_INT(verify_calls, before + 1);
    CHECK(none == NULL);
    /* an id that does not exist costs the same compare (against a dummy) */
    snprintf(bad, sizeof bad, "%s", key);
    memcpy(bad + 4, "000000000000", 12);
    before = verify_calls;
    CHECK_INT(evs__keys_verify(ks, bad, &none), EVS_AUTH_UNKNOWN);
    CHECK_INT(verify_calls, before + 1);
    /* not a key at all: refused before any hashing */
    CHECK_INT(evs__keys_verify(ks, "hello", &none), EVS_AUTH_MALFORMED);
    CHECK_INT(evs__keys_verify(ks, "", &none), EVS_AUTH_MALFORMED);
    snprintf(bad, sizeof bad, "%s", key);
    bad[20] = '!';
    CHECK_INT(evs__keys_verify(ks, bad, &none), EVS_AUTH_MALFORMED);

    /* another keystore on the same store (the CLI beside a server; on PostgreSQL as well another server on
       the database) sees the key, and revokes it */
    evs__keystore *ks2;
    CHECK_RC(evs__keys_open(where, 0, &ks2), EVS_OK);
    CHECK_INT(evs__keys_active(ks2), 1);
    CHECK_RC(evs__keys_revoke(ks2, idc), EVS_OK);
    CHECK_RC(evs__keys_revoke(ks2, idc), EVS_OK); /* twice is fine */
    CHECK_RC(evs__keys_revoke(ks2, "abcdefabcdef"), EVS_ENOTFOUND);
    CHECK_CONTAINS(evs_errmsg(), "abcdefabcdef");
    /* the first keystore, told nothing, refuses the key from its next verify on (on PostgreSQL once the
       bound has passed: it compares the stored generation at most that often) */
    wait_recheck();
    evs__principal *again = NULL;
    CHECK_INT(evs__keys_verify(ks, key, &again), EVS_AUTH_REVOKED);
    CHECK(again == NULL);
    CHECK_INT(evs__keys_active(ks), 0);
    /* the principal verified before stays valid (its holder releases it) */
    CHECK_STR(who->role, "writer");
    evs__principal_unref(who);

    json_t *all = evs__keys_list(ks);
    json_t *k0 = json_array_get(json_object_get(all, "keys"), 0);
    CHECK(json_is_string(json_object_get(k0, "revoked_at")));
    CHECK(json_object_get(k0, "hash") == NULL);
    json_decref(all);

    /* keys made by two keystores in turn: neither loses the other's */
    CHECK_RC(evs__keys_create(ks, "reader", NULL, 0, NULL, key, sizeof key, NULL), EVS_OK);
    char key2[EVS_KEY_TEXT_MAX];
    CHECK_RC(evs__keys_create(ks2, "admin", NULL, 0, NULL, key2, sizeof key2, NULL), EVS_OK);
    CHECK_INT(evs__keys_active(ks), 2);
    CHECK_INT(evs__keys_verify(ks, key2, &who), EVS_AUTH_OK);
    CHECK(evs__principal_allows_all(who, EVS_PERM_ADMIN));
    CHECK(evs__principal_allows_all(who, EVS_PERM_READ)); /* admin implies the others */
    evs__principal_unref(who);
    /* a key made elsewhere verifies without list or active having looked first */
    CHECK_RC(evs__keys_create(ks2, "reader", NULL, 0, "late", key2, sizeof key2, NULL), EVS_OK);
    wait_recheck();
    CHECK_INT(evs__keys_verify(ks, key2, &who), EVS_AUTH_OK);
    CHECK_STR(who ? who->name : "", "late");
    evs__principal_unref(who);
    evs__keys_close(ks2);
    close_server(ks, s);

    /* a new keystore reads the same secret: keys still verify after a restart */
    ks = open_server(where, &s);
    CHECK_INT(evs__keys_verify(ks, key, &who), EVS_AUTH_OK);
    CHECK_STR(who->role, "reader");
    evs__principal_unref(who);
    close_server(ks, s);
    cf_drop(where);
}

static void test_grants(void) {
    evs__grant g;
    CHECK_RC(evs__grant_parse("read:order-*", &g), EVS_OK);
    CHECK_INT(g.perms, EVS_PERM_READ);
    CHECK_INT(g.prefix, 1);
    CHECK_STR(g.streams, "order-");
    CHECK_RC(evs__grant_parse("read+append:$all:A,B", &g), EVS_OK);
    CHECK_INT(g.perms, EVS_PERM_READ | EVS_PERM_APPEND);
    CHECK_INT(g.all, 1);
    CHECK_STR(g.types, "A,B");
    CHECK_RC(evs__grant_parse("write:x", &g), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "unknown permission \"write\"");
    CHECK_RC(evs__grant_parse("read", &g), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "PERM:STREAMS");
    CHECK_RC(evs__grant_parse("read:", &g), EVS_EINVAL);
    CHECK_RC(evs__grant_parse("read:a*b", &g), EVS_EINVAL);
    CHECK_RC(evs__grant_parse("read:x:A,,B", &g), EVS_EINVAL);
    CHECK_RC(evs__grant_parse("read:x:", &g), EVS_EINVAL);

    char *where = cf_fresh("grants");
    evs_store *s;
    evs__keystore *ks = open_server(where, &s);
    char key[EVS_KEY_TEXT_MAX];
    const char *gs[] = {"read+subscribe:order-*", "append:order-*:OrderPlaced", "read:users-1"};
    CHECK_RC(evs__keys_create(ks, "none", gs, 3, "shop", key, sizeof key, NULL), EVS_OK);
    evs__principal *p;
    CHECK_INT(evs__keys_verify(ks, key, &p), EVS_AUTH_OK);
    CHECK(evs__principal_allows(p, EVS_PERM_READ, "order-1", 7, "X", 1));
    CHECK(!evs__principal_allows(p, EVS_PERM_READ, "orders", 6, "X", 1));
    CHECK(evs__principal_allows(p, EVS_PERM_READ, "users-1", 7, NULL, 0));
    CHECK(!evs__principal_allows(p, EVS_PERM_READ, "users-10", 8, NULL, 0)); /* exact, not a prefix */
    CHECK(evs__principal_allows(p, EVS_PERM_APPEND, "order-9", 7, "OrderPlaced", 11));
    CHECK(!evs__principal_allows(p, EVS_PERM_APPEND, "order-9", 7, "OrderPaid", 9));
    CHECK(evs__principal_allows(p, EVS_PERM_APPEND, "order-9", 7, NULL, 0)); /* some types of it */
    CHECK(!evs__principal_allows(p, EVS_PERM_APPEND, "user-9", 6, NULL, 0));
    CHECK(evs__principal_allows_any(p, EVS_PERM_SUBSCRIBE));
    CHECK(!evs__principal_allows_all(p, EVS_PERM_READ));
    CHECK(!evs__principal_allows_any(p, EVS_PERM_ADMIN));
    evs__principal_unref(p);

    /* refused before anything is written */
    size_t n;
    char *before = stored(where, "keys.json", &n);
    const char *badg[] = {"read:x", "root:y"};
    CHECK_RC(evs__keys_create(ks, "none", badg, 2, NULL, key, sizeof key, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "root");
    CHECK_RC(evs__keys_create(ks, "superuser", NULL, 0, NULL, key, sizeof key, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "unknown role \"superuser\"");
    CHECK_RC(evs__keys_create(ks, "none", NULL, 0, NULL, key, sizeof key, NULL), EVS_EINVAL);
    char *after = stored(where, "keys.json", &n);
    CHECK(before && after);
    CHECK_STR(after ? after : "", before ? before : "-");
    free(before);
    free(after);
    close_server(ks, s);
    cf_drop(where);
}

static void test_bad_store(void) {
    char *where = cf_fresh("badkeys");
    /* a store without keys (on PostgreSQL its tables exist; a directory needs nothing) */
    evs_store *s = cf_open(where);
    evs__keystore *ks = NULL;
    size_t n;
    const char *doc_name = cf_pg ? "evs_bus_kv db 40" : "keys.json";
    /* no secret and no create: nothing to verify against */
    CHECK_RC(evs__keys_open(where, 0, &ks), EVS_ENOTFOUND);
    CHECK_CONTAINS(evs_errmsg(), "no keys were created");
    CHECK_CONTAINS(evs_errmsg(), cf_pg ? "server secret" : "keys.secret");
    CHECK(ks == NULL);
    CHECK_RC(evs__keys_open_store(s, 0, &ks), EVS_ENOTFOUND);
    CHECK(ks == NULL);
    if (!cf_pg) { /* a secret others can read */
        put_stored(where, "secret", "0123456789abcdef0123456789abcdef", 32, 0644);
        CHECK_RC(evs__keys_open(where, 1, &ks), EVS_EFORMAT);
        CHECK_CONTAINS(evs_errmsg(), "readable by others (mode 644)");
    }
    /* a secret of the wrong size */
    put_stored(where, "secret", "short", 5, 0600);
    CHECK_RC(evs__keys_open(where, 1, &ks), EVS_EFORMAT);
    CHECK_CONTAINS(evs_errmsg(), "is 5 bytes, a server secret is 32");
    char *sec = stored(where, "secret", &n);
    CHECK_STR(sec, "short"); /* left as it was */
    free(sec);
    put_stored(where, "secret", "0123456789abcdef0123456789abcdef", 32, 0600);
    /* a keys document that is not JSON, or not ours */
    static const struct {
        const char *text, *want;
        int rc;
    } cases[] = {
        {"{\"format\":1,\"keys\":[", ": line 1, column", EVS_EJSON},
        {"[]", "expected {\"format\": 1", EVS_EFORMAT},
        {"{\"format\":2,\"keys\":[]}", "format 2 is not one this version reads", EVS_EFORMAT},
        {"{\"format\":1,\"keys\":[{\"id\":\"XYZ\"}]}", "keys[0].id must be 12 lower-case hex digits", EVS_EFORMAT},
        {"{\"format\":1,\"keys\":[{\"id\":\"0123456789ab\",\"role\":\"admin\",\"grants\":[],\"hash\":\"00\"}]}",
         "key 0123456789ab: hash must be 64 hex digits", EVS_EFORMAT},
        {"{\"format\":1,\"keys\":[{\"id\":\"0123456789ab\",\"role\":\"boss\",\"grants\":[],\"hash\":"
         "\"0000000000000000000000000000000000000000000000000000000000000000\"}]}",
         "key 0123456789ab: unknown role \"boss\"", EVS_EFORMAT},
        {"{\"format\":1,\"keys\":[{\"id\":\"0123456789ab\",\"role\":\"none\",\"grants\":[\"read:a\",7],\"hash\":"
         "\"0000000000000000000000000000000000000000000000000000000000000000\"}]}",
         "grants[1] is not a string", EVS_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put_stored(where, "keys.json", cases[i].text, strlen(cases[i].text), 0600);
        CHECK_RC(evs__keys_open(where, 1, &ks), cases[i].rc);
        CHECK_CONTAINS(evs_errmsg(), cases[i].want);
        CHECK_CONTAINS(evs_errmsg(), doc_name);
        CHECK(ks == NULL);
        char *now = stored(where, "keys.json", &n);
        CHECK_STR(now, cases[i].text); /* nothing rewritten */
        free(now);
    }
    /* a keystore that read good keys keeps them when the document turns bad under it */
    del_stored(where, "keys.json");
    CHECK_RC(evs__keys_open_store(s, 1, &ks), EVS_OK);
    char key[EVS_KEY_TEXT_MAX];
    CHECK_RC(evs__keys_create(ks, "reader", NULL, 0, NULL, key, sizeof key, NULL), EVS_OK);
    put_stored(where, "keys.json", "garbage", 7, 0600);
    wait_recheck();
    evs__principal *p = NULL;
    CHECK_INT(evs__keys_verify(ks, key, &p), EVS_AUTH_OK);
    evs__principal_unref(p);
    /* and a change is refused rather than writing over what it cannot read */
    CHECK_RC(evs__keys_create(ks, "reader", NULL, 0, NULL, key, sizeof key, NULL), EVS_EJSON);
    CHECK_CONTAINS(evs_errmsg(), doc_name);
    char *now = stored(where, "keys.json", &n);
    CHECK_STR(now, "garbage");
    free(now);
    evs__keys_close(ks);
    CHECK_RC(evs_store_close(s), EVS_OK);
    cf_drop(where);
}

/* Verifiers on one keystore while keys change through it and through another (the server's request threads
   while an admin route and another server or the CLI change keys): every answer is OK until the key is
   revoked and REVOKED after, never anything else. */
typedef struct verifier {
    evs__keystore *ks;
    const char *key;
    _Atomic int *stop;
    int ok, revoked, other;
} verifier;

static void *verify_loop(void *arg) {
    verifier *v = arg;
    while (!atomic_load(v->stop)) {
        evs__principal *p = NULL;
        int r = evs__keys_verify(v->ks, v->key, &p);
        if (r == EVS_AUTH_OK && p && strcmp(p->role, "reader") == 0) v->ok++;
        else if (r == EVS_AUTH_REVOKED && !p) v->revoked++;
        else v->other++;
        evs__principal_unref(p);
    }
    return NULL;
}

static void test_threads(void) {
    char *where = cf_fresh("keythreads");
    evs_store *s;
    evs__keystore *ks = open_server(where, &s), *ks2;
    CHECK_RC(evs__keys_open(where, 0, &ks2), EVS_OK);
    char key[EVS_KEY_TEXT_MAX], other[EVS_KEY_TEXT_MAX];
    json_t *info = NULL;
    CHECK_RC(evs__keys_create(ks, "reader", NULL, 0, NULL, key, sizeof key, &info), EVS_OK);
    char id[16];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(info, "id")));
    json_decref(info);
    _Atomic int stop = 0;
    verifier v[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        v[i] = (verifier){ks, key, &stop, 0, 0, 0};
        CHECK(pthread_create(&th[i], NULL, verify_loop, &v[i]) == 0);
    }
    for (int i = 0; i < 6; i++) { /* changes through both keystores while the verifiers run */
        CHECK_RC(evs__keys_create(i % 2 ? ks : ks2, "writer", NULL, 0, NULL, other, sizeof other, NULL), EVS_OK);
        json_decref(evs__keys_list(ks));
        wait_recheck();
    }
    CHECK_RC(evs__keys_revoke(ks2, id), EVS_OK);
    wait_recheck();
    wait_recheck();
    atomic_store(&stop, 1);
    int ok = 0, revoked = 0, bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += v[i].ok, revoked += v[i].revoked, bad += v[i].other;
    }
    CHECK_INT(bad, 0);
    CHECK(ok > 0);
    CHECK(revoked > 0);
    evs__principal *p = NULL;
    CHECK_INT(evs__keys_verify(ks, key, &p), EVS_AUTH_REVOKED);
    CHECK_INT(evs__keys_active(ks), 6);
    evs__keys_close(ks2);
    close_server(ks, s);
    cf_drop(where);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    test_create_verify_revoke();
    test_grants();
    test_bad_store();
    test_threads();
    return TEST_REPORT();
}

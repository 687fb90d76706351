/*
 * test_keys.c — the API-key store (src/auth/keys.c): create, verify,
 * revoke; the file written whole and re-read by another keystore; grants
 * and roles; bad files refused with a message naming the file and the
 * fault (and nothing changed); and that verification compares hashes with
 * libsodium's constant-time crypto_verify_32 for every key presented,
 * known id or not.
 *
 * EVS_WRAP: crypto_verify_32
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/keys.h"
#include "core/core.h"
#include "testutil.h"

/* Every call of crypto_verify_32 from the library comes here first. */
int __real_crypto_verify_32(const unsigned char *x, const unsigned char *y);
int __wrap_crypto_verify_32(const unsigned char *x, const unsigned char *y);
static int verify_calls;
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

static char *slurp(const char *dir, const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *b = calloc(1, 1 << 16);
    size_t n = fread(b, 1, (1 << 16) - 1, f);
    b[n] = '\0';
    fclose(f);
    return b;
}

static void test_create_verify_revoke(void) {
    char *dir = tu_tempdir("keys");
    evs__keystore *ks;
    CHECK_RC(evs__keys_open(dir, 1, &ks), EVS_OK);
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

    /* the secret is nowhere on disk, only its hash */
    char *file = slurp(dir, "keys.json");
    CHECK(file != NULL);
    CHECK(strstr(file, key + 17) == NULL);
    CHECK_CONTAINS(file, "\"hash\"");
    free(file);
    struct stat st;
    char sp[4200];
    snprintf(sp, sizeof sp, "%s/keys.secret", dir);
    CHECK(stat(sp, &st) == 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    CHECK_INT(st.st_size, 32);

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

    /* another keystore on the same dir (the CLI beside a server) sees the key, and revokes it */
    evs__keystore *ks2;
    CHECK_RC(evs__keys_open(dir, 0, &ks2), EVS_OK);
    CHECK_INT(evs__keys_active(ks2), 1);
    CHECK_RC(evs__keys_revoke(ks2, idc), EVS_OK);
    CHECK_RC(evs__keys_revoke(ks2, idc), EVS_OK); /* twice is fine */
    CHECK_RC(evs__keys_revoke(ks2, "abcdefabcdef"), EVS_ENOTFOUND);
    CHECK_CONTAINS(evs_errmsg(), "abcdefabcdef");
    /* the first keystore re-reads the changed file: revoked from the next verify on */
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
    evs__keys_close(ks2);
    evs__keys_close(ks);

    /* a new keystore reads the same secret: keys still verify after a restart */
    CHECK_RC(evs__keys_open(dir, 0, &ks), EVS_OK);
    CHECK_INT(evs__keys_verify(ks, key, &who), EVS_AUTH_OK);
    CHECK_STR(who->role, "reader");
    evs__principal_unref(who);
    evs__keys_close(ks);
    tu_rmrf(dir);
    free(dir);
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

    char *dir = tu_tempdir("grants");
    evs__keystore *ks;
    CHECK_RC(evs__keys_open(dir, 1, &ks), EVS_OK);
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
    char *before = slurp(dir, "keys.json");
    const char *badg[] = {"read:x", "root:y"};
    CHECK_RC(evs__keys_create(ks, "none", badg, 2, NULL, key, sizeof key, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "root");
    CHECK_RC(evs__keys_create(ks, "superuser", NULL, 0, NULL, key, sizeof key, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "unknown role \"superuser\"");
    CHECK_RC(evs__keys_create(ks, "none", NULL, 0, NULL, key, sizeof key, NULL), EVS_EINVAL);
    char *after = slurp(dir, "keys.json");
    CHECK_STR(after, before);
    free(before);
    free(after);
    evs__keys_close(ks);
    tu_rmrf(dir);
    free(dir);
}

static void test_bad_files(void) {
    char *dir = tu_tempdir("badkeys");
    evs__keystore *ks = NULL;
    /* no secret and no create: nothing to verify against */
    CHECK_RC(evs__keys_open(dir, 0, &ks), EVS_ENOTFOUND);
    CHECK_CONTAINS(evs_errmsg(), "keys.secret");
    CHECK(ks == NULL);
    /* a secret others can read */
    put_file(dir, "keys.secret", "0123456789abcdef0123456789abcdef", 32, 0644);
    CHECK_RC(evs__keys_open(dir, 1, &ks), EVS_EFORMAT);
    CHECK_CONTAINS(evs_errmsg(), "readable by others (mode 644)");
    /* a secret of the wrong size */
    put_file(dir, "keys.secret", "short", 5, 0600);
    CHECK_RC(evs__keys_open(dir, 1, &ks), EVS_EFORMAT);
    CHECK_CONTAINS(evs_errmsg(), "is 5 bytes, a server secret is 32");
    char *sec = slurp(dir, "keys.secret");
    CHECK_STR(sec, "short"); /* left as it was */
    free(sec);
    put_file(dir, "keys.secret", "0123456789abcdef0123456789abcdef", 32, 0600);
    /* keys.json that is not JSON, or not ours */
    static const struct {
        const char *text, *want;
        int rc;
    } cases[] = {
        {"{\"format\":1,\"keys\":[", "keys.json: line", EVS_EJSON},
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
        put_file(dir, "keys.json", cases[i].text, strlen(cases[i].text), 0600);
        CHECK_RC(evs__keys_open(dir, 1, &ks), cases[i].rc);
        CHECK_CONTAINS(evs_errmsg(), cases[i].want);
        CHECK(ks == NULL);
        char *now = slurp(dir, "keys.json");
        CHECK_STR(now, cases[i].text); /* nothing rewritten */
        free(now);
    }
    /* a keystore that read a good file keeps its keys when the file turns bad under it */
    char kp[4200];
    snprintf(kp, sizeof kp, "%s/keys.json", dir);
    unlink(kp);
    CHECK_RC(evs__keys_open(dir, 1, &ks), EVS_OK);
    char key[EVS_KEY_TEXT_MAX];
    CHECK_RC(evs__keys_create(ks, "reader", NULL, 0, NULL, key, sizeof key, NULL), EVS_OK);
    put_file(dir, "keys.json", "garbage", 7, 0600);
    evs__principal *p = NULL;
    CHECK_INT(evs__keys_verify(ks, key, &p), EVS_AUTH_OK);
    evs__principal_unref(p);
    /* and a change is refused rather than writing over what it cannot read */
    CHECK_RC(evs__keys_create(ks, "reader", NULL, 0, NULL, key, sizeof key, NULL), EVS_EJSON);
    char *now = slurp(dir, "keys.json");
    CHECK_STR(now, "garbage");
    free(now);
    evs__keys_close(ks);
    tu_rmrf(dir);
    free(dir);
}

int main(void) {
    test_create_verify_revoke();
    test_grants();
    test_bad_files();
    return TEST_REPORT();
}

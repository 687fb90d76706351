/*
 * test_crypt.c — crypto-shredding (include/evstore_crypt.h, src/store/crypt.c,
 * keystore.c) through the public API, plus the envelope checks that need
 * the internal read hook (altered ciphertext, ciphertext of another event).
 *
 * What is checked:
 *   - "$encrypt": "stream" and "tag:PREFIX": data reads back byte for byte,
 *     the log holds no plaintext, the subject's key file exists;
 *   - an idempotent retry of an encrypted append (same id, same data) is
 *     recognised as such (the nonce is deterministic); same id with other
 *     data is a duplicate;
 *   - bad input: an event without (or with two) tags of the prefix, data
 *     posing as an envelope, a bad "$encrypt" value, a master key file that
 *     is not 64 hex digits / is readable by others / is missing — each
 *     refused naming it, nothing stored;
 *   - a wrong master key fails the open (EVS_EKEY, the source named); no
 *     master key: plaintext works, encrypted appends and reads are EVS_EKEY;
 *   - altered ciphertext, ciphertext moved to another event, a damaged key
 *     file: EVS_ECORRUPT naming the event or file, never garbage;
 *   - forget: every read path (stream read both ways, $all, tag and type
 *     filters, a subscription, evs_event_to_json) shows data null and
 *     "$redacted":true at unchanged positions; other subjects unaffected;
 *     appends under the subject refused; export refused; the audit event is
 *     in "$subjects"; it survives reopening, also without the master key;
 *   - export: exactly the subject's events, decrypted, in global order;
 *   - two handles on one store (PostgreSQL: two servers on one database):
 *     metadata set through A encrypts B's appends at once (the database
 *     refuses B's plaintext, B seals and retries); each reads the other's
 *     events; first appends for the same subjects through both at once end
 *     with one key per subject (a third handle decrypts all of them); a
 *     forget through B redacts A's reads (the delay is printed, not
 *     asserted) and A's appends under the subject are refused.
 *
 * One suite for every storage engine (tests/conformance.h): no argument
 * runs on the embedded engine, "postgresql" on a fresh database per case.
 * What is about files (the log's bytes, key files) is checked in the
 * database's rows on PostgreSQL instead.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evstore_bus.h"
#include "evstore_crypt.h"
#include "conformance.h"
#include "core/core.h"
#include "store/crypt.h"

#define SETMETA(s, stream, json) evs_stream_set_metadata(s, stream, EVS_EXPECT_ANY, json, strlen(json), NULL)

static const char *HEX1 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
static const char *HEX2 = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

static evs_store *open_with(const char *dir, const char *hex, int *rc_out) {
    evs_store *s = NULL;
    uint8_t key[32];
    int rc = evs_store_create(&s);
    if (!rc && hex) {
        rc = evs_master_key_parse(hex, strlen(hex), key);
        if (!rc) rc = evs_store_set_master_key(s, key);
    }
    if (!rc) rc = evs_store_set_durability(s, EVS_DURABILITY_NONE, 0);
    if (!rc) rc = evs_store_open(s, dir, EVS_OPEN_CREATE);
    if (rc_out) *rc_out = rc;
    if (rc) {
        if (!rc_out) fprintf(stderr, "open %s: %s\n", dir, evs_errmsg());
        evs_store_close(s);
        return NULL;
    }
    return s;
}

static int append1(evs_store *s, const char *stream, const char *data, const char *tag, const evs_uuid *id) {
    evs_event_in e = tu_event("Happened", data);
    const char *tags[1] = {tag};
    if (tag) e.tags = tags, e.ntags = 1;
    e.event_id = id;
    evs_append_result r;
    return evs_append(s, stream, EVS_EXPECT_ANY, &e, 1, &r, NULL);
}

/* One value of a query on the PostgreSQL store at url, into out ("" on failure, printed). */
static void pg_value(const char *url, const char *sql, const char *param, char *out, size_t cap) {
    PGconn *c = PQconnectdb(url);
    const char *vals[1] = {param};
    PGresult *r = PQexecParams(c, sql, param ? 1 : 0, NULL, vals, NULL, NULL, 0);
    out[0] = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
    else if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* Does the stored data hold needle: the log's bytes (embedded), the rows of event_store (PostgreSQL). */
static int log_contains(const char *dir, const char *needle) {
    if (cf_pg) {
        char got[32];
        pg_value(dir, "SELECT count(*) FROM event_store WHERE position(convert_to($1, 'UTF8') IN event_data) > 0",
                 needle, got, sizeof got);
        return strcmp(got, "0") != 0;
    }
    char path[8192];
    int found = 0;
    for (int i = 1; i < 50 && !found; i++) {
        snprintf(path, sizeof path, "%s/log/%08d.seg", dir, i);
        FILE *f = fopen(path, "rb");
        if (!f) break;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *b = malloc((size_t)n + 1);
        if (fread(b, 1, (size_t)n, f) == (size_t)n) found = memmem(b, (size_t)n, needle, strlen(needle)) != NULL;
        free(b);
        fclose(f);
    }
    return found;
}

/* Read one stream (or $all with f) into a summary "pos:data|..." (redacted: "pos:R"). */
static void summary(evs_store *s, const char *stream, const evs_filter *f, int dir, char *out, size_t cap) {
    evs_reader *r;
    out[0] = 0;
    int rc = stream ? evs_read_stream(s, stream, dir == EVS_FORWARD ? 1 : EVS_POSITION_END, dir, 0, &r)
                    : evs_read_all(s, dir == EVS_FORWARD ? 1 : EVS_POSITION_END, dir, f, 0, &r);
    if (rc) {
        snprintf(out, cap, "ERR %s", evs_errmsg());
        return;
    }
    const evs_event *ev;
    size_t w = 0;
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        if (ev->stream[0] == '$') continue;
        if (ev->redacted) w += (size_t)snprintf(out + w, cap - w, "%llu:R|", (unsigned long long)ev->global_position);
        else w += (size_t)snprintf(out + w, cap - w, "%llu:%.*s|", (unsigned long long)ev->global_position,
                                   (int)ev->data_len, ev->data);
    }
    if (rc != EVS_DONE) snprintf(out + w, cap - w, "ERR %s", evs_errmsg());
    evs_reader_close(r);
}

typedef struct collect {
    char buf[4096];
    size_t w;
} collect;

static int collect_cb(void *arg, const evs_event *ev) {
    collect *c = arg;
    c->w += (size_t)snprintf(c->buf + c->w, sizeof c->buf - c->w, "%llu:%.*s|", (unsigned long long)ev->global_position,
                             (int)ev->data_len, ev->data);
    return 0;
}

static int sub_redacted, sub_total;
static int sub_handler(void *ctx, const evs_event *ev, char *err, size_t errcap) {
    (void)ctx, (void)err, (void)errcap;
    if (ev->stream[0] == '$') return 0;
    sub_total++;
    if (ev->redacted && ev->data_len == 4 && !memcmp(ev->data, "null", 4)) sub_redacted++;
    return 0;
}

static void test_master_key_parse(void) {
    uint8_t k[32];
    CHECK_RC(evs_master_key_parse(HEX1, 64, k), EVS_OK);
    CHECK_INT(k[0], 0x00);
    CHECK_INT(k[31], 0xff);
    char with_nl[80];
    snprintf(with_nl, sizeof with_nl, "  %s\n", HEX2);
    CHECK_RC(evs_master_key_parse(with_nl, strlen(with_nl), k), EVS_OK);
    CHECK_INT(k[0], 0xff);
    CHECK_RC(evs_master_key_parse("abcd", 4, k), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "64 hexadecimal digits");
    char bad[65];
    memcpy(bad, HEX1, 65);
    bad[10] = 'g';
    CHECK_RC(evs_master_key_parse(bad, 64, k), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "character 11");
}

static void test_key_files(const char *base) {
    char path[8192];
    char *dir = cf_fresh("mk");
    evs_store *s = NULL;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    snprintf(path, sizeof path, "%s/missing.key", base);
    CHECK_RC(evs_store_use_master_key(s, path), -2);
    CHECK_CONTAINS(evs_errmsg(), path);
    snprintf(path, sizeof path, "%s/open.key", base);
    FILE *f = fopen(path, "w");
    fprintf(f, "%s\n", HEX1);
    fclose(f);
    chmod(path, 0644);
    CHECK_RC(evs_store_use_master_key(s, path), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "chmod 600");
    snprintf(path, sizeof path, "%s/short.key", base);
    f = fopen(path, "w");
    fprintf(f, "1234\n");
    fclose(f);
    chmod(path, 0600);
    CHECK_RC(evs_store_use_master_key(s, path), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), path);
    snprintf(path, sizeof path, "%s/good.key", base);
    f = fopen(path, "w");
    fprintf(f, "%s\n", HEX1);
    fclose(f);
    chmod(path, 0600);
    CHECK_RC(evs_store_use_master_key(s, path), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, EVS_OPEN_CREATE), EVS_OK);
    CHECK_RC(SETMETA(s, "acct-1", "{\"$encrypt\":\"stream\"}"), EVS_OK);
    CHECK_RC(append1(s, "acct-1", "{\"n\":1}", NULL, NULL), EVS_OK);
    evs_store_close(s);
    /* the environment variable; the same key reads it */
    setenv("EVSTORE_MASTER_KEY", HEX1, 1);
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_use_master_key(s, NULL), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, 0), EVS_OK);
    char got[512];
    summary(s, "acct-1", NULL, EVS_FORWARD, got, sizeof got);
    CHECK_STR(got, "2:{\"n\":1}|");
    evs_store_close(s);
    setenv("EVSTORE_MASTER_KEY", "nothex", 1);
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_use_master_key(s, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "EVSTORE_MASTER_KEY");
    evs_store_close(s);
    unsetenv("EVSTORE_MASTER_KEY");
    cf_drop(dir);
}

static void test_roundtrip_and_retry(void) {
    char got[2048];
    char *dir = cf_fresh("rt");
    evs_store *s = open_with(dir, HEX1, NULL);
    CHECK(s != NULL);
    if (!s) return;
    CHECK_RC(SETMETA(s, "order-1", "{\"$encrypt\":\"stream\"}"), EVS_OK);
    CHECK_RC(SETMETA(s, "shop", "{\"$encrypt\":\"tag:customer:\",\"x\":1}"), EVS_OK);
    CHECK_RC(SETMETA(s, "bad", "{\"$encrypt\":\"tags\"}"), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "$encrypt");
    CHECK_RC(SETMETA(s, "bad", "{\"$encrypt\":\"tag:\"}"), EVS_EINVAL);
    evs_uuid id;
    evs_uuid_v7(&id);
    CHECK_RC(append1(s, "order-1", "{\"secret\":\"SECRET-ORDER\"}", NULL, &id), EVS_OK); /* gpos 3 */
    CHECK_RC(append1(s, "shop", "{\"name\":\"SECRET-ALICE\"}", "customer:42", NULL), EVS_OK);  /* 4 */
    CHECK_RC(append1(s, "shop", "{\"name\":\"SECRET-BOB\"}", "customer:7", NULL), EVS_OK);     /* 5 */
    CHECK_RC(append1(s, "plain", "{\"v\":\"VISIBLE\"}", NULL, NULL), EVS_OK);                  /* 6 */
    /* refused: no tag, two tags, an envelope look-alike; nothing stored */
    CHECK_RC(append1(s, "shop", "{}", "region:eu", NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "no such tag");
    {
        evs_event_in e = tu_event("T", "{}");
        const char *tags[2] = {"customer:1", "customer:2"};
        e.tags = tags, e.ntags = 2;
        evs_append_result r;
        CHECK_RC(evs_append(s, "shop", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_EINVAL);
        CHECK_CONTAINS(evs_errmsg(), "carries two");
    }
    CHECK_RC(append1(s, "plain", "{\"$enc\":1}", NULL, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "envelope");
    CHECK_INT(evs_head(s), 6);
    /* idempotent retry: same id, same data -> same bytes */
    {
        evs_event_in e = tu_event("Happened", "{\"secret\":\"SECRET-ORDER\"}");
        e.event_id = &id;
        evs_append_result r;
        CHECK_RC(evs_append(s, "order-1", 0, &e, 1, &r, NULL), EVS_OK);
        CHECK_INT(r.idempotent, 1);
        CHECK_INT(r.first_global_position, 3);
        e = tu_event("Happened", "{\"secret\":\"OTHER\"}");
        e.event_id = &id;
        CHECK_RC(evs_append(s, "order-1", 0, &e, 1, &r, NULL), EVS_EDUPLICATE);
    }
    CHECK_INT(evs_head(s), 6);
    summary(s, NULL, NULL, EVS_FORWARD, got, sizeof got);
    CHECK_STR(got, "3:{\"secret\":\"SECRET-ORDER\"}|4:{\"name\":\"SECRET-ALICE\"}|5:{\"name\":\"SECRET-BOB\"}|"
                   "6:{\"v\":\"VISIBLE\"}|");
    evs_store_close(s);
    CHECK(!log_contains(dir, "SECRET"));
    CHECK(log_contains(dir, "VISIBLE"));
    CHECK(log_contains(dir, "{\"$enc\":\"xc20p1\",\"subject\":\"customer:42\""));

    /* a wrong master key: the open fails, naming where the key came from */
    int rc;
    CHECK(open_with(dir, HEX2, &rc) == NULL);
    CHECK_RC(rc, EVS_EKEY);
    CHECK_CONTAINS(evs_errmsg(), "master key");
    /* no master key: plaintext works, encrypted is refused both ways */
    s = open_with(dir, NULL, NULL);
    CHECK(s != NULL);
    if (!s) return;
    summary(s, "plain", NULL, EVS_FORWARD, got, sizeof got);
    CHECK_STR(got, "6:{\"v\":\"VISIBLE\"}|");
    summary(s, "order-1", NULL, EVS_FORWARD, got, sizeof got);
    CHECK_CONTAINS(got, "no master key");
    CHECK_RC(append1(s, "order-1", "{}", NULL, NULL), EVS_EKEY);
    CHECK_RC(append1(s, "shop", "{}", "customer:99", NULL), EVS_EKEY);
    CHECK_CONTAINS(evs_errmsg(), "master key");
    CHECK_RC(append1(s, "plain", "{}", NULL, NULL), EVS_OK);
    evs_store_close(s);

    /* altered ciphertext and ciphertext of another event, through the read hook */
    s = open_with(dir, HEX1, NULL);
    evs_reader *r;
    const evs_event *ev;
    CHECK_RC(evs_read_stream(s, "order-1", 1, EVS_FORWARD, 0, &r), EVS_OK);
    /* the envelope as stored: from the log bytes (or the row) */
    char env[1024] = "";
    if (cf_pg) {
        pg_value(dir, "SELECT convert_from(event_data, 'UTF8') FROM event_store WHERE aggregate_id = $1", "order-1",
                 env, sizeof env);
    } else {
        char path[8192];
        snprintf(path, sizeof path, "%s/log/00000001.seg", dir);
        FILE *f = fopen(path, "rb");
        static char b[1 << 20];
        size_t n = fread(b, 1, sizeof b, f);
        fclose(f);
        const char *p = memmem(b, n, "{\"$enc\":\"xc20p1\",\"subject\":\"order-1\"", 36);
        const char *q = p ? memmem(p, n - (size_t)(p - b), "\"}", 2) : NULL;
        if (p && q) snprintf(env, sizeof env, "%.*s", (int)(q + 2 - p), p);
    }
    CHECK(env[0] != 0);
    CHECK_RC(evs_reader_next(r, &ev), EVS_OK);
    evs_event fake = *ev;
    fake.data = env;
    fake.data_len = strlen(env);
    evs__crypt_rd rd = {0};
    CHECK_RC(evs__crypt_open_event(s, &rd, &fake), EVS_OK);
    CHECK_MEM(fake.data, fake.data_len, "{\"secret\":\"SECRET-ORDER\"}");
    char *ct = strstr(env, "\"ct\":\"");
    if (ct) ct[20] = ct[20] == 'A' ? 'B' : 'A';
    fake = *ev;
    fake.data = env;
    fake.data_len = strlen(env);
    CHECK_RC(evs__crypt_open_event(s, &rd, &fake), EVS_ECORRUPT);
    CHECK_CONTAINS(evs_errmsg(), "fails authentication");
    CHECK_CONTAINS(evs_errmsg(), "global position 3");
    if (ct) ct[20] = ct[20] == 'A' ? 'B' : 'A'; /* back as it was, but under another event's id */
    fake = *ev;
    evs_uuid_v7(&fake.event_id);
    fake.data = env;
    fake.data_len = strlen(env);
    CHECK_RC(evs__crypt_open_event(s, &rd, &fake), EVS_ECORRUPT);
    evs__crypt_rd_free(&rd);
    evs_reader_close(r);
    evs_store_close(s);

    /* the keys: a directory only the owner reads, or one row per subject holding no key in the clear */
    if (cf_pg) {
        pg_value(dir, "SELECT string_agg(subject || ':' || length(wrapped), ',' ORDER BY subject) FROM evs_subject_keys",
                 NULL, got, sizeof got);
        CHECK_STR(got, "customer:42:72,customer:7:72,order-1:72");
        pg_value(dir, "SELECT length(check_blob) FROM evs_subject_master", NULL, got, sizeof got);
        CHECK_STR(got, "48");
    } else {
        char kdir[8192];
        snprintf(kdir, sizeof kdir, "%s/subject-keys", dir);
        CHECK(access(kdir, F_OK) == 0);
        struct stat st;
        CHECK_RC(stat(kdir, &st), 0);
        CHECK_INT(st.st_mode & 0777, 0700);
    }
    cf_drop(dir);
}

static void test_forget(void) {
    char got[2048];
    char *dir = cf_fresh("fg");
    evs_store *s = open_with(dir, HEX1, NULL);
    if (!s) return;
    evs_bus *bus = NULL;
    CHECK_RC(SETMETA(s, "shop", "{\"$encrypt\":\"tag:customer:\"}"),
             EVS_OK);                                                                            /* 1 */
    CHECK_RC(append1(s, "shop", "{\"a\":1}", "customer:42", NULL), EVS_OK);                     /* 2 */
    CHECK_RC(append1(s, "shop", "{\"b\":2}", "customer:7", NULL), EVS_OK);                      /* 3 */
    CHECK_RC(append1(s, "shop", "{\"c\":3}", "customer:42", NULL), EVS_OK);                     /* 4 */
    CHECK_RC(append1(s, "plain", "{\"d\":4}", "customer:42", NULL), EVS_OK);                    /* 5, plaintext */
    CHECK_INT(evs_subject_state(s, "customer:42"), EVS_SUBJECT_LIVE);
    CHECK_INT(evs_subject_state(s, "customer:1"), EVS_SUBJECT_NONE);
    collect c = {0};
    uint64_t n = 0;
    CHECK_RC(evs_subject_export(s, "customer:42", collect_cb, &c, &n), EVS_OK);
    CHECK_INT(n, 2);
    CHECK_STR(c.buf, "2:{\"a\":1}|4:{\"c\":3}|");
    CHECK_RC(evs_subject_export(s, "customer:1", collect_cb, &c, &n), EVS_ENOTFOUND);
    CHECK_RC(evs_subject_forget(s, "customer:1", NULL), EVS_ENOTFOUND);

    evs_append_result audit;
    CHECK_RC(evs_subject_forget(s, "customer:42", &audit), EVS_OK);
    CHECK_INT(audit.first_global_position, 6);
    CHECK_INT(evs_subject_state(s, "customer:42"), EVS_SUBJECT_FORGOTTEN);
    const char *want = "2:R|3:{\"b\":2}|4:R|5:{\"d\":4}|";
    summary(s, NULL, NULL, EVS_FORWARD, got, sizeof got);
    CHECK_STR(got, want);
    summary(s, NULL, NULL, EVS_BACKWARD, got, sizeof got);
    CHECK_STR(got, "5:{\"d\":4}|4:R|3:{\"b\":2}|2:R|");
    summary(s, "shop", NULL, EVS_FORWARD, got, sizeof got);
    CHECK_STR(got, "2:R|3:{\"b\":2}|4:R|");
    summary(s, "shop", NULL, EVS_BACKWARD, got, sizeof got);
    CHECK_STR(got, "4:R|3:{\"b\":2}|2:R|");
    {
        const char *tags[1] = {"customer:42"};
        evs_filter f;
        memset(&f, 0, sizeof f);
        f.tags = tags, f.n_tags = 1;
        summary(s, NULL, &f, EVS_FORWARD, got, sizeof got);
        CHECK_STR(got, "2:R|4:R|5:{\"d\":4}|");
        const char *types[1] = {"Happened"};
        memset(&f, 0, sizeof f);
        f.event_types = types, f.n_event_types = 1;
        summary(s, NULL, &f, EVS_FORWARD, got, sizeof got);
        CHECK_STR(got, want);
    }
    /* JSON */
    {
        evs_reader *r;
        const evs_event *ev;
        CHECK_RC(evs_read_stream(s, "shop", 1, EVS_FORWARD, 1, &r), EVS_OK);
        CHECK_RC(evs_reader_next(r, &ev), EVS_OK);
        char *js = NULL;
        size_t jn;
        CHECK_RC(evs_event_to_json(ev, &js, &jn), EVS_OK);
        CHECK_CONTAINS(js, "\"stream_position\":1");
        CHECK_CONTAINS(js, "\"data\":null,\"$redacted\":true");
        free(js);
        evs_reader_close(r);
    }
    /* the audit event */
    {
        evs_reader *r;
        const evs_event *ev;
        CHECK_RC(evs_read_all(s, 6, EVS_FORWARD, NULL, 1, &r), EVS_OK);
        CHECK_RC(evs_reader_next(r, &ev), EVS_OK);
        if (ev) {
            CHECK_MEM(ev->stream, ev->stream_len, "$subjects");
            CHECK_MEM(ev->event_type, ev->event_type_len, "$subject-forgotten");
            CHECK_MEM(ev->data, ev->data_len, "{\"subject\":\"customer:42\"}");
        }
        evs_reader_close(r);
    }
    /* a subscription from the start */
    CHECK_RC(evs_bus_open(s, &bus), EVS_OK);
    evs_sub_config sc;
    evs_sub_config_init(&sc);
    sc.name = "shred-sub";
    evs_subscription *sub = NULL;
    CHECK_RC(evs_sub_open(bus, &sc, sub_handler, NULL, &sub), EVS_OK);
    size_t delivered = 0;
    CHECK_RC(evs_sub_poll(sub, 0, 0, &delivered), EVS_OK);
    CHECK_INT(sub_total, 4);
    CHECK_INT(sub_redacted, 2);
    evs_sub_close(sub);
    evs_bus_close(bus);
    /* appends under the forgotten subject are refused; others go on */
    CHECK_RC(append1(s, "shop", "{\"e\":5}", "customer:42", NULL), EVS_EKEY);
    CHECK_CONTAINS(evs_errmsg(), "forgotten");
    CHECK_RC(append1(s, "shop", "{\"e\":5}", "customer:7", NULL), EVS_OK);
    CHECK_RC(evs_subject_export(s, "customer:42", collect_cb, &c, &n), EVS_EDELETED);
    /* forget again: another audit event, still forgotten */
    CHECK_RC(evs_subject_forget(s, "customer:42", &audit), EVS_OK);
    CHECK_INT(audit.first_global_position, 8);
    evs_store_close(s);
    /* reopened, and without the master key: still redacted, not an error */
    s = open_with(dir, NULL, NULL);
    if (!s) return;
    summary(s, "shop", NULL, EVS_FORWARD, got, sizeof got);
    CHECK_CONTAINS(got, "2:R|");
    CHECK_CONTAINS(got, "no master key");
    evs_store_close(s);
    s = open_with(dir, HEX1, NULL);
    if (!s) return;
    summary(s, "shop", NULL, EVS_FORWARD, got, sizeof got);
    CHECK_STR(got, "2:R|3:{\"b\":2}|4:R|7:{\"e\":5}|");
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    evs_store_close(s);
    /* a damaged key row: a wrong master key or altered bytes, never garbage */
    if (cf_pg) {
        char done[32];
        pg_value(dir, "WITH u AS (UPDATE evs_subject_keys SET wrapped = set_byte(wrapped, 40, get_byte(wrapped, 40) # 1) "
                      "WHERE wrapped IS NOT NULL RETURNING 1) SELECT count(*) FROM u", NULL, done, sizeof done);
        CHECK_STR(done, "1");
        s = open_with(dir, HEX1, NULL);
        if (!s) return;
        summary(s, "shop", NULL, EVS_FORWARD, got, sizeof got);
        CHECK_CONTAINS(got, "2:R|");
        CHECK_CONTAINS(got, "does not unwrap");
        CHECK_CONTAINS(got, "customer:7");
        evs_store_close(s);
        /* the forgotten subject's row holds no key at all */
        pg_value(dir, "SELECT coalesce(length(wrapped), -1) || ',' || (forgotten_at IS NOT NULL) FROM evs_subject_keys "
                      "WHERE subject = $1", "customer:42", got, sizeof got);
        CHECK_STR(got, "-1,true");
    } else {
        char path[8192];
        snprintf(path, sizeof path, "%s/subject-keys", dir);
        char cmd[8300];
        snprintf(cmd, sizeof cmd, "for f in %s/*.key; do printf 'X' | dd of=$f bs=1 seek=95 conv=notrunc 2>/dev/null; done",
                 path);
        CHECK_INT(system(cmd), 0);
        s = open_with(dir, HEX1, NULL);
        if (!s) return;
        summary(s, "shop", NULL, EVS_FORWARD, got, sizeof got);
        CHECK_CONTAINS(got, "malformed or damaged");
        CHECK_CONTAINS(got, ".key");
        evs_store_close(s);
    }
    cf_drop(dir);
}

/* ------------------------------------------------------------ two handles on one store */

typedef struct racer {
    evs_store *s;
    const char *stream;
    int round;
    pthread_barrier_t *go;
    int failed;
} racer;

/* First appends for subjects customer:0.. of one round, racing the other handle's for the same subjects. */
static void *race_main(void *arg) {
    racer *x = arg;
    pthread_barrier_wait(x->go);
    for (int i = 0; i < 20; i++) {
        char tag[32], data[64];
        snprintf(tag, sizeof tag, "customer:%d", x->round * 20 + i);
        snprintf(data, sizeof data, "{\"by\":\"%s\",\"i\":%d}", x->stream, i);
        if (append1(x->s, x->stream, data, tag, NULL)) {
            fprintf(stderr, "race append %s %s: %s\n", x->stream, tag, evs_errmsg());
            x->failed++;
        }
    }
    return NULL;
}

/* Read stream through s: how many events, how many redacted, and whether all others parse as plaintext. */
static int read_counts(evs_store *s, const char *stream, int *total, int *redacted) {
    evs_reader *r;
    const evs_event *ev;
    int rc = evs_read_stream(s, stream, 1, EVS_FORWARD, 0, &r);
    *total = *redacted = 0;
    if (rc) return rc;
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        (*total)++;
        if (ev->redacted) (*redacted)++;
        else if (ev->data_len < 2 || ev->data[0] != '{' || memmem(ev->data, ev->data_len, "$enc", 4)) rc = EVS_ECORRUPT;
        if (rc) break;
    }
    evs_reader_close(r);
    return rc == EVS_DONE ? EVS_OK : rc;
}

static void test_two_handles(void) {
    if (!cf_pg) {
        /* one writer per directory (its LOCK): two handles on one store are the PostgreSQL engine's case */
        printf("two handles: skipped on the embedded engine (a store directory has one writer)\n");
        return;
    }
    char got[4096];
    char *url = cf_fresh("two");
    evs_store *a = open_with(url, HEX1, NULL), *b = open_with(url, HEX1, NULL);
    CHECK(a && b);
    if (!a || !b) return;
    /* B appends before it has seen A's metadata: the database refuses the plaintext, B seals and retries */
    CHECK_RC(append1(b, "acct", "{\"before\":\"PLAIN-BEFORE\"}", NULL, NULL), EVS_OK);
    CHECK_RC(SETMETA(a, "acct", "{\"$encrypt\":\"stream\"}"), EVS_OK);
    CHECK_RC(SETMETA(a, "people", "{\"$encrypt\":\"tag:customer:\"}"), EVS_OK);
    CHECK_RC(append1(b, "acct", "{\"n\":\"SECRET-B\"}", NULL, NULL), EVS_OK);
    CHECK_RC(append1(a, "acct", "{\"n\":\"SECRET-A\"}", NULL, NULL), EVS_OK);
    CHECK(!log_contains(url, "SECRET"));
    CHECK(log_contains(url, "PLAIN-BEFORE")); /* what was written before the metadata stays as it was */
    summary(a, "acct", NULL, EVS_FORWARD, got, sizeof got);
    CHECK_STR(got, "1:{\"before\":\"PLAIN-BEFORE\"}|4:{\"n\":\"SECRET-B\"}|5:{\"n\":\"SECRET-A\"}|");
    summary(b, "acct", NULL, EVS_FORWARD, got, sizeof got);
    CHECK_STR(got, "1:{\"before\":\"PLAIN-BEFORE\"}|4:{\"n\":\"SECRET-B\"}|5:{\"n\":\"SECRET-A\"}|");

    /* first appends for the same subjects through A and B at once: one key each, whoever won */
    for (int round = 0; round < 5; round++) {
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        racer ra = {a, "people", round, &go, 0}, rb = {b, "people", round, &go, 0};
        pthread_t ta, tb;
        pthread_create(&ta, NULL, race_main, &ra);
        pthread_create(&tb, NULL, race_main, &rb);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        CHECK_INT(ra.failed + rb.failed, 0);
    }
    pg_value(url, "SELECT count(*) || ',' || count(DISTINCT subject) FROM evs_subject_keys WHERE subject LIKE 'customer:%'",
             NULL, got, sizeof got);
    CHECK_STR(got, "100,100");
    /* both streams' rows are guarded: acct's by its metadata written after its first event, people's by the
       database's check when its row was made (its metadata came first) */
    pg_value(url, "SELECT string_agg(aggregate_id || ':' || guarded, ',' ORDER BY aggregate_id) FROM event_streams "
             "WHERE aggregate_id IN ('acct', 'people')", NULL, got, sizeof got);
    CHECK_STR(got, "acct:true,people:true");
    {
        /* a third handle, with nothing cached, decrypts every event either handle wrote */
        evs_store *c = open_with(url, HEX1, NULL);
        int total, red;
        CHECK_RC(read_counts(c, "people", &total, &red), EVS_OK);
        CHECK_INT(total, 200);
        CHECK_INT(red, 0);
        evs_store_close(c);
    }

    /* forget through B; A had the key cached.  A's reads turn redacted once B's notification arrives */
    int total, red;
    CHECK_RC(read_counts(a, "acct", &total, &red), EVS_OK);
    CHECK_INT(red, 0);
    evs_append_result audit;
    int64_t t0 = evs__mono_ns();
    CHECK_RC(evs_subject_forget(b, "acct", &audit), EVS_OK);
    int64_t waited = 0;
    for (;;) {
        CHECK_RC(read_counts(a, "acct", &total, &red), EVS_OK);
        waited = evs__mono_ns() - t0;
        if (red == 2 || waited > 30000000000LL) break;
        usleep(1000);
    }
    printf("two handles: a forget through B reached A's reads after %.1f ms\n", (double)waited / 1e6);
    CHECK_INT(total, 3);
    CHECK_INT(red, 2); /* the event written before "$encrypt" is plaintext and stays readable */
    CHECK_INT(evs_subject_state(a, "acct"), EVS_SUBJECT_FORGOTTEN);
    CHECK_RC(append1(a, "acct", "{\"n\":\"AFTER\"}", NULL, NULL), EVS_EKEY);
    CHECK_CONTAINS(evs_errmsg(), "forgotten");
    CHECK_RC(evs_subject_export(a, "acct", collect_cb, &(collect){0}, NULL), EVS_EDELETED);
    evs_store_close(a);
    evs_store_close(b);
    /* a handle opened afterwards: still forgotten, no fresh key for the subject */
    a = open_with(url, HEX1, NULL);
    CHECK_RC(append1(a, "acct", "{\"n\":\"AFTER\"}", NULL, NULL), EVS_EKEY);
    pg_value(url, "SELECT count(*) FROM evs_subject_keys WHERE subject = 'acct' AND wrapped IS NULL", NULL, got,
             sizeof got);
    CHECK_STR(got, "1");
    evs_store_close(a);
    /* another master key cannot open it: the check row verifies only with the one that made the keys */
    int rc;
    CHECK(open_with(url, HEX2, &rc) == NULL);
    CHECK_RC(rc, EVS_EKEY);
    CHECK_CONTAINS(evs_errmsg(), "evs_subject_master");
    cf_drop(url);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    printf("engine: %s\n", cf_engine());
    char *base = tu_tempdir("crypt");
    test_master_key_parse();
    test_key_files(base);
    test_roundtrip_and_retry();
    test_forget();
    test_two_handles();
    tu_rmrf(base);
    free(base);
    return TEST_REPORT();
}

/*
 * test_crypt_concurrency.c — crypto-shredding under threads (label
 * concurrency: run under TSan too).
 *
 * Four appender threads append to the tag-encrypted stream "people" and to
 * their own stream-encrypted streams, under 40 shared subjects (so several
 * threads create the same subject's key at once) — single events and
 * 5-event appends; one thread forgets subjects while they are being
 * appended to; two reader threads walk $all and a tag filter over and over.
 * Checked:
 *   - no append fails except with EVS_EKEY "forgotten" for a subject a
 *     forget has already started on; no read fails;
 *   - every event a reader sees is plaintext naming its subject or redacted,
 *     never garbage, and once a reader has seen a subject's forget complete
 *     it never sees that subject's data again;
 *   - afterwards: every acknowledged event is there; events of forgotten
 *     subjects read redacted, the others decrypt to what was written; each
 *     subject has exactly one key file (on PostgreSQL: one row of
 *     evs_subject_keys).
 *
 * One suite for every storage engine (tests/conformance.h): "postgresql"
 * runs it on a fresh database (crypt_concurrency_pg).
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>

#include "conformance.h"
#include "evstore_crypt.h"

#define NSUBJ 40
#define NAPPENDERS 4
#define ROUNDS 150
static const char *HEX = "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";

static evs_store *S;
static _Atomic int forget_started[NSUBJ], forget_done[NSUBJ];
static _Atomic int stop_readers;
static _Atomic int errors;
static _Atomic uint64_t acked;

static void *appender(void *arg) {
    int t = (int)(intptr_t)arg;
    char stream[32];
    snprintf(stream, sizeof stream, "acct-%d", t);
    for (int i = 0; i < ROUNDS; i++) {
        int subj = (i * 7 + t) % NSUBJ, n = i % 3 == 0 ? 5 : 1;
        char s[32], data[5][96];
        snprintf(s, sizeof s, "cust:%d", subj);
        evs_event_in ev[5];
        const char *tags[1] = {s};
        for (int k = 0; k < n; k++) {
            snprintf(data[k], sizeof data[k], "{\"who\":\"cust:%d\",\"t\":%d,\"i\":%d,\"k\":%d}", subj, t, i, k);
            ev[k] = tu_event("Touched", data[k]);
            ev[k].tags = tags, ev[k].ntags = 1;
        }
        evs_append_result r;
        int before = atomic_load(&forget_started[subj]);
        int rc = evs_append(S, i % 2 ? "people" : stream, EVS_EXPECT_ANY, ev, (size_t)n, &r, NULL);
        if (rc == EVS_EKEY && i % 2 && (before || atomic_load(&forget_started[subj]))) continue;
        if (rc) {
            fprintf(stderr, "append %s: %s\n", s, evs_errmsg());
            atomic_fetch_add(&errors, 1);
            continue;
        }
        atomic_fetch_add(&acked, (uint64_t)n);
    }
    return NULL;
}

static void *forgetter(void *arg) {
    (void)arg;
    for (int subj = 0; subj < NSUBJ; subj += 3) {
        char s[32];
        snprintf(s, sizeof s, "cust:%d", subj);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        /* forget a subject that has a key by now (appends on PostgreSQL take longer to get there) */
        for (int w = 0; w < 5000 && evs_subject_state(S, s) == EVS_SUBJECT_NONE; w++) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
        atomic_store(&forget_started[subj], 1);
        int rc = evs_subject_forget(S, s, NULL);
        if (rc && rc != EVS_ENOTFOUND) {
            fprintf(stderr, "forget %s: %s\n", s, evs_errmsg());
            atomic_fetch_add(&errors, 1);
        }
        if (rc == EVS_ENOTFOUND) atomic_store(&forget_started[subj], 0);
        else atomic_store(&forget_done[subj], 1);
    }
    return NULL;
}

/* One pass over $all (tag: one subject's events): judge every event. */
static void read_pass(const char *tag) {
    int done_before[NSUBJ];
    for (int i = 0; i < NSUBJ; i++) done_before[i] = atomic_load(&forget_done[i]);
    evs_reader *r;
    evs_filter f;
    memset(&f, 0, sizeof f);
    const char *tags[1] = {tag};
    if (tag) f.tags = tags, f.n_tags = 1;
    if (evs_read_all(S, 1, EVS_FORWARD, tag ? &f : NULL, 0, &r)) {
        atomic_fetch_add(&errors, 1);
        return;
    }
    const evs_event *ev;
    int rc;
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        if (ev->stream[0] == '$') continue;
        int who = -1;
        if (ev->redacted) continue;
        char b[160]; /* ev->data is a range, not a C string: sscanf a terminated copy */
        snprintf(b, sizeof b, "%.*s", (int)ev->data_len, ev->data);
        if (sscanf(b, "{\"who\":\"cust:%d\"", &who) != 1 || who < 0 || who >= NSUBJ) {
            fprintf(stderr, "garbage at %llu: %.*s\n", (unsigned long long)ev->global_position, (int)ev->data_len,
                    ev->data);
            atomic_fetch_add(&errors, 1);
        } else if (done_before[who] && ev->stream[0] == 'p') {
            fprintf(stderr, "cust:%d forgotten, still read in plaintext\n", who);
            atomic_fetch_add(&errors, 1);
        }
    }
    if (rc != EVS_DONE) {
        fprintf(stderr, "read: %s\n", evs_errmsg());
        atomic_fetch_add(&errors, 1);
    }
    evs_reader_close(r);
}

static void *reader(void *arg) {
    const char *tag = arg;
    while (!atomic_load(&stop_readers)) read_pass(tag);
    return NULL;
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    printf("engine: %s\n", cf_engine());
    char *dir = cf_fresh("cryptconc");
    uint8_t k[32];
    CHECK_RC(evs_store_create(&S), EVS_OK);
    CHECK_RC(evs_master_key_parse(HEX, 64, k), EVS_OK);
    CHECK_RC(evs_store_set_master_key(S, k), EVS_OK);
    CHECK_RC(evs_store_set_durability(S, EVS_DURABILITY_NONE, 0), EVS_OK);
    CHECK_RC(evs_store_open(S, dir, EVS_OPEN_CREATE), EVS_OK);
    const char *m1 = "{\"$encrypt\":\"tag:cust:\"}", *m2 = "{\"$encrypt\":\"stream\"}";
    CHECK_RC(evs_stream_set_metadata(S, "people", EVS_EXPECT_ANY, m1, strlen(m1), NULL), EVS_OK);
    for (int t = 0; t < NAPPENDERS; t++) {
        char st[32];
        snprintf(st, sizeof st, "acct-%d", t);
        /* stream-encrypted: the subject is the stream (forgetting a customer does not touch them) */
        CHECK_RC(evs_stream_set_metadata(S, st, EVS_EXPECT_ANY, m2, strlen(m2), NULL), EVS_OK);
    }
    pthread_t ap[NAPPENDERS], fg, rd[2];
    pthread_create(&rd[0], NULL, reader, NULL);
    pthread_create(&rd[1], NULL, reader, "cust:3");
    for (int t = 0; t < NAPPENDERS; t++) pthread_create(&ap[t], NULL, appender, (void *)(intptr_t)t);
    pthread_create(&fg, NULL, forgetter, NULL);
    for (int t = 0; t < NAPPENDERS; t++) pthread_join(ap[t], NULL);
    pthread_join(fg, NULL);
    atomic_store(&stop_readers, 1);
    pthread_join(rd[0], NULL);
    pthread_join(rd[1], NULL);
    CHECK_INT(atomic_load(&errors), 0);

    /* afterwards: count and judge every event */
    evs_reader *r;
    const evs_event *ev;
    uint64_t seen = 0, redacted = 0, bad = 0;
    CHECK_RC(evs_read_all(S, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    int rc;
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        if (ev->stream[0] == '$') continue;
        seen++;
        int who = -1;
        char b[160]; /* tags and data are ranges, not C strings: sscanf a terminated copy */
        if (ev->redacted)
            snprintf(b, sizeof b, "%.*s", (int)ev->tags_len, ev->tags ? ev->tags : "");
        else
            snprintf(b, sizeof b, "%.*s", (int)ev->data_len, ev->data);
        if (ev->redacted) {
            redacted++;
            if (sscanf(b, "[\"cust:%d\"]", &who) != 1 || who < 0 || who >= NSUBJ || !forget_done[who] ||
                ev->stream[0] != 'p')
                bad++;
        } else if (sscanf(b, "{\"who\":\"cust:%d\"", &who) != 1 || who < 0 || who >= NSUBJ ||
                   (forget_done[who] && ev->stream[0] == 'p')) {
            bad++;
        }
        if (bad && bad < 3)
            fprintf(stderr, "at %llu stream %.*s: %.*s%s\n", (unsigned long long)ev->global_position,
                    (int)ev->stream_len, ev->stream, (int)ev->data_len, ev->data, ev->redacted ? " (redacted)" : "");
    }
    CHECK_RC(rc, EVS_DONE);
    evs_reader_close(r);
    CHECK_INT(seen, atomic_load(&acked));
    CHECK_INT(bad, 0);
    CHECK(redacted > 0);
    CHECK_RC(evs_store_close(S), EVS_OK);
    if (cf_pg) {
        /* one row per subject that got one: NSUBJ customers + NAPPENDERS streams; one master check */
        PGconn *c = PQconnectdb(dir);
        PGresult *q = PQexec(c, "SELECT (SELECT count(DISTINCT subject) FROM evs_subject_keys), "
                                "(SELECT count(*) FROM evs_subject_master)");
        CHECK_INT(PQresultStatus(q), PGRES_TUPLES_OK);
        if (PQresultStatus(q) == PGRES_TUPLES_OK) {
            CHECK_INT(atoi(PQgetvalue(q, 0, 0)), NSUBJ + NAPPENDERS);
            CHECK_INT(atoi(PQgetvalue(q, 0, 1)), 1);
        }
        PQclear(q);
        PQfinish(c);
        cf_drop(dir);
        return TEST_REPORT();
    }
    /* one key file per subject that got one: NSUBJ customers + NAPPENDERS streams, + MASTER */
    char kd[4200];
    snprintf(kd, sizeof kd, "%s/subject-keys", dir);
    DIR *d = opendir(kd);
    int files = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') files++;
    if (d) closedir(d);
    CHECK_INT(files, NSUBJ + NAPPENDERS + 1);
    cf_drop(dir);
    return TEST_REPORT();
}

/*
 * test_crypt_kill9.c — crypto-shredding survives kill -9: a forget that
 * returned stays a forget, a key that was used stays usable, and nothing
 * in between (a torn key file, a half-written tombstone) is ever seen.
 *
 * Each cycle forks a child that opens the store (sync durability) and, in a
 * loop, (a) appends an encrypted event under a new subject "cust:N" of the
 * tag-encrypted stream "people" and reports it acknowledged, then (b)
 * forgets an earlier subject and reports the forget acknowledged.  Its data
 * names the subject, so every event is checkable.  The parent kills it with
 * SIGKILL after a random number of reports or a random delay, so kills land
 * inside key creation, the forget's write/rename/fsync and the audit
 * append.  After each kill the parent opens the store and proves:
 *   1. every acknowledged append reads back: plaintext equal to what was
 *      written, or redacted when its subject's forget was acknowledged or
 *      may have happened (a forget in flight when the kill came);
 *   2. every acknowledged forget reads redacted on the stream read and the
 *      $all read, and evs_subject_state says forgotten;
 *   3. no read fails (no torn key file, no EVS_ECORRUPT/EKEY) and no
 *      *.tmp file is left after the open;
 *   4. evs_store_check passes.
 * EVS_CRASH_CYCLES sets the number of cycles (default 30); EVS_SEED repeats a run.
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "evstore_crypt.h"
#include "testutil.h"

#define MAXSUBJ 20000
static const char *HEX = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a00112233445566778899aabbccddeeff";

enum { M_APPEND = 1, M_FORGET_START = 2, M_FORGET_DONE = 3, M_ERROR = 4 };
typedef struct msg {
    uint32_t kind;
    uint32_t subj;
    uint64_t gpos;
} msg;

/* per subject: 0 unknown, 1 appended (acked), 2 forget started, 3 forget acked */
static int state[MAXSUBJ];
static uint64_t gpos_of[MAXSUBJ];
static int in_flight_forgets; /* kills that came during a forget: how often the hard case ran */

static evs_store *open_store(const char *dir) {
    evs_store *s = NULL;
    uint8_t k[32];
    if (evs_store_create(&s) || evs_master_key_parse(HEX, 64, k) || evs_store_set_master_key(s, k) ||
        evs_store_open(s, dir, EVS_OPEN_CREATE)) {
        fprintf(stderr, "open %s: %s\n", dir, evs_errmsg());
        evs_store_close(s);
        return NULL;
    }
    return s;
}

static void child(const char *dir, int fd, uint32_t next, uint32_t seed) {
    evs_store *s = open_store(dir);
    msg m = {M_ERROR, 0, 0};
    if (!s) {
        (void)!write(fd, &m, sizeof m);
        _exit(3);
    }
    for (uint32_t i = next; i < MAXSUBJ; i++) {
        char subj[32], data[64];
        snprintf(subj, sizeof subj, "cust:%u", i);
        snprintf(data, sizeof data, "{\"who\":\"%s\"}", subj);
        evs_event_in e = tu_event("Registered", data);
        const char *tags[1] = {subj};
        e.tags = tags, e.ntags = 1;
        evs_append_result r;
        if (evs_append(s, "people", EVS_EXPECT_ANY, &e, 1, &r, NULL)) {
            fprintf(stderr, "child append: %s\n", evs_errmsg());
            (void)!write(fd, &m, sizeof m);
            _exit(3);
        }
        m = (msg){M_APPEND, i, r.first_global_position};
        (void)!write(fd, &m, sizeof m);
        if (i > 2 && (i + seed) % 2 == 0) {
            uint32_t victim = i - 1 - (i + seed) % 3;
            char vs[32];
            snprintf(vs, sizeof vs, "cust:%u", victim);
            if (evs_subject_state(s, vs) == EVS_SUBJECT_NONE) continue; /* never appended (a skipped number) */
            m = (msg){M_FORGET_START, victim, 0};
            (void)!write(fd, &m, sizeof m);
            int rc = evs_subject_forget(s, vs, NULL);
            if (rc) {
                fprintf(stderr, "child forget %s: %s\n", vs, evs_errmsg());
                m.kind = M_ERROR;
                (void)!write(fd, &m, sizeof m);
                _exit(3);
            }
            m = (msg){M_FORGET_DONE, victim, 0};
            (void)!write(fd, &m, sizeof m);
        }
    }
    evs_store_close(s);
    _exit(0);
}

static int count_tmp(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/subject-keys", dir);
    DIR *d = opendir(p);
    int n = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) n++;
    closedir(d);
    return n;
}

static void verify(const char *dir, uint32_t next) {
    evs_store *s = open_store(dir);
    CHECK(s != NULL);
    if (!s) return;
    CHECK_INT(count_tmp(dir), 0);
    for (uint32_t i = 0; i < next; i++) {
        if (!state[i]) continue;
        char subj[32];
        snprintf(subj, sizeof subj, "cust:%u", i);
        int st = evs_subject_state(s, subj);
        if (state[i] == 3) CHECK_INT(st, EVS_SUBJECT_FORGOTTEN);
        else if (state[i] == 1) CHECK_INT(st, EVS_SUBJECT_LIVE);
        else CHECK(st == EVS_SUBJECT_LIVE || st == EVS_SUBJECT_FORGOTTEN);
        if (state[i] == 2) in_flight_forgets++;
        if (state[i] == 2) state[i] = st == EVS_SUBJECT_FORGOTTEN ? 3 : 1; /* settled by the open */
    }
    /* $all and the stream, both checked against what was reported */
    for (int pass = 0; pass < 2; pass++) {
        evs_reader *r;
        int rc = pass ? evs_read_stream(s, "people", 1, EVS_FORWARD, 0, &r) : evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r);
        int any = 0;
        for (uint32_t i = 0; i < next && !any; i++) any = state[i] != 0;
        if (rc == EVS_ENOTFOUND && pass && !any) continue; /* killed before any append was acknowledged */
        CHECK_RC(rc, EVS_OK);
        if (rc) continue;
        const evs_event *ev;
        int seen = 0;
        static unsigned char hit[MAXSUBJ];
        memset(hit, 0, sizeof hit);
        while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
            if (ev->stream[0] == '$') continue;
            unsigned who = 0;
            /* ev's fields are ranges (into the log mapping, or a decryption buffer), not C strings:
               sscanf reads to a NUL, so scan a terminated copy */
            char b[160];
            if (ev->redacted) {
                /* which subject: its tag */
                snprintf(b, sizeof b, "%.*s", (int)ev->tags_len, ev->tags ? ev->tags : "");
                if (sscanf(b, "[\"cust:%u\"]", &who) != 1 || who >= MAXSUBJ) {
                    CHECK(0);
                    continue;
                }
                if (state[who] == 1) {
                    fprintf(stderr, "cust:%u reads redacted but was never forgotten\n", who);
                    CHECK(0);
                }
            } else {
                snprintf(b, sizeof b, "%.*s", (int)ev->data_len, ev->data);
                if (sscanf(b, "{\"who\":\"cust:%u\"}", &who) != 1 || who >= MAXSUBJ) {
                    fprintf(stderr, "garbage data at %llu: %.*s\n", (unsigned long long)ev->global_position,
                            (int)ev->data_len, ev->data);
                    CHECK(0);
                    continue;
                }
                if (state[who] == 3) {
                    fprintf(stderr, "cust:%u was forgotten (acknowledged) but reads in plaintext\n", who);
                    CHECK(0);
                }
            }
            if (state[who] && gpos_of[who] && gpos_of[who] != ev->global_position) {
                fprintf(stderr, "cust:%u at %llu, acknowledged at %llu\n", who,
                        (unsigned long long)ev->global_position, (unsigned long long)gpos_of[who]);
                CHECK(0);
            }
            seen++;
            hit[who] = 1;
        }
        CHECK_RC(rc, EVS_DONE);
        evs_reader_close(r);
        /* acknowledged: the appends the child reported.  A subject it forgot without having reported its
           append (killed between the append and the report, then picked as a victim by the next child) has
           a key, yet its append may not have finished: its event may be missing, and that is no loss */
        int acked = 0, missing = 0;
        for (uint32_t i = 0; i < next; i++) {
            if (!state[i] || !gpos_of[i]) continue;
            acked++;
            if (hit[i]) continue;
            if (missing++ < 5) /* say which, and where they were acknowledged */
                fprintf(stderr, "%s: cust:%u (state %d) acknowledged at %llu is missing\n", pass ? "stream" : "$all", i,
                        state[i], (unsigned long long)gpos_of[i]);
        }
        CHECK_INT(missing, 0);
        CHECK(seen >= acked);
    }
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    evs_store_close(s);
}

int main(void) {
    const char *cy = getenv("EVS_CRASH_CYCLES"), *sd = getenv("EVS_SEED");
    int cycles = cy ? atoi(cy) : 30;
    unsigned seed = sd ? (unsigned)atoi(sd) : (unsigned)time(NULL);
    fprintf(stderr, "seed %u\n", seed);
    srand(seed);
    char *dir = tu_tempdir("cryptkill");
    evs_store *s = open_store(dir);
    if (!s) return 2;
    const char *meta = "{\"$encrypt\":\"tag:cust:\"}";
    CHECK_RC(evs_stream_set_metadata(s, "people", EVS_EXPECT_ANY, meta, strlen(meta), NULL), EVS_OK);
    evs_store_close(s);
    uint32_t next = 0;
    for (int c = 0; c < cycles && next < MAXSUBJ - 500; c++) {
        int p[2];
        if (pipe(p)) return 2;
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            child(dir, p[1], next, (uint32_t)rand());
        }
        close(p[1]);
        int stop_after = 1 + rand() % 40, reports = 0;
        struct pollfd pf = {p[0], POLLIN, 0};
        /* a sanitized child opens slowly: give it the time to do something */
        int scale = getenv("EVS_SANITIZED") ? 20 : 1;
        int delay_ms = rand() % 3 == 0 ? (1 + rand() % 30) * scale : 2000 * scale;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
            struct timespec t1;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            long el = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
            if (el >= delay_ms || reports >= stop_after) break;
            if (poll(&pf, 1, (int)(delay_ms - el)) <= 0) continue;
            msg m;
            ssize_t n = read(p[0], &m, sizeof m);
            if (n != sizeof m) break;
            reports++;
            if (m.kind == M_ERROR) {
                CHECK(0);
                break;
            }
            if (m.kind == M_APPEND) {
                state[m.subj] = 1;
                gpos_of[m.subj] = m.gpos;
                if (m.subj + 1 > next) next = m.subj + 1;
            } else if (m.kind == M_FORGET_START) {
                state[m.subj] = 2;
            } else if (m.kind == M_FORGET_DONE) {
                state[m.subj] = 3;
            }
        }
        kill(pid, SIGKILL);
        /* what the child reported before it died still counts */
        msg m;
        while (read(p[0], &m, sizeof m) == sizeof m) {
            if (m.kind == M_APPEND) {
                state[m.subj] = 1;
                gpos_of[m.subj] = m.gpos;
                if (m.subj + 1 > next) next = m.subj + 1;
            } else if (m.kind == M_FORGET_START) {
                state[m.subj] = 2;
            } else if (m.kind == M_FORGET_DONE) {
                state[m.subj] = 3;
            }
        }
        close(p[0]);
        int status;
        waitpid(pid, &status, 0);
        /* an append the child may have made but not reported: its subject is next */
        next += 1;
        verify(dir, next);
    }
    fprintf(stderr, "%d cycles, %u subjects, %d kills during a forget\n", cycles, next, in_flight_forgets);
    tu_rmrf(dir);
    free(dir);
    return TEST_REPORT();
}

/*
 * test_app_kill9.c — command idempotency across kill -9: a command re-sent
 * after a crash in the middle of it produces its events exactly once, and
 * a re-sent command that had been acknowledged answers its original result.
 *
 * Each cycle forks a child that opens the store (sync durability) and the
 * app layer (snapshots every 10 events, so kills also land in snapshot
 * writes) and runs two threads sending commands "k{i}" (Add n=i on
 * aggregate counter-a{i % 5}, so the threads also conflict and retry) for
 * the ids of its range in order; after each result it writes (i, outcome,
 * first position, version, idempotent) to a pipe.  The parent kills it
 * with SIGKILL after a random number of results or a random 1..40 ms.  The
 * next cycle's range starts at the lowest id the killed child did not
 * acknowledge, so every command that may have been cut mid-way (appended
 * but not answered, or not appended) is sent again, together with some
 * acknowledged ones.  Checked:
 *   1. every result is "accepted"; a re-sent acknowledged command answers
 *      the first position and version it was first acknowledged with;
 *   2. at the end, after a last child re-sends every id without being
 *      killed: the log holds exactly one event per command id (counted by
 *      the command_id in its metadata), at the position its result named;
 *   3. each aggregate loaded through snapshots equals its fold from events.
 * EVS_CRASH_CYCLES sets the number of cycles (default 30); EVS_SEED repeats a run.
 */
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "app_counter.h"
#include "evstore_app.h"
#include "testutil.h"

#define PER_CYCLE 300
#define AGGS 5

typedef struct msg {
    int32_t id;
    int32_t outcome;
    int32_t idempotent;
    int32_t rc;
    uint64_t first_pos, version;
} msg;

typedef struct known {
    uint64_t first_pos, version;
    int acked;
} known;

static known *tab;
static int max_id;
static problems probs;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ------------------------------------------------------------------ child */

typedef struct child_ctx {
    evs_app *app;
    int from, to, parity, fd;
} child_ctx;

static void *child_thread(void *arg) {
    child_ctx *c = arg;
    for (int i = c->from; i < c->to; i++) {
        if (i % 2 != c->parity) continue;
        char id[32], agg[16], data[32];
        snprintf(id, sizeof id, "k%d", i);
        snprintf(agg, sizeof agg, "a%d", i % AGGS);
        snprintf(data, sizeof data, "{\"n\":%d}", i);
        evs_command cmd;
        evs_command_init(&cmd);
        cmd.command_id = id;
        cmd.command_type = "Add";
        cmd.aggregate_id = agg;
        cmd.data = data;
        cmd.data_len = strlen(data);
        evs_command_result r;
        msg m = {0};
        m.id = i;
        m.rc = evs_app_execute(c->app, &cmd, &r);
        if (m.rc == EVS_OK) {
            m.outcome = r.outcome;
            m.idempotent = r.idempotent;
            m.first_pos = r.first_position;
            m.version = r.version;
            evs_command_result_free(&r);
        }
        if (write(c->fd, &m, sizeof m) != sizeof m) _exit(3);
    }
    return NULL;
}

static void child(const char *dir, int from, int to, int fd) {
    evs_store *s = NULL;
    evs_app *a = NULL;
    if (evs_store_create(&s) || evs_store_open(s, dir, EVS_OPEN_CREATE)) _exit(4);
    evs_app_config cfg;
    evs_app_config_init(&cfg);
    cfg.snapshot_every = 10;
    cfg.max_retries = EVS_APP_MAX_RETRIES;
    if (evs_app_open(s, NULL, &cfg, &a) || tc_register(a, "v1")) _exit(5);
    child_ctx cc[2] = {{a, from, to, 0, fd}, {a, from, to, 1, fd}};
    pthread_t th[2];
    for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, child_thread, &cc[t]);
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    evs_app_close(a);
    evs_store_close(s);
    _exit(0);
}

/* ----------------------------------------------------------------- parent */

static void take(const msg *m, int *acked_in_cycle) {
    if (m->rc != EVS_OK || m->outcome != EVS_CMD_ACCEPTED) {
        problem(&probs, "command k%d: rc %d outcome %s", m->id, m->rc, evs_command_outcome_name(m->outcome));
        return;
    }
    known *k = &tab[m->id];
    if (k->acked && (k->first_pos != m->first_pos || k->version != m->version))
        problem(&probs, "command k%d re-sent answered position %llu version %llu, first %llu / %llu", m->id,
                (unsigned long long)m->first_pos, (unsigned long long)m->version, (unsigned long long)k->first_pos,
                (unsigned long long)k->version);
    if (k->acked && !m->idempotent) problem(&probs, "command k%d re-sent was not answered as idempotent", m->id);
    k->acked = 1;
    k->first_pos = m->first_pos;
    k->version = m->version;
    acked_in_cycle[m->id] = 1;
}

/* Run a child over [from, to); kill it after `kill_after` results or `delay_ms` (0: never). */
static void run_child(const char *dir, int from, int to, int kill_after, int delay_ms, int *acked_in_cycle) {
    int pfd[2];
    if (pipe(pfd) != 0) exit(2);
    pid_t pid = fork();
    if (pid < 0) exit(2);
    if (pid == 0) {
        close(pfd[0]);
        child(dir, from, to, pfd[1]);
    }
    close(pfd[1]);
    int got = 0, killed = 0;
    int64_t deadline = now_ms() + (delay_ms ? delay_ms : 600000);
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0 && delay_ms) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        struct pollfd pf = {pfd[0], POLLIN, 0};
        int pr = poll(&pf, 1, killed ? -1 : (int)(left > 0 ? left : 0));
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) continue;
        msg m;
        ssize_t n = read(pfd[0], &m, sizeof m);
        if (n == 0) break;
        if (n != sizeof m) break;
        take(&m, acked_in_cycle);
        if (++got == kill_after && !killed) {
            kill(pid, SIGKILL);
            killed = 1;
        }
    }
    close(pfd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!killed && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) problem(&probs, "child over [%d, %d) failed: status %d", from, to, st);
}

int main(void) {
    const char *cy = getenv("EVS_CRASH_CYCLES"), *sd = getenv("EVS_SEED");
    int cycles = cy ? atoi(cy) : 30;
    if (cycles > 200) cycles = 200; /* the soak run: bounded, each cycle re-sends a range */
    uint64_t seed = sd ? strtoull(sd, NULL, 10) : (uint64_t)time(NULL) * 2654435761u + 1;
    printf("seed %llu, %d cycles\n", (unsigned long long)seed, cycles);
    char *d = tu_tempdir("appkill");
    tab = calloc((size_t)(cycles + 2) * PER_CYCLE + 1, sizeof *tab);
    int *acked = calloc((size_t)(cycles + 2) * PER_CYCLE + 1, sizeof *acked);
    int from = 1;
    for (int c = 0; c < cycles; c++) {
        int to = from + PER_CYCLE;
        if (to - 1 > max_id) max_id = to - 1;
        memset(acked + from, 0, (size_t)PER_CYCLE * sizeof *acked);
        if (rnd(&seed) % 2) run_child(d, from, to, 1 + (int)(rnd(&seed) % (PER_CYCLE - 1)), 0, acked);
        else run_child(d, from, to, 0, 1 + (int)(rnd(&seed) % 40), acked);
        /* the next range starts at the first command this child did not answer */
        int next = from;
        while (next < to && acked[next]) next++;
        from = next;
    }
    /* the last child re-sends everything and is not killed */
    memset(acked, 0, (size_t)(max_id + 1) * sizeof *acked);
    run_child(d, 1, max_id + 1, 0, 0, acked);
    for (int i = 1; i <= max_id; i++)
        if (!acked[i]) problem(&probs, "command k%d got no answer from the last child", i);
    if (probs.count) fprintf(stderr, "%d problems, first: %s\n", probs.count, probs.first);
    CHECK_INT(probs.count, 0);

    /* exactly one event per command id, where its result said */
    evs_store *s = NULL;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_open(s, d, 0), EVS_OK);
    int *events = calloc((size_t)max_id + 1, sizeof *events), wrong_pos = 0, foreign = 0;
    evs_reader *r;
    const evs_event *ev;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    uint64_t total = 0;
    while (evs_reader_next(r, &ev) == EVS_OK) {
        total++;
        json_t *m = json_loadb(ev->metadata, ev->metadata_len, 0, NULL);
        const char *id = json_string_value(json_object_get(m, "command_id"));
        int i = id && id[0] == 'k' ? atoi(id + 1) : 0;
        if (i < 1 || i > max_id) foreign++;
        else {
            events[i]++;
            if (tab[i].first_pos != ev->global_position) wrong_pos++;
        }
        json_decref(m);
    }
    evs_reader_close(r);
    int missing = 0, dup = 0;
    for (int i = 1; i <= max_id; i++) {
        if (events[i] == 0) missing++;
        if (events[i] > 1) dup++;
    }
    printf("%d commands, %llu events\n", max_id, (unsigned long long)total);
    CHECK_INT(missing, 0);
    CHECK_INT(dup, 0);
    CHECK_INT(foreign, 0);
    CHECK_INT(wrong_pos, 0);
    CHECK_INT(total, max_id);

    /* every aggregate through its snapshots equals its fold */
    evs_app *a;
    CHECK_RC(evs_app_open(s, NULL, NULL, &a), EVS_OK);
    CHECK_RC(tc_register(a, "v1"), EVS_OK);
    for (int g = 0; g < AGGS; g++) {
        char id[8], *with = NULL, *without = NULL;
        snprintf(id, sizeof id, "a%d", g);
        CHECK_RC(evs_aggregate_load_json(a, "counter", id, 0, &with, NULL, NULL), EVS_OK);
        CHECK_RC(evs_aggregate_load_json(a, "counter", id, EVS_LOAD_NO_SNAPSHOT, &without, NULL, NULL), EVS_OK);
        if (with && without) CHECK_STR(with, without);
        free(with);
        free(without);
    }
    evs_app_close(a);
    evs_store_close(s);
    free(events);
    free(tab);
    free(acked);
    tu_rmrf(d);
    free(d);
    return TEST_REPORT();
}

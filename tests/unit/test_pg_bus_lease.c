/*
 * test_pg_bus_lease.c — a projection on the PostgreSQL engine runs once
 * across processes, and exactly once across a kill -9 of its holder.
 *
 *   takeover  process A runs projection "leased" (slowly); a standby process
 *             B tries to open it every few milliseconds and is refused
 *             (EVS_ELOCKED) while A lives, and so is this process; A is
 *             killed with kill -9 in the middle of its work; B takes the
 *             lease over and projects to the head.  The final state of
 *             every partition is the fold of that stream's events: each
 *             applied once (a replayed event would show as a position not
 *             above the state's last one, counted in "dup"), none skipped.
 *   fencing   a holder whose lease session is ended under it (the database
 *             terminates the lease's backend) cannot commit any more, while
 *             the new holder that took the lease goes on to the correct
 *             state.
 *
 * Runs in the private cluster of the CTest fixture pg_cluster (exit 77
 * without it), a fresh database per scenario.
 */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conformance.h"
#include "evstore_bus.h"

#define STREAMS 7
#define EVENTS 1400

typedef struct st {
    unsigned long long last, n, sum, dup;
} st;

static void parse_state(const char *s, st *o) {
    memset(o, 0, sizeof *o);
    if (strcmp(s, "{}") != 0)
        sscanf(s, "{\"dup\":%llu,\"last\":%llu,\"n\":%llu,\"sum\":%llu}", &o->dup, &o->last, &o->n, &o->sum);
}

static int slow_ns; /* a pause per event, so a kill lands mid-work */

static int fold(void *ctx, const evs_event *ev, const char *state, size_t len, char **out, size_t *out_len, char *err,
                size_t cap) {
    (void)ctx, (void)len, (void)err, (void)cap;
    st s;
    parse_state(state, &s);
    const char *p = memchr(ev->data, ':', ev->data_len);
    long v = p ? strtol(p + 1, NULL, 10) : 0;
    if (ev->global_position <= s.last) s.dup++;
    s.last = ev->global_position;
    s.n++;
    s.sum += (unsigned long long)v;
    char buf[160];
    int n = snprintf(buf, sizeof buf, "{\"dup\":%llu,\"last\":%llu,\"n\":%llu,\"sum\":%llu}", s.dup, s.last, s.n, s.sum);
    if (!(*out = strdup(buf))) return 1;
    *out_len = (size_t)n;
    if (slow_ns) {
        struct timespec ts = {0, slow_ns};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int open_fold(evs_bus *b, const char *name, evs_projection **p) {
    evs_proj_config c;
    evs_proj_config_init(&c);
    c.name = name;
    c.apply = fold;
    c.checkpoint_every = 25;
    c.page_size = 50;
    c.filter.stream_prefix = "acct-";
    return evs_proj_open(b, &c, p);
}

static evs_store *open_store(const char *where) {
    evs_store *s = NULL;
    if (evs_store_create(&s) || evs_store_open(s, where, EVS_OPEN_CREATE)) {
        fprintf(stderr, "open %s: %s\n", where, evs_errmsg());
        exit(2);
    }
    return s;
}

/* EVENTS events over STREAMS streams; event i carries v = i % 11 (the fold's sums). */
static void fill(const char *where) {
    evs_store *s = open_store(where);
    for (int i = 0; i < EVENTS; i += 100) {
        evs_event_in ev[100];
        char data[100][32], stream[32];
        snprintf(stream, sizeof stream, "acct-%d", (i / 100) % STREAMS);
        for (int j = 0; j < 100; j++) {
            snprintf(data[j], sizeof data[j], "{\"v\":%d}", (i + j) % 11);
            ev[j] = tu_event("Moved", data[j]);
        }
        evs_append_result r;
        CHECK_RC(evs_append(s, stream, EVS_EXPECT_ANY, ev, 100, &r, NULL), EVS_OK);
    }
    evs_store_close(s);
}

/* Every partition of name holds the fold of its stream's events, each once; the checkpoint is the head. */
static void check_fold(const char *where, const char *name) {
    unsigned long long want_n[STREAMS] = {0}, want_sum[STREAMS] = {0};
    for (int i = 0; i < EVENTS; i++) {
        want_n[(i / 100) % STREAMS]++;
        want_sum[(i / 100) % STREAMS] += (unsigned long long)(i % 11);
    }
    evs_store *s = open_store(where);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    evs_consumer_info ci;
    CHECK_RC(evs_consumer_get(b, name, &ci), EVS_OK);
    CHECK_INT(ci.checkpoint, evs_head(s));
    unsigned long long total = 0;
    for (int k = 0; k < STREAMS; k++) {
        char part[32];
        snprintf(part, sizeof part, "acct-%d", k);
        char *json = NULL;
        CHECK_RC(evs_proj_get_state(b, name, part, &json, NULL), EVS_OK);
        if (!json) continue;
        st x;
        parse_state(json, &x);
        CHECK_INT(x.dup, 0);
        CHECK_INT(x.n, want_n[k]);
        CHECK_INT(x.sum, want_sum[k]);
        total += x.n;
        free(json);
    }
    CHECK_INT(total, EVENTS);
    evs_bus_close(b);
    evs_store_close(s);
}

/* A: run the projection until killed (or done: exit 0).  Writes 'r' once it holds the lease. */
static void holder(const char *where, int ready) {
    evs_store *s = NULL;
    evs_bus *b = NULL;
    evs_projection *p = NULL;
    if (evs_store_create(&s) || evs_store_open(s, where, 0) || evs_bus_open(s, &b)) _exit(3);
    if (open_fold(b, "leased", &p)) _exit(4);
    if (write(ready, "r", 1) != 1) _exit(5);
    slow_ns = 2000000; /* 2 ms per event: ~3 s for all of them */
    for (;;) {
        size_t n;
        if (evs_proj_poll(p, 0, 50, &n) != EVS_OK) _exit(6);
        if (n == 0) break;
    }
    _exit(0);
}

/* B: the standby.  Writes 'l' at its first refusal, 't' when it took over; projects to the head. */
static void standby(const char *where, int report) {
    evs_store *s = NULL;
    evs_bus *b = NULL;
    evs_projection *p = NULL;
    int refused = 0;
    if (evs_store_create(&s) || evs_store_open(s, where, 0) || evs_bus_open(s, &b)) _exit(3);
    for (int tries = 0;; tries++) {
        int rc = open_fold(b, "leased", &p);
        if (rc == EVS_OK) break;
        if (rc != EVS_ELOCKED || tries > 6000) _exit(4);
        if (!refused++ && write(report, "l", 1) != 1) _exit(5);
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    if (!refused) _exit(7); /* it must have waited for A */
    if (write(report, "t", 1) != 1) _exit(5);
    for (;;) {
        size_t n;
        if (evs_proj_poll(p, 0, 200, &n) != EVS_OK) _exit(6);
        if (n == 0) break;
    }
    evs_proj_close(p);
    evs_bus_close(b);
    evs_store_close(s);
    _exit(0);
}

static void test_takeover(void) {
    char *where = cf_fresh("lease");
    fill(where);
    int a_pipe[2], b_pipe[2];
    CHECK(pipe(a_pipe) == 0 && pipe(b_pipe) == 0);
    pid_t a = fork();
    if (a == 0) {
        close(a_pipe[0]);
        holder(where, a_pipe[1]);
    }
    close(a_pipe[1]);
    char c = 0;
    CHECK(read(a_pipe[0], &c, 1) == 1 && c == 'r');
    close(a_pipe[0]);
    pid_t bpid = fork();
    if (bpid == 0) {
        close(b_pipe[0]);
        standby(where, b_pipe[1]);
    }
    close(b_pipe[1]);
    c = 0;
    CHECK(read(b_pipe[0], &c, 1) == 1 && c == 'l'); /* B was refused while A holds the lease */
    /* and so is this process */
    evs_store *s = open_store(where);
    evs_bus *b;
    evs_projection *p = NULL;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    CHECK_RC(open_fold(b, "leased", &p), EVS_ELOCKED);
    CHECK_CONTAINS(evs_errmsg(), "open in another process");
    /* let A commit some checkpoints, then kill it mid-work */
    struct timespec ts = {0, 600000000};
    nanosleep(&ts, NULL);
    evs_consumer_info ci;
    CHECK_RC(evs_consumer_get(b, "leased", &ci), EVS_OK);
    printf("takeover: A had checkpointed %llu of %d events when killed\n", (unsigned long long)ci.checkpoint, EVENTS);
    CHECK(ci.checkpoint > 1 && ci.checkpoint <= (uint64_t)EVENTS);
    kill(a, SIGKILL);
    int status = 0;
    waitpid(a, &status, 0);
    CHECK(WIFSIGNALED(status));
    c = 0;
    CHECK(read(b_pipe[0], &c, 1) == 1 && c == 't'); /* B took over */
    close(b_pipe[0]);
    waitpid(bpid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status)) fprintf(stderr, "standby: status %d\n", status);
    evs_bus_close(b);
    evs_store_close(s);
    check_fold(where, "leased");
    cf_drop(where);
}

static void test_fencing(void) {
    char *where = cf_fresh("fence");
    fill(where);
    evs_store *s1 = open_store(where), *s2 = open_store(where);
    evs_bus *b1, *b2;
    CHECK_RC(evs_bus_open(s1, &b1), EVS_OK);
    CHECK_RC(evs_bus_open(s2, &b2), EVS_OK);
    evs_projection *p1 = NULL, *p2 = NULL;
    CHECK_RC(open_fold(b1, "fenced", &p1), EVS_OK);
    CHECK_RC(open_fold(b2, "fenced", &p2), EVS_ELOCKED); /* one holder, even within a process */
    size_t n;
    CHECK_RC(evs_proj_poll(p1, 0, 300, &n), EVS_OK);
    CHECK_INT(n, 300);
    CHECK_RC(evs_proj_checkpoint(p1), EVS_OK);
    /* the lease's session ends under the holder (a network partition, an administrator) */
    PGconn *c = PQconnectdb(where);
    PGresult *r = PQexec(c, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND "
                            "database = (SELECT oid FROM pg_database WHERE datname = current_database())");
    CHECK_INT(PQresultStatus(r), PGRES_TUPLES_OK);
    CHECK_INT(PQntuples(r), 1);
    PQclear(r);
    PQfinish(c);
    /* the new holder takes the lease and the state as of the last commit */
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
    CHECK_RC(open_fold(b2, "fenced", &p2), EVS_OK);
    /* the old holder reads on, but none of its commits lands */
    int rc = evs_proj_poll(p1, 0, 100, &n);
    if (rc == EVS_OK) rc = evs_proj_checkpoint(p1);
    CHECK(rc != EVS_OK);
    evs_consumer_info ci;
    CHECK_RC(evs_consumer_get(b1, "fenced", &ci), EVS_OK);
    CHECK_INT(ci.checkpoint, 300);
    for (;;) {
        CHECK_RC(evs_proj_poll(p2, 0, 500, &n), EVS_OK);
        if (n == 0) break;
    }
    evs_proj_close(p2);
    evs_proj_close(p1);
    evs_bus_close(b1);
    evs_bus_close(b2);
    evs_store_close(s1);
    evs_store_close(s2);
    check_fold(where, "fenced");
    cf_drop(where);
}

int main(void) {
    char *argv[] = {"test_pg_bus_lease", "postgresql", NULL};
    cf_init(2, argv);
    test_takeover();
    test_fencing();
    return TEST_REPORT();
}

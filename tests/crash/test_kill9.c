/*
 * test_kill9.c — proves that an acknowledged append survives kill -9 of the
 * appending process at any moment, and that recovery never exposes a partial
 * append, over many kill/recover cycles on the SAME store.
 *
 * Each cycle forks a child that opens the store (sync durability, 64 KiB
 * segments, so kills land around segment rollovers) and runs four appender
 * threads.  Each thread owns a quarter of 50 streams, knows their versions
 * (read from the store at start) and appends with exact expected versions:
 * single events and atomic appends of 2..5 events with its own event ids.
 * After every acknowledged append it writes (first global position, count,
 * stream, first stream position, event ids) to a pipe.  The parent reads the
 * pipe and kills the child with SIGKILL at a random moment: 1..50 ms after
 * the fork (possibly during open and recovery), 1..50 ms after the child
 * reported ready, or right after a random number of acknowledgements.  In one
 * cycle out of five a second child is killed 0..10 ms after its fork, before
 * the parent looks, so that recovery itself gets interrupted.
 *
 * Every event's data names its stream, stream position, index and count in
 * its append, and its id, plus padding derived from the stream position, so
 * every event is checkable without knowing whether it was acknowledged.  The
 * parent then opens the store and proves:
 *   1. every acknowledged event is present at its global position with the
 *      same id, stream, stream position and data bytes;
 *   2. no partial append is visible: the events of an append are consecutive
 *      in the global order and all of them are there, or none;
 *   3. global positions are gapless 1..head, and every event is intact;
 *   4. each stream read returns positions 1..version in order, matching the
 *      $all walk, and the stream's version equals its number of events;
 *   5. evs_store_check passes and counts head events.
 * Runs longer than 100 cycles (make soak) check 4's stream reads and 5 on
 * every 10th cycle and the last; 1-3 and the stream versions on every cycle.
 * The next cycle appends after the recovery.  EVS_CRASH_CYCLES sets the
 * number of cycles (default 50); EVS_SEED repeats a run.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"

#define NSTREAMS 50
#define NTHREADS 4
#define MAXBATCH 5
#define CHILD_MAX_APPENDS 3000 /* per thread: a child that is never killed stops */
#define SEGMENT (64 * 1024)

enum { MSG_READY = 1, MSG_ACK = 2, MSG_ERROR = 3 };

/* One message from child to parent; smaller than PIPE_BUF, so writes are atomic. */
typedef struct msg {
    uint32_t kind;
    uint32_t count;
    int32_t stream;
    int32_t rc;
    uint64_t first_gpos;
    uint64_t first_spos;
    evs_uuid ids[MAXBATCH];
} msg;

/* What the parent knows about each global position from acknowledgements. */
typedef struct expect {
    evs_uuid id;
    uint32_t spos;
    int16_t stream;
    uint8_t acked;
} expect;

static expect *exp_tab;
static uint64_t exp_cap;

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void stream_name(int k, char *buf, size_t n) { snprintf(buf, n, "k9-%02d", k); }

/* Padding length and bytes are functions of (stream, stream position). */
static size_t pad_len(int k, uint64_t spos) {
    uint64_t h = ((uint64_t)k * 0x9E3779B97F4A7C15ull) ^ (spos * 0xC2B2AE3D27D4EB4Full);
    h ^= h >> 29;
    return (size_t)(h % 1400);
}

/* The data of the event at stream position spos, index i of an append of n. */
static size_t event_data(char *buf, size_t cap, int k, uint64_t spos, unsigned i, unsigned n, const evs_uuid *id) {
    char u[37], name[16];
    evs_uuid_format(id, u);
    stream_name(k, name, sizeof name);
    int w = snprintf(buf, cap, "{\"s\":\"%s\",\"p\":%llu,\"i\":%u,\"n\":%u,\"id\":\"%s\",\"pad\":\"", name,
                     (unsigned long long)spos, i, n, u);
    size_t len = (size_t)w, pl = pad_len(k, spos);
    /* the alphabet from a letter chosen by the position: a copy, not a loop per byte */
    static const char abc[] = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz";
    size_t start = (size_t)((spos + (uint64_t)k) % 26);
    while (pl > 0 && len + 3 < cap) {
        size_t m = pl < 52 ? pl : 52;
        if (m > cap - 3 - len) m = cap - 3 - len;
        memcpy(buf + len, abc + start, m);
        len += m;
        pl -= m;
        start = (start + m) % 26;
    }
    buf[len++] = '"';
    buf[len++] = '}';
    buf[len] = 0;
    return len;
}

/* ------------------------------------------------------------------ child */

typedef struct child_thread {
    evs_store *s;
    int t;
    int wfd;
    uint64_t seed;
    uint64_t version[NSTREAMS];
} child_thread;

static void child_send(int fd, const msg *m) {
    /* a message is one atomic write; a parent that went away ends the child */
    if (write(fd, m, sizeof *m) != (ssize_t)sizeof *m) _exit(4);
}

static void *child_appender(void *arg) {
    child_thread *ct = arg;
    int owned[NSTREAMS], nowned = 0;
    for (int k = 0; k < NSTREAMS; k++)
        if (k % NTHREADS == ct->t) owned[nowned++] = k;
    char data[MAXBATCH][2048];
    for (int a = 0; a < CHILD_MAX_APPENDS; a++) {
        int k = owned[rnd(&ct->seed) % (uint64_t)nowned];
        unsigned n = (rnd(&ct->seed) % 10) < 6 ? 1 : 2 + (unsigned)(rnd(&ct->seed) % (MAXBATCH - 1));
        uint64_t v = ct->version[k];
        evs_uuid ids[MAXBATCH];
        evs_event_in ev[MAXBATCH];
        for (unsigned i = 0; i < n; i++) {
            evs_uuid_v7(&ids[i]);
            size_t len = event_data(data[i], sizeof data[i], k, v + 1 + i, i, n, &ids[i]);
            ev[i] = tu_event(i ? "Next" : "First", data[i]);
            ev[i].data_len = len;
            ev[i].event_id = &ids[i];
        }
        char name[16];
        stream_name(k, name, sizeof name);
        evs_append_result res;
        int rc = evs_append(ct->s, name, (int64_t)v, ev, n, &res, NULL);
        msg m;
        memset(&m, 0, sizeof m);
        if (rc != EVS_OK || res.first_stream_position != v + 1 || res.idempotent) {
            m.kind = MSG_ERROR;
            m.rc = rc;
            m.stream = k;
            m.first_spos = v + 1;
            fprintf(stderr, "child: append %u to %s expecting %llu: %s: %s\n", n, name, (unsigned long long)v,
                    evs_errname(rc), evs_errmsg());
            child_send(ct->wfd, &m);
            return NULL;
        }
        ct->version[k] = res.last_stream_position;
        m.kind = MSG_ACK;
        m.count = n;
        m.stream = k;
        m.first_gpos = res.first_global_position;
        m.first_spos = res.first_stream_position;
        memcpy(m.ids, ids, n * sizeof ids[0]);
        child_send(ct->wfd, &m);
    }
    return NULL;
}

static void child_main(const char *dir, int wfd, uint64_t seed) {
    evs_store *s = NULL;
    msg m;
    memset(&m, 0, sizeof m);
    int rc = evs_store_create(&s);
    if (!rc) rc = evs_store_set_segment_size(s, SEGMENT);
    if (!rc) rc = evs_store_set_durability(s, EVS_DURABILITY_SYNC, 0);
    if (!rc) rc = evs_store_open(s, dir, 0);
    if (rc) {
        fprintf(stderr, "child: open %s: %s: %s\n", dir, evs_errname(rc), evs_errmsg());
        m.kind = MSG_ERROR;
        m.rc = rc;
        m.stream = -1;
        child_send(wfd, &m);
        _exit(3);
    }
    static child_thread ct[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        ct[t].s = s;
        ct[t].t = t;
        ct[t].wfd = wfd;
        ct[t].seed = seed * 131 + (uint64_t)t + 1;
    }
    for (int k = 0; k < NSTREAMS; k++) {
        char name[16];
        stream_name(k, name, sizeof name);
        evs_stream_info info;
        rc = evs_stream_get_info(s, name, &info);
        if (rc != EVS_OK && rc != EVS_ENOTFOUND) {
            m.kind = MSG_ERROR;
            m.rc = rc;
            m.stream = k;
            child_send(wfd, &m);
            _exit(3);
        }
        ct[k % NTHREADS].version[k] = rc == EVS_OK ? info.version : 0;
    }
    m.kind = MSG_READY;
    m.first_gpos = evs_head(s);
    child_send(wfd, &m);
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) pthread_create(&th[t], NULL, child_appender, &ct[t]);
    for (int t = 0; t < NTHREADS; t++) pthread_join(th[t], NULL);
    evs_store_close(s);
    _exit(0);
}

/* ----------------------------------------------------------------- parent */


static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void expect_grow(uint64_t need) {
    if (need < exp_cap) return;
    uint64_t cap = exp_cap ? exp_cap : 4096;
    while (cap <= need) cap *= 2;
    expect *n = realloc(exp_tab, cap * sizeof *n);
    if (!n) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    memset(n + exp_cap, 0, (cap - exp_cap) * sizeof *n);
    exp_tab = n;
    exp_cap = cap;
}

/* Record one acknowledgement; an acknowledged position never changes owner. */
static void take_ack(const msg *m, problems *p) {
    if (m->count < 1 || m->count > MAXBATCH || m->stream < 0 || m->stream >= NSTREAMS || m->first_gpos == 0) {
        problem(p, "malformed acknowledgement (count %u, stream %d, gpos %llu)", m->count, m->stream,
                (unsigned long long)m->first_gpos);
        return;
    }
    expect_grow(m->first_gpos + m->count);
    for (uint32_t i = 0; i < m->count; i++) {
        expect *e = &exp_tab[m->first_gpos + i];
        if (e->acked && memcmp(&e->id, &m->ids[i], 16) != 0)
            problem(p, "global position %llu acknowledged twice with different events",
                    (unsigned long long)(m->first_gpos + i));
        e->id = m->ids[i];
        e->spos = (uint32_t)(m->first_spos + i);
        e->stream = (int16_t)m->stream;
        e->acked = 1;
    }
}

typedef struct kill_stats {
    uint64_t acks, acked_events, kills_before_ready, children_finished;
} kill_stats;

/*
 * Run one child and kill it: mode 0 at delay_ms after the fork, mode 1 after
 * `acks` acknowledgements, mode 2 at delay_ms after it reported ready.
 */
static void run_child(const char *dir, uint64_t seed, int mode, int delay_ms, uint64_t acks, kill_stats *ks,
                      problems *p) {
    int pfd[2];
    if (pipe(pfd) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(pfd[0]);
        child_main(dir, pfd[1], seed);
        _exit(0);
    }
    close(pfd[1]);
    int64_t start = mono_ms(), deadline = mode == 0 ? start + delay_ms : INT64_MAX;
    int64_t guard = start + 120000; /* a child that hangs is killed: no test waits forever */
    uint64_t got = 0;
    int ready = 0, killed = 0, eof = 0;
    unsigned char buf[sizeof(msg) * 64];
    size_t have = 0;
    while (!eof) {
        int64_t now = mono_ms();
        if (!killed && (now >= deadline || now >= guard || (mode == 1 && got >= acks))) {
            kill(pid, SIGKILL);
            killed = 1;
            if (!ready) ks->kills_before_ready++;
        }
        int timeout = -1;
        if (!killed) {
            int64_t until = deadline < guard ? deadline : guard;
            timeout = (int)(until - now < 0 ? 0 : until - now);
        }
        struct pollfd pf = {pfd[0], POLLIN, 0};
        int pr = poll(&pf, 1, timeout);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        ssize_t r = read(pfd[0], buf + have, sizeof buf - have);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            eof = 1;
            break;
        }
        have += (size_t)r;
        size_t off = 0;
        while (have - off >= sizeof(msg)) {
            msg m;
            memcpy(&m, buf + off, sizeof m);
            off += sizeof m;
            if (m.kind == MSG_READY) {
                ready = 1;
                if (mode == 2) deadline = mono_ms() + delay_ms;
            } else if (m.kind == MSG_ACK) {
                take_ack(&m, p);
                got++;
                ks->acks++;
                ks->acked_events += m.count;
            } else {
                problem(p, "child reported %s on stream %d at stream position %llu", evs_errname(m.rc), m.stream,
                        (unsigned long long)m.first_spos);
            }
        }
        memmove(buf, buf + off, have - off);
        have -= off;
    }
    close(pfd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (have) problem(p, "a partial message of %zu bytes in the pipe", have);
    if (WIFEXITED(status)) {
        if (WEXITSTATUS(status) == 0) ks->children_finished++;
        else problem(p, "child exited with status %d", WEXITSTATUS(status));
    } else if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        problem(p, "child ended with wait status 0x%x", status);
    }
}

/* Check data bytes of ev against what its writer must have appended. */
static int event_ok(const evs_event *ev, int *k_out, unsigned *i_out, unsigned *n_out, char *why, size_t whyn) {
    char head[160];
    size_t hl = ev->data_len < sizeof head - 1 ? ev->data_len : sizeof head - 1;
    memcpy(head, ev->data, hl);
    head[hl] = 0;
    int k;
    unsigned long long spos;
    unsigned i, n;
    if (sscanf(head, "{\"s\":\"k9-%d\",\"p\":%llu,\"i\":%u,\"n\":%u,", &k, &spos, &i, &n) != 4 || k < 0 ||
        k >= NSTREAMS || n < 1 || n > MAXBATCH || i >= n) {
        snprintf(why, whyn, "gpos %llu: unrecognised data \"%.60s\"", (unsigned long long)ev->global_position, head);
        return 0;
    }
    char want[2048], name[16];
    size_t wl = event_data(want, sizeof want, k, spos, i, n, &ev->event_id);
    stream_name(k, name, sizeof name);
    if (wl != ev->data_len || memcmp(want, ev->data, wl) != 0) {
        snprintf(why, whyn, "gpos %llu: data differs from what was appended (%zu bytes, wanted %zu)",
                 (unsigned long long)ev->global_position, ev->data_len, wl);
        return 0;
    }
    if (spos != ev->stream_position || ev->stream_len != strlen(name) || memcmp(ev->stream, name, ev->stream_len)) {
        snprintf(why, whyn, "gpos %llu: stored as %.*s@%llu but its data says %s@%llu",
                 (unsigned long long)ev->global_position, (int)ev->stream_len, ev->stream,
                 (unsigned long long)ev->stream_position, name, spos);
        return 0;
    }
    const char *type = i ? "Next" : "First";
    if (ev->event_type_len != strlen(type) || memcmp(ev->event_type, type, ev->event_type_len) != 0) {
        snprintf(why, whyn, "gpos %llu: event type %.*s", (unsigned long long)ev->global_position,
                 (int)ev->event_type_len, ev->event_type);
        return 0;
    }
    *k_out = k;
    *i_out = i;
    *n_out = n;
    return 1;
}

typedef struct verify_stats {
    uint64_t head, reports, full;
    char last_report[256];
} verify_stats;

/* Open the store after the kill and prove properties 1-5 of the file comment. */
static void verify(const char *dir, int cycle, int full, verify_stats *vs) {
    evs_store *s = NULL;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_set_segment_size(s, SEGMENT), EVS_OK);
    int rc = evs_store_open(s, dir, 0);
    CHECK_RC(rc, EVS_OK);
    if (rc) {
        fprintf(stderr, "cycle %d: reopen failed: %s\n", cycle, evs_errmsg());
        evs_store_close(s);
        return;
    }
    const char *rep = evs_store_recovery_report(s);
    if (rep[0]) {
        vs->reports++;
        snprintf(vs->last_report, sizeof vs->last_report, "%s", rep);
    }
    uint64_t head = evs_head(s);
    vs->head = head;
    problems gap = {0}, intact = {0}, partial = {0}, acked = {0}, streams = {0};
    int16_t *gk = calloc(head + 1, sizeof *gk);
    uint64_t count[NSTREAMS] = {0};

    /* 1-3: the $all walk */
    evs_reader *r;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    const evs_event *ev;
    uint64_t want = 1;
    int open_k = -1;
    unsigned open_i = 0, open_n = 0; /* the append being walked through */
    char why[512];
    while (want <= head + 1 && (rc = evs_reader_next(r, &ev)) == EVS_OK) {
        if (ev->global_position != want) {
            problem(&gap, "$all returned position %llu where %llu was due", (unsigned long long)ev->global_position,
                    (unsigned long long)want);
            break;
        }
        int k;
        unsigned i, n;
        if (!event_ok(ev, &k, &i, &n, why, sizeof why)) {
            problem(&intact, "%s", why);
            want++;
            continue;
        }
        gk[want] = (int16_t)(k + 1);
        count[k]++;
        if (open_k >= 0) { /* inside an append: the next event must be its next one */
            if (k != open_k || n != open_n || i != open_i + 1)
                problem(&partial, "gpos %llu: event %u/%u of k9-%02d follows event %u/%u of k9-%02d",
                        (unsigned long long)want, i + 1, n, k, open_i + 1, open_n, open_k);
        } else if (i != 0) {
            problem(&partial, "gpos %llu: event %u/%u of an append whose first event is missing",
                    (unsigned long long)want, i + 1, n);
        }
        if (i + 1 < n) open_k = k, open_i = i, open_n = n;
        else open_k = -1;
        if (want < exp_cap && exp_tab[want].acked) {
            const expect *e = &exp_tab[want];
            if (memcmp(&e->id, &ev->event_id, 16) != 0 || e->stream != k || e->spos != ev->stream_position)
                problem(&acked, "gpos %llu: acknowledged as k9-%02d@%u but found k9-%02d@%llu (or another id)",
                        (unsigned long long)want, e->stream, e->spos, k, (unsigned long long)ev->stream_position);
        }
        want++;
    }
    CHECK_RC(rc, EVS_DONE);
    evs_reader_close(r);
    if (want != head + 1)
        problem(&gap, "$all ended at %llu but the head is %llu", (unsigned long long)(want - 1),
                (unsigned long long)head);
    if (open_k >= 0)
        problem(&partial, "the log ends inside an append: event %u/%u of k9-%02d is the last", open_i + 1, open_n,
                open_k);
    /* acknowledged events beyond the head were lost */
    for (uint64_t g = head + 1; g < exp_cap; g++)
        if (exp_tab[g].acked) {
            problem(&acked, "acknowledged global position %llu is beyond the head %llu after recovery",
                    (unsigned long long)g, (unsigned long long)head);
            break;
        }

    /* 4: every stream, read on its own */
    for (int k = 0; k < NSTREAMS; k++) {
        char name[16];
        stream_name(k, name, sizeof name);
        evs_stream_info info;
        rc = evs_stream_get_info(s, name, &info);
        if (count[k] == 0) {
            if (rc != EVS_ENOTFOUND) problem(&streams, "%s: info %s, but $all holds none of it", name, evs_errname(rc));
            continue;
        }
        if (rc != EVS_OK || info.version != count[k]) {
            problem(&streams, "%s: version %llu (%s), $all holds %llu of its events", name,
                    (unsigned long long)info.version, evs_errname(rc), (unsigned long long)count[k]);
            continue;
        }
        if (!full) continue;
        CHECK_RC(evs_read_stream(s, name, 1, EVS_FORWARD, 0, &r), EVS_OK);
        uint64_t sp = 1, last_g = 0;
        while ((rc = evs_reader_next(r, &ev)) == EVS_OK && sp <= count[k]) {
            if (ev->stream_position != sp || ev->global_position <= last_g || ev->global_position > head ||
                gk[ev->global_position] != k + 1) {
                problem(&streams, "%s: position %llu is global %llu, not what $all holds there", name,
                        (unsigned long long)ev->stream_position, (unsigned long long)ev->global_position);
                break;
            }
            last_g = ev->global_position;
            sp++;
        }
        if (rc != EVS_OK && rc != EVS_DONE) problem(&streams, "%s: read: %s: %s", name, evs_errname(rc), evs_errmsg());
        if (sp != count[k] + 1)
            problem(&streams, "%s: stream read returned %llu events, wanted %llu", name, (unsigned long long)(sp - 1),
                    (unsigned long long)count[k]);
        evs_reader_close(r);
    }

    /* 5 */
    if (full) {
        evs_check_report cr;
        CHECK_RC(evs_store_check(s, &cr), EVS_OK);
        CHECK_INT(cr.events, head);
        CHECK_INT(cr.errors, 0);
        vs->full++;
    }

    problems *all[] = {&gap, &intact, &partial, &acked, &streams};
    const char *names[] = {"gapless", "intact", "atomic", "acknowledged", "streams"};
    for (int i = 0; i < 5; i++) {
        if (all[i]->count)
            fprintf(stderr, "cycle %d: %s: %d problem(s), first: %s\n", cycle, names[i], all[i]->count,
                    all[i]->first);
        CHECK_INT(all[i]->count, 0);
    }
    free(gk);
    evs_store_close(s);
}

int main(void) {
    const char *e = getenv("EVS_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    if (!seed) seed = 1;
    e = getenv("EVS_CRASH_CYCLES");
    int cycles = e ? atoi(e) : 50;
    if (cycles < 1) cycles = 1;
    printf("crash_kill9: %d cycles, seed %llu (EVS_SEED repeats a run)\n", cycles, (unsigned long long)seed);
    char *dir = tu_tempdir("kill9");
    /* create the store once; every cycle continues it */
    evs_store *s = tu_open(dir, EVS_DURABILITY_SYNC, SEGMENT);
    evs_store_close(s);

    uint64_t rs = seed;
    kill_stats ks = {0};
    verify_stats vs = {0};
    int passed = 0, failed = 0;
    uint64_t modes[3] = {0}, double_kills = 0;
    int64_t t0 = mono_ms(), verify_ms = 0;
    for (int c = 1; c <= cycles; c++) {
        int before = tu_failures;
        problems p = {0};
        int mode = (int)(rnd(&rs) % 3);
        modes[mode]++;
        int delay = 1 + (int)(rnd(&rs) % 50);
        uint64_t acks = 1 + rnd(&rs) % 150;
        if (rnd(&rs) % 5 == 0) { /* interrupt the recovery of the previous kill */
            double_kills++;
            run_child(dir, rnd(&rs), 0, (int)(rnd(&rs) % 11), 0, &ks, &p);
        }
        run_child(dir, rnd(&rs), mode, delay, acks, &ks, &p);
        if (p.count) fprintf(stderr, "cycle %d: %d problem(s), first: %s\n", c, p.count, p.first);
        CHECK_INT(p.count, 0);
        int64_t tv = mono_ms();
        /* long runs (make soak) read every stream and run the check on every 10th cycle after the 100th */
        verify(dir, c, c <= 100 || c % 10 == 0 || c == cycles, &vs);
        verify_ms += mono_ms() - tv;
        if (tu_failures == before) passed++;
        else failed++;
    }
    uint64_t acked_max = 0;
    for (uint64_t g = 0; g < exp_cap; g++)
        if (exp_tab[g].acked) acked_max = g;
    printf("crash_kill9: %d cycles (kill after delay %llu, after acks %llu, after ready %llu; %llu double kills), "
           "%llu appends / %llu events acknowledged, head %llu (highest acknowledged %llu), %llu kills before ready, "
           "%llu children finished unkilled, %llu recoveries reported (last: \"%s\"), %llu full verifications, "
           "%.1fs (%.1fs verifying)\n",
           cycles, (unsigned long long)modes[0], (unsigned long long)modes[1], (unsigned long long)modes[2],
           (unsigned long long)double_kills, (unsigned long long)ks.acks, (unsigned long long)ks.acked_events,
           (unsigned long long)vs.head, (unsigned long long)acked_max, (unsigned long long)ks.kills_before_ready,
           (unsigned long long)ks.children_finished, (unsigned long long)vs.reports, vs.last_report,
           (unsigned long long)vs.full,
           (double)(mono_ms() - t0) / 1000.0, (double)verify_ms / 1000.0);
    printf("cycles: %d passed, %d failed\n", passed, failed);
    CHECK(ks.acks > 0);
    free(exp_tab);
    tu_rmrf(dir);
    free(dir);
    return TEST_REPORT();
}

/*
 * test_saga_kill9.c — the shop's order saga (examples/shop/sagas/order_saga.lua)
 * under kill -9: 1,000 orders with random failures while the process is
 * killed at random points at least 50 times, then every rule is checked
 * from the event history alone.
 *
 * Each cycle forks a child that opens the store, the consumers, the app and
 * the saga engine (4 workers), starts a carrier (a subscription that
 * schedules every shipment unless its address is "nowhere") and places
 * orders from the first one no earlier child acknowledged: CreateOrder,
 * AddItem per line, SubmitOrder, all with command ids derived from the
 * order number, so a re-sent order is the same order.  Lines and injected
 * failures are a function of the order number and the seed: out of stock
 * ("rare" has 12 units), a declined card, a shipping timeout (address
 * "nowhere"), and a shipping timeout whose void the gateway refuses
 * (compensation_failed).  The child reports each submitted order through
 * a pipe; the parent kills it with SIGKILL after a random 50..600 ms — while
 * it places orders, while sagas run, while timers fire, while it starts.
 *
 * A last child, not killed, places what is left and waits until every
 * saga is completed, compensated or compensation_failed; the latter are
 * resumed by an operator's skip and must then end compensated.  The parent
 * reads the whole log and checks:
 *   1. every submitted order has a saga, ended completed or compensated;
 *   2. no step's command ran twice: per (order, step, phase, effect) one
 *      command id has events, every command id has one event, and no step
 *      failed for a reason other than the injected ones (a command sent a
 *      second time is refused by the aggregates' own rules: "already
 *      holds stock", "already exists", "already cancelled");
 *   3. compensations ran once each, newest step first, and undid exactly
 *      what took effect (every Reserved released, every authorization
 *      voided unless its void was skipped, every shipment cancelled, the
 *      order cancelled);
 *   4. stock never negative: on hand minus reserved >= 0 after every event
 *      of every product;
 *   5. money captured only for completed orders (and exactly once for each).
 * EVS_SAGA_ORDERS / EVS_SAGA_KILLS change the sizes (make soak: more);
 * EVS_SEED repeats a run.
 *
 * With the argument "postgresql" (tests/conformance.h; registered as
 * crash_saga_kill9_pg) the store is a database and two children run on it
 * at once, both placing orders: the one holding the saga lease runs the
 * sagas, the other stands by.  The parent kills the holder (SIGKILL) a
 * random 100..700 ms after it reported taking the lease, while it runs
 * sagas, and starts a new child; the standby must take over and finish
 * what the dead one left.  The same checks follow (fewer orders and kills
 * by default: each takeover costs a lease wait and a new process).
 */
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

#include "evstore_app.h"
#include "evstore_bus.h"
#include "conformance.h"
#include "evstore_saga.h"

#ifndef SHOP_SCRIPTS
#define SHOP_SCRIPTS "examples/shop"
#endif

static uint64_t seed;
static int n_orders;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* What order i is: 0 normal, 1 out of stock (a "rare" line), 2 declined, 3 shipping timeout, 4 void fails. */
static int kind_of(int i) {
    int r = (int)(mix(seed ^ (uint64_t)i) % 100);
    return r < 8 ? 1 : r < 16 ? 2 : r < 24 ? 3 : r < 28 ? 4 : 0;
}

/* ------------------------------------------------------------------ child */

static evs_app *app;
static _Atomic int carrier_stop;

static void die(const char *what) {
    fprintf(stderr, "child: %s: %s\n", what, evs_errmsg());
    _exit(4);
}

static char *slurp(const char *name, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", SHOP_SCRIPTS, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        _exit(4);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) _exit(4);
    b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int cmd(const char *json) {
    evs_command_result r;
    int rc = evs_app_execute_json(app, NULL, json, strlen(json), &r);
    if (rc) die(json);
    int o = r.outcome;
    evs_command_result_free(&r);
    return o;
}

static int carrier(void *ctx, const evs_event *ev, char *err, size_t cap) {
    (void)ctx;
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    const char *addr = json_string_value(json_object_get(d, "address"));
    int rc = 0;
    if (addr && strcmp(addr, "nowhere") != 0 && ev->has_correlation_id) {
        char id[37], corr[37], json[1024];
        evs_uuid_format(&ev->event_id, id);
        evs_uuid_format(&ev->correlation_id, corr);
        snprintf(json, sizeof json,
                 "{\"command_id\":\"carrier-%s\",\"command_type\":\"ScheduleShipment\",\"aggregate_id\":\"%.*s\","
                 "\"correlation_id\":\"%s\",\"data\":{\"carrier\":\"post\"}}",
                 id, (int)ev->stream_len - 9, ev->stream + 9, corr);
        evs_command_result r;
        rc = evs_app_execute_json(app, NULL, json, strlen(json), &r);
        if (rc) snprintf(err, cap, "%s", evs_errmsg());
        else evs_command_result_free(&r);
    }
    json_decref(d);
    return rc ? 1 : 0;
}

/* The carrier: opened here, waiting for it while another process runs it (PostgreSQL: one holder of its lease). */
static void *carrier_main(void *arg) {
    evs_bus *bus = arg;
    evs_sub_config sc;
    evs_sub_config_init(&sc);
    static const char *const created[] = {"ShipmentCreated"};
    sc.name = "carrier";
    sc.filter.event_types = created;
    sc.filter.n_event_types = 1;
    sc.checkpoint_every = 50;
    sc.checkpoint_ms = 20;
    evs_subscription *s = NULL;
    while (!atomic_load(&carrier_stop)) {
        int rc = evs_sub_open(bus, &sc, carrier, NULL, &s);
        if (rc == EVS_OK) break;
        if (rc != EVS_ELOCKED) die("carrier");
        usleep(50000);
    }
    while (s && !atomic_load(&carrier_stop)) evs_sub_poll(s, 20, 0, NULL);
    evs_sub_close(s);
    return NULL;
}

static void place(int i) {
    static const char *const skus[] = {"tea", "mug", "cup", "pot"};
    char json[1024];
    int k = kind_of(i);
    snprintf(json, sizeof json,
             "{\"command_id\":\"create-%d\",\"command_type\":\"CreateOrder\",\"aggregate_id\":\"o%d\",\"data\":{\"customer\":\"c%d\"}}",
             i, i, i);
    cmd(json);
    int lines = 1 + (int)(mix(seed + (uint64_t)i * 7) % 3);
    for (int l = 0; l < lines; l++) {
        snprintf(json, sizeof json,
                 "{\"command_id\":\"add-%d-%d\",\"command_type\":\"AddItem\",\"aggregate_id\":\"o%d\",\"data\":{\"sku\":\"%s\","
                 "\"quantity\":%d,\"unit_price\":\"2.50\"}}",
                 i, l, i, skus[(mix(seed + (uint64_t)i * 13 + (uint64_t)l) % 4 + (uint64_t)l) % 4], 1 + l);
        cmd(json);
    }
    if (k == 1) {
        snprintf(json, sizeof json,
                 "{\"command_id\":\"add-%d-rare\",\"command_type\":\"AddItem\",\"aggregate_id\":\"o%d\",\"data\":{\"sku\":"
                 "\"rare\",\"quantity\":3,\"unit_price\":\"40.00\"}}",
                 i, i);
        cmd(json);
    }
    snprintf(json, sizeof json,
             "{\"command_id\":\"submit-%d\",\"command_type\":\"SubmitOrder\",\"aggregate_id\":\"o%d\",\"data\":{\"card\":\"%s\","
             "\"address\":\"%s\"}}",
             i, i, k == 2 ? "tok_declined" : k == 4 ? "tok_void_fails" : "tok_visa", k == 3 || k == 4 ? "nowhere" : "1 Main St");
    /* an order re-sent after a kill may already be past "open": SubmitOrder's first result is the answer */
    cmd(json);
}

static int settled_all(evs_saga_engine *e, int upto) {
    /* the index first (cheap); then every instance from its stream */
    evs_saga_type_stats ts;
    size_t n;
    if (evs_saga_get_type_stats(e, &ts, 1, &n) || n != 1 || ts.started < (uint64_t)upto ||
        ts.by_state[EVS_SAGA_RUNNING] + ts.by_state[EVS_SAGA_COMPENSATING] + ts.by_state[EVS_SAGA_PAUSED])
        return 0;
    for (int i = 1; i <= upto; i++) {
        char id[16];
        snprintf(id, sizeof id, "o%d", i);
        evs_saga_info in;
        if (evs_saga_get(e, "order", id, &in) != EVS_OK) return 0;
        if (!evs_saga_status_terminal(in.status) && in.status != EVS_SAGA_COMPENSATION_FAILED) return 0;
    }
    return 1;
}

/* Reports -1 on the pipe once the engine holds the saga lease (PostgreSQL: the parent kills the holder). */
typedef struct lease_watch {
    evs_saga_engine *e;
    int fd;
} lease_watch;

static void *lease_watch_main(void *arg) {
    lease_watch *w = arg;
    evs_saga_engine_stats es;
    while (evs_saga_get_engine_stats(w->e, &es) || !es.holding) usleep(5000);
    int32_t m = -1;
    if (write(w->fd, &m, sizeof m) != sizeof m) _exit(3);
    return NULL;
}

/* Place orders [ranges[k][0], ranges[k][1]) in turn, reporting each; the last child waits for all up to upto. */
static void child(const char *where, const int (*ranges)[2], int nr, int upto, int fd, int last) {
    evs_store *s;
    evs_bus *bus;
    if (evs_store_create(&s) || evs_store_set_durability(s, EVS_DURABILITY_NONE, 0) ||
        evs_store_open(s, where, EVS_OPEN_CREATE) || evs_bus_open(s, &bus) || evs_app_open(s, bus, NULL, &app))
        die("open");
    static const char *const aggs[] = {"order", "inventory", "payment", "shipment"};
    for (int i = 0; i < 4; i++) {
        char file[64];
        size_t n;
        snprintf(file, sizeof file, "%s.lua", aggs[i]);
        char *src = slurp(file, &n);
        if (evs_app_register_lua_aggregate(app, aggs[i], src, n)) die(file);
        free(src);
    }
    evs_saga_engine *e;
    evs_saga_config c;
    evs_saga_config_init(&c);
    c.node_id = "shop-1"; /* the same node after every restart: it keeps its leases */
    c.from = EVS_SUB_FROM_START;
    if (evs_saga_engine_open(s, app, &c, &e)) die("engine");
    size_t n;
    char *src = slurp("sagas/order_saga.lua", &n);
    if (evs_saga_register_lua(e, "order", src, n, "{\"ship_timeout\":1,\"retry_delay\":0.02}")) die("saga");
    free(src);
    if (evs_saga_engine_start(e)) die("start");
    static lease_watch lw;
    lw.e = e;
    lw.fd = fd;
    pthread_t lwt;
    if (cf_pg) pthread_create(&lwt, NULL, lease_watch_main, &lw);
    pthread_t th;
    pthread_create(&th, NULL, carrier_main, bus);
    static const char *const stock[][2] = {{"tea", "1000000"}, {"mug", "1000000"}, {"cup", "1000000"}, {"pot", "1000000"},
                                           {"rare", "12"}};
    for (int i = 0; i < 5; i++) {
        char json[256];
        snprintf(json, sizeof json,
                 "{\"command_id\":\"restock-%s\",\"command_type\":\"Restock\",\"aggregate_id\":\"%s\",\"data\":{\"quantity\":%s}}",
                 stock[i][0], stock[i][0], stock[i][1]);
        cmd(json);
    }
    for (int k = 0; k < nr; k++)
        for (int i = ranges[k][0]; i < ranges[k][1]; i++) {
            place(i);
            int32_t m = i;
            if (write(fd, &m, sizeof m) != sizeof m) _exit(3);
        }
    if (!last) {
        for (;;) pause(); /* the sagas run on; the parent kills us */
    }
    /* the last child: wait until everything settled, resume what needs an operator, wait again */
    int64_t deadline = now_ms() + 240000;
    while (!settled_all(e, upto) && now_ms() < deadline) usleep(20000);
    evs_saga_info stuck[256];
    evs_saga_query q = {"order", EVS_SAGA_COMPENSATION_FAILED, 0, NULL, 256};
    for (;;) {
        if (evs_saga_list(e, &q, stuck, 256, &n, NULL)) die("list");
        for (size_t i = 0; i < n; i++) {
            int rc = evs_saga_skip(e, "order", stuck[i].id, NULL, "voided by hand");
            if (rc && rc != EVS_ECONFLICT) die("skip");
        }
        if (n < 256) break;
    }
    if (evs_saga_engine_wait_idle(e, 60000)) die("idle");
    while (!settled_all(e, upto) && now_ms() < deadline) usleep(20000);
    atomic_store(&carrier_stop, 1);
    pthread_join(th, NULL);
    evs_saga_engine_close(e);
    evs_app_close(app);
    evs_bus_close(bus);
    evs_store_close(s);
    _exit(0);
}

/* ----------------------------------------------------------------- parent */

/* Run a child over [from, to); kill it after delay_ms (0: never).  *acked: the first order not acknowledged. */
static int run_child(const char *dir, int from, int to, int delay_ms, int *next) {
    int pfd[2];
    if (pipe(pfd) != 0) exit(2);
    pid_t pid = fork();
    if (pid < 0) exit(2);
    if (pid == 0) {
        close(pfd[0]);
        const int range[1][2] = {{from, to}};
        child(dir, range, 1, to - 1, pfd[1], delay_ms == 0);
    }
    close(pfd[1]);
    int killed = 0;
    int64_t deadline = now_ms() + (delay_ms ? delay_ms : 600000);
    *next = from;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0 && !killed) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        struct pollfd pf = {pfd[0], POLLIN, 0};
        int pr = poll(&pf, 1, killed ? -1 : (int)(left > 0 ? left : 0));
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) continue;
        int32_t m;
        ssize_t n = read(pfd[0], &m, sizeof m);
        if (n != sizeof m) break;
        if (m == *next) *next = m + 1;
    }
    close(pfd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!killed && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "the last child failed: status %d\n", st);
        return -1;
    }
    return killed;
}

/* ------------------------------------------------- PostgreSQL: two at once */

typedef struct kid {
    pid_t pid;
    int fd;
    int from, to, next;           /* its range, the first order it did not report */
    int64_t kill_at;              /* once it holds the lease: when it is killed (0: not holding) */
} kid;

static int todo[4096][2], n_todo; /* ranges still to place: what killed children left, then new ones */
static int unassigned = 1;
static const char *pg_where;      /* the database's URL */

static void kid_start(kid *k, int share) {
    int pfd[2];
    if (n_todo) {
        n_todo--;
        k->from = todo[n_todo][0], k->to = todo[n_todo][1];
    } else {
        k->from = unassigned;
        k->to = unassigned + share > n_orders + 1 ? n_orders + 1 : unassigned + share;
        unassigned = k->to;
    }
    k->next = k->from;
    k->kill_at = 0;
    if (pipe(pfd) != 0) exit(2);
    k->pid = fork();
    if (k->pid < 0) exit(2);
    if (k->pid == 0) {
        close(pfd[0]);
        const int range[1][2] = {{k->from, k->to}};
        child(pg_where, range, 1, 0, pfd[1], 0);
    }
    close(pfd[1]);
    k->fd = pfd[0];
}

/* Read what kid k reported; 0 at its end (EOF). */
static int kid_read(kid *k, uint64_t *rs) {
    int32_t m;
    ssize_t n = read(k->fd, &m, sizeof m);
    if (n != sizeof m) return 0;
    if (m == -1 && !k->kill_at) {
        *rs = mix(*rs);
        k->kill_at = now_ms() + 100 + (int64_t)(*rs % 601);
    } else if (m == k->next) {
        k->next = m + 1;
    }
    return 1;
}

/* SIGKILL kid k, read the rest of what it reported, and put back what it did not place. */
static void kid_kill(kid *k, uint64_t *rs) {
    kill(k->pid, SIGKILL);
    while (kid_read(k, rs)) {
    }
    close(k->fd);
    int st;
    while (waitpid(k->pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (k->next < k->to && n_todo < 4096) {
        todo[n_todo][0] = k->next, todo[n_todo][1] = k->to;
        n_todo++;
    }
    k->pid = 0;
}

/* Kill the lease holder min_kills times, two children always running; then one last child finishes. */
static void run_pg(const char *where, int min_kills, uint64_t rs, int *kills) {
    int share = n_orders / (min_kills + 2) + 1;
    kid k[2];
    memset(k, 0, sizeof k);
    pg_where = where;
    kid_start(&k[0], share);
    kid_start(&k[1], share);
    int64_t give_up = now_ms() + 600000;
    while (*kills < min_kills) {
        struct pollfd pf[2] = {{k[0].fd, POLLIN, 0}, {k[1].fd, POLLIN, 0}};
        int64_t wait = 50;
        for (int i = 0; i < 2; i++)
            if (k[i].kill_at && k[i].kill_at - now_ms() < wait) wait = k[i].kill_at - now_ms();
        int pr = poll(pf, 2, wait > 0 ? (int)wait : 0);
        if (pr < 0 && errno != EINTR) exit(2);
        for (int i = 0; i < 2; i++)
            if (pr > 0 && (pf[i].revents & (POLLIN | POLLHUP)) && !kid_read(&k[i], &rs)) {
                fprintf(stderr, "a child ended by itself (pid %d)\n", (int)k[i].pid);
                exit(2);
            }
        for (int i = 0; i < 2; i++)
            if (k[i].kill_at && now_ms() >= k[i].kill_at) {
                CHECK(!k[1 - i].kill_at); /* one holder at a time */
                kid_kill(&k[i], &rs);
                (*kills)++;
                kid_start(&k[i], share);
            }
        if (now_ms() > give_up) {
            fprintf(stderr, "no child took the saga lease for too long\n");
            exit(2);
        }
    }
    /* the last: kill both, then one child places everything left and waits for every saga */
    for (int i = 0; i < 2; i++) {
        int held = k[i].kill_at != 0;
        kid_kill(&k[i], &rs);
        *kills += held;
    }
    static int ranges[4097][2];
    int nr = 0;
    for (int i = 0; i < n_todo; i++) ranges[nr][0] = todo[i][0], ranges[nr][1] = todo[i][1], nr++;
    if (unassigned <= n_orders) ranges[nr][0] = unassigned, ranges[nr][1] = n_orders + 1, nr++;
    int pfd[2];
    if (pipe(pfd) != 0) exit(2);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        child(pg_where, (const int(*)[2])ranges, nr, n_orders, pfd[1], 1);
    }
    close(pfd[1]);
    int32_t m;
    while (read(pfd[0], &m, sizeof m) == sizeof m) {
    }
    close(pfd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) fprintf(stderr, "the last child failed: status %d\n", st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ------------------------------------------------------------ the checks */

typedef struct eff {
    int step;
    int comp;
    int effect;
    uint64_t pos;
    char cmd[96];
    char type[64];
    char stream[64];
} eff;

typedef struct order {
    int submitted, completed_ev, cancelled_ev;
    long long captured, refunded;
    int authorized, voided, ship_created, ship_cancelled, captures;
    char final[64];
    int skipped;                  /* an operator skipped a compensation */
    eff *e;
    size_t n, cap;
} order;

static const char *const steps[] = {"order", "reserve", "authorize", "ship", "capture", "complete"};

static int step_index(const char *name) {
    for (int i = 0; i < 6; i++)
        if (name && !strcmp(name, steps[i])) return i;
    return -1;
}

static int order_no(const char *stream, size_t n, const char *prefix) {
    size_t pl = strlen(prefix);
    if (n <= pl + 1 || memcmp(stream, prefix, pl) != 0 || stream[pl] != 'o') return 0;
    int v = 0;
    for (size_t i = pl + 1; i < n; i++) {
        if (stream[i] < '0' || stream[i] > '9') return 0;
        v = v * 10 + (stream[i] - '0');
    }
    return v;
}

static int64_t jint(json_t *o, const char *k) { return (int64_t)json_integer_value(json_object_get(o, k)); }

int main(int argc, char **argv) {
    cf_init(argc, argv);
    const char *sd = getenv("EVS_SEED"), *no = getenv("EVS_SAGA_ORDERS"), *nk = getenv("EVS_SAGA_KILLS");
    int soak = getenv("EVS_SOAK") != NULL;
    tu_verbose = getenv("EVS_VERBOSE") != NULL;
    seed = sd ? strtoull(sd, NULL, 10) : (uint64_t)time(NULL) * 2654435761u + 1;
    n_orders = no ? atoi(no) : soak ? 4000 : cf_pg ? 300 : 1000;
    int min_kills = nk ? atoi(nk) : soak ? 300 : cf_pg ? 12 : 50;
    printf("engine %s, seed %llu, %d orders, at least %d kills\n", cf_engine(), (unsigned long long)seed, n_orders,
           min_kills);
    char *d = cf_fresh("sagakill");
    uint64_t rs = seed | 1;
    int from = 1, kills = 0;
    int64_t t0 = now_ms();
    if (cf_pg) {
        run_pg(d, min_kills, rs, &kills);
        printf("%d kills of the lease holder, %.1f s\n", kills, (double)(now_ms() - t0) / 1000);
        CHECK(kills >= min_kills);
    } else {
        /* min_kills children are killed after 50..600 ms (while starting, placing orders, running sagas,
           firing timers); each gets an equal share of the orders, what it did not place passes on */
        int share = n_orders / min_kills + 1;
        for (int cycle = 0; cycle < min_kills; cycle++) {
            rs = mix(rs);
            int delay = 50 + (int)(rs % 551);
            int to = from + share > n_orders + 1 ? n_orders + 1 : from + share;
            int next;
            int r = run_child(d, from, to, delay, &next);
            if (r < 0) break;
            kills += r;
            from = next;
        }
        printf("%d kills, %d orders placed under kills, %.1f s\n", kills, from - 1, (double)(now_ms() - t0) / 1000);
        int next;
        CHECK_INT(run_child(d, from, n_orders + 1, 0, &next), 0);
        CHECK_INT(next, n_orders + 1);
        CHECK(kills >= min_kills);
    }
    printf("settled after %.1f s\n", (double)(now_ms() - t0) / 1000);

    /* everything from the log */
    problems pr = {0};
    order *o = calloc((size_t)n_orders + 1, sizeof *o);
    evs_store *s;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_open(s, d, EVS_OPEN_READONLY), EVS_OK);
    evs_reader *r;
    const evs_event *ev;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    /* stock per product, folded event by event */
    struct {
        char sku[16];
        long long on_hand, reserved;
        json_t *holds;
    } inv[8];
    int n_inv = 0;
    json_t *cmd_events = json_object(); /* command id -> events */
    uint64_t total = 0;
    while (evs_reader_next(r, &ev) == EVS_OK) {
        total++;
        char type[64];
        snprintf(type, sizeof type, "%.*s", (int)ev->event_type_len, ev->event_type);
        json_t *dt = json_loadb(ev->data, ev->data_len, 0, NULL), *m = json_loadb(ev->metadata, ev->metadata_len, 0, NULL);
        int i;
        if ((i = order_no(ev->stream, ev->stream_len, "order-")) && i <= n_orders) {
            if (!strcmp(type, "OrderSubmitted")) o[i].submitted++;
            if (!strcmp(type, "OrderCompleted")) o[i].completed_ev++;
            if (!strcmp(type, "OrderCancelled")) o[i].cancelled_ev++;
        } else if ((i = order_no(ev->stream, ev->stream_len, "payment-")) && i <= n_orders) {
            if (!strcmp(type, "PaymentAuthorized")) o[i].authorized++;
            if (!strcmp(type, "PaymentVoided")) o[i].voided++;
            if (!strcmp(type, "PaymentCaptured")) {
                o[i].captured += jint(dt, "amount_cents");
                o[i].captures++;
            }
            if (!strcmp(type, "PaymentRefunded")) o[i].refunded += jint(dt, "amount_cents");
        } else if ((i = order_no(ev->stream, ev->stream_len, "shipment-")) && i <= n_orders) {
            if (!strcmp(type, "ShipmentCreated")) o[i].ship_created++;
            if (!strcmp(type, "ShipmentCancelled")) o[i].ship_cancelled++;
        } else if ((i = order_no(ev->stream, ev->stream_len, "saga-order-")) && i <= n_orders) {
            snprintf(o[i].final, sizeof o[i].final, "%s", type);
            if (!strcmp(type, "SagaStepSkipped")) o[i].skipped = 1;
            /* a failure must be one of the injected ones: a command sent again would be refused by the
               aggregates' own rules ("already holds stock", "already exists", "already cancelled") */
            if (!strcmp(type, "SagaStepFailed") || !strcmp(type, "SagaCompensationFailed")) {
                const char *why = json_string_value(json_object_get(dt, "reason"));
                static const char *const injected[] = {"not enough stock", "card declined", "no answer within",
                                                       "refused to void"};
                int ok = 0;
                for (int k = 0; why && k < 4; k++) ok |= strstr(why, injected[k]) != NULL;
                if (!ok) problem(&pr, "o%d: %s for a reason nothing injected: %s", i, type, why ? why : "(none)");
            }
        } else if (ev->stream_len > 10 && !memcmp(ev->stream, "inventory-", 10)) {
            int k = 0;
            while (k < n_inv && strncmp(inv[k].sku, ev->stream + 10, ev->stream_len - 10)) k++;
            if (k == n_inv && n_inv < 8) {
                snprintf(inv[k].sku, sizeof inv[k].sku, "%.*s", (int)ev->stream_len - 10, ev->stream + 10);
                inv[k].on_hand = inv[k].reserved = 0;
                inv[k].holds = json_object();
                n_inv++;
            }
            long long q = jint(dt, "quantity");
            if (!strcmp(type, "Restocked")) inv[k].on_hand += q;
            if (!strcmp(type, "StockReserved")) inv[k].reserved += q;
            if (!strcmp(type, "StockReleased")) inv[k].reserved -= q;
            if (inv[k].reserved < 0 || inv[k].on_hand - inv[k].reserved < 0)
                problem(&pr, "stock of %s went negative at position %llu: %lld on hand, %lld reserved", inv[k].sku,
                        (unsigned long long)ev->global_position, inv[k].on_hand, inv[k].reserved);
        }
        /* the saga's commands: by order, step, phase, effect */
        const char *sid = json_string_value(json_object_get(m, "saga_id")), *cid = json_string_value(json_object_get(m, "command_id"));
        if (cid) {
            json_t *c = json_object_get(cmd_events, cid);
            json_object_set_new(cmd_events, cid, json_integer(c ? json_integer_value(c) + 1 : 1));
        }
        if (sid && sid[0] == 'o' && (i = atoi(sid + 1)) >= 1 && i <= n_orders) {
            order *x = &o[i];
            if (x->n == x->cap) {
                x->cap = x->cap ? x->cap * 2 : 16;
                x->e = realloc(x->e, x->cap * sizeof *x->e);
            }
            eff *f = &x->e[x->n++];
            memset(f, 0, sizeof *f);
            f->step = step_index(json_string_value(json_object_get(m, "saga_step")));
            f->comp = !strcmp(json_string_value(json_object_get(m, "saga_phase")) ? json_string_value(json_object_get(m, "saga_phase")) : "", "compensation");
            f->effect = (int)jint(m, "saga_effect");
            f->pos = ev->global_position;
            snprintf(f->cmd, sizeof f->cmd, "%s", cid ? cid : "");
            snprintf(f->type, sizeof f->type, "%s", type);
            snprintf(f->stream, sizeof f->stream, "%.*s", (int)ev->stream_len, ev->stream);
        }
        json_decref(dt);
        json_decref(m);
    }
    evs_reader_close(r);
    /* 2a. every command id has one event (every shop command appends one) */
    const char *key;
    json_t *val;
    int dup_cmds = 0;
    json_object_foreach(cmd_events, key, val) if (json_integer_value(val) != 1) {
        dup_cmds++;
        problem(&pr, "command %s has %lld events", key, (long long)json_integer_value(val));
    }
    int completed = 0, compensated = 0, skipped = 0, submitted = 0;
    for (int i = 1; i <= n_orders; i++) {
        order *x = &o[i];
        if (!x->submitted) {
            problem(&pr, "order o%d was acknowledged but never submitted", i);
            continue;
        }
        submitted++;
        /* 1. terminal */
        int done = !strcmp(x->final, "SagaCompleted"), comp = !strcmp(x->final, "SagaCompensated");
        completed += done;
        compensated += comp;
        skipped += x->skipped;
        if (!done && !comp) problem(&pr, "saga o%d ended with %s", i, x->final[0] ? x->final : "no saga at all");
        /* 2b. per (step, phase, effect) one command id */
        for (size_t a = 0; a < x->n; a++)
            for (size_t b = a + 1; b < x->n; b++)
                if (x->e[a].step == x->e[b].step && x->e[a].comp == x->e[b].comp && x->e[a].effect == x->e[b].effect)
                    problem(&pr, "o%d: step %s %s effect %d ran twice (%s at %llu, %s at %llu)", i, steps[x->e[a].step],
                            x->e[a].comp ? "compensation" : "action", x->e[a].effect, x->e[a].cmd,
                            (unsigned long long)x->e[a].pos, x->e[b].cmd, (unsigned long long)x->e[b].pos);
        /* 3. compensations: newest step first, after every action, undoing exactly what took effect */
        int last_step = 99;
        uint64_t last_action = 0, first_comp = UINT64_MAX;
        int took[6][8] = {{0}}, undone[6][8] = {{0}};
        for (size_t a = 0; a < x->n; a++) {
            eff *f = &x->e[a];
            if (f->step < 0 || f->effect < 0 || f->effect >= 8) {
                problem(&pr, "o%d: an effect names no step", i);
                continue;
            }
            if (f->comp) {
                undone[f->step][f->effect]++;
                if (f->step > last_step) problem(&pr, "o%d: compensation of %s after that of %s", i, steps[f->step], steps[last_step]);
                last_step = f->step;
                if (f->pos < first_comp) first_comp = f->pos;
            } else {
                took[f->step][f->effect]++;
                if (f->pos > last_action) last_action = f->pos;
            }
        }
        if (first_comp != UINT64_MAX && first_comp < last_action)
            problem(&pr, "o%d: a compensation (position %llu) before the last action (%llu)", i, (unsigned long long)first_comp,
                    (unsigned long long)last_action);
        if (comp) {
            if (!undone[0][0]) problem(&pr, "o%d: compensated, but the order was not cancelled", i);
            /* every product reserved is released, once (compensation effects are numbered by what they undo,
               not by the action's numbering, so they are matched by stream) */
            for (size_t a = 0; a < x->n; a++) {
                if (x->e[a].step != 1 || x->e[a].comp) continue;
                int rel = 0;
                for (size_t b = 0; b < x->n; b++)
                    rel += x->e[b].step == 1 && x->e[b].comp && !strcmp(x->e[b].stream, x->e[a].stream);
                if (rel != 1) problem(&pr, "o%d: %s reserved, released %d times", i, x->e[a].stream, rel);
            }
            for (size_t b = 0; b < x->n; b++) {
                if (x->e[b].step != 1 || !x->e[b].comp) continue;
                int res = 0;
                for (size_t a = 0; a < x->n; a++) res += x->e[a].step == 1 && !x->e[a].comp && !strcmp(x->e[b].stream, x->e[a].stream);
                if (res != 1) problem(&pr, "o%d: %s released, reserved %d times", i, x->e[b].stream, res);
            }
            if (took[2][0] && !undone[2][0] && !x->skipped) problem(&pr, "o%d: the authorization was not voided", i);
            if (took[3][0] != undone[3][0]) problem(&pr, "o%d: shipment created %d, cancelled %d", i, took[3][0], undone[3][0]);
            if (x->cancelled_ev != 1) problem(&pr, "o%d: compensated with %d OrderCancelled", i, x->cancelled_ev);
        }
        if (done) {
            for (int st = 0; st < 6; st++)
                for (int e = 0; e < 8; e++)
                    if (undone[st][e]) problem(&pr, "o%d: completed, yet %s was compensated", i, steps[st]);
            if (x->completed_ev != 1) problem(&pr, "o%d: completed with %d OrderCompleted", i, x->completed_ev);
        }
        /* 5. money */
        long long net = x->captured - x->refunded;
        if (net > 0 && !done) problem(&pr, "o%d: %lld cents captured for an order that is not completed", i, net);
        if (done && (x->captures != 1 || net <= 0)) problem(&pr, "o%d: completed with %d captures", i, x->captures);
        if (x->voided > 1 || x->ship_cancelled > 1) problem(&pr, "o%d: voided %d times, shipment cancelled %d times", i, x->voided, x->ship_cancelled);
    }
    printf("%llu events; %d orders: %d completed, %d compensated (%d after an operator's skip)\n", (unsigned long long)total,
           submitted, completed, compensated, skipped);
    if (pr.count) fprintf(stderr, "%d problems, first: %s\n", pr.count, pr.first);
    CHECK_INT(pr.count, 0);
    CHECK_INT(dup_cmds, 0);
    CHECK_INT(submitted, n_orders);
    CHECK(completed > 0 && compensated > 0 && skipped > 0);
    for (int k = 0; k < n_inv; k++) json_decref(inv[k].holds);
    json_decref(cmd_events);
    for (int i = 0; i <= n_orders; i++) free(o[i].e);
    free(o);
    evs_store_close(s);
    cf_drop(d);
    return TEST_REPORT();
}

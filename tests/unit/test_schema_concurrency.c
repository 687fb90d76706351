/*
 * test_schema_concurrency.c — the registry under concurrent use (also run
 * under ThreadSanitizer): appenders whose events are validated by the hook
 * while another thread registers versions, changes policies, deprecates
 * and declares or removes Lua upcasters, and readers upcast through the
 * same registry.  Every valid event is stored, every invalid one refused
 * with its own pointer in its own thread's last violation, and the
 * counters add up.
 *
 * One suite for both engines (conformance.h): with "postgresql" the
 * registry's writes are kv transactions under the writers' advisory lock.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "evstore_schema.h"
#include "conformance.h"

#define APPENDERS 4
#define PER_THREAD 1500
#define ADMIN_ROUNDS 40 /* each round commits (synced) four times */

static evs_store *store;
static evs_schema_registry *reg;
static atomic_int stop;
static problems probs;
static pthread_mutex_t probs_mu = PTHREAD_MUTEX_INITIALIZER;

#define PROBLEM(...)                                                                                                  \
    do {                                                                                                              \
        pthread_mutex_lock(&probs_mu);                                                                                \
        problem(&probs, __VA_ARGS__);                                                                                 \
        pthread_mutex_unlock(&probs_mu);                                                                              \
    } while (0)

static void *appender(void *arg) {
    int id = (int)(intptr_t)arg;
    char stream[32], data[64];
    snprintf(stream, sizeof stream, "tick-%d", id);
    for (int i = 0; i < PER_THREAD; i++) {
        int bad = i % 3 == 2;
        snprintf(data, sizeof data, "{\"n\":%d,\"by\":%d}", bad ? -i : i, id);
        evs_event_in e = tu_event("Tick", data);
        evs_append_result res;
        int rc = evs_append(store, stream, EVS_EXPECT_ANY, &e, 1, &res, NULL);
        if (bad) {
            evs_schema_violation v;
            if (rc != EVS_EINVAL) PROBLEM("thread %d event %d: invalid, got %s", id, i, evs_errname(rc));
            else if (evs_schema_last_violation(&v) != EVS_OK || strcmp(v.pointer, "/n") || strcmp(v.keyword, "minimum"))
                PROBLEM("thread %d event %d: last violation %s %s", id, i, v.pointer, v.keyword);
        } else if (rc != EVS_OK) {
            PROBLEM("thread %d event %d: valid, got %s: %s", id, i, evs_errname(rc), evs_errmsg());
        }
    }
    return NULL;
}

static void *admin(void *arg) {
    (void)arg;
    char schema[128];
    uint32_t ver = 0;
    const char *up = "return function(d) d.k = (d.k or 0) + 1 return d end";
    evs_schema_policy warn = {EVS_VALIDATION_WARN, EVS_DEPRECATED_WARN}, enforce = {EVS_VALIDATION_ENFORCE, EVS_DEPRECATED_WARN};
    for (int i = 1; !atomic_load(&stop) && i <= ADMIN_ROUNDS; i++) {
        snprintf(schema, sizeof schema, "{\"properties\":{\"k\":{\"type\":\"integer\",\"maximum\":%d}}}", 1000 + i);
        evs_schema_def d = {"Other", 0, schema, strlen(schema), NULL};
        if (evs_schema_register(reg, &d, &ver, NULL) != EVS_OK) PROBLEM("register Other %d: %s", i, evs_errmsg());
        if (evs_schema_set_policy(reg, EVS_POLICY_EVENT_TYPE, "Other", i % 2 ? &warn : &enforce))
            PROBLEM("policy: %s", evs_errmsg());
        if (ver > 1 && evs_schema_deprecate(reg, "Other", ver - 1, 1)) PROBLEM("deprecate: %s", evs_errmsg());
        if (ver > 1 && evs_schema_add_lua_upcaster(reg, "Other", ver - 1, up, strlen(up)))
            PROBLEM("upcaster: %s", evs_errmsg());
        if (ver > 2 && i % 3 == 0 && evs_schema_remove_upcaster(reg, "Other", ver - 2)) PROBLEM("remove: %s", evs_errmsg());
    }
    return NULL;
}

static void *others(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        evs_event_in e = tu_event("Other", "{\"k\":1}");
        evs_append_result res;
        int rc = evs_append(store, "other-1", EVS_EXPECT_ANY, &e, 1, &res, NULL);
        if (rc != EVS_OK) PROBLEM("Other append: %s: %s", evs_errname(rc), evs_errmsg());
    }
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        evs_reader *r;
        evs_upcast_reader *u;
        if (evs_read_all(store, 1, EVS_FORWARD, NULL, 500, &r)) continue;
        if (evs_upcast_reader_open(reg, r, &u)) continue;
        const evs_event *ev;
        int rc;
        /* steps come and go: a missing one is an answer, a crash or a race is not */
        while ((rc = evs_upcast_reader_next(u, &ev)) == EVS_OK || rc == EVS_ENOTFOUND || rc == EVS_EINVAL) {
        }
        if (rc != EVS_DONE) PROBLEM("reader: %s: %s", evs_errname(rc), evs_errmsg());
        evs_upcast_reader_close(u);
        evs_schema_type_stats st[8];
        size_t n;
        evs_schema_stats(reg, NULL, st, 8, &n);
    }
    return NULL;
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    tu_verbose = getenv("EVS_VERBOSE") != NULL;
    char *dir = cf_fresh("schema-conc");
    store = tu_open(dir, EVS_DURABILITY_NONE, 0);
    CHECK_RC(evs_schema_open(store, &reg), EVS_OK);
    const char *tick = "{\"required\":[\"n\"],\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":0}}}";
    evs_schema_def d = {"Tick", 0, tick, strlen(tick), NULL};
    CHECK_RC(evs_schema_register(reg, &d, NULL, NULL), EVS_OK);
    CHECK_RC(evs_schema_set_compat(reg, "Other", EVS_COMPAT_NONE), EVS_OK);
    pthread_t ta[APPENDERS], tadm, toth, trd;
    for (int i = 0; i < APPENDERS; i++) pthread_create(&ta[i], NULL, appender, (void *)(intptr_t)i);
    pthread_create(&tadm, NULL, admin, NULL);
    pthread_create(&toth, NULL, others, NULL);
    pthread_create(&trd, NULL, reader, NULL);
    for (int i = 0; i < APPENDERS; i++) pthread_join(ta[i], NULL);
    pthread_join(tadm, NULL);
    atomic_store(&stop, 1);
    pthread_join(toth, NULL);
    pthread_join(trd, NULL);
    if (probs.count) fprintf(stderr, "%d problems, the first: %s\n", probs.count, probs.first);
    CHECK_INT(probs.count, 0);
    int bad = 0;
    for (int i = 0; i < PER_THREAD; i++) bad += i % 3 == 2;
    for (int i = 0; i < APPENDERS; i++) {
        char stream[32];
        evs_stream_info si;
        snprintf(stream, sizeof stream, "tick-%d", i);
        CHECK_RC(evs_stream_get_info(store, stream, &si), EVS_OK);
        CHECK_INT(si.version, PER_THREAD - bad);
    }
    evs_schema_type_stats st[8];
    size_t n = 0;
    CHECK_RC(evs_schema_stats(reg, "Other", st, 8, &n), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_STR(st[0].event_type, "Tick");
    CHECK_INT(st[0].validated, APPENDERS * PER_THREAD);
    CHECK_INT(st[0].refused, APPENDERS * bad);
    evs_schema_info info;
    CHECK_RC(evs_schema_get(reg, "Other", 0, &info, NULL, NULL), EVS_OK);
    CHECK_INT(info.latest, ADMIN_ROUNDS);
    evs_schema_close(reg);
    CHECK_RC(evs_store_close(store), EVS_OK);
    cf_drop(dir);
    return TEST_REPORT();
}

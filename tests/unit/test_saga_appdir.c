/*
 * test_saga_appdir.c — what the server and `evstore saga` build on beside
 * the engine itself: the definitions of an app directory
 * (evs_saga_load_dir: NAME.lua and NAME_saga.lua, settings from the .json
 * of the same stem, bad files named), the read-only engine that looks at a
 * store while another engine runs it (listings, get, show, stats; every
 * change refused), evs_saga_info_to_json, and the duration parser of
 * `stuck_for` / `--stuck-for`.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "evstore_app.h"
#include "evstore_saga.h"
#include "testutil.h"

/* One step appending "Done" {n: settings.n} to done-{id}. */
static const char go_lua[] =
    "return {\n"
    "  start = { event_types = {'Go'}, key = 'stream_id' },\n"
    "  steps = { { name = 'one', action = function(d, saga)\n"
    "      return { append = 'done-' .. saga.id, type = 'Done', data = { n = (settings and settings.n) or 0 } } end } },\n"
    "}\n";

static void put_file(const char *dir, const char *name, const char *text) {
    char path[4200];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        exit(2);
    }
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

static void test_duration(void) {
    int64_t ns = -1;
    CHECK_INT(evs__parse_duration_ns("90", &ns), 0);
    CHECK_INT(ns, 90000000000ll);
    CHECK_INT(evs__parse_duration_ns("250ms", &ns), 0);
    CHECK_INT(ns, 250000000ll);
    CHECK_INT(evs__parse_duration_ns("5m", &ns), 0);
    CHECK_INT(ns, 300000000000ll);
    CHECK_INT(evs__parse_duration_ns("2h", &ns), 0);
    CHECK_INT(ns, 7200000000000ll);
    CHECK_INT(evs__parse_duration_ns("1d", &ns), 0);
    CHECK_INT(ns, 86400000000000ll);
    CHECK_INT(evs__parse_duration_ns("0s", &ns), 0);
    CHECK_INT(ns, 0);
    ns = 42;
    CHECK_INT(evs__parse_duration_ns("", &ns), -1);
    CHECK_INT(evs__parse_duration_ns("s", &ns), -1);
    CHECK_INT(evs__parse_duration_ns("1.5s", &ns), -1);
    CHECK_INT(evs__parse_duration_ns("5 m", &ns), -1);
    CHECK_INT(evs__parse_duration_ns("5M", &ns), -1);
    CHECK_INT(evs__parse_duration_ns("-5s", &ns), -2);
    CHECK_INT(evs__parse_duration_ns("9999999999999s", &ns), -3);
    CHECK_INT(evs__parse_duration_ns("999999999999d", &ns), -3);
    CHECK_INT(ns, 42); /* untouched on failure */
}

/* An app directory with sagas/: go_saga.lua (+ settings), other.lua, a file that is no script. */
static char *make_app_dir(const char *settings) {
    char *d = tu_tempdir("saga-app");
    char s[4200];
    snprintf(s, sizeof s, "%s/sagas", d);
    mkdir(s, 0755);
    put_file(s, "go_saga.lua", go_lua);
    if (settings) put_file(s, "go_saga.json", settings);
    put_file(s, "notes.txt", "not a script");
    return d;
}

typedef struct world {
    char *dir;
    evs_store *s;
    evs_app *app;
    evs_saga_engine *e;
} world;

/* The store in dir, its app and an engine whose new index starts at `from`; want: the engine's open. */
static void world_open_from(world *w, const char *dir, uint64_t from, int want) {
    memset(w, 0, sizeof *w);
    w->dir = strdup(dir);
    w->s = tu_open(dir, EVS_DURABILITY_NONE, 0);
    CHECK_RC(evs_app_open(w->s, NULL, NULL, &w->app), EVS_OK);
    evs_saga_config c;
    evs_saga_config_init(&c);
    c.from = from;
    CHECK_RC(evs_saga_engine_open(w->s, w->app, &c, &w->e), want);
}

static void world_open(world *w, const char *dir) {
    world_open_from(w, dir, EVS_SUB_FROM_START, EVS_OK);
}

static void world_close(world *w) {
    evs_saga_engine_close(w->e);
    evs_app_close(w->app);
    evs_store_close(w->s);
    free(w->dir);
}

static void go(evs_store *s, const char *stream) {
    evs_event_in ev = tu_event("Go", "{}");
    evs_append_result res;
    CHECK_RC(evs_append(s, stream, EVS_EXPECT_ANY, &ev, 1, &res, NULL), EVS_OK);
}

static void test_load_dir(void) {
    char *app = make_app_dir("{\"n\": 7}");
    char *data = tu_tempdir("saga-data");
    world w;
    world_open(&w, data);
    size_t n = 99;
    CHECK_RC(evs_saga_load_dir(w.e, app, &n), EVS_OK);
    CHECK_INT(n, 1);
    /* the _saga ending is dropped: the type is "go", so registering "go" again conflicts */
    CHECK_RC(evs_saga_register_lua(w.e, "go", go_lua, strlen(go_lua), NULL), EVS_ECONFLICT);
    /* the settings reached the script */
    go(w.s, "job-a");
    CHECK_RC(evs_saga_engine_run(w.e, NULL), EVS_OK);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(w.e, "go", "a", &in), EVS_OK);
    CHECK_STR(evs_saga_status_name(in.status), "completed");
    evs_reader *r;
    const evs_event *ev;
    CHECK_RC(evs_read_stream(w.s, "done-a", 1, EVS_FORWARD, 0, &r), EVS_OK);
    if (r) {
        CHECK_RC(evs_reader_next(r, &ev), EVS_OK);
        CHECK_MEM(ev->data, ev->data_len, "{\"n\":7}");
        evs_reader_close(r);
    }
    /* no sagas/ at all: nothing, no error */
    char *empty = tu_tempdir("saga-empty");
    CHECK_RC(evs_saga_load_dir(w.e, empty, &n), EVS_OK);
    CHECK_INT(n, 0);
    world_close(&w);

    /* bad settings, a bad script: the first failure names the file */
    static const struct {
        const char *settings, *script, *needle;
        int rc;
    } bad[] = {{"{nope", NULL, "go_saga.json", EVS_EINVAL},
               {"[1, 2]", NULL, "go_saga.json: the settings must be a JSON object", EVS_EINVAL},
               {NULL, "return {", "go_saga.lua", EVS_EINVAL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *a = make_app_dir(bad[i].settings);
        if (bad[i].script) {
            char s[4200];
            snprintf(s, sizeof s, "%s/sagas", a);
            put_file(s, "go_saga.lua", bad[i].script);
        }
        char *d = tu_tempdir("saga-bad");
        world_open(&w, d);
        int rc = evs_saga_load_dir(w.e, a, &n);
        CHECK(rc != EVS_OK);
        if (bad[i].rc) CHECK_RC(rc, bad[i].rc);
        CHECK_CONTAINS(evs_errmsg(), bad[i].needle);
        CHECK_INT(n, 0);
        world_close(&w);
        tu_rmrf(a);
        tu_rmrf(d);
        free(a);
        free(d);
    }
    tu_rmrf(app);
    tu_rmrf(data);
    tu_rmrf(empty);
    free(app);
    free(data);
    free(empty);
}

static void test_read_only(void) {
    char *app = make_app_dir(NULL);
    char *data = tu_tempdir("saga-ro");
    evs_saga_config ro;
    evs_saga_config_init(&ro);
    ro.read_only = 1;
    evs_saga_engine *r = NULL;
    /* a store that never had a saga engine: nothing to look at, and nothing created */
    {
        evs_store *s = tu_open(data, EVS_DURABILITY_NONE, 0);
        CHECK_RC(evs_saga_engine_open(s, NULL, &ro, &r), EVS_ENOTFOUND);
        CHECK(r == NULL);
        char p[4200];
        struct stat st;
        snprintf(p, sizeof p, "%s/sagas", data);
        CHECK(stat(p, &st) != 0);
        CHECK_RC(evs_saga_engine_open(s, NULL, NULL, &r), EVS_EINVAL); /* without read_only the app is required */
        evs_store_close(s);
    }
    world w;
    world_open(&w, data);
    CHECK_RC(evs_saga_load_dir(w.e, app, NULL), EVS_OK);
    go(w.s, "job-a");
    go(w.s, "job-b");
    CHECK_RC(evs_saga_engine_run(w.e, NULL), EVS_OK);

    /* beside the running engine: the store read-only, the index read-only */
    evs_store *rs;
    CHECK_RC(evs_store_create(&rs), EVS_OK);
    CHECK_RC(evs_store_open(rs, data, EVS_OPEN_READONLY), EVS_OK);
    CHECK_RC(evs_saga_engine_open(rs, NULL, &ro, &r), EVS_OK);
    evs_saga_info page[4];
    size_t n = 0;
    char next[EVS_SAGA_CURSOR_MAX];
    evs_saga_query q = {"go", -1, 0, NULL, 1};
    CHECK_RC(evs_saga_list(r, &q, page, 1, &n, next), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_STR(page[0].id, "a");
    CHECK(next[0] != '\0');
    q.cursor = next;
    q.limit = 4;
    CHECK_RC(evs_saga_list(r, &q, page, 4, &n, next), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_STR(page[0].id, "b");
    CHECK_STR(next, "");
    evs_saga_info in;
    CHECK_RC(evs_saga_get(r, "go", "b", &in), EVS_OK);
    CHECK_INT(in.status, EVS_SAGA_COMPLETED);
    CHECK_RC(evs_saga_get(r, "go", "zz", &in), EVS_ENOTFOUND);
    char *js = NULL;
    CHECK_RC(evs_saga_show_json(r, "go", "a", &js, NULL), EVS_OK);
    CHECK_CONTAINS(js, "\"status\":\"completed\"");
    CHECK_CONTAINS(js, "\"timeline\":[");
    free(js);
    evs_saga_type_stats ts[2];
    CHECK_RC(evs_saga_get_type_stats(r, ts, 2, &n), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_INT(ts[0].started, 2);
    CHECK_INT(ts[0].by_state[EVS_SAGA_COMPLETED], 2);
    /* what the running engine indexes next shows up beside it */
    go(w.s, "job-c");
    CHECK_RC(evs_saga_engine_run(w.e, NULL), EVS_OK);
    CHECK_RC(evs_saga_get_type_stats(r, ts, 2, &n), EVS_OK);
    CHECK_INT(ts[0].started, 3);
    /* everything that would change something is refused */
    CHECK_RC(evs_saga_pause(r, "go", "c", NULL), EVS_EINVAL);
    CHECK_RC(evs_saga_abort(r, "go", "c", NULL), EVS_EINVAL);
    CHECK_RC(evs_saga_register_lua(r, "x", go_lua, strlen(go_lua), NULL), EVS_EINVAL);
    CHECK_RC(evs_saga_engine_run(r, NULL), EVS_EINVAL);
    CHECK_RC(evs_saga_engine_start(r), EVS_EINVAL);
    CHECK_RC(evs_saga_load_dir(r, app, NULL), EVS_EINVAL);
    evs_saga_engine_close(r);
    evs_store_close(rs);

    /* the info as listings show it */
    CHECK_RC(evs_saga_get(w.e, "go", "c", &in), EVS_OK);
    CHECK_RC(evs_saga_info_to_json(&in, &js, &n), EVS_OK);
    json_t *o = json_loads(js, 0, NULL);
    CHECK(o != NULL);
    CHECK_STR(json_string_value(json_object_get(o, "type")), "go");
    CHECK_STR(json_string_value(json_object_get(o, "id")), "c");
    CHECK_STR(json_string_value(json_object_get(o, "stream")), "saga-go-c");
    CHECK_STR(json_string_value(json_object_get(o, "status")), "completed");
    CHECK(json_is_null(json_object_get(o, "step")));
    CHECK(json_is_null(json_object_get(o, "next_due")));
    CHECK(json_is_string(json_object_get(o, "started_at")));
    CHECK_INT(json_integer_value(json_object_get(o, "version")), (long long)in.version);
    CHECK(json_object_get(o, "last_error") == NULL);
    CHECK(json_object_get(o, "paused_from") == NULL);
    CHECK_INT(n, strlen(js));
    json_decref(o);
    free(js);
    world_close(&w);
    tu_rmrf(app);
    tu_rmrf(data);
    free(app);
    free(data);
}

/* A start past the head + 1 is refused as the consumer bus refuses it, before DIR/sagas/ is made:
   the engine would skip every starting event appended up to there. */
static void test_from_past_head(void) {
    char *data = tu_tempdir("saga-from");
    evs_store *s = tu_open(data, EVS_DURABILITY_NONE, 0);
    go(s, "job-a");
    go(s, "job-b");
    evs_store_close(s);
    char sagas[4200];
    struct stat st;
    snprintf(sagas, sizeof sagas, "%s/sagas", data);
    world w;
    world_open_from(&w, data, 4, EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "position 4 lies past the store's head 2: at most 3, just after the last event");
    CHECK(stat(sagas, &st) != 0);
    world_close(&w);
    /* head + 1 starts with the next event; once the index exists, from no longer counts */
    char *app = make_app_dir(NULL);
    size_t n;
    world_open_from(&w, data, 3, EVS_OK);
    CHECK_RC(evs_saga_load_dir(w.e, app, &n), EVS_OK);
    go(w.s, "job-c");
    CHECK_RC(evs_saga_engine_run(w.e, NULL), EVS_OK);
    evs_saga_info in;
    CHECK_RC(evs_saga_get(w.e, "go", "b", &in), EVS_ENOTFOUND);
    CHECK_RC(evs_saga_get(w.e, "go", "c", &in), EVS_OK);
    world_close(&w);
    world_open_from(&w, data, 99, EVS_OK);
    world_close(&w);
    free(app);
    free(data);
}

int main(void) {
    test_duration();
    test_load_dir();
    test_read_only();
    test_from_past_head();
    return TEST_REPORT();
}

/*
 * test_app_dir.c — where an application's definitions come from
 * (evstore_app.h, "app directories"): loading DIR/NAME.lua and
 * DIR/queries.json, and bad files named in the error; aggregate scripts
 * put into the store (created, unchanged, replaced with handlers swapped,
 * counts carried, dropped commands unknown, old snapshots not applied),
 * a refused put changing nothing (neither the running script nor the
 * file), kept scripts coming back after a reopen, skipped with a report
 * when the name is taken, a damaged file refused; the registry as JSON;
 * and the member an invalid command got wrong (result.field).
 */
#include <jansson.h>
#include <sys/stat.h>

#include "evstore_app.h"
#include "testutil.h"

static const char *counter_v1 =
    "return {\n"
    "  init = function() return { n = 0 } end,\n"
    "  evolve = { Added = function(s, e) s.n = s.n + e.data.k end },\n"
    "  commands = {\n"
    "    Add = { fields = { k = 'integer', note = 'string?' }, decide = function(s, c)\n"
    "      if c.data.k > 10 then return 'too big' end\n"
    "      return { { type = 'Added', data = { k = c.data.k } } } end },\n"
    "    Reset = { decide = function(s, c) return { { type = 'Added', data = { k = -s.n } } } end },\n"
    "  },\n"
    "}\n";

/* v2: a looser rule, Reset dropped, Double added */
static const char *counter_v2 =
    "return {\n"
    "  init = function() return { n = 0 } end,\n"
    "  evolve = { Added = function(s, e) s.n = s.n + e.data.k end },\n"
    "  commands = {\n"
    "    Add = { fields = { k = 'integer' }, decide = function(s, c)\n"
    "      if c.data.k > 100 then return 'too big' end\n"
    "      return { { type = 'Added', data = { k = c.data.k } } } end },\n"
    "    Double = { decide = function(s, c) return { { type = 'Added', data = { k = s.n } } } end },\n"
    "  },\n"
    "}\n";

static void write_file(const char *dir, const char *name, const char *text) {
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static evs_app *open_app(evs_store *s) {
    evs_app *a = NULL;
    if (evs_app_open(s, NULL, NULL, &a)) {
        fprintf(stderr, "app_open: %s\n", evs_errmsg());
        exit(2);
    }
    return a;
}

/* Run a command; returns its outcome (-1 on a library failure), reason and field copied out. */
static int cmd(evs_app *a, const char *json, char *reason, size_t cap, uint64_t *version) {
    evs_command_result r;
    if (evs_app_execute_json(a, NULL, json, strlen(json), &r)) {
        fprintf(stderr, "execute: %s\n", evs_errmsg());
        return -1;
    }
    if (reason) snprintf(reason, cap, "%s|%s", r.reason, r.field);
    if (version) *version = r.version;
    int o = r.outcome;
    evs_command_result_free(&r);
    return o;
}

static void test_load_dir(const char *d) {
    char sub[4200], appdir[4200], why[1024];
    snprintf(sub, sizeof sub, "%s/store1", d);
    snprintf(appdir, sizeof appdir, "%s/app1", d);
    mkdir(appdir, 0755);
    write_file(appdir, "counter.lua", counter_v1);
    write_file(appdir, "notes.txt", "not a script");
    write_file(appdir, "queries.json",
               "{\"totals\": {\"projection\": \"totals\", \"fields\": [\"n\", \"a.b\"], \"default_limit\": 5},\n"
               " \"all\": {\"projection\": \"totals\"}}");
    evs_store *s = tu_open(sub, EVS_DURABILITY_NONE, 1 << 20);
    evs_app *a = open_app(s);
    CHECK_RC(evs_app_load_dir(a, appdir), EVS_OK);
    CHECK_INT(cmd(a, "{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":{\"k\":3}}", NULL, 0, NULL),
              EVS_CMD_ACCEPTED);
    CHECK_INT(cmd(a, "{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":{\"k\":30}}", why, sizeof why, NULL),
              EVS_CMD_REJECTED);
    CHECK_STR(why, "too big|");
    char *js = NULL;
    CHECK_RC(evs_app_describe(a, NULL, &js, NULL), EVS_OK);
    json_t *o = json_loads(js, 0, NULL);
    CHECK(o != NULL);
    json_t *ag = json_array_get(json_object_get(o, "aggregates"), 0);
    CHECK_STR(json_string_value(json_object_get(ag, "name")), "counter");
    CHECK_STR(json_string_value(json_object_get(ag, "origin")), "app_dir");
    CHECK_STR(json_string_value(json_object_get(ag, "kind")), "lua");
    CHECK_CONTAINS(json_string_value(json_object_get(ag, "file")), "app1/counter.lua");
    CHECK_INT(json_array_size(json_object_get(ag, "commands")), 2);
    CHECK(json_object_get(ag, "source") == NULL); /* only when one type is asked for */
    json_t *add = NULL, *c;
    size_t i;
    json_array_foreach(json_object_get(o, "commands"), i, c) if (strcmp(json_string_value(json_object_get(c, "command_type")), "Add") == 0) add = c;
    CHECK(add != NULL);
    char *fields = json_dumps(json_object_get(add, "fields"), JSON_COMPACT);
    CHECK_STR(fields, "[{\"name\":\"k\",\"type\":\"integer\",\"required\":true},"
                      "{\"name\":\"note\",\"type\":\"string\",\"required\":false}]");
    free(fields);
    json_t *q0 = json_array_get(json_object_get(o, "queries"), 0), *q1 = json_array_get(json_object_get(o, "queries"), 1);
    CHECK_INT(json_array_size(json_object_get(o, "queries")), 2);
    CHECK_STR(json_string_value(json_object_get(q0, "name")), "totals");
    CHECK_INT(json_integer_value(json_object_get(q0, "default_limit")), 5);
    CHECK_INT(json_array_size(json_object_get(q0, "fields")), 2);
    CHECK(json_is_null(json_object_get(q1, "fields")));
    json_decref(o);
    free(js);
    CHECK_RC(evs_app_describe(a, "counter", &js, NULL), EVS_OK);
    CHECK_CONTAINS(js, "\"source\":\"return {");
    free(js);
    CHECK_RC(evs_app_describe(a, "nope", &js, NULL), EVS_ENOTFOUND);
    /* loading the same directory again: the names are taken, nothing changes */
    CHECK_RC(evs_app_load_dir(a, appdir), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "counter.lua");
    evs_app_close(a);

    /* bad directories and files, each named */
    a = open_app(s);
    snprintf(sub, sizeof sub, "%s/nosuch", d);
    CHECK_RC(evs_app_load_dir(a, sub), EVS_ENOTFOUND);
    CHECK_CONTAINS(evs_errmsg(), "nosuch");
    snprintf(appdir, sizeof appdir, "%s/app2", d);
    mkdir(appdir, 0755);
    write_file(appdir, "a_ok.lua", counter_v1);
    write_file(appdir, "b_bad.lua", "return {");
    CHECK_RC(evs_app_load_dir(a, appdir), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "app2/b_bad.lua");
    CHECK_CONTAINS(evs_errmsg(), "does not compile");
    evs_app_close(a);
    const struct {
        const char *text;
        int rc;
        const char *needle;
    } qcases[] = {
        {"{\"q\": {\"projection\": \"p\",}", EVS_EJSON, "queries.json: line 1"},
        {"[1]", EVS_EINVAL, "an object of queries"},
        {"{\"q\": {\"projection\": \"p\", \"sort\": \"x\"}}", EVS_EINVAL, "\"sort\" is not one of"},
        {"{\"q\": {\"fields\": [\"x\"]}}", EVS_EINVAL, "names no projection"},
        {"{\"q\": {\"projection\": \"p\", \"fields\": [1]}}", EVS_EINVAL, "fields[0]"},
        {"{\"q\": {\"projection\": \"p\", \"max_limit\": 0}}", EVS_EINVAL, "max_limit"},
        {"{\"q\": {\"projection\": \"p\"}, \"q\": {\"projection\": \"p\"}}", EVS_EJSON, "duplicate"},
    };
    snprintf(appdir, sizeof appdir, "%s/app3", d);
    mkdir(appdir, 0755);
    for (size_t k = 0; k < sizeof qcases / sizeof qcases[0]; k++) {
        a = open_app(s);
        write_file(appdir, "queries.json", qcases[k].text);
        CHECK_RC(evs_app_load_dir(a, appdir), qcases[k].rc);
        CHECK_CONTAINS(evs_errmsg(), qcases[k].needle);
        evs_app_close(a);
    }
    evs_store_close(s);
}

static void test_put(const char *d) {
    char sub[4200], path[4300], appdir[4200], why[1024];
    snprintf(sub, sizeof sub, "%s/store2", d);
    snprintf(path, sizeof path, "%s/app/aggregates.json", sub);
    evs_store *s = tu_open(sub, EVS_DURABILITY_NONE, 1 << 20);
    evs_app *a = open_app(s);
    int what = 0;
    CHECK_RC(evs_app_put_lua_aggregate(a, "counter", counter_v1, strlen(counter_v1), &what), EVS_OK);
    CHECK_INT(what, EVS_PUT_CREATED);
    char *file = read_text(path);
    CHECK(file != NULL);
    CHECK_CONTAINS(file, "\"counter\"");
    CHECK_RC(evs_app_put_lua_aggregate(a, "counter", counter_v1, strlen(counter_v1), &what), EVS_OK);
    CHECK_INT(what, EVS_PUT_UNCHANGED);
    uint64_t v = 0;
    CHECK_INT(cmd(a, "{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":{\"k\":4}}", NULL, 0, &v),
              EVS_CMD_ACCEPTED);
    CHECK_INT(cmd(a, "{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":{\"k\":50}}", NULL, 0, NULL),
              EVS_CMD_REJECTED);
    uint64_t snapv = 0;
    CHECK_RC(evs_aggregate_snapshot(a, "counter", "x", &snapv), EVS_OK);
    CHECK_INT(snapv, 1);

    /* refused puts change nothing: the running script, nor the file */
    CHECK_RC(evs_app_put_lua_aggregate(a, "counter", "return {", 8, &what), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "does not compile");
    const char *thief = "return { evolve = {}, commands = { Add = { decide = function() return {} end } } }";
    CHECK_RC(evs_app_put_lua_aggregate(a, "thief", thief, strlen(thief), &what), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "command type \"Add\" already has a handler (aggregate type counter)");
    char *file2 = read_text(path);
    CHECK_STR(file2, file);
    free(file2);
    CHECK_INT(cmd(a, "{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":{\"k\":50}}", NULL, 0, NULL),
              EVS_CMD_REJECTED);
    CHECK_INT(cmd(a, "{\"command_type\":\"Reset\",\"aggregate_id\":\"x\"}", NULL, 0, NULL), EVS_CMD_ACCEPTED);
    /* a type of another origin is not replaced */
    CHECK_RC(evs_app_register_lua_aggregate(a, "lib", thief + 0, 0), EVS_EINVAL);
    const char *libsrc = "return { evolve = {}, commands = { Ping = { decide = function() return {} end } } }";
    CHECK_RC(evs_app_register_lua_aggregate(a, "lib", libsrc, strlen(libsrc)), EVS_OK);
    CHECK_RC(evs_app_put_lua_aggregate(a, "lib", libsrc, strlen(libsrc), &what), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "was registered by the program");

    /* the replacement: new rule, Reset gone, Double new, counts carried over */
    CHECK_RC(evs_app_put_lua_aggregate(a, "counter", counter_v2, strlen(counter_v2), &what), EVS_OK);
    CHECK_INT(what, EVS_PUT_REPLACED);
    CHECK_INT(cmd(a, "{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":{\"k\":50}}", NULL, 0, NULL),
              EVS_CMD_ACCEPTED);
    CHECK_INT(cmd(a, "{\"command_type\":\"Reset\",\"aggregate_id\":\"x\"}", why, sizeof why, NULL), EVS_CMD_UNKNOWN);
    CHECK_CONTAINS(why, "no handler for command type \"Reset\"");
    CHECK_INT(cmd(a, "{\"command_type\":\"Double\",\"aggregate_id\":\"x\"}", NULL, 0, NULL), EVS_CMD_ACCEPTED);
    evs_command_type_stats ts[8];
    size_t nts = 0;
    CHECK_RC(evs_app_command_stats(a, ts, 8, &nts), EVS_OK);
    int seen_add = 0;
    for (size_t i = 0; i < nts; i++) {
        CHECK(strcmp(ts[i].command_type, "Reset") != 0);
        if (strcmp(ts[i].command_type, "Add") == 0) {
            seen_add = 1;
            CHECK_INT(ts[i].outcomes[EVS_CMD_ACCEPTED], 2); /* one under v1, one under v2 */
            CHECK_INT(ts[i].outcomes[EVS_CMD_REJECTED], 2);
        }
    }
    CHECK(seen_add);
    /* the snapshot taken by v1 is not applied by v2 */
    char *js = NULL;
    evs_load_info info;
    CHECK_RC(evs_aggregate_load_json(a, "counter", "x", 0, &js, NULL, &info), EVS_OK);
    CHECK_STR(js, "{\"n\":100}"); /* 4, reset to 0, +50, doubled */
    CHECK_INT(info.snapshot_version, 0);
    CHECK(info.snapshots_ignored >= 1);
    free(js);
    evs_app_close(a);
    free(file);

    /* after a restart the kept script is the replacement */
    a = open_app(s);
    char report[1024];
    CHECK_RC(evs_app_load_stored(a, report, sizeof report), EVS_OK);
    CHECK_STR(report, "");
    CHECK_INT(cmd(a, "{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":{\"k\":60}}", NULL, 0, NULL),
              EVS_CMD_ACCEPTED);
    CHECK_RC(evs_app_describe(a, "counter", &js, NULL), EVS_OK);
    CHECK_CONTAINS(js, "\"origin\":\"stored\"");
    CHECK_CONTAINS(js, "c.data.k > 100");
    free(js);
    evs_app_close(a);

    /* an app directory that defines the same type wins; the kept one is reported, not loaded */
    snprintf(appdir, sizeof appdir, "%s/app4", d);
    mkdir(appdir, 0755);
    write_file(appdir, "counter.lua", counter_v1);
    a = open_app(s);
    CHECK_RC(evs_app_load_dir(a, appdir), EVS_OK);
    CHECK_RC(evs_app_load_stored(a, report, sizeof report), EVS_OK);
    CHECK_CONTAINS(report, "the kept script of aggregate type \"counter\" is not loaded");
    CHECK_CONTAINS(report, "already registered");
    CHECK_INT(cmd(a, "{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":{\"k\":60}}", NULL, 0, NULL),
              EVS_CMD_REJECTED);
    CHECK_RC(evs_app_put_lua_aggregate(a, "counter", counter_v2, strlen(counter_v2), &what), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "from an app directory");
    CHECK_CONTAINS(evs_errmsg(), "app4/counter.lua");
    evs_app_close(a);

    /* a damaged file is refused, and a put does not overwrite it */
    FILE *f = fopen(path, "wb");
    fputs("{\"format\": 7}", f);
    fclose(f);
    a = open_app(s);
    CHECK_RC(evs_app_load_stored(a, report, sizeof report), EVS_ECORRUPT);
    CHECK_CONTAINS(evs_errmsg(), "aggregates.json");
    CHECK_RC(evs_app_put_lua_aggregate(a, "other", libsrc, strlen(libsrc), &what), EVS_ECORRUPT);
    file = read_text(path);
    CHECK_STR(file, "{\"format\": 7}");
    free(file);
    evs_app_close(a);
    evs_store_close(s);
}

static void test_fields(const char *d) {
    char sub[4200], why[1024];
    snprintf(sub, sizeof sub, "%s/store3", d);
    evs_store *s = tu_open(sub, EVS_DURABILITY_NONE, 1 << 20);
    evs_app *a = open_app(s);
    CHECK_RC(evs_app_register_lua_aggregate(a, "counter", counter_v1, strlen(counter_v1)), EVS_OK);
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":{}}", "command Add: data.k is required (integer)|data.k"},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":{\"k\":\"1\"}}",
         "command Add: data.k must be an integer, got string|data.k"},
        {"{\"command_type\":\"Add\",\"data\":{\"k\":1}}", "command Add: aggregate_id is required|aggregate_id"},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"\",\"data\":{\"k\":1}}", "aggregate_id must be 1..200 bytes|aggregate_id"},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"command_id\":\"\",\"data\":{\"k\":1}}",
         "command_id must be 1..200 bytes|command_id"},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"bogus\":1}", "unknown command member \"bogus\"|bogus"},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":[1]}", "command member \"data\" has the wrong type (array)|data"},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":{\"k\":1},\"correlation_id\":\"nope\"}",
         "correlation_id \"nope\" is not a UUID|correlation_id"},
        {"{\"command_type\":\"Add\",\"aggregate_id\":\"x\",\"data\":{\"k\":1},\"metadata\":{\"correlation_id\":\"n\"}}",
         "correlation_id \"n\" is not a UUID|metadata.correlation_id"},
        {"{\"aggregate_id\":\"x\"}", "command_type is required|command_type"},
        {"[]", "a command must be a JSON object|"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_INT(cmd(a, cases[i].json, why, sizeof why, NULL), EVS_CMD_INVALID);
        CHECK_STR(why, cases[i].want);
    }
    /* the field is in the JSON of a result */
    evs_command_result r;
    const char *nok = "{\"aggregate_id\":\"x\",\"data\":{}}";
    CHECK_RC(evs_app_execute_json(a, "Add", nok, strlen(nok), &r), EVS_OK);
    char *js = NULL;
    CHECK_RC(evs_command_result_to_json(&r, &js, NULL), EVS_OK);
    CHECK_CONTAINS(js, "\"outcome\":\"invalid\"");
    CHECK_CONTAINS(js, "\"field\":\"data.k\"");
    free(js);
    evs_command_result_free(&r);
    evs_app_close(a);
    evs_store_close(s);
}

int main(void) {
    char *d = tu_tempdir("appdir");
    test_load_dir(d);
    test_put(d);
    test_fields(d);
    tu_rmrf(d);
    free(d);
    return TEST_REPORT();
}

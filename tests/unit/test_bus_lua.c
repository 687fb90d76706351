/*
 * test_bus_lua.c — Lua projections: a counter per stream and a
 * non-partitioned total, filters and custom partitions declared by the
 * script, state stored as JSON and restored across a reopen, the stored
 * source reopened by name; and the sandbox: an infinite loop, unbounded
 * allocation, os.execute, io.open, require, load, a pcall around the
 * budget — each stopped with a clear error that parks the event.
 */
#include "evstore_bus.h"
#include "conformance.h"

static const char *counter_src =
    "return {\n"
    "  filter = { event_types = {'Deposited', 'Withdrawn'}, stream_prefix = 'acct-' },\n"
    "  init = function() return { balance = 0, n = 0, tags = {} } end,\n"
    "  handlers = {\n"
    "    Deposited = function(s, e) s.balance = s.balance + e.data.amount; s.n = s.n + 1 end,\n"
    "    Withdrawn = function(s, e)\n"
    "      s.balance = s.balance - e.data.amount; s.n = s.n + 1\n"
    "      s.tags[#s.tags + 1] = e.type .. '@' .. e.stream_position\n"
    "    end,\n"
    "  },\n"
    "}\n";

static void append_amount(evs_store *s, const char *stream, const char *type, int amount) {
    char data[48];
    snprintf(data, sizeof data, "{\"amount\":%d}", amount);
    evs_event_in e = tu_event(type, data);
    evs_append_result r;
    if (evs_append(s, stream, EVS_EXPECT_ANY, &e, 1, &r, NULL) != EVS_OK) {
        fprintf(stderr, "append: %s\n", evs_errmsg());
        exit(2);
    }
}

static void state_is(evs_bus *b, const char *name, const char *part, const char *want) {
    char *js = NULL;
    CHECK_RC(evs_proj_get_state(b, name, part, &js, NULL), EVS_OK);
    if (js) CHECK_STR(js, want);
    free(js);
}

static void test_counter(const char *d) {
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    append_amount(s, "acct-1", "Deposited", 100);
    append_amount(s, "acct-1", "Withdrawn", 30);
    append_amount(s, "acct-2", "Deposited", 5);
    append_amount(s, "other-1", "Deposited", 1000);
    append_amount(s, "acct-2", "Renamed", 0);
    evs_projection *p;
    CHECK_RC(evs_proj_open_lua(b, "balances", counter_src, strlen(counter_src), NULL, NULL, &p), EVS_OK);
    size_t n;
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 3);
    evs_proj_close(p);
    state_is(b, "balances", "acct-1", "{\"balance\":70,\"n\":2,\"tags\":[\"Withdrawn@2\"]}");
    state_is(b, "balances", "acct-2", "{\"balance\":5,\"n\":1,\"tags\":{}}");
    char *js;
    CHECK_RC(evs_proj_get_state(b, "balances", "other-1", &js, NULL), EVS_ENOTFOUND);
    evs_consumer_info info;
    CHECK_RC(evs_consumer_get(b, "balances", &info), EVS_OK);
    CHECK_CONTAINS(info.filter_json, "\"stream_prefix\":\"acct-\"");
    evs_bus_close(b);
    evs_store_close(s);

    /* reopen: the stored source runs on, from the stored state */
    s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    append_amount(s, "acct-1", "Withdrawn", 20);
    CHECK_RC(evs_proj_open_stored(b, "balances", NULL, &p), EVS_OK);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 1);
    evs_proj_close(p);
    state_is(b, "balances", "acct-1", "{\"balance\":50,\"n\":3,\"tags\":[\"Withdrawn@2\",\"Withdrawn@3\"]}");

    /* non-partitioned, handler returning a new table, $any, a table init */
    const char *total =
        "return { partition = 'none', init = { count = 0 },\n"
        "  handlers = { ['$any'] = function(s, e) return { count = s.count + 1, last = e.type } end } }";
    CHECK_RC(evs_proj_open_lua(b, "total", total, strlen(total), NULL, NULL, &p), EVS_OK);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 6);
    evs_proj_close(p);
    state_is(b, "total", NULL, "{\"count\":6,\"last\":\"Withdrawn\"}");

    /* custom partitions from the script */
    const char *bytype =
        "return { partition = function(e) return e.type end,\n"
        "  handlers = { ['$any'] = function(s, e) s.n = (s.n or 0) + 1 end } }";
    CHECK_RC(evs_proj_open_lua(b, "bytype", bytype, strlen(bytype), NULL, NULL, &p), EVS_OK);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    evs_proj_close(p);
    state_is(b, "bytype", "Deposited", "{\"n\":3}");
    state_is(b, "bytype", "Renamed", "{\"n\":1}");
    evs_bus_close(b);
    evs_store_close(s);
}

/* Open a script that fails on every "Go" event and return the DLQ entry's error. */
static void sandbox_case(evs_store *s, evs_bus *b, const char *name, const char *body, const char *want_err) {
    char src[2048];
    snprintf(src, sizeof src, "return { partition = 'none', handlers = { Go = function(s, e)\n%s\nend } }", body);
    evs_lua_limits lim = {4u << 20, 2000000};
    evs_projection *p;
    CHECK_RC(evs_proj_open_lua(b, name, src, strlen(src), &lim, NULL, &p), EVS_OK);
    if (!p) return;
    uint64_t pos = evs_head(s) + 1;
    evs_event_in e = tu_event("Go", "{}");
    evs_append_result r;
    CHECK_RC(evs_append(s, "sandbox-1", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
    size_t n;
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 0);
    evs_dlq_entry de;
    CHECK_RC(evs_dlq_get(b, name, pos, &de), EVS_OK);
    CHECK_CONTAINS(de.last_error, want_err);
    /* the state is usable afterwards: a later good event is applied */
    evs_proj_close(p);
    CHECK_RC(evs_consumer_delete(b, name), EVS_OK);
}

static void test_sandbox(const char *d) {
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    sandbox_case(s, b, "loop", "while true do end", "instruction budget of 2000000 exceeded");
    sandbox_case(s, b, "pcall-loop", "while true do pcall(function() while true do end end) end",
                 "instruction budget");
    sandbox_case(s, b, "pcall-once", "local ok = pcall(function() while true do end end); s.escaped = true",
                 "instruction budget");
    sandbox_case(s, b, "alloc", "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end",
                 "memory limit of 4194304 bytes exceeded");
    sandbox_case(s, b, "alloc-pcall", "pcall(function() local x = string.rep('x', 1e9) end)", "memory limit");
    sandbox_case(s, b, "os", "os.execute('touch /tmp/evs-pwned')", "global 'os'");
    sandbox_case(s, b, "io", "io.open('/etc/passwd')", "global 'io'");
    sandbox_case(s, b, "require", "require('os')", "global 'require'");
    sandbox_case(s, b, "load", "load('return 1')()", "global 'load'");
    sandbox_case(s, b, "dofile", "dofile('/etc/passwd')", "global 'dofile'");
    sandbox_case(s, b, "random", "s.r = math.random()", "field 'random'");
    sandbox_case(s, b, "debug", "debug.getinfo(1)", "global 'debug'");
    sandbox_case(s, b, "error", "error('bad event')", "bad event");
    sandbox_case(s, b, "return-number", "return 42", "returned a number");
    sandbox_case(s, b, "bad-state", "s.f = function() end", "cannot be stored: state holds a function");
    /* Lua runs finalizers with hooks off, where no budget could stop this one (found by fuzz_proj) */
    sandbox_case(s, b, "gc", "s.x = setmetatable({}, {__gc = function() while true do end end})",
                 "__gc finalizers are not allowed");
    /* bad scripts are refused at open, with the reason */
    evs_projection *p;
    const char *bad[][2] = {
        {"return 1", "must return a table"},
        {"return {}", "'handlers' table"},
        {"this is not lua", "does not compile"},
        {"while true do end", "instruction budget"},
        {"return { handlers = {}, partition = 'weird' }", "'partition' must be"},
        /* a misspelt filter key would have meant every event */
        {"return { handlers = {}, filter = { event_type = 'A' } }", "unknown key 'event_type'"},
        {"return { handlers = {}, filter = { stream_prefix = 'a-', 'A' } }", "not a number"},
        {"\x1bLua", "does not compile"},
        /* metatables are not consulted: this __index used to raise outside any protected call and abort */
        {"return setmetatable({}, {__index = function(t, k) error('no ' .. k) end})", "'handlers' table"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(evs_proj_open_lua(b, "bad", bad[i][0], strlen(bad[i][0]), NULL, NULL, &p), EVS_EINVAL);
        CHECK_CONTAINS(evs_errmsg(), bad[i][1]);
        /* the check alone refuses it the same way, and stores nothing */
        CHECK_RC(evs_proj_check_lua("bad", bad[i][0], strlen(bad[i][0]), NULL), EVS_EINVAL);
        CHECK_CONTAINS(evs_errmsg(), bad[i][1]);
        CHECK_CONTAINS(evs_errmsg(), "projection \"bad\": ");
    }
    evs_consumer_info gone;
    CHECK_RC(evs_consumer_get(b, "bad", &gone), EVS_ENOTFOUND);
    CHECK_RC(evs_proj_check_lua("good", counter_src, strlen(counter_src), NULL), EVS_OK);
    /* a good script under a bad name: the check refuses it as evs_proj_open_lua does, with its message */
    char longname[EVS_BUS_MAX_NAME + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    const char *badnames[] = {"", "a\x01b", "\xff", longname};
    for (size_t i = 0; i < sizeof badnames / sizeof badnames[0]; i++) {
        char want[256];
        CHECK_RC(evs_proj_open_lua(b, badnames[i], counter_src, strlen(counter_src), NULL, NULL, &p), EVS_EINVAL);
        snprintf(want, sizeof want, "%s", evs_errmsg());
        CHECK_CONTAINS(want, "consumer name");
        CHECK_RC(evs_proj_check_lua(badnames[i], counter_src, strlen(counter_src), NULL), EVS_EINVAL);
        CHECK_STR(evs_errmsg(), want);
    }
    /* handlers behind a metatable that raises or loops: the lookups are raw, nothing aborts */
    const char *meta = "return { partition = 'none', handlers = setmetatable({ Known = function(s, e) s.k = 1 end }, "
                       "{ __index = function() while true do end end }) }";
    CHECK_RC(evs_proj_open_lua(b, "meta", meta, strlen(meta), NULL, NULL, &p), EVS_OK);
    if (p) {
        evs_event_in me[2] = {tu_event("Unknown", "{}"), tu_event("Known", "{}")};
        evs_append_result mr;
        CHECK_RC(evs_append(s, "meta-1", EVS_EXPECT_ANY, me, 2, &mr, NULL), EVS_OK);
        size_t mn;
        CHECK_RC(evs_proj_poll(p, 0, 0, &mn), EVS_OK);
        CHECK_RC(evs_proj_checkpoint(p), EVS_OK);
        state_is(b, "meta", NULL, "{\"k\":1}");
        evs_proj_close(p);
    }
    /* a failing attempt leaves no partial state: the retry applies once */
    const char *half =
        "return { partition = 'none', init = { n = 0 }, filter = { stream_prefix = 'h-' }, handlers = {\n"
        "  Inc = function(s, e) s.n = s.n + 1 end,\n"
        "  Half = function(s, e) s.n = s.n + 100; if not e.data.ok then error('half done') end end } }";
    CHECK_RC(evs_proj_open_lua(b, "half", half, strlen(half), NULL, NULL, &p), EVS_OK);
    evs_event_in ev[3] = {tu_event("Inc", "{}"), tu_event("Half", "{}"), tu_event("Inc", "{}")};
    evs_append_result r;
    CHECK_RC(evs_append(s, "h-1", EVS_EXPECT_ANY, ev, 3, &r, NULL), EVS_OK);
    size_t n;
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 2);
    CHECK_RC(evs_proj_checkpoint(p), EVS_OK);
    state_is(b, "half", NULL, "{\"n\":2}");
    evs_proj_close(p);
    evs_bus_close(b);
    evs_store_close(s);
}

/*
 * pairs() visits keys in a defined order, whatever order they were added
 * in, and the same in every Lua state (5.4 seeds string hashes per state).
 * The handler records the order it saw; two projections (two states) over
 * the same events must agree with each other and with the documented order.
 */
static void test_ordered_pairs(const char *d) {
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    const char *src =
        "return { partition = 'none', init = { seen = {} }, handlers = { Go = function(s, e)\n"
        "  local t = {}\n"
        "  for i, k in ipairs({'zeta', 'alpha', 'mid', 'b', 'a'}) do t[k] = i end\n"
        "  t[10] = 1; t[-3] = 1; t[2] = 1; t[2.5] = 1; t[-0.5] = 1; t[true] = 1; t[false] = 1\n"
        "  for i = 1, 200 do t['k' .. ((i * 37) % 200)] = i end\n"
        "  local out = {}\n"
        "  for k in pairs(t) do out[#out + 1] = tostring(k) end\n"
        "  s.seen = { table.concat(out, ',', 1, 12), #out }\n"
        "  local mt = setmetatable({}, { __pairs = function(x) return function(_, k) if not k then return 1, 'own' end end, x, nil end })\n"
        "  for k, v in pairs(mt) do s.own = v end\n"
        "end } }";
    evs_event_in e = tu_event("Go", "{}");
    evs_append_result r;
    CHECK_RC(evs_append(s, "op-1", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
    const char *names[2] = {"order-a", "order-b"};
    for (int i = 0; i < 2; i++) {
        evs_projection *p;
        CHECK_RC(evs_proj_open_lua(b, names[i], src, strlen(src), NULL, NULL, &p), EVS_OK);
        if (!p) continue;
        size_t n;
        CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
        CHECK_INT(n, 1);
        CHECK_RC(evs_proj_checkpoint(p), EVS_OK);
        evs_proj_close(p);
        state_is(b, names[i], NULL, "{\"own\":\"own\",\"seen\":[\"-3,2,10,-0.5,2.5,a,alpha,b,k0,k1,k10,k100\",212]}");
    }
    evs_bus_close(b);
    evs_store_close(s);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    char *d = cf_fresh("bus-lua");
    test_counter(d);
    cf_drop(d);
    d = cf_fresh("bus-lua-sb");
    test_sandbox(d);
    cf_drop(d);
    d = cf_fresh("bus-lua-pairs");
    test_ordered_pairs(d);
    cf_drop(d);
    return TEST_REPORT();
}

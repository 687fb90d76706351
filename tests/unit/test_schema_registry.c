/*
 * test_schema_registry.c — the schema registry on a store: registration
 * with compatibility checks and bad input, validation of appends by policy
 * (enforce refuses with the pointer and the rule and stores nothing; warn
 * stores and counts; off ignores; stream-type and event-type policies;
 * unknown and deprecated versions), persistence across reopen, read-only
 * stores, and upcasting (Lua and C steps, implicit steps, chains) through
 * the upcasting reader, a subscription, C and Lua projections and an
 * aggregate, with the stored bytes unchanged.
 *
 * One suite for both engines (conformance.h): run with "postgresql", the
 * registry lives in the store's database; there, two stores opened on one
 * database (two servers) share it (test_shared), and the read-only store
 * and the aggregate, which PostgreSQL does not have yet, are left out.
 */
#include <jansson.h>

#include "conformance.h"
#include "evstore_app.h"
#include "evstore_bus.h"
#include "evstore_schema.h"

static evs_store *store;
static evs_schema_registry *reg;
static char *dir;

static void open_all(unsigned flags) {
    store = NULL;
    if (evs_store_create(&store) || evs_store_set_durability(store, EVS_DURABILITY_NONE, 0) ||
        evs_store_open(store, dir, flags)) {
        fprintf(stderr, "cannot open store %s: %s\n", dir, evs_errmsg());
        exit(2);
    }
    CHECK_RC(evs_schema_open(store, &reg), EVS_OK);
}

static void close_all(void) {
    evs_schema_close(reg);
    reg = NULL;
    CHECK_RC(evs_store_close(store), EVS_OK);
    store = NULL;
}

static int reg_schema(const char *type, const char *schema, const char *mp, uint32_t *ver, evs_schema_violation *why) {
    evs_schema_def d = {type, 0, schema, strlen(schema), mp};
    return evs_schema_register(reg, &d, ver, why);
}

/* Append one event of type/version with data to stream; returns the status. */
static int append1(const char *stream, const char *type, uint32_t version, const char *data) {
    evs_event_in e = tu_event(type, data);
    e.event_version = version;
    evs_append_result res;
    return evs_append(store, stream, EVS_EXPECT_ANY, &e, 1, &res, NULL);
}

static uint64_t stream_version(const char *stream) {
    evs_stream_info si;
    return evs_stream_get_info(store, stream, &si) == EVS_OK ? si.version : 0;
}

static evs_schema_type_stats stats_of(const char *type) {
    evs_schema_type_stats st[64];
    size_t n = 0;
    memset(&st[0], 0, sizeof st[0]);
    CHECK_RC(evs_schema_stats(reg, NULL, st, 64, &n), EVS_OK);
    for (size_t i = 0; i < n; i++)
        if (strcmp(st[i].event_type, type) == 0) return st[i];
    evs_schema_type_stats none;
    memset(&none, 0, sizeof none);
    return none;
}

#define ORDER_V1                                                                                                       \
    "{\"type\":\"object\",\"required\":[\"order\",\"amount\"],\"additionalProperties\":false,\"properties\":{"       \
    "\"order\":{\"type\":\"string\",\"minLength\":1},\"amount\":{\"type\":\"integer\",\"minimum\":0}}}"
/* v2: the currency becomes required (not backward compatible: an upcaster supplies it) */
#define ORDER_V2                                                                                                       \
    "{\"type\":\"object\",\"required\":[\"order\",\"amount\",\"currency\"],\"additionalProperties\":false,"          \
    "\"properties\":{\"order\":{\"type\":\"string\",\"minLength\":1},\"amount\":{\"type\":\"integer\",\"minimum\":0},"  \
    "\"currency\":{\"enum\":[\"EUR\",\"USD\"]}}}"
/* v3: an optional note (v2 is closed, so every v2 event is a v3 event: an implicit step) */
#define ORDER_V3                                                                                                       \
    "{\"type\":\"object\",\"required\":[\"order\",\"amount\",\"currency\"],\"additionalProperties\":false,"          \
    "\"properties\":{\"order\":{\"type\":\"string\",\"minLength\":1},\"amount\":{\"type\":\"integer\",\"minimum\":0},"  \
    "\"currency\":{\"enum\":[\"EUR\",\"USD\"]},\"note\":{\"type\":\"string\"}}}"

static void test_register(void) {
    uint32_t ver = 0;
    evs_schema_violation why;
    CHECK_RC(reg_schema("OrderPlaced", ORDER_V1, NULL, &ver, &why), EVS_OK);
    CHECK_INT(ver, 1);
    /* not backward compatible: the keyword and its pointer are named */
    CHECK_RC(reg_schema("OrderPlaced", ORDER_V2, "currency defaults to EUR", &ver, &why), EVS_ECONFLICT);
    CHECK_STR(why.keyword, "required");
    CHECK_STR(why.pointer, "/required");
    CHECK_CONTAINS(evs_errmsg(), "not backward compatible");
    CHECK_CONTAINS(evs_errmsg(), "\"currency\" is required");
    /* check says the same without registering */
    evs_schema_def d = {"OrderPlaced", 0, ORDER_V2, strlen(ORDER_V2), NULL};
    CHECK_RC(evs_schema_check(reg, &d, &why), EVS_ECONFLICT);
    evs_schema_info info;
    CHECK_RC(evs_schema_get(reg, "OrderPlaced", 0, &info, NULL, NULL), EVS_OK);
    CHECK_INT(info.latest, 1);
    /* forward: v2 events are valid v1 events?  No: v1 is closed and has no currency */
    CHECK_RC(evs_schema_set_compat(reg, "OrderPlaced", EVS_COMPAT_FORWARD), EVS_OK);
    CHECK_RC(reg_schema("OrderPlaced", ORDER_V2, NULL, &ver, &why), EVS_ECONFLICT);
    CHECK_STR(why.keyword, "additionalProperties");
    CHECK_CONTAINS(evs_errmsg(), "not forward compatible");
    CHECK_RC(evs_schema_set_compat(reg, "OrderPlaced", EVS_COMPAT_NONE), EVS_OK);
    CHECK_RC(reg_schema("OrderPlaced", ORDER_V2, "currency defaults to EUR", &ver, &why), EVS_OK);
    CHECK_INT(ver, 2);
    CHECK_RC(evs_schema_set_compat(reg, "OrderPlaced", EVS_COMPAT_FULL), EVS_OK);
    CHECK_RC(reg_schema("OrderPlaced", ORDER_V3, NULL, &ver, &why), EVS_ECONFLICT); /* backward holds, forward not */
    CHECK_CONTAINS(evs_errmsg(), "not forward compatible");
    CHECK_RC(evs_schema_set_compat(reg, "OrderPlaced", EVS_COMPAT_BACKWARD), EVS_OK);
    CHECK_RC(reg_schema("OrderPlaced", ORDER_V3, "note added", &ver, &why), EVS_OK);
    CHECK_INT(ver, 3);

    /* explicit versions must be the next one */
    evs_schema_def d5 = {"OrderPlaced", 5, ORDER_V3, strlen(ORDER_V3), NULL};
    CHECK_RC(evs_schema_register(reg, &d5, &ver, &why), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "the next version is 4");
    evs_schema_def d2 = {"OrderPlaced", 2, ORDER_V3, strlen(ORDER_V3), NULL};
    CHECK_RC(evs_schema_register(reg, &d2, &ver, &why), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "never change");

    /* bad schemas and bad input */
    CHECK_RC(reg_schema("Bad", "{\"properties\":{\"a\":{\"minItems\":1}}}", NULL, &ver, &why), EVS_EINVAL);
    CHECK_STR(why.pointer, "/properties/a/minItems");
    CHECK_STR(why.keyword, "minItems");
    CHECK_CONTAINS(evs_errmsg(), "Bad: schema /properties/a/minItems");
    CHECK_RC(reg_schema("Bad", "{\"type\":", NULL, &ver, &why), EVS_EJSON);
    CHECK_RC(reg_schema("", ORDER_V1, NULL, &ver, &why), EVS_EINVAL);
    CHECK_RC(reg_schema("Bad\ttype", ORDER_V1, NULL, &ver, &why), EVS_EINVAL);
    char longmp[600];
    memset(longmp, 'x', sizeof longmp - 1);
    longmp[sizeof longmp - 1] = 0;
    CHECK_RC(reg_schema("Bad", ORDER_V1, longmp, &ver, &why), EVS_ELIMIT);
    CHECK_RC(evs_schema_get(reg, "Bad", 0, &info, NULL, NULL), EVS_ENOTFOUND);
    CHECK_RC(evs_schema_register(reg, NULL, &ver, &why), EVS_EINVAL);
    CHECK_RC(evs_schema_set_compat(reg, "OrderPlaced", (evs_schema_compat)9), EVS_EINVAL);
    evs_schema_compat m;
    CHECK_RC(evs_schema_compat_parse("sideways", &m), EVS_EINVAL);
    CHECK_RC(evs_schema_compat_parse("full", &m), EVS_OK);
    CHECK_INT(m, EVS_COMPAT_FULL);

    /* list and get */
    evs_schema_info list[8];
    size_t n = 0;
    CHECK_RC(evs_schema_list(reg, NULL, 0, list, 8, &n), EVS_OK);
    CHECK_INT(n, 3);
    CHECK_STR(list[1].migration_path, "currency defaults to EUR");
    CHECK_INT(list[1].upcaster, 3); /* 2 -> 3 is implicit: v3 includes v2 */
    CHECK_INT(list[0].upcaster, 0); /* 1 -> 2 needs an upcaster */
    CHECK_RC(evs_schema_list(reg, "OrderPlaced", 2, list, 8, &n), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_INT(list[0].version, 3);
    char *text = NULL;
    size_t tl = 0;
    CHECK_RC(evs_schema_get(reg, "OrderPlaced", 1, &info, &text, &tl), EVS_OK);
    CHECK_MEM(text, tl, ORDER_V1);
    free(text);
    CHECK_RC(evs_schema_get(reg, "OrderPlaced", 4, &info, NULL, NULL), EVS_ENOTFOUND);
}

static void test_enforce(void) {
    uint64_t head = evs_head(store);
    /* invalid: refused with pointer and rule, nothing stored */
    CHECK_RC(append1("order-1", "OrderPlaced", 1, "{\"order\":\"o1\",\"amount\":-5}"), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "event 1 (OrderPlaced version 1): schema violation at /amount: minimum:");
    evs_schema_violation v;
    CHECK_RC(evs_schema_last_violation(&v), EVS_OK);
    CHECK_STR(v.pointer, "/amount");
    CHECK_STR(v.keyword, "minimum");
    CHECK_STR(v.schema_path, "/properties/amount/minimum");
    CHECK_RC(evs_schema_last_violation(&v), EVS_ENOTFOUND); /* read once */
    CHECK_INT(evs_head(store), head);
    CHECK_INT(stream_version("order-1"), 0);
    /* one bad event in a multi-event append refuses all of it */
    evs_event_in ev[3] = {tu_event("OrderPlaced", "{\"order\":\"o1\",\"amount\":1}"), tu_event("Other", "{}"),
                          tu_event("OrderPlaced", "{\"order\":\"o1\",\"amount\":1,\"extra\":1}")};
    evs_append_result res;
    CHECK_RC(evs_append(store, "order-1", EVS_EXPECT_ANY, ev, 3, &res, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "event 3 (OrderPlaced version 1): schema violation at /extra: additionalProperties");
    CHECK_INT(evs_head(store), head);
    /* valid ones are stored; a type without a schema is never looked at */
    CHECK_RC(evs_append(store, "order-1", EVS_EXPECT_ANY, ev, 2, &res, NULL), EVS_OK);
    CHECK_INT(stream_version("order-1"), 2);
    /* v2 events are checked against v2 */
    CHECK_RC(append1("order-1", "OrderPlaced", 2, "{\"order\":\"o1\",\"amount\":1}"), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "at /currency: required");
    CHECK_RC(append1("order-1", "OrderPlaced", 2, "{\"order\":\"o1\",\"amount\":1,\"currency\":\"USD\"}"), EVS_OK);
    /* an unknown version */
    CHECK_RC(append1("order-1", "OrderPlaced", 7, "{}"), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "no schema version 7 is registered (versions 1..3 are)");
    CHECK_RC(evs_schema_last_violation(&v), EVS_OK);
    CHECK_STR(v.keyword, "version");
    evs_schema_type_stats st = stats_of("OrderPlaced");
    CHECK_INT(st.validated, 6); /* the unknown version is refused before any validation */
    CHECK_INT(st.refused, 4);
    CHECK_INT(st.warned, 0);
    CHECK_CONTAINS(st.last_failure, "no schema version 7");
    CHECK_INT(stats_of("Other").validated, 0); /* no schema: not listed */
}

static void test_policies(void) {
    evs_schema_policy warn = {EVS_VALIDATION_WARN, EVS_DEPRECATED_WARN}, off = {EVS_VALIDATION_OFF, EVS_DEPRECATED_ALLOW},
                      enforce = {EVS_VALIDATION_ENFORCE, EVS_DEPRECATED_WARN}, got;
    uint64_t before = stream_version("order-2");
    /* warn for the event type: stored, counted */
    CHECK_RC(evs_schema_set_policy(reg, EVS_POLICY_EVENT_TYPE, "OrderPlaced", &warn), EVS_OK);
    evs_schema_type_stats st0 = stats_of("OrderPlaced");
    CHECK_RC(append1("order-2", "OrderPlaced", 1, "{\"order\":\"\",\"amount\":1}"), EVS_OK);
    CHECK_INT(stream_version("order-2"), before + 1);
    evs_schema_type_stats st1 = stats_of("OrderPlaced");
    CHECK_INT(st1.warned, st0.warned + 1);
    CHECK_INT(st1.refused, st0.refused);
    CHECK_CONTAINS(st1.last_failure, "stored with a warning: schema violation at /order: minLength");
    /* off for a stream type, but the event type's policy wins */
    CHECK_RC(evs_schema_set_policy(reg, EVS_POLICY_STREAM_TYPE, "legacy", &off), EVS_OK);
    CHECK_RC(evs_schema_resolve_policy(reg, "OrderPlaced", "legacy", &got), EVS_OK);
    CHECK_INT(got.validation, EVS_VALIDATION_WARN);
    CHECK_RC(evs_schema_clear_policy(reg, EVS_POLICY_EVENT_TYPE, "OrderPlaced"), EVS_OK);
    CHECK_RC(evs_schema_clear_policy(reg, EVS_POLICY_EVENT_TYPE, "OrderPlaced"), EVS_ENOTFOUND);
    CHECK_RC(evs_schema_resolve_policy(reg, "OrderPlaced", "legacy", &got), EVS_OK);
    CHECK_INT(got.validation, EVS_VALIDATION_OFF);
    CHECK_RC(evs_schema_resolve_policy(reg, "OrderPlaced", "order", &got), EVS_OK);
    CHECK_INT(got.validation, EVS_VALIDATION_ENFORCE);
    /* off: ignored, not counted */
    CHECK_RC(append1("legacy-1", "OrderPlaced", 1, "{\"whatever\":true}"), EVS_OK);
    evs_schema_type_stats st2 = stats_of("OrderPlaced");
    CHECK_INT(st2.validated, st1.validated);
    CHECK_INT(st2.warned, st1.warned);
    /* an explicit stream_type decides, not the stream's name */
    evs_event_in e = tu_event("OrderPlaced", "{\"whatever\":true}");
    e.stream_type = "order";
    evs_append_result res;
    CHECK_RC(evs_append(store, "legacy-1", EVS_EXPECT_ANY, &e, 1, &res, NULL), EVS_EINVAL);
    /* the default policy */
    CHECK_RC(evs_schema_set_policy(reg, EVS_POLICY_DEFAULT, NULL, &warn), EVS_OK);
    CHECK_RC(append1("order-2", "OrderPlaced", 1, "{\"x\":1}"), EVS_OK);
    CHECK_RC(evs_schema_set_policy(reg, EVS_POLICY_DEFAULT, NULL, &enforce), EVS_OK);
    CHECK_RC(append1("order-2", "OrderPlaced", 1, "{\"x\":1}"), EVS_EINVAL);
    /* bad input */
    CHECK_RC(evs_schema_set_policy(reg, EVS_POLICY_STREAM_TYPE, "", &warn), EVS_EINVAL);
    CHECK_RC(evs_schema_set_policy(reg, (evs_policy_scope)7, "x", &warn), EVS_EINVAL);
    evs_schema_policy bad = {(evs_validation)5, EVS_DEPRECATED_WARN};
    CHECK_RC(evs_schema_set_policy(reg, EVS_POLICY_DEFAULT, NULL, &bad), EVS_EINVAL);
    CHECK_RC(evs_schema_clear_policy(reg, EVS_POLICY_DEFAULT, NULL), EVS_EINVAL);
    evs_validation vv;
    CHECK_RC(evs_validation_parse("strict", &vv), EVS_EINVAL);
    CHECK_RC(evs_validation_parse("warn", &vv), EVS_OK);
    CHECK_INT(vv, EVS_VALIDATION_WARN);
}

static void test_deprecation(void) {
    CHECK_RC(evs_schema_deprecate(reg, "OrderPlaced", 1, 1), EVS_OK);
    CHECK_RC(evs_schema_deprecate(reg, "OrderPlaced", 9, 1), EVS_ENOTFOUND);
    evs_schema_info info;
    CHECK_RC(evs_schema_get(reg, "OrderPlaced", 1, &info, NULL, NULL), EVS_OK);
    CHECK_INT(info.deprecated, 1);
    CHECK(info.deprecated_at > 0);
    evs_schema_type_stats st0 = stats_of("OrderPlaced");
    /* default: warned, stored */
    CHECK_RC(append1("order-3", "OrderPlaced", 1, "{\"order\":\"o3\",\"amount\":1}"), EVS_OK);
    evs_schema_type_stats st1 = stats_of("OrderPlaced");
    CHECK_INT(st1.deprecated_appends, st0.deprecated_appends + 1);
    CHECK_CONTAINS(st1.last_failure, "version 1 is deprecated; the latest is 3");
    /* refuse */
    evs_schema_policy refuse = {EVS_VALIDATION_ENFORCE, EVS_DEPRECATED_REFUSE};
    CHECK_RC(evs_schema_set_policy(reg, EVS_POLICY_STREAM_TYPE, "order", &refuse), EVS_OK);
    CHECK_RC(append1("order-3", "OrderPlaced", 1, "{\"order\":\"o3\",\"amount\":1}"), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "version 1 is deprecated");
    evs_schema_violation v;
    CHECK_RC(evs_schema_last_violation(&v), EVS_OK);
    CHECK_STR(v.keyword, "deprecated");
    CHECK_RC(append1("order-3", "OrderPlaced", 3, "{\"order\":\"o3\",\"amount\":1,\"currency\":\"EUR\"}"), EVS_OK);
    CHECK_INT(stream_version("order-3"), 2);
}

/* ------------------------------------------------------------ upcasting */

static const char *lua_up =
    "return function(data, e)\n"
    "  if e.event_version ~= 1 then error('called for version ' .. e.event_version) end\n"
    "  data.currency = 'EUR'\n"
    "  return data\n"
    "end\n";

static int c_calls;

/* Refund v1 {"cents":N} -> v2 {"amount":N/100}: a C step. */
static int refund_up(void *ctx, const evs_event *ev, const char *data, size_t len, char **out, size_t *out_len, char *err,
                     size_t errcap) {
    (void)ctx, (void)ev;
    c_calls++;
    json_t *j = json_loadb(data, len, 0, NULL);
    json_t *c = json_object_get(j, "cents");
    if (!json_is_integer(c)) {
        json_decref(j);
        snprintf(err, errcap, "cents is missing");
        return 1;
    }
    char buf[64];
    int n = snprintf(buf, sizeof buf, "{\"amount\":%.2f}", (double)json_integer_value(c) / 100.0);
    json_decref(j);
    *out = strdup(buf);
    *out_len = (size_t)n;
    return 0;
}

/* A faulty step: its output breaks the next version's schema. */
static int bad_up(void *ctx, const evs_event *ev, const char *data, size_t len, char **out, size_t *out_len, char *err,
                  size_t errcap) {
    (void)ctx, (void)ev, (void)data, (void)len, (void)err, (void)errcap;
    *out = strdup("{\"amount\":\"lots\"}");
    *out_len = strlen(*out);
    return 0;
}

typedef struct seen {
    int n;
    uint32_t version[16], from[16];
    char data[16][160];
} seen;

static int sub_handler(void *ctx, const evs_event *ev, char *err, size_t cap) {
    (void)err, (void)cap;
    seen *s = ctx;
    if (s->n < 16) {
        s->version[s->n] = ev->event_version;
        s->from[s->n] = ev->upcast_from;
        snprintf(s->data[s->n], sizeof s->data[0], "%.*s", (int)ev->data_len, ev->data);
    }
    s->n++;
    return 0;
}

/* C projection: total per currency, from upcasted events only. */
static int proj_apply(void *ctx, const evs_event *ev, const char *state, size_t state_len, char **ns, size_t *nl,
                      char *err, size_t cap) {
    (void)ctx;
    if (ev->event_version != 3) {
        snprintf(err, cap, "saw version %u", ev->event_version);
        return 1;
    }
    json_t *s = json_loadb(state, state_len, 0, NULL), *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    const char *cur = json_string_value(json_object_get(d, "currency"));
    json_int_t amount = json_integer_value(json_object_get(d, "amount"));
    json_object_set_new(s, cur, json_integer(json_integer_value(json_object_get(s, cur)) + amount));
    *ns = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
    *nl = strlen(*ns);
    json_decref(s);
    json_decref(d);
    return 0;
}

static void test_upcasting(void) {
    /* steps: 1 -> 2 in Lua; 2 -> 3 implicit */
    CHECK_RC(evs_schema_add_lua_upcaster(reg, "OrderPlaced", 1, lua_up, strlen(lua_up)), EVS_OK);
    CHECK_RC(evs_schema_add_lua_upcaster(reg, "OrderPlaced", 1, lua_up, strlen(lua_up)), EVS_ECONFLICT);
    CHECK_RC(evs_schema_add_lua_upcaster(reg, "OrderPlaced", 3, lua_up, strlen(lua_up)), EVS_ENOTFOUND);
    CHECK_RC(evs_schema_add_lua_upcaster(reg, "Nope", 1, lua_up, strlen(lua_up)), EVS_ENOTFOUND);
    CHECK_RC(evs_schema_add_lua_upcaster(reg, "OrderPlaced", 2, "return 42", 9), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "upcaster OrderPlaced 2->3 must return a function (got number)");
    evs_schema_info info;
    CHECK_RC(evs_schema_get(reg, "OrderPlaced", 1, &info, NULL, NULL), EVS_OK);
    CHECK_INT(info.upcaster, 2);

    /* a fresh stream: v1, v2, v3 events */
    evs_schema_policy allow = {EVS_VALIDATION_ENFORCE, EVS_DEPRECATED_ALLOW};
    CHECK_RC(evs_schema_set_policy(reg, EVS_POLICY_STREAM_TYPE, "order", &allow), EVS_OK);
    const char *d1 = "{\"order\":\"o9\",\"amount\":5}";
    CHECK_RC(append1("order-9", "OrderPlaced", 1, d1), EVS_OK);
    CHECK_RC(append1("order-9", "OrderPlaced", 2, "{\"order\":\"o9\",\"amount\":7,\"currency\":\"USD\"}"), EVS_OK);
    CHECK_RC(append1("order-9", "OrderPlaced", 3, "{\"order\":\"o9\",\"amount\":1,\"currency\":\"EUR\",\"note\":\"n\"}"),
             EVS_OK);

    /* the upcasting reader */
    evs_reader *r;
    CHECK_RC(evs_read_stream(store, "order-9", 1, EVS_FORWARD, 0, &r), EVS_OK);
    evs_upcast_reader *u;
    CHECK_RC(evs_upcast_reader_open(reg, r, &u), EVS_OK);
    const evs_event *ev;
    CHECK_RC(evs_upcast_reader_next(u, &ev), EVS_OK);
    CHECK_INT(ev->event_version, 3);
    CHECK_INT(ev->upcast_from, 1);
    CHECK_MEM(ev->data, ev->data_len, "{\"amount\":5,\"currency\":\"EUR\",\"order\":\"o9\"}");
    char *json;
    CHECK_RC(evs_event_to_json(ev, &json, NULL), EVS_OK);
    CHECK_CONTAINS(json, "\"event_version\":3,\"stored_version\":1,");
    free(json);
    CHECK_RC(evs_upcast_reader_next(u, &ev), EVS_OK);
    CHECK_INT(ev->event_version, 3);
    CHECK_INT(ev->upcast_from, 2); /* implicit step: same bytes, new version */
    CHECK_MEM(ev->data, ev->data_len, "{\"order\":\"o9\",\"amount\":7,\"currency\":\"USD\"}");
    CHECK_RC(evs_upcast_reader_next(u, &ev), EVS_OK);
    CHECK_INT(ev->upcast_from, 0); /* already the latest */
    CHECK_RC(evs_event_to_json(ev, &json, NULL), EVS_OK);
    CHECK(strstr(json, "stored_version") == NULL);
    free(json);
    CHECK_RC(evs_upcast_reader_next(u, &ev), EVS_DONE);
    CHECK_INT(evs_reader_position(evs_upcast_reader_base(u)), 4);
    evs_upcast_reader_close(u);
    /* the stored bytes never change */
    CHECK_RC(evs_read_stream(store, "order-9", 1, EVS_FORWARD, 1, &r), EVS_OK);
    CHECK_RC(evs_reader_next(r, &ev), EVS_OK);
    CHECK_INT(ev->event_version, 1);
    CHECK_INT(ev->upcast_from, 0);
    CHECK_MEM(ev->data, ev->data_len, d1);
    evs_reader_close(r);
    CHECK(stats_of("OrderPlaced").upcasted >= 2);

    /* a subscription, a C projection and a Lua projection that ask for the latest version */
    evs_bus *bus;
    CHECK_RC(evs_bus_open(store, &bus), EVS_OK);
    evs_sub_config sc;
    evs_sub_config_init(&sc);
    sc.name = "upcasted-sub";
    sc.stream = "order-9";
    sc.map = evs_schema_upcast_map(reg);
    seen s;
    memset(&s, 0, sizeof s);
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(bus, &sc, sub_handler, &s, &sub), EVS_OK);
    size_t n = 0;
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 3);
    CHECK_INT(s.version[0], 3);
    CHECK_INT(s.from[0], 1);
    CHECK_STR(s.data[0], "{\"amount\":5,\"currency\":\"EUR\",\"order\":\"o9\"}");
    CHECK_INT(s.from[1], 2);
    CHECK_INT(s.from[2], 0);
    evs_sub_close(sub);

    evs_proj_config pc;
    evs_proj_config_init(&pc);
    pc.name = "totals";
    const char *types[] = {"OrderPlaced"};
    pc.filter.event_types = types;
    pc.filter.n_event_types = 1;
    pc.filter.stream_prefix = "order-9";
    pc.partitioning = EVS_PARTITION_NONE;
    pc.apply = proj_apply;
    pc.map = evs_schema_upcast_map(reg);
    evs_projection *p;
    CHECK_RC(evs_proj_open(bus, &pc, &p), EVS_OK);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 3);
    evs_proj_close(p);
    char *state;
    size_t sl;
    CHECK_RC(evs_proj_get_state(bus, "totals", "", &state, &sl), EVS_OK);
    CHECK_MEM(state, sl, "{\"EUR\":6,\"USD\":7}");
    free(state);

    const char *lua_proj = "return {\n"
                           "  filter = { event_types = {'OrderPlaced'}, stream_prefix = 'order-9' },\n"
                           "  partition = 'none',\n"
                           "  init = function() return { versions = '', amount = 0 } end,\n"
                           "  handlers = { OrderPlaced = function(s, e)\n"
                           "    s.versions = s.versions .. e.stored_version .. '>' .. e.event_version .. ' '\n"
                           "    s.amount = s.amount + e.data.amount\n"
                           "    if e.data.currency == nil then error('no currency') end\n"
                           "  end },\n"
                           "}\n";
    evs_proj_config lc;
    evs_proj_config_init(&lc);
    lc.map = evs_schema_upcast_map(reg);
    CHECK_RC(evs_proj_open_lua(bus, "lua-totals", lua_proj, strlen(lua_proj), NULL, &lc, &p), EVS_OK);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 3);
    evs_proj_close(p);
    CHECK_RC(evs_proj_get_state(bus, "lua-totals", "", &state, &sl), EVS_OK);
    CHECK_MEM(state, sl, "{\"amount\":13,\"versions\":\"1>3 2>3 3>3 \"}");
    free(state);

    /* an aggregate folds upcasted events */
    evs_app_config ac;
    evs_app_config_init(&ac);
    ac.snapshot_every = 0;
    ac.map = evs_schema_upcast_map(reg);
    evs_app *app;
    CHECK_RC(evs_app_open(store, bus, &ac, &app), EVS_OK);
    const char *agg = "return {\n"
                      "  init = function() return { eur = 0, usd = 0, n = 0 } end,\n"
                      "  evolve = { OrderPlaced = function(s, e)\n"
                      "    if e.event_version ~= 3 then error('not upcasted') end\n"
                      "    if e.data.currency == 'EUR' then s.eur = s.eur + e.data.amount else s.usd = s.usd + e.data.amount end\n"
                      "    s.n = s.n + 1\n"
                      "  end },\n"
                      "  commands = { Noop = { fields = {}, decide = function(s, c) return {} end } },\n"
                      "}\n";
    CHECK_RC(evs_app_register_lua_aggregate(app, "order", agg, strlen(agg)), EVS_OK);
    char *aj;
    size_t al;
    CHECK_RC(evs_aggregate_load_json(app, "order", "9", 0, &aj, &al, NULL), EVS_OK);
    CHECK_MEM(aj, al, "{\"eur\":6,\"n\":3,\"usd\":7}");
    free(aj);
    evs_app_close(app);

    /* a C step on another type, and errors that name the step */
    CHECK_RC(reg_schema("Refunded", "{\"required\":[\"cents\"],\"properties\":{\"cents\":{\"type\":\"integer\"}}}", NULL,
                        NULL, NULL),
             EVS_OK);
    CHECK_RC(evs_schema_set_compat(reg, "Refunded", EVS_COMPAT_NONE), EVS_OK);
    CHECK_RC(reg_schema("Refunded",
                        "{\"required\":[\"amount\"],\"additionalProperties\":false,\"properties\":{\"amount\":{\"type\":\"number\"}}}",
                        "cents / 100", NULL, NULL),
             EVS_OK);
    CHECK_RC(append1("refund-1", "Refunded", 1, "{\"cents\":250}"), EVS_OK);
    CHECK_RC(evs_read_stream(store, "refund-1", 1, EVS_FORWARD, 0, &r), EVS_OK);
    CHECK_RC(evs_upcast_reader_open(reg, r, &u), EVS_OK);
    CHECK_RC(evs_upcast_reader_next(u, &ev), EVS_ENOTFOUND);
    CHECK_CONTAINS(evs_errmsg(), "Refunded: no upcaster from version 1 to 2");
    evs_upcast_reader_close(u);
    CHECK_INT(stats_of("Refunded").upcast_failures, 1);
    /* a subscription that meets it parks the event (a map failure is a handler failure) */
    evs_sub_config_init(&sc);
    sc.name = "refund-sub";
    sc.stream = "refund-1";
    sc.map = evs_schema_upcast_map(reg);
    memset(&s, 0, sizeof s);
    CHECK_RC(evs_sub_open(bus, &sc, sub_handler, &s, &sub), EVS_OK);
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(s.n, 0);
    uint64_t depth = 0;
    CHECK_RC(evs_dlq_depth(bus, "refund-sub", &depth), EVS_OK);
    CHECK_INT(depth, 1);
    evs_dlq_entry de;
    size_t dn = 0;
    CHECK_RC(evs_dlq_list(bus, "refund-sub", 0, &de, 1, &dn), EVS_OK);
    CHECK_CONTAINS(de.last_error, "no upcaster from version 1 to 2");
    /* declaring the step mends it: retry from the DLQ */
    CHECK_RC(evs_schema_add_upcaster(reg, "Refunded", 1, bad_up, NULL), EVS_OK);
    CHECK_RC(evs_sub_dlq_retry(sub, de.position), EVS_EFAILED);
    CHECK_RC(evs_dlq_list(bus, "refund-sub", 0, &de, 1, &dn), EVS_OK);
    CHECK_CONTAINS(de.last_error, "returned data invalid under version 2: /amount: type");
    CHECK_RC(evs_schema_remove_upcaster(reg, "Refunded", 1), EVS_OK);
    CHECK_RC(evs_schema_remove_upcaster(reg, "Refunded", 1), EVS_ENOTFOUND);
    CHECK_RC(evs_schema_add_upcaster(reg, "Refunded", 1, refund_up, NULL), EVS_OK);
    CHECK_RC(evs_sub_dlq_retry(sub, de.position), EVS_OK);
    CHECK_INT(s.n, 1);
    CHECK_STR(s.data[0], "{\"amount\":2.50}");
    CHECK_INT(s.version[0], 2);
    evs_sub_close(sub);
    CHECK(c_calls >= 1);

    /* Lua upcasters that do not load or fail at run time */
    CHECK_RC(reg_schema("Pinged", "{}", NULL, NULL, NULL), EVS_OK);
    CHECK_RC(reg_schema("Pinged", "{\"required\":[\"n\"],\"properties\":{\"n\":{\"type\":\"integer\"}}}", NULL, NULL, NULL),
             EVS_ECONFLICT);
    CHECK_RC(evs_schema_set_compat(reg, "Pinged", EVS_COMPAT_NONE), EVS_OK);
    CHECK_RC(reg_schema("Pinged", "{\"required\":[\"n\"],\"properties\":{\"n\":{\"type\":\"integer\"}}}", NULL, NULL, NULL),
             EVS_OK);
    CHECK_RC(evs_schema_add_lua_upcaster(reg, "Pinged", 1, "return function(", 16), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "does not compile");
    CHECK_RC(evs_schema_add_lua_upcaster(reg, "Pinged", 1, "return 42", 9), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "must return a function");
    CHECK_RC(evs_schema_add_lua_upcaster(reg, "Pinged", 1, "return io.open('/etc/passwd')", 29), EVS_EINVAL);
    const char *loop = "return function(d) while true do end end";
    CHECK_RC(evs_schema_add_lua_upcaster(reg, "Pinged", 1, loop, strlen(loop)), EVS_OK);
    CHECK_RC(append1("ping-1", "Pinged", 1, "{}"), EVS_OK);
    CHECK_RC(evs_read_stream(store, "ping-1", 1, EVS_FORWARD, 0, &r), EVS_OK);
    CHECK_RC(evs_upcast_reader_open(reg, r, &u), EVS_OK);
    CHECK_RC(evs_upcast_reader_next(u, &ev), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "upcaster Pinged 1->2 failed");
    evs_upcast_reader_close(u);
    CHECK_RC(evs_schema_remove_upcaster(reg, "Pinged", 1), EVS_OK);
    const char *arr = "return function(d) return {1, 2} end";
    CHECK_RC(evs_schema_add_lua_upcaster(reg, "Pinged", 1, arr, strlen(arr)), EVS_OK);
    CHECK_RC(evs_read_stream(store, "ping-1", 1, EVS_FORWARD, 0, &r), EVS_OK);
    CHECK_RC(evs_upcast_reader_open(reg, r, &u), EVS_OK);
    CHECK_RC(evs_upcast_reader_next(u, &ev), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "the data must be an object");
    evs_upcast_reader_close(u);
    CHECK_RC(evs_schema_remove_upcaster(reg, "Pinged", 1), EVS_OK);
    const char *ok = "return function(d) d.n = 1 end"; /* changes in place, returns nothing */
    CHECK_RC(evs_schema_add_lua_upcaster(reg, "Pinged", 1, ok, strlen(ok)), EVS_OK);
    evs_event in;
    memset(&in, 0, sizeof in);
    in.event_type = "Pinged";
    in.event_type_len = 6;
    in.data = "{}";
    in.data_len = 2;
    in.event_version = 1;
    evs_event out;
    void *owned;
    CHECK_RC(evs_schema_upcast(reg, &in, &out, &owned), EVS_OK);
    CHECK_MEM(out.data, out.data_len, "{\"n\":1}");
    free(owned);
    /* types without schemas and events past the latest pass through untouched */
    in.event_type = "Unknown";
    in.event_type_len = 7;
    CHECK_RC(evs_schema_upcast(reg, &in, &out, &owned), EVS_OK);
    CHECK(owned == NULL && out.data == in.data && out.upcast_from == 0);
    in.event_type = "Pinged";
    in.event_type_len = 6;
    in.event_version = 9;
    CHECK_RC(evs_schema_upcast(reg, &in, &out, &owned), EVS_OK);
    CHECK(owned == NULL && out.event_version == 9);
    CHECK_RC(evs_upcast_reader_open(reg, NULL, &u), EVS_EINVAL);
    evs_bus_close(bus);
}

static void test_reopen(void) {
    close_all();
    open_all(0);
    /* versions, compat, deprecation, policies and Lua upcasters are back; C upcasters are not */
    evs_schema_info list[16];
    size_t n = 0;
    CHECK_RC(evs_schema_list(reg, NULL, 0, list, 16, &n), EVS_OK);
    CHECK_INT(n, 7);
    CHECK_STR(list[0].event_type, "OrderPlaced");
    CHECK_INT(list[0].deprecated, 1);
    CHECK_INT(list[0].upcaster, 2);
    CHECK_INT(list[0].compat, EVS_COMPAT_BACKWARD);
    CHECK_STR(list[1].migration_path, "currency defaults to EUR");
    CHECK_STR(list[5].event_type, "Refunded");
    CHECK_INT(list[5].upcaster, 0);
    CHECK_INT(list[5].compat, EVS_COMPAT_NONE);
    evs_schema_policy got;
    CHECK_RC(evs_schema_resolve_policy(reg, "OrderPlaced", "legacy", &got), EVS_OK);
    CHECK_INT(got.validation, EVS_VALIDATION_OFF);
    CHECK_RC(evs_schema_resolve_policy(reg, "OrderPlaced", "order", &got), EVS_OK);
    CHECK_INT(got.deprecated, EVS_DEPRECATED_ALLOW);
    /* still enforced */
    CHECK_RC(append1("order-20", "OrderPlaced", 3, "{\"order\":\"o\",\"amount\":-1,\"currency\":\"EUR\"}"), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "/amount: minimum");
    /* the Lua step survived */
    evs_reader *r;
    evs_upcast_reader *u;
    const evs_event *ev;
    CHECK_RC(evs_read_stream(store, "order-9", 1, EVS_FORWARD, 1, &r), EVS_OK);
    CHECK_RC(evs_upcast_reader_open(reg, r, &u), EVS_OK);
    CHECK_RC(evs_upcast_reader_next(u, &ev), EVS_OK);
    CHECK_MEM(ev->data, ev->data_len, "{\"amount\":5,\"currency\":\"EUR\",\"order\":\"o9\"}");
    evs_upcast_reader_close(u);
    /* a second registry on the same store is refused */
    evs_schema_registry *again = NULL;
    CHECK_RC(evs_schema_open(store, &again), EVS_ECONFLICT);
    CHECK(again == NULL);

    if (cf_pg) return; /* no read-only stores on PostgreSQL */
    /* read-only: everything readable, nothing writable */
    close_all();
    open_all(EVS_OPEN_READONLY);
    CHECK_RC(evs_schema_list(reg, NULL, 0, list, 16, &n), EVS_OK);
    CHECK_INT(n, 7);
    CHECK_RC(reg_schema("New", "{}", NULL, NULL, NULL), EVS_ECLOSED);
    CHECK_RC(evs_schema_deprecate(reg, "OrderPlaced", 2, 1), EVS_ECLOSED);
    CHECK_RC(evs_schema_set_policy(reg, EVS_POLICY_DEFAULT, NULL, &got), EVS_ECLOSED);
    close_all();
    /* without a registry the store takes anything (the hook is gone) */
    store = tu_open(dir, EVS_DURABILITY_NONE, 0);
    CHECK_RC(append1("order-20", "OrderPlaced", 3, "{\"nonsense\":1}"), EVS_OK);
    CHECK_RC(evs_store_close(store), EVS_OK);
    store = NULL;
    /* a read-only store without DIR/schemas: an empty registry */
    char *dir2 = tu_tempdir("schema-empty");
    evs_store *s2 = tu_open(dir2, EVS_DURABILITY_NONE, 0);
    evs_store_close(s2);
    CHECK_RC(evs_store_create(&s2), EVS_OK);
    CHECK_RC(evs_store_open(s2, dir2, EVS_OPEN_READONLY), EVS_OK);
    evs_schema_registry *r2;
    CHECK_RC(evs_schema_open(s2, &r2), EVS_OK);
    CHECK_RC(evs_schema_list(r2, NULL, 0, list, 16, &n), EVS_OK);
    CHECK_INT(n, 0);
    evs_schema_close(r2);
    evs_store_close(s2);
    tu_rmrf(dir2);
    free(dir2);
    /* a registry on a closed store */
    CHECK_RC(evs_schema_open(NULL, &r2), EVS_ECLOSED);
}

/*
 * PostgreSQL: two stores on one database, as two servers: a registration
 * through one is seen by the other at once and enforced on its appends; a
 * registration racing through both gives each version number once.
 */
static void test_shared(void) {
    char *url = cf_fresh("schema-shared");
    evs_store *s1 = cf_open(url), *s2 = cf_open(url);
    evs_schema_registry *r1, *r2;
    CHECK_RC(evs_schema_open(s1, &r1), EVS_OK);
    CHECK_RC(evs_schema_open(s2, &r2), EVS_OK);
    const char *sch = "{\"required\":[\"n\"],\"properties\":{\"n\":{\"type\":\"integer\"}}}";
    evs_schema_def d = {"Shared", 0, sch, strlen(sch), NULL};
    uint32_t v = 0;
    CHECK_RC(evs_schema_register(r1, &d, &v, NULL), EVS_OK);
    CHECK_INT(v, 1);
    evs_schema_info info;
    CHECK_RC(evs_schema_get(r2, "Shared", 0, &info, NULL, NULL), EVS_OK);
    CHECK_INT(info.latest, 1);
    evs_event_in ev = {0};
    ev.event_type = "Shared";
    ev.data = "{\"n\":\"x\"}";
    ev.data_len = strlen(ev.data);
    evs_append_result res;
    CHECK_RC(evs_append(s2, "shared-1", EVS_EXPECT_ANY, &ev, 1, &res, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "schema violation");
    ev.data = "{\"n\":1}";
    ev.data_len = strlen(ev.data);
    CHECK_RC(evs_append(s2, "shared-1", EVS_EXPECT_ANY, &ev, 1, &res, NULL), EVS_OK);
    /* r2 registers version 2 from a copy that r1's write made stale: it reloads and gets 2, r1 then 3 */
    d.version = 0;
    CHECK_RC(evs_schema_register(r2, &d, &v, NULL), EVS_OK);
    CHECK_INT(v, 2);
    CHECK_RC(evs_schema_register(r1, &d, &v, NULL), EVS_OK);
    CHECK_INT(v, 3);
    d.version = 3;
    CHECK_RC(evs_schema_register(r2, &d, &v, NULL), EVS_ECONFLICT);
    /* policies travel too */
    evs_schema_policy off = {EVS_VALIDATION_OFF, EVS_DEPRECATED_ALLOW}, got;
    CHECK_RC(evs_schema_set_policy(r1, EVS_POLICY_EVENT_TYPE, "Shared", &off), EVS_OK);
    CHECK_RC(evs_schema_get_policy(r2, EVS_POLICY_EVENT_TYPE, "Shared", &got), EVS_OK);
    CHECK_INT(got.validation, EVS_VALIDATION_OFF);
    CHECK_RC(evs_schema_clear_policy(r2, EVS_POLICY_EVENT_TYPE, "Shared"), EVS_OK);
    CHECK_RC(evs_schema_get_policy(r1, EVS_POLICY_EVENT_TYPE, "Shared", &got), EVS_ENOTFOUND);
    evs_schema_close(r2);
    evs_schema_close(r1);
    evs_store_close(s2);
    evs_store_close(s1);
    cf_drop(url);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    dir = cf_fresh("schema-reg");
    open_all(EVS_OPEN_CREATE);
    test_register();
    test_enforce();
    test_policies();
    test_deprecation();
    test_upcasting();
    test_reopen();
    if (store) close_all();
    if (cf_pg) test_shared();
    cf_drop(dir);
    return TEST_REPORT();
}

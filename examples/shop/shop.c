/*
 * shop.c — the shop, run in-process with libevstore's application layer.
 *
 *     shop DATA_DIR [SCRIPTS_DIR]      (DATA_DIR: a new directory)
 *
 * Loads SCRIPTS_DIR as an application directory (default: the directory
 * this file lives in, as compiled): the Lua aggregates order, inventory,
 * payment and shipment, and the queries "orders" and "stock" of
 * queries.json — what `evstore serve --app-dir` loads too; runs the
 * projections of SCRIPTS_DIR/projections/ (order_summary, product_stock)
 * on a thread of its own; then plays a day in the shop, printing each
 * command's outcome, and checks that every business rule held (exit status
 * 1 otherwise): stock never negative, a cancelled order cannot be paid,
 * totals exact to the cent, read-your-writes through min_position.
 *
 * Build: part of the project's build (build/shop); or against an installed
 * library: cc shop.c $(pkg-config --cflags --libs evstore) -o shop.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore.h"
#include "evstore_app.h"
#include "evstore_bus.h"

#ifndef SHOP_SCRIPTS
#define SHOP_SCRIPTS "."
#endif

static int failures;
static evs_app *app;
static evs_bus *bus;
static uint64_t last_position;

static char *slurp(const char *dir, const char *name, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "shop: cannot open %s\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) exit(2);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Send a command (JSON) and check its outcome; reason_part, when given, must be in the reason. */
static void expect(const char *json, int outcome, const char *reason_part) {
    evs_command_result r;
    int rc = evs_app_execute_json(app, NULL, json, strlen(json), &r);
    if (rc) {
        fprintf(stderr, "shop: %s\n", evs_errmsg());
        exit(2);
    }
    int ok = r.outcome == outcome && (!reason_part || strstr(r.reason, reason_part));
    printf("%-8s %-9s %s%s%s\n", ok ? "ok" : "WRONG", evs_command_outcome_name(r.outcome), json,
           r.reason[0] ? "  -> " : "", r.reason);
    if (!ok) failures++;
    if (r.outcome == EVS_CMD_ACCEPTED && r.last_position) last_position = r.last_position;
    evs_command_result_free(&r);
}

/* A query that must contain each of the fragments. */
static void query(const char *name, const char *partition, const char *const *want, size_t n) {
    evs_query_params p;
    memset(&p, 0, sizeof p);
    p.partition = partition;
    p.min_position = last_position; /* read our own writes */
    p.timeout_ms = 2000;
    evs_query_result res;
    if (evs_app_query(app, name, &p, &res)) {
        fprintf(stderr, "shop: query %s: %s\n", name, evs_errmsg());
        failures++;
        return;
    }
    printf("query %s%s%s at position %llu: %s\n", name, partition ? " " : "", partition ? partition : "",
           (unsigned long long)res.position, res.json);
    for (size_t i = 0; i < n; i++)
        if (!strstr(res.json, want[i])) {
            printf("WRONG    the answer lacks %s\n", want[i]);
            failures++;
        }
    evs_query_result_free(&res);
}

static evs_projection *projection(const char *dir, const char *file, const char *name) {
    size_t n;
    char *src = slurp(dir, file, &n);
    evs_proj_config pc;
    evs_proj_config_init(&pc);
    pc.checkpoint_ms = 5; /* a caught-up projection commits within 5 ms: quick read-your-writes */
    evs_projection *p;
    if (evs_proj_open_lua(bus, name, src, n, NULL, &pc, &p)) {
        fprintf(stderr, "shop: projection %s: %s\n", name, evs_errmsg());
        exit(2);
    }
    free(src);
    return p;
}

static evs_projection *projs[2];

/* The projections run here, on their own thread, as the server's runners would. */
static _Atomic int stop;
static void *runner(void *arg) {
    (void)arg;
    while (!stop)
        for (int i = 0; i < 2; i++) evs_proj_poll(projs[i], 20, 0, NULL);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: shop DATA_DIR [SCRIPTS_DIR]\n");
        return 2;
    }
    const char *scripts = argc > 2 ? argv[2] : SHOP_SCRIPTS;
    evs_store *s;
    if (evs_store_create(&s) || evs_store_open(s, argv[1], EVS_OPEN_CREATE) || evs_bus_open(s, &bus) ||
        evs_app_open(s, bus, NULL, &app)) {
        fprintf(stderr, "shop: %s\n", evs_errmsg());
        return 2;
    }
    if (evs_app_load_dir(app, scripts)) { /* the aggregates and queries.json */
        fprintf(stderr, "shop: %s\n", evs_errmsg());
        return 2;
    }
    projs[0] = projection(scripts, "projections/order_summary.lua", "order_summary");
    projs[1] = projection(scripts, "projections/product_stock.lua", "product_stock");
    pthread_t th;
    pthread_create(&th, NULL, runner, NULL);

    /* stock */
    expect("{\"command_id\":\"restock-tea-1\",\"command_type\":\"Restock\",\"aggregate_id\":\"tea\",\"data\":{\"quantity\":10}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_id\":\"restock-mug-1\",\"command_type\":\"Restock\",\"aggregate_id\":\"mug\",\"data\":{\"quantity\":2}}",
           EVS_CMD_ACCEPTED, NULL);
    /* an order: 3 x 4.10 + 1 x 12.99 - then one tea line removed and re-added as 2 */
    expect("{\"command_type\":\"CreateOrder\",\"aggregate_id\":\"o1\",\"data\":{\"customer\":\"ada\"},"
           "\"metadata\":{\"user\":\"ada\",\"tenant\":\"shop-1\",\"source\":\"shop.c\"}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"CreateOrder\",\"aggregate_id\":\"o1\",\"data\":{\"customer\":\"bob\"}}", EVS_CMD_REJECTED,
           "already exists");
    expect("{\"command_type\":\"AddItem\",\"aggregate_id\":\"o1\",\"data\":{\"sku\":\"tea\",\"quantity\":3,\"unit_price\":\"4.10\"}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"AddItem\",\"aggregate_id\":\"o1\",\"data\":{\"sku\":\"mug\",\"quantity\":1,\"unit_price\":\"12.99\"}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"AddItem\",\"aggregate_id\":\"o1\",\"data\":{\"sku\":\"mug\",\"quantity\":1,\"unit_price\":12.99}}",
           EVS_CMD_INVALID, "data.unit_price must be a string, got number");
    expect("{\"command_type\":\"AddItem\",\"aggregate_id\":\"o1\",\"data\":{\"sku\":\"mug\",\"quantity\":1,\"unit_price\":\"12.999\"}}",
           EVS_CMD_REJECTED, "decimal string");
    expect("{\"command_type\":\"RemoveItem\",\"aggregate_id\":\"o1\",\"data\":{\"sku\":\"tea\"}}", EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"RemoveItem\",\"aggregate_id\":\"o1\",\"data\":{\"sku\":\"tea\"}}", EVS_CMD_REJECTED,
           "has no item tea");
    expect("{\"command_type\":\"AddItem\",\"aggregate_id\":\"o1\",\"data\":{\"sku\":\"tea\",\"quantity\":2,\"unit_price\":\"4.10\"}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"SubmitOrder\",\"aggregate_id\":\"o1\"}", EVS_CMD_ACCEPTED, NULL);
    const char *w1[] = {"\"status\":\"submitted\"", "\"total\":\"21.19\"", "\"items\":3"};
    query("orders", "order-o1", w1, 3);
    /* stock is reserved for it; more than there is cannot be */
    expect("{\"command_type\":\"ReserveStock\",\"aggregate_id\":\"tea\",\"data\":{\"order_id\":\"o1\",\"quantity\":2}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"ReserveStock\",\"aggregate_id\":\"mug\",\"data\":{\"order_id\":\"o1\",\"quantity\":1}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"ReserveStock\",\"aggregate_id\":\"mug\",\"data\":{\"order_id\":\"o2\",\"quantity\":5}}",
           EVS_CMD_REJECTED, "not enough stock of mug: 1 available, 5 wanted");
    expect("{\"command_type\":\"ReleaseStock\",\"aggregate_id\":\"mug\",\"data\":{\"order_id\":\"o2\"}}", EVS_CMD_REJECTED,
           "holds no stock");
    const char *w2[] = {"\"key\":\"inventory-mug\",\"state\":{\"available\":1,\"on_hand\":2,\"reserved\":1,\"sku\":\"mug\"}",
                        "\"key\":\"inventory-tea\",\"state\":{\"available\":8,\"on_hand\":10,\"reserved\":2,\"sku\":\"tea\"}"};
    query("stock", NULL, w2, 2);
    /* payment */
    expect("{\"command_type\":\"AuthorizePayment\",\"aggregate_id\":\"p1\",\"data\":{\"order_id\":\"o1\",\"amount\":\"21.19\"}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"CapturePayment\",\"aggregate_id\":\"p1\",\"data\":{\"amount\":\"21.20\"}}", EVS_CMD_REJECTED,
           "cannot capture more");
    expect("{\"command_type\":\"CapturePayment\",\"aggregate_id\":\"p1\",\"data\":{}}", EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"PayOrder\",\"aggregate_id\":\"o1\",\"data\":{\"payment_id\":\"p1\",\"amount\":\"21.18\"}}",
           EVS_CMD_REJECTED, "does not match the total 21.19");
    expect("{\"command_id\":\"pay-o1\",\"command_type\":\"PayOrder\",\"aggregate_id\":\"o1\","
           "\"data\":{\"payment_id\":\"p1\",\"amount\":\"21.19\"}}",
           EVS_CMD_ACCEPTED, NULL);
    /* the same command again (a client retry): its original result, nothing new */
    expect("{\"command_id\":\"pay-o1\",\"command_type\":\"PayOrder\",\"aggregate_id\":\"o1\","
           "\"data\":{\"payment_id\":\"p1\",\"amount\":\"21.19\"}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"CancelOrder\",\"aggregate_id\":\"o1\",\"data\":{}}", EVS_CMD_REJECTED,
           "a paid order cannot be cancelled");
    expect("{\"command_type\":\"RefundPayment\",\"aggregate_id\":\"p1\",\"data\":{\"amount\":\"30.00\"}}", EVS_CMD_REJECTED,
           "cannot refund more");
    /* a cancelled order is never paid */
    expect("{\"command_type\":\"CreateOrder\",\"aggregate_id\":\"o2\",\"data\":{\"customer\":\"bob\"}}", EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"AddItem\",\"aggregate_id\":\"o2\",\"data\":{\"sku\":\"tea\",\"quantity\":1,\"unit_price\":\"0.10\"}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"AddItem\",\"aggregate_id\":\"o2\",\"data\":{\"sku\":\"cup\",\"quantity\":2,\"unit_price\":\"0.10\"}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"SubmitOrder\",\"aggregate_id\":\"o2\"}", EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"CancelOrder\",\"aggregate_id\":\"o2\",\"data\":{\"reason\":\"changed mind\"}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"PayOrder\",\"aggregate_id\":\"o2\",\"data\":{\"payment_id\":\"p2\",\"amount\":\"0.30\"}}",
           EVS_CMD_REJECTED, "a cancelled order cannot be paid");
    /* 0.10 + 2 x 0.10 is exactly 0.30: no float ever touched it */
    const char *w3[] = {"\"customer\":\"bob\"", "\"status\":\"cancelled\"", "\"total\":\"0.30\""};
    query("orders", "order-o2", w3, 3);
    /* shipment */
    expect("{\"command_type\":\"CreateShipment\",\"aggregate_id\":\"s1\",\"data\":{\"order_id\":\"o1\",\"address\":\"1 Main St\"}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"DeliverShipment\",\"aggregate_id\":\"s1\"}", EVS_CMD_REJECTED, "only a dispatched shipment");
    expect("{\"command_type\":\"DispatchShipment\",\"aggregate_id\":\"s1\",\"data\":{\"carrier\":\"post\",\"tracking\":\"T1\"}}",
           EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"DeliverShipment\",\"aggregate_id\":\"s1\"}", EVS_CMD_ACCEPTED, NULL);
    expect("{\"command_type\":\"Teleport\",\"aggregate_id\":\"s1\"}", EVS_CMD_UNKNOWN, "no handler for command type \"Teleport\"");
    const char *w4[] = {"\"total\":2"};
    query("orders", NULL, w4, 1);

    stop = 1;
    pthread_join(th, NULL);
    evs_proj_close(projs[0]);
    evs_proj_close(projs[1]);
    evs_app_close(app);
    evs_bus_close(bus);
    evs_store_close(s);
    printf("%s\n", failures ? "FAILED" : "all rules held");
    return failures ? 1 : 0;
}

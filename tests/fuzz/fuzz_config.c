/*
 * fuzz_config.c — fuzz target for `evstore serve --config FILE`: the JSON
 * settings file and its checks (src/cli/cli_serve.c), run through the
 * command's own entry point, evs__cli_serve.
 *
 * EVS_WRAP: evs__serve evs__cli_fail evs__cli_usage fopen
 *
 * Seams (linked -Wl,--wrap): evs__serve records the settings it is given
 * instead of serving; evs__cli_fail and evs__cli_usage record the message
 * instead of printing it; fopen in append mode (the access log) opens
 * /dev/null and records the path, so a fuzzed path never creates a file.
 *
 * The input is the file.  It runs twice: with -d only, and with flags for
 * threads, durability and listen as well (a flag wins over the file, whose
 * value for that setting is then not looked at).  Invariants:
 *   - the exit status is 0 or 1 (usage), the server runs exactly when it
 *     is 0, and a 1 comes with a message;
 *   - the settings the server gets are within the hard caps of server.h
 *     (and the application's settings within theirs);
 *   - an independent reading of the file with jansson decides the outcome:
 *     when it is an object of known settings, each of the right type and
 *     within its bounds, with a known durability, the server runs with
 *     exactly those values (flags and defaults elsewhere); when anything is
 *     wrong other than "listen" (whose syntax may grow), status 1 naming
 *     the file or the setting;
 *   - an access_log setting opens that path for appending, nothing else.
 */
#define FUZZ_NAME "fuzz_config"
#include "fuzz_util.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdarg.h>

#include "cli/cli.h"
#include "server/server.h"

typedef struct seen {
    int served;
    evs__serve_config cfg;
    char dir[512], listen[512], durability[16], app_dir[512]; /* the strings of cfg die with the call */
    int messages;
    char msg[1024];
    int opened;
    char opened_path[1024];
} seen;

static seen got;

int __wrap_evs__serve(const evs__serve_config *cfg, char *why, size_t whycap);
int __wrap_evs__serve(const evs__serve_config *cfg, char *why, size_t whycap) {
    (void)why, (void)whycap;
    got.served++;
    got.cfg = *cfg;
    snprintf(got.dir, sizeof got.dir, "%s", cfg->dir ? cfg->dir : "(null)");
    snprintf(got.listen, sizeof got.listen, "%s", cfg->listen ? cfg->listen : "(null)");
    snprintf(got.durability, sizeof got.durability, "%s", cfg->durability_name ? cfg->durability_name : "(null)");
    snprintf(got.app_dir, sizeof got.app_dir, "%s", cfg->app_dir ? cfg->app_dir : "(null)");
    return EVS_OK;
}

static void note(const char *fmt, va_list ap) {
    got.messages++;
    vsnprintf(got.msg, sizeof got.msg, fmt, ap);
}

int __wrap_evs__cli_fail(int exit_code, const char *fmt, ...);
int __wrap_evs__cli_fail(int exit_code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    note(fmt, ap);
    va_end(ap);
    return exit_code;
}

int __wrap_evs__cli_usage(const char *cmd, const char *fmt, ...);
int __wrap_evs__cli_usage(const char *cmd, const char *fmt, ...) {
    (void)cmd;
    va_list ap;
    va_start(ap, fmt);
    note(fmt, ap);
    va_end(ap);
    return EVS_CLI_USAGE;
}

FILE *__real_fopen(const char *path, const char *mode);
FILE *__wrap_fopen(const char *path, const char *mode);
FILE *__wrap_fopen(const char *path, const char *mode) {
    if (mode[0] != 'a') return __real_fopen(path, mode);
    got.opened++;
    snprintf(got.opened_path, sizeof got.opened_path, "%s", path);
    return __real_fopen("/dev/null", mode);
}

/* ------------------------------------------------------------ the oracle */

typedef struct setting {
    const char *key;
    uint64_t min, max; /* max 0: a string */
} setting;

static const setting settings[] = {
    {"dir", 0, 0},
    {"listen", 0, 0},
    {"durability", 0, 0},
    {"batch_ms", 1, 60000},
    {"threads", 1, EVS_SRV_MAX_THREADS},
    {"max_body", 1024, EVS_SRV_MAX_BODY},
    {"max_connections", 1, EVS_SRV_MAX_CONNECTIONS},
    {"timeout", 1, EVS_SRV_MAX_TIMEOUT_S},
    {"max_ws_message", 128, EVS_SRV_MAX_WS_FRAME},
    {"heartbeat_ms", 10, 3600000},
    {"access_log", 0, 0},
    {"app_dir", 0, 0},
    {"snapshot_every", 0, 10000000},
    {"snapshot_keep", 1, 1000},
    {"command_retries", 0, EVS_APP_MAX_RETRIES},
    {"idempotency_window", 1, 30ull * 86400},
    {"query_timeout_ms", 0, 600000},
    {"query_cache", 0, 1000000},
    {"group_idle_ms", 0, EVS_SRV_MAX_GROUP_IDLE_MS},
};
#define NSET (sizeof settings / sizeof settings[0])

typedef struct expect {
    int ok;              /* 1 run, 0 refuse, -1 either (only "listen" is in doubt) */
    uint64_t num[NSET];
    const char *str[NSET];
} expect;

/* IPV4:PORT or localhost:PORT, the form every version accepts ([IPv6]:PORT came later). */
static int listen_ok(const char *s) {
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || colon - s >= 64 || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
        strlen(colon + 1) > 5 || atoi(colon + 1) > 65535)
        return 0;
    char host[64];
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    struct in_addr a;
    return strcmp(host, "localhost") == 0 || inet_pton(AF_INET, host, &a) == 1;
}

/* What the file should give, with the settings given as flags (bit i: settings[i]) taken from flags. */
static void oracle(json_t *j, unsigned flags, const expect *defaults, expect *x) {
    *x = *defaults;
    x->ok = 1;
    if (!j || !json_is_object(j)) {
        x->ok = 0;
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        size_t i = 0;
        while (i < NSET && strcmp(settings[i].key, k)) i++;
        if (i == NSET) {
            x->ok = 0;
            return;
        }
        if (flags & (1u << i)) continue;
        if (!settings[i].max) {
            if (!json_is_string(v) || !json_string_value(v)[0]) {
                x->ok = 0;
                return;
            }
            x->str[i] = json_string_value(v);
        } else {
            if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)settings[i].min ||
                (uint64_t)json_integer_value(v) > settings[i].max) {
                x->ok = 0;
                return;
            }
            x->num[i] = (uint64_t)json_integer_value(v);
        }
    }
    const char *d = x->str[2];
    if (strcmp(d, "sync") && strcmp(d, "batch") && strcmp(d, "none")) x->ok = 0;
    else if (!listen_ok(x->str[1])) x->ok = -1;
}

/* One run of `evstore serve`; with_oracle 0: check everything but what jansson decides. */
static void run(const char *path, json_t *j, int with_flags, int with_oracle) {
    /* the arguments after "serve", as main.c hands them over */
    char *argv_a[] = {"-d", "fuzz-dir-flag", "--config", (char *)path, NULL};
    char *argv_b[] = {"-d",           "fuzz-dir-flag", "--config", (char *)path, "--threads",
                      "3",            "--durability",  "none",     "--listen",   "127.0.0.1:9", NULL};
    char **argv = with_flags ? argv_b : argv_a;
    int argc = with_flags ? 10 : 4;
    memset(&got, 0, sizeof got);
    int code = evs__cli_serve(argc, argv);
    FUZZ_ASSERT(code == EVS_CLI_OK || code == EVS_CLI_USAGE, "exit status %d", code);
    FUZZ_ASSERT((code == EVS_CLI_OK) == (got.served == 1) && got.served <= 1, "status %d, served %d", code, got.served);
    if (code) FUZZ_ASSERT(got.messages >= 1 && got.msg[0], "refused without a message");

    expect def = {.ok = 1}, x;
    def.str[0] = "fuzz-dir-flag";
    def.str[1] = with_flags ? "127.0.0.1:9" : "127.0.0.1:2113";
    def.str[2] = with_flags ? "none" : "sync";
    def.str[10] = NULL;
    def.num[3] = 10;
    def.num[4] = with_flags ? 3 : EVS_SRV_DEFAULT_THREADS;
    def.num[5] = EVS_SRV_DEFAULT_BODY;
    def.num[6] = EVS_SRV_DEFAULT_CONNECTIONS;
    def.num[7] = EVS_SRV_DEFAULT_TIMEOUT_S;
    def.num[8] = EVS_SRV_DEFAULT_WS_FRAME;
    def.num[9] = EVS_SRV_DEFAULT_HEARTBEAT_MS;
    def.str[11] = NULL;
    def.num[12] = 100;
    def.num[13] = 5;
    def.num[14] = 10;
    def.num[15] = 3600;
    def.num[16] = 5000;
    def.num[17] = 256;
    def.num[18] = EVS_SRV_DEFAULT_GROUP_IDLE_MS;
    unsigned flags = with_flags ? (1u << 0 | 1u << 1 | 1u << 2 | 1u << 4) : 1u << 0;
    oracle(j, flags, &def, &x);
    if (!with_oracle) x.ok = -1;
    if (x.ok == 0) {
        FUZZ_ASSERT(code == EVS_CLI_USAGE, "served a config the oracle refuses");
        FUZZ_ASSERT(strstr(got.msg, path) || strstr(got.msg, "durability"), "message names neither the file nor "
                    "the setting: %s", got.msg);
    }
    if (x.ok == 1) FUZZ_ASSERT(code == EVS_CLI_OK, "refused a config the oracle takes: %s", got.msg);
    if (code != EVS_CLI_OK) {
        FUZZ_ASSERT(got.opened == 0 || x.str[10] || !with_oracle, "an access log was opened, none set");
        return;
    }
    if (!with_oracle) return;
    const evs__serve_config *c = &got.cfg;
    FUZZ_ASSERT(c->threads >= 1 && c->threads <= EVS_SRV_MAX_THREADS && c->max_body >= 1024 &&
                    c->max_body <= EVS_SRV_MAX_BODY && c->max_connections >= 1 &&
                    c->max_connections <= EVS_SRV_MAX_CONNECTIONS && c->timeout_s >= 1 &&
                    c->timeout_s <= EVS_SRV_MAX_TIMEOUT_S && c->ws_frame_max >= 128 &&
                    c->ws_frame_max <= EVS_SRV_MAX_WS_FRAME && c->heartbeat_ms >= 10 && c->heartbeat_ms <= 3600000 &&
                    c->batch_ms >= 1 && c->batch_ms <= 60000,
                "a setting beyond its hard cap reached the server");
    FUZZ_ASSERT((c->durability == EVS_DURABILITY_SYNC && !strcmp(got.durability, "sync")) ||
                    (c->durability == EVS_DURABILITY_BATCH && !strcmp(got.durability, "batch")) ||
                    (c->durability == EVS_DURABILITY_NONE && !strcmp(got.durability, "none")),
                "durability %d \"%s\"", (int)c->durability, got.durability);
    FUZZ_ASSERT(c->addr.ss_family == AF_INET || (c->addr.ss_family == AF_INET6 && !listen_ok(got.listen)),
                "address family %d for %s", (int)c->addr.ss_family, got.listen);
    FUZZ_ASSERT(!strcmp(got.dir, x.str[0]) && !strcmp(got.listen, x.str[1]) && !strcmp(got.durability, x.str[2]),
                "dir/listen/durability %s %s %s", got.dir, got.listen, got.durability);
    FUZZ_ASSERT(c->batch_ms == x.num[3] && c->threads == x.num[4] && c->max_body == x.num[5] &&
                    c->max_connections == x.num[6] && c->timeout_s == x.num[7] && c->ws_frame_max == x.num[8] &&
                    c->heartbeat_ms == x.num[9],
                "numbers differ from the file's");
    FUZZ_ASSERT(c->app.snapshot_every == x.num[12] && c->app.snapshot_keep == x.num[13] &&
                    c->app.max_retries == x.num[14] && c->app.idempotency_window_ns == (int64_t)x.num[15] * 1000000000ll &&
                    c->app.query_timeout_ms == (int)x.num[16] && c->app.query_cache_entries == x.num[17] &&
                    c->group_idle_ms == x.num[18],
                "application settings differ from the file's");
    FUZZ_ASSERT(!strcmp(got.app_dir, x.str[11] ? x.str[11] : "(null)"), "app_dir %s", got.app_dir);
    if (x.str[10]) {
        int to_stderr = strcmp(x.str[10], "-") == 0;
        FUZZ_ASSERT(to_stderr ? got.opened == 0 : got.opened == 1 && !strcmp(got.opened_path, x.str[10]),
                    "access log %s opened as %s", x.str[10], got.opened_path);
    } else {
        FUZZ_ASSERT(got.opened == 0, "an access log was opened, none set");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[600];
    if (!path[0]) snprintf(path, sizeof path, "%s/serve.json", fuzz_dir());
    FILE *f = __real_fopen(path, "wb");
    FUZZ_ASSERT(f && fwrite(data, 1, size, f) == size && fclose(f) == 0, "writing %s", path);
    json_error_t je;
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    /* a NUL byte: whether jansson's file reader stops there or refuses is its business, not ours */
    int with_oracle = memchr(data, 0, size) == NULL;
    run(path, j, 0, with_oracle);
    run(path, j, 1, with_oracle);
    json_decref(j);
    return 0;
}

/*
 * cli_app.c — `evstore command`, `evstore query`, `evstore aggregate`:
 * the application layer (include/evstore_app.h) from the command line.
 *
 *   evstore command TYPE [AGGREGATE_ID [DATA]] [--id ID] [--metadata JSON]
 *                   [--expected N] [--target STREAM] [--correlation-id UUID]
 *   evstore command -                     (JSON commands on stdin, one per line)
 *   evstore query NAME [FIELD=VALUE ...] [--partition P] [--sort F] [--desc]
 *                 [--offset N] [--limit N] [--min-position P] [--timeout-ms T]
 *   evstore aggregate list | describe TYPE | show TYPE ID [--no-snapshot]
 *                   | snapshots TYPE ID | snapshot TYPE ID | put TYPE FILE.lua
 *
 * On a local store (-d DIR) the application is what a server on that
 * store would load: the types and queries of --app-dir, then the scripts
 * kept in the store.  With --url the running server does it
 * (cli_app_remote.c) with the same output.  Everything is checked before
 * the store is opened: a bad DATA or a bad line 7 of stdin runs nothing.
 *
 * Output: one JSON line per command (its result), per query (the answer),
 * per listed item.  A command that is not accepted also prints its reason
 * on stderr, and the exit status says which outcome it was (cli_app.h).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_app.h"
#include "evstore_app.h"
#include "evstore_bus.h"

#define MAX_STDIN_COMMANDS 100000u
#define MAX_STDIN_BYTES ((size_t)64 << 20)

int evs__cli_outcome_code(const char *o) {
    if (!o || strcmp(o, "accepted") == 0) return EVS_CLI_OK;
    if (strcmp(o, "rejected") == 0 || strcmp(o, "invalid") == 0) return EVS_CLI_INVALID;
    if (strcmp(o, "conflict") == 0) return EVS_CLI_CONFLICT;
    if (strcmp(o, "unknown") == 0) return EVS_CLI_NOTFOUND;
    return EVS_CLI_IO;
}

/* ------------------------------------------------------------ the local app */

typedef struct local {
    evs_store *s;
    evs_bus *b;
    evs_app *a;
    const char *dir;
} local;

/*
 * Open the store (flags: EVS_OPEN_CREATE for what writes, as append does),
 * its consumers and the app with app_dir and the kept scripts.  Exit code.
 */
static int local_open(const char *dir, const char *app_dir, unsigned flags, local *l) {
    memset(l, 0, sizeof *l);
    l->dir = dir;
    int code = evs__cli_open(dir, flags, &l->s);
    if (code) return code;
    evs__cli_clear_error();
    int rc = evs_bus_open(l->s, &l->b);
    if (!rc) rc = evs_app_open(l->s, l->b, NULL, &l->a);
    if (!rc && app_dir && (rc = evs_app_load_dir(l->a, app_dir))) code = evs__cli_lib_fail(rc, "--app-dir %s", app_dir);
    else if (rc) code = evs__cli_lib_fail(rc, "open %s", dir);
    char report[4096] = "";
    if (!code && (rc = evs_app_load_stored(l->a, report, sizeof report)))
        code = evs__cli_lib_fail(rc, "aggregate scripts kept in %s", dir);
    for (char *line = report, *nl; !code && *line; line = nl ? nl + 1 : line + strlen(line)) {
        if ((nl = strchr(line, '\n'))) *nl = '\0';
        fprintf(stderr, "evstore: %s\n", line);
    }
    if (code) {
        evs_app_close(l->a);
        evs_bus_close(l->b);
        code = evs__cli_close(l->s, dir, code);
        memset(l, 0, sizeof *l);
    }
    return code;
}

static int local_close(local *l, int code) {
    evs_app_close(l->a);
    evs_bus_close(l->b);
    return evs__cli_close(l->s, l->dir, code);
}

/* ---------------------------------------------------------------- command */

static const char command_help[] =
    "Usage: evstore command [-d DIR [--app-dir APPDIR] | --url URL] TYPE [AGGREGATE_ID [DATA]] [OPTIONS]\n"
    "       evstore command [-d DIR [--app-dir APPDIR] | --url URL] -\n"
    "\n"
    "Send a command to the application layer: the handler of command type TYPE\n"
    "(a Lua aggregate of --app-dir or one put with `evstore aggregate put`) loads\n"
    "the aggregate AGGREGATE_ID, decides, and appends its events.  DATA is a JSON\n"
    "object (default {}).  With - instead, commands are read from stdin, one JSON\n"
    "object per line ({\"command_type\": ..., \"aggregate_id\": ..., \"data\": {...},\n"
    "\"command_id\": ..., \"metadata\": {...}, \"expected_version\": N}; blank lines\n"
    "are skipped), checked all first, then run in order (not atomically).\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR            the store directory (default: $EVSTORE_DIR)\n"
    "  --app-dir APPDIR         load APPDIR/NAME.lua aggregates and APPDIR/queries.json\n"
    "                           (local only: a server loads its own)\n"
    "  --url URL                send through a running `evstore serve` (default: $EVSTORE_URL)\n"
    "  --id ID                  the command id: re-sending the same id returns the\n"
    "                           original result instead of running it again\n"
    "  --metadata JSON          metadata for the events (user, tenant, source, ...)\n"
    "  --expected N             the aggregate must be at version N\n"
    "  --target STREAM          the stream of an \"append\" handler\n"
    "  --correlation-id UUID    propagate a correlation id (default: a new one)\n"
    "  -h, --help               show this help\n"
    "\n"
    "Prints one JSON line per command: outcome, command_id, stream, correlation_id,\n"
    "events (ids), first_position, last_position (pass it to `evstore query\n"
    "--min-position` to read your writes), version, idempotent, retries, reason.\n"
    "\n"
    "Exit status: 0 accepted, 1 usage, 2 unknown command type, 3 conflict (expected\n"
    "version, or retries ran out), 4 rejected by the aggregate or invalid command,\n"
    "5 the handler failed, I/O error or server unreachable; with several commands,\n"
    "the status of the first one not accepted.\n";

typedef struct command_args {
    const char *pos[3];
    int npos;
    const char *dir, *url, *app_dir, *id, *metadata, *target, *corr;
    int64_t expected;
    int from_stdin;
} command_args;

/* Parse a JSON object argument; exit code. */
static int object_arg(const char *what, const char *text, json_t **out) {
    json_error_t je;
    *out = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!*out) return evs__cli_fail(EVS_CLI_INVALID, "%s: line %d, column %d: %s", what, je.line, je.column, je.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return evs__cli_fail(EVS_CLI_INVALID, "%s must be a JSON object", what);
    }
    return EVS_CLI_OK;
}

/* The command of the arguments as JSON text (malloc'd). */
static int command_from_args(const command_args *o, char **out) {
    json_t *c = json_object(), *data = NULL, *meta = NULL;
    int code = EVS_CLI_OK;
    *out = NULL;
    if (!c) return evs__cli_fail(EVS_CLI_IO, "out of memory");
    json_object_set_new(c, "command_type", json_string(o->pos[0]));
    if (o->npos > 1) json_object_set_new(c, "aggregate_id", json_string(o->pos[1]));
    if (o->npos > 2 && (code = object_arg("DATA", o->pos[2], &data))) goto out;
    json_object_set_new(c, "data", data ? data : json_object());
    if (o->metadata && (code = object_arg("--metadata", o->metadata, &meta))) goto out;
    if (meta) json_object_set_new(c, "metadata", meta);
    if (o->id) json_object_set_new(c, "command_id", json_string(o->id));
    if (o->target) json_object_set_new(c, "target", json_string(o->target));
    if (o->corr) json_object_set_new(c, "correlation_id", json_string(o->corr));
    if (o->expected >= 0) json_object_set_new(c, "expected_version", json_integer(o->expected));
    if (!(*out = json_dumps(c, JSON_COMPACT))) code = evs__cli_fail(EVS_CLI_IO, "out of memory");
out:
    json_decref(c);
    return code;
}

/* Commands from stdin, one JSON object per line, each naming its command_type.  Exit code. */
static int commands_from_stdin(char ***out, size_t *n) {
    char *line = NULL;
    size_t cap = 0, total = 0, k = 0, kcap = 0;
    char **cmds = NULL;
    int code = EVS_CLI_OK;
    unsigned lineno = 0;
    ssize_t r;
    while ((r = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        total += (size_t)r;
        while (r && (line[r - 1] == '\n' || line[r - 1] == '\r')) line[--r] = '\0';
        size_t sp = strspn(line, " \t");
        if (!line[sp]) continue;
        if (total > MAX_STDIN_BYTES || k >= MAX_STDIN_COMMANDS) {
            code = evs__cli_fail(EVS_CLI_INVALID, "stdin: more than %u commands or %zu MiB", MAX_STDIN_COMMANDS,
                                 MAX_STDIN_BYTES >> 20);
            break;
        }
        json_error_t je;
        json_t *c = json_loadb(line, (size_t)r, JSON_REJECT_DUPLICATES, &je);
        if (!c) {
            code = evs__cli_fail(EVS_CLI_INVALID, "command %zu (stdin line %u): line 1, column %d: %s", k + 1, lineno,
                                 je.column, je.text);
            break;
        }
        if (!json_is_object(c) || !json_is_string(json_object_get(c, "command_type"))) {
            json_decref(c);
            code = evs__cli_fail(EVS_CLI_INVALID, "command %zu (stdin line %u): a JSON object with a command_type "
                                                  "string is expected", k + 1, lineno);
            break;
        }
        json_decref(c);
        if (k == kcap) {
            kcap = kcap ? kcap * 2 : 16;
            char **nc = realloc(cmds, kcap * sizeof *nc);
            if (!nc) {
                code = evs__cli_fail(EVS_CLI_IO, "out of memory");
                break;
            }
            cmds = nc;
        }
        if (!(cmds[k] = strdup(line))) {
            code = evs__cli_fail(EVS_CLI_IO, "out of memory");
            break;
        }
        k++;
    }
    free(line);
    if (!code && ferror(stdin)) code = evs__cli_fail(EVS_CLI_IO, "reading stdin: %s", strerror(errno));
    if (!code && k == 0) code = evs__cli_fail(EVS_CLI_INVALID, "stdin: no commands");
    if (code) {
        for (size_t i = 0; i < k; i++) free(cmds[i]);
        free(cmds);
        return code;
    }
    *out = cmds;
    *n = k;
    return EVS_CLI_OK;
}

static int run_local_commands(const command_args *o, char **cmds, size_t n) {
    local l;
    int code = local_open(o->dir, o->app_dir, EVS_OPEN_CREATE, &l), first = EVS_CLI_OK;
    if (code) return code;
    for (size_t i = 0; i < n; i++) {
        evs_command_result r;
        evs__cli_clear_error();
        int rc = evs_app_execute_json(l.a, NULL, cmds[i], strlen(cmds[i]), &r);
        if (rc) { /* the store failed: what follows would fail too */
            code = evs__cli_lib_fail(rc, "command %zu", i + 1);
            if (!first) first = code;
            break;
        }
        char *js = NULL;
        if (!evs_command_result_to_json(&r, &js, NULL)) printf("%s\n", js);
        free(js);
        if (r.outcome != EVS_CMD_ACCEPTED) {
            int c = evs__cli_outcome_code(evs_command_outcome_name(r.outcome));
            evs__cli_fail(c, "%s", r.reason);
            if (!first) first = c;
        }
        evs_command_result_free(&r);
    }
    return local_close(&l, first);
}

int evs__cli_command(int argc, char **argv) {
    command_args o;
    memset(&o, 0, sizeof o);
    o.expected = -1;
    evs__cli_args a;
    const char *opt_dir = NULL, *opt_url = NULL, *v;
    int t, code;
    evs__cli_args_init(&a, "command", argc, argv);
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (o.npos == 3) return evs__cli_usage("command", "unexpected argument \"%s\"", a.arg);
            o.pos[o.npos++] = a.arg;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(command_help, stdout);
            return evs__cli_finish_output(EVS_CLI_OK);
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) return code;
        } else if (evs__cli_is(&a, "--url", NULL)) {
            if ((code = evs__cli_value(&a, &opt_url))) return code;
        } else if (evs__cli_is(&a, "--app-dir", NULL)) {
            if ((code = evs__cli_value(&a, &o.app_dir))) return code;
        } else if (evs__cli_is(&a, "--id", NULL)) {
            if ((code = evs__cli_value(&a, &o.id))) return code;
        } else if (evs__cli_is(&a, "--metadata", NULL)) {
            if ((code = evs__cli_value(&a, &o.metadata))) return code;
        } else if (evs__cli_is(&a, "--target", NULL)) {
            if ((code = evs__cli_value(&a, &o.target))) return code;
        } else if (evs__cli_is(&a, "--correlation-id", NULL)) {
            if ((code = evs__cli_value(&a, &o.corr))) return code;
        } else if (evs__cli_is(&a, "--expected", NULL)) {
            uint64_t e;
            if ((code = evs__cli_value(&a, &v)) || (code = evs__cli_u64(&a, "--expected", v, (uint64_t)INT64_MAX, &e)))
                return code;
            o.expected = (int64_t)e;
        } else {
            return evs__cli_unknown(&a);
        }
    }
    if (o.npos == 0) return evs__cli_usage("command", "missing TYPE (a command type), or - to read commands from stdin");
    o.from_stdin = strcmp(o.pos[0], "-") == 0;
    if (o.from_stdin && (o.npos > 1 || o.id || o.metadata || o.target || o.corr || o.expected >= 0))
        return evs__cli_usage("command", "with - every command comes whole from stdin: no other arguments");
    if (!o.from_stdin && !o.pos[0][0]) return evs__cli_usage("command", "TYPE is empty");
    if ((code = evs__cli_target(&a, opt_dir, opt_url, &o.dir, &o.url))) return code;
    if (o.url && o.app_dir)
        return evs__cli_usage("command", "--app-dir is for a local store: a server loads its own (serve --app-dir)");
    char **cmds = NULL;
    size_t n = 0;
    if (o.from_stdin) {
        code = commands_from_stdin(&cmds, &n);
    } else if (!(cmds = calloc(1, sizeof *cmds))) {
        code = evs__cli_fail(EVS_CLI_IO, "out of memory");
    } else if (!(code = command_from_args(&o, &cmds[0]))) {
        n = 1;
    }
    if (!code) code = o.url ? evs__cli_command_remote(o.url, cmds, n) : run_local_commands(&o, cmds, n);
    for (size_t i = 0; i < n; i++) free(cmds[i]);
    free(cmds);
    return evs__cli_finish_output(code);
}

/* ------------------------------------------------------------------ query */

static const char query_help[] =
    "Usage: evstore query [-d DIR [--app-dir APPDIR] | --url URL] NAME [FIELD=VALUE ...] [OPTIONS]\n"
    "\n"
    "Run the named query NAME (APPDIR/queries.json) over its projection's state:\n"
    "the items (one per partition) whose FIELD equals VALUE for every FIELD=VALUE\n"
    "given (\"a.b\" reaches into objects; numbers compare as numbers, true, false\n"
    "and null by name), sorted and paged.\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR        the store directory (default: $EVSTORE_DIR)\n"
    "  --app-dir APPDIR     where the queries are defined (local only)\n"
    "  --url URL            ask a running `evstore serve` (default: $EVSTORE_URL)\n"
    "  --partition P        only the item of partition P\n"
    "  --sort FIELD         sort by FIELD (default: the partition key); --desc reverses\n"
    "  --offset N, --limit N   paging (limit: the query's default, at most its maximum)\n"
    "  --min-position P     wait until the projection has passed global position P\n"
    "                       (a command's last_position: read your own writes)\n"
    "  --timeout-ms T       give up waiting after T ms (default and cap: the server's)\n"
    "  -h, --help           show this help\n"
    "\n"
    "Prints the answer: {\"query\",\"projection\",\"position\",\"total\",\"offset\",\"limit\",\n"
    "\"items\":[{\"key\",\"state\"}]}; position is the projection position it reflects.\n"
    "On a local store the projections do not run: the answer is their committed state.\n"
    "\n"
    "Exit status: 0 ok, 1 usage, 2 unknown query or projection, 4 a field the query\n"
    "does not allow, 5 the projection did not reach --min-position in time, I/O\n"
    "error or server unreachable.\n";

static void query_args_free(evs__cli_query_args *q) {
    for (size_t i = 0; i < q->nf; i++) {
        free(q->field[i]);
        free(q->value[i]);
    }
}

static int run_local_query(const char *dir, const char *app_dir, const evs__cli_query_args *q) {
    local l;
    int code = local_open(dir, app_dir, 0, &l);
    if (code) return code;
    evs_query_filter f[EVS_CLI_MAX_FILTERS];
    for (size_t i = 0; i < q->nf; i++) f[i] = (evs_query_filter){q->field[i], q->value[i]};
    evs_query_params p;
    memset(&p, 0, sizeof p);
    p.partition = q->partition;
    p.filters = f;
    p.n_filters = q->nf;
    p.sort = q->sort;
    p.descending = q->desc;
    p.offset = (size_t)q->offset;
    p.limit = (size_t)q->limit;
    p.min_position = q->min_position;
    p.timeout_ms = q->timeout_ms < 0 ? -1 : (int)q->timeout_ms;
    evs_query_result res;
    evs__cli_clear_error();
    int rc = evs_app_query(l.a, q->name, &p, &res);
    if (rc) {
        code = evs__cli_lib_fail(rc, "query %s", q->name);
    } else {
        printf("%s\n", res.json);
        evs_query_result_free(&res);
    }
    return local_close(&l, code);
}

int evs__cli_query(int argc, char **argv) {
    evs__cli_query_args q;
    memset(&q, 0, sizeof q);
    q.timeout_ms = -1;
    evs__cli_args a;
    const char *opt_dir = NULL, *opt_url = NULL, *app_dir = NULL, *dir, *url, *v;
    int t, code = EVS_CLI_OK;
    uint64_t n;
    evs__cli_args_init(&a, "query", argc, argv);
    while (!code && (t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (!q.name) {
                if (!a.arg[0]) code = evs__cli_usage("query", "NAME is empty");
                q.name = a.arg;
                continue;
            }
            const char *eq = strchr(a.arg, '=');
            if (!eq || eq == a.arg) {
                code = evs__cli_usage("query", "\"%s\": a filter is FIELD=VALUE", a.arg);
            } else if (q.nf == EVS_CLI_MAX_FILTERS) {
                code = evs__cli_usage("query", "at most %d filters", EVS_CLI_MAX_FILTERS);
            } else if (!(q.field[q.nf] = strndup(a.arg, (size_t)(eq - a.arg))) || !(q.value[q.nf] = strdup(eq + 1))) {
                free(q.field[q.nf]);
                code = evs__cli_fail(EVS_CLI_IO, "out of memory");
            } else {
                q.nf++;
            }
        } else if (evs__cli_is(&a, "--help", "-h")) {
            query_args_free(&q);
            fputs(query_help, stdout);
            return evs__cli_finish_output(EVS_CLI_OK);
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            code = evs__cli_value(&a, &opt_dir);
        } else if (evs__cli_is(&a, "--url", NULL)) {
            code = evs__cli_value(&a, &opt_url);
        } else if (evs__cli_is(&a, "--app-dir", NULL)) {
            code = evs__cli_value(&a, &app_dir);
        } else if (evs__cli_is(&a, "--partition", NULL)) {
            code = evs__cli_value(&a, &q.partition);
        } else if (evs__cli_is(&a, "--sort", NULL)) {
            if (!(code = evs__cli_value(&a, &q.sort)) && !q.sort[0]) code = evs__cli_usage("query", "--sort: empty");
        } else if (evs__cli_is(&a, "--desc", NULL)) {
            if (!(code = evs__cli_flag(&a))) q.desc = 1;
        } else if (evs__cli_is(&a, "--offset", NULL)) {
            if (!(code = evs__cli_value(&a, &v))) code = evs__cli_u64(&a, "--offset", v, 1000000000, &q.offset);
        } else if (evs__cli_is(&a, "--limit", "-n")) {
            if (!(code = evs__cli_value(&a, &v)) && !(code = evs__cli_u64(&a, "--limit", v, 1000000, &q.limit)) &&
                !q.limit)
                code = evs__cli_usage("query", "--limit 0: must be at least 1");
        } else if (evs__cli_is(&a, "--min-position", NULL)) {
            if (!(code = evs__cli_value(&a, &v)) &&
                !(code = evs__cli_u64(&a, "--min-position", v, UINT64_MAX - 1, &q.min_position)) && !q.min_position)
                code = evs__cli_usage("query", "--min-position 0: positions start at 1");
        } else if (evs__cli_is(&a, "--timeout-ms", NULL)) {
            if (!(code = evs__cli_value(&a, &v)) && !(code = evs__cli_u64(&a, "--timeout-ms", v, 600000, &n)))
                q.timeout_ms = (int64_t)n;
        } else {
            code = evs__cli_unknown(&a);
        }
    }
    if (!code && !q.name) code = evs__cli_usage("query", "missing NAME (a query of queries.json)");
    if (!code) code = evs__cli_target(&a, opt_dir, opt_url, &dir, &url);
    if (!code && url && app_dir)
        code = evs__cli_usage("query", "--app-dir is for a local store: a server loads its own (serve --app-dir)");
    if (!code) code = url ? evs__cli_query_remote(url, &q) : run_local_query(dir, app_dir, &q);
    query_args_free(&q);
    return evs__cli_finish_output(code);
}

/* -------------------------------------------------------------- aggregate */

static const char aggregate_help[] =
    "Usage: evstore aggregate list | describe TYPE | show TYPE ID [--no-snapshot]\n"
    "                         | snapshots TYPE ID | snapshot TYPE ID | put TYPE FILE.lua\n"
    "                         [-d DIR [--app-dir APPDIR] | --url URL]\n"
    "\n"
    "Aggregates of the application layer.  list prints every registered type (one\n"
    "JSON line each: name, kind, origin, schema_version, code_hash, commands);\n"
    "describe one type with its script; show loads aggregate ID of TYPE (the newest\n"
    "usable snapshot and the events after it; --no-snapshot folds every event) and\n"
    "prints its version and state; snapshots lists its stored snapshots, newest\n"
    "first; snapshot takes one now; put registers the Lua aggregate TYPE from\n"
    "FILE.lua, or replaces a type put before, keeping the script in the store so\n"
    "that it comes back after a restart.\n"
    "\n"
    "Options: -d DIR (default $EVSTORE_DIR) with --app-dir APPDIR for the types of\n"
    "an app directory, or --url URL of a running `evstore serve` ($EVSTORE_URL).\n"
    "\n"
    "Exit status: 0 ok, 1 usage, 2 unknown type (or no events to snapshot), 3 the\n"
    "type cannot be replaced (it comes from an app directory, or its commands\n"
    "belong to another type), 4 a script that does not load, 5 I/O error or\n"
    "server unreachable.\n";

static char *read_script(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(EVS_APP_MAX_SOURCE + 1);
    size_t n = buf ? fread(buf, 1, EVS_APP_MAX_SOURCE + 1, f) : 0;
    int bad = ferror(f) || n > EVS_APP_MAX_SOURCE;
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* A JSON text printed as one line, with `drop` (may be NULL) removed and `add` (may be NULL) set. */
static void print_json(const char *text, const char *drop, const char *add_key, json_t *add_val) {
    json_t *o = json_loads(text, 0, NULL);
    if (o && drop) json_object_del(o, drop);
    if (o && add_key) json_object_set(o, add_key, add_val);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    printf("%s\n", s ? s : text);
    free(s);
    json_decref(o);
}

static int local_aggregate(local *l, const char *act, const char *type, const char *id, int no_snapshot,
                           const char *src, size_t src_len) {
    int rc = EVS_OK;
    char *js = NULL;
    if (strcmp(act, "list") == 0) {
        if (!(rc = evs_app_describe(l->a, NULL, &js, NULL))) {
            json_t *o = json_loads(js, 0, NULL), *v;
            size_t i;
            json_array_foreach(json_object_get(o, "aggregates"), i, v) {
                char *s = json_dumps(v, JSON_COMPACT);
                if (s) printf("%s\n", s);
                free(s);
            }
            json_decref(o);
        }
    } else if (strcmp(act, "describe") == 0) {
        if (!(rc = evs_app_describe(l->a, type, &js, NULL))) printf("%s\n", js);
    } else if (strcmp(act, "show") == 0) {
        evs_load_info info;
        size_t n;
        if (!(rc = evs_aggregate_load_json(l->a, type, id, no_snapshot ? EVS_LOAD_NO_SNAPSHOT : 0, &js, &n, &info))) {
            char stream[2 * EVS_MAX_STREAM_NAME + 2];
            snprintf(stream, sizeof stream, "%s-%s", type, id); /* the library checked that it fits */
            json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:f}", "type", type, "id", id, "stream", stream,
                                  "version", (json_int_t)info.version, "snapshot_version",
                                  (json_int_t)info.snapshot_version, "events_applied", (json_int_t)info.events_applied,
                                  "snapshots_ignored", (json_int_t)info.snapshots_ignored, "load_ms",
                                  (double)info.duration_ns / 1e6);
            json_t *state = json_loadb(js, n, 0, NULL);
            if (o && state) json_object_set_new(o, "state", state);
            char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
            if (s) printf("%s\n", s);
            free(s);
            json_decref(o);
        }
    } else if (strcmp(act, "snapshots") == 0) {
        evs_snapshot_info sn[64];
        size_t n = 0;
        if (!(rc = evs_aggregate_snapshots(l->a, type, id, sn, 64, &n)))
            for (size_t i = 0; i < n; i++) {
                printf("{\"version\":%llu,\"global_position\":%llu,\"schema_version\":%u,\"code_hash\":\"",
                       (unsigned long long)sn[i].version, (unsigned long long)sn[i].global_position,
                       sn[i].schema_version);
                for (int k = 0; k < 16; k++) printf("%02x", sn[i].code_hash[k]);
                printf("\",\"usable\":%s,\"created_at\":", sn[i].usable ? "true" : "false");
                evs__cli_json_time(stdout, sn[i].created_at);
                printf("}\n");
            }
    } else if (strcmp(act, "snapshot") == 0) {
        uint64_t v = 0;
        if (!(rc = evs_aggregate_snapshot(l->a, type, id, &v))) printf("{\"version\":%llu}\n", (unsigned long long)v);
    } else { /* put */
        int what = 0;
        if (!(rc = evs_app_put_lua_aggregate(l->a, type, src, src_len, &what)) &&
            !(rc = evs_app_describe(l->a, type, &js, NULL))) {
            json_t *c = json_string(what == EVS_PUT_CREATED ? "created" : what == EVS_PUT_REPLACED ? "replaced" : "unchanged");
            print_json(js, "source", "change", c);
            json_decref(c);
        }
    }
    free(js);
    return rc ? evs__cli_lib_fail(rc, "aggregate %s", act) : EVS_CLI_OK;
}

int evs__cli_aggregate(int argc, char **argv) {
    const char *pos[3] = {0};
    int npos = 0, no_snapshot = 0, t, code = EVS_CLI_OK;
    const char *opt_dir = NULL, *opt_url = NULL, *app_dir = NULL, *dir, *url;
    evs__cli_args a;
    evs__cli_args_init(&a, "aggregate", argc, argv);
    while (!code && (t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (npos == 3) code = evs__cli_usage("aggregate", "unexpected argument \"%s\"", a.arg);
            else pos[npos++] = a.arg;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(aggregate_help, stdout);
            return evs__cli_finish_output(EVS_CLI_OK);
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            code = evs__cli_value(&a, &opt_dir);
        } else if (evs__cli_is(&a, "--url", NULL)) {
            code = evs__cli_value(&a, &opt_url);
        } else if (evs__cli_is(&a, "--app-dir", NULL)) {
            code = evs__cli_value(&a, &app_dir);
        } else if (evs__cli_is(&a, "--no-snapshot", NULL)) {
            if (!(code = evs__cli_flag(&a))) no_snapshot = 1;
        } else {
            code = evs__cli_unknown(&a);
        }
    }
    if (code) return code;
    if (npos == 0) return evs__cli_usage("aggregate", "missing action (list, describe, show, snapshots, snapshot, put)");
    const char *act = pos[0];
    static const struct {
        const char *name;
        int args;
        const char *what;
    } acts[] = {{"list", 0, ""}, {"describe", 1, "TYPE"}, {"show", 2, "TYPE and ID"}, {"snapshots", 2, "TYPE and ID"},
                {"snapshot", 2, "TYPE and ID"}, {"put", 2, "TYPE and FILE.lua"}};
    size_t k = 0;
    while (k < sizeof acts / sizeof acts[0] && strcmp(acts[k].name, act)) k++;
    if (k == sizeof acts / sizeof acts[0]) return evs__cli_usage("aggregate", "unknown action \"%s\"", act);
    if (npos - 1 < acts[k].args) return evs__cli_usage("aggregate", "%s: missing %s", act, acts[k].what);
    if (npos - 1 > acts[k].args) return evs__cli_usage("aggregate", "%s: unexpected argument \"%s\"", act, pos[npos - 1]);
    if (no_snapshot && strcmp(act, "show")) return evs__cli_usage("aggregate", "--no-snapshot goes with show");
    if ((code = evs__cli_target(&a, opt_dir, opt_url, &dir, &url))) return code;
    if (url && app_dir)
        return evs__cli_usage("aggregate", "--app-dir is for a local store: a server loads its own (serve --app-dir)");
    char *src = NULL;
    size_t src_len = 0;
    if (strcmp(act, "put") == 0 && !(src = read_script(pos[2], &src_len)))
        return evs__cli_fail(EVS_CLI_NOTFOUND, "aggregate put: cannot read %s (missing, unreadable or over %zu bytes)",
                             pos[2], EVS_APP_MAX_SOURCE);
    const char *type = npos > 1 ? pos[1] : NULL, *id = npos > 2 && !src ? pos[2] : NULL;
    if (url) {
        code = evs__cli_aggregate_remote(url, act, type, id, no_snapshot, src, src_len);
    } else {
        local l;
        if (!(code = local_open(dir, app_dir, src ? EVS_OPEN_CREATE : 0, &l))) {
            evs__cli_clear_error();
            code = local_close(&l, local_aggregate(&l, act, type, id, no_snapshot, src, src_len));
        }
    }
    free(src);
    return evs__cli_finish_output(code);
}

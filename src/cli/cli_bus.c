/*
 * cli_bus.c — `evstore sub|dlq|projection|group ...`: consumers of a local
 * store (see include/evstore_bus.h), printed as JSON on stdout.  With --url
 * the same actions go to a running server (cli_bus_remote.c).
 *
 *   evstore sub list | show NAME | create NAME | pause NAME | resume NAME | reset NAME POS | delete NAME
 *   evstore dlq list NAME [--after POS] [--limit N] | show NAME POS | discard NAME POS
 *               | purge NAME | retry NAME [POS]      (retry: stored Lua projections)
 *   evstore projection create NAME FILE.lua | run NAME [--follow] | status NAME
 *               | state NAME [PARTITION] | partitions NAME [--after P] [--limit N]
 *               | rebuild NAME | delete NAME
 *   evstore group create NAME | show NAME | list | delete NAME | consumers NAME
 *
 * Actions that only read (list, show, status, state, partitions, consumers
 * aside) open the store and its consumers read-only, so they work while a
 * server holds the store; the others take the store's lock, and when a
 * server holds it they say which --url to use instead (cli_util.c).
 *
 * `sub create` and `group create` take their settings as the JSON object
 * the server's PUT takes (--settings), with flags for the common ones on
 * top; both are read by src/bus/settings.c, local or remote, so a setting
 * is refused with the same words either way.
 */
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "bus/settings.h"
#include "cli/cli.h"
#include "cli/cli_bus.h"
#include "evstore_bus.h"

/* The options only some actions take: which were given, for check_action. */
enum { BUS_AFTER = 1u << 0, BUS_LIMIT = 1u << 1, BUS_FOLLOW = 1u << 2, BUS_AS_OF = 1u << 3, BUS_SPEC = 1u << 4 };
static const char *const bus_opt_names[] = {"--after", "--limit", "--follow", "--as-of", "--spec"};

/* The most positionals any action takes, action word included (projection compare NAME A B). */
#define BUS_MAX_POS 4

typedef struct bus_args {
    const char *cmd;
    const char *pos[BUS_MAX_POS + 1]; /* one more than any action takes, to name it in the message */
    int npos;
    const char *dir, *url;
    uint64_t after, limit;
    unsigned given; /* BUS_* */
    int have_limit;
    int follow;
    int help;
    /* projection state --as-of, what-if --spec */
    const char *as_of, *spec;
    /* settings of `create` (sub, group): the object, and the flag that first set one */
    json_t *set;
    const char *set_flag;
} bus_args;

static void bus_args_free(bus_args *o) {
    json_decref(o->set);
    o->set = NULL;
}


/* The settings object, created on first use. */
static json_t *settings(bus_args *o, const char *flag) {
    if (!o->set_flag) o->set_flag = flag;
    if (!o->set) o->set = json_object();
    return o->set;
}

/* json's filter member, created on first use. */
static json_t *settings_filter(bus_args *o, const char *flag) {
    json_t *s = settings(o, flag), *f = json_object_get(s, "filter");
    if (!f) json_object_set_new(s, "filter", f = json_object());
    return f;
}

/* --settings JSON or @FILE: the base the other flags go on top of.  Exit code. */
static int settings_base(evs__cli_args *a, bus_args *o, const char *v) {
    char *text = NULL;
    size_t n = 0;
    const char *src = v;
    if (v[0] == '@') {
        if (!(text = evs__cli_read_file(v + 1, 16u << 20, &n)))
            return evs__cli_fail(EVS_CLI_NOTFOUND, "%s --settings: cannot read %s (missing or over 16 MiB)", o->cmd,
                                 v + 1);
        src = text;
    } else {
        n = strlen(v);
    }
    json_error_t je;
    json_t *j = json_loadb(src, n, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!j)
        return evs__cli_fail(EVS_CLI_INVALID, "%s --settings: malformed JSON: line %d, column %d: %s", o->cmd, je.line,
                             je.column, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return evs__cli_fail(EVS_CLI_INVALID, "%s --settings: expected a JSON object of settings", o->cmd);
    }
    /* flags given before --settings still win: they go on top of it */
    if (o->set) json_object_update(j, o->set);
    json_decref(o->set);
    o->set = j;
    if (!o->set_flag) o->set_flag = "--settings";
    (void)a;
    return EVS_CLI_OK;
}

/* A settings flag (sub/group create); *handled 0 when the option is none of them.  Exit code. */
static int settings_opt(evs__cli_args *a, bus_args *o, int *handled) {
    const char *v;
    int code;
    uint64_t n;
    *handled = 1;
    if (evs__cli_is(a, "--settings", NULL)) {
        if ((code = evs__cli_value(a, &v))) return code;
        return settings_base(a, o, v);
    }
    static const char *const strs[][2] = {{"--owner", "owner"}, {"--tag", "tag"}, {"--stream", "stream"},
                                          {"--strategy", "strategy"}, {"--on-failure", "on_failure"}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (evs__cli_is(a, strs[i][0], NULL)) {
            if ((code = evs__cli_value(a, &v))) return code;
            json_object_set_new(settings(o, strs[i][0]), strs[i][1], json_string(v));
            return EVS_CLI_OK;
        }
    static const char *const fstrs[][2] = {{"--stream-type", "stream_type"}, {"--stream-prefix", "stream_prefix"},
                                           {"--correlation", "correlation_id"}};
    for (size_t i = 0; i < sizeof fstrs / sizeof fstrs[0]; i++)
        if (evs__cli_is(a, fstrs[i][0], NULL)) {
            if ((code = evs__cli_value(a, &v))) return code;
            json_object_set_new(settings_filter(o, fstrs[i][0]), fstrs[i][1], json_string(v));
            return EVS_CLI_OK;
        }
    static const char *const nums[][2] = {{"--ack-timeout-ms", "ack_timeout_ms"},
                                          {"--max-in-flight", "max_in_flight"}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        if (evs__cli_is(a, nums[i][0], NULL)) {
            if ((code = evs__cli_value(a, &v)) || (code = evs__cli_u64(a, nums[i][0], v, INT64_MAX, &n)))
                return code;
            json_object_set_new(settings(o, nums[i][0]), nums[i][1], json_integer((json_int_t)n));
            return EVS_CLI_OK;
        }
    if (evs__cli_is(a, "--type", NULL)) {
        if ((code = evs__cli_value(a, &v))) return code;
        json_t *arr = json_array();
        for (const char *p = v;;) {
            const char *c = strchr(p, ',');
            size_t l = c ? (size_t)(c - p) : strlen(p);
            if (l == 0) {
                json_decref(arr);
                return evs__cli_usage(o->cmd, "--type %s: empty event type (use T1,T2 without blanks)", v);
            }
            json_array_append_new(arr, json_stringn(p, l));
            if (!c) break;
            p = c + 1;
        }
        json_object_set_new(settings_filter(o, "--type"), "event_types", arr);
        return EVS_CLI_OK;
    }
    if (evs__cli_is(a, "--from", NULL)) {
        if ((code = evs__cli_value(a, &v))) return code;
        json_t *from;
        if (strcmp(v, "start") == 0 || strcmp(v, "now") == 0) {
            from = json_string(v);
        } else {
            if ((code = evs__cli_u64(a, "--from", v, INT64_MAX, &n))) return code;
            if (n == 0) return evs__cli_usage(o->cmd, "--from 0: positions start at 1 (or give start or now)");
            from = json_integer((json_int_t)n);
        }
        json_object_set_new(settings(o, "--from"), "from", from);
        return EVS_CLI_OK;
    }
    *handled = 0;
    return EVS_CLI_OK;
}

static int parse(const char *cmd, int argc, char **argv, bus_args *o) {
    evs__cli_args a;
    const char *opt_dir = NULL, *opt_url = NULL, *v;
    int t, code, handled;
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
    o->limit = 100;
    evs__cli_args_init(&a, cmd, argc, argv);
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            /* the first one past the table's longest is kept, so check_action names it with the action */
            if (o->npos < BUS_MAX_POS + 1) o->pos[o->npos] = a.arg;
            o->npos++;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            o->help = 1;
            return EVS_CLI_OK;
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) return code;
        } else if (evs__cli_is(&a, "--url", NULL)) {
            if ((code = evs__cli_value(&a, &opt_url))) return code;
        } else if (evs__cli_is(&a, "--after", NULL)) {
            if ((code = evs__cli_value(&a, &v)) || (code = evs__cli_u64(&a, "--after", v, UINT64_MAX, &o->after)))
                return code;
            o->given |= BUS_AFTER;
        } else if (evs__cli_is(&a, "--limit", "-n")) {
            if ((code = evs__cli_value(&a, &v)) || (code = evs__cli_u64(&a, "--limit", v, 100000, &o->limit)))
                return code;
            if (o->limit == 0) return evs__cli_usage(cmd, "--limit 0: at least 1 (leave it out for the default)");
            o->have_limit = 1;
            o->given |= BUS_LIMIT;
        } else if (evs__cli_is(&a, "--follow", "-f")) {
            if ((code = evs__cli_flag(&a))) return code;
            o->follow = 1;
            o->given |= BUS_FOLLOW;
        } else if (evs__cli_is(&a, "--as-of", NULL)) {
            if ((code = evs__cli_value(&a, &o->as_of))) return code;
            o->given |= BUS_AS_OF;
        } else if (evs__cli_is(&a, "--spec", NULL)) {
            if ((code = evs__cli_value(&a, &o->spec))) return code;
            o->given |= BUS_SPEC;
        } else {
            if ((code = settings_opt(&a, o, &handled))) return code;
            if (!handled) return evs__cli_unknown(&a);
            if (!o->set) return evs__cli_fail(EVS_CLI_IO, "out of memory");
        }
    }
    return evs__cli_target(&a, opt_dir, opt_url, &o->dir, &o->url);
}

/* Parse a command's arguments; 1 when it is over already (help shown, or a usage error in *code). */
static int begin(const char *cmd, const char *help, int argc, char **argv, bus_args *o, int *code) {
    *code = parse(cmd, argc, argv, o);
    if (!*code && !o->help) return 0;
    if (o->help) fputs(help, stdout);
    bus_args_free(o);
    if (!*code) *code = evs__cli_finish_output(EVS_CLI_OK);
    return 1;
}

/* Release what a command opened; its exit status (5 when the store's close failed). */
static int finish(bus_args *o, evs_store *s, evs_bus *b, int code) {
    bus_args_free(o);
    evs_bus_close(b);
    code = evs__cli_close(s, o->dir, code);
    return code ? code : evs__cli_finish_output(EVS_CLI_OK);
}

/*
 * The store and its consumers: read-only (alongside a server that holds
 * the store) for actions that only read, else with the store's lock.  A
 * read-only store without consumers/ has none: *b is then NULL with
 * EVS_CLI_OK and *none set.
 */
static int open_bus(const char *dir, int readonly, evs_store **s, evs_bus **b, int *none) {
    *none = 0;
    int code = evs__cli_open(dir, readonly ? EVS_OPEN_READONLY : 0, s);
    if (code) return code;
    evs__cli_clear_error();
    int rc = evs_bus_open(*s, b);
    if (rc == EVS_ENOTFOUND && readonly) {
        *none = 1;
        return EVS_CLI_OK;
    }
    if (rc) {
        code = evs__cli_close(*s, dir, evs__cli_lib_fail(rc, "open consumers of %s", dir));
        *s = NULL;
        return code;
    }
    return EVS_CLI_OK;
}

/* One JSON line out of a builder. */
static void print_sb(evs__sb *b) {
    if (b->oom) {
        evs__sb_free(b);
        evs__cli_fail(EVS_CLI_IO, "out of memory");
        exit(EVS_CLI_IO);
    }
    fwrite(b->p, 1, b->len, stdout);
    fputc('\n', stdout);
    evs__sb_free(b);
}

/* A consumer record as the server shows it (bus/settings.c writes both). */
static void print_info(const evs_consumer_info *i) {
    evs__sb b = {0};
    evs__consumer_record_json(&b, i);
    print_sb(&b);
}

/*
 * A group's record and settings, as the server shows a group that is not
 * open in it: no process serves it here, so no consumers are connected.
 */
static void print_group(const evs_group_info *gi) {
    evs__sb b = {0};
    evs__consumer_record_json(&b, &gi->info);
    b.len--; /* reopen the object for the group's fields */
    evs__group_settings_json(&b, gi);
    evs__sb_printf(&b, ",\"open\":false,\"in_flight\":%llu,\"buffered\":%llu,\"consumers\":[]}",
                   (unsigned long long)gi->in_flight, (unsigned long long)gi->buffered);
    print_sb(&b);
}

/* A consumer's record as the server answers a change to it (a group with its settings).  Library status. */
static int print_consumer(evs_bus *b, const char *name) {
    evs_consumer_info i;
    int rc = evs_consumer_get(b, name, &i);
    if (rc) return rc;
    if (strcmp(i.kind, "group") == 0) {
        evs_group_info gi;
        if ((rc = evs_group_get(b, name, &gi))) return rc;
        print_group(&gi);
    } else {
        print_info(&i);
    }
    return EVS_OK;
}

/* What a delete prints, as the server's DELETE answers. */
static void print_deleted(const char *name, const char *kind) {
    fputs("{\"deleted\":", stdout);
    evs__cli_json_str(stdout, name, strlen(name));
    printf(",\"kind\":\"%s\"}\n", kind);
}

static void print_entry(const evs_dlq_entry *e) {
    printf("{\"position\":%llu,\"stream\":", (unsigned long long)e->position);
    evs__cli_json_str(stdout, e->stream, strlen(e->stream));
    printf(",\"stream_position\":%llu,\"event_type\":", (unsigned long long)e->stream_position);
    evs__cli_json_str(stdout, e->event_type, strlen(e->event_type));
    printf(",\"attempts\":%u,\"last_error\":", e->attempts);
    evs__cli_json_str(stdout, e->last_error, strlen(e->last_error));
    printf(",\"first_failure_at\":");
    evs__cli_json_time(stdout, e->first_failure_at);
    printf(",\"last_failure_at\":");
    evs__cli_json_time(stdout, e->last_failure_at);
    if (e->blocked_by) printf(",\"blocked_by\":%llu", (unsigned long long)e->blocked_by);
    printf("}\n");
}

static int parse_pos(const char *cmd, const char *text, uint64_t *out) {
    evs__cli_args a;
    evs__cli_args_init(&a, cmd, 0, NULL);
    /* as the server's ?to=: UINT64_MAX is the library's "now", which a number must not mean */
    int code = evs__cli_u64(&a, "POSITION", text, UINT64_MAX - 1, out);
    if (!code && *out == 0) code = evs__cli_usage(cmd, "POSITION 0: positions start at 1");
    return code;
}

/*
 * One action of a command: the arguments after the action word as the help
 * names them (the first min required, "[...]" marks the optional rest), the
 * options of bus_opt_names it takes, and whether it takes the settings flags.
 */
typedef struct bus_action {
    const char *name;
    int min;
    const char *args[BUS_MAX_POS];
    unsigned opts;
    int settings;
} bus_action;

/*
 * The one check of a command's line against its action table, so that an
 * argument or option the action does not use is refused with its name
 * instead of being ignored.  *act is the action's entry.  Exit code.
 */
static int check_action(const bus_args *o, const bus_action *acts, const bus_action **act) {
    char list[256] = "";
    int any_settings = 0;
    for (const bus_action *x = acts; x->name; x++) {
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "", x->name);
        any_settings |= x->settings;
    }
    if (o->npos < 1) return evs__cli_usage(o->cmd, "missing action (%s)", list);
    const bus_action *x = acts;
    while (x->name && strcmp(x->name, o->pos[0]) != 0) x++;
    if (!x->name) return evs__cli_usage(o->cmd, "unknown action \"%s\" (%s)", o->pos[0], list);
    int max = 0;
    while (max < BUS_MAX_POS && x->args[max]) max++;
    int n = o->npos - 1;
    if (n < x->min) return evs__cli_usage(o->cmd, "%s %s: missing %s", o->cmd, x->name, x->args[n]);
    if (n > max) {
        char usage[128] = "";
        for (int i = 0; i < max; i++)
            snprintf(usage + strlen(usage), sizeof usage - strlen(usage), "%s%s%s%s", i ? " " : "",
                     i >= x->min ? "[" : "", x->args[i], i >= x->min ? "]" : "");
        if (max == 0)
            return evs__cli_usage(o->cmd, "%s %s takes no arguments; unexpected argument \"%s\"", o->cmd, x->name,
                                  o->pos[1]);
        return evs__cli_usage(o->cmd, "%s %s takes %s%s; unexpected argument \"%s\"", o->cmd, x->name,
                              max == 1 && x->min == 1 ? "one " : "", usage, o->pos[max + 1]);
    }
    if (o->set_flag && !x->settings) {
        if (!any_settings)
            return evs__cli_usage(o->cmd, "%s is no option of %s", o->set_flag, o->cmd);
        return evs__cli_usage(o->cmd, "%s applies to %s create only", o->set_flag, o->cmd);
    }
    for (size_t i = 0; i < sizeof bus_opt_names / sizeof bus_opt_names[0]; i++)
        if ((o->given & ~x->opts) & (1u << i))
            return evs__cli_usage(o->cmd, "%s does not apply to %s %s", bus_opt_names[i], o->cmd, x->name);
    *act = x;
    return EVS_CLI_OK;
}

/* The consumer name is of the kind the command is about (kind NULL: any).  Exit code after saying why. */
static int check_kind(evs_bus *b, const char *cmd, const char *name, const char *kind, evs_consumer_info *out) {
    evs_consumer_info tmp;
    if (!out) out = &tmp;
    int rc = b ? evs_consumer_get(b, name, out) : EVS_ENOTFOUND;
    if (rc == EVS_ENOTFOUND)
        return evs__cli_fail(EVS_CLI_NOTFOUND, "%s %s: %s \"%s\" not found", cmd, name, kind ? kind : "consumer", name);
    if (rc) return evs__cli_lib_fail(rc, "%s %s", cmd, name);
    if (kind && strcmp(out->kind, kind) != 0)
        return evs__cli_fail(EVS_CLI_NOTFOUND, "%s %s: \"%s\" is a %s, not a %s", cmd, name, name, out->kind, kind);
    return EVS_CLI_OK;
}

/* ------------------------------------------------------------------- sub */

static const char sub_help[] =
    "Usage: evstore sub ACTION [NAME] [POSITION] -d DIR|--url URL [options]\n"
    "\n"
    "Durable consumers of every kind (subscriptions, projections, groups): their\n"
    "records (checkpoint, status, retries, last error, lag) as JSON lines.\n"
    "\n"
    "Actions:\n"
    "  list                 every consumer record, in name order\n"
    "  show NAME            one record\n"
    "  create NAME          create a subscription's record, or change its settings\n"
    "                       (checkpoint kept); the program that runs it (evs_sub_open)\n"
    "                       then starts where `from` says\n"
    "  pause NAME           stop it (persisted)\n"
    "  resume NAME          continue it (also clears status \"error\")\n"
    "  reset NAME POSITION  continue at POSITION (1 .. head + 1: one past the last\n"
    "                       event, or a stream subscription's stream); a projection\n"
    "                       in the middle of a rebuild restarts the rebuild from there\n"
    "  delete NAME          the record, its DLQ and any projection state\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR        the store directory (default: $EVSTORE_DIR); list and show\n"
    "                       also work while a server holds the store\n"
    "  --url URL            through a running `evstore serve` (default: $EVSTORE_URL)\n"
    "Settings of create (or all of them as --settings, the JSON of PUT /subscriptions/N):\n"
    "  --settings JSON|@FILE   {\"owner\",\"stream\",\"filter\",\"tag\",\"from\"}; flags win\n"
    "  --from start|now|N   where a new subscription starts (default: start)\n"
    "  --stream S           one stream instead of $all (N is then a stream position)\n"
    "  --type T1,T2         event types; --stream-type C; --stream-prefix P;\n"
    "  --correlation UUID   the filter; --tag T: only events carrying tag T\n"
    "  --owner O            informational\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 ok, 1 usage, 2 no such consumer, 3 the name is taken by another\n"
    "kind (create) or the consumer is open, 4 invalid settings or a position past the\n"
    "head + 1 (reset, --from), 5 I/O error, the store is held by another process (use\n"
    "--url), or the server is unreachable.\n";

/* The settings object of a create: the flags', or {} (every default). */
static json_t *create_settings(bus_args *o) {
    if (!o->set) o->set = json_object();
    return o->set;
}

static int noop_handler(void *ctx, const evs_event *ev, char *err, size_t cap) {
    (void)ctx, (void)ev;
    snprintf(err, cap, "no handler: `evstore sub create` only writes the record");
    return 1;
}

/* sub create NAME on a local store.  Exit code. */
static int sub_create_local(bus_args *o, evs_bus *b, const char *name) {
    evs__sub_settings_in sj;
    evs__settings_err e;
    if (evs__sub_settings_parse(create_settings(o), name, &sj, &e))
        return evs__cli_fail(EVS_CLI_INVALID, "sub create %s: %s", name, e.why);
    evs_consumer_info info;
    int rc = evs_consumer_get(b, name, &info);
    if (rc == EVS_OK && strcmp(info.kind, "subscription") != 0)
        return evs__cli_fail(EVS_CLI_CONFLICT, "sub create %s: \"%s\" is a %s; a subscription needs another name", name,
                             name, info.kind);
    if (rc && rc != EVS_ENOTFOUND) return evs__cli_lib_fail(rc, "sub create %s", name);
    evs_subscription *sub;
    if ((rc = evs_sub_open(b, &sj.c, noop_handler, NULL, &sub))) return evs__cli_lib_fail(rc, "sub create %s", name);
    evs_sub_close(sub);
    if ((rc = evs_consumer_get(b, name, &info))) return evs__cli_lib_fail(rc, "sub create %s", name);
    print_info(&info);
    return EVS_CLI_OK;
}

int evs__cli_sub(int argc, char **argv) {
    bus_args o;
    evs_store *s = NULL;
    evs_bus *b = NULL;
    int none = 0, code, rc = EVS_OK;
    if (begin("sub", sub_help, argc, argv, &o, &code)) return code;
    static const bus_action acts[] = {
        {"list", 0, {NULL}, 0, 0},           {"show", 1, {"NAME"}, 0, 0},
        {"create", 1, {"NAME"}, 0, 1},       {"pause", 1, {"NAME"}, 0, 0},
        {"resume", 1, {"NAME"}, 0, 0},       {"reset", 2, {"NAME", "POSITION"}, 0, 0},
        {"delete", 1, {"NAME"}, 0, 0},       {NULL, 0, {NULL}, 0, 0}};
    const bus_action *x;
    if ((code = check_action(&o, acts, &x))) goto out;
    const char *act = x->name;
    uint64_t pos = 0;
    if (strcmp(act, "reset") == 0 && (code = parse_pos("sub", o.pos[2], &pos))) goto out;
    if (o.url) {
        code = evs__cli_sub_remote(o.url, act, o.npos > 1 ? o.pos[1] : NULL, o.npos > 2 ? o.pos[2] : NULL,
                                   strcmp(act, "create") == 0 ? create_settings(&o) : NULL);
        goto out;
    }
    int readonly = strcmp(act, "list") == 0 || strcmp(act, "show") == 0;
    if ((code = open_bus(o.dir, readonly, &s, &b, &none))) goto out;
    evs__cli_clear_error();
    if (strcmp(act, "list") == 0) {
        evs_consumer_info page[32];
        char after[EVS_BUS_MAX_NAME + 1] = "";
        size_t n = 0;
        do {
            if (none || (rc = evs_consumer_list(b, after[0] ? after : NULL, page, 32, &n))) break;
            for (size_t i = 0; i < n; i++) print_info(&page[i]);
            if (n) snprintf(after, sizeof after, "%s", page[n - 1].name);
        } while (n == 32);
    } else if (strcmp(act, "show") == 0) {
        evs_consumer_info i;
        if (!(code = check_kind(b, "sub show", o.pos[1], NULL, &i))) print_info(&i);
    } else if (strcmp(act, "create") == 0) {
        code = sub_create_local(&o, b, o.pos[1]);
    } else if (strcmp(act, "pause") == 0 || strcmp(act, "resume") == 0) {
        rc = evs_consumer_set_status(b, o.pos[1], act[0] == 'p' ? EVS_CONSUMER_PAUSED : EVS_CONSUMER_ACTIVE);
        if (!rc) rc = print_consumer(b, o.pos[1]);
    } else if (strcmp(act, "reset") == 0) {
        if (!(rc = evs_consumer_set_position(b, o.pos[1], pos))) rc = print_consumer(b, o.pos[1]);
    } else {
        evs_consumer_info i;
        if (!(rc = evs_consumer_get(b, o.pos[1], &i)) && !(rc = evs_consumer_delete(b, o.pos[1])))
            print_deleted(o.pos[1], i.kind);
    }
    if (rc) code = evs__cli_lib_fail(rc, "sub %s", act);
out:
    return finish(&o, s, b, code);
}

/* ------------------------------------------------------------------- dlq */

static const char dlq_help[] =
    "Usage: evstore dlq ACTION NAME [POSITION] -d DIR|--url URL [--after POS] [--limit N]\n"
    "\n"
    "The dead-letter queue of a subscription, projection or group: the events it\n"
    "parked, named by their global position.\n"
    "\n"
    "Actions:\n"
    "  list NAME            the entries in position order (--after POS, --limit N:\n"
    "                       at most N, 1..100000, default 100)\n"
    "  show NAME POSITION   one entry\n"
    "  retry NAME [POS]     deliver parked events again, in their original order;\n"
    "                       locally for stored Lua projections (other consumers retry\n"
    "                       through the library), with --url for every consumer the\n"
    "                       server knows (groups hand the event out again)\n"
    "  discard NAME POSITION   drop one entry\n"
    "  purge NAME           drop every entry\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR        the store directory (default: $EVSTORE_DIR); list and show\n"
    "                       also work while a server holds the store\n"
    "  --url URL            through a running `evstore serve` (default: $EVSTORE_URL)\n"
    "  --after POS, --limit N   paging of list\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 ok, 1 usage, 2 no such consumer or entry, 3 the entry waits\n"
    "behind another one or the consumer cannot retry here, 5 I/O error, the store is\n"
    "held by another process (use --url), or the server is unreachable.\n";

int evs__cli_dlq(int argc, char **argv) {
    bus_args o;
    evs_store *s = NULL;
    evs_bus *b = NULL;
    int none = 0, code, rc = EVS_OK;
    if (begin("dlq", dlq_help, argc, argv, &o, &code)) return code;
    static const bus_action acts[] = {
        {"list", 1, {"NAME"}, BUS_AFTER | BUS_LIMIT, 0}, {"show", 2, {"NAME", "POSITION"}, 0, 0},
        {"discard", 2, {"NAME", "POSITION"}, 0, 0},     {"purge", 1, {"NAME"}, 0, 0},
        {"retry", 1, {"NAME", "POSITION"}, 0, 0},       {NULL, 0, {NULL}, 0, 0}};
    const bus_action *x;
    if ((code = check_action(&o, acts, &x))) goto out;
    const char *act = x->name, *name = o.pos[1];
    uint64_t pos = 0;
    if (o.npos > 2 && (code = parse_pos("dlq", o.pos[2], &pos))) goto out;
    if (o.url) {
        code = evs__cli_dlq_remote(o.url, act, name, pos, o.after, o.limit);
        goto out;
    }
    int readonly = strcmp(act, "list") == 0 || strcmp(act, "show") == 0;
    if ((code = open_bus(o.dir, readonly, &s, &b, &none))) goto out;
    evs__cli_clear_error();
    /* an unknown name is not an empty queue: 2, as over --url */
    char what[160];
    evs_consumer_info info;
    snprintf(what, sizeof what, "dlq %s", act);
    if ((code = check_kind(b, what, name, NULL, &info))) goto out;
    if (strcmp(act, "list") == 0) {
        evs_dlq_entry page[64];
        uint64_t after = o.after, left = o.limit;
        size_t n;
        do {
            if ((rc = evs_dlq_list(b, name, after, page, left < 64 ? (size_t)left : 64, &n))) break;
            for (size_t i = 0; i < n; i++) print_entry(&page[i]);
            if (n) after = page[n - 1].position;
            left -= n;
        } while (n && left);
    } else if (strcmp(act, "show") == 0) {
        evs_dlq_entry e;
        if (!(rc = evs_dlq_get(b, name, pos, &e))) print_entry(&e);
    } else if (strcmp(act, "discard") == 0) {
        if (!(rc = evs_dlq_discard(b, name, pos))) printf("{\"discarded\":%llu}\n", (unsigned long long)pos);
    } else if (strcmp(act, "purge") == 0) {
        uint64_t removed;
        if (!(rc = evs_dlq_purge(b, name, &removed))) printf("{\"purged\":%llu}\n", (unsigned long long)removed);
    } else if (strcmp(info.kind, "projection") != 0) {
        /* "cannot retry here" (3) as the help says: the record's kind decides, not an error code */
        code = evs__cli_fail(EVS_CLI_CONFLICT, "dlq retry %s: \"%s\" is a %s, not a Lua projection; locally only "
                                               "stored Lua projections retry, through a server (--url) every "
                                               "consumer does", name, name, info.kind);
    } else {
        evs_projection *p;
        rc = evs_proj_open_stored(b, name, NULL, &p);
        if (!rc) {
            size_t ok = 0, bad = 0;
            if (pos) {
                rc = evs_proj_dlq_retry(p, pos);
                ok = rc == EVS_OK;
                bad = rc == EVS_EFAILED || rc == EVS_ECONFLICT;
            } else {
                rc = evs_proj_dlq_retry_all(p, &ok, &bad);
            }
            evs_proj_close(p);
            if (rc == EVS_OK || rc == EVS_EFAILED || rc == EVS_ECONFLICT) {
                printf("{\"released\":%zu,\"still_parked\":%zu}\n", ok, bad);
                if (rc == EVS_EFAILED || rc == EVS_ECONFLICT) fprintf(stderr, "evstore: dlq retry: %s\n", evs_errmsg());
                rc = EVS_OK;
            }
        }
    }
    if (rc) code = evs__cli_lib_fail(rc, "dlq %s %s", act, name);
out:
    return finish(&o, s, b, code);
}

/* ------------------------------------------------------------ projection */

static const char proj_help[] =
    "Usage: evstore projection ACTION NAME [ARG] -d DIR|--url URL [options]\n"
    "\n"
    "Lua projections (read models; see docs/http-api.md for the script's shape).\n"
    "\n"
    "Actions:\n"
    "  create NAME FILE.lua   store the script (checked first: one that does not load\n"
    "                       changes nothing); replaces an existing one, keeping its\n"
    "                       state and checkpoint with --url (locally they start over)\n"
    "  run NAME [--follow]  apply new events here (--follow: until interrupted);\n"
    "                       local only: a server runs every stored projection itself\n"
    "  status NAME          its record, plus running/generation/rebuild with --url\n"
    "  state NAME [PARTITION] [--as-of P|T]   the committed state (of one partition);\n"
    "                       --as-of: replayed into a temporary state up to global\n"
    "                       position P, head, or RFC 3339 time T (the live one untouched)\n"
    "  what-if NAME [--spec JSON|@FILE] [--as-of P|T]   replay with events left out\n"
    "                       or added: {as_of, exclude: {positions, types, streams},\n"
    "                       insert: [{after, stream, event_type, data}], source,\n"
    "                       partition}\n"
    "  compare NAME A B     the JSON diff (RFC 6902, with old values) from A to B; each\n"
    "                       a position, head, an RFC 3339 time, live, or a what-if JSON\n"
    "  partitions NAME      partition names (--after P, --limit N: 1..100000, default 100)\n"
    "  rebuild NAME         replay from the start into a fresh copy, with progress on\n"
    "                       stderr, then swap it in\n"
    "  delete NAME          the projection, its state and its DLQ\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR        the store directory (default: $EVSTORE_DIR); status, state\n"
    "                       and partitions also work while a server holds the store\n"
    "  --url URL            through a running `evstore serve` (default: $EVSTORE_URL)\n"
    "  -f, --follow         run: keep applying new events until SIGINT/SIGTERM\n"
    "  --as-of P|T          state, what-if: the point (position, head or RFC 3339 time)\n"
    "  --spec JSON|@FILE    what-if: the request (as POST /projections/NAME/what-if)\n"
    "  --after P, --limit N   paging of partitions\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 ok, 1 usage, 2 no such projection, partition or FILE, 3 the name\n"
    "is taken by another kind, 4 the script does not load, 5 I/O error, the store is\n"
    "held by another process (use --url), or the server is unreachable.\n";

static volatile sig_atomic_t proj_stop;
static void on_sigint(int sig) {
    (void)sig;
    proj_stop = 1;
}

int evs__cli_projection(int argc, char **argv) {
    bus_args o;
    evs_store *s = NULL;
    evs_bus *b = NULL;
    evs_projection *p = NULL;
    char *src = NULL;
    int none = 0, code, rc = EVS_OK;
    if (begin("projection", proj_help, argc, argv, &o, &code)) return code;
    static const bus_action acts[] = {
        {"create", 2, {"NAME", "FILE.lua"}, 0, 0},
        {"run", 1, {"NAME"}, BUS_FOLLOW, 0},
        {"status", 1, {"NAME"}, 0, 0},
        {"state", 1, {"NAME", "PARTITION"}, BUS_AS_OF, 0},
        {"what-if", 1, {"NAME"}, BUS_AS_OF | BUS_SPEC, 0},
        {"compare", 3, {"NAME", "A", "B"}, 0, 0},
        {"partitions", 1, {"NAME"}, BUS_AFTER | BUS_LIMIT, 0},
        {"rebuild", 1, {"NAME"}, 0, 0},
        {"delete", 1, {"NAME"}, 0, 0},
        {NULL, 0, {NULL}, 0, 0}};
    const bus_action *x;
    if ((code = check_action(&o, acts, &x))) goto out;
    const char *act = x->name, *name = o.pos[1];
    size_t srclen = 0;
    if (strcmp(act, "create") == 0) {
        if (!(src = evs__cli_read_file(o.pos[2], 16u << 20, &srclen))) {
            code = evs__cli_fail(EVS_CLI_NOTFOUND, "projection create: cannot read %s (missing or over 16 MiB)",
                                 o.pos[2]);
            goto out;
        }
    }
    int replay = strcmp(act, "what-if") == 0 || strcmp(act, "compare") == 0 || (strcmp(act, "state") == 0 && o.as_of);
    if (replay) {
        code = evs__cli_projection_replay(o.dir, o.url, act, name, o.npos > 2 ? o.pos[2] : NULL,
                                          o.npos > 3 ? o.pos[3] : NULL, o.as_of, o.spec);
        goto out;
    }
    if (o.url) {
        code = evs__cli_projection_remote(o.url, act, name, o.npos > 2 ? o.pos[2] : NULL, src, srclen, o.limit);
        goto out;
    }
    int readonly = strcmp(act, "status") == 0 || strcmp(act, "state") == 0 || strcmp(act, "partitions") == 0;
    if ((code = open_bus(o.dir, readonly, &s, &b, &none))) goto out;
    evs__cli_clear_error();
    if (strcmp(act, "create") != 0 && (code = check_kind(b, "projection", name, "projection", NULL))) goto out;
    if (strcmp(act, "create") == 0) {
        evs_consumer_info i;
        int exists = evs_consumer_get(b, name, &i) == EVS_OK;
        if (exists && strcmp(i.kind, "projection") != 0) {
            code = evs__cli_fail(EVS_CLI_CONFLICT, "projection create %s: \"%s\" is a %s; a projection needs another "
                                                   "name", name, name, i.kind);
            goto out;
        }
        /* a script that does not load is refused before the delete: the old state, checkpoint and DLQ stay */
        if ((rc = evs_proj_check_lua(name, src, srclen, NULL))) goto done;
        if (exists && (rc = evs_consumer_delete(b, name))) goto done;
        if (!(rc = evs_proj_open_lua(b, name, src, srclen, NULL, NULL, &p))) rc = print_consumer(b, name);
    } else if (strcmp(act, "run") == 0 || strcmp(act, "rebuild") == 0) {
        if ((rc = evs_proj_open_stored(b, name, NULL, &p))) goto done;
        int rebuild = act[1] == 'e';
        if (rebuild && (rc = evs_proj_rebuild(p, 0))) goto done;
        signal(SIGINT, on_sigint);
        signal(SIGTERM, on_sigint);
        size_t total = 0;
        for (;;) {
            size_t n;
            if ((rc = evs_proj_poll(p, o.follow ? 500 : 0, 10000, &n))) break;
            total += n;
            evs_proj_status st;
            if (rebuild && !evs_proj_get_status(p, &st) && st.rebuilding) {
                int w = (int)(st.rebuild_percent / 2.5);
                fprintf(stderr, "\rrebuild [%-40.*s] %5.1f%% %.0f events/s", w,
                        "########################################", st.rebuild_percent, st.events_per_second);
            }
            if (proj_stop || (!o.follow && n == 0)) break;
        }
        if (rebuild) fputc('\n', stderr);
        if (!rc) {
            fputs("{\"name\":", stdout);
            evs__cli_json_str(stdout, name, strlen(name));
            printf(",\"applied\":%zu}\n", total);
        }
    } else if (strcmp(act, "status") == 0) {
        evs_consumer_info i;
        if (!(rc = evs_consumer_get(b, name, &i))) print_info(&i);
    } else if (strcmp(act, "state") == 0) {
        char *js = NULL;
        if (!(rc = evs_proj_get_state(b, name, o.npos > 2 ? o.pos[2] : NULL, &js, NULL))) printf("%s\n", js);
        free(js);
    } else if (strcmp(act, "partitions") == 0) {
        evs_partition_name page[64];
        char after[EVS_MAX_STREAM_NAME + 1] = "";
        uint64_t left = o.limit;
        size_t n;
        do {
            if ((rc = evs_proj_list_partitions(b, name, after[0] ? after : NULL, page, left < 64 ? (size_t)left : 64, &n)))
                break;
            for (size_t i = 0; i < n; i++) {
                evs__cli_json_str(stdout, page[i].name, strlen(page[i].name));
                fputc('\n', stdout);
            }
            if (n) snprintf(after, sizeof after, "%s", page[n - 1].name);
            left -= n;
        } while (n && left);
    } else {
        if (!(rc = evs_consumer_delete(b, name))) print_deleted(name, "projection");
    }
done:
    if (rc) code = evs__cli_lib_fail(rc, "projection %s %s", act, name);
out:
    evs_proj_close(p);
    free(src);
    return finish(&o, s, b, code);
}

/* ------------------------------------------------------------------ group */

static const char group_help[] =
    "Usage: evstore group ACTION [NAME] -d DIR|--url URL [options]\n"
    "\n"
    "Competing-consumer groups: each event of $all (filtered) goes to one of the\n"
    "group's consumers at a time; consumers connect to a server (POST\n"
    "/groups/NAME/next or WebSocket, docs/http-api.md).\n"
    "\n"
    "Actions:\n"
    "  create NAME          create the group, or change its settings (checkpoint,\n"
    "                       counters and DLQ kept; connected consumers are released)\n"
    "  show NAME            its record and settings (with --url also in_flight and\n"
    "                       the connected consumers)\n"
    "  list                 every group (--limit N: at most N)\n"
    "  consumers NAME       its connected consumers, one JSON line each; they connect\n"
    "                       to a server, so locally (no server holds the store) none\n"
    "  delete NAME          the group and its DLQ\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR        the store directory (default: $EVSTORE_DIR); show and list\n"
    "                       also work while a server holds the store\n"
    "  --url URL            through a running `evstore serve` (default: $EVSTORE_URL)\n"
    "Settings of create (or all of them as --settings, the JSON of PUT /groups/N):\n"
    "  --settings JSON|@FILE   e.g. '{\"retry\":{\"max_retries\":5},\"per_stream_order\":true}';\n"
    "                       flags win over it\n"
    "  --from start|now|N   where a new group starts (default: start)\n"
    "  --strategy round_robin|pinned\n"
    "  --ack-timeout-ms N   redeliver an unacked delivery after N ms (default 30000)\n"
    "  --max-in-flight N    unacked deliveries per consumer (1..1000, default 10)\n"
    "  --on-failure park|stop\n"
    "  --type T1,T2         event types; --stream-type C; --stream-prefix P;\n"
    "  --correlation UUID   the filter; --tag T: only events carrying tag T\n"
    "  --owner O            informational\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 ok, 1 usage, 2 no such group, 3 the name is taken by another kind,\n"
    "4 invalid settings, 5 I/O error, the store is held by another process (use\n"
    "--url), or the server is unreachable.\n";

/* group create NAME on a local store: create, or replace the settings.  Exit code. */
static int group_create_local(bus_args *o, evs_bus *b, const char *name) {
    evs__group_settings_in g;
    evs__settings_err e;
    if (evs__group_settings_parse(create_settings(o), name, &g, &e))
        return evs__cli_fail(EVS_CLI_INVALID, "group create %s: %s", name, e.why);
    evs_consumer_info info;
    int rc = evs_consumer_get(b, name, &info);
    if (rc == EVS_OK && strcmp(info.kind, "group") != 0)
        return evs__cli_fail(EVS_CLI_CONFLICT, "group create %s: \"%s\" is a %s; a group needs another name", name, name,
                             info.kind);
    if (rc && rc != EVS_ENOTFOUND) return evs__cli_lib_fail(rc, "group create %s", name);
    rc = rc == EVS_OK ? evs_group_update(b, &g.c) : evs_group_create(b, &g.c);
    if (rc) return evs__cli_lib_fail(rc, "group create %s", name);
    evs_group_info gi;
    if ((rc = evs_group_get(b, name, &gi))) return evs__cli_lib_fail(rc, "group create %s", name);
    print_group(&gi);
    return EVS_CLI_OK;
}

int evs__cli_group(int argc, char **argv) {
    bus_args o;
    evs_store *s = NULL;
    evs_bus *b = NULL;
    int none = 0, code, rc = EVS_OK;
    if (begin("group", group_help, argc, argv, &o, &code)) return code;
    static const bus_action acts[] = {
        {"create", 1, {"NAME"}, 0, 1},   {"show", 1, {"NAME"}, 0, 0},    {"list", 0, {NULL}, BUS_LIMIT, 0},
        {"delete", 1, {"NAME"}, 0, 0},   {"consumers", 1, {"NAME"}, 0, 0}, {NULL, 0, {NULL}, 0, 0}};
    const bus_action *x;
    if ((code = check_action(&o, acts, &x))) goto out;
    const char *act = x->name, *name = o.npos > 1 ? o.pos[1] : NULL;
    if (o.url) {
        code = evs__cli_group_remote(o.url, act, name, strcmp(act, "create") == 0 ? create_settings(&o) : NULL,
                                     o.have_limit ? o.limit : UINT64_MAX);
        goto out;
    }
    /* consumers connect to the process that holds the store: `consumers` takes
       the lock, so a server holding it is named (and --url suggested) */
    int readonly = strcmp(act, "show") == 0 || strcmp(act, "list") == 0;
    if ((code = open_bus(o.dir, readonly, &s, &b, &none))) goto out;
    evs__cli_clear_error();
    if (strcmp(act, "list") == 0) {
        evs_consumer_info page[32];
        char after[EVS_BUS_MAX_NAME + 1] = "";
        uint64_t left = o.have_limit ? o.limit : UINT64_MAX;
        size_t n = 0;
        do {
            if (none || (rc = evs_consumer_list(b, after[0] ? after : NULL, page, 32, &n))) break;
            for (size_t i = 0; i < n && left; i++) {
                evs_group_info gi;
                if (strcmp(page[i].kind, "group") != 0) continue;
                if ((rc = evs_group_get(b, page[i].name, &gi))) break;
                print_group(&gi);
                left--;
            }
            if (n) snprintf(after, sizeof after, "%s", page[n - 1].name);
        } while (!rc && n == 32 && left);
    } else if (strcmp(act, "create") == 0) {
        code = group_create_local(&o, b, name);
    } else if ((code = check_kind(b, "group", name, "group", NULL))) {
        /* said */
    } else if (strcmp(act, "show") == 0) {
        evs_group_info gi;
        if (!(rc = evs_group_get(b, name, &gi))) print_group(&gi);
    } else if (strcmp(act, "consumers") == 0) {
        /* nothing: no server holds the store (we do), so no consumer is connected */
    } else {
        if (!(rc = evs_consumer_delete(b, name))) print_deleted(name, "group");
    }
    if (rc) code = evs__cli_lib_fail(rc, "group %s", act);
out:
    return finish(&o, s, b, code);
}

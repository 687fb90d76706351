/*
 * cli_bus.c — `evstore sub|dlq|projection ...`: consumers of a local store
 * (see include/evstore_bus.h).  Every command opens the store for writing
 * (consumer state lives in DIR/consumers/) and prints JSON on stdout.
 * With --url the same actions go to a running server (cli_bus_remote.c).
 *
 *   evstore sub list | show NAME | pause NAME | resume NAME | reset NAME POS | delete NAME
 *   evstore dlq list NAME [--after POS] [--limit N] | show NAME POS | discard NAME POS
 *               | purge NAME | retry NAME [POS]      (retry: stored Lua projections)
 *   evstore projection create NAME FILE.lua | run NAME [--follow] | status NAME
 *               | state NAME [PARTITION] | partitions NAME [--after P] [--limit N]
 *               | rebuild NAME | delete NAME
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_bus.h"
#include "evstore_bus.h"

typedef struct bus_args {
    const char *pos[4];
    int npos;
    const char *dir, *url;
    uint64_t after, limit;
    int follow;
    int help;
} bus_args;

static int parse(const char *cmd, int argc, char **argv, bus_args *o) {
    evs__cli_args a;
    const char *opt_dir = NULL, *opt_url = NULL, *v;
    int t, code;
    memset(o, 0, sizeof *o);
    o->limit = 100;
    evs__cli_args_init(&a, cmd, argc, argv);
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (o->npos == 4) return evs__cli_usage(cmd, "unexpected argument \"%s\"", a.arg);
            o->pos[o->npos++] = a.arg;
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
        } else if (evs__cli_is(&a, "--limit", "-n")) {
            if ((code = evs__cli_value(&a, &v)) || (code = evs__cli_u64(&a, "--limit", v, 100000, &o->limit)))
                return code;
        } else if (evs__cli_is(&a, "--follow", "-f")) {
            if ((code = evs__cli_flag(&a))) return code;
            o->follow = 1;
        } else {
            return evs__cli_unknown(&a);
        }
    }
    return evs__cli_target(&a, opt_dir, opt_url, &o->dir, &o->url);
}

static int open_bus(const char *dir, evs_store **s, evs_bus **b) {
    int code = evs__cli_open(dir, 0, s);
    if (code) return code;
    evs__cli_clear_error();
    int rc = evs_bus_open(*s, b);
    if (rc) {
        code = evs__cli_close(*s, dir, evs__cli_lib_fail(rc, "open consumers of %s", dir));
        *s = NULL;
        return code;
    }
    return EVS_CLI_OK;
}

static void print_info(const evs_consumer_info *i) {
    printf("{\"name\":");
    evs__cli_json_str(stdout, i->name, strlen(i->name));
    printf(",\"kind\":\"%s\",\"owner\":", i->kind);
    evs__cli_json_str(stdout, i->owner, strlen(i->owner));
    printf(",\"stream\":");
    if (i->stream[0]) evs__cli_json_str(stdout, i->stream, strlen(i->stream));
    else fputs("\"$all\"", stdout);
    printf(",\"filter\":%s,\"checkpoint\":%llu,\"status\":\"%s\",\"retry_count\":%llu,\"max_retries\":%u,"
           "\"last_error\":",
           i->filter_json, (unsigned long long)i->checkpoint, evs_consumer_status_name(i->status),
           (unsigned long long)i->retry_count, i->max_retries);
    if (i->last_error[0]) evs__cli_json_str(stdout, i->last_error, strlen(i->last_error));
    else fputs("null", stdout);
    printf(",\"last_processed_at\":");
    evs__cli_json_time(stdout, i->last_processed_at);
    printf(",\"processed\":%llu,\"failed\":%llu,\"parked\":%llu,\"dlq_depth\":%llu,\"lag_events\":%llu,"
           "\"lag_ms\":%lld}\n",
           (unsigned long long)i->processed, (unsigned long long)i->failed, (unsigned long long)i->parked,
           (unsigned long long)i->dlq_depth, (unsigned long long)i->lag_events, (long long)i->lag_ms);
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

static int one_of(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return 1;
    return 0;
}

static int need(const char *cmd, const bus_args *o, int n, const char *what) {
    if (o->npos < n) return evs__cli_usage(cmd, "missing %s", what);
    return EVS_CLI_OK;
}

static int parse_pos(const char *cmd, const char *text, uint64_t *out) {
    evs__cli_args a;
    evs__cli_args_init(&a, cmd, 0, NULL);
    return evs__cli_u64(&a, "POSITION", text, UINT64_MAX, out);
}

static const char sub_help[] =
    "Usage: evstore sub list|show NAME|pause NAME|resume NAME|reset NAME POSITION|delete NAME\n"
    "                   [-d DIR | --url URL]\n"
    "\n"
    "Durable subscriptions, groups and projections: their records (checkpoint,\n"
    "status, retries, last error, lag), pause/resume, moving the checkpoint, deletion.\n"
    "reset NAME POSITION continues at POSITION; a projection in the middle of a\n"
    "rebuild restarts the rebuild from there (its DLQ is replaced from there at the swap).\n"
    "On a local store (-d) the consumer must not be running in another process;\n"
    "with --url URL (or EVSTORE_URL) the running server does it and its JSON is printed.\n";

int evs__cli_sub(int argc, char **argv) {
    bus_args o;
    evs_store *s = NULL;
    evs_bus *b = NULL;
    int code = parse("sub", argc, argv, &o), rc = EVS_OK;
    if (code || o.help) {
        if (o.help) fputs(sub_help, stdout);
        return code ? code : evs__cli_finish_output(EVS_CLI_OK);
    }
    if ((code = need("sub", &o, 1, "action (list, show, pause, resume, reset, delete)"))) return code;
    const char *act = o.pos[0];
    if (strcmp(act, "list") && (code = need("sub", &o, 2, "NAME"))) return code;
    if (o.url) {
        static const char *const acts[] = {"list", "show", "pause", "resume", "reset", "delete", NULL};
        uint64_t pos;
        if (!one_of(act, acts)) return evs__cli_usage("sub", "unknown action \"%s\"", act);
        if (strcmp(act, "reset") == 0 &&
            ((code = need("sub", &o, 3, "POSITION")) || (code = parse_pos("sub", o.pos[2], &pos))))
            return code;
        code = evs__cli_sub_remote(o.url, act, o.npos > 1 ? o.pos[1] : NULL, o.npos > 2 ? o.pos[2] : NULL);
        return code ? code : evs__cli_finish_output(EVS_CLI_OK);
    }
    if ((code = open_bus(o.dir, &s, &b))) return code;
    evs__cli_clear_error();
    if (strcmp(act, "list") == 0) {
        evs_consumer_info page[32];
        char after[EVS_BUS_MAX_NAME + 1] = "";
        size_t n;
        do {
            if ((rc = evs_consumer_list(b, after[0] ? after : NULL, page, 32, &n))) break;
            for (size_t i = 0; i < n; i++) print_info(&page[i]);
            if (n) snprintf(after, sizeof after, "%s", page[n - 1].name);
        } while (n == 32);
    } else if (strcmp(act, "show") == 0) {
        evs_consumer_info i;
        if (!(rc = evs_consumer_get(b, o.pos[1], &i))) print_info(&i);
    } else if (strcmp(act, "pause") == 0 || strcmp(act, "resume") == 0) {
        rc = evs_consumer_set_status(b, o.pos[1], act[0] == 'p' ? EVS_CONSUMER_PAUSED : EVS_CONSUMER_ACTIVE);
        if (!rc) printf("{\"name\":\"%s\",\"status\":\"%s\"}\n", o.pos[1], act[0] == 'p' ? "paused" : "active");
    } else if (strcmp(act, "reset") == 0) {
        uint64_t pos;
        if ((code = need("sub", &o, 3, "POSITION")) || (code = parse_pos("sub", o.pos[2], &pos))) goto out;
        if (!(rc = evs_consumer_set_position(b, o.pos[1], pos)))
            printf("{\"name\":\"%s\",\"next\":%llu}\n", o.pos[1], (unsigned long long)pos);
    } else if (strcmp(act, "delete") == 0) {
        if (!(rc = evs_consumer_delete(b, o.pos[1]))) printf("{\"deleted\":\"%s\"}\n", o.pos[1]);
    } else {
        code = evs__cli_usage("sub", "unknown action \"%s\"", act);
        goto out;
    }
    if (rc) code = evs__cli_lib_fail(rc, "sub %s", act);
out:
    evs_bus_close(b);
    code = evs__cli_close(s, o.dir, code);
    return code ? code : evs__cli_finish_output(EVS_CLI_OK);
}

static const char dlq_help[] =
    "Usage: evstore dlq list NAME [--after POS] [--limit N] | show NAME POS | discard NAME POS\n"
    "                   | purge NAME | retry NAME [POS]  [-d DIR | --url URL]\n"
    "\n"
    "The dead-letter queue of a subscription or projection.  retry delivers parked\n"
    "events again, in their original order; from the command line it works for\n"
    "stored Lua projections (other consumers retry through the library), and with\n"
    "--url for every consumer the server knows (groups hand the event out again).\n";

int evs__cli_dlq(int argc, char **argv) {
    bus_args o;
    evs_store *s = NULL;
    evs_bus *b = NULL;
    int code = parse("dlq", argc, argv, &o), rc = EVS_OK;
    if (code || o.help) {
        if (o.help) fputs(dlq_help, stdout);
        return code ? code : evs__cli_finish_output(EVS_CLI_OK);
    }
    if ((code = need("dlq", &o, 2, "action and NAME"))) return code;
    const char *act = o.pos[0], *name = o.pos[1];
    uint64_t pos = 0;
    if ((strcmp(act, "show") == 0 || strcmp(act, "discard") == 0) &&
        ((code = need("dlq", &o, 3, "POSITION")) || (code = parse_pos("dlq", o.pos[2], &pos))))
        return code;
    if (strcmp(act, "retry") == 0 && o.npos > 2 && (code = parse_pos("dlq", o.pos[2], &pos))) return code;
    if (o.url) {
        static const char *const acts[] = {"list", "show", "discard", "purge", "retry", NULL};
        if (!one_of(act, acts)) return evs__cli_usage("dlq", "unknown action \"%s\"", act);
        code = evs__cli_dlq_remote(o.url, act, name, pos, o.after, o.limit);
        return code ? code : evs__cli_finish_output(EVS_CLI_OK);
    }
    if ((code = open_bus(o.dir, &s, &b))) return code;
    evs__cli_clear_error();
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
    } else if (strcmp(act, "retry") == 0) {
        evs_projection *p;
        if (!(rc = evs_proj_open_stored(b, name, NULL, &p))) {
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
    } else {
        code = evs__cli_usage("dlq", "unknown action \"%s\"", act);
        goto out;
    }
    if (rc) code = evs__cli_lib_fail(rc, "dlq %s %s", act, name);
out:
    evs_bus_close(b);
    code = evs__cli_close(s, o.dir, code);
    return code ? code : evs__cli_finish_output(EVS_CLI_OK);
}

static const char proj_help[] =
    "Usage: evstore projection create NAME FILE.lua | run NAME [--follow] | status NAME\n"
    "                          | state NAME [PARTITION] | partitions NAME [--after P] [--limit N]\n"
    "                          | rebuild NAME | delete NAME  [-d DIR | --url URL]\n"
    "\n"
    "Lua projections of a local store.  create stores the script (and checks it);\n"
    "run applies new events (with --follow: until interrupted); rebuild replays\n"
    "from the beginning into a fresh copy, showing progress, then swaps it in.\n"
    "With --url URL (or EVSTORE_URL) the running server does it (it runs every stored\n"
    "projection itself, so `run` is local only).\n";

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
    int code = parse("projection", argc, argv, &o), rc = EVS_OK;
    if (code || o.help) {
        if (o.help) fputs(proj_help, stdout);
        return code ? code : evs__cli_finish_output(EVS_CLI_OK);
    }
    if ((code = need("projection", &o, 2, "action and NAME"))) return code;
    const char *act = o.pos[0], *name = o.pos[1];
    size_t srclen = 0;
    if (strcmp(act, "create") == 0) {
        if ((code = need("projection", &o, 3, "FILE.lua"))) return code;
        if (!(src = evs__cli_read_file(o.pos[2], 16u << 20, &srclen)))
            return evs__cli_fail(EVS_CLI_NOTFOUND, "projection create: cannot read %s (missing or over 16 MiB)", o.pos[2]);
    }
    if (o.url) {
        static const char *const acts[] = {"create", "run", "status", "state", "partitions", "rebuild", "delete", NULL};
        if (!one_of(act, acts)) {
            free(src);
            return evs__cli_usage("projection", "unknown action \"%s\"", act);
        }
        code = evs__cli_projection_remote(o.url, act, name, o.npos > 2 ? o.pos[2] : NULL, src, srclen, o.limit);
        free(src);
        return code ? code : evs__cli_finish_output(EVS_CLI_OK);
    }
    if ((code = open_bus(o.dir, &s, &b))) {
        free(src);
        return code;
    }
    evs__cli_clear_error();
    if (strcmp(act, "create") == 0) {
        evs_consumer_info i;
        int exists = evs_consumer_get(b, name, &i) == EVS_OK;
        if (exists && (rc = evs_consumer_delete(b, name))) goto done;
        if (!(rc = evs_proj_open_lua(b, name, src, srclen, NULL, NULL, &p)))
            printf("{\"created\":\"%s\",\"replaced\":%s}\n", name, exists ? "true" : "false");
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
        if (!rc) printf("{\"name\":\"%s\",\"applied\":%zu}\n", name, total);
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
    } else if (strcmp(act, "delete") == 0) {
        if (!(rc = evs_consumer_delete(b, name))) printf("{\"deleted\":\"%s\"}\n", name);
    } else {
        code = evs__cli_usage("projection", "unknown action \"%s\"", act);
        goto out;
    }
done:
    if (rc) code = evs__cli_lib_fail(rc, "projection %s %s", act, name);
out:
    evs_proj_close(p);
    evs_bus_close(b);
    code = evs__cli_close(s, o.dir, code);
    free(src);
    return code ? code : evs__cli_finish_output(EVS_CLI_OK);
}

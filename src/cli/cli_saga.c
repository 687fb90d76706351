/*
 * cli_saga.c — `evstore saga ...`: saga instances (include/evstore_saga.h)
 * from the command line, as JSON lines on stdout.  With --url the same
 * actions go to a running server (cli_saga_remote.c).
 *
 *   evstore saga list [TYPE] [--status S] [--stuck-for T] [--limit N] [--after CURSOR]
 *   evstore saga show TYPE ID
 *   evstore saga pause|resume|retry|compensate|abort TYPE ID [--reason TEXT]
 *   evstore saga skip TYPE ID [--step NAME] [--reason TEXT]
 *
 * list and show only look: they open the store and its saga index
 * read-only, so they work while a server holds the store (the index is
 * the server's, current within the dispatcher's lag).  The actions take
 * the store's lock, load the application a server would (--app-dir's
 * aggregates and sagas, the scripts kept in the store), record the action
 * and then do what is due at once, as the server's workers would (a retry
 * sends its step's commands now); when a server holds the store they say
 * which --url to use instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_saga.h"
#include "evstore_app.h"
#include "evstore_saga.h"

#define LOCAL_PAGE 256u

static const char saga_help[] =
    "Usage: evstore saga list [TYPE] [--status S] [--stuck-for T] [--limit N] [--after CURSOR]\n"
    "       evstore saga show TYPE ID\n"
    "       evstore saga pause|resume|retry|compensate|abort TYPE ID [--reason TEXT]\n"
    "       evstore saga skip TYPE ID [--step NAME] [--reason TEXT]\n"
    "                    [-d DIR [--app-dir APPDIR] | --url URL]\n"
    "\n"
    "Saga instances (the sagas of an app directory's sagas/, run by `evstore serve\n"
    "--app-dir`).  list prints one JSON line per instance, by type, status and the\n"
    "time of its last transition (oldest first): --status running, compensating,\n"
    "completed, compensated, failed, compensation_failed or paused; --stuck-for T\n"
    "only those whose last transition is older than T (90, 250ms, 30s, 5m, 2h, 1d;\n"
    "without --status: those not finished).  show prints one instance with its\n"
    "steps (attempts, errors) and its timeline; its events are the stream\n"
    "saga-TYPE-ID.\n"
    "\n"
    "Actions, each recorded in the saga's stream (with --reason), then the\n"
    "instance as it is after it:\n"
    "  pause        a running or compensating saga stops (its timers too)\n"
    "  resume       a paused saga carries on where it was\n"
    "  retry        the current step (or failed compensation) runs again now\n"
    "  skip         the current step (or --step NAME of its group) counts as done;\n"
    "               while compensating: the current compensations count as done\n"
    "  compensate   a running or paused saga undoes what it did, newest first\n"
    "  abort        a saga not finished stops as failed, nothing undone\n"
    "\n"
    "Options: -d DIR (default $EVSTORE_DIR), or --url URL of a running `evstore\n"
    "serve` ($EVSTORE_URL).  list and show work with -d while a server holds the\n"
    "store; the actions then go through the server with --url.  Locally, an action\n"
    "needs the saga's definition: --app-dir APPDIR with APPDIR/sagas/ (and the\n"
    "aggregates its steps command), and after it does what is due at once.\n"
    "\n"
    "Exit status: 0 ok, 1 usage, 2 no such saga (type or instance), 3 the action\n"
    "does not apply to the saga's state (a finished saga, a running one resumed),\n"
    "4 a bad argument, 5 I/O error, the store held by a server (use --url), or a\n"
    "server that cannot be reached.\n";

/* --------------------------------------------------------------- output */

static int print_info(const evs_saga_info *in) {
    char *js;
    int rc = evs_saga_info_to_json(in, &js, NULL);
    if (rc) return rc;
    printf("%s\n", js);
    free(js);
    return EVS_OK;
}

static int print_show(evs_saga_engine *e, const char *type, const char *id) {
    char *js;
    int rc = evs_saga_show_json(e, type, id, &js, NULL);
    if (rc) return rc;
    printf("%s\n", js);
    free(js);
    return EVS_OK;
}

/* ------------------------------------------------------------ looking */

/* list and show, on the index and streams as they are (read-only). */
static int local_look(const char *dir, const evs__cli_saga_args *q) {
    evs_store *s;
    int code = evs__cli_open(dir, EVS_OPEN_READONLY, &s);
    if (code) return code;
    evs__cli_clear_error();
    evs_saga_config c;
    evs_saga_config_init(&c);
    c.read_only = 1;
    evs_saga_engine *e = NULL;
    int rc = evs_saga_engine_open(s, NULL, &c, &e);
    int list = strcmp(q->act, "list") == 0;
    if (rc == EVS_ENOTFOUND) { /* no engine ever ran here: no sagas */
        code = list ? EVS_CLI_OK : evs__cli_fail(EVS_CLI_NOTFOUND, "no saga %s/%s (%s has no sagas)", q->type, q->id, dir);
        return evs__cli_close(s, dir, code);
    }
    if (!rc && list) {
        evs_saga_info *page = calloc(LOCAL_PAGE, sizeof *page);
        char cursor[EVS_SAGA_CURSOR_MAX] = "";
        if (q->after) snprintf(cursor, sizeof cursor, "%s", q->after);
        uint64_t left = q->limit ? q->limit : UINT64_MAX;
        if (!page) rc = evs__err(EVS_ENOMEM, "out of memory");
        while (!rc && left) {
            evs_saga_query sq = {q->type, q->status_code, q->stuck_ns, cursor, left < LOCAL_PAGE ? (size_t)left : LOCAL_PAGE};
            size_t n = 0;
            char next[EVS_SAGA_CURSOR_MAX];
            if ((rc = evs_saga_list(e, &sq, page, sq.limit, &n, next))) break;
            for (size_t i = 0; i < n && !rc; i++) rc = print_info(&page[i]);
            left -= n;
            if (!next[0]) break;
            memcpy(cursor, next, sizeof cursor);
        }
        free(page);
        if (rc == EVS_EINVAL && q->after) code = evs__cli_fail(EVS_CLI_INVALID, "saga list: --after %s is not a cursor of this listing", q->after);
        else if (rc) code = evs__cli_lib_fail(rc, "saga list");
    } else if (!rc) {
        if ((rc = print_show(e, q->type, q->id))) code = evs__cli_lib_fail(rc, "saga show");
    } else {
        code = evs__cli_lib_fail(rc, "sagas of %s", dir);
    }
    evs_saga_engine_close(e);
    return evs__cli_close(s, dir, code);
}

/* ------------------------------------------------------------- acting */

static int act(evs_saga_engine *e, const evs__cli_saga_args *q) {
    const char *a = q->act;
    if (strcmp(a, "pause") == 0) return evs_saga_pause(e, q->type, q->id, q->reason);
    if (strcmp(a, "resume") == 0) return evs_saga_resume(e, q->type, q->id);
    if (strcmp(a, "retry") == 0) return evs_saga_retry_now(e, q->type, q->id);
    if (strcmp(a, "skip") == 0) return evs_saga_skip(e, q->type, q->id, q->step, q->reason);
    if (strcmp(a, "compensate") == 0) return evs_saga_compensate(e, q->type, q->id, q->reason);
    return evs_saga_abort(e, q->type, q->id, q->reason);
}

/* An action on a store no server holds: the application as a server would load it, the action, what is due. */
static int local_act(const char *dir, const char *app_dir, const evs__cli_saga_args *q) {
    evs_store *s;
    int code = evs__cli_open(dir, 0, &s);
    if (code) return code;
    evs__cli_clear_error();
    evs_app *app = NULL;
    evs_saga_engine *e = NULL;
    char report[4096] = "";
    size_t ntypes = 0;
    int rc = evs_app_open(s, NULL, NULL, &app);
    if (rc) {
        code = evs__cli_lib_fail(rc, "open %s", dir);
        goto out;
    }
    if (app_dir && (rc = evs_app_load_dir(app, app_dir))) {
        code = evs__cli_lib_fail(rc, "--app-dir %s", app_dir);
        goto out;
    }
    if ((rc = evs_app_load_stored(app, report, sizeof report))) {
        code = evs__cli_lib_fail(rc, "aggregate scripts kept in %s", dir);
        goto out;
    }
    if ((rc = evs_saga_engine_open(s, app, NULL, &e))) {
        code = evs__cli_lib_fail(rc, "sagas of %s", dir);
        goto out;
    }
    if (app_dir && (rc = evs_saga_load_dir(e, app_dir, &ntypes))) {
        code = evs__cli_lib_fail(rc, "--app-dir %s", app_dir);
        goto out;
    }
    if ((rc = act(e, q))) {
        if (rc == EVS_ENOTFOUND && !ntypes)
            code = evs__cli_fail(EVS_CLI_NOTFOUND, "saga %s: %s (locally the sagas come from --app-dir APPDIR/sagas/)",
                                 q->act, evs_errmsg());
        else
            code = evs__cli_lib_fail(rc, "saga %s", q->act);
        goto out;
    }
    /* what the action lets happen now (a retry's commands, a compensation) happens here, as in a server */
    if ((rc = evs_saga_engine_run(e, NULL)) || (rc = print_show(e, q->type, q->id)))
        code = evs__cli_lib_fail(rc, "saga %s", q->act);
out:
    evs_saga_engine_close(e);
    evs_app_close(app);
    return evs__cli_close(s, dir, code);
}

/* -------------------------------------------------------------- parsing */

int evs__cli_saga(int argc, char **argv) {
    const char *pos[4] = {0};
    int npos = 0, t, code = EVS_CLI_OK;
    const char *opt_dir = NULL, *opt_url = NULL, *app_dir = NULL, *dir, *url, *v;
    evs__cli_saga_args q;
    memset(&q, 0, sizeof q);
    q.status_code = -1;
    evs__cli_args a;
    evs__cli_args_init(&a, "saga", argc, argv);
    while (!code && (t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (npos == 4) code = evs__cli_usage("saga", "unexpected argument \"%s\"", a.arg);
            else pos[npos++] = a.arg;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(saga_help, stdout);
            return evs__cli_finish_output(EVS_CLI_OK);
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            code = evs__cli_value(&a, &opt_dir);
        } else if (evs__cli_is(&a, "--url", NULL)) {
            code = evs__cli_value(&a, &opt_url);
        } else if (evs__cli_is(&a, "--app-dir", NULL)) {
            code = evs__cli_value(&a, &app_dir);
        } else if (evs__cli_is(&a, "--status", NULL)) {
            if (!(code = evs__cli_value(&a, &q.status)) && evs_saga_status_parse(q.status, &q.status_code))
                code = evs__cli_usage("saga", "--status %s: use running, compensating, completed, compensated, failed, "
                                              "compensation_failed or paused", q.status);
        } else if (evs__cli_is(&a, "--stuck-for", NULL)) {
            if (!(code = evs__cli_value(&a, &q.stuck_for)) &&
                (evs__parse_duration_ns(q.stuck_for, &q.stuck_ns) || q.stuck_ns <= 0))
                code = evs__cli_usage("saga", "--stuck-for %s: a duration such as 90, 250ms, 30s, 5m, 2h or 1d",
                                      q.stuck_for);
        } else if (evs__cli_is(&a, "--limit", "-n")) {
            if (!(code = evs__cli_value(&a, &v)) && !(code = evs__cli_u64(&a, "--limit", v, 1000000, &q.limit)) &&
                q.limit == 0)
                code = evs__cli_usage("saga", "--limit 0: at least 1 (leave it out for all)");
        } else if (evs__cli_is(&a, "--after", NULL)) {
            code = evs__cli_value(&a, &q.after);
        } else if (evs__cli_is(&a, "--reason", NULL)) {
            code = evs__cli_value(&a, &q.reason);
        } else if (evs__cli_is(&a, "--step", NULL)) {
            code = evs__cli_value(&a, &q.step);
        } else {
            code = evs__cli_unknown(&a);
        }
    }
    if (code) return code;
    static const char *const acts[] = {"list", "show", "pause", "resume", "retry", "skip", "compensate", "abort"};
    if (npos == 0)
        return evs__cli_usage("saga", "missing action (list, show, pause, resume, retry, skip, compensate, abort)");
    q.act = pos[0];
    size_t k = 0;
    while (k < sizeof acts / sizeof acts[0] && strcmp(acts[k], q.act)) k++;
    if (k == sizeof acts / sizeof acts[0]) return evs__cli_usage("saga", "unknown action \"%s\"", q.act);
    int list = k == 0, reasoned = k == 2 || k == 5 || k == 6 || k == 7;
    if (list) {
        if (npos > 2) return evs__cli_usage("saga", "list: unexpected argument \"%s\"", pos[2]);
        q.type = npos > 1 ? pos[1] : NULL;
    } else {
        if (npos < 3) return evs__cli_usage("saga", "%s: missing TYPE and ID", q.act);
        if (npos > 3) return evs__cli_usage("saga", "%s: unexpected argument \"%s\"", q.act, pos[3]);
        q.type = pos[1];
        q.id = pos[2];
    }
    if (!list && (q.status || q.stuck_for || q.limit || q.after))
        return evs__cli_usage("saga", "--status, --stuck-for, --limit and --after go with list");
    if (q.reason && !reasoned) return evs__cli_usage("saga", "--reason goes with pause, skip, compensate and abort");
    if (q.step && k != 5) return evs__cli_usage("saga", "--step goes with skip");
    if ((code = evs__cli_target(&a, opt_dir, opt_url, &dir, &url))) return code;
    if (url && app_dir)
        return evs__cli_usage("saga", "--app-dir is for a local store: a server loads its own (serve --app-dir)");
    if (url) code = evs__cli_saga_remote(url, &q);
    else if (k < 2) code = local_look(dir, &q);
    else code = local_act(dir, app_dir, &q);
    return evs__cli_finish_output(code);
}

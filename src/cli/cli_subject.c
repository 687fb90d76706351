/*
 * cli_subject.c — crypto-shredding on the command line (evstore_crypt.h):
 *
 *     evstore forget-subject -d DIR SUBJECT     destroy the subject's key
 *     evstore export-subject -d DIR SUBJECT     its events, decrypted, JSON lines
 *
 * Both need the master key: --master-key-file FILE (a global option) or
 * EVSTORE_MASTER_KEY.  forget-subject writes, so it needs the store's lock
 * (with a server running, use POST /admin/subjects/{subject}/forget).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/json.h"
#include "evstore_crypt.h"

static const char forget_help[] =
    "Usage: evstore forget-subject -d DIR [--master-key-file FILE] SUBJECT\n"
    "\n"
    "Destroy SUBJECT's data key (crypto-shredding).  Its events stay in the log at\n"
    "their positions; every reader shows them with \"data\": null and \"$redacted\": true.\n"
    "A \"$subject-forgotten\" event is appended to \"$subjects\" as the audit record.\n"
    "Prints {\"subject\":...,\"forgotten\":true,\"audit_position\":N}.\n"
    "Exit status 2 when SUBJECT never had a key.\n";

static const char export_help[] =
    "Usage: evstore export-subject -d DIR [--master-key-file FILE] SUBJECT\n"
    "\n"
    "Print every event encrypted under SUBJECT's key (the stream named SUBJECT and the\n"
    "events tagged SUBJECT), decrypted, one JSON object per line in global order (a\n"
    "GDPR access request).  Exit status 2 when SUBJECT has no key, 3 when it was\n"
    "forgotten.\n";

/* Parse -d and the one SUBJECT; *done set when --help was printed. */
static int subject_args(const char *cmd, const char *help, int argc, char **argv, const char **dir,
                        const char **subject, int *done) {
    evs__cli_args a;
    const char *opt_dir = NULL;
    int t, code;
    *subject = NULL;
    *done = 0;
    evs__cli_args_init(&a, cmd, argc, argv);
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (*subject) return evs__cli_usage(cmd, "unexpected argument \"%s\" (one SUBJECT)", a.arg);
            *subject = a.arg;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(help, stdout);
            *done = 1;
            return EVS_CLI_OK;
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) return code;
        } else {
            return evs__cli_unknown(&a);
        }
    }
    if (!*subject) return evs__cli_usage(cmd, "SUBJECT is missing");
    return evs__cli_dir(&a, opt_dir, dir);
}

int evs__cli_forget_subject(int argc, char **argv) {
    const char *dir = NULL, *subject = NULL;
    evs_store *store = NULL;
    int done, code = subject_args("forget-subject", forget_help, argc, argv, &dir, &subject, &done);
    if (code || done) return evs__cli_finish_output(code);
    if ((code = evs__cli_open(dir, 0, &store))) return code;
    evs_append_result audit;
    evs__cli_clear_error();
    int rc = evs_subject_forget(store, subject, &audit);
    if (rc) {
        code = evs__cli_lib_fail(rc, NULL);
    } else {
        char q[600];
        size_t n = evs__json_escape(subject, strlen(subject), q, sizeof q);
        printf("{\"subject\":%.*s,\"forgotten\":true,\"audit_position\":%llu}\n", (int)(n < sizeof q ? n : 0), q,
               (unsigned long long)audit.first_global_position);
    }
    code = evs__cli_close(store, dir, code);
    return evs__cli_finish_output(code);
}

static int print_event(void *arg, const evs_event *ev) {
    (void)arg;
    char *js = NULL;
    size_t n;
    int rc = evs_event_to_json(ev, &js, &n);
    if (rc) return rc;
    fwrite(js, 1, n, stdout);
    fputc('\n', stdout);
    free(js);
    return EVS_OK;
}

int evs__cli_export_subject(int argc, char **argv) {
    const char *dir = NULL, *subject = NULL;
    evs_store *store = NULL;
    int done, code = subject_args("export-subject", export_help, argc, argv, &dir, &subject, &done);
    if (code || done) return evs__cli_finish_output(code);
    if ((code = evs__cli_open(dir, EVS_OPEN_READONLY, &store))) return code;
    evs__cli_clear_error();
    int rc = evs_subject_export(store, subject, print_event, NULL, NULL);
    if (rc) code = evs__cli_lib_fail(rc, NULL);
    code = evs__cli_close(store, dir, code);
    return evs__cli_finish_output(code);
}

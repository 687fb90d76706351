/*
 * cli_scavenge.c — `evstore scavenge`: give back the log space of deleted
 * and expired events (evs_scavenge, src/store/scavenge.c), with a progress
 * bar on a terminal, a rate limit, a dry run, and Ctrl-C that stops after
 * the segment in progress.  A store a server holds is scavenged through the
 * server instead (POST /admin/scavenge, see docs/http-api.md).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char evs_scavenge_help[] =
    "Usage: evstore scavenge -d DIR [--rate MB/s] [--dry-run] [--quiet]\n"
    "\n"
    "Give back the space of events that stream metadata hides (max_age,\n"
    "max_count, truncate_before, soft and hard deletes), one sealed segment at a\n"
    "time.  Events still readable are copied byte for byte and keep their\n"
    "positions; each run of removed events leaves a small record that keeps\n"
    "their positions taken (reads report it as scavenged).  Removal is final.\n"
    "\n"
    "  --rate MB/s   read and write at most this many megabytes (10^6 bytes) per\n"
    "                second (decimals allowed), to spare the disk for appends\n"
    "  --dry-run     say what would be given back, change nothing\n"
    "  --quiet       no progress bar (there is one on a terminal)\n"
    "\n"
    "Prints one JSON line: segments_total, segments_done, segments_rewritten,\n"
    "bytes_examined, bytes_reclaimed, records_removed, events_removed, dry_run,\n"
    "cancelled.  Ctrl-C stops after the segment in progress.  Safe to kill at any\n"
    "point: the next open finishes or rolls back the segment in progress.\n"
    "\n"
    "Exit status: 0 done (or stopped by Ctrl-C), 1 usage, 2 no store, 4 bad\n"
    "rate, 5 I/O error or the store is held by another process (a server:\n"
    "use POST /admin/scavenge on it).\n";

static int cancel_flag;

static void on_sigint(int sig) {
    (void)sig;
    __atomic_store_n(&cancel_flag, 1, __ATOMIC_RELAXED);
}

static void bar(void *arg, const evs_scavenge_progress *p) {
    (void)arg;
    const int width = 30;
    int fill = p->segments_total ? (int)((uint64_t)width * p->segments_done / p->segments_total) : width;
    char b[64];
    for (int i = 0; i < width; i++) b[i] = i < fill ? '#' : '.';
    b[width] = 0;
    fprintf(stderr, "\rscavenge [%s] %u/%u segments, %.1f MiB %sreclaimed ", b, p->segments_done, p->segments_total,
            (double)p->bytes_reclaimed / 1048576.0, p->dry_run ? "would be " : "");
    fflush(stderr);
}

int evs__cli_scavenge(int argc, char **argv) {
    evs__cli_args a;
    const char *opt_dir = NULL, *dir = NULL, *rate = NULL;
    evs_store *store = NULL;
    int code = EVS_CLI_OK, dry = 0, quiet = 0;

    evs__cli_args_init(&a, "scavenge", argc, argv);
    int t;
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            code = evs__cli_usage(a.cmd, "unexpected argument \"%s\"", a.arg);
            goto cleanup;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(evs_scavenge_help, stdout);
            goto cleanup;
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) goto cleanup;
        } else if (evs__cli_is(&a, "--rate", NULL)) {
            if ((code = evs__cli_value(&a, &rate))) goto cleanup;
        } else if (evs__cli_is(&a, "--dry-run", NULL)) {
            if ((code = evs__cli_flag(&a))) goto cleanup;
            dry = 1;
        } else if (evs__cli_is(&a, "--quiet", "-q")) {
            if ((code = evs__cli_flag(&a))) goto cleanup;
            quiet = 1;
        } else {
            code = evs__cli_unknown(&a);
            goto cleanup;
        }
    }
    evs_scavenge_options o;
    memset(&o, 0, sizeof o);
    if (rate && evs__parse_rate_mb(rate, &o.rate_bytes_per_sec)) {
        code = evs__cli_fail(EVS_CLI_INVALID, "scavenge: --rate \"%s\" is not a number of MB/s above 0 (at most "
                                              "1000000, digits with an optional fraction: 20, 2.5)", rate);
        goto cleanup;
    }
    if ((code = evs__cli_dir(&a, opt_dir, &dir))) goto cleanup;
    if ((code = evs__cli_open(dir, 0, &store))) goto cleanup;
    o.flags = dry ? EVS_SCAVENGE_DRY_RUN : 0;
    o.cancel = &cancel_flag;
    int tty = !quiet && isatty(2);
    if (tty) o.progress = bar;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    evs_scavenge_progress p;
    evs__cli_clear_error();
    int rc = evs_scavenge(store, &o, &p);
    sigaction(SIGINT, &old, NULL);
    if (tty) fputs("\n", stderr);
    if (rc) {
        code = evs__cli_lib_fail(rc, "scavenge %s", dir);
        goto cleanup;
    }
    printf("{\"segments_total\":%u,\"segments_done\":%u,\"segments_rewritten\":%u,\"bytes_examined\":%llu,"
           "\"bytes_reclaimed\":%llu,\"records_removed\":%llu,\"events_removed\":%llu,\"dry_run\":%s,"
           "\"cancelled\":%s}\n",
           p.segments_total, p.segments_done, p.segments_rewritten, (unsigned long long)p.bytes_examined,
           (unsigned long long)p.bytes_reclaimed, (unsigned long long)p.records_removed,
           (unsigned long long)p.events_removed, p.dry_run ? "true" : "false", p.cancelled ? "true" : "false");

cleanup:
    code = evs__cli_close(store, dir, code);
    return evs__cli_finish_output(code);
}

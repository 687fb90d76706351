/*
 * cli_util.c — what every evstore subcommand shares: the argument cursor,
 * strict number parsing, exit codes and messages, opening the store, and
 * JSON output helpers.
 *
 * Why a hand-written argument scanner rather than getopt_long: the command
 * must name the offending flag and value in its messages ("--limit 12x: not
 * a number", "--from -1: ..."), must take a value that starts with '-' as a
 * value (getopt would report "-1" as an unknown option), and must accept
 * options after positionals (evstore read STREAM --limit 5) without relying
 * on GNU argv permutation.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "cli/cli.h"
#include "evstore_crypt.h"
#include "core/json.h"

/* ------------------------------------------------------------ arguments */

void evs__cli_args_init(evs__cli_args *a, const char *cmd, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->argc = argc;
    a->argv = argv;
}

int evs__cli_args_next(evs__cli_args *a) {
    a->arg = NULL;
    a->name[0] = '\0';
    a->inline_value = NULL;
    while (a->i < a->argc) {
        const char *s = a->argv[a->i++];
        /* "-" alone is a positional by convention (it often means stdin). */
        if (a->no_more_options || s[0] != '-' || s[1] == '\0') {
            a->arg = s;
            return EVS_CLI_POSITIONAL;
        }
        if (s[1] == '-' && s[2] == '\0') {
            a->no_more_options = 1;
            continue;
        }
        a->arg = s;
        size_t n;
        if (s[1] == '-') {
            const char *eq = strchr(s, '=');
            n = eq ? (size_t)(eq - s) : strlen(s);
            a->inline_value = eq ? eq + 1 : NULL;
        } else {
            n = 2;
            a->inline_value = s[2] ? s + 2 : NULL;
        }
        /* An over-long name cannot match any option; truncation only affects
           matching, messages print the argument as written (a->arg). */
        if (n >= sizeof a->name) n = sizeof a->name - 1;
        memcpy(a->name, s, n);
        a->name[n] = '\0';
        return EVS_CLI_OPTION;
    }
    return EVS_CLI_END;
}

int evs__cli_is(const evs__cli_args *a, const char *lng, const char *shrt) {
    return (lng && strcmp(a->name, lng) == 0) || (shrt && strcmp(a->name, shrt) == 0);
}

int evs__cli_value(evs__cli_args *a, const char **val) {
    if (a->inline_value) {
        *val = a->inline_value;
        return EVS_CLI_OK;
    }
    if (a->i < a->argc) {
        *val = a->argv[a->i++];
        return EVS_CLI_OK;
    }
    return evs__cli_usage(a->cmd, "%s needs a value", a->name);
}

int evs__cli_flag(evs__cli_args *a) {
    if (a->inline_value) return evs__cli_usage(a->cmd, "%s takes no value (got \"%s\")", a->name, a->arg);
    return EVS_CLI_OK;
}

int evs__cli_unknown(const evs__cli_args *a) {
    return evs__cli_usage(a->cmd, "unknown option %s", a->arg);
}

/* How the store directory was given on the line ("-d" or "--dir"), for a message about its value. */
static const char *dir_flag(const evs__cli_args *a) {
    const char *flag = "-d";
    for (int i = 0; i < a->argc && strcmp(a->argv[i], "--") != 0; i++) {
        const char *s = a->argv[i];
        if (strncmp(s, "-d", 2) == 0) flag = "-d";
        else if (strcmp(s, "--dir") == 0 || strncmp(s, "--dir=", 6) == 0) flag = "--dir";
    }
    return flag;
}

int evs__cli_dir(const evs__cli_args *a, const char *opt_dir, const char **dir) {
    if (opt_dir) {
        if (!opt_dir[0]) return evs__cli_usage(a->cmd, "%s: the store directory name is empty", dir_flag(a));
        *dir = opt_dir;
        return EVS_CLI_OK;
    }
    const char *env = getenv("EVSTORE_DIR");
    if (env && env[0]) {
        *dir = env;
        return EVS_CLI_OK;
    }
    return evs__cli_usage(a->cmd, "no store directory: give -d DIR or set EVSTORE_DIR");
}

int evs__cli_target(const evs__cli_args *a, const char *opt_dir, const char *opt_url, const char **dir,
                    const char **url) {
    *dir = NULL;
    *url = NULL;
    if (opt_dir && opt_url)
        return evs__cli_usage(a->cmd, "-d and --url exclude each other: a command works on a local store "
                                      "directory or against a server, not both");
    if (opt_url) {
        if (!opt_url[0]) return evs__cli_usage(a->cmd, "--url: the server URL is empty");
        *url = opt_url;
        return EVS_CLI_OK;
    }
    if (opt_dir) return evs__cli_dir(a, opt_dir, dir);
    const char *env_dir = getenv("EVSTORE_DIR"), *env_url = getenv("EVSTORE_URL");
    if (env_dir && env_dir[0] && env_url && env_url[0])
        return evs__cli_usage(a->cmd, "both EVSTORE_DIR and EVSTORE_URL are set: choose with -d DIR or --url URL");
    if (env_url && env_url[0]) {
        *url = env_url;
        return EVS_CLI_OK;
    }
    if (env_dir && env_dir[0]) {
        *dir = env_dir;
        return EVS_CLI_OK;
    }
    return evs__cli_usage(a->cmd, "no store: give -d DIR (or set EVSTORE_DIR), or --url URL of a running "
                                  "`evstore serve` (or set EVSTORE_URL)");
}

int evs__cli_u64(const evs__cli_args *a, const char *name, const char *text, uint64_t max,
                 uint64_t *out) {
    if (!text[0]) return evs__cli_usage(a->cmd, "%s: empty value, expected a number", name);
    switch (evs__parse_u64(text, max, out)) {
    case 0: return EVS_CLI_OK;
    case -2:
        if (text[1] >= '0' && text[1] <= '9')
            return evs__cli_usage(a->cmd, "%s %s: not a number (negative values are not allowed)", name, text);
        return evs__cli_usage(a->cmd, "%s %s: not a number", name, text);
    case -3:
        return evs__cli_usage(a->cmd, "%s %s: number too large (at most %llu)", name, text,
                              (unsigned long long)max);
    default: return evs__cli_usage(a->cmd, "%s %s: not a number", name, text);
    }
}

/* --------------------------------------------------------------- errors */

int evs__cli_exit_code(int status) {
    switch (status) {
    case EVS_OK:
    case EVS_DONE:
        return EVS_CLI_OK;
    case EVS_ENOTFOUND:
    case -ENOENT:
        return EVS_CLI_NOTFOUND;
    case EVS_ECONFLICT:
    case EVS_ECONDITION:
    case EVS_EDELETED:
        return EVS_CLI_CONFLICT;
    case EVS_EINVAL:
    case EVS_EJSON:
    case EVS_ELIMIT:
    case EVS_EDUPLICATE:
    case EVS_EKEY:
        return EVS_CLI_INVALID;
    default:
        /* EIO, ECORRUPT, EFAILED, EFORMAT, EINDEX, ELOCKED, ENOMEM, OS errors:
           the store or the machine is at fault, not the caller's input. */
        return EVS_CLI_IO;
    }
}

static void evs_cli_vmsg(const char *fmt, va_list ap) {
    fputs("evstore: ", stderr);
    vfprintf(stderr, fmt, ap);
}

int evs__cli_fail(int exit_code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    evs_cli_vmsg(fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return exit_code;
}

int evs__cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    evs_cli_vmsg(fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "\nTry 'evstore %s --help'.\n", cmd);
    else
        fputs("\nTry 'evstore --help'.\n", stderr);
    return EVS_CLI_USAGE;
}

int evs__cli_lib_fail(int status, const char *context, ...) {
    /* The library's message says what and where; fall back to the code's
       description when a call failed without leaving one. */
    const char *msg = evs_errmsg();
    if (!msg[0] || strcmp(msg, "no error") == 0) msg = evs_strerror(status);
    fputs("evstore: ", stderr);
    if (context) {
        /* the context names the store: a PostgreSQL URL's password is masked */
        char ctx[2048], shown[2048];
        va_list ap;
        va_start(ap, context);
        vsnprintf(ctx, sizeof ctx, context, ap);
        va_end(ap);
        fprintf(stderr, "%s: ", evs__engine_mask_url(ctx, shown, sizeof shown));
    }
    fprintf(stderr, "%s\n", msg);
    return evs__cli_exit_code(status);
}

void evs__cli_clear_error(void) { evs__err_clear(); }

/* ----------------------------------------------------------------- store */

/* The first line of DIR/name without its newline into buf ("" when there is none). */
static void read_line(const char *dir, const char *name, char *buf, size_t cap) {
    char path[4096];
    buf[0] = '\0';
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (!fgets(buf, (int)cap, f)) buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
}

/*
 * Why a store is locked and what to do: the library names the process
 * (LOCK holds its pid); when it is a server, DIR/SERVE names its URL
 * (docs/format.md), and the way through is that URL.
 */
static void locked_hint(const char *dir) {
    char lock[64], serve[512];
    read_line(dir, "LOCK", lock, sizeof lock);
    read_line(dir, "SERVE", serve, sizeof serve);
    char *sp = strchr(serve, ' ');
    if (sp) *sp++ = '\0';
    if (lock[0] && sp && strcmp(lock, serve) == 0 && strncmp(sp, "http", 4) == 0)
        fprintf(stderr, "evstore: `evstore serve` (pid %s) holds %s: run this command through it with --url %s "
                        "instead of -d (read, tail, streams, info, check and the list/show commands also work "
                        "on the files with -d while it runs)\n", lock, dir, sp);
    else
        fprintf(stderr, "evstore: if that process is `evstore serve`, run this command through it with --url "
                        "http://ADDRESS:PORT (the address it printed) instead of -d; otherwise wait until it "
                        "is done (read-only commands work with -d meanwhile)\n");
}

const char *evs__cli_master_key_file;

int evs__cli_open(const char *dir, unsigned flags, evs_store **out) {
    evs_store *s = NULL;
    int code = EVS_CLI_OK;
    *out = NULL;
    evs__cli_clear_error();
    int rc = evs_store_create(&s);
    if (rc != EVS_OK) {
        code = evs__cli_lib_fail(rc, "store %s", dir);
        goto cleanup;
    }
    if ((rc = evs_store_use_master_key(s, evs__cli_master_key_file)) != EVS_OK) {
        code = evs__cli_lib_fail(rc, NULL);
        goto cleanup;
    }
    rc = evs_store_open(s, dir, flags);
    if (rc != EVS_OK) {
        /* Most open failures already name the directory; say it only when
           the message does not, rather than printing it twice. */
        if (strstr(evs_errmsg(), dir))
            code = evs__cli_lib_fail(rc, NULL);
        else
            code = evs__cli_lib_fail(rc, "open %s", dir);
        if (rc == EVS_ELOCKED) locked_hint(dir);
        goto cleanup;
    }
    const char *rep = evs_store_recovery_report(s);
    /* a read-only open repairs nothing: what it found is a note (often a writer's append in progress) */
    if (rep && rep[0])
        fprintf(stderr, "evstore: %s: %s: %s\n", dir, (flags & EVS_OPEN_READONLY) ? "note" : "recovery", rep);
    *out = s;
    s = NULL;
cleanup:
    evs_store_close(s);
    return code;
}

int evs__cli_close(evs_store *s, const char *dir, int code) {
    if (!s) return code;
    evs__cli_clear_error();
    int rc = evs_store_close(s);
    if (rc == EVS_OK) return code;
    evs__cli_lib_fail(rc, "%s", dir ? dir : "store");
    return EVS_CLI_IO;
}

char *evs__cli_read_file(const char *path, size_t max, size_t *len) {
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 < cap) continue;
        char *nb = cap > max ? NULL : realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            errno = cap > max ? EFBIG : ENOMEM;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    if (buf && n > max) {
        free(buf);
        buf = NULL;
        errno = EFBIG;
    }
    if (!is_stdin) fclose(f);
    if (buf) {
        buf[n] = 0;
        *len = n;
    }
    return buf;
}

/* ---------------------------------------------------------------- output */

void evs__cli_json_str(FILE *f, const char *s, size_t n) {
    /* the one escaper (core/json.c); names and messages fit the stack */
    char small[1024];
    size_t need = evs__json_escape(s, n, small, sizeof small);
    if (need < sizeof small) {
        fwrite(small, 1, need, f);
        return;
    }
    char *big = malloc(need + 1);
    if (!big) {
        evs__cli_fail(EVS_CLI_IO, "out of memory writing a string of %zu bytes", n);
        exit(EVS_CLI_IO);
    }
    evs__json_escape(s, n, big, need + 1);
    fwrite(big, 1, need, f);
    free(big);
}

void evs__cli_json_time(FILE *f, int64_t ns) {
    if (ns == 0) {
        fputs("null", f);
        return;
    }
    char buf[40];
    size_t n = evs_time_format(ns, buf);
    evs__cli_json_str(f, buf, n);
}

void evs__cli_json_stream_info(FILE *f, const evs_stream_info *si) {
    fputs("{\"stream\":", f);
    evs__cli_json_str(f, si->name, strlen(si->name));
    fputs(",\"stream_type\":", f);
    evs__cli_json_str(f, si->stream_type, strlen(si->stream_type));
    fprintf(f, ",\"version\":%llu,\"first_global_position\":%llu,\"last_global_position\":%llu",
            (unsigned long long)si->version, (unsigned long long)si->first_global_position,
            (unsigned long long)si->last_global_position);
    fputs(",\"created_at\":", f);
    evs__cli_json_time(f, si->created_at);
    fputs(",\"updated_at\":", f);
    evs__cli_json_time(f, si->updated_at);
    fputc('}', f);
}

int evs__cli_finish_output(int exit_code) {
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno ? errno : EIO;
        evs__cli_fail(EVS_CLI_IO, "writing to stdout: %s", strerror(e));
        return exit_code ? exit_code : EVS_CLI_IO;
    }
    return exit_code;
}

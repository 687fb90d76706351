/*
 * cli.h — shared pieces of the evstore command: argument scanning, strict
 * number parsing, error reporting with exit codes, opening the store, and
 * writing small JSON objects to stdout.
 *
 * Exit status is part of the command's contract, so it is decided in one
 * place (evs__cli_exit_code) from the library's status codes:
 *   0 success, 1 usage error, 2 not found, 3 concurrency conflict,
 *   4 invalid input, 5 I/O error or corruption.
 * Every message goes to stderr as "evstore: <what is wrong and where>".
 *
 * Each subcommand is a function taking the arguments after its name and
 * returning the exit status; main.c only dispatches.
 */
#ifndef EVS_CLI_H
#define EVS_CLI_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "evstore.h"

enum {
    EVS_CLI_OK = 0,
    EVS_CLI_USAGE = 1,
    EVS_CLI_NOTFOUND = 2,
    EVS_CLI_CONFLICT = 3,
    EVS_CLI_INVALID = 4,
    EVS_CLI_IO = 5
};

/* ------------------------------------------------------------ arguments */

/*
 * A cursor over one subcommand's arguments.  Options may come before,
 * between or after positionals; "--" ends the options.  Long options take
 * their value as "--name value" or "--name=value", short ones as "-d DIR" or
 * "-dDIR".  The value is taken as is even when it starts with '-', so that
 * "--from -1" reaches the number parser and gets a precise message.
 */
typedef struct evs__cli_args {
    const char *cmd;       /* subcommand name, for messages */
    int argc;
    char **argv;
    int i;                 /* next index to look at */
    int no_more_options;   /* after "--" */
    const char *arg;       /* the current positional, or the current option as written */
    char name[64];         /* the current option's name ("--limit", "-d") */
    const char *inline_value; /* the part after '=' (long) or after the letter (short) */
} evs__cli_args;

#define EVS_CLI_END 0
#define EVS_CLI_OPTION 1
#define EVS_CLI_POSITIONAL 2

void evs__cli_args_init(evs__cli_args *a, const char *cmd, int argc, char **argv);
/* Advance: EVS_CLI_OPTION (a->name set), EVS_CLI_POSITIONAL (a->arg set) or EVS_CLI_END. */
int evs__cli_args_next(evs__cli_args *a);
/* 1 if the current option is lng (e.g. "--limit") or shrt (e.g. "-l", may be NULL). */
int evs__cli_is(const evs__cli_args *a, const char *lng, const char *shrt);
/* The current option's value; prints a usage error and returns 1 when it is missing. */
int evs__cli_value(evs__cli_args *a, const char **val);
/* For options without a value: usage error if one was attached with '='. */
int evs__cli_flag(evs__cli_args *a);
/* Usage error for the current option: "unknown option". */
int evs__cli_unknown(const evs__cli_args *a);

/* The store directory: -d value, else $EVSTORE_DIR; usage error when neither. */
int evs__cli_dir(const evs__cli_args *a, const char *opt_dir, const char **dir);
/*
 * Local store or server, for the commands that take --url: -d DIR or
 * --url URL (both: usage error), else $EVSTORE_DIR or $EVSTORE_URL (both set:
 * usage error, a flag decides).  Sets exactly one of *dir and *url.
 */
int evs__cli_target(const evs__cli_args *a, const char *opt_dir, const char *opt_url, const char **dir,
                    const char **url);

/*
 * Strict unsigned decimal: digits only, no sign, no spaces, no overflow.
 * On failure prints "evstore: NAME TEXT: not a number" (or "is negative",
 * "is too large") and returns EVS_CLI_USAGE.
 */
int evs__cli_u64(const evs__cli_args *a, const char *name, const char *text, uint64_t max,
                 uint64_t *out);

/* --------------------------------------------------------------- errors */

/* Map a library status to the command's exit status. */
int evs__cli_exit_code(int status);
/* Print "evstore: <formatted>" on stderr.  Returns exit_code. */
int evs__cli_fail(int exit_code, const char *fmt, ...) EVS_PRINTF(2, 3);
/* Usage error: "evstore: <formatted>" and a hint at --help.  Returns EVS_CLI_USAGE. */
int evs__cli_usage(const char *cmd, const char *fmt, ...) EVS_PRINTF(2, 3);
/*
 * A failed library call: "evstore: <context>: <evs_errmsg()>" (context may
 * be NULL).  Returns the exit code for status.
 */
int evs__cli_lib_fail(int status, const char *context, ...) EVS_PRINTF(2, 3);
/* Forget any earlier library message, so a failure never prints a stale one. */
void evs__cli_clear_error(void);

/* ----------------------------------------------------------------- store */

/*
 * Create and open the store in dir with flags; prints the recovery report
 * (if any) on stderr.  Returns EVS_CLI_OK with *out set, or an exit code
 * after printing why; *out is then NULL.
 */
int evs__cli_open(const char *dir, unsigned flags, evs_store **out);
/* --master-key-file, a global option main.c takes from anywhere on the line (NULL: EVSTORE_MASTER_KEY). */
extern const char *evs__cli_master_key_file;
/* forget-subject and export-subject (cli_subject.c). */
int evs__cli_forget_subject(int argc, char **argv);
int evs__cli_export_subject(int argc, char **argv);
/*
 * Close the store the command opened (NULL: nothing to do) and return the
 * command's exit status: `code`, or 5 after printing why when the close
 * failed (its final sync did not happen, so what the command wrote may not
 * be durable), whatever the command's own status was.
 */
int evs__cli_close(evs_store *s, const char *dir, int code);

/*
 * The whole file at path ("-": stdin), NUL-terminated, at most max bytes.
 * NULL when it cannot be read or is larger (errno says which: EFBIG).
 * Ownership: the caller frees the result.
 */
char *evs__cli_read_file(const char *path, size_t max, size_t *len);

/* ---------------------------------------------------------------- output */

/* Write s[0..n) as a JSON string (quotes included). */
void evs__cli_json_str(FILE *f, const char *s, size_t n);
/* Write a JSON string of an RFC 3339 time, or null for 0. */
void evs__cli_json_time(FILE *f, int64_t ns);
/* Write one stream's info as a JSON object (no newline). */
void evs__cli_json_stream_info(FILE *f, const evs_stream_info *si);
/* Flush stdout; on a write error print it and return EVS_CLI_IO. */
int evs__cli_finish_output(int exit_code);

/* ------------------------------------------------------------ subcommands */

/* One event's JSON text and where it came from (stdin line, 0 for an argument). */
typedef struct evs__cli_src {
    const char *p;
    size_t n;
    unsigned line;
} evs__cli_src;

int evs__cli_append(int argc, char **argv);
int evs__cli_read(int argc, char **argv);
int evs__cli_tail(int argc, char **argv);
int evs__cli_streams(int argc, char **argv);
int evs__cli_stream(int argc, char **argv); /* cli_stream.c */
int evs__cli_info(int argc, char **argv);
int evs__cli_check(int argc, char **argv);
/* `evstore serve` (cli_serve.c): read the settings, run the server until SIGINT or SIGTERM. */
int evs__cli_serve(int argc, char **argv);
int evs__cli_key(int argc, char **argv);
int evs__cli_repair(int argc, char **argv);
int evs__cli_scavenge(int argc, char **argv); /* cli_scavenge.c */
/* `evstore nats publish|mirror|import|info` (cli_nats.c, over src/dist/). */
int evs__cli_nats(int argc, char **argv);

/*
 * The same commands against a running `evstore serve` (cli_remote.c), called
 * after the local command parsed and checked its arguments: same output,
 * same exit codes.  Events are already validated JSON objects.
 */
int evs__cli_remote_append(const char *url, const char *stream, int64_t expected, const char *condition,
                           const evs__cli_src *ev, size_t n);
/* from: 0 for the default start; limit 0 for all. */
int evs__cli_remote_read(const char *url, const char *stream, uint64_t from, uint64_t limit, int backward,
                         const evs_filter *f);
int evs__cli_remote_tail(const char *url, uint64_t from, const evs_filter *f, volatile sig_atomic_t *stop);
int evs__cli_remote_streams(const char *url, const char *prefix, uint64_t limit);
int evs__cli_remote_info(const char *url, const char *stream);

#endif

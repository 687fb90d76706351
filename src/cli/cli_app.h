/*
 * cli_app.h — the application-layer subcommands of the evstore command
 * (cli_app.c): `evstore command`, `evstore query`, `evstore aggregate`,
 * on a local store or, with --url, against a running server
 * (cli_app_remote.c), with the same output and exit codes.
 */
#ifndef EVS_CLI_APP_H
#define EVS_CLI_APP_H

#include <stddef.h>
#include <stdint.h>

#define EVS_CLI_MAX_FILTERS 32

int evs__cli_command(int argc, char **argv);
int evs__cli_query(int argc, char **argv);
int evs__cli_aggregate(int argc, char **argv);

/* A query's arguments, checked (shared by the local and the remote form). */
typedef struct evs__cli_query_args {
    const char *name;
    char *field[EVS_CLI_MAX_FILTERS], *value[EVS_CLI_MAX_FILTERS]; /* FIELD=VALUE, split (owned) */
    size_t nf;
    const char *partition, *sort;
    int desc;
    uint64_t offset, limit, min_position; /* limit 0, min_position 0: not given */
    int64_t timeout_ms;                   /* -1: not given */
} evs__cli_query_args;

/*
 * The exit code of a command's outcome, as its HTTP status maps (cli.h):
 * accepted 0, rejected and invalid 4, conflict 3, unknown type 2, failed 5.
 */
int evs__cli_outcome_code(const char *outcome);

/*
 * Against a server.  Commands are checked JSON objects (command_type in
 * each); one goes to POST /commands/{type}, several to POST /commands in
 * batches of up to 1,000.  Each prints one line per command: its result
 * (the same object as locally); the reason of one not accepted goes to
 * stderr; the exit code is the first non-zero one.
 */
int evs__cli_command_remote(const char *url, char **cmds, size_t n);
int evs__cli_query_remote(const char *url, const evs__cli_query_args *q);
/* act: list, describe, show, snapshots, snapshot, put (src: the script) */
int evs__cli_aggregate_remote(const char *url, const char *act, const char *type, const char *id, int no_snapshot,
                              const char *src, size_t src_len);

#endif

/*
 * main.c — the evstore command: global options and subcommand dispatch.
 *
 *     evstore [--help | --version] COMMAND [ARGS...]
 *
 * Each subcommand parses its own arguments and returns the exit status (see
 * cli.h for the table); `serve` reads its settings in cli_serve.c and runs
 * the server of src/server/ (server/server.h).  `evstore help COMMAND` is the same as
 * `evstore COMMAND --help`, for those who type it that way round.
 */
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_app.h"
#include "cli/cli_backup.h"
#include "cli/cli_bus.h"
#include "cli/cli_schema.h"
#include "cli/cli_saga.h"

typedef struct evs_cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} evs_cli_command;

static const evs_cli_command evs_cli_commands[] = {
    {"append", evs__cli_append, "append events to a stream in one atomic append"},
    {"read", evs__cli_read, "read a stream or the whole log ('$all') as JSON lines"},
    {"tail", evs__cli_tail, "print the log's events and follow new ones"},
    {"streams", evs__cli_streams, "list streams"},
    {"stream", evs__cli_stream, "a stream's metadata (meta get|set) and delete (soft or --hard)"},
    {"info", evs__cli_info, "store statistics, or one stream's info"},
    {"check", evs__cli_check, "verify the log and the index"},
    {"repair", evs__cli_repair, "remove damaged records, naming every event dropped"},
    {"scavenge", evs__cli_scavenge, "give back the space of deleted and expired events, segment by segment"},
    {"backup", evs__cli_backup, "copy a store, while it runs, to a consistent backup (or update one)"},
    {"restore", evs__cli_restore, "create a new store from a backup, to a position or a time"},
    {"verify-backup", evs__cli_verify_backup, "check a backup's files and records against its manifest"},
    {"serve", evs__cli_serve, "run the HTTP/JSON server (see docs/http-api.md)"},
    {"sub", evs__cli_sub, "consumer records: list, show, create, pause, resume, reset, delete"},
    {"dlq", evs__cli_dlq, "dead-letter queues: list, show, retry, discard, purge"},
    {"projection", evs__cli_projection, "Lua projections: create, run, status, state, partitions, rebuild, delete"},
    {"group", evs__cli_group, "competing-consumer groups: create, show, list, consumers, delete"},
    {"command", evs__cli_command, "send a command to an aggregate (the application layer)"},
    {"query", evs__cli_query, "run a named query over projection state"},
    {"aggregate", evs__cli_aggregate, "aggregates: list, describe, show state, snapshots, put a script"},
    {"schema", evs__cli_schema, "event schemas: register, check, list, show, deprecate, policies, upcasters"},
    {"key", evs__cli_key, "API keys for serve --auth: create, list, revoke"},
    {"saga", evs__cli_saga, "saga instances: list, show, pause, resume, retry, skip, compensate, abort"},
    {"forget-subject", evs__cli_forget_subject, "crypto-shredding: destroy a subject's key, its events read redacted"},
    {"export-subject", evs__cli_export_subject, "a subject's encrypted events, decrypted, as JSON lines (GDPR access)"},
    {"nats", evs__cli_nats, "NATS JetStream: publish the log to a stream, mirror a store from one, import a stream, info"},
};

#define EVS_CLI_NCOMMANDS (sizeof evs_cli_commands / sizeof evs_cli_commands[0])

static void evs_cli_help(FILE *f) {
    fputs("Usage: evstore [--help | --version] COMMAND [ARGS...]\n"
          "\n"
          "An event store on the command line.\n"
          "\n"
          "Commands:\n",
          f);
    for (size_t i = 0; i < EVS_CLI_NCOMMANDS; i++)
        fprintf(f, "  %-14s %s\n", evs_cli_commands[i].name, evs_cli_commands[i].summary);
    fputs("\n"
          "Every command takes -d DIR (or the environment variable EVSTORE_DIR), and all\n"
          "but check, repair, serve and the backup commands also run against a running\n"
          "`evstore serve` with --url URL (or EVSTORE_URL) instead, with the same output\n"
          "and exit codes.  `backup` copies a store while a server holds it.\n"
          "While a server holds a store, commands that only read (read, tail, streams,\n"
          "info, check, and list/show/status/state) still work on it with -d; the others\n"
          "go through the server with --url.  Output is JSON; messages go to stderr.\n"
          "`evstore COMMAND --help` (or `evstore help COMMAND`) lists a command's options.\n"
          "--master-key-file FILE (anywhere on the line; or EVSTORE_MASTER_KEY) gives the\n"
          "master key of encrypted streams (crypto-shredding, docs/operations.md).\n"
          "\n"
          "Exit status: 0 success, 1 usage error, 2 not found, 3 concurrency conflict,\n"
          "4 invalid input, 5 I/O error, corruption, a store held by another process, or\n"
          "a server that cannot be reached.\n",
          f);
}

static const evs_cli_command *evs_cli_find(const char *name) {
    for (size_t i = 0; i < EVS_CLI_NCOMMANDS; i++)
        if (strcmp(evs_cli_commands[i].name, name) == 0) return &evs_cli_commands[i];
    return NULL;
}

/*
 * --master-key-file FILE (or =FILE) is global: taken out of argv wherever it
 * is, so every command that opens a store (and serve) reads it.
 */
static int take_master_key_file(int *argc, char **argv) {
    int w = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--master-key-file") == 0) {
            if (i + 1 >= *argc) return evs__cli_usage(NULL, "--master-key-file needs a FILE");
            evs__cli_master_key_file = argv[++i];
        } else if (strncmp(argv[i], "--master-key-file=", 18) == 0) {
            evs__cli_master_key_file = argv[i] + 18;
        } else {
            argv[w++] = argv[i];
        }
    }
    argv[w] = NULL;
    *argc = w;
    return EVS_CLI_OK;
}

int main(int argc, char **argv) {
    int mrc = take_master_key_file(&argc, argv);
    if (mrc) return mrc;
    if (argc < 2) {
        evs_cli_help(stderr);
        return EVS_CLI_USAGE;
    }
    const char *first = argv[1];
    if (strcmp(first, "--help") == 0 || strcmp(first, "-h") == 0) {
        evs_cli_help(stdout);
        return evs__cli_finish_output(EVS_CLI_OK);
    }
    if (strcmp(first, "--version") == 0 || strcmp(first, "-V") == 0) {
        printf("evstore %s\n", EVS_VERSION_STRING);
        return evs__cli_finish_output(EVS_CLI_OK);
    }
    if (strcmp(first, "help") == 0) {
        if (argc < 3) {
            evs_cli_help(stdout);
            return evs__cli_finish_output(EVS_CLI_OK);
        }
        const evs_cli_command *c = evs_cli_find(argv[2]);
        if (!c) return evs__cli_usage(NULL, "unknown command \"%s\"", argv[2]);
        char help[] = "--help";
        char *hargv[] = {help, NULL};
        return c->run(1, hargv);
    }
    if (first[0] == '-') return evs__cli_usage(NULL, "unknown option %s (options go after COMMAND)", first);
    const evs_cli_command *c = evs_cli_find(first);
    if (!c) return evs__cli_usage(NULL, "unknown command \"%s\"", first);
    return c->run(argc - 2, argv + 2);
}

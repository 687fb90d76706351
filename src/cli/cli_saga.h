/*
 * cli_saga.h — `evstore saga ...` (cli_saga.c): saga instances listed,
 * shown and steered, on a local store or, with --url, through a running
 * server (cli_saga_remote.c), with the same output and exit codes.
 */
#ifndef EVS_CLI_SAGA_H
#define EVS_CLI_SAGA_H

#include <stdint.h>

int evs__cli_saga(int argc, char **argv);

/* What one `evstore saga` asks, checked (shared by the local and the remote form). */
typedef struct evs__cli_saga_args {
    const char *act;                    /* list, show, pause, resume, retry, skip, compensate, abort */
    const char *type, *id;              /* list: type may be NULL */
    const char *status, *stuck_for;     /* list filters as given (checked), NULL when not given */
    int status_code;                    /* -1: any */
    int64_t stuck_ns;                   /* 0: not given */
    const char *after;                  /* list: a cursor of an earlier page */
    uint64_t limit;                     /* list: 0 for all */
    const char *reason, *step;          /* actions */
} evs__cli_saga_args;

/* Against a server: list pages through GET /sagas, show GET, actions POST (docs/http-api.md, "Sagas"). */
int evs__cli_saga_remote(const char *url, const evs__cli_saga_args *q);

#endif

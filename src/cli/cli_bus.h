/*
 * cli_bus.h — the consumer subcommands of the evstore command (cli_bus.c):
 * `evstore sub ...`, `evstore dlq ...`, `evstore projection ...`,
 * `evstore group ...`.
 */
#ifndef EVS_CLI_BUS_H
#define EVS_CLI_BUS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

int evs__cli_sub(int argc, char **argv);
int evs__cli_dlq(int argc, char **argv);
int evs__cli_projection(int argc, char **argv);
int evs__cli_group(int argc, char **argv);

/* The same against a running server (cli_bus_remote.c); exit codes as the other --url commands. */
/* settings: the JSON body of `create` (PUT), NULL for the other actions. */
int evs__cli_sub_remote(const char *url, const char *act, const char *name, const char *pos_text, json_t *settings);
int evs__cli_dlq_remote(const char *url, const char *act, const char *name, uint64_t pos, uint64_t after,
                        uint64_t limit);
int evs__cli_projection_remote(const char *url, const char *act, const char *name, const char *arg,
                               const char *src, size_t src_len, uint64_t limit);
/*
 * projection state --as-of, what-if and compare (cli_replay.c), on a local
 * store (dir, read-only: works beside a server) or through url.  arg1/arg2:
 * the partition of state, the sides A and B of compare.
 */
int evs__cli_projection_replay(const char *dir, const char *url, const char *act, const char *name, const char *arg1,
                               const char *arg2, const char *as_of, const char *spec);
/* group create|show|list|delete|consumers; list prints at most limit groups. */
int evs__cli_group_remote(const char *url, const char *act, const char *name, json_t *settings, uint64_t limit);

#endif

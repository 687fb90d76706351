/*
 * cli_bus.h — the consumer subcommands of the evstore command (cli_bus.c):
 * `evstore sub ...`, `evstore dlq ...`, `evstore projection ...`.
 */
#ifndef EVS_CLI_BUS_H
#define EVS_CLI_BUS_H

int evs__cli_sub(int argc, char **argv);
int evs__cli_dlq(int argc, char **argv);
int evs__cli_projection(int argc, char **argv);

#endif

/*
 * server.h — the one entry point the evstore command needs from the server:
 * `evstore serve`.  Everything else in src/server/ is internal (srv.h).
 */
#ifndef EVS_SERVER_H
#define EVS_SERVER_H

/*
 * Run the HTTP/JSON server on a store until SIGINT or SIGTERM; argv holds
 * the arguments after "serve".  Returns the process exit status (0 after a
 * clean shutdown, the CLI's codes otherwise).
 */
int evs__cli_serve(int argc, char **argv);

#endif

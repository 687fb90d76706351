/*
 * serve_child.h — start `evstore serve` as a child for a benchmark and
 * learn its port from the first line it prints (bench_ws_group.c,
 * bench_app_http.c).  Header-only; benchmarks only.
 */
#ifndef EVS_BENCH_SERVE_CHILD_H
#define EVS_BENCH_SERVE_CHILD_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Run argv (argv[0] the evstore binary, then "serve" and its options,
 * "--listen 127.0.0.1:0" among them; NULL-terminated) with stdout read
 * here and stderr discarded.  Returns the child's pid with its port in
 * *port, or -1 after saying why.
 */
static inline pid_t serve_child_start(char *const argv[], int *port) {
    int p[2];
    if (pipe(p)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    char line[512];
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t r = read(p[0], line + n, 1);
        if (r <= 0 || line[n] == '\n') break;
        n++;
    }
    line[n] = '\0';
    close(p[0]);
    const char *h = strstr(line, "http://127.0.0.1:");
    *port = h ? atoi(h + 17) : 0;
    if (!*port) {
        fprintf(stderr, "the server did not start: %s\n", line);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

#endif

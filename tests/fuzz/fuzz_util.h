/*
 * fuzz_util.h — what the fuzz targets share: FUZZ_ASSERT (print, then
 * abort so that libFuzzer or replay.c keeps the input) and a scratch
 * directory for the targets that need files.
 */
#ifndef EVS_FUZZ_UTIL_H
#define EVS_FUZZ_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FUZZ_NAME
#error "define FUZZ_NAME before including fuzz_util.h"
#endif

#define FUZZ_ASSERT(cond, ...)                                                   \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, FUZZ_NAME ": %s failed: ", #cond);                   \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            abort();                                                             \
        }                                                                        \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * A directory of our own for the whole run, under $TMPDIR (or /dev/shm when
 * there is one, as files there cost no disk writes); removed at exit.
 */
static char fuzz_dir_path[512];

static void fuzz_dir_remove(void) {
    char cmd[600];
    if (!fuzz_dir_path[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_path);
    if (system(cmd) != 0) fprintf(stderr, FUZZ_NAME ": could not remove %s\n", fuzz_dir_path);
}

static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_path[0]) {
        const char *base = getenv("TMPDIR");
        if (!base || !*base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/evs-" FUZZ_NAME "-XXXXXX", base);
        if (!mkdtemp(fuzz_dir_path)) {
            perror(fuzz_dir_path);
            abort();
        }
        atexit(fuzz_dir_remove);
    }
    return fuzz_dir_path;
}

#endif

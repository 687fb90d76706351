/*
 * replay.c — a main() for the fuzz targets where libFuzzer is not there
 * (gcc: the plain and ASan builds, so `make test` needs no clang).
 *
 *   fuzz_NAME [-runs=N] [-max_total_time=S] [-seed=K] PATH...
 *
 * Runs LLVMFuzzerTestOneInput on every file given (or found in a directory
 * given), then on N mutations of them, stopping early after S seconds.  A
 * mutation is one to four edits of a seed chosen by a xorshift generator
 * started at K: a bit flip, a byte set to a boundary value, bytes inserted,
 * deleted or repeated, a splice with another seed, a cut.  The sequence
 * depends only on the seeds and K, so a failure repeats.  It is not
 * coverage-guided: that is what the libFuzzer build (`make fuzz`) is for.
 *
 * Every input is handed over in a buffer of exactly its size, as libFuzzer
 * does, so ASan catches a read past the input.  When a target aborts, the
 * input is written to ./crash-replay-NAME (SIGABRT and SIGSEGV handlers)
 * and can be replayed with `fuzz_NAME crash-replay-NAME`.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#define REPLAY_MAX_INPUT (1u << 20)

typedef struct seed {
    uint8_t *p;
    size_t n;
} seed;

static seed *seeds;
static size_t nseeds, capseeds;
static const uint8_t *cur_p;
static size_t cur_n;
static char crash_path[512];

static void on_fatal(int sig) {
    int fd = open(crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (cur_p && cur_n) (void)!write(fd, cur_p, cur_n);
        close(fd);
        static const char m[] = "replay: the failing input is in ";
        (void)!write(2, m, sizeof m - 1);
        (void)!write(2, crash_path, strlen(crash_path));
        (void)!write(2, "\n", 1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void add_seed(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    uint8_t *buf = malloc(REPLAY_MAX_INPUT);
    size_t n = fread(buf, 1, REPLAY_MAX_INPUT, f);
    fclose(f);
    if (nseeds == capseeds) {
        capseeds = capseeds ? capseeds * 2 : 64;
        seeds = realloc(seeds, capseeds * sizeof *seeds);
    }
    seeds[nseeds].p = realloc(buf, n ? n : 1);
    seeds[nseeds].n = n;
    nseeds++;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void add_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        add_seed(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        names = realloc(names, (n + 1) * sizeof *names);
        names[n++] = strdup(de->d_name);
    }
    if (d) closedir(d);
    qsort(names, n, sizeof *names, cmp_str); /* the same order everywhere */
    for (size_t i = 0; i < n; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, names[i]);
        add_seed(p);
        free(names[i]);
    }
    free(names);
}

static uint64_t rng;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* One input, in a heap buffer of exactly its size. */
static void run(const uint8_t *p, size_t n) {
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    cur_p = copy;
    cur_n = n;
    LLVMFuzzerTestOneInput(copy, n);
    cur_p = NULL;
    free(copy);
}

static size_t mutate(uint8_t *b, size_t n, size_t cap) {
    static const uint8_t boundary[] = {0, 1, 0x7f, 0x80, 0xff, '0', '9', '%', '"', '\\', ',', ':', '{', '}', '[', ']'};
    int edits = 1 + (int)(next() % 4);
    for (int e = 0; e < edits; e++) {
        switch (next() % 7) {
        case 0: /* flip a bit */
            if (n) b[next() % n] ^= (uint8_t)(1u << (next() % 8));
            break;
        case 1: /* a boundary byte */
            if (n) b[next() % n] = boundary[next() % sizeof boundary];
            break;
        case 2: { /* insert random bytes */
            size_t k = 1 + next() % 8, at = n ? next() % (n + 1) : 0;
            if (n + k > cap) break;
            memmove(b + at + k, b + at, n - at);
            for (size_t i = 0; i < k; i++) b[at + i] = (uint8_t)next();
            n += k;
            break;
        }
        case 3: { /* delete bytes */
            if (!n) break;
            size_t at = next() % n, k = 1 + next() % 16;
            if (k > n - at) k = n - at;
            memmove(b + at, b + at + k, n - at - k);
            n -= k;
            break;
        }
        case 4: { /* repeat a chunk */
            if (!n) break;
            size_t at = next() % n, k = 1 + next() % 32;
            if (k > n - at) k = n - at;
            if (n + k > cap) break;
            size_t to = next() % (n + 1);
            memmove(b + to + k, b + to, n - to);
            memmove(b + to, b + (at >= to ? at + k : at), k);
            n += k;
            break;
        }
        case 5: { /* splice in a piece of another seed */
            const seed *o = &seeds[next() % nseeds];
            if (!o->n) break;
            size_t from = next() % o->n, k = 1 + next() % 64;
            if (k > o->n - from) k = o->n - from;
            size_t at = n ? next() % n : 0;
            if (at + k > cap) break;
            memcpy(b + at, o->p + from, k);
            if (at + k > n) n = at + k;
            break;
        }
        default: /* cut */
            if (n) n = next() % n;
            break;
        }
    }
    return n;
}

int main(int argc, char **argv) {
    unsigned long long runs = 1000, seconds = 0, seedk = 1;
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-runs=", 6) == 0) runs = strtoull(argv[i] + 6, NULL, 10);
        else if (strncmp(argv[i], "-max_total_time=", 16) == 0) seconds = strtoull(argv[i] + 16, NULL, 10);
        else if (strncmp(argv[i], "-seed=", 6) == 0) seedk = strtoull(argv[i] + 6, NULL, 10);
        else if (argv[i][0] == '-') fprintf(stderr, "replay: ignoring %s (a libFuzzer flag)\n", argv[i]);
        else add_path(argv[i]);
    }
    if (!nseeds) {
        fprintf(stderr, "usage: %s [-runs=N] [-max_total_time=S] [-seed=K] FILE|DIR...\n", name);
        return 2;
    }
    snprintf(crash_path, sizeof crash_path, "crash-replay-%s", name);
    signal(SIGABRT, on_fatal);
    signal(SIGSEGV, on_fatal);
    rng = 0x9E3779B97F4A7C15ull ^ (seedk * 0xD1B54A32D192ED03ull);
    if (!rng) rng = 1;

    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < nseeds; i++) run(seeds[i].p, seeds[i].n);
    uint8_t *b = malloc(REPLAY_MAX_INPUT);
    unsigned long long done = 0;
    for (; done < runs; done++) {
        if (seconds && (done & 15) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((unsigned long long)(t.tv_sec - t0.tv_sec) >= seconds) break;
        }
        const seed *s = &seeds[next() % nseeds];
        memcpy(b, s->p, s->n);
        size_t n = mutate(b, s->n, REPLAY_MAX_INPUT);
        run(b, n);
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    double secs = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%s: %zu seeds and %llu mutations in %.1f s (%.0f executions/s), no failure\n", name, nseeds, done, secs,
           (double)(nseeds + done) / (secs > 0 ? secs : 1e-9));
    free(b);
    for (size_t i = 0; i < nseeds; i++) free(seeds[i].p);
    free(seeds);
    return 0;
}

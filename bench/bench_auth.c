/*
 * bench_auth.c — what verifying an API key costs: the server's path
 * (evs__keys_verify: the file check, the keyed BLAKE2b of the secret, the
 * constant-time compare) against hashing the same secret with Argon2id at
 * libsodium's interactive and moderate settings, as a password store would.
 * Each figure is the median of 5 runs; the ratio says how much a slow hash
 * would add to every request.  With a postgresql:// URL, also the same
 * verify on a keystore in that database (the generation compared at most
 * every EVS__KEYS_RECHECK_NS, so a query per 200 ms in the loop).
 * Usage: bench_auth [scale [postgresql://URL]] (scale default 1).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/keys.h"
#include "core/core.h"

#define RUNS 5

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v) {
    qsort(v, RUNS, sizeof *v, cmp_double);
    return v[RUNS / 2];
}

/* n verifies of key on ks, RUNS times: the median ns per verify, or -1 when one fails. */
static double verify_ns(evs__keystore *ks, const char *key, long n) {
    double v[RUNS];
    for (int r = 0; r < RUNS; r++) {
        int64_t t0 = evs__mono_ns();
        for (long i = 0; i < n; i++) {
            evs__principal *p = NULL;
            if (evs__keys_verify(ks, key, &p) != EVS_AUTH_OK) return -1;
            evs__principal_unref(p);
        }
        v[r] = (double)(evs__mono_ns() - t0) / (double)n;
    }
    return median(v);
}

int main(int argc, char **argv) {
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1) scale = 1;
    if (sodium_init() < 0) return 1;
    char dir[] = "/tmp/evs-bench-auth-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    evs__keystore *ks;
    if (evs__keys_open(dir, 1, &ks)) {
        fprintf(stderr, "bench_auth: %s\n", evs_errmsg());
        return 1;
    }
    char key[EVS_KEY_TEXT_MAX];
    /* a store with some keys, the one verified among them */
    for (int i = 0; i < 20; i++)
        if (evs__keys_create(ks, "reader", NULL, 0, NULL, key, sizeof key, NULL)) return 1;
    double inter[RUNS], moder[RUNS];
    long n_fast = 200000 * scale, n_slow = 5 * scale;
    unsigned char out[32], salt[crypto_pwhash_SALTBYTES] = {0};
    for (int r = 0; r < RUNS; r++) {
        int64_t t0 = evs__mono_ns();
        for (long i = 0; i < n_slow; i++)
            if (crypto_pwhash(out, sizeof out, key, strlen(key), salt, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE, crypto_pwhash_ALG_ARGON2ID13))
                return 1;
        inter[r] = (double)(evs__mono_ns() - t0) / (double)n_slow;
        t0 = evs__mono_ns();
        for (long i = 0; i < n_slow; i++)
            if (crypto_pwhash(out, sizeof out, key, strlen(key), salt, crypto_pwhash_OPSLIMIT_MODERATE,
                              crypto_pwhash_MEMLIMIT_MODERATE, crypto_pwhash_ALG_ARGON2ID13))
                return 1;
        moder[r] = (double)(evs__mono_ns() - t0) / (double)n_slow;
    }
    double f = verify_ns(ks, key, n_fast), i = median(inter), m = median(moder);
    if (f < 0) return 1;
    printf("bench_auth: key verify (keyed BLAKE2b-256, evs__keys_verify)   %10.2f us\n", f / 1e3);
    printf("bench_auth: Argon2id interactive (ops 2, 64 MiB)            %10.2f us  (%.0fx)\n", i / 1e3, i / f);
    printf("bench_auth: Argon2id moderate (ops 3, 256 MiB)              %10.2f us  (%.0fx)\n", m / 1e3, m / f);
    evs__keys_close(ks);
    if (argc > 2) {
        evs__keystore *pks;
        if (evs__keys_open(argv[2], 1, &pks)) {
            fprintf(stderr, "bench_auth: %s\n", evs_errmsg());
            return 1;
        }
        for (int k = 0; k < 20; k++)
            if (evs__keys_create(pks, "reader", NULL, 0, NULL, key, sizeof key, NULL)) return 1;
        double pf = verify_ns(pks, key, n_fast);
        evs__keys_close(pks);
        if (pf < 0) return 1;
        printf("bench_auth: key verify on PostgreSQL (same, keys in the database) %10.2f us  (%.2fx)\n", pf / 1e3,
               pf / f);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {
    }
    return 0;
}

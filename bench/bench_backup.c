/*
 * bench_backup.c — evs_backup (include/evstore_backup.h) against `cp -r`
 * of the same store, in the same run.
 *
 * Builds a store of EVS_BENCH_BACKUP_MB megabytes of events (default 300:
 * four full 64 MiB segments and a fifth partly written, as a live store
 * usually is) with a 100-stream workload of 1 KiB events, closes it, then
 * for EVS_BENCH_ROUNDS rounds (default 5) times, in alternating order:
 *   cp    `cp -r STORE DEST` (the baseline: no sync, copies the preallocated
 *         tail of the newest segment as data);
 *   cp+sync the same, then `sync -f` on the copy's filesystem, so that the
 *         copy is as durable as the backup when the time is taken;
 *   backup evs_backup(STORE, DEST) (syncs every file it writes; the newest
 *         segment's unwritten part becomes a hole);
 * and once per round an incremental backup after 4 MiB more events.
 * Throughput is the store's apparent size (what cp copies) over the time;
 * each round's ratios backup/cp and backup/(cp+sync) are taken and the median of the ratios is
 * reported with the medians of the throughputs, and the real size (du) of
 * both copies.  Both read the store from the page cache (it was just
 * written, and each round reads it again), so this measures the copy path,
 * not the disk's read speed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "evstore.h"
#include "evstore_backup.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static long env_long(const char *name, long def) {
    const char *v = getenv(name);
    return v && *v ? atol(v) : def;
}

static void sh(const char *fmt, const char *a, const char *b) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_backup: failed: %s\n", cmd);
        exit(1);
    }
}

/* du -sb / du -sB1 of dir: apparent (1) or real (0) bytes. */
static double du(const char *dir, int apparent) {
    char cmd[4200];
    if (snprintf(cmd, sizeof cmd, "du -s%s '%s'", apparent ? "b" : "B1", dir) >= (int)sizeof cmd) {
        fprintf(stderr, "bench_backup: path too long: %s\n", dir);
        exit(1);
    }
    FILE *p = popen(cmd, "r");
    double v = 0;
    if (p) {
        if (fscanf(p, "%lf", &v) != 1) v = 0;
        pclose(p);
    }
    return v;
}

static void fill(const char *dir, double mb) {
    evs_store *s = NULL;
    if (evs_store_create(&s) || evs_store_set_durability(s, EVS_DURABILITY_NONE, 0) ||
        evs_store_open(s, dir, EVS_OPEN_CREATE)) {
        fprintf(stderr, "bench_backup: open %s: %s\n", dir, evs_errmsg());
        exit(1);
    }
    static char data[1100];
    int k = snprintf(data, sizeof data, "{\"pad\":\"");
    memset(data + k, 'x', 1000);
    snprintf(data + k + 1000, sizeof data - (size_t)k - 1000, "\"}");
    evs_event_in ev[8];
    memset(ev, 0, sizeof ev);
    for (int i = 0; i < 8; i++) ev[i].event_type = "Padded", ev[i].data = data, ev[i].data_len = strlen(data);
    double bytes = 0;
    for (unsigned i = 0; bytes < mb * 1048576; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "s-%u", i % 100);
        evs_append_result r;
        if (evs_append(s, stream, EVS_EXPECT_ANY, ev, 8, &r, NULL)) {
            fprintf(stderr, "bench_backup: append: %s\n", evs_errmsg());
            exit(1);
        }
        bytes += 8 * 1180.0;
    }
    if (evs_store_close(s)) {
        fprintf(stderr, "bench_backup: close: %s\n", evs_errmsg());
        exit(1);
    }
}

int main(void) {
    const char *base = getenv("EVS_BENCH_DIR");
    char root[4096], store[4200], dcp[4200], dbk[4200];
    snprintf(root, sizeof root, "%s/backup-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(root)) {
        perror("bench_backup: mkdtemp");
        return 1;
    }
    snprintf(store, sizeof store, "%s/store", root);
    snprintf(dcp, sizeof dcp, "%s/cp", root);
    snprintf(dbk, sizeof dbk, "%s/bk", root);
    double mb = (double)env_long("EVS_BENCH_BACKUP_MB", getenv("EVS_BENCH_QUICK") ? 100 : 300);
    int rounds = (int)env_long("EVS_BENCH_ROUNDS", getenv("EVS_BENCH_QUICK") ? 3 : 5);
    if (rounds < 1 || rounds > 50) rounds = 5;
    fill(store, mb);
    double store_mb = du(store, 1) / 1e6;
    printf("store: %.0f MB of events, %.1f MB apparent (%.1f MB on disk); %d rounds\n", mb * 1.048576, store_mb,
           du(store, 0) / 1e6, rounds);
    double cp_mbs[50], cps_mbs[50], bk_mbs[50], ratio[50], ratio_s[50], inc_s[50], cp_real = 0, bk_real = 0;
    for (int r = 0; r < rounds; r++) {
        double t[3] = {0, 0, 0};
        for (int k = 0; k < 3; k++) {
            int op = (r + k) % 3; /* 0 cp -r, 1 cp -r then sync, 2 evs_backup; the order rotates */
            sh("rm -rf '%s' '%s'", dcp, dbk);
            sh("sync -f '%s'%s", root, "");
            double t0 = now_s();
            if (op < 2) {
                sh("cp -r '%s' '%s'", store, dcp);
                if (op == 1) sh("sync -f '%s/index/data.mdb'%s", dcp, "");
            } else {
                evs_backup_report rep;
                if (evs_backup(store, dbk, 0, &rep)) {
                    fprintf(stderr, "bench_backup: backup: %s\n", evs_errmsg());
                    return 1;
                }
                bk_real = (double)rep.real_bytes;
            }
            t[op] = now_s() - t0;
        }
        /* the cp copy's real size (made again when the last op was the backup) */
        if (access(dcp, F_OK) != 0) sh("cp -r '%s' '%s'", store, dcp);
        cp_real = du(dcp, 0);
        cp_mbs[r] = store_mb / t[0];
        cps_mbs[r] = store_mb / t[1];
        bk_mbs[r] = store_mb / t[2];
        ratio[r] = bk_mbs[r] / cp_mbs[r];
        ratio_s[r] = bk_mbs[r] / cps_mbs[r];
        /* incremental: 4 MiB more, then update the backup */
        if (access(dbk, F_OK) != 0) {
            evs_backup_report rep;
            if (evs_backup(store, dbk, 0, &rep)) return 1;
        }
        fill(store, 4);
        evs_backup_report inc;
        double t0 = now_s();
        if (evs_backup(store, dbk, EVS_BACKUP_INCREMENTAL, &inc)) {
            fprintf(stderr, "bench_backup: incremental: %s\n", evs_errmsg());
            return 1;
        }
        inc_s[r] = now_s() - t0;
        printf("round %d: cp -r %.1f MB/s, cp -r + sync %.1f MB/s, backup %.1f MB/s (x%.2f, x%.2f), "
               "incremental %.3f s (%llu segments reused, %.1f MB written)\n",
               r + 1, cp_mbs[r], cps_mbs[r], bk_mbs[r], ratio[r], ratio_s[r], inc_s[r],
               (unsigned long long)inc.files_reused, inc.bytes_written / 1e6);
        store_mb = du(store, 1) / 1e6;
    }
    printf("backup: median %.1f MB/s; cp -r median %.1f MB/s, cp -r + sync median %.1f MB/s; median ratios "
           "backup/cp x%.2f, backup/(cp + sync) x%.2f\n",
           median(bk_mbs, rounds), median(cp_mbs, rounds), median(cps_mbs, rounds), median(ratio, rounds),
           median(ratio_s, rounds));
    printf("incremental backup after 4 MiB more: median %.3f s\n", median(inc_s, rounds));
    printf("real size on disk: backup %.1f MB, cp -r %.1f MB\n", bk_real / 1e6, cp_real / 1e6);
    sh("rm -rf '%s'%s", root, "");
    return 0;
}

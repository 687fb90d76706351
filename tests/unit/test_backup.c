/*
 * test_backup.c — evs_backup, evs_restore and evs_verify_backup
 * (include/evstore_backup.h) against a store that another process appends
 * to while it is backed up.
 *
 * The writer is a child process (LMDB forbids one process opening an
 * environment twice, and a backup is taken from outside the writer): it
 * appends 1..3-event appends to small segments and records each
 * acknowledged append in a file as it returns.  What is checked:
 *   - every append acknowledged before a backup started is in it, and the
 *     backup holds exactly the store's events up to its head (ids, streams,
 *     data) and nothing after, across several segments and rollovers;
 *   - an incremental backup reuses every segment the first one had sealed
 *     and copies only the rest;
 *   - the restored store passes evs_store_check; cuts at a position in the
 *     middle of an append and at a time drop whole appends, and the cut
 *     store gives the freed positions to new appends;
 *   - verify finds a flipped byte (naming the segment and the record's
 *     offset) and a missing file; restore refuses a damaged backup and
 *     leaves nothing behind;
 *   - bad input: a non-empty destination that is no backup, a restore into
 *     a non-empty directory, an incremental backup without a backup, a
 *     backup of another store, an incomplete backup — each refused with a
 *     message naming it, nothing changed; a destination that cannot be
 *     created is EVS_EIO naming it.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "evstore_backup.h"
#include "testutil.h"

#define SEG (64u * 1024)
#define MAXEV 200000

typedef struct ev_copy {
    evs_uuid id;
    char stream[32];
    uint64_t spos;
    int64_t recorded_at;
    char *data;
    size_t data_len;
} ev_copy;

static void writer(const char *store, const char *acks, const char *stop) {
    evs_store *s = tu_open(store, EVS_DURABILITY_BATCH, SEG);
    int fd = open(acks, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) _exit(3);
    char data[3][600], stream[32];
    for (unsigned i = 0; i < 60000 && access(stop, F_OK) != 0; i++) {
        size_t n = 1 + i % 3;
        evs_event_in ev[3];
        for (size_t k = 0; k < n; k++) {
            snprintf(data[k], sizeof data[k], "{\"append\":%u,\"k\":%zu,\"pad\":\"%0*u\"}", i, k,
                     (int)(100 + (i * 37 + k * 11) % 400), i);
            ev[k] = tu_event("Written", data[k]);
        }
        snprintf(stream, sizeof stream, "w-%u", i % 7);
        evs_append_result res;
        if (evs_append(s, stream, EVS_EXPECT_ANY, ev, n, &res, NULL)) {
            fprintf(stderr, "writer: append %u: %s\n", i, evs_errmsg());
            _exit(4);
        }
        char line[64];
        int len = snprintf(line, sizeof line, "%llu %llu\n", (unsigned long long)res.first_global_position,
                           (unsigned long long)res.last_global_position);
        if (write(fd, line, (size_t)len) != len) _exit(5);
    }
    close(fd);
    _exit(evs_store_close(s) == EVS_OK ? 0 : 6);
}

/* The acknowledged appends so far: count and the highest last position. */
static size_t read_acks(const char *acks, uint64_t *max_last, uint64_t (*pairs)[2], size_t cap) {
    FILE *f = fopen(acks, "r");
    size_t n = 0;
    unsigned long long a, b;
    *max_last = 0;
    if (!f) return 0;
    while (fscanf(f, "%llu %llu\n", &a, &b) == 2) {
        if (pairs && n < cap) pairs[n][0] = a, pairs[n][1] = b;
        if (b > *max_last) *max_last = b;
        n++;
    }
    fclose(f);
    return n;
}

static void wait_acks(const char *acks, size_t want) {
    uint64_t m;
    for (int i = 0; i < 6000 && read_acks(acks, &m, NULL, 0) < want; i++) usleep(10000);
}

/* Every event of the store in dir, by position (index 1..n).  Returns n. */
static size_t load_events(const char *dir, ev_copy *out, size_t cap) {
    evs_store *s = NULL;
    evs_reader *r = NULL;
    const evs_event *ev;
    size_t n = 0;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, EVS_OPEN_READONLY), EVS_OK);
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    int rc;
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK && n + 1 < cap) {
        ev_copy *c = &out[++n];
        CHECK_INT(ev->global_position, n);
        c->id = ev->event_id;
        snprintf(c->stream, sizeof c->stream, "%.*s", (int)ev->stream_len, ev->stream);
        c->spos = ev->stream_position;
        c->recorded_at = ev->recorded_at;
        c->data = malloc(ev->data_len + 1);
        memcpy(c->data, ev->data, ev->data_len);
        c->data_len = ev->data_len;
    }
    CHECK_RC(rc, EVS_DONE);
    evs_reader_close(r);
    evs_store_close(s);
    return n;
}

static void free_events(ev_copy *e, size_t n) {
    for (size_t i = 1; i <= n; i++) free(e[i].data);
}

/* The store in dir holds exactly want[1..head]: same ids, streams, data; check passes. */
static void check_restored(const char *dir, const ev_copy *want, uint64_t head) {
    static ev_copy got[MAXEV];
    size_t n = load_events(dir, got, MAXEV);
    CHECK_INT(n, head);
    size_t bad = 0;
    for (size_t i = 1; i <= n && i <= head; i++)
        if (memcmp(&got[i].id, &want[i].id, sizeof got[i].id) || strcmp(got[i].stream, want[i].stream) ||
            got[i].spos != want[i].spos || got[i].data_len != want[i].data_len ||
            memcmp(got[i].data, want[i].data, got[i].data_len))
            bad++;
    CHECK_INT(bad, 0);
    free_events(got, n);
    evs_store *s = NULL;
    evs_check_report rep;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, EVS_OPEN_READONLY), EVS_OK);
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    CHECK_INT(rep.events, head);
    CHECK_INT(rep.errors, 0);
    CHECK_INT(evs_head(s), head);
    evs_store_close(s);
}

static int count_entries(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "find '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

static void flip(const char *path, long off) {
    int fd = open(path, O_RDWR);
    unsigned char c;
    CHECK(fd >= 0);
    CHECK_INT(pread(fd, &c, 1, off), 1);
    c ^= 0x40;
    CHECK_INT(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* Whether files under dir keep holes the way a backup writes them (sized
   first, data written at the front): not every filesystem does, and what
   st_blocks reports is the filesystem's, not the backup's. */
static int fs_keeps_holes(const char *dir) {
    char path[4300];
    snprintf(path, sizeof path, "%s/holeprobe", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644), ok = 0;
    char blk[4096];
    memset(blk, 1, sizeof blk);
    struct stat st;
    if (fd >= 0 && ftruncate(fd, 8 << 20) == 0 && pwrite(fd, blk, sizeof blk, 0) == (ssize_t)sizeof blk &&
        fsync(fd) == 0 && fstat(fd, &st) == 0)
        ok = (uint64_t)st.st_blocks * 512 < (1u << 20);
    if (fd >= 0) close(fd);
    unlink(path);
    return ok;
}

static uint64_t pairs[MAXEV][2];
static ev_copy orig[MAXEV];

int main(void) {
    char *tmp = tu_tempdir("backup");
    char store[4200], acks[4200], stop[4200], dest[4200], rdir[4200], path[4400], other[4200];
    snprintf(store, sizeof store, "%s/store", tmp);
    snprintf(acks, sizeof acks, "%s/acks", tmp);
    snprintf(stop, sizeof stop, "%s/stop", tmp);
    snprintf(dest, sizeof dest, "%s/bk", tmp);

    /* ---- a backup and an incremental one while a writer appends */
    pid_t pid = fork();
    if (pid == 0) writer(store, acks, stop);
    CHECK(pid > 0);
    wait_acks(acks, 400);
    uint64_t acked1;
    read_acks(acks, &acked1, NULL, 0);
    evs_backup_report r1, r2;
    CHECK_RC(evs_backup(store, dest, 0, &r1), EVS_OK);
    CHECK(r1.head >= acked1);
    CHECK_INT(r1.incremental, 0);
    CHECK(r1.files_copied >= 4); /* index + several segments */
    CHECK(r1.bytes_written < r1.apparent_bytes); /* the newest segment's unwritten part is not written */
    /* ... and takes no blocks: what a file occupies is what was written, rounded up to the block */
    if (fs_keeps_holes(tmp)) CHECK(r1.real_bytes <= r1.bytes_written + r1.files * 4096);
    uint64_t sealed1 = r1.files_copied - 2;   /* copied: index, the segments; the last is partial */
    CHECK_INT(strlen(r1.store_id), 16);

    size_t n1 = read_acks(acks, &acked1, NULL, 0);
    wait_acks(acks, n1 + 400);
    uint64_t acked2;
    read_acks(acks, &acked2, NULL, 0);
    CHECK_RC(evs_backup(store, dest, EVS_BACKUP_INCREMENTAL, &r2), EVS_OK);
    CHECK_INT(r2.incremental, 1);
    CHECK_INT(r2.previous_head, r1.head);
    CHECK(r2.head >= acked2 && r2.head > r1.head);
    CHECK_INT(r2.files_reused, sealed1);
    CHECK_INT(r2.files_linked, 0);
    /* only the new segments (the first backup's partial one onwards) and the index were copied */
    CHECK(r2.files_copied >= 2);
    CHECK_INT(r2.files, r2.files_copied + r2.files_reused);

    /* let it write on past the backup point, then stop it */
    wait_acks(acks, read_acks(acks, &acked2, NULL, 0) + 200);
    int fd = open(stop, O_WRONLY | O_CREAT, 0644);
    close(fd);
    int st = 0;
    CHECK_INT(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    uint64_t acked_all;
    size_t nacks = read_acks(acks, &acked_all, pairs, MAXEV);
    size_t norig = load_events(store, orig, MAXEV);
    CHECK_INT(norig, acked_all);
    CHECK(acked_all > r2.head); /* events after the backup point exist in the store */

    /* ---- verify, then a full restore: exactly the events up to the backup point */
    evs_verify_report vr;
    CHECK_RC(evs_verify_backup(dest, &vr), EVS_OK);
    CHECK_INT(vr.events, r2.head);
    CHECK_INT(vr.errors, 0);
    evs_restore_report rr;
    snprintf(rdir, sizeof rdir, "%s/full", tmp);
    CHECK_RC(evs_restore(dest, rdir, NULL, &rr), EVS_OK);
    CHECK_INT(rr.backup_head, r2.head);
    CHECK_INT(rr.head, r2.head);
    CHECK_INT(rr.dropped_events, 0);
    check_restored(rdir, orig, r2.head);

    /* ---- the key source is checked before anything is written; one without a key store gives 0 keys */
    evs_restore_opts ko;
    memset(&ko, 0, sizeof ko);
    snprintf(path, sizeof path, "%s/no-such-store", tmp);
    ko.keys_from = path;
    snprintf(rdir, sizeof rdir, "%s/with-keys", tmp);
    CHECK_RC(evs_restore(dest, rdir, &ko, &rr), EVS_ENOTFOUND);
    CHECK_CONTAINS(evs_errmsg(), "no store at");
    CHECK(access(rdir, F_OK) != 0);
    ko.keys_from = store;
    CHECK_RC(evs_restore(dest, rdir, &ko, &rr), EVS_OK);
    CHECK_INT(rr.key_files, 0);
    check_restored(rdir, orig, r2.head);

    /* ---- restore to a position in the middle of a 3-event append: dropped whole */
    uint64_t mid = 0, mid_first = 0;
    for (size_t i = 0; i < nacks; i++)
        if (pairs[i][1] - pairs[i][0] == 2 && pairs[i][1] < r2.head / 2) mid_first = pairs[i][0], mid = pairs[i][0] + 1;
    CHECK(mid > 0);
    evs_restore_opts o;
    memset(&o, 0, sizeof o);
    o.has_position = 1;
    o.to_position = mid;
    snprintf(rdir, sizeof rdir, "%s/to-pos", tmp);
    CHECK_RC(evs_restore(dest, rdir, &o, &rr), EVS_OK);
    CHECK_INT(rr.head, mid_first - 1);
    CHECK_INT(rr.dropped_events, r2.head - (mid_first - 1));
    check_restored(rdir, orig, mid_first - 1);
    {
        /* a new store: the positions after the cut are free again */
        evs_store *s = tu_open(rdir, EVS_DURABILITY_SYNC, 0);
        evs_event_in e = tu_event("After", "{}");
        evs_append_result res;
        CHECK_RC(evs_append(s, "after", EVS_EXPECT_ANY, &e, 1, &res, NULL), EVS_OK);
        CHECK_INT(res.first_global_position, mid_first);
        CHECK_RC(evs_store_close(s), EVS_OK);
    }

    /* ---- restore to a time: the appends recorded at or before it */
    uint64_t tpos = r2.head / 3;
    memset(&o, 0, sizeof o);
    o.has_time = 1;
    o.to_time_ns = orig[tpos].recorded_at;
    uint64_t want_head = 0;
    for (uint64_t i = 1; i <= r2.head; i++)
        if (orig[i].recorded_at <= o.to_time_ns) want_head = i;
    snprintf(rdir, sizeof rdir, "%s/to-time", tmp);
    CHECK_RC(evs_restore(dest, rdir, &o, &rr), EVS_OK);
    CHECK_INT(rr.head, want_head);
    CHECK(want_head >= tpos);
    check_restored(rdir, orig, want_head);

    /* ---- verify finds a flipped byte inside a record, naming segment and offset */
    snprintf(path, sizeof path, "%s/log/00000002.seg", dest);
    flip(path, 200);
    CHECK_RC(evs_verify_backup(dest, &vr), EVS_ECORRUPT);
    CHECK(vr.errors >= 1);
    CHECK_CONTAINS(vr.first_error, "segment 00000002.seg offset ");
    CHECK_CONTAINS(evs_errmsg(), "00000002.seg");
    /* restore refuses it and leaves nothing behind */
    snprintf(rdir, sizeof rdir, "%s/from-damaged", tmp);
    CHECK_RC(evs_restore(dest, rdir, NULL, &rr), EVS_ECORRUPT);
    CHECK_CONTAINS(evs_errmsg(), "is damaged: segment 00000002.seg offset ");
    CHECK(access(rdir, F_OK) != 0);
    flip(path, 200);
    CHECK_RC(evs_verify_backup(dest, &vr), EVS_OK);
    /* damage the records do not show (the index snapshot): restore names the block, leaves nothing */
    snprintf(path, sizeof path, "%s/index/data.mdb", dest);
    flip(path, 5000);
    CHECK_RC(evs_restore(dest, rdir, NULL, &rr), EVS_ECORRUPT);
    CHECK_CONTAINS(evs_errmsg(), "index/data.mdb offset 0: the block of");
    CHECK(access(rdir, F_OK) != 0);
    CHECK_RC(evs_verify_backup(dest, &vr), EVS_ECORRUPT);
    CHECK_CONTAINS(vr.first_error, "index/data.mdb offset 0");
    flip(path, 5000);
    /* a flipped byte in the hole after the backup point */
    snprintf(path, sizeof path, "%s/log/%08u.seg", dest, (unsigned)(r2.files_copied + r2.files_reused - 1));
    flip(path, SEG - 8);
    CHECK_RC(evs_verify_backup(dest, &vr), EVS_ECORRUPT);
    CHECK_CONTAINS(vr.first_error, "non-zero byte after the backup's data");
    flip(path, SEG - 8);
    /* a missing file */
    snprintf(path, sizeof path, "%s/index/data.mdb", dest);
    snprintf(other, sizeof other, "%s/saved.mdb", tmp);
    CHECK_INT(rename(path, other), 0);
    CHECK_RC(evs_verify_backup(dest, &vr), EVS_ECORRUPT);
    CHECK_CONTAINS(vr.first_error, "index/data.mdb: missing");
    CHECK_INT(rename(other, path), 0);
    CHECK_RC(evs_verify_backup(dest, &vr), EVS_OK);

    /* ---- bad input: refused, named, nothing changed */
    snprintf(other, sizeof other, "%s/notbackup", tmp);
    mkdir(other, 0755);
    snprintf(path, sizeof path, "%s/precious.txt", other);
    fd = open(path, O_WRONLY | O_CREAT, 0644);
    CHECK_INT(write(fd, "keep", 4), 4);
    close(fd);
    CHECK_RC(evs_backup(store, other, 0, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "is not empty and holds no backup");
    CHECK_INT(count_entries(other), 2);
    CHECK_RC(evs_restore(dest, other, NULL, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "is not empty");
    CHECK_INT(count_entries(other), 2);
    /* a destination that cannot be made (mkdir under /proc: ENOENT) is an I/O error naming it and
       the OS's reason, not "not found", which is the store's or the backup's */
    CHECK_RC(evs_backup(store, "/proc/nope/x", 0, NULL), EVS_EIO);
    CHECK_CONTAINS(evs_errmsg(), "cannot create directory /proc/nope: No such file or directory");
    CHECK_RC(evs_restore(dest, "/proc/nope/x", NULL, NULL), EVS_EIO);
    CHECK_CONTAINS(evs_errmsg(), "cannot create directory /proc/nope: No such file or directory");
    snprintf(path, sizeof path, "%s/empty", tmp);
    CHECK_RC(evs_backup(store, path, EVS_BACKUP_INCREMENTAL, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "holds no backup to update");
    CHECK(access(path, F_OK) != 0);
    CHECK_RC(evs_verify_backup(other, NULL), EVS_ENOTFOUND);
    CHECK_RC(evs_backup(path, dest, 0, NULL), EVS_ENOTFOUND); /* no store there */
    snprintf(path, sizeof path, "%s/inside", store);
    CHECK_RC(evs_backup(store, path, 0, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "lies inside the store");
    CHECK(access(path, F_OK) != 0);
    /* a backup of another store into this backup */
    snprintf(other, sizeof other, "%s/store2", tmp);
    {
        evs_store *s = tu_open(other, EVS_DURABILITY_SYNC, SEG);
        evs_event_in e = tu_event("X", "{}");
        evs_append_result res;
        CHECK_RC(evs_append(s, "x", EVS_EXPECT_ANY, &e, 1, &res, NULL), EVS_OK);
        CHECK_RC(evs_store_close(s), EVS_OK);
    }
    CHECK_RC(evs_backup(other, dest, 0, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "holds a backup of another store");
    CHECK_RC(evs_verify_backup(dest, &vr), EVS_OK);
    /* an incomplete backup is refused by restore and verify */
    snprintf(path, sizeof path, "%s/" EVS_BACKUP_PARTIAL, dest);
    fd = open(path, O_WRONLY | O_CREAT, 0644);
    close(fd);
    snprintf(rdir, sizeof rdir, "%s/from-partial", tmp);
    CHECK_RC(evs_restore(dest, rdir, NULL, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "incomplete backup");
    CHECK(access(rdir, F_OK) != 0);
    CHECK_RC(evs_verify_backup(dest, NULL), EVS_EINVAL);
    /* a backup into it again completes it */
    CHECK_RC(evs_backup(store, dest, 0, &r1), EVS_OK);
    CHECK(access(path, F_OK) != 0);
    CHECK_INT(r1.head, acked_all);
    CHECK_RC(evs_verify_backup(dest, &vr), EVS_OK);

    /* ---- --link: sealed segments share the store's inodes; a later backup replaces, never writes through */
    snprintf(other, sizeof other, "%s/linked", tmp);
    CHECK_RC(evs_backup(store, other, EVS_BACKUP_LINK, &r1), EVS_OK);
    CHECK(r1.files_linked >= 2);
    struct stat a, b;
    snprintf(path, sizeof path, "%s/log/00000001.seg", other);
    char spath[4400];
    snprintf(spath, sizeof spath, "%s/log/00000001.seg", store);
    CHECK_INT(stat(path, &a), 0);
    CHECK_INT(stat(spath, &b), 0);
    CHECK_INT(a.st_ino, b.st_ino);
    CHECK_RC(evs_verify_backup(other, &vr), EVS_OK);
    snprintf(rdir, sizeof rdir, "%s/from-linked", tmp);
    CHECK_RC(evs_restore(other, rdir, NULL, &rr), EVS_OK);
    check_restored(rdir, orig, acked_all);
    CHECK_INT(stat(spath, &b), 0); /* the store's segment is untouched by the restore's open */
    CHECK_INT(a.st_ino, b.st_ino);

    free_events(orig, norig);
    tu_rmrf(tmp);
    free(tmp);
    return TEST_REPORT();
}

/*
 * verify.c — evs_verify_backup: every file of a backup against its
 * manifest (presence and size first, then every log record's checksum and
 * position up to the backup point, which names a damaged record's offset,
 * then every block and the zeros after the copied data).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/backup_internal.h"
#include "core/core.h"
#include "log/record.h"

static void vproblem(evs_verify_report *r, const char *fmt, ...) EVS_PRINTF(2, 3);
static void vproblem(evs_verify_report *r, const char *fmt, ...) {
    if (r->errors++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->first_error, sizeof r->first_error, fmt, ap);
        va_end(ap);
    }
}

/* A file's presence and size: 0 when both are as the manifest says. */
static int verify_present(const char *backup, const evs__bk_file *f, evs_verify_report *r) {
    char p[BK_PATH];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", backup, f->path);
    if (stat(p, &st)) {
        vproblem(r, "%s: missing (%s)", f->path, strerror(errno));
        return -1;
    }
    if ((uint64_t)st.st_size != f->size) {
        vproblem(r, "%s: %" PRIu64 " bytes, the manifest says %" PRIu64, f->path, (uint64_t)st.st_size, f->size);
        return -1;
    }
    return 0;
}

/* A present file's blocks against the manifest, and zeros after the copied data. */
static int verify_file(const char *backup, const evs__bk_file *f, evs_verify_report *r) {
    char p[BK_PATH];
    snprintf(p, sizeof p, "%s/%s", backup, f->path);
    evs__bk_file got;
    memset(&got, 0, sizeof got);
    int rc = evs__bk_copy_range(p, f->path, NULL, f->data_size, f, &got, &r->bytes, NULL);
    free(got.crc);
    if (rc == EVS_ECORRUPT) {
        vproblem(r, "%s", evs_errmsg());
        return EVS_OK;
    }
    if (rc) return rc;
    /* after the copied data only zeros (holes are skipped with SEEK_DATA) */
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return evs__err_errno(-errno, "cannot open %s", p);
    uint8_t *buf = malloc(BK_BLOCK);
    if (!buf) {
        close(fd);
        return evs__err(EVS_ENOMEM, "verify: out of memory");
    }
    for (uint64_t off = f->data_size; off < f->size;) {
        off_t data = lseek(fd, (off_t)off, SEEK_DATA);
        if (data < 0) break; /* only a hole is left */
        off = (uint64_t)data;
        ssize_t n = pread(fd, buf, BK_BLOCK, (off_t)off);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i]) {
                vproblem(r, "%s offset %" PRIu64 ": a non-zero byte after the backup's data (which ends at %" PRIu64
                         ")", f->path, off + (uint64_t)i, f->data_size);
                off = f->size;
                break;
            }
        r->bytes += (uint64_t)n;
        off += (uint64_t)n;
    }
    free(buf);
    close(fd);
    return EVS_OK;
}

int evs_verify_backup(const char *backup, evs_verify_report *rep) {
    evs_verify_report r;
    evs__bk_manifest m;
    memset(&r, 0, sizeof r);
    if (!backup) return evs__err(EVS_EINVAL, "verify-backup: NULL directory");
    int rc = evs__bk_open_backup(backup, &m);
    if (rc) return rc;
    r.head = m.head;
    /* first every file's presence and size, then the records (which name the
       offset of a damaged one), then every block of every file */
    int *ok = calloc(m.files.n ? m.files.n : 1, sizeof *ok), log_ok = 1;
    if (!ok) {
        evs__bk_list_free(&m.files);
        return evs__err(EVS_ENOMEM, "verify: out of memory");
    }
    for (size_t i = 0; i < m.files.n; i++) {
        r.files++;
        ok[i] = verify_present(backup, &m.files.v[i], &r) == 0;
        if (!ok[i] && !strncmp(m.files.v[i].path, "log/", 4)) log_ok = 0;
    }
    /* every record's checksum up to the backup point */
    if (log_ok) {
        char p[BK_PATH];
        evs_log *log = NULL;
        evs_log_recovery rec;
        evs_log_config cfg = {.scan_only = 1, .readonly = 1};
        snprintf(p, sizeof p, "%s", backup);
        int lrc = evs__log_open(p, &cfg, 0, 0, &log, &rec);
        if (lrc == EVS_OK) {
            evs_lsn at = evs__log_start(log);
            uint64_t expect = 1;
            while (at < m.end) {
                evs_frame f;
                char why[160];
                lrc = evs__log_read(log, at, m.end, &f);
                if (lrc == EVS_OK && f.first_gpos != expect)
                    lrc = evs__err(EVS_ECORRUPT, "segment %08u.seg offset %u: position %" PRIu64 ", expected %" PRIu64,
                                   EVS_LSN_SEG(at), EVS_LSN_OFF(at), f.first_gpos, expect);
                if (lrc == EVS_OK && evs__frame_payload_check(NULL, &f, why, sizeof why))
                    lrc = evs__err(EVS_ECORRUPT, "segment %08u.seg offset %u: %s", EVS_LSN_SEG(at), EVS_LSN_OFF(at),
                                   why);
                if (lrc) break;
                r.records++;
                r.events += f.count;
                expect = f.first_gpos + f.count;
                at = f.next;
            }
            if (lrc == EVS_DONE) lrc = EVS_OK;
            if (lrc == EVS_ECORRUPT) vproblem(&r, "%s", evs_errmsg());
            else if (lrc) rc = lrc;
            else if (expect != m.next_gpos)
                vproblem(&r, "log: the records end at position %" PRIu64 ", the manifest's head is %" PRIu64,
                         expect - 1, m.head);
            evs__log_close(log);
        } else if (lrc == EVS_ECORRUPT || lrc == EVS_EFORMAT || lrc == -ENOENT) {
            vproblem(&r, "%s", evs_errmsg());
        } else {
            rc = lrc;
        }
    }
    for (size_t i = 0; i < m.files.n && !rc; i++)
        if (ok[i]) rc = verify_file(backup, &m.files.v[i], &r);
    free(ok);
    evs__bk_list_free(&m.files);
    if (!rc && r.errors) rc = evs__err(EVS_ECORRUPT, "backup %s is damaged: %s", backup, r.first_error);
    if (rep) *rep = r;
    return rc;
}

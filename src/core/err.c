/*
 * err.c — error codes, their names and messages, and the per-thread message
 * that says what went wrong and where.
 *
 * The codes come from one table (EVS_ERRNO_MAP in evstore.h).  A failing
 * call leaves a formatted message in thread-local storage, like nats.c's
 * error text: the CLI prints it and the server logs it, so "segment
 * 00000003.seg offset 81920: checksum mismatch" reaches the user instead of
 * a bare number.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

static _Thread_local char evs_tls_msg[1024];

const char *evs_strerror(int code) {
    switch (code) {
#define EVS__CASE(name, value, msg) \
    case value:                     \
        return msg;
        EVS_ERRNO_MAP(EVS__CASE)
#undef EVS__CASE
    default:
        break;
    }
    if (code < 0 && code > -4096) return strerror(-code);
    return "unknown error";
}

const char *evs_errname(int code) {
    switch (code) {
#define EVS__NAME(name, value, msg) \
    case value:                     \
        return #name;
        EVS_ERRNO_MAP(EVS__NAME)
#undef EVS__NAME
    default:
        break;
    }
    if (code < 0 && code > -4096) return "ERRNO";
    return "EUNKNOWN";
}

const char *evs_errmsg(void) {
    return evs_tls_msg[0] ? evs_tls_msg : "no error";
}

void evs__err_clear(void) { evs_tls_msg[0] = '\0'; }

int evs__err(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(evs_tls_msg, sizeof evs_tls_msg, fmt, ap);
    va_end(ap);
    return code;
}

int evs__err_errno(int neg_errno, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(evs_tls_msg, sizeof evs_tls_msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof evs_tls_msg)
        snprintf(evs_tls_msg + n, sizeof evs_tls_msg - (size_t)n, ": %s", evs_strerror(neg_errno));
    return neg_errno;
}

int evs__err_prefix(int code, const char *fmt, ...) {
    char old[sizeof evs_tls_msg];
    memcpy(old, evs_tls_msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(evs_tls_msg, sizeof evs_tls_msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof evs_tls_msg)
        snprintf(evs_tls_msg + n, sizeof evs_tls_msg - (size_t)n, "%s", old);
    return code;
}

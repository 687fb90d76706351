/*
 * nats_common.c — settings, connection, errors, subject tokens and the
 * header codec shared by the relay and the mirror (nats_dist.h describes
 * the message layout).
 *
 * Header values: nats.c writes a header as "Key: value\r\n" and trims the
 * value when reading it back, so a value with CR or LF, or with spaces at
 * either end, would not come back byte for byte.  Such a value (metadata
 * pretty-printed by its producer, say) travels base64-encoded under
 * "Key-B64"; the reader looks for both names.
 */
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "dist/nats_internal.h"

void evs__nats_settings_free(evs__nats_settings *st) {
    if (!st) return;
    free(st->urls_buf);
    free(st->stream);
    free(st->prefix);
    memset(st, 0, sizeof *st);
}

/* A stream name: what JetStream allows (no spaces, '.', '*', '>', path separators). */
static int stream_name_ok(const char *s) {
    if (!*s || strlen(s) > 255) return 0;
    for (const char *p = s; *p; p++)
        if (*p <= ' ' || *p == '.' || *p == '*' || *p == '>' || *p == '/' || *p == '\\' || (unsigned char)*p >= 0x7f)
            return 0;
    return 1;
}

/* A subject prefix: dot-separated tokens without wildcards or spaces. */
static int prefix_ok(const char *s) {
    if (!*s || strlen(s) > 200 || *s == '.' || s[strlen(s) - 1] == '.' || strstr(s, "..")) return 0;
    for (const char *p = s; *p; p++)
        if (*p <= ' ' || *p == '*' || *p == '>' || (unsigned char)*p >= 0x7f) return 0;
    return 1;
}

int evs__nats_settings_init(const evs_nats_config *cfg, evs__nats_settings *out) {
    memset(out, 0, sizeof *out);
    int rc = EVS_OK;
    if (!cfg || !cfg->urls || !*cfg->urls)
        return evs__err(EVS_EINVAL, "NATS: no server URL given (--nats nats://HOST:PORT[,...])");
    const char *stream = cfg->stream ? cfg->stream : EVS_NATS_DEFAULT_STREAM;
    const char *prefix = cfg->subject_prefix ? cfg->subject_prefix : EVS_NATS_DEFAULT_PREFIX;
    if (!stream_name_ok(stream))
        return evs__err(EVS_EINVAL, "NATS: stream name \"%s\" is not a JetStream stream name "
                                    "(printable ASCII without spaces, '.', '*', '>', '/')", stream);
    if (!prefix_ok(prefix))
        return evs__err(EVS_EINVAL, "NATS: subject prefix \"%s\" is not a subject without wildcards "
                                    "(tokens separated by single dots)", prefix);
    if (cfg->window > EVS_NATS_MAX_WINDOW)
        return evs__err(EVS_EINVAL, "NATS: window %u is above the limit %u", cfg->window, EVS_NATS_MAX_WINDOW);
    if (cfg->replicas > 5) return evs__err(EVS_EINVAL, "NATS: replicas %u: JetStream allows 1 to 5", cfg->replicas);
    out->urls_buf = strdup(cfg->urls);
    out->stream = strdup(stream);
    out->prefix = strdup(prefix);
    if (!out->urls_buf || !out->stream || !out->prefix) {
        rc = evs__err(EVS_ENOMEM, "NATS: out of memory for the settings");
        goto fail;
    }
    for (char *save = NULL, *tok = strtok_r(out->urls_buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        if (out->nservers == EVS_NATS_MAX_SERVERS) {
            rc = evs__err(EVS_EINVAL, "NATS: more than %d server URLs", EVS_NATS_MAX_SERVERS);
            goto fail;
        }
        if (strncmp(tok, "nats://", 7) != 0 && strncmp(tok, "tls://", 6) != 0 && !strchr(tok, ':')) {
            rc = evs__err(EVS_EINVAL, "NATS: server URL \"%s\" is not nats://HOST:PORT", tok);
            goto fail;
        }
        out->servers[out->nservers++] = tok;
    }
    if (out->nservers == 0) {
        rc = evs__err(EVS_EINVAL, "NATS: no server URL in \"%s\"", cfg->urls);
        goto fail;
    }
    out->replicas = cfg->replicas ? cfg->replicas : 1;
    out->window = cfg->window ? cfg->window : EVS_NATS_DEFAULT_WINDOW;
    out->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : EVS_NATS_DEFAULT_TIMEOUT_MS;
    out->log = cfg->log;
    return EVS_OK;
fail:
    evs__nats_settings_free(out);
    return rc;
}

int evs__nats_config_check(const evs_nats_config *cfg) {
    evs__nats_settings st;
    int rc = evs__nats_settings_init(cfg, &st);
    if (rc == EVS_OK) evs__nats_settings_free(&st);
    return rc;
}

int evs__nats_fail(natsStatus s, jsErrCode jerr, const char *what) {
    natsStatus last_s = NATS_OK;
    const char *last = nats_GetLastError(&last_s);
    char js[48] = "";
    if (jerr) snprintf(js, sizeof js, " (JetStream error %d)", (int)jerr);
    if (last && *last && strcmp(last, natsStatus_GetText(s)) != 0)
        return evs__err(EVS_EIO, "%s: %s%s: %s", what, natsStatus_GetText(s), js, last);
    return evs__err(EVS_EIO, "%s: %s%s", what, natsStatus_GetText(s), js);
}

int evs__nats_connect(const evs__nats_settings *st, jsOptions *jsopts, natsConnection **nc, jsCtx **js) {
    *nc = NULL;
    *js = NULL;
    natsOptions *o = NULL;
    const char *servers[EVS_NATS_MAX_SERVERS];
    memcpy(servers, st->servers, sizeof servers);
    natsStatus s = natsOptions_Create(&o);
    /* The servers in the order given (the first one the user named is
       tried first), reconnecting for ever: the relay and the mirror ride
       out a node's death, they do not give up on it. */
    if (s == NATS_OK) s = natsOptions_SetServers(o, servers, st->nservers);
    if (s == NATS_OK) s = natsOptions_SetNoRandomize(o, true);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 100);
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, st->timeout_ms);
    if (s == NATS_OK) s = natsOptions_SetName(o, "evstore");
    if (s == NATS_OK) s = natsConnection_Connect(nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what, "NATS: cannot connect to %s%s", st->servers[0],
                 st->nservers > 1 ? " or the other servers given" : "");
        *nc = NULL;
        return evs__nats_fail(s, 0, what);
    }
    jsOptions jo;
    if (!jsopts) {
        jsOptions_Init(&jo);
        jsopts = &jo;
    }
    if (!jsopts->Wait) jsopts->Wait = st->timeout_ms;
    s = natsConnection_JetStream(js, *nc, jsopts);
    if (s != NATS_OK) {
        natsConnection_Destroy(*nc);
        *nc = NULL;
        *js = NULL;
        return evs__nats_fail(s, 0, "NATS: cannot open a JetStream context");
    }
    return EVS_OK;
}

void evs__nats_token(const char *name, size_t n, char *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)name[i];
        out[k++] = (c <= ' ' || c == '.' || c == '*' || c == '>' || c == 0x7f) ? '_' : (char)c;
    }
    if (k == 0 && cap > 1) out[k++] = '_';
    out[k] = '\0';
}

static int needs_b64(const char *v, size_t n) {
    if (n == 0) return 0;
    if (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t') return 1;
    for (size_t i = 0; i < n; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0') return 1;
    return 0;
}

natsStatus evs__nats_hdr_set(natsMsg *m, const char *key, const char *value, size_t n) {
    char small[512];
    char *buf = small;
    natsStatus s;
    if (needs_b64(value, n)) {
        size_t need = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
        char k[64];
        snprintf(k, sizeof k, "%s-B64", key);
        if (need > sizeof small && !(buf = malloc(need))) return NATS_NO_MEMORY;
        sodium_bin2base64(buf, need, (const unsigned char *)value, n, sodium_base64_VARIANT_ORIGINAL);
        s = natsMsgHeader_Set(m, k, buf);
    } else {
        if (n + 1 > sizeof small && !(buf = malloc(n + 1))) return NATS_NO_MEMORY;
        memcpy(buf, value, n);
        buf[n] = '\0';
        s = natsMsgHeader_Set(m, key, buf);
    }
    if (buf != small) free(buf);
    return s;
}

int evs__nats_hdr_get(natsMsg *m, const char *key, char *buf, size_t cap, size_t *n) {
    const char *v = NULL;
    if (natsMsgHeader_Get(m, key, &v) == NATS_OK && v) {
        size_t len = strlen(v);
        if (len + 1 > cap) return evs__err(EVS_EINVAL, "header %s: %zu bytes, more than %zu", key, len, cap - 1);
        memcpy(buf, v, len + 1);
        *n = len;
        return EVS_OK;
    }
    char k[64];
    snprintf(k, sizeof k, "%s-B64", key);
    if (natsMsgHeader_Get(m, k, &v) != NATS_OK || !v) return EVS_ENOTFOUND;
    size_t len = 0;
    if (sodium_base642bin((unsigned char *)buf, cap - 1, v, strlen(v), NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return evs__err(EVS_EINVAL, "header %s: not base64, or more than %zu bytes", k, cap - 1);
    buf[len] = '\0';
    *n = len;
    return EVS_OK;
}

int evs__nats_hdr_u64(natsMsg *m, const char *key, uint64_t *out) {
    const char *v = NULL;
    if (natsMsgHeader_Get(m, key, &v) != NATS_OK || !v || !*v)
        return evs__err(EVS_EINVAL, "message without a %s header", key);
    uint64_t x = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9' || x > (UINT64_MAX - 9) / 10)
            return evs__err(EVS_EINVAL, "header %s: \"%s\" is not a position", key, v);
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *out = x;
    return EVS_OK;
}

int evs__nats_stream_info(jsCtx *js, const char *stream, jsStreamInfo **si) {
    jsErrCode jerr = 0;
    *si = NULL;
    natsStatus s = js_GetStreamInfo(si, js, stream, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        *si = NULL;
        return evs__err(EVS_ENOTFOUND, "JetStream stream %s does not exist", stream);
    }
    if (s != NATS_OK) {
        char what[300];
        snprintf(what, sizeof what, "NATS: stream %s: cannot read its state", stream);
        *si = NULL;
        return evs__nats_fail(s, jerr, what);
    }
    return EVS_OK;
}

int evs__nats_stream_state(const evs_nats_config *cfg, evs_nats_stream_state *out) {
    memset(out, 0, sizeof *out);
    evs__nats_settings st;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    int rc = evs__nats_settings_init(cfg, &st);
    if (rc) return rc;
    if ((rc = evs__nats_connect(&st, NULL, &nc, &js))) goto cleanup;
    if ((rc = evs__nats_stream_info(js, st.stream, &si))) goto cleanup;
    out->messages = si->State.Msgs;
    out->first_seq = si->State.FirstSeq;
    out->last_seq = si->State.LastSeq;
    out->bytes = si->State.Bytes;
    out->replicas = si->Config ? (unsigned)si->Config->Replicas : 0;
    if (si->Cluster && si->Cluster->Leader) snprintf(out->leader, sizeof out->leader, "%s", si->Cluster->Leader);
cleanup:
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    evs__nats_settings_free(&st);
    return rc;
}

void evs__nats_library_close(void) { nats_Close(); }

void evs__nats_log(const evs__nats_settings *st, const char *fmt, ...) {
    if (!st->log) return;
    va_list ap;
    va_start(ap, fmt);
    char line[900];
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(st->log, "evstore: %s\n", line);
    fflush(st->log);
}

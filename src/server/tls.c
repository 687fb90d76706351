/*
 * tls.c — the server's certificate for libmicrohttpd's TLS (tls.h): loaded
 * from PEM files, handed to each handshake by a GnuTLS retrieve callback
 * from one atomic pointer, swapped whole on SIGHUP.
 */
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/tls.h"

#define MAX_CHAIN 16
#define MAX_PEM ((size_t)1 << 20)

typedef struct tls_cred {
    gnutls_pcert_st pcert[MAX_CHAIN];
    unsigned npcert;
    gnutls_privkey_t key;
    struct tls_cred *older;        /* replaced ones, kept until evs__tls_free */
} tls_cred;

static _Atomic(tls_cred *) current;
static char *cert_path, *key_path;
static pthread_mutex_t reload_mu = PTHREAD_MUTEX_INITIALIZER;

static void cred_free(tls_cred *c) {
    for (unsigned i = 0; i < c->npcert; i++) gnutls_pcert_deinit(&c->pcert[i]);
    if (c->key) gnutls_privkey_deinit(c->key);
    free(c);
}

/* The whole file into d (gnutls_free'd by the caller); 0 or -1 with why. */
static int read_pem(const char *what, const char *path, gnutls_datum_t *d, char *why, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, cap, "TLS %s %s: cannot open it", what, path);
        return -1;
    }
    unsigned char *buf = gnutls_malloc(MAX_PEM + 1);
    size_t n = buf ? fread(buf, 1, MAX_PEM + 1, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!buf || err || n == 0 || n > MAX_PEM) {
        gnutls_free(buf);
        snprintf(why, cap, "TLS %s %s: %s", what, path,
                 !buf ? "out of memory" : err ? "cannot read it" : n == 0 ? "the file is empty" : "over 1 MiB");
        return -1;
    }
    buf[n] = '\0';
    d->data = buf;
    d->size = (unsigned)n;
    return 0;
}

/* A checked credential from the two files; NULL with why. */
static tls_cred *cred_load(const char *cert_file, const char *key_file, char *why, size_t cap) {
    gnutls_datum_t cd = {NULL, 0}, kd = {NULL, 0};
    tls_cred *c = NULL;
    gnutls_certificate_credentials_t check = NULL;
    if (read_pem("certificate", cert_file, &cd, why, cap) || read_pem("key", key_file, &kd, why, cap)) goto fail;
    /* the pair must belong together: GnuTLS checks it when both are set on one credential */
    int rc = gnutls_certificate_allocate_credentials(&check);
    if (rc == 0) rc = gnutls_certificate_set_x509_key_mem2(check, &cd, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (rc < 0) {
        snprintf(why, cap, "TLS certificate %s with key %s: %s", cert_file, key_file, gnutls_strerror(rc));
        goto fail;
    }
    if (!(c = calloc(1, sizeof *c))) {
        snprintf(why, cap, "TLS: out of memory");
        goto fail;
    }
    c->npcert = MAX_CHAIN;
    rc = gnutls_pcert_list_import_x509_raw(c->pcert, &c->npcert, &cd, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0) {
        c->npcert = 0;
        snprintf(why, cap, "TLS certificate %s: %s", cert_file, gnutls_strerror(rc));
        goto fail;
    }
    if ((rc = gnutls_privkey_init(&c->key)) < 0 ||
        (rc = gnutls_privkey_import_x509_raw(c->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        snprintf(why, cap, "TLS key %s: %s", key_file, gnutls_strerror(rc));
        goto fail;
    }
    gnutls_certificate_free_credentials(check);
    gnutls_free(cd.data);
    gnutls_memset(kd.data, 0, kd.size);
    gnutls_free(kd.data);
    return c;
fail:
    if (check) gnutls_certificate_free_credentials(check);
    if (c) cred_free(c);
    gnutls_free(cd.data);
    if (kd.data) gnutls_memset(kd.data, 0, kd.size);
    gnutls_free(kd.data);
    return NULL;
}

/* Every handshake: the current pair (read once: a reload in between gives the whole new one). */
static int retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                    const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length, gnutls_pcert_st **pcert,
                    unsigned int *pcert_length, gnutls_privkey_t *pkey) {
    (void)session;
    (void)req_ca_dn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    tls_cred *c = atomic_load(&current);
    if (!c) return -1;
    *pcert = c->pcert;
    *pcert_length = c->npcert;
    *pkey = c->key;
    return 0;
}

void *evs__tls_callback(void) { return (void *)&retrieve; }

int evs__tls_load(const char *cert_file, const char *key_file, char *why, size_t cap) {
    tls_cred *c = cred_load(cert_file, key_file, why, cap);
    if (!c) return -1;
    free(cert_path);
    free(key_path);
    cert_path = strdup(cert_file);
    key_path = strdup(key_file);
    if (!cert_path || !key_path) {
        cred_free(c);
        snprintf(why, cap, "TLS: out of memory");
        return -1;
    }
    c->older = atomic_exchange(&current, c);
    return 0;
}

int evs__tls_reload(char *why, size_t cap) {
    pthread_mutex_lock(&reload_mu);
    int rc = -1;
    tls_cred *c = cert_path ? cred_load(cert_path, key_path, why, cap) : NULL;
    if (c) {
        c->older = atomic_exchange(&current, c); /* new handshakes from here on; open sessions keep theirs */
        rc = 0;
    } else if (!cert_path) {
        snprintf(why, cap, "TLS is not on");
    }
    pthread_mutex_unlock(&reload_mu);
    return rc;
}

void evs__tls_free(void) {
    tls_cred *c = atomic_exchange(&current, NULL);
    while (c) {
        tls_cred *o = c->older;
        cred_free(c);
        c = o;
    }
    free(cert_path);
    free(key_path);
    cert_path = key_path = NULL;
}

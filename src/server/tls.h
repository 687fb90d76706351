/*
 * tls.h — HTTPS and WSS for `evstore serve` (--tls-cert, --tls-key):
 * libmicrohttpd's TLS (GnuTLS), TLS 1.2 and 1.3 only, with the certificate
 * handed to each handshake by a callback so that SIGHUP can swap it without
 * dropping a connection.
 *
 * The callback (gnutls_certificate_retrieve_function2) reads the current
 * credential through one atomic pointer: a reload loads and checks the new
 * pair first (a bad file keeps the old one, and says why), then swaps the
 * pointer, so a handshake sees the old pair or the new one, never half of
 * one.  Credentials replaced by a reload are kept until the server stops:
 * sessions that started with them may still refer to them, and a pair is a
 * few kilobytes per reload.
 *
 * Thread rules: evs__tls_load before the daemon starts, evs__tls_reload
 * from the main thread (serve.c's signal loop), evs__tls_free after the
 * daemon stopped.  One server per process (GnuTLS's callback has no user
 * pointer).
 */
#ifndef EVS_TLS_H
#define EVS_TLS_H

#include <stddef.h>

/* TLS 1.2+ only: GnuTLS's defaults without SSL 3.0, TLS 1.0 and 1.1. */
#define EVS_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/*
 * Load the PEM certificate chain and key (the pair must match); 0, or -1
 * with why (a sentence naming the file and the fault).
 */
int evs__tls_load(const char *cert_file, const char *key_file, char *why, size_t cap);
/* Load the files again and swap them in for new handshakes; 0, or -1 with why (the old pair stays). */
int evs__tls_reload(char *why, size_t cap);
/* The callback to give libmicrohttpd (MHD_OPTION_HTTPS_CERT_CALLBACK), as a generic pointer. */
void *evs__tls_callback(void);
/* Release every credential loaded (after the daemon stopped). */
void evs__tls_free(void);

#endif

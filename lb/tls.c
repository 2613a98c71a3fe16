/* tls: OpenSSL server context with hot reload (see tls.h). */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct tls {
    pthread_mutex_t mu; /* guards ctx: proxy threads read it, SIGHUP swaps it */
    SSL_CTX *ctx;
    char *cert_file;
    char *key_file;
    unsigned generation;
};

/* Writes the reason of the last OpenSSL failure after prefix into err and
 * empties the error queue. */
static void tls_set_err(char *err, size_t errlen, const char *prefix)
{
    unsigned long e = ERR_get_error();
    char msg[256] = "unknown error";
    if (e != 0)
        ERR_error_string_n(e, msg, sizeof(msg));
    ERR_clear_error();
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s: %s", prefix, msg);
}

/* ALPN: the tunnel speaks HTTP/1.1 only (websocket upgrades need it). A
 * client offering only h2 gets no ALPN answer instead of a handshake failure,
 * which lets it fall back to HTTP/1.1 the way browsers do. */
static int tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                           const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char want[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    unsigned char sellen = 0;
    if (SSL_select_next_proto(&sel, &sellen, want, sizeof(want) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    *outlen = sellen;
    return SSL_TLSEXT_ERR_OK;
}

/* Builds a fresh server context from the files; NULL with err on failure. */
static SSL_CTX *tls_ctx_build(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        tls_set_err(err, errlen, "SSL_CTX_new");
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        tls_set_err(err, errlen, "min protocol");
        goto fail;
    }
    /* Partial writes and a moving write buffer let the data path hand
     * SSL_write whatever its output buffer holds after a short write.
     * Releasing buffers keeps an idle TLS tunnel from pinning ~34 KiB of
     * OpenSSL read/write buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* A client that closes TCP without close_notify is an ordinary EOF for
     * a websocket tunnel, not an error worth a log line. No renegotiation:
     * it only adds attack surface to a TLS 1.2 server. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_select, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        tls_set_err(err, errlen, cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        tls_set_err(err, errlen, key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_set_err(err, errlen, "certificate and key do not match");
        goto fail;
    }
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

tls_t *tls_create(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    if (cert_file == NULL || key_file == NULL || !*cert_file || !*key_file) {
        snprintf(err, errlen, "TLS needs both --cert and --key");
        return NULL;
    }
    tls_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        goto oom;
    pthread_mutex_init(&t->mu, NULL);
    t->cert_file = strdup(cert_file);
    t->key_file = strdup(key_file);
    if (t->cert_file == NULL || t->key_file == NULL)
        goto oom;
    t->ctx = tls_ctx_build(cert_file, key_file, err, errlen);
    if (t->ctx == NULL)
        goto fail;
    return t;

oom:
    snprintf(err, errlen, "out of memory");
fail:
    tls_free(t);
    return NULL;
}

void tls_free(tls_t *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    free(t->cert_file);
    free(t->key_file);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int tls_reload(tls_t *t, char *err, size_t errlen)
{
    /* Build outside the lock: reading files must not stall new handshakes. */
    SSL_CTX *fresh = tls_ctx_build(t->cert_file, t->key_file, err, errlen);
    if (fresh == NULL)
        return -1;
    pthread_mutex_lock(&t->mu);
    SSL_CTX *old = t->ctx;
    t->ctx = fresh;
    t->generation++;
    pthread_mutex_unlock(&t->mu);
    /* Drops only the table's reference: SSLs made from it hold their own. */
    SSL_CTX_free(old);
    return 0;
}

int tls_reload_files(tls_t *t, const char *cert_file, const char *key_file, char *err,
                     size_t errlen)
{
    if (strcmp(cert_file, t->cert_file) == 0 && strcmp(key_file, t->key_file) == 0)
        return tls_reload(t, err, errlen);
    char *c = strdup(cert_file), *k = strdup(key_file);
    if (c == NULL || k == NULL) {
        free(c);
        free(k);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* The paths are the main thread's alone; only ctx is shared. */
    char *oc = t->cert_file, *ok = t->key_file;
    t->cert_file = c;
    t->key_file = k;
    if (tls_reload(t, err, errlen) < 0) {
        t->cert_file = oc;
        t->key_file = ok;
        free(c);
        free(k);
        return -1;
    }
    free(oc);
    free(ok);
    return 0;
}

unsigned tls_generation(tls_t *t)
{
    pthread_mutex_lock(&t->mu);
    unsigned g = t->generation;
    pthread_mutex_unlock(&t->mu);
    return g;
}

SSL *tls_new_conn(tls_t *t, int fd)
{
    pthread_mutex_lock(&t->mu);
    SSL *ssl = SSL_new(t->ctx); /* takes its own reference on ctx */
    pthread_mutex_unlock(&t->mu);
    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    if (SSL_set_fd(ssl, fd) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

enum tls_io tls_classify(SSL *ssl, int ret)
{
    int e = SSL_get_error(ssl, ret);
    enum tls_io r;
    switch (e) {
    case SSL_ERROR_NONE:
        r = TLS_IO_OK;
        break;
    case SSL_ERROR_WANT_READ:
        r = TLS_IO_WANT_READ;
        break;
    case SSL_ERROR_WANT_WRITE:
        r = TLS_IO_WANT_WRITE;
        break;
    case SSL_ERROR_ZERO_RETURN:
        r = TLS_IO_EOF;
        break;
    case SSL_ERROR_SYSCALL:
        /* ret 0 with an empty queue is a plain TCP EOF; EAGAIN can show up
         * here on some paths and only means "not yet". */
        if (ERR_peek_error() == 0 && ret == 0)
            r = TLS_IO_EOF;
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            r = TLS_IO_WANT_READ;
        else
            r = TLS_IO_ERROR;
        break;
    default:
        r = TLS_IO_ERROR;
        break;
    }
    ERR_clear_error();
    return r;
}

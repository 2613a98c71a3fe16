/* tls: the lb's TLS server side on OpenSSL (TLS 1.2 and 1.3, ALPN http/1.1).
 *
 * One tls_t holds the current SSL_CTX. SIGHUP builds a new context from the
 * same certificate and key files and swaps it in for new connections; an SSL
 * object keeps a reference to the context it was made from, so connections
 * that are already open keep working on the old one until they end. */
#ifndef LB_TLS_H
#define LB_TLS_H

#include <stddef.h>

typedef struct tls tls_t;
struct ssl_st;

/* Loads cert_file (PEM chain) and key_file (PEM). NULL with err on failure. */
tls_t *tls_create(const char *cert_file, const char *key_file, char *err, size_t errlen);
void tls_free(tls_t *t);
/* Any thread. Re-reads the certificate and key; on failure the current
 * context stays in place and -1 is returned with err. */
int tls_reload(tls_t *t, char *err, size_t errlen);
/* Main thread. Like tls_reload(), from these files from now on (a reload
 * that names other files); on failure nothing changes. */
int tls_reload_files(tls_t *t, const char *cert_file, const char *key_file, char *err,
                     size_t errlen);
/* Any thread. A new server-side SSL on fd (non-blocking), in accept state,
 * holding a reference to the current context; NULL on allocation failure. */
struct ssl_st *tls_new_conn(tls_t *t, int fd);
/* Number of successful reloads (for logs and tests). */
unsigned tls_generation(tls_t *t);

/* Result of one SSL_read/SSL_write/SSL_accept mapped to what the caller does
 * next. */
enum tls_io {
    TLS_IO_OK = 0,     /* progress */
    TLS_IO_WANT_READ,  /* retry when the socket is readable */
    TLS_IO_WANT_WRITE, /* retry when the socket is writable */
    TLS_IO_EOF,        /* the peer closed (close_notify or plain EOF) */
    TLS_IO_ERROR,      /* fatal: close the connection */
};
/* Classifies ret (the return value of an SSL_* I/O call on ssl) and clears
 * the thread's OpenSSL error queue so one connection's failure does not show
 * up on the next. */
enum tls_io tls_classify(struct ssl_st *ssl, int ret);

#endif

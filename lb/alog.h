/* alog: the lb's access log, one line per client connection when it ends.
 *
 * Text (the default):
 *   access client=127.0.0.1:50312 backend=w2 req="GET /eval" status=101
 *          ms=5123.4 in=812 out=1904 reason=client_close id=6f0c... tls
 * JSON (--log-format json): the same keys as one object, with "ts",
 * "level", "daemon" and "event":"access" first.
 *
 * What the client controls (the request line, and the backend id a Redis
 * entry names) goes through log.c's escaping, so a request target holding
 * quotes, tabs, newlines or raw bytes cannot add or change a field. */
#ifndef LB_ALOG_H
#define LB_ALOG_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

typedef struct alog_rec {
    const char *client;  /* "HOST:PORT" of the peer */
    const char *backend; /* backend id; NULL = none picked */
    const char *req;     /* "METHOD path" as received (raw bytes); NULL = no request */
    int status;          /* the status the client got; 0 = none */
    double ms;           /* accept to close */
    uint64_t in, out;    /* bytes from / to the client */
    const char *reason;  /* why it ended (see README, "Proxying") */
    const char *id;      /* X-Request-Id; NULL = none */
    int tls;
    int uncounted; /* ms, in and out were not kept: logged as null */
} alog_rec_t;

#define ALOG_NFIELDS 10

/* Pure: the fields of r in their logged order; returns how many (at most
 * ALOG_NFIELDS). The strings stay r's. */
size_t alog_fields(const alog_rec_t *r, log_field_t *f);
/* Writes r's line at level info. */
void alog_write(const alog_rec_t *r);

#endif

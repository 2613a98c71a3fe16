/* fleet: the contract between load balancers and workers, in one place.
 *
 * What one side writes and the other reads lives here and nowhere else: the
 * id rule for what the lb sends in X-Lb-Id and the workers publish, the
 * headers the lb adds for the workers, and the wall clock both sides stamp
 * Redis state with. */
#ifndef COMMON_FLEET_H
#define COMMON_FLEET_H

#include <stddef.h>
#include <stdint.h>

/* ---- ids ------------------------------------------------------------------ */

#define FLEET_ID_MAX 63

/* True for an identifier the lb and its workers exchange in a header and
 * publish as a JSON key (X-Lb-Id): 1-63 of A-Z a-z 0-9 . _ : -. One rule on
 * both sides, so what the lb sends is what the worker counts. */
int fleet_id_ok(const char *p, size_t n);
/* Writes into out (at least 64 bytes) a default id that passes fleet_id_ok,
 * unique per process: "HOST-PID" when the host name fits the rule as it
 * is, else the host name with characters outside the rule as '-', cut to
 * fit, then "-" and 6 hex digits of a hash of the whole name, then "-PID",
 * so two long names that share a prefix stay apart. An empty name is "lb".
 * Returns out. */
char *fleet_id_default(const char *host, long pid, char *out, size_t outlen);

/* ---- headers -------------------------------------------------------------- */

/* What the lb adds to every head it sends a worker, replacing any a client
 * sent (lb/fwd.h says how each is built). */
#define FLEET_HDR_LB_ID           "X-Lb-Id"           /* the lb's id (fleet_id_ok) */
#define FLEET_HDR_SECRET          "X-Upstream-Secret" /* --upstream-secret-file */
#define FLEET_HDR_REQUEST_ID      "X-Request-Id"      /* the lb's access-log id */
#define FLEET_HDR_FORWARDED_FOR   "X-Forwarded-For"
#define FLEET_HDR_FORWARDED_PROTO "X-Forwarded-Proto"
#define FLEET_HDR_REAL_IP         "X-Real-IP"
#define FLEET_HDR_FORWARDED       "Forwarded" /* RFC 7239 */

/* ---- time ----------------------------------------------------------------- */

/* Wall-clock milliseconds: the clock of ts_ms and started_ms in a worker's
 * state, compared across hosts. */
uint64_t fleet_wall_ms(void);

#endif

/* fleet: the contract between load balancers and workers, in one place.
 *
 * What one side writes and the other reads lives here and nowhere else: the
 * Redis keys and the events channel, the id rules, the headers the lb adds
 * for the workers, and the wall clock both sides stamp Redis state with.
 * README.md ("Redis schema") describes the same for operators. */
#ifndef COMMON_FLEET_H
#define COMMON_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "sock.h"

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

/* ---- Redis ---------------------------------------------------------------- */

/* Every key starts with a prefix (--redis-prefix on each daemon). */
#define FLEET_DEFAULT_PREFIX "wslb:"
/* A worker's state key expires this long after its last write (PX), so a
 * worker that dies silently is gone from Redis within it... */
#define FLEET_STATE_TTL_MS 3000
/* ...and it writes the state this often while alive. */
#define FLEET_HEARTBEAT_MS 1000

/* Key builders. Each writes the name into buf (len bytes, NUL-terminated,
 * cut to fit; buf may be NULL when len is 0) and returns its full length,
 * as snprintf does: a result >= len did not fit. prefix NULL is
 * FLEET_DEFAULT_PREFIX.
 *   <prefix>workers      set: ids of workers that registered
 *   <prefix>worker:<id>  string: the worker's state JSON, PX FLEET_STATE_TTL_MS
 *   <prefix>events       pub/sub channel: join, drain and leave events */
size_t fleet_key_workers(const char *prefix, char *buf, size_t len);
size_t fleet_key_worker(const char *prefix, const char *id, size_t idlen, char *buf, size_t len);
size_t fleet_key_events(const char *prefix, char *buf, size_t len);

/* Worker ids (--id) as published: 1-127 bytes, no control characters. */
#define FLEET_WORKER_ID_LEN 128
int fleet_worker_id_ok(const char *p, size_t n);

/* One message on the events channel: {"event":"join","id":..,"addr":..}. */
enum fleet_event_type { FLEET_EV_JOIN = 0, FLEET_EV_DRAIN, FLEET_EV_LEAVE };

typedef struct fleet_event {
    enum fleet_event_type type;
    char id[FLEET_WORKER_ID_LEN];
    char addr[SOCK_ADDRSTRLEN]; /* as the worker advertises it; "" when absent */
} fleet_event_t;

/* "join", "drain" or "leave". */
const char *fleet_event_name(enum fleet_event_type t);
/* The message as compact JSON (free() it); NULL when out of memory. */
char *fleet_event_to_json(const fleet_event_t *e);
/* Pure: parses and validates one message (an unknown event is an error).
 * Returns 0, or -1 with a reason in err (may be NULL). */
int fleet_event_parse(const char *json, size_t len, fleet_event_t *out, char *err, size_t errlen);

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

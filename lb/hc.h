/* hc: active health checks of every backend in the table.
 *
 * Every interval each backend (static or discovered) gets a non-blocking
 * `GET <path>` on a fresh connection and reports the outcome to be_event():
 * 200 is a success (rise consecutive successes bring a backend back UP), 503
 * means the worker is draining (no new connections, existing ones kept),
 * anything else, a refused connect or a timeout is a failure (fall
 * consecutive ones take it DOWN); rise and fall are the table's
 * (be_table_set_health()). Backends start UP so that a fresh lb serves at
 * once; passive checks and retries cover one that is in fact dead. Runs on
 * the main loop. */
#ifndef LB_HC_H
#define LB_HC_H

#include <stddef.h>

#include "be.h"

struct ev_loop;

typedef struct hc_config {
    const char *path;     /* NULL = "/healthz" */
    unsigned interval_ms; /* 0 = 1000 */
    unsigned timeout_ms;  /* 0 = min(interval, 2000) */
} hc_config_t;

typedef struct hc hc_t;

/* Starts checking at once (first round right away). The table must outlive
 * the checker; cfg is copied. NULL with err on failure. */
hc_t *hc_create(struct ev_loop *loop, be_table_t *t, const hc_config_t *cfg, char *err,
                size_t errlen);
/* Stops every check in flight and frees. NULL is a no-op. */
void hc_free(hc_t *h);

#endif

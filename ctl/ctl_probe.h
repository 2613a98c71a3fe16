/* ctl_probe: one evaluation over a worker's /eval websocket, directly at
 * its address, to tell a worker that serves from one that merely answers
 * health checks.
 *
 * A blocking websocket client on common/ws.c (client-role framing, the
 * handshake key, message reassembly), bounded by one deadline. */
#ifndef CTL_PROBE_H
#define CTL_PROBE_H

#include <stddef.h>

typedef struct ctl_probe_opts {
    const char *addr;          /* the worker's HOST:PORT */
    const char *expect_id;     /* the id its hello must name; NULL: any */
    const char *secret;        /* sent as X-Upstream-Secret; NULL: none */
    const char *runtime;       /* e.g. "python3" */
    const char *code;          /* e.g. "print(1)" */
    const char *expect_stdout; /* exact output wanted; NULL: not checked */
    double timeout_s;
} ctl_probe_opts_t;

/* Opens ws://addr/eval, reads the hello, runs code and waits for its exit:
 * verdict ok with status 0 (and the expected output) is a pass. Returns 0
 * with the run's round trip in *ms, or -1 with the reason in err ("upgrade
 * answered 503: draining", "verdict timeout", "the worker at A is w3, not
 * w2", "timed out after 10.0 s waiting for the exit message"). */
int ctl_probe_run(const ctl_probe_opts_t *o, double *ms, char *err, size_t errlen);

#endif

/* run: evaluations — the /eval protocol, the queue and each run's life.
 *
 * A run is queued when no sandbox slot is free (up to --queue runs; beyond
 * that the client gets {"type":"error","error":"busy"}). When it gets a slot
 * its work dir is reset, its source written, the optional build step and then
 * the program started in the sandbox. Output is streamed as it arrives, as
 * valid UTF-8 JSON strings (a multi-byte character split across reads is
 * carried to the next chunk; invalid bytes become U+FFFD). The exit message
 * is sent once the namespace's init has been reaped and both output pipes
 * have reached EOF, so no output is ever lost behind the exit.
 *
 * A run outlives its client: when the connection closes its runs are killed
 * and detached, and freed once reaped. */
#ifndef WORKER_RUN_H
#define WORKER_RUN_H

#include <ev.h>
#include <stdint.h>
#include <sys/queue.h>

#include "buf.h"
#include "rt.h"
#include "sbx.h"
#include "wk.h"

struct wc_conn;

/* Verdicts in the order of wk_t.m_verdict. */
enum run_verdict {
    V_OK = 0,
    V_SIGNALED,
    V_TIMEOUT,
    V_MEMORY,
    V_OUTPUT,
    V_KILLED,
    V_ERROR,
    V__COUNT
};
const char *run_verdict_name(enum run_verdict v);

enum run_phase { RUN_QUEUED = 0, RUN_BUILD, RUN_EXEC, RUN_DONE };

typedef struct run {
    wk_t *w;
    struct wc_conn *conn; /* NULL once the client went away */
    char id[129];
    const rt_runtime_t *rt;
    enum run_phase phase;
    int slot;
    sbx_proc_t proc;
    int proc_live; /* proc holds a spawned, unreaped init */
    ev_io out_w, err_w, in_w;
    ev_child child_w;
    ev_timer timer;
    buf_t in;     /* stdin not yet written; counted in conn->stdin_pending */
    int in_close; /* close stdin once `in` is written */
    int in_gone;  /* the program closed its stdin: more input is dropped */
    char *code;
    size_t code_len;
    unsigned timeout_ms;
    uint64_t out_bytes, out_cap;
    int kill_reason;     /* -1, or the verdict that killing it will give */
    int attempts;        /* slots that failed it for a sandbox reason */
    uint64_t in_written; /* stdin bytes written to the program */
    int out_eof, err_eof, reaped;
    int wstatus;
    uint64_t t_start_ns;   /* when it got a slot */
    uint64_t cpu_ms_build; /* CPU the build step used */
    uint8_t carry[2][4];   /* incomplete UTF-8 tail per stream */
    int ncarry[2];
    TAILQ_ENTRY(run) qlink; /* in w->queue while queued */
    TAILQ_ENTRY(run) clink; /* in conn->runs while the client is there */
} run_t;

/* Handles one /eval text message from c. */
void run_handle_message(struct wc_conn *c, const char *data, size_t len);
/* The client closed: kills its runs and detaches them. */
void run_conn_gone(struct wc_conn *c);
/* The client's output drained below the low-water mark. */
void run_resume_output(struct wc_conn *c);
/* Kills every run (drain deadline or exit). */
void run_kill_all(wk_t *w, enum run_verdict why);
/* Starts queued runs while slots are free (call when a slot became free). */
void run_pump(wk_t *w);

#endif

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
 * and detached, and freed once reaped.
 *
 * run knows its clients only through run_client_t and the run_sink_t the
 * connection gives it: conn.c calls run, never the other way round. */
#ifndef WORKER_RUN_H
#define WORKER_RUN_H

#include <ev.h>
#include <stdint.h>
#include <sys/queue.h>

#include "buf.h"
#include "rt.h"
#include "sbx.h"
#include "wk.h"

#include <jansson.h>

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

/* What runs need of the client they report to. The connection fills one in
 * for its /eval websocket; ctx is handed back to each call. */
typedef struct run_sink {
    /* Queues one JSON text message (borrowed); -1 if the client is closing. */
    int (*send_json)(void *ctx, json_t *j);
    /* Output queued to the client is above its high-water mark: runs stop
     * reading their programs' output until run_resume_output. */
    int (*out_full)(void *ctx);
    /* Input the client's runs hold and their programs have not read grew
     * (or, negative, shrank) by delta bytes: the client's backpressure. */
    void (*stdin_changed)(void *ctx, long delta);
} run_sink_t;

/* A client's side of the evaluation protocol: its runs. Embedded in the
 * connection; run_client_gone before the connection goes. */
typedef struct run_client {
    wk_t *w;
    const run_sink_t *sink;
    void *ctx;
    struct run_list runs; /* evaluations this client started */
    size_t nruns;
    int paused; /* its runs stopped reading their pipes: output backlog */
} run_client_t;

enum run_phase { RUN_QUEUED = 0, RUN_BUILD, RUN_EXEC, RUN_DONE };

typedef struct run {
    wk_t *w;
    run_client_t *client; /* NULL once the client went away */
    char id[129];
    const rt_runtime_t *rt;
    enum run_phase phase;
    int slot;
    sbx_proc_t proc;
    int proc_live; /* proc holds a spawned, unreaped init */
    ev_io out_w, err_w, in_w;
    ev_child child_w;
    ev_timer timer;
    buf_t in;     /* stdin not yet written; told to the sink's stdin_changed */
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
    /* In w->queue while queued, in w->running while it holds a slot. */
    TAILQ_ENTRY(run) qlink;
    TAILQ_ENTRY(run) clink; /* in client->runs while the client is there */
} run_t;

/* A new client of w, reached through sink with ctx (both outlive it). */
void run_client_init(run_client_t *rc, wk_t *w, const run_sink_t *sink, void *ctx);
/* Handles one /eval text message from the client. */
void run_handle_message(run_client_t *rc, const char *data, size_t len);
/* The client is going: kills its runs and detaches them. */
void run_client_gone(run_client_t *rc);
/* The client's output drained below its low-water mark: paused runs read
 * their programs' output again. */
void run_resume_output(run_client_t *rc);
/* Kills every run (drain deadline or exit). */
void run_kill_all(wk_t *w, enum run_verdict why);
/* Starts queued runs while slots are free (call when a slot became free). */
void run_pump(wk_t *w);

#endif

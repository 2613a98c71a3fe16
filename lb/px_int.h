/* px_int: what the px_* files (the rooms of lb/proxy.h) share: limits, the
 * connection, thread and listener structs, and the functions one room calls
 * in another. Nothing outside lb/px_* and their unit tests includes it.
 *
 *   px_listen.c  listeners, accepting, threads, the lifecycle of a px_t
 *                (px_listen.h)
 *   px_sess.c    the session state machine: phases, events, backends, the
 *                retry policy
 *   px_http.c    the request head (routes, static files) and the lb's answers
 *   px_tun.c     the tunnel pump and websocket frame tracking
 *   px_io.c      the transport: reads and writes, plain or TLS (px_io.h)
 *   px_pp.c      the PROXY protocol header before anything else (--accept-proxy)
 *
 * px_listen hands accepted descriptors to the session, and the session
 * reads and writes only through px_io; px_sess, px_http and px_tun are the
 * one state machine in three files and call each other. */
#ifndef LB_PX_INT_H
#define LB_PX_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <pthread.h>
#include <time.h>

#include <ev.h>

#include "acc.h"
#include "proxy.h"
#include "px_io.h"
#include "px_pool.h"
#include "util.h"
#include "wsf.h"

#define PX_TUNNEL_CAP     (64 * 1024)   /* most bytes queued toward one side */
#define PX_SCRATCH        (64 * 1024)   /* per-thread read buffer */
#define PX_PUMP_BUDGET    (1024 * 1024) /* bytes per direction per event: fairness */
#define PX_HEAD_CHUNK     4096
#define PX_MAX_TRIES      8
#define PX_LINGER_S       2.0  /* REPLY + LINGER together */
#define PX_FIN_TIMEOUT_S  30.0 /* a half-closed tunnel gets this long to finish */
#define PX_ACCEPT_BACKOFF 0.1  /* after EMFILE/ENFILE */
#define PX_ACCEPT_BATCH   64
#define PX_BACKLOG        4096
#define PX_FD_RESERVE     32            /* descriptors kept from client connections */
#define PX_EVICT_AGE_NS   1000000000ull /* over the cap, a silent connection this old makes way */

enum { PX_WS_BY_NONE = 0, PX_WS_BY_CLIENT, PX_WS_BY_BACKEND };

/* PX_PROXY (--accept-proxy) comes first: the PROXY header precedes even a
 * TLS handshake. */
enum px_phase { PX_TLS_HS, PX_HEAD, PX_CONNECT, PX_WAIT, PX_TUNNEL, PX_REPLY, PX_LINGER, PX_PROXY };

enum px_reason {
    PX_R_NONE = 0,
    PX_R_CLIENT_EOF,
    PX_R_BACKEND_EOF,
    PX_R_CLIENT_RESET,
    PX_R_BACKEND_RESET,
    PX_R_IDLE_TIMEOUT,
    PX_R_HEAD_TIMEOUT,
    PX_R_BAD_REQUEST,
    PX_R_HEAD_TOO_LARGE,
    PX_R_NO_BACKEND,
    PX_R_ALL_FAILED,
    PX_R_OVERLOAD,
    PX_R_TLS_ERROR,
    PX_R_SHUTDOWN,
    PX_R_NO_MEMORY,
    PX_R_RATE_LIMITED,
    PX_R_NOT_FOUND,
    PX_R_CLIENT_CLOSE,
    PX_R_BACKEND_CLOSE,
    PX_R_BACKEND_LOST,
    PX_R_EVICTED,
    PX_R_BACKEND_DOWN, /* its backend was marked down (px_down.h) */
    PX_R_PING_TIMEOUT, /* the client answered no ping of the lb's in time */
    PX_R_PROXY_BAD,
    PX_R_PROXY_UNTRUSTED,
    PX_R__COUNT
};

struct px_thread;
struct px_conn;
struct pp;

/* What only the access log reads once the tunnel runs: in px_pre_t until
 * then, and past it (px_pre_free) only when the access log is on, so that an
 * idle tunnel does not carry it otherwise. */
typedef struct px_acct {
    uint64_t start_ns;
    uint64_t bytes_in, bytes_out; /* from / to the client */
    char req[48];                 /* "METHOD path", truncated */
} px_acct_t;

/* What a connection needs only on its way to an answer: allocated with the
 * connection and freed when the tunnel starts or the lb answers, so that
 * an idle tunnel does not carry it (px_conn_idle_bytes). */
typedef struct px_pre {
    struct px_conn *hq_prev, *hq_next; /* the thread's connections still without a head */
    buf_t hbuf;                        /* request head, then the prefix kept for retries */
    buf_t rbuf;                        /* backend response head being read */
    size_t hsent;                      /* bytes of hbuf already written to the current backend */
    be_t *tried[PX_MAX_TRIES];
    uint64_t aff_key; /* with aff_has: the session key's hash (--affinity) */
    int aff_has;
    /* Tries that ended because their backend went down or was removed
     * while the request waited: they are not failures of this request, so
     * they do not spend --retries (the tried array still bounds them). */
    uint8_t moved;
    struct pp *pp; /* PX_PROXY: the header read so far (lb/pp.h) */
    px_acct_t acct;
} px_pre_t;

typedef struct px_conn {
    struct px_conn *prev, *next; /* the thread's list, for shutdown */
    struct px_thread *th;
    px_pre_t *pre; /* until the tunnel starts or the lb answers; NULL after */
    px_side_t a;   /* client */
    px_side_t b;   /* backend */
    ev_timer timer;
    ev_tstamp last_io; /* tunnel activity; the timer checks it instead of re-arming per read */
    be_t *be;          /* current backend, with a reference */
    /* &pre->acct, then a copy of it or NULL (the access log was off when
     * pre went): px_count_in/out, px_req. */
    px_acct_t *acct;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
    uint16_t status;
    uint8_t ntried;
    uint8_t phase;
    uint8_t reason;
    unsigned closing : 1;
    unsigned tls : 1;
    unsigned retryable : 1; /* nothing beyond hbuf has reached the backend */
    unsigned is_get : 1;
    unsigned shed : 1;      /* over --max-conns: answer 503 once the head is in */
    unsigned only_503 : 1;  /* every backend tried so far answered 503 (draining) */
    unsigned trusted : 1;   /* peer is in --trusted-proxies */
    unsigned lim_held : 1;  /* counted in px->cfg.lim: lim_leave() at the end */
    unsigned rd_hint_a : 1; /* this event said the client socket is readable */
    unsigned rd_hint_b : 1; /* ... the backend socket */
    unsigned ws : 1;        /* the tunnel is a websocket (the backend said 101) */
    unsigned lb_closed : 1; /* the lb put its own close frame toward the client */
    unsigned ws_route : 1;  /* routed as a websocket upgrade (else a plain request) */
    unsigned up_capped : 1; /* client bytes beyond up_left are dropped, not forwarded */
    unsigned in_hq : 1;     /* on the thread's hq list */
    unsigned has_rid : 1;   /* rid is set: the request has an id (px_reqid) */
    unsigned ping_out : 1;  /* the lb's ping awaits its pong since ping_ds (px_ping.h) */
    int8_t limited;         /* refused by lim: LIM_CONNS or LIM_RATE, 0 = no */
    uint8_t ws_first;       /* whose close frame came first: PX_WS_BY_* */
    wsf_t wsb;              /* frames backend -> client */
    wsf_t wsc;              /* frames client -> backend */
    uint64_t up_left;       /* with up_capped: client bytes the backend may still get */
    uint16_t retry_after;   /* seconds, with limited */
    uint16_t ping_ds;       /* the lb's last ping (or the tunnel's start), deciseconds */
    uint32_t rid;           /* with has_rid: the thread's sequence number of the request */
} px_conn_t;

/* What went wrong on the way to a backend or with it (px_retry_policy). */
enum px_fail {
    PX_F_LOCAL = 0,       /* connect: no descriptor or memory here (EMFILE, ENOBUFS...) */
    PX_F_CONNECT,         /* connect refused or failed */
    PX_F_CONNECT_TIMEOUT, /* connect not done within timeout_connect_ms */
    PX_F_TIMEOUT,         /* no response head within timeout_response_ms */
    PX_F_RESET,           /* reading from the backend failed */
    PX_F_WRITE,           /* writing to the backend failed */
    PX_F_EOF,             /* the backend closed */
    PX_F_BAD_HEAD,        /* a response head that does not parse */
    PX_F_503,             /* a response head with status 503 (a draining worker) */
    PX_F_101_PLAIN,       /* a 101 to a plain request */
    PX_F_EXHAUSTED,       /* no backend left to try */
    PX_F_DOWN,            /* the backend was marked down while the request waited on it */
    PX_F__COUNT
};

/* What the client gets (px_retry_policy). */
enum px_act {
    PX_ACT_GO_ON = 0,     /* nothing changes: the answer or the EOF is passed on */
    PX_ACT_RETRY,         /* the request goes to another backend */
    PX_ACT_REPLY_502,     /* the lb's 502 */
    PX_ACT_REPLY_503,     /* the lb's 503 */
    PX_ACT_CLOSE,         /* a bare close: too late for an answer */
    PX_ACT_WS_CLOSE_1014, /* the lb's websocket close 1014: the worker is gone */
};

typedef struct px_listener {
    acc_t *acc; /* accepts on fd */
    int fd;
    int tls;
    int nodelay; /* set on fd, so every accepted socket has it (Linux) */
    struct px_thread *th;
} px_listener_t;

typedef struct px_thread {
    px_t *px;
    int idx;
    struct ev_loop *loop;
    pthread_t tid;
    int started;
    px_listener_t *ls;
    size_t nls;
    ev_async wake;
    ev_async down_wake;  /* a backend went down: look at the connections (px_down.c) */
    ev_timer down_timer; /* the next tunnel on a down backend whose grace ends */
    int reserve_fd;      /* spare descriptor, given up to turn clients away at EMFILE */
    int accepting;
    px_conn_t *conns;
    px_conn_t *hq_first, *hq_last; /* connections without a complete head, oldest first */
    uint32_t rid_rand;
    uint32_t rid_seq;
    char *scratch;
    px_pool_t cpool;     /* where its px_conn_t come from */
    long fd_cap;         /* px_fd_cap's last answer ... */
    ev_tstamp fd_cap_at; /* ... and when (ev_now), to ask the kernel once a second */
} px_thread_t;

struct px {
    be_table_t *table;
    lbs_t *stats;
    px_config_t cfg;
    px_thread_t *th;
    int nth;
    int *lfd, *ltls; /* every listener, as bound or taken (px_listen_fds) */
    size_t nlfd;
    int stop_accept; /* atomics: set by any thread, acted on by each loop */
    int shutdown;
};

/* A setting of px->cfg that a reload may change (px_tune) while threads run:
 * read it once per use, whole. Pointers are published with release. */
#define PX_CFG(px, f) __atomic_load_n(&(px)->cfg.f, __ATOMIC_ACQUIRE)

static inline uint64_t px_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- px_sess.c -------------------------------------------------------------- */

/* Records why c ends; the first reason given wins. */
void px_set_reason(px_conn_t *c, enum px_reason r);
/* After an event of c handled outside its own callbacks: frees c if it is
 * closing, else updates what its sockets wait for. */
void px_after(px_conn_t *c);
/* Marks c for freeing by the callback that is running. */
void px_close(px_conn_t *c, enum px_reason r);
/* Takes c off its thread's list of connections without a head. */
void px_hq_del(px_conn_t *c);
/* Frees c->pre (and takes c off the hq list): no retry or head is left. */
void px_pre_free(px_conn_t *c);
/* c's "METHOD path" (truncated), "" when unknown. */
const char *px_req(const px_conn_t *c);

/* Counts n bytes from (in) or to (out) c's client for the access log. */
static inline void px_count_in(px_conn_t *c, uint64_t n)
{
    if (c->acct != NULL)
        c->acct->bytes_in += n;
}
static inline void px_count_out(px_conn_t *c, uint64_t n)
{
    if (c->acct != NULL)
        c->acct->bytes_out += n;
}
/* c's request id (16 hex digits and a NUL) into out[PX_REQID_LEN]. */
#define PX_REQID_LEN 17
void px_reqid(const px_conn_t *c, char *out);
/* Arms c's single timer for `after` seconds (0 = off). */
void px_timer(px_conn_t *c, double after);
/* The tunnel's current time limit in seconds (0 = none). */
double px_tunnel_limit(px_conn_t *c);
/* Drops the backend connection (not the backend reference). */
void px_close_backend_fd(px_conn_t *c);
/* Frees c (not from inside one of its own callbacks) and logs its line. */
void px_conn_free(px_conn_t *c);
/* Picks a backend not tried yet and connects to it, or answers. */
void px_try_backend(px_conn_t *c);
/* Pure: what the client gets when failure f happens to c (see px_sess.c). */
enum px_act px_retry_policy(const px_conn_t *c, enum px_fail f);
/* Acts on failure f of c's backend (or of the search for one) as
 * px_retry_policy says, after counting, reporting and logging it (why: a
 * short cause for the log). 0 when c carries on as it was (PX_ACT_GO_ON),
 * -1 when the caller must stop: c was retried elsewhere, answered or
 * closed. */
int px_backend_error(px_conn_t *c, enum px_fail f, const char *why);
/* WAIT: reads what the backend has sent of its response head. */
void px_read_response(px_conn_t *c);
/* c's peer is the client now (at accept, or from its PROXY header): applies
 * --trusted-proxies and the per-address limits to it. */
void px_admit_addr(px_conn_t *c);
/* c's client address (the peer, or what its PROXY header said) as a
 * sock_addr_t, for printing. */
void px_peer_addr(const px_conn_t *c, sock_addr_t *out);
/* Takes ownership of fd, accepted on a listener of th. */
void px_conn_new(px_thread_t *th, int fd, const sock_addr_t *peer, int tls);
/* Frees every connection of th (reason "shutdown"). */
void px_sess_shutdown(px_thread_t *th);

/* ---- px_pp.c ------------------------------------------------------------------ */

/* At accept with --accept-proxy: 0 when the peer may send a PROXY header,
 * -1 (counted, logged, c closed) when it is not a trusted proxy. */
int px_proxy_accept(px_conn_t *c);
/* PX_PROXY: reads the PROXY header, never a byte past it; once complete,
 * the client's address replaces the peer's and c moves on to its TLS
 * handshake or its request head. */
void px_read_proxy(px_conn_t *c);

/* ---- px_http.c ---------------------------------------------------------------- */

/* REPLY: writes what is left of the lb's answer, then lingers. */
void px_flush_reply(px_conn_t *c);
/* Answers the client with status and a small JSON body, then closes. */
void px_reply(px_conn_t *c, int status, int err, enum px_reason r, const char *msg);
/* 429 for a client over a per-address limit. */
void px_reply_limited(px_conn_t *c);
/* HEAD: reads the client's request head and acts on it once complete. */
void px_read_head(px_conn_t *c);
/* LINGER: reads and drops until the client closes. */
void px_linger_read(px_conn_t *c);

/* ---- px_tun.c ----------------------------------------------------------------- */

/* Feeds bytes passing upstream (client to backend) or down to the frame
 * tracking of their direction. */
void px_pass(px_conn_t *c, int upstream, const char *p, size_t n);
/* Why a tunnel ends when side `up` (1 = client) sends EOF. */
enum px_reason px_eof_reason(const px_conn_t *c, int up);
/* Why a connection ends when reading or writing side s failed for good. */
enum px_reason px_reset_reason(px_conn_t *c, px_side_t *s);
/* True when the lb may put a frame of its own toward the client. */
int px_ws_at_boundary(const px_conn_t *c);
/* Ends a websocket tunnel at a frame boundary with the lb's own close. */
void px_ws_close_client(px_conn_t *c, uint16_t code, const char *why, enum px_reason r);
/* One round of everything that can make progress in WAIT and TUNNEL. */
void px_pump(px_conn_t *c);

#endif

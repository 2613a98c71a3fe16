/* lb: the one context of the lb process, shared by main.c (start and stop),
 * rld.c (SIGHUP reloads) and the takeover (hand.c through main.c). */
#ifndef LB_LB_H
#define LB_LB_H

#include <ev.h>

#include "admin.h"
#include "be.h"
#include "cfg.h"
#include "cidr.h"
#include "disc.h"
#include "hand.h"
#include "hc.h"
#include "lbo.h"
#include "lbs.h"
#include "lim.h"
#include "met.h"
#include "proxy.h"
#include "route.h"
#include "static.h"
#include "tls.h"

/* A --trusted-proxies set a reload replaced, kept while a proxy thread may
 * still be matching against it (rld.c). */
typedef struct lb_retired {
    cidr_set_t *set;
    uint64_t ms; /* be_now_ms() when replaced */
} lb_retired_t;

/* Everything the process runs, in one place: the only context there is. */
typedef struct lb {
    struct ev_loop *loop;
    lb_opts_t o;
    cfg_opt_t opts[LBO_MAX]; /* the table that wrote o, freed with cfg_free */
    int argc;                /* the command line, parsed again on SIGHUP */
    char **argv;
    lbs_t stats;
    met_registry_t *reg;
    be_table_t *table;
    tls_t *tls;
    hc_t *hc;
    disc_t *disc;
    admin_t *admin;
    px_t *px;
    lim_t *lim;
    st_t *st;
    cidr_set_t *trusted;   /* NULL = none; replaced ones are kept in retired */
    lb_retired_t *retired; /* oldest first; rld_retire_trusted frees them */
    size_t nretired;
    route_t *routes;
    aff_spec_t aff; /* --affinity; kind AFF_NONE = off */
    hand_t *hand;   /* --control-socket */
    ev_signal sig_term, sig_int, sig_hup, sig_usr2;
    ev_child child;   /* the new lb a SIGUSR2 started, until it takes over */
    ev_timer grace;   /* shutdown deadline */
    ev_timer drained; /* polls for the last tunnel to end during shutdown */
    int stopping;
    met_gauge_t *m_generation, *m_loaded;
    met_counter_t *m_reload_failed;
} lb_t;

#endif

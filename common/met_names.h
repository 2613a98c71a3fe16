/* met_names: the name of every metric the lb and the worker export, in one
 * place, and the legacy names kept for a deprecation period.
 *
 * Names follow Prometheus's conventions: one application prefix (wslb_),
 * then the daemon (lb, worker, backend, admin), base units spelt out at the
 * end (_seconds, _bytes), and _total on counters. Metrics are public
 * interface: a name is never changed in place. A better one is added here,
 * the old one goes to MET_LEGACY_NAMES, and the daemons render it too while
 * --metrics-legacy is on (the default until the removal release the README
 * names under "Metrics"). */
#ifndef COMMON_MET_NAMES_H
#define COMMON_MET_NAMES_H

/* ---- lb (admin API /metrics) ---------------------------------------------- */
#define MN_LB_ACCEPTED             "wslb_lb_accepted_total"
#define MN_LB_HANDSHAKES           "wslb_lb_handshakes_total"
#define MN_LB_REQUESTS             "wslb_lb_requests_total"
#define MN_LB_RECEIVED_BYTES       "wslb_lb_received_bytes_total" /* clients -> backends */
#define MN_LB_SENT_BYTES           "wslb_lb_sent_bytes_total"     /* backends -> clients */
#define MN_LB_ACTIVE               "wslb_lb_active_connections"
#define MN_LB_HANDSHAKES_MOVED     "wslb_lb_handshakes_moved_total"
#define MN_LB_HANDSHAKES_ABANDONED "wslb_lb_handshakes_abandoned_total"
#define MN_LB_DOWN_CLOSED          "wslb_lb_down_closed_total"
#define MN_LB_PINGS_SENT           "wslb_lb_pings_sent_total"
#define MN_LB_PING_TIMEOUTS        "wslb_lb_ping_timeouts_total"
#define MN_LB_ERRORS               "wslb_lb_errors_total"
#define MN_LB_HANDSHAKE_DURATION   "wslb_lb_handshake_duration_seconds"
#define MN_LB_STATIC_RESPONSES     "wslb_lb_static_responses_total"
#define MN_LB_STATIC_FILES         "wslb_lb_static_files"
#define MN_LB_STATIC_BYTES         "wslb_lb_static_bytes"
#define MN_LB_AFFINITY             "wslb_lb_affinity_total"
#define MN_LB_AFFINITY_FALLBACK    "wslb_lb_affinity_fallback_total"
#define MN_LB_CONFIG_GENERATION    "wslb_lb_config_generation"
#define MN_LB_CONFIG_LOADED        "wslb_lb_config_loaded_seconds" /* Unix time */
#define MN_LB_RELOAD_FAILED        "wslb_lb_reload_failed_total"
#define MN_ADMIN_DROPPED           "wslb_admin_connections_dropped_total"
#define MN_LB_REDIS_UP             "wslb_lb_redis_up" /* with --redis or Sentinels only */
#define MN_BE_UP                   "wslb_backend_up"
#define MN_BE_DRAINING             "wslb_backend_draining"
#define MN_BE_ACTIVE               "wslb_backend_active_connections"
#define MN_BE_CONNECTIONS          "wslb_backend_connections_total"
#define MN_BE_FAILURES             "wslb_backend_failures_total"
#define MN_BE_WEIGHT               "wslb_backend_weight"
#define MN_BE_REBALANCE_SHED       "wslb_backend_rebalance_shed_total"
#define MN_BE_LOAD                 "wslb_backend_load"
#define MN_BE_GLOBAL               "wslb_backend_global_connections"

/* ---- worker (/metrics) ------------------------------------------------------ */
#define MN_WK_CONNECTIONS         "wslb_worker_connections"
#define MN_WK_WEBSOCKETS          "wslb_worker_websockets"
#define MN_WK_CONNECTIONS_TOTAL   "wslb_worker_connections_total"
#define MN_WK_WEBSOCKETS_TOTAL    "wslb_worker_websockets_total"
#define MN_WK_EVALS_RUNNING       "wslb_worker_evaluations_running"
#define MN_WK_EVALS_QUEUED        "wslb_worker_evaluations_queued"
#define MN_WK_EVALS_TOTAL         "wslb_worker_evaluations_total"
#define MN_WK_VERDICTS            "wslb_worker_verdicts_total"
#define MN_WK_PROTOCOL_ERRORS     "wslb_worker_protocol_errors_total"
#define MN_WK_REQUEUED            "wslb_worker_evaluations_requeued_total"
#define MN_WK_SANDBOX_START       "wslb_worker_sandbox_start_duration_seconds"
#define MN_WK_EVAL_DURATION       "wslb_worker_evaluation_duration_seconds"
#define MN_WK_DRAINING            "wslb_worker_draining"
#define MN_WK_ISOLATION           "wslb_worker_isolation_info"
#define MN_WK_SLOTS               "wslb_worker_slots"
#define MN_WK_SLOT_FAILURES       "wslb_worker_slot_failures_total"
#define MN_WK_SLOT_RESET_DURATION "wslb_worker_slot_reset_duration_seconds"
#define MN_WK_REDIS_UP            "wslb_worker_redis_up" /* with --redis or Sentinels only */
#define MN_WK_REBALANCE_SHED      "wslb_worker_rebalance_shed_total"
#define MN_WK_REBALANCE_HELD      "wslb_worker_rebalance_held_total"
#define MN_WK_REBALANCE_RATIO     "wslb_worker_rebalance_fleet_ratio"

/* X(current, legacy, factor): while --metrics-legacy is on, each family
 * named `current` is also rendered as `legacy`, every value (a histogram's
 * bounds and sum) multiplied by factor: 1000 turns seconds back into the
 * milliseconds the legacy name promised. To be removed in 0.3.0. */
#define MET_LEGACY_NAMES(X)                                                                        \
    X(MN_LB_HANDSHAKE_DURATION, "wslb_lb_handshake_ms", 1000)                                      \
    X(MN_LB_RECEIVED_BYTES, "wslb_lb_bytes_in_total", 1)                                           \
    X(MN_LB_SENT_BYTES, "wslb_lb_bytes_out_total", 1)                                              \
    X(MN_WK_CONNECTIONS, "worker_connections", 1)                                                  \
    X(MN_WK_WEBSOCKETS, "worker_websockets", 1)                                                    \
    X(MN_WK_CONNECTIONS_TOTAL, "worker_connections_total", 1)                                      \
    X(MN_WK_WEBSOCKETS_TOTAL, "worker_websockets_total", 1)                                        \
    X(MN_WK_EVALS_RUNNING, "worker_evaluations_running", 1)                                        \
    X(MN_WK_EVALS_QUEUED, "worker_evaluations_queued", 1)                                          \
    X(MN_WK_EVALS_TOTAL, "worker_evaluations_total", 1)                                            \
    X(MN_WK_VERDICTS, "worker_verdicts_total", 1)                                                  \
    X(MN_WK_PROTOCOL_ERRORS, "worker_protocol_errors_total", 1)                                    \
    X(MN_WK_REQUEUED, "worker_evaluations_requeued_total", 1)                                      \
    X(MN_WK_SANDBOX_START, "worker_sandbox_start_ms", 1000)                                        \
    X(MN_WK_EVAL_DURATION, "worker_evaluation_wall_ms", 1000)                                      \
    X(MN_WK_DRAINING, "worker_draining", 1)                                                        \
    X(MN_WK_ISOLATION, "worker_isolation_info", 1)                                                 \
    X(MN_WK_SLOTS, "worker_slots", 1)                                                              \
    X(MN_WK_SLOT_FAILURES, "worker_slot_failures_total", 1)                                        \
    X(MN_WK_SLOT_RESET_DURATION, "worker_slot_reset_ms", 1000)                                     \
    X(MN_WK_REBALANCE_SHED, "worker_rebalance_shed_total", 1)                                      \
    X(MN_WK_REBALANCE_HELD, "worker_rebalance_held_total", 1)                                      \
    X(MN_WK_REBALANCE_RATIO, "worker_rebalance_fleet_ratio", 1)

#endif

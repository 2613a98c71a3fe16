/* lbs: names of the lb's error kinds (see lbs.h). */
#include "lbs.h"

/* Indexed by enum lbs_err; the names are stable: dashboards and alerts match
 * on them in /stats and /metrics. */
static const char *const lbs_err_names[LBS_ERR__COUNT] = {
    [LBS_ERR_BAD_REQUEST] = "bad_request",
    [LBS_ERR_HEAD_TOO_LARGE] = "head_too_large",
    [LBS_ERR_HEAD_TIMEOUT] = "head_timeout",
    [LBS_ERR_NO_BACKEND] = "no_backend",
    [LBS_ERR_ALL_FAILED] = "all_failed",
    [LBS_ERR_CONNECT] = "connect",
    [LBS_ERR_BACKEND_TIMEOUT] = "backend_timeout",
    [LBS_ERR_TLS] = "tls",
    [LBS_ERR_OVERLOAD] = "overload",
    [LBS_ERR_RATE_LIMITED] = "rate_limited",
    [LBS_ERR_NOT_FOUND] = "not_found",
    [LBS_ERR_EVICTED] = "evicted",
    [LBS_ERR_PROXY_BAD] = "proxy_bad",
    [LBS_ERR_PROXY_UNTRUSTED] = "proxy_untrusted",
};

const char *lbs_err_name(enum lbs_err e)
{
    if ((unsigned)e >= LBS_ERR__COUNT || lbs_err_names[e] == 0)
        return "unknown";
    return lbs_err_names[e];
}

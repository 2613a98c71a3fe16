/* fleet: the lb/worker contract (see fleet.h). */
#include "fleet.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- ids ------------------------------------------------------------------ */

static int fleet_id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

int fleet_id_ok(const char *p, size_t n)
{
    if (n == 0 || n > FLEET_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!fleet_id_char(p[i]))
            return 0;
    return 1;
}

char *fleet_id_default(const char *host, long pid, char *out, size_t outlen)
{
    char suffix[24];
    int sn = snprintf(suffix, sizeof(suffix), "-%ld", pid);
    size_t hn = strlen(host);
    if (outlen == 0)
        return out;
    if (hn == 0) {
        host = "lb";
        hn = 2;
    }
    if (fleet_id_ok(host, hn) && hn + (size_t)sn <= FLEET_ID_MAX) {
        snprintf(out, outlen, "%s%s", host, suffix);
        return out;
    }
    /* FNV-1a of the whole name: a cut name keeps what told it apart. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < hn; i++)
        h = (h ^ (unsigned char)host[i]) * 16777619u;
    size_t keep = FLEET_ID_MAX - (size_t)sn - 7; /* "-" and 6 hex digits */
    if (keep > hn)
        keep = hn;
    if (keep >= outlen)
        keep = outlen - 1;
    for (size_t i = 0; i < keep; i++)
        out[i] = fleet_id_char(host[i]) ? host[i] : '-';
    snprintf(out + keep, outlen - keep, "-%06x%s", (unsigned)(h & 0xffffff), suffix);
    return out;
}

/* ---- time ----------------------------------------------------------------- */

uint64_t fleet_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

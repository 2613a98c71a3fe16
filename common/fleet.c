/* fleet: the lb/worker contract (see fleet.h). */
#include "fleet.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

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

/* ---- Redis ---------------------------------------------------------------- */

static size_t fleet_key(const char *prefix, const char *name, const char *id, size_t idlen,
                        char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s%s%.*s", prefix ? prefix : FLEET_DEFAULT_PREFIX, name, (int)idlen,
                     id ? id : "");
    return n < 0 ? 0 : (size_t)n;
}

size_t fleet_key_workers(const char *prefix, char *buf, size_t len)
{
    return fleet_key(prefix, "workers", NULL, 0, buf, len);
}

size_t fleet_key_worker(const char *prefix, const char *id, size_t idlen, char *buf, size_t len)
{
    return fleet_key(prefix, "worker:", id, idlen, buf, len);
}

size_t fleet_key_events(const char *prefix, char *buf, size_t len)
{
    return fleet_key(prefix, "events", NULL, 0, buf, len);
}

/* 1 to max-1 bytes, none of them a control character: safe to log and to
 * show in a table, and it fits a buffer of max bytes. */
static int fleet_text_ok(const char *p, size_t n, size_t max)
{
    if (n == 0 || n >= max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            return 0;
    return 1;
}

int fleet_worker_id_ok(const char *p, size_t n)
{
    return fleet_text_ok(p, n, FLEET_WORKER_ID_LEN);
}

/* A JSON string that passes fleet_text_ok for dst's size, copied into dst. */
static int fleet_json_text(json_t *v, char *dst, size_t max)
{
    if (!json_is_string(v) || !fleet_text_ok(json_string_value(v), json_string_length(v), max))
        return -1;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static const char *const fleet_event_names[] = {"join", "drain", "leave"};

const char *fleet_event_name(enum fleet_event_type t)
{
    return (unsigned)t < 3 ? fleet_event_names[t] : "?";
}

char *fleet_event_to_json(const fleet_event_t *e)
{
    json_t *j = json_pack("{s:s, s:s}", "event", fleet_event_name(e->type), "id", e->id);
    if (j != NULL && e->addr[0] && json_object_set_new(j, "addr", json_string(e->addr)) < 0) {
        json_decref(j);
        j = NULL;
    }
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

int fleet_event_parse(const char *json, size_t len, fleet_event_t *out, char *err, size_t errlen)
{
    char dummy[1];
    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    int rc = -1;
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    memset(out, 0, sizeof(*out));
    if (!root) {
        snprintf(err, errlen, "not JSON: %s", jerr.text);
        return -1;
    }
    const char *ev = json_string_value(json_object_get(root, "event"));
    json_t *addr = json_object_get(root, "addr");
    size_t k = 0;
    while (ev && k < 3 && strcmp(ev, fleet_event_names[k]) != 0)
        k++;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "not a JSON object");
    } else if (!ev || k == 3) {
        snprintf(err, errlen, "bad or missing event");
    } else if (fleet_json_text(json_object_get(root, "id"), out->id, sizeof(out->id)) < 0) {
        snprintf(err, errlen, "bad or missing id");
    } else if (addr && fleet_json_text(addr, out->addr, sizeof(out->addr)) < 0) {
        snprintf(err, errlen, "bad addr");
    } else {
        out->type = (enum fleet_event_type)k;
        rc = 0;
    }
    json_decref(root);
    return rc;
}

/* ---- time ----------------------------------------------------------------- */

uint64_t fleet_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Fuzzes the lb/worker contract's parsers (common/fleet.c).
 *
 * Byte 0 bit 0 clear: the rest is one worker state for fleet_state_parse()
 * as the lb reading it, bits 1-2 pick its lb id (none, or one of three),
 * bit 3 passes no error buffer. Whatever it accepts must describe a usable
 * backend (a printable id, a reachable address that renders and parses back
 * to itself, bounded counts, by_lb within its rules, "mine" read from it),
 * and must survive a round trip: fleet_state_to_json() of it parses back to
 * an equal state, and serialises to the same bytes again.
 *
 * Bit 0 set: the rest is one message of the events channel for
 * fleet_event_parse(), with the same round trip. */
#include "fuzz.h"

#include <stdint.h>
#include <string.h>

#include "fleet.h"

static const char *const fz_lb_ids[] = {NULL, "lb-a", "lb1-4242", "lb2-977"};

static int fz_text(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    if (n == 0 || n >= max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static void fz_same_state(const fleet_state_t *a, const fleet_state_t *b)
{
    FZ_CHECK(strcmp(a->id, b->id) == 0 && strcmp(a->addr, b->addr) == 0);
    FZ_CHECK(a->sa.len == b->sa.len && memcmp(&a->sa.ss, &b->sa.ss, a->sa.len) == 0);
    FZ_CHECK(a->draining == b->draining && a->conns == b->conns && a->has == b->has);
    FZ_CHECK(a->evals_running == b->evals_running && a->evals_queued == b->evals_queued);
    FZ_CHECK(a->max_evals == b->max_evals && a->slots_broken == b->slots_broken);
    FZ_CHECK(a->load == b->load && a->ts_ms == b->ts_ms && a->started_ms == b->started_ms);
    FZ_CHECK(strcmp(a->isolation, b->isolation) == 0 && strcmp(a->version, b->version) == 0);
    FZ_CHECK(a->nlbs == b->nlbs && a->mine == b->mine);
    for (size_t i = 0; i < a->nlbs; i++)
        FZ_CHECK(strcmp(a->by_lb[i].id, b->by_lb[i].id) == 0 && a->by_lb[i].n == b->by_lb[i].n);
}

/* What an accepted state promises its reader. */
static void fz_check_state(const fleet_state_t *st, const char *lb_id)
{
    FZ_CHECK(fleet_worker_id_ok(st->id, strnlen(st->id, sizeof(st->id))));
    FZ_CHECK(st->draining == 0 || st->draining == 1);
    FZ_CHECK((st->has & ~(unsigned)FLEET_HAS_ALL) == 0);
    const int64_t counts[] = {st->conns, st->evals_running, st->evals_queued, st->max_evals,
                              st->slots_broken};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        FZ_CHECK(counts[i] >= 0 && counts[i] <= FLEET_MAX_COUNT);
    if (st->has & FLEET_HAS_LOAD)
        FZ_CHECK(st->load >= 0 && st->load <= FLEET_MAX_COUNT);
    else
        FZ_CHECK(st->load == st->evals_running + st->evals_queued);
    FZ_CHECK(!(st->has & FLEET_HAS_VERSION) == !st->version[0]);
    FZ_CHECK(!st->version[0] || fz_text(st->version, sizeof(st->version)));
    FZ_CHECK(!(st->has & FLEET_HAS_ISOLATION) == !st->isolation[0]);
    FZ_CHECK(!st->isolation[0] || fz_text(st->isolation, sizeof(st->isolation)));
    /* The address as the table will show it must name the same socket, and
     * one that can be connected to. */
    sock_addr_t back;
    FZ_CHECK(sock_parse_addr(st->addr, &back, NULL, 0) == 0);
    FZ_CHECK(back.len == st->sa.len && memcmp(&back.ss, &st->sa.ss, st->sa.len) == 0);
    FZ_CHECK(strncmp(st->addr, "0.0.0.0:", 8) != 0 && strncmp(st->addr, "[::]:", 5) != 0);
    size_t alen = strlen(st->addr);
    FZ_CHECK(alen > 2 && strcmp(st->addr + alen - 2, ":0") != 0);
    /* by_lb and this lb's share of it */
    FZ_CHECK(st->nlbs <= FLEET_MAX_LBS);
    FZ_CHECK((st->has & FLEET_HAS_BY_LB) || st->nlbs == 0);
    int64_t mine = lb_id != NULL && (st->has & FLEET_HAS_BY_LB) ? 0 : -1;
    for (size_t i = 0; i < st->nlbs; i++) {
        const fleet_lb_count_t *c = &st->by_lb[i];
        FZ_CHECK(fleet_id_ok(c->id, strnlen(c->id, sizeof(c->id))));
        FZ_CHECK(c->n >= 0 && c->n <= FLEET_MAX_COUNT);
        for (size_t k = 0; k < i; k++)
            FZ_CHECK(strcmp(st->by_lb[k].id, c->id) != 0);
        if (lb_id != NULL && strcmp(c->id, lb_id) == 0)
            mine = c->n;
    }
    FZ_CHECK(st->mine == mine);
}

static void fz_state(const char *json, size_t len, const char *lb_id, int noerr)
{
    fleet_state_t st, back;
    char err[128] = "";
    int r = fleet_state_parse(json, len, lb_id, &st, noerr ? NULL : err, sizeof(err));
    FZ_CHECK(r == 0 || r == -1);
    if (r < 0) {
        FZ_CHECK(noerr || err[0] != '\0');
        return;
    }
    fz_check_state(&st, lb_id);
    char *js = fleet_state_to_json(&st);
    FZ_CHECK(js != NULL);
    FZ_CHECK(fleet_state_parse(js, strlen(js), lb_id, &back, err, sizeof(err)) == 0);
    fz_same_state(&st, &back);
    char *again = fleet_state_to_json(&back);
    FZ_CHECK(again != NULL && strcmp(js, again) == 0);
    free(again);
    free(js);
}

static void fz_event(const char *json, size_t len)
{
    fleet_event_t e, back;
    char err[128] = "";
    if (fleet_event_parse(json, len, &e, err, sizeof(err)) < 0) {
        FZ_CHECK(err[0] != '\0');
        return;
    }
    FZ_CHECK(e.type == FLEET_EV_JOIN || e.type == FLEET_EV_DRAIN || e.type == FLEET_EV_LEAVE);
    FZ_CHECK(fleet_worker_id_ok(e.id, strnlen(e.id, sizeof(e.id))));
    FZ_CHECK(!e.addr[0] || fz_text(e.addr, sizeof(e.addr)));
    char *js = fleet_event_to_json(&e);
    FZ_CHECK(js != NULL);
    FZ_CHECK(fleet_event_parse(js, strlen(js), &back, err, sizeof(err)) == 0);
    FZ_CHECK(back.type == e.type && strcmp(back.id, e.id) == 0 && strcmp(back.addr, e.addr) == 0);
    free(js);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* A copy of exactly the input, so reading past it is caught. */
    char *buf = malloc(size - 1 ? size - 1 : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, size - 1);
    if (data[0] & 1)
        fz_event(buf, size - 1);
    else
        fz_state(buf, size - 1, fz_lb_ids[(data[0] >> 1) & 3], (data[0] >> 3) & 1);
    free(buf);
    return 0;
}

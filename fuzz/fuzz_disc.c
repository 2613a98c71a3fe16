/* Fuzzes what the lb does with what Redis tells it about workers (lb/disc.c).
 *
 * The input is a stream of Redis replies in RESP, decoded by hiredis' own
 * reader the way the connection does, and handed to the discoverer's reply
 * callbacks on a real backend table: each reply is a message on the events
 * channel when it looks like one, otherwise alternately an SMEMBERS answer
 * and the MGET answer for the ids it listed, so several refreshes and
 * events interleave. The discoverer runs without Redis connections
 * (commands it sends just fail), which is also the state it must survive.
 * Afterwards the table must hold unique ids, the static backend must still
 * be there, and a refresh that lists no worker must remove every
 * discovered one. The disc.c source is included to reach its static
 * callbacks. The worker states and events inside the replies are parsed by
 * common/fleet.c, fuzzed on its own by fuzz_fleet.c. */
#include "fuzz.h"
#include "disc.c"

#include <stdint.h>

#define FZ_STATIC_ID "static-1"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_LVL_OFF);
    return 0;
}

/* Every id once, every backend findable by its id. */
static void fz_check_table(be_table_t *t)
{
    size_t n = be_table_count(t);
    for (size_t i = 0; i < n; i++) {
        be_t *b = be_table_at(t, i);
        FZ_CHECK(b != NULL && be_find(t, be_id(b)) == b);
        FZ_CHECK(be_source(b) == BE_STATIC || be_source(b) == BE_DISCOVERED);
        FZ_CHECK(be_load(b) >= 0);
    }
    be_t *s = be_find(t, FZ_STATIC_ID);
    FZ_CHECK(s != NULL && be_source(s) == BE_STATIC);
}

/* A message or subscription confirmation on the events channel. */
static int fz_is_pubsub(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return 0;
    const redisReply *k = r->element[0];
    return k->type == REDIS_REPLY_STRING &&
           (strcmp(k->str, "message") == 0 || strcmp(k->str, "subscribe") == 0);
}

/* The batch disc_on_members would have sent an MGET for: ids of a SMEMBERS
 * reply made only of strings, NULL otherwise. */
static disc_batch_t *fz_batch(disc_t *d, const redisReply *members)
{
    if (members->type != REDIS_REPLY_ARRAY || members->elements == 0)
        return NULL;
    disc_batch_t *bt = calloc(1, sizeof(*bt));
    if (bt == NULL || (bt->ids = calloc(members->elements, sizeof(char *))) == NULL) {
        free(bt);
        return NULL;
    }
    bt->d = d;
    bt->gen = d->gen;
    for (size_t i = 0; i < members->elements; i++) {
        const redisReply *e = members->element[i];
        if (e->type != REDIS_REPLY_STRING || (bt->ids[i] = strndup(e->str, e->len)) == NULL) {
            disc_batch_free(bt);
            return NULL;
        }
        bt->n++;
    }
    return bt;
}

/* hiredis 0.14's reader allocates an aggregate's element array as soon as
 * it reads the header, with no limit (later versions cap it), so "*1777777777"
 * makes it ask for gigabytes. Redis never sends that, and the lb only talks
 * to the Redis it is configured with; skip such inputs rather than fuzz the
 * library's allocator. */
static int fz_huge_aggregate(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '*' && data[i] != '$')
            continue;
        unsigned long long n = 0;
        size_t j = i + 1;
        while (j < len && data[j] >= '0' && data[j] <= '9' && n < 100000000ull)
            n = n * 10 + (unsigned long long)(data[j++] - '0');
        if (n > 65536)
            return 1;
    }
    return 0;
}

static void fz_replies(const char *data, size_t len)
{
    if (fz_huge_aggregate(data, len))
        return;
    be_table_t *t = be_table_create(NULL, 0);
    redisReader *rd = redisReaderCreate();
    FZ_CHECK(t != NULL && rd != NULL);
    char prefix[] = "wslb:";
    /* A loop for the timers an event may start (never run: nothing here
     * waits), made once per process. */
    static struct ev_loop *loop;
    if (loop == NULL)
        loop = ev_loop_new(EVFLAG_AUTO);
    FZ_CHECK(loop != NULL);
    disc_t d = {.t = t, .prefix = prefix, .loop = loop};
    ev_timer_init(&d.soon, disc_soon_cb, 0., 0.);
    sock_addr_t a;
    FZ_CHECK(sock_parse_addr("127.0.0.1:9001", &a, NULL, 0) == 0);
    FZ_CHECK(be_add(t, FZ_STATIC_ID, &a, 1, BE_STATIC) != NULL);

    FZ_CHECK(redisReaderFeed(rd, data, len) == REDIS_OK);
    disc_batch_t *bt = NULL;
    for (;;) {
        void *v = NULL;
        if (redisReaderGetReply(rd, &v) != REDIS_OK || v == NULL)
            break;
        redisReply *reply = v;
        if (fz_is_pubsub(reply)) {
            /* An event bumps the generation: a batch in flight then
             * updates and removes but adds nothing. */
            disc_on_sub(NULL, reply, &d);
        } else if (bt == NULL) {
            /* Also through the real callback: it must cope with the
             * reply and with failing to send the MGET. */
            d.inflight = 1;
            disc_on_members(NULL, reply, &d);
            FZ_CHECK(d.inflight == 0);
            bt = fz_batch(&d, reply);
            if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 0)
                FZ_CHECK(be_table_count(t) == 1);
        } else {
            size_t before = be_table_count(t);
            int may_add = bt->gen == d.gen;
            d.inflight = 1;
            disc_on_values(NULL, reply, bt); /* frees bt */
            bt = NULL;
            FZ_CHECK(d.inflight == 0);
            if (!may_add)
                FZ_CHECK(be_table_count(t) <= before);
        }
        freeReplyObject(reply);
        fz_check_table(t);
    }
    if (bt != NULL)
        disc_batch_free(bt);

    /* Redis says no worker is registered: only the static backend stays. */
    disc_apply(&d, NULL, NULL, 0, 1);
    FZ_CHECK(be_table_count(t) == 1);
    fz_check_table(t);

    ev_timer_stop(loop, &d.soon);
    redisReaderFree(rd);
    be_table_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly the input, so reading past it is caught. */
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    fz_replies(buf, size);
    free(buf);
    return 0;
}

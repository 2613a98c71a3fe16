/* be_int: what the be*.c files share. Nothing outside be*.c and be's own
 * unit tests includes it. */
#ifndef LB_BE_INT_H
#define LB_BE_INT_H

#include <stdint.h>

#include "be.h"

/* ---- the state word ---------------------------------------------------------
 * Every health and drain input of a backend, in one 64-bit word that only
 * be_event() changes, by compare-and-swap:
 *   bit 0        down: `fall` consecutive failures, until `rise` checks pass
 *   bit 1        check drain: the health check answered 503
 *   bit 2        remote drain: the worker announced its drain in Redis
 *   bit 3        admin drain: the operator's
 *   bits 8..15   consecutive failures (checks and passive), saturating
 *   bits 16..23  consecutive successful checks, saturating
 *   bits 32..63  changes so far (wraps): every committed word differs from
 *                the one before, so the order of changes can be told apart
 *                afterwards and no compare-and-swap mistakes an old word
 *                for the current one.
 * The state is a pure function of the word (be_word_state()). Zero is a
 * healthy backend nobody drains. */
#define BE_W_DOWN         (1ull << 0)
#define BE_W_CHECK_DRAIN  (1ull << 1)
#define BE_W_REMOTE_DRAIN (1ull << 2)
#define BE_W_ADMIN_DRAIN  (1ull << 3)
#define BE_W_FAIL_SHIFT   8
#define BE_W_OK_SHIFT     16
#define BE_W_SEQ_SHIFT    32
#define BE_W_STREAK_MAX   255u

static inline unsigned be_word_fails(uint64_t w)
{
    return (unsigned)(w >> BE_W_FAIL_SHIFT) & 0xff;
}

static inline unsigned be_word_oks(uint64_t w)
{
    return (unsigned)(w >> BE_W_OK_SHIFT) & 0xff;
}

static inline uint32_t be_word_seq(uint64_t w)
{
    return (uint32_t)(w >> BE_W_SEQ_SHIFT);
}

/* Down wins over the worker's drain (it cannot serve anyway), but a down
 * backend whose check answers 503 is alive and leaving: draining. */
static inline enum be_state be_word_state(uint64_t w)
{
    if (w & BE_W_DOWN)
        return (w & BE_W_CHECK_DRAIN) ? BE_DRAINING : BE_DOWN;
    return (w & (BE_W_CHECK_DRAIN | BE_W_REMOTE_DRAIN)) ? BE_DRAINING : BE_UP;
}

static inline int be_word_usable(uint64_t w)
{
    return (w & (BE_W_DOWN | BE_W_CHECK_DRAIN | BE_W_REMOTE_DRAIN | BE_W_ADMIN_DRAIN)) == 0;
}

/* Pure: the word after ev. Equal to w when ev changes nothing. */
uint64_t be_word_next(uint64_t w, enum be_ev ev, unsigned rise, unsigned fall);

/* be_event() that also says which word it replaced by which (both the same
 * when nothing changed): for tests that check the order of changes. */
int be_event_ex(be_table_t *t, be_t *b, enum be_ev ev, const char *why, uint64_t *before,
                uint64_t *after);

#endif

/* px_pool: one thread's fixed-size objects (its connections), carved from
 * 64 KiB blocks aligned on their size.
 *
 * Why not malloc: an idle websocket costs the lb its px_conn_t and little
 * else (px_conn_idle_bytes), and malloc adds to each its chunk header and
 * rounding, and interleaves the long-lived connections with each
 * handshake's short-lived buffers, whose holes stay resident between them.
 * Here objects sit side by side with no header: the block an object lives
 * in is its address rounded down, and a block whose objects are all free
 * goes back to the kernel (one empty block is kept, so that a thread going
 * between zero and one connection does not allocate a block each time).
 *
 * One thread owns a pool (no locks); a zeroed px_pool_t is an empty pool. */
#ifndef LB_PX_POOL_H
#define LB_PX_POOL_H

#include <stddef.h>

#define PX_POOL_BLOCK (64 * 1024)

struct px_pool_blk;

typedef struct px_pool {
    struct px_pool_blk *avail; /* blocks with a free object, most recently freed into first */
    struct px_pool_blk *spare; /* one empty block kept back */
    size_t nblk;               /* blocks held, the spare included */
} px_pool_t;

/* A zeroed object of `size` bytes (the same size on every call for one
 * pool, at most PX_POOL_BLOCK / 4), or NULL when out of memory. */
void *px_pool_get(px_pool_t *p, size_t size);
/* Gives back an object of p (NULL: nothing). */
void px_pool_put(px_pool_t *p, void *obj);
/* Releases the spare block; every object must have been put back. */
void px_pool_destroy(px_pool_t *p);

#endif

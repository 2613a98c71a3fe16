/* px_pool: fixed-size objects in aligned blocks (see px_pool.h). */
#include "px_pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Under ASan a free object is poisoned, so that a connection used after
 * px_conn_free is still reported as malloc's would be. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define PX_POOL_POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define PX_POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define PX_POOL_POISON(p, n)   ((void)(p), (void)(n))
#define PX_POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* A block: this header, then objects of one size. Free objects are linked
 * through their first word. */
typedef struct px_pool_blk {
    struct px_pool_blk *prev, *next; /* in p->avail while it has a free object */
    void *free;                      /* its free objects */
    size_t size;                     /* of an object, rounded to 8 */
    unsigned live;                   /* objects handed out */
    unsigned fresh;                  /* objects never handed out yet, from the end */
} px_pool_blk_t;

#define PX_POOL_HDR ((sizeof(px_pool_blk_t) + 15) & ~(size_t)15)

static px_pool_blk_t *px_pool_blk_of(void *obj)
{
    return (px_pool_blk_t *)((uintptr_t)obj & ~(uintptr_t)(PX_POOL_BLOCK - 1));
}

static void px_pool_unlink(px_pool_t *p, px_pool_blk_t *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        p->avail = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->prev = b->next = NULL;
}

static void px_pool_push(px_pool_t *p, px_pool_blk_t *b)
{
    b->prev = NULL;
    b->next = p->avail;
    if (p->avail)
        p->avail->prev = b;
    p->avail = b;
}

/* A new block of PX_POOL_BLOCK bytes aligned on its size: twice that is
 * mapped and what lies outside the aligned middle given back. */
static px_pool_blk_t *px_pool_map(void)
{
    size_t len = 2 * (size_t)PX_POOL_BLOCK;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    uintptr_t a = ((uintptr_t)m + PX_POOL_BLOCK - 1) & ~(uintptr_t)(PX_POOL_BLOCK - 1);
    size_t head = a - (uintptr_t)m;
    if (head > 0)
        munmap(m, head);
    if (len - head > PX_POOL_BLOCK)
        munmap((char *)a + PX_POOL_BLOCK, len - head - PX_POOL_BLOCK);
    return (px_pool_blk_t *)a;
}

static void px_pool_unmap(px_pool_blk_t *b)
{
    PX_POOL_UNPOISON(b, PX_POOL_BLOCK);
    munmap(b, PX_POOL_BLOCK);
}

static px_pool_blk_t *px_pool_blk_new(px_pool_t *p, size_t size)
{
    px_pool_blk_t *b = p->spare;
    if (b != NULL && b->size == size) {
        p->spare = NULL;
        PX_POOL_UNPOISON(b, PX_POOL_BLOCK);
    } else {
        /* Straight from the kernel, and not posix_memalign: malloc would put
         * a block's chunk header on a page of its own in front of it (one
         * page more per block) or leave holes around it. Objects are carved
         * lazily (fresh), so only the pages in use are ever touched. */
        if ((b = px_pool_map()) == NULL)
            return NULL;
        p->nblk++;
    }
    memset(b, 0, sizeof(*b));
    b->size = size;
    b->fresh = (unsigned)((PX_POOL_BLOCK - PX_POOL_HDR) / size);
    px_pool_push(p, b);
    return b;
}

void *px_pool_get(px_pool_t *p, size_t size)
{
    size = (size + 7) & ~(size_t)7;
    px_pool_blk_t *b = p->avail;
    if (b == NULL && (b = px_pool_blk_new(p, size)) == NULL)
        return NULL;
    void *obj;
    if (b->free != NULL) {
        obj = b->free;
        PX_POOL_UNPOISON(obj, b->size);
        b->free = *(void **)obj;
    } else {
        unsigned total = (unsigned)((PX_POOL_BLOCK - PX_POOL_HDR) / b->size);
        obj = (char *)b + PX_POOL_HDR + (size_t)(total - b->fresh) * b->size;
        b->fresh--;
    }
    b->live++;
    if (b->free == NULL && b->fresh == 0)
        px_pool_unlink(p, b); /* full */
    memset(obj, 0, size);
    return obj;
}

void px_pool_put(px_pool_t *p, void *obj)
{
    if (obj == NULL)
        return;
    px_pool_blk_t *b = px_pool_blk_of(obj);
    int was_full = b->free == NULL && b->fresh == 0;
    *(void **)obj = b->free;
    PX_POOL_POISON(obj, b->size);
    b->free = obj;
    b->live--;
    if (was_full)
        px_pool_push(p, b);
    if (b->live > 0)
        return;
    /* Empty: kept as the spare, or given back. */
    px_pool_unlink(p, b);
    if (p->spare == NULL) {
        p->spare = b;
    } else {
        px_pool_unmap(b);
        p->nblk--;
    }
}

void px_pool_destroy(px_pool_t *p)
{
    if (p->spare != NULL) {
        px_pool_unmap(p->spare);
        p->nblk--;
    }
    p->spare = NULL;
}

/* buf: growable byte buffer with reserve/commit, allocated lazily (see buf.h). */
#include "buf.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* First allocation size: big enough for a typical frame header plus a small
 * message, small enough that many idle-then-briefly-busy connections stay cheap. */
#define BUF_MIN_CAP 256

/* Precondition: b is initialised (BUF_INIT or previously used). Returns a
 * pointer to at least n writable bytes owned by b, or NULL with errno ENOMEM
 * and b untouched. Compacts instead of growing when the free space at the
 * front plus the tail is enough. */
char *buf_reserve(buf_t *b, size_t n)
{
    size_t used = b->len - b->off;
    if (b->cap - b->len >= n)
        return b->data + b->len;
    /* Sizes beyond PTRDIFF_MAX cannot be allocated anyway; refusing them here
     * also keeps the doubling below from overflowing. */
    if (n > (size_t)PTRDIFF_MAX - used) {
        errno = ENOMEM;
        return NULL;
    }
    size_t need = used + n;
    if (b->data != NULL && need <= b->cap) {
        /* Consumed bytes at the front make enough room: slide the data down
         * rather than reallocating. */
        memmove(b->data, b->data + b->off, used);
        b->off = 0;
        b->len = used;
        return b->data + b->len;
    }
    size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
    while (cap < need) {
        if (cap > (size_t)PTRDIFF_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *d;
    if (b->off > 0 && b->data != NULL) {
        /* Copy only the live bytes into the new block, already compacted. */
        d = malloc(cap);
        if (d == NULL)
            return NULL;
        memcpy(d, b->data + b->off, used);
        free(b->data);
    } else {
        d = realloc(b->data, cap);
        if (d == NULL)
            return NULL;
    }
    b->data = d;
    b->cap = cap;
    b->off = 0;
    b->len = used;
    return b->data + b->len;
}

/* Precondition: n does not exceed what the last buf_reserve() made room for. */
void buf_commit(buf_t *b, size_t n)
{
    if (n > b->cap - b->len)
        abort(); /* a caller bug that would corrupt the heap; fail loudly */
    b->len += n;
}

int buf_append(buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    char *dst = buf_reserve(b, n);
    if (dst == NULL)
        return -1;
    memcpy(dst, p, n);
    b->len += n;
    return 0;
}

int buf_append_str(buf_t *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

/* Formats straight into the buffer's free space, retrying once with the exact
 * size when the first guess is too small. No NUL is counted as data. */
int buf_vprintf(buf_t *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    size_t avail = b->cap - b->len;
    int n;
    if (avail == 0) {
        n = vsnprintf(NULL, 0, fmt, cp);
    } else {
        n = vsnprintf(b->data + b->len, avail, fmt, cp);
    }
    va_end(cp);
    if (n < 0)
        return -1;
    if ((size_t)n < avail) {
        b->len += (size_t)n;
        return 0;
    }
    /* +1 for the terminating NUL vsnprintf insists on writing. */
    char *dst = buf_reserve(b, (size_t)n + 1);
    if (dst == NULL)
        return -1;
    va_copy(cp, ap);
    int m = vsnprintf(dst, (size_t)n + 1, fmt, cp);
    va_end(cp);
    if (m != n)
        return -1;
    b->len += (size_t)n;
    return 0;
}

int buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* Consuming more than is held simply empties the buffer. */
void buf_consume(buf_t *b, size_t n)
{
    if (n >= b->len - b->off) {
        buf_free(b);
        return;
    }
    b->off += n;
}

void buf_reset(buf_t *b)
{
    b->off = 0;
    b->len = 0;
}

void buf_free(buf_t *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->off = 0;
    b->len = 0;
    b->cap = 0;
}

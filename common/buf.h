/* buf: growable byte buffer with reserve/commit, allocated lazily.
 *
 * An empty buf_t holds no heap memory, so a connection that keeps one per
 * direction costs nothing while idle. Data lives in [data+off, data+len);
 * consuming from the front only moves `off`, and the bytes are compacted on
 * the next reserve when that saves a reallocation. */
#ifndef COMMON_BUF_H
#define COMMON_BUF_H

#include <stddef.h>
#include <stdarg.h>

typedef struct buf {
    char *data;
    size_t off; /* start of unread data */
    size_t len; /* end of data */
    size_t cap;
} buf_t;

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

static inline size_t buf_size(const buf_t *b)
{
    return b->len - b->off;
}
static inline char *buf_head(const buf_t *b)
{
    /* An empty buffer may hold no memory, and NULL + 0 is undefined in C
     * (clang's UBSan reports it). */
    return b->data != NULL ? b->data + b->off : NULL;
}

/* Makes room for at least n more bytes; returns where to write them, or NULL
 * on allocation failure (the buffer is unchanged then). */
char *buf_reserve(buf_t *b, size_t n);
/* Marks n bytes written after a buf_reserve(). */
void buf_commit(buf_t *b, size_t n);
/* Appends n bytes; 0 or -1 on allocation failure. */
int buf_append(buf_t *b, const void *p, size_t n);
int buf_append_str(buf_t *b, const char *s);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf_t *b, const char *fmt, va_list ap);
/* Drops n bytes from the front; when the buffer becomes empty its memory is
 * released so that idle connections hold nothing. */
void buf_consume(buf_t *b, size_t n);
/* Empties the buffer but keeps its memory. */
void buf_reset(buf_t *b);
/* Releases the memory; the buffer is empty and reusable afterwards. */
void buf_free(buf_t *b);

#endif

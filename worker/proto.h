/* proto: parsing of /eval client messages, free of I/O and worker state so
 * that it can be unit-tested and fuzzed on its own. */
#ifndef WORKER_PROTO_H
#define WORKER_PROTO_H

#include <stddef.h>

#include <jansson.h>

enum proto_type { PROTO_RUN = 0, PROTO_STDIN, PROTO_STDIN_CLOSE, PROTO_KILL };

#define PROTO_MAX_ID 128
/* Every protocol message has a dozen values or so. Without a bound, one
 * 1 MiB message of "[[],[],..." would make the parser build ~350,000 nodes:
 * tens of MB of the worker's memory and tens of ms of its loop. */
#define PROTO_MAX_VALUES 256

typedef struct proto_msg {
    json_t *root; /* owns every string below */
    enum proto_type type;
    const char *id; /* NULL when the message has no usable id */
    /* run */
    const char *runtime;
    const char *code;
    size_t code_len;
    const char *stdin_data; /* run: initial input; stdin: the data */
    size_t stdin_len;
    int has_stdin;
    int stdin_open;  /* run: keep stdin open after the initial input */
    long timeout_ms; /* run: 0 when not given */
} proto_msg_t;

/* Parses one text message. Returns 0, or -1 with a reason for the client in
 * err; m->id is still set on failure when the message had a valid id, so the
 * error can name it. Always call proto_msg_free(). */
int proto_parse(const char *data, size_t len, proto_msg_t *m, char *err, size_t errlen);
void proto_msg_free(proto_msg_t *m);

#endif

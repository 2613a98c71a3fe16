/* proto: /eval client message parsing; see proto.h. */
#include "proto.h"

#include <stdio.h>
#include <string.h>

static int proto_fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -1;
}

/* Whether the message holds more than PROTO_MAX_VALUES JSON values, counted
 * by the commas and brackets outside strings that separate and open them:
 * one pass over the bytes, before jansson builds a node for each value. */
static int proto_too_many_values(const char *p, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"') {
            for (i++; i < n && p[i] != '"'; i++)
                if (p[i] == '\\')
                    i++;
        } else if ((p[i] == ',' || p[i] == '[' || p[i] == '{') && ++count > PROTO_MAX_VALUES) {
            return 1;
        }
    }
    return 0;
}

/* The fields of a "run" message, checked; m->root holds them. */
static int proto_parse_run(proto_msg_t *m, char *err, size_t errlen)
{
    m->type = PROTO_RUN;
    json_t *jrt = json_object_get(m->root, "runtime");
    json_t *jcode = json_object_get(m->root, "code");
    json_t *jin = json_object_get(m->root, "stdin");
    json_t *jto = json_object_get(m->root, "timeout_ms");
    json_t *jopen = json_object_get(m->root, "stdin_open");
    if (!json_is_string(jrt) || strlen(json_string_value(jrt)) != json_string_length(jrt))
        return proto_fail(err, errlen, "'runtime' must be a string");
    if (!json_is_string(jcode))
        return proto_fail(err, errlen, "'code' must be a string");
    /* No interpreter or compiler accepts a NUL in source; saying so beats
     * a confusing syntax error. Input may hold any byte. */
    if (strlen(json_string_value(jcode)) != json_string_length(jcode))
        return proto_fail(err, errlen, "'code' must not contain NUL bytes");
    if (jin != NULL && !json_is_string(jin) && !json_is_null(jin))
        return proto_fail(err, errlen, "'stdin' must be a string");
    if (jto != NULL && !json_is_null(jto) &&
        (!json_is_integer(jto) || json_integer_value(jto) <= 0))
        return proto_fail(err, errlen, "'timeout_ms' must be a positive integer");
    if (jopen != NULL && !json_is_boolean(jopen))
        return proto_fail(err, errlen, "'stdin_open' must be a boolean");
    m->runtime = json_string_value(jrt);
    m->code = json_string_value(jcode);
    m->code_len = json_string_length(jcode);
    if (json_is_string(jin)) {
        m->has_stdin = 1;
        m->stdin_data = json_string_value(jin);
        m->stdin_len = json_string_length(jin);
    }
    if (json_is_integer(jto))
        m->timeout_ms =
            json_integer_value(jto) > 86400000 ? 86400000 : (long)json_integer_value(jto);
    m->stdin_open = json_is_true(jopen);
    return 0;
}

int proto_parse(const char *data, size_t len, proto_msg_t *m, char *err, size_t errlen)
{
    json_error_t jerr;
    memset(m, 0, sizeof(*m));
    if (proto_too_many_values(data, len)) {
        snprintf(err, errlen, "message too complex: at most %d JSON values", PROTO_MAX_VALUES);
        return -1;
    }
    m->root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (m->root == NULL) {
        snprintf(err, errlen, "invalid JSON: %s (at byte %d)", jerr.text, jerr.position);
        return -1;
    }
    if (!json_is_object(m->root))
        return proto_fail(err, errlen, "message must be a JSON object");
    json_t *jid = json_object_get(m->root, "id");
    /* An id with an embedded NUL could not be echoed faithfully. */
    if (json_is_string(jid) && json_string_length(jid) > 0 &&
        json_string_length(jid) <= PROTO_MAX_ID &&
        strlen(json_string_value(jid)) == json_string_length(jid))
        m->id = json_string_value(jid);
    const char *type = json_string_value(json_object_get(m->root, "type"));
    if (type == NULL)
        return proto_fail(err, errlen, "'type' must be a string");
    if (m->id == NULL)
        return proto_fail(err, errlen, "'id' must be a non-empty string of at most 128 bytes");

    if (strcmp(type, "run") == 0)
        return proto_parse_run(m, err, errlen);
    if (strcmp(type, "stdin") == 0) {
        m->type = PROTO_STDIN;
        json_t *jd = json_object_get(m->root, "data");
        if (!json_is_string(jd))
            return proto_fail(err, errlen, "'data' must be a string");
        m->has_stdin = 1;
        m->stdin_data = json_string_value(jd);
        m->stdin_len = json_string_length(jd);
        return 0;
    }
    if (strcmp(type, "stdin_close") == 0) {
        m->type = PROTO_STDIN_CLOSE;
        return 0;
    }
    if (strcmp(type, "kill") == 0) {
        m->type = PROTO_KILL;
        return 0;
    }
    snprintf(err, errlen, "unknown message type '%.32s'", type);
    return -1;
}

void proto_msg_free(proto_msg_t *m)
{
    json_decref(m->root);
    m->root = NULL;
}

/* ctl_show: what wslbctl prints: aligned text tables for people, JSON for
 * machines. Rendering is pure: it reads a fleet and appends to a buffer. */
#ifndef CTL_SHOW_H
#define CTL_SHOW_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "ctl_fleet.h"

/* A text table: cells are added left to right, row after row; columns
 * whose bit is set in right_mask are right-aligned (numbers). */
typedef struct ctl_tab {
    size_t ncols, ncells, cap;
    char **cells;
    uint64_t right_mask;
} ctl_tab_t;

void ctl_tab_init(ctl_tab_t *t, size_t ncols, uint64_t right_mask);
/* Appends one cell (printf-style). Returns 0 or -1 (memory). */
int ctl_tab_cell(ctl_tab_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends the table, two blanks between columns, no trailing blanks. */
int ctl_tab_render(const ctl_tab_t *t, buf_t *out);
void ctl_tab_free(ctl_tab_t *t);

/* "0.4s", "12.3s", "5m03s", "2h10m"; "-" for a negative duration. */
const char *ctl_show_age(int64_t ms, char *buf, size_t len);

/* The status table: the sources, then one row per backend (a state and
 * this lb's websockets per lb, every lb's websockets, evaluations running
 * and queued, version, heartbeat age, "!" where something disagrees). */
int ctl_show_table(const ctl_fleet_t *f, const ctl_conf_t *c, buf_t *out);
/* The same as one JSON document (see README.md, "wslbctl"). */
int ctl_show_json(const ctl_fleet_t *f, const ctl_conf_t *c, buf_t *out);

#endif

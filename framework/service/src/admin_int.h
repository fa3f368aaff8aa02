/*
 * The renderers admin.c serves: the Prometheus text of /metrics (admin_metrics.c) and
 * the JSON of /tasks (admin_tasks.c). They build response bodies and know nothing of
 * HTTP; admin.c calls them and they call nothing in admin.c. Private to admin*.c.
 *
 * Thread rules: both run on libmicrohttpd's polling thread, one request at a time.
 */
#ifndef TL_ADMIN_INT_H
#define TL_ADMIN_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "runtime.h"

/* How long /tasks waits for the loop thread before answering 503. */
#define TL_ADMIN_TASKS_WAIT_MS 2000

/* The Prometheus text (format 0.0.4) of svc's metrics, *len bytes (malloc'd, the
 * caller frees it), or NULL when out of memory. */
char *tl__admin_metrics(tl_service *svc, size_t *len);

/*
 * The pending tasks of svc's loop as JSON text with a final newline, in *json (malloc'd,
 * the caller frees it). Asks the loop thread and waits up to TL_ADMIN_TASKS_WAIT_MS,
 * less once *closing is set. 0; TL_ECLOSED when the loop takes no more calls;
 * TL_ETIMEDOUT when it did not answer in time; TL_ENOMEM.
 */
int tl__admin_tasks(tl_service *svc, _Atomic bool *closing, char **json);

#endif

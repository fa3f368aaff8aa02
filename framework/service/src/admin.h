/*
 * The admin HTTP endpoint of a service: /, /metrics, /stats, /healthz, /readyz, /tasks.
 *
 * Thread rules: tl__admin_open and tl__admin_close run on the thread calling
 * tl_service_run, before and after the loop runs; requests are served on
 * libmicrohttpd's own thread (see admin.c).
 */
#ifndef TL_ADMIN_H
#define TL_ADMIN_H

#include <taskloop/service.h>

typedef struct tl_admin tl_admin;

/*
 * Starts the endpoint when the config asks for one (cfg->admin_listen); 0 when it is
 * listening or not wanted. On failure (bad address, port taken) it logs an
 * "admin_failed" event naming the address and the reason, and returns TL_ESYS or
 * TL_ENOMEM, so that the run fails before any source starts.
 */
int tl__admin_open(tl_service *svc);

/* Stops the endpoint, if any: waits for the requests in progress, closes the socket. */
void tl__admin_close(tl_service *svc);

#endif

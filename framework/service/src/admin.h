/*
 * The admin HTTP endpoint of a service: /, /metrics, /stats, /healthz, /readyz, /tasks.
 *
 * Thread rules: tl__admin_bind runs in tl_service_new; tl__admin_open and
 * tl__admin_close on the thread calling tl_service_run, before and after the loop runs
 * (tl__admin_close again in tl_service_free); requests are served on
 * libmicrohttpd's own thread (see admin.c).
 */
#ifndef TL_ADMIN_H
#define TL_ADMIN_H

#include <taskloop/service.h>

typedef struct tl_admin tl_admin;

/*
 * Binds the endpoint's socket when the config asks for one (cfg->admin_listen), so that
 * tl_service_admin_port knows the port once the service is built; 0 when bound or not
 * wanted. On failure (bad address, port taken) it logs an "admin_failed" event, writes
 * the address and the reason into err and returns TL_ESYS or TL_ENOMEM.
 */
int tl__admin_bind(tl_service *svc, char *err, size_t errlen);

/* Starts serving the bound socket (nothing when there is none); TL_ESYS, after an
 * "admin_failed" event, when the HTTP server cannot start. */
int tl__admin_open(tl_service *svc);

/* Stops the endpoint, if any: waits for the requests in progress, closes the socket;
 * the port is 0 afterwards. */
void tl__admin_close(tl_service *svc);

#endif

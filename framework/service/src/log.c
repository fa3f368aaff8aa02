/*
 * Events: the runtime reports what happens through the user's log function (see
 * tl_service_opts); it never prints.
 *
 * Thread rules: loop thread, or the thread calling tl_service_run before and after
 * the loop runs.
 */
#include "runtime.h"

void tl__log(tl_service *svc, tl_level level, const char *event, const tl_kv *fields, size_t n)
{
    if (svc->opts.log)
        svc->opts.log(svc->opts.log_user, level, event, fields, n);
}

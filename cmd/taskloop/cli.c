/* Helpers shared by the subcommands: messages, option values, the registry, clocks. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#ifdef TL_HAVE_KAFKA
#include <taskloop/kafka.h>
#endif
#ifdef TL_HAVE_ZMQ
#include <taskloop/zmq.h>
#endif
#ifdef TL_HAVE_MEMORY
#include <taskloop/memory.h>
#endif

void tl_cli_note(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    tl_program_note("%s", msg);
}

void tl_cli_err(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    tl_cli_note("%s: %s", TL_CLI_NAME, msg);
}

/* Registers each adapter this build has; a failure names the one that failed. */
static int add_adapters(tl_registry *reg)
{
    int rc = 0;
#ifdef TL_HAVE_KAFKA
    if ((rc = tl_kafka_register(reg)) != 0) {
        tl_cli_err("cannot register the kafka adapter: %s", tl_strerror(rc));
        return rc;
    }
#endif
#ifdef TL_HAVE_ZMQ
    if ((rc = tl_zmq_register(reg)) != 0) {
        tl_cli_err("cannot register the zmq adapter: %s", tl_strerror(rc));
        return rc;
    }
#endif
#ifdef TL_HAVE_MEMORY
    if ((rc = tl_memory_register(reg)) != 0) {
        tl_cli_err("cannot register the memory adapter: %s", tl_strerror(rc));
        return rc;
    }
#endif
    return rc;
}

tl_registry *tl_cli_registry(void)
{
    tl_registry *reg = NULL;
    int rc = tl_registry_new(&reg);
    if (rc != 0) {
        tl_cli_err("cannot create the registry: %s", tl_strerror(rc));
        return NULL;
    }
    if (add_adapters(reg) != 0)
        goto fail;
    if ((rc = tl_register_builtin_handlers(reg)) != 0) {
        tl_cli_err("cannot register the built-in handlers: %s", tl_strerror(rc));
        goto fail;
    }
    return reg;
fail:
    tl_registry_free(reg);
    return NULL;
}

bool tl_cli_duration(const char *s, int64_t *ms)
{
    char why[128];
    return s && tl_config_parse_duration(s, ms, why, sizeof(why)) == 0;
}

bool tl_cli_ratio(const char *s, double *out)
{
    if (!s || !*s)
        return false;
    char *end;
    double v = strtod(s, &end);
    if (*end != '\0' || !(v >= 0.0 && v <= 1.0))
        return false;
    *out = v;
    return true;
}

bool tl_cli_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

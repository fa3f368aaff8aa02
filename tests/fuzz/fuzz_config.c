/*
 * Fuzz target: a config file's content through tl_config_load_string, then
 * tl_config_dump of what loaded. The registry knows the Kafka, ZeroMQ and memory
 * adapters, the built-in handlers, and a "fake" source and sink with a key of every
 * kind (as the unit tests' configs use); no plugin is ever opened (no_plugin_code).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <taskloop/config.h>
#include <taskloop/kafka.h>
#include <taskloop/memory.h>
#include <taskloop/service.h>
#include <taskloop/zmq.h>

static const tl_param fake_params[] = {
    {"url", TL_PARAM_STRING, true, false, "where to read"},
    {"count", TL_PARAM_INT, false, false, "how many"},
    {"enabled", TL_PARAM_BOOL, false, false, "on or off"},
    {"interval", TL_PARAM_DURATION, false, false, "poll interval"},
    {"topics", TL_PARAM_LIST, false, false, "what to read"},
    {"props", TL_PARAM_MAP, false, true, "passed through"},
    {"password", TL_PARAM_STRING, false, false, "a secret"},
    {"brokers", TL_PARAM_STRING, false, false, "where to send"},
    {NULL, TL_PARAM_STRING, false, false, NULL},
};
static const tl_source_ops fake_source = {.type = "fake", .params = fake_params, .input = "topics"};
static const tl_sink_ops fake_sink = {.scheme = "fake", .params = fake_params};

static int handle(tl_task *task, const tl_msg *msg, void *user)
{
    (void)task, (void)msg, (void)user;
    return 0;
}

static const char *fuzz_env(const char *name, void *user)
{
    (void)user;
    static const char *const vars[][2] = {{"HOST", "example.org"},
                                          {"PORT", "9000"},
                                          {"EMPTY", ""},
                                          {"URL", "kafka://user:hunter2@broker:9092"}};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        if (strcmp(name, vars[i][0]) == 0)
            return vars[i][1];
    return NULL;
}

static tl_registry *registry(void)
{
    static tl_registry *reg;
    if (reg)
        return reg;
    if (tl_registry_new(&reg) != 0 || tl_kafka_register(reg) != 0 || tl_zmq_register(reg) != 0 ||
        tl_memory_register(reg) != 0 || tl_register_builtin_handlers(reg) != 0 ||
        tl_registry_add_source(reg, &fake_source) != 0 ||
        tl_registry_add_sink(reg, &fake_sink) != 0 ||
        tl_register_handler(reg, "handle", handle, NULL) != 0 ||
        tl_register_handler(reg, "other", handle, NULL) != 0)
        abort();
    return reg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (!sink && !(sink = fopen("/dev/null", "w")))
        abort();
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    tl_config_opts opts = {.getenv = fuzz_env, .no_plugin_code = true};
    tl_config *cfg = NULL;
    tl_diag diag = {0};
    int rc = tl_config_load_string("fuzz.yaml", text, registry(), &opts, &cfg, &diag);
    /* A refusal says where and why; a success hands out a config. */
    if ((rc == 0) != (cfg != NULL) || (rc == TL_ECONFIG && diag.errors == 0))
        abort();
    if (cfg)
        tl_config_dump(cfg, sink);
    tl_config_free(cfg);
    tl_diag_free(&diag);
    free(text);
    return 0;
}

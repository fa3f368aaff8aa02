/*
 * The YAML config against the real adapters' own rules: what `taskloop run` would
 * refuse when it opens a source or a sink, `taskloop check` refuses first, at the line
 * of the offending value. Ranges of every integer and duration, ZeroMQ endpoints, Kafka
 * bootstrap lists and topic names, and librdkafka properties (set on a throwaway
 * configuration: nothing connects), without a message quoting a secret or what an
 * environment variable held. The fixture is in config_helpers.h, with the kafka, zmq
 * and memory adapters added to its registry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <taskloop/kafka.h>
#include <taskloop/memory.h>
#include <taskloop/zmq.h>

#include "config_helpers.h"

/* ---------------------------------------------------------------- helpers */

/* The environment of these tests: EP and PROTO hold values a message must not show. */
static const char *test_env(const char *name, void *user)
{
    (void)user;
    if (strcmp(name, "EP") == 0)
        return "tcp://hidden-endpoint";
    if (strcmp(name, "PROTO") == 0)
        return "hidden_protocol";
    if (strcmp(name, "SECRET") == 0)
        return "hidden_secret";
    if (strcmp(name, "BROKERS") == 0)
        return "hidden-host:99999";
    return NULL;
}

static const tl_config_opts env_opts = {.getenv = test_env};

static int setup_adapters(void **state)
{
    setup(state);
    fixture *f = *state;
    assert_int_equal(tl_kafka_register(f->reg), 0);
    assert_int_equal(tl_zmq_register(f->reg), 0);
    assert_int_equal(tl_memory_register(f->reg), 0);
    return 0;
}

#undef T
#define T(name) cmocka_unit_test_setup_teardown(name, setup_adapters, teardown)

/* A config of one source (a flow mapping's inside) and one route on it, with extra
 * appended to the route (a static buffer). */
static const char *one_source(const char *source, const char *route_extra)
{
    static char text[2048];
    snprintf(text, sizeof(text),
             "service: s\n"
             "sources:\n"
             "  in: { %s }\n"
             "routes:\n"
             "  - { source: in, handler: handle%s }\n",
             source, route_extra);
    return text;
}

static int load(fixture *f, const char *text)
{
    tl_config_free(f->cfg);
    f->cfg = NULL;
    tl_diag_free(&f->diag);
    return tl_config_load_string("t.yaml", text, f->reg, &env_opts, &f->cfg, &f->diag);
}

/* Fails unless text loads. */
static void assert_accepts(fixture *f, const char *text)
{
    int rc = load(f, text);
    if (rc)
        tl_diag_print(&f->diag, stderr);
    assert_int_equal(rc, 0);
}

/* Fails unless text is refused with exactly one message, and that message is want. */
static void assert_refuses(fixture *f, const char *text, const char *want)
{
    assert_one_error(f, load(f, text), want);
}

/* Fails unless text is refused and no message holds any of the environment's values. */
static void assert_no_env_value_shown(fixture *f)
{
    static const char *const hidden[] = {"hidden-endpoint", "hidden_protocol", "hidden_secret",
                                         "hidden-host", NULL};
    for (size_t i = 0; i < f->diag.count; i++)
        for (size_t j = 0; hidden[j]; j++)
            if (strstr(f->diag.msgs[i], hidden[j]))
                fail_msg("message shows an environment value: %s", f->diag.msgs[i]);
}

/* ---------------------------------------------------------------- ranges */

static void kafka_batch_of_zero_is_refused_at_its_line(void **state)
{
    assert_refuses(*state, one_source("type: kafka, mock: 1, group: g, topics: [t], batch: 0", ""),
                   "t.yaml:3:61: error: sources.in.batch: 0 is out of range (1 to 1000000)");
}

static void negative_batch_is_refused(void **state)
{
    assert_refuses(*state, one_source("type: memory, name: m, batch: -5", ""),
                   "t.yaml:3:39: error: sources.in.batch: -5 is out of range (1 to 1048576)");
}

/* Every integer and duration setting of the three adapters, just past its range. */
static void every_number_setting_has_a_range(void **state)
{
    static const struct {
        const char *source, *key;
    } cases[] = {
        {"type: kafka, mock: 1, group: g, topics: [t], batch: 1000001", "batch"},
        {"type: kafka, mock: 1, group: g, topics: [t], poll_timeout: 61s", "poll_timeout"},
        {"type: kafka, mock: 65, group: g, topics: [t]", "mock"},
        {"type: zmq, endpoint: \"tcp://127.0.0.1:5557\", hwm: -1", "hwm"},
        {"type: zmq, endpoint: \"tcp://127.0.0.1:5557\", batch: 0", "batch"},
        {"type: zmq, endpoint: \"tcp://127.0.0.1:5557\", batch: 1048577", "batch"},
        {"type: zmq, endpoint: \"tcp://127.0.0.1:5557\", max_message: 0", "max_message"},
        {"type: memory, name: m, partitions: 0", "partitions"},
        {"type: memory, name: m, partitions: 1025", "partitions"},
        {"type: memory, name: m, run: 0", "run"},
    };
    fixture *f = *state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[128];
        snprintf(want, sizeof(want), "sources.in.%s: ", cases[i].key);
        assert_int_equal(load(f, one_source(cases[i].source, "")), TL_ECONFIG);
        assert_int_equal(f->diag.count, 1);
        assert_non_null(strstr(f->diag.msgs[0], want));
        assert_non_null(strstr(f->diag.msgs[0], "out of range"));
        assert_true(strncmp(f->diag.msgs[0], "t.yaml:3:", 9) == 0);
    }
}

static void sink_sections_have_ranges_too(void **state)
{
    static const char *const sinks[] = {"zmq: { queue: 0 }", "zmq: { send_timeout: 2h }",
                                        "zmqpub: { linger: 61m }", "kafka: { mock: 65 }"};
    fixture *f = *state;
    for (size_t i = 0; i < sizeof(sinks) / sizeof(sinks[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "service: s\nsources:\n  in: { type: memory, name: m }\n"
                 "sinks:\n  %s\nroutes:\n  - { source: in, handler: handle }\n",
                 sinks[i]);
        assert_int_equal(load(f, text), TL_ECONFIG);
        assert_int_equal(f->diag.count, 1);
        assert_non_null(strstr(f->diag.msgs[0], "out of range"));
        assert_true(strncmp(f->diag.msgs[0], "t.yaml:5:", 9) == 0);
    }
}

static void the_ends_of_each_range_are_accepted(void **state)
{
    fixture *f = *state;
    assert_accepts(f, one_source("type: kafka, mock: 64, group: g, topics: [t], batch: 1000000, "
                                 "poll_timeout: 0ms",
                                 ""));
    assert_accepts(f, one_source("type: kafka, mock: 1, group: g, topics: [t], batch: 1, "
                                 "poll_timeout: 60s",
                                 ""));
    assert_accepts(f, one_source("type: zmq, endpoint: \"tcp://127.0.0.1:5557\", hwm: 0, "
                                 "batch: 1048576, max_message: 1",
                                 ""));
    assert_accepts(f, one_source("type: memory, name: m, partitions: 1024, batch: 1, run: 1", ""));
}

/* open() checks the same ranges when its params come from elsewhere than a config. */
static void open_refuses_what_check_refuses(void **state)
{
    (void)state;
    tl_param_value v[] = {
        {.name = "name", .type = TL_PARAM_STRING, .str = "m"},
        {.name = "batch", .type = TL_PARAM_INT, .str = "0", .num = 0},
    };
    tl_params p = {.section = "in", .v = v, .n = 2};
    tl_source_events ev = {0};
    tl_source *src = NULL;
    char err[256] = "";
    assert_int_equal(tl_memory_source_ops.open(&p, &ev, &src, err, sizeof(err)), TL_ECONFIG);
    assert_null(src);
    assert_string_equal(err, "memory source: batch: 0 is out of range (1 to 1048576)");
}

static void kafka_topics_must_not_be_an_empty_list(void **state)
{
    assert_refuses(*state, one_source("type: kafka, mock: 1, group: g, topics: []", ""),
                   "t.yaml:3:41: error: sources.in.topics: must not be empty: give at least one "
                   "item");
}

/* ---------------------------------------------------------------- addresses */

static void zmq_endpoint_without_a_port_is_refused(void **state)
{
    assert_refuses(*state, one_source("type: zmq, endpoint: \"tcp://nohost\"", ""),
                   "t.yaml:3:30: error: sources.in.endpoint: expected HOST:PORT after tcp://");
}

static void zmq_endpoints_are_parsed_for_bind_or_connect(void **state)
{
    fixture *f = *state;
    static const char *const bad[] = {
        "endpoint: \"tcp://127.0.0.1:70000\"",
        "endpoint: \"tcp://127.0.0.1:x\"",
        "endpoint: \"udp://127.0.0.1:5557\"",
        "endpoint: \"127.0.0.1:5557\"",
        "endpoint: \"ipc://\"",
        "endpoint: \"inproc://\"",
        "endpoint: \"tcp://*:5557\", socket: sub",
        "endpoint: \"tcp://bad host:5557\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char src[256];
        snprintf(src, sizeof(src), "type: zmq, %s", bad[i]);
        assert_int_equal(load(f, one_source(src, "")), TL_ECONFIG);
        assert_int_equal(f->diag.count, 1);
        assert_true(strncmp(f->diag.msgs[0], "t.yaml:3:30: error: sources.in.endpoint: ", 41) == 0);
    }
    static const char *const good[] = {
        "endpoint: \"tcp://*:5557\"",
        "endpoint: \"tcp://127.0.0.1:*\"",
        "endpoint: \"tcp://[::1]:5557\"",
        "endpoint: \"tcp://broker-1.example:5557\", socket: sub",
        "endpoint: \"ipc:///tmp/tl.sock\"",
        "endpoint: \"inproc://x\"",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char src[256];
        snprintf(src, sizeof(src), "type: zmq, %s", good[i]);
        assert_accepts(f, one_source(src, ""));
    }
}

static void zmq_endpoint_from_the_environment_is_named_not_shown(void **state)
{
    fixture *f = *state;
    assert_refuses(f, one_source("type: zmq, endpoint: \"${EP}\"", ""),
                   "t.yaml:3:30: error: sources.in.endpoint: expected HOST:PORT after tcp://");
    assert_no_env_value_shown(f);
}

static void zmq_targets_are_parsed(void **state)
{
    fixture *f = *state;
    assert_refuses(
        f, one_source("type: memory, name: m", ", on_stall: { reroute: \"zmq:tcp://*:9\" }"),
        "t.yaml:5:57: error: routes[0].on_stall.reroute: host * (every address) is for "
        "binding; a connect needs a host");
    assert_accepts(
        f, one_source("type: memory, name: m", ", on_stall: { reroute: \"zmqpub:tcp://*:9\" }"));
}

static void kafka_bootstrap_list_is_parsed(void **state)
{
    fixture *f = *state;
    assert_refuses(
        f, one_source("type: kafka, brokers: \"a:9092,b:99999\", group: g, topics: [t]", ""),
        "t.yaml:3:31: error: sources.in.brokers: entry 2 is not HOST:PORT (expected "
        "HOST:PORT[,HOST:PORT...], HOST a name, an IPv4 address or [IPv6], PORT 1 to "
        "65535)");
    assert_refuses(f,
                   one_source("type: kafka, brokers: \"a:9092,,b:1\", group: g, topics: [t]", ""),
                   "t.yaml:3:31: error: sources.in.brokers: entry 2 is empty (expected "
                   "HOST:PORT[,HOST:PORT...])");
    assert_int_equal(load(f, one_source("type: kafka, brokers: \"${BROKERS}\", group: g, "
                                        "topics: [t]",
                                        "")),
                     TL_ECONFIG);
    assert_no_env_value_shown(f);
    assert_accepts(f, one_source("type: kafka, brokers: \"a:9092, [::1]:9093,SSL://c.example\", "
                                 "group: g, topics: [t]",
                                 ""));
}

static void kafka_topic_names_are_checked(void **state)
{
    fixture *f = *state;
    assert_refuses(f, one_source("type: kafka, mock: 1, group: g, topics: [ok, \"b d\"]", ""),
                   "t.yaml:3:49: error: sources.in.topics: item 2: not a Kafka topic name (1 to "
                   "249 letters, digits, '.', '_' or '-', not \".\" or \"..\")");
    assert_refuses(f, one_source("type: memory, name: m", ", on_error: { then: \"kafka:a/b\" }"),
                   "t.yaml:5:54: error: routes[0].on_error.then: not a Kafka topic name (1 to "
                   "249 letters, digits, '.', '_' or '-', not \".\" or \"..\")");
    assert_accepts(
        f, one_source("type: kafka, mock: 1, group: g, topics: [\"^orders-.*\", a.b_c-1]", ""));
}

/* ---------------------------------------------------------------- librdkafka properties */

static const char *with_property(const char *prop)
{
    static char src[512];
    snprintf(src, sizeof(src), "type: kafka, mock: 1, group: g, topics: [t], kafka: { %s }", prop);
    return one_source(src, "");
}

static void unknown_librdkafka_property_is_refused_at_its_line(void **state)
{
    assert_refuses(*state, with_property("no.such.property: 1"),
                   "t.yaml:3:81: error: sources.in.kafka.no.such.property: No such "
                   "configuration property: \"no.such.property\"");
}

static void bad_librdkafka_value_is_refused(void **state)
{
    fixture *f = *state;
    assert_refuses(f, with_property("session.timeout.ms: soon"),
                   "t.yaml:3:83: error: sources.in.kafka.session.timeout.ms: Invalid value for "
                   "configuration property \"session.timeout.ms\"");
    assert_accepts(f, with_property("session.timeout.ms: 6000, security.protocol: sasl_ssl, "
                                    "sasl.mechanisms: PLAIN, sasl.password: p"));
}

static void librdkafka_error_never_shows_a_secret(void **state)
{
    fixture *f = *state;
    assert_refuses(f, with_property("sasl.oauthbearer.method: hidden_secret"),
                   "t.yaml:3:88: error: sources.in.kafka.sasl.oauthbearer.method: invalid value "
                   "(not shown: a secret)");
    assert_refuses(f, with_property("sasl.oauthbearer.method: \"${SECRET}\""),
                   "t.yaml:3:88: error: sources.in.kafka.sasl.oauthbearer.method: invalid value "
                   "(not shown: a secret)");
}

static void librdkafka_error_names_the_variable_not_its_value(void **state)
{
    fixture *f = *state;
    assert_refuses(f, with_property("security.protocol: \"${PROTO}\""),
                   "t.yaml:3:82: error: sources.in.kafka.security.protocol: Invalid value "
                   "\"${PROTO}\" for configuration property \"security.protocol\"");
    assert_no_env_value_shown(f);
}

/* Setting it would load (run) the named library: check leaves it to `taskloop run`. */
static void check_loads_no_librdkafka_plugin(void **state)
{
    assert_accepts(*state, with_property("plugin.library.paths: /nonexistent/plugin.so"));
}

static void auto_offset_store_is_refused_at_check(void **state)
{
    assert_refuses(*state, with_property("enable.auto.offset.store: true"),
                   "t.yaml:3:89: error: sources.in.kafka.enable.auto.offset.store: must stay "
                   "false; taskloop stores the offsets of settled messages itself");
}

/* The runtime counts a message until librdkafka's commit of it is acknowledged. */
static void auto_commit_off_is_refused_at_check(void **state)
{
    assert_refuses(*state, with_property("enable.auto.commit: false"),
                   "t.yaml:3:83: error: sources.in.kafka.enable.auto.commit: must stay "
                   "true; taskloop counts a message until librdkafka's commit of it is "
                   "acknowledged");
}

static void sink_section_properties_are_checked(void **state)
{
    assert_refuses(*state,
                   "service: s\nsources:\n  in: { type: memory, name: m }\n"
                   "sinks:\n  kafka: { mock: 1, kafka: { acks: maybe } }\n"
                   "routes:\n  - { source: in, handler: handle }\n",
                   "t.yaml:5:36: error: sinks.kafka.kafka.acks: Invalid value for configuration "
                   "property \"request.required.acks\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(kafka_batch_of_zero_is_refused_at_its_line),
        T(negative_batch_is_refused),
        T(every_number_setting_has_a_range),
        T(sink_sections_have_ranges_too),
        T(the_ends_of_each_range_are_accepted),
        T(open_refuses_what_check_refuses),
        T(kafka_topics_must_not_be_an_empty_list),
        T(zmq_endpoint_without_a_port_is_refused),
        T(zmq_endpoints_are_parsed_for_bind_or_connect),
        T(zmq_endpoint_from_the_environment_is_named_not_shown),
        T(zmq_targets_are_parsed),
        T(kafka_bootstrap_list_is_parsed),
        T(kafka_topic_names_are_checked),
        T(unknown_librdkafka_property_is_refused_at_its_line),
        T(bad_librdkafka_value_is_refused),
        T(librdkafka_error_never_shows_a_secret),
        T(librdkafka_error_names_the_variable_not_its_value),
        T(check_loads_no_librdkafka_plugin),
        T(auto_offset_store_is_refused_at_check),
        T(auto_commit_off_is_refused_at_check),
        T(sink_section_properties_are_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

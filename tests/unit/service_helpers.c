/* The fixture shared by the service runtime tests; see service_helpers.h. */
#include "service_helpers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ the handler */

static size_t call_begin(fx *f, tl_task *task, const tl_msg *msg)
{
    pthread_mutex_lock(&f->mu);
    size_t i = f->ncalls < MAXCALLS ? f->ncalls++ : MAXCALLS - 1;
    call *c = &f->calls[i];
    c->partition = msg->partition;
    c->offset = msg->offset;
    c->key = msg->key && msg->key_len ? ((const char *)msg->key)[0] - 'a' : -1;
    if (c->key >= MAXKEYS)
        c->key = -1;
    c->attempt = tl_handler_attempt(task);
    c->start_ms = now_ms();
    c->end_ms = 0;
    if (++f->active > f->max_active)
        f->max_active = f->active;
    if (msg->partition >= 0 && msg->partition < MAXPARTS &&
        ++f->active_part[msg->partition] > f->max_part[msg->partition])
        f->max_part[msg->partition] = f->active_part[msg->partition];
    if (c->key >= 0 && ++f->active_key[c->key] > f->max_key[c->key])
        f->max_key[c->key] = f->active_key[c->key];
    pthread_mutex_unlock(&f->mu);
    return i;
}

static void call_end(fx *f, size_t i, bool saw_cancel)
{
    pthread_mutex_lock(&f->mu);
    call *c = &f->calls[i];
    c->end_ms = now_ms();
    c->saw_cancel = saw_cancel;
    f->active--;
    if (c->partition >= 0 && c->partition < MAXPARTS)
        f->active_part[c->partition]--;
    if (c->key >= 0)
        f->active_key[c->key]--;
    pthread_mutex_unlock(&f->mu);
}

static bool starts_with(const tl_msg *msg, const char *prefix)
{
    return strncmp(msg->payload, prefix, strlen(prefix)) == 0;
}

/* quick and qflaky: the partition's attempts come one at a time, in offset order. */
static int quick(fx *f, tl_task *task, const tl_msg *msg)
{
    int32_t p = msg->partition;
    if (p < 0 || p >= MAXPARTS)
        return TL_EFAIL;
    if (atomic_fetch_add(&f->quick[p].active, 1) != 0)
        atomic_fetch_add(&f->quick_overlaps, 1);
    if (msg->offset != atomic_load(&f->quick[p].next))
        atomic_fetch_add(&f->quick_out_of_order, 1);
    int rc = starts_with(msg, "qflaky") && tl_handler_attempt(task) < 3 ? TL_EFAIL : 0;
    if (rc == 0)
        atomic_store(&f->quick[p].next, msg->offset + 1);
    atomic_fetch_sub(&f->quick[p].active, 1);
    return rc;
}

static int handler(tl_task *task, const tl_msg *msg, void *user)
{
    fx *f = user;
    if (starts_with(msg, "quick") || starts_with(msg, "qflaky"))
        return quick(f, task, msg);
    size_t i = call_begin(f, task, msg);
    int rc = 0;
    bool saw_cancel = false;
    int64_t t0 = now_ms();
    if (starts_with(msg, "stall")) {
        while (!(saw_cancel = tl_cancelled(task)) && now_ms() - t0 < 5000)
            sleep_ms(1);
        rc = TL_ECANCELED;
    } else if (starts_with(msg, "stuck")) {
        while (!atomic_load(&f->released) && now_ms() - t0 < 10000)
            sleep_ms(1);
        saw_cancel = tl_cancelled(task);
    } else if (starts_with(msg, "fail")) {
        char text[32];
        snprintf(text, sizeof(text), "boom %lld", (long long)msg->offset);
        tl_task_set_error_text(task, text);
        rc = TL_EFAIL;
    } else if (starts_with(msg, "flaky")) {
        rc = tl_handler_attempt(task) < 3 ? TL_EFAIL : 0;
    } else if (f->sleep_ms > 0) {
        sleep_ms(f->sleep_ms);
    }
    call_end(f, i, saw_cancel);
    return rc;
}

/* ------------------------------------------------------------ fixture */

int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    atomic_init(&f->released, false);
    tl_memory_reset();
    assert_int_equal(tl_registry_new(&f->reg), 0);
    assert_int_equal(tl_memory_register(f->reg), 0);
    assert_int_equal(tl_register_handler(f->reg, "h", handler, f), 0);
    *state = f;
    return 0;
}

int teardown(void **state)
{
    fx *f = *state;
    atomic_store(&f->released, true); /* a stuck handler must let the pool go */
    tl_service_free(f->svc);
    tl_config_free(f->cfg);
    tl_registry_free(f->reg);
    tl_diag_free(&f->diag);
    tl_memory_reset();
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

void start(fx *f, const char *topic, opts o)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "service: t\n"
             "loop: { workers: %d, max_in_flight: %d, drain_timeout: %s, "
             "max_replaced_workers: %d }\n"
             "sources:\n"
             "  in: { type: memory, name: %s, partitions: %d, batch: %d%s }\n"
             "routes:\n"
             "  - source: in\n"
             "    handler: %s\n"
             "    ordering: %s\n"
             "    timeout: %s\n"
             "%s%s",
             o.workers ? o.workers : 4, o.max_in_flight ? o.max_in_flight : 1000,
             o.drain ? o.drain : "2s", o.max_replaced ? o.max_replaced : 4, topic,
             o.partitions ? o.partitions : 1, o.batch ? o.batch : 16,
             o.source_extra ? o.source_extra : "", o.handler ? o.handler : "h",
             o.ordering ? o.ordering : "partition", o.timeout ? o.timeout : "5s",
             o.route_extra ? o.route_extra : "", o.top_extra ? o.top_extra : "");
    start_yaml(f, topic, text);
}

/* TL_TEST_SHARDS=N runs each service on N shards, unless its config says how many. */
static void test_shards(tl_config *cfg)
{
    const char *env = getenv("TL_TEST_SHARDS");
    unsigned n = env ? (unsigned)atoi(env) : 0;
    if (n <= 1 || n > TL_CONFIG_MAX_SHARDS || cfg->shards != 1)
        return;
    cfg->shards = n;
}

void start_yaml(fx *f, const char *topic, const char *yaml)
{
    snprintf(f->topic, sizeof(f->topic), "%s", topic);
    int rc = tl_config_load_string("test.yaml", yaml, f->reg, NULL, &f->cfg, &f->diag);
    if (rc)
        tl_diag_print(&f->diag, stderr);
    assert_int_equal(rc, 0);
    test_shards(f->cfg);
    char err[256] = "";
    rc = tl_service_new(f->cfg, f->reg, NULL, &f->svc, err, sizeof(err));
    if (rc)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
}

void push(fx *f, int32_t partition, const char *key, const char *payload)
{
    assert_true(tl_memory_push(f->topic, partition, key, payload, strlen(payload)) >= 0);
}

static void *helper_main(void *arg)
{
    fx *f = arg;
    f->script(f);
    f->stop_at_ms = now_ms();
    tl_service_stop(f->svc);
    return NULL;
}

void run(fx *f, void (*script)(fx *f))
{
    pthread_t helper;
    f->script = script;
    assert_int_equal(pthread_create(&helper, NULL, helper_main, f), 0);
    f->run_rc = tl_service_run(f->svc);
    f->run_end_ms = now_ms();
    pthread_join(helper, NULL);
    if (f->bad_line)
        fprintf(stderr, "the script's wait at line %d timed out\n", f->bad_line);
    assert_int_equal(f->bad_line, 0);
    assert_int_equal(f->run_rc, 0);
}

tl_service_stats stats(fx *f)
{
    tl_service_stats s;
    tl_service_stats_get(f->svc, &s);
    return s;
}

void assert_balanced(fx *f)
{
    tl_service_stats s = stats(f);
    assert_int_equal(s.consumed, s.completed + s.rerouted + s.dropped);
    assert_int_equal(s.in_flight, 0);
}

/* ------------------------------------------------------------ script helpers */

uint64_t stat_at(fx *f, size_t field)
{
    tl_service_stats s = stats(f);
    return *(const uint64_t *)((const char *)&s + field);
}

bool wait_stat(fx *f, size_t field, uint64_t at_least, int64_t ms)
{
    int64_t end = now_ms() + ms;
    while (stat_at(f, field) < at_least) {
        if (now_ms() > end)
            return false;
        sleep_ms(2);
    }
    return true;
}

bool wait_for(fx *f, bool (*pred)(fx *f), int64_t ms)
{
    int64_t end = now_ms() + ms;
    while (!pred(f)) {
        if (now_ms() > end)
            return false;
        sleep_ms(2);
    }
    return true;
}

uint64_t settled(fx *f)
{
    tl_service_stats s = stats(f);
    return s.completed + s.rerouted + s.dropped;
}

bool no_handler_running(fx *f)
{
    pthread_mutex_lock(&f->mu);
    bool idle = f->active == 0;
    pthread_mutex_unlock(&f->mu);
    return idle;
}

bool all_settled(fx *f)
{
    tl_service_stats s = stats(f);
    /* outstanding: delivered by the source and not given back yet, which covers a
     * batch on its way to the loop that `consumed` does not count yet. */
    return s.in_flight == 0 && tl_memory_pending(f->topic) == 0 &&
           tl_memory_outstanding(f->topic) == 0 && settled(f) >= s.consumed &&
           no_handler_running(f);
}

void script_until_all_settled(fx *f)
{
    STEP(wait_for(f, all_settled, 10000));
}

size_t ncalls(fx *f)
{
    pthread_mutex_lock(&f->mu);
    size_t n = f->ncalls;
    pthread_mutex_unlock(&f->mu);
    return n;
}

const call *find_call(fx *f, int32_t partition, int64_t offset)
{
    const call *c = NULL;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; !c && i < f->ncalls; i++)
        if (f->calls[i].partition == partition && f->calls[i].offset == offset)
            c = &f->calls[i];
    pthread_mutex_unlock(&f->mu);
    return c;
}

bool call_ended(fx *f, int32_t partition, int64_t offset)
{
    const call *c = find_call(f, partition, offset);
    pthread_mutex_lock(&f->mu);
    bool ended = c && c->end_ms;
    pthread_mutex_unlock(&f->mu);
    return ended;
}

void assert_header(const tl_memory_record *r, const char *name, const char *value)
{
    size_t len = 0;
    const char *v = tl_memory_record_header(r, name, &len);
    if (!v)
        fail_msg("header %s is missing", name);
    if (len != strlen(value) || memcmp(v, value, len) != 0)
        fail_msg("header %s is '%.*s', not '%s'", name, (int)len, v, value);
}

long long header_num(const tl_memory_record *r, const char *name)
{
    size_t len = 0;
    const char *v = tl_memory_record_header(r, name, &len);
    assert_non_null(v);
    char buf[32];
    snprintf(buf, sizeof(buf), "%.*s", (int)len, v);
    return strtoll(buf, NULL, 10);
}

bool part_done(fx *f, int32_t p, int64_t n)
{
    bool seen[64] = {false};
    if (n > 64)
        return false;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->ncalls; i++)
        if (f->calls[i].partition == p && f->calls[i].end_ms && f->calls[i].offset >= 0 &&
            f->calls[i].offset < n)
            seen[f->calls[i].offset] = true;
    pthread_mutex_unlock(&f->mu);
    for (int64_t i = 0; i < n; i++)
        if (!seen[i])
            return false;
    return true;
}

/* ------------------------------------------------------------ the admin endpoint */

int http_get(int port, const char *path, char *body, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char all[16384];
    size_t n = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        char req[256];
        int len = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
        if (write(fd, req, (size_t)len) == len) {
            ssize_t got;
            while (n + 1 < sizeof(all) && (got = read(fd, all + n, sizeof(all) - 1 - n)) > 0)
                n += (size_t)got;
        }
    }
    close(fd);
    all[n] = '\0';
    int status = -1;
    if (sscanf(all, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    const char *start = strstr(all, "\r\n\r\n");
    snprintf(body, cap, "%s", start ? start + 4 : "");
    return status;
}

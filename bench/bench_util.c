#include "bench_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_sleep_us(int64_t us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

long bench_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * 4096L;
}

int64_t bench_thread_cpu_ns(const char *prefix)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 0;
    int64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], name[32] = "";
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        bool match = fgets(name, sizeof(name), f) && strncmp(name, prefix, strlen(prefix)) == 0;
        fclose(f);
        if (!match)
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", e->d_name);
        long long ns = 0;
        if ((f = fopen(path, "r"))) {
            if (fscanf(f, "%lld", &ns) == 1)
                total += ns;
            fclose(f);
        }
    }
    closedir(d);
    return total;
}

void bench_cpu_read(bench_cpu *c, bool loop_self)
{
    struct timespec ts = {0};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    c->loop = loop_self ? (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec
                        : bench_thread_cpu_ns("bench-loop");
    c->workers = bench_thread_cpu_ns("tl-worker");
    c->source = bench_thread_cpu_ns("tl-") - c->workers;
    c->rdkafka = bench_thread_cpu_ns("rdk:");
}

void bench_cpu_print(const char *name, const bench_cpu *a, const bench_cpu *b, uint64_t n)
{
    double k = n ? 1.0 / (double)n : 0;
    fprintf(stderr,
            "  (%s: CPU per message: loop %.0f ns, source %.0f ns, workers %.0f ns,"
            " librdkafka %.0f ns)\n",
            name, (double)(b->loop - a->loop) * k, (double)(b->source - a->source) * k,
            (double)(b->workers - a->workers) * k, (double)(b->rdkafka - a->rdkafka) * k);
}

uint64_t bench_env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    return *end ? def : (uint64_t)n;
}

int bench_noop(tl_task *task, const tl_msg *msg, void *user)
{
    (void)task, (void)msg;
    bench_mark *m = user;
    /* A plain load first: the exchange happens once per run, not once per message. */
    if (atomic_load_explicit(&m->first_ns, memory_order_relaxed) == 0) {
        int64_t zero = 0;
        atomic_compare_exchange_strong(&m->first_ns, &zero, bench_now_ns());
    }
    return 0;
}

static void *run_main(void *arg)
{
    bench_svc *b = arg;
    pthread_setname_np(pthread_self(), "bench-loop"); /* see bench_cpu_read */
    b->run_rc = tl_service_run(b->svc);
    return NULL;
}

int bench_svc_start(bench_svc *b, tl_registry *reg, const char *yaml)
{
    *b = (bench_svc){0};
    tl_diag diag = {0};
    if (tl_config_load_string("bench.yaml", yaml, reg, NULL, &b->cfg, &diag) != 0) {
        tl_diag_print(&diag, stderr);
        tl_diag_free(&diag);
        return -1;
    }
    tl_diag_free(&diag);
    char err[512] = "";
    if (tl_service_new(b->cfg, reg, NULL, &b->svc, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench: cannot build the service: %s\n", err);
        tl_config_free(b->cfg);
        b->cfg = NULL;
        return -1;
    }
    if (pthread_create(&b->thread, NULL, run_main, b) != 0) {
        tl_service_free(b->svc);
        tl_config_free(b->cfg);
        return -1;
    }
    b->running = true;
    return 0;
}

int64_t bench_svc_wait_settled(bench_svc *b, uint64_t n, int64_t timeout_ms)
{
    int64_t deadline = bench_now_ns() + timeout_ms * 1000000;
    int64_t prev_ns = 0;
    uint64_t prev = 0;
    for (;;) {
        tl_service_stats st;
        tl_service_stats_get(b->svc, &st);
        int64_t now = bench_now_ns();
        uint64_t got = st.completed + st.rerouted;
        if (got >= n)
            return now;
        if (now >= deadline)
            return -1;
        /* At the pace since the last look, is the end less than 2 ms away? */
        bool near = prev_ns && got > prev &&
                    (double)(n - got) * (double)(now - prev_ns) < 2e6 * (double)(got - prev);
        prev = got;
        prev_ns = now;
        bench_sleep_us(near ? 50 : 1000);
    }
}

void bench_svc_stop(bench_svc *b)
{
    if (b->running) {
        tl_service_stop(b->svc);
        pthread_join(b->thread, NULL);
        b->running = false;
    }
    tl_service_free(b->svc);
    tl_config_free(b->cfg);
    *b = (bench_svc){0};
}

double bench_svc_rate(tl_registry *reg, const char *yaml, uint64_t n, int64_t timeout_ms,
                      const bench_mark *mark)
{
    bench_svc b;
    double rate = -1;
    int64_t start = bench_now_ns();
    if (bench_svc_start(&b, reg, yaml) == 0) {
        int64_t done = bench_svc_wait_settled(&b, n, timeout_ms);
        int64_t from = mark ? atomic_load(&mark->first_ns) : start;
        if (done > 0 && from > 0)
            rate = (double)n / ((double)(done - from) / 1e9);
        bench_svc_stop(&b);
    }
    return rate;
}

int bench_parse_opts(int argc, char **argv, const bench_opt *opts, size_t nopts, const char *usage)
{
    for (int i = 1; i < argc; i += 2) {
        const bench_opt *o = NULL;
        for (size_t k = 0; k < nopts && i + 1 < argc; k++)
            if (strcmp(argv[i], opts[k].flag) == 0)
                o = &opts[k];
        char *end = NULL;
        if (o)
            *o->value = strtoll(argv[i + 1], &end, 10);
        if (!o || end == argv[i + 1] || *end) {
            bool help = strcmp(argv[i], "--help") == 0;
            fputs(usage, help ? stdout : stderr);
            return help ? 0 : 2;
        }
    }
    return -1;
}

void bench_rounds_add(bench_rounds *r, double rate)
{
    if (r->n < BENCH_MAX_ROUNDS)
        r->rate[r->n++] = rate;
}

double bench_rounds_best(const bench_rounds *r)
{
    double best = -1;
    for (int i = 0; i < r->n; i++)
        if (r->rate[i] > best)
            best = r->rate[i];
    return best;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_rounds_median(const bench_rounds *r)
{
    double ok[BENCH_MAX_ROUNDS];
    int n = 0;
    for (int i = 0; i < r->n; i++)
        if (r->rate[i] >= 0)
            ok[n++] = r->rate[i];
    if (n == 0)
        return -1;
    qsort(ok, (size_t)n, sizeof(ok[0]), cmp_double);
    return n % 2 ? ok[n / 2] : (ok[n / 2 - 1] + ok[n / 2]) / 2;
}

void bench_rounds_header(const char *first_column, int rounds)
{
    printf("%-26s %12s %9s %14s %9s   (of %d rounds)\n", first_column, "best msgs/s", "vs plain",
           "median msgs/s", "vs plain", rounds);
}

bool bench_rounds_row(const char *bench, const char *label, const char *variant,
                      const bench_rounds *r, const bench_rounds *plain)
{
    char name[64];
    snprintf(name, sizeof(name), "%s%s%s", label ? label : "", label ? " " : "", variant);
    double best = bench_rounds_best(r), median = bench_rounds_median(r);
    if (best < 0) {
        printf("%-26s %12s\n", name, "failed");
        return false;
    }
    double pb = bench_rounds_best(plain), pm = bench_rounds_median(plain);
    double rb = pb > 0 ? best / pb : -1, rm = pm > 0 ? median / pm : -1;
    printf("%-26s %12.0f %8.0f%% %14.0f %8.0f%%\n", name, best, rb * 100, median, rm * 100);
    bench_result(bench, variant, "msgs_per_s", best);
    bench_result(bench, variant, "median_msgs_per_s", median);
    if (r != plain) {
        bench_result(bench, variant, "ratio", rb);
        bench_result(bench, variant, "median_ratio", rm);
    }
    return true;
}

void bench_result(const char *bench, const char *variant, const char *metric, double value)
{
    printf("RESULT %s %s %s %.3f\n", bench, variant, metric, value);
    fflush(stdout);
}

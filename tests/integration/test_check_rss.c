/*
 * `taskloop check` on the worst inputs known for the config loader, each run as a
 * child process: it must exit 1 with an error at the place that is wrong, within
 * TIME_BOUND_MS, and its peak resident memory (wait4's ru_maxrss) must stay under
 * RSS_BOUND_MB, the bound README.md's Security section states. The inputs: a "billion
 * laughs" of nested aliases, /dev/zero, a mapping of as many keys as the node bound
 * lets in at the size cap, more nodes than the bound, flow collections nested a
 * million deep and as deep as the bracket bound lets libfyaml see, and a 1 MiB scalar.
 *
 * TASKLOOP names the program (ctest sets it). Each case prints its figures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <taskloop/config.h>

/* The bound stated in README.md (Security); sanitizer builds need more (their shadow
 * memory and quarantine), so CMake raises it for them. */
#ifndef RSS_BOUND_MB
#define RSS_BOUND_MB 128
#endif
#define TIME_BOUND_MS 10000
/* Where libfyaml says "Max depth (64) exceeded" in nesting_at_the_bracket_bound...: the
 * 63rd "{a: " (with the root mapping and x, past 64 levels). */
#define DEPTH_COL (4 + 4 * 62)

static char dir[64];

static int make_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/tl_rss_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d))) {
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    return 0;
}

/* A growing text; the test fails when memory runs out. */
typedef struct text {
    char *s;
    size_t len, cap;
} text;

static void add(text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        assert_true(n >= 0);
        if (t->s && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        t->cap = (t->cap + (size_t)n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        assert_non_null(t->s);
        t->s[t->len] = '\0';
    }
}

static void repeat(text *t, const char *s, size_t times)
{
    for (size_t i = 0; i < times; i++)
        add(t, "%s", s);
}

/* Writes t into dir/name, frees it, and returns the path (static storage). */
static const char *save(text *t, const char *name)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(t->s, 1, t->len, fp), t->len);
    fclose(fp);
    free(t->s);
    *t = (text){0};
    return path;
}

typedef struct outcome {
    int status; /* exit status, or -1 when killed */
    long maxrss_kb;
    long ms;
    char err[4096]; /* the start of its stderr */
    size_t err_len; /* all of its stderr */
} outcome;

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Runs `taskloop check path`, killing it past TIME_BOUND_MS. */
static outcome run_check(const char *path)
{
    const char *prog = getenv("TASKLOOP");
    if (!prog)
        fail_msg("TASKLOOP must name the taskloop program");
    char errfile[128];
    snprintf(errfile, sizeof(errfile), "%s/stderr", dir);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int out = open("/dev/null", O_WRONLY);
        int err = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (out < 0 || err < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
            _exit(127);
        execl(prog, prog, "check", path, (char *)NULL);
        _exit(127);
    }
    outcome o = {.status = -1};
    int st = 0;
    struct rusage ru;
    pid_t got;
    while ((got = wait4(pid, &st, WNOHANG, &ru)) == 0 && elapsed_ms(&t0) < TIME_BOUND_MS)
        usleep(2000);
    o.ms = elapsed_ms(&t0);
    if (got == 0) {
        kill(pid, SIGKILL);
        got = wait4(pid, &st, 0, &ru);
    } else if (WIFEXITED(st)) {
        o.status = WEXITSTATUS(st);
    }
    assert_int_equal(got, pid);
    o.maxrss_kb = ru.ru_maxrss;
    FILE *fp = fopen(errfile, "r");
    assert_non_null(fp);
    o.err_len = fread(o.err, 1, sizeof(o.err) - 1, fp);
    o.err[o.err_len] = '\0';
    while (fgetc(fp) != EOF)
        o.err_len++;
    fclose(fp);
    return o;
}

/* Runs check on path: exit 1 within the time bound, under the memory bound, and the
 * error want at where ("FILE:LINE:COL: error: ..."). */
static void assert_refused(const char *path, const char *where, const char *want)
{
    outcome o = run_check(path);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    print_message("%-28s exit %d in %4ld ms, peak RSS %6.1f MiB (bound %d MiB)\n", base, o.status,
                  o.ms, o.maxrss_kb / 1024.0, RSS_BOUND_MB);
    if (o.status != 1)
        fail_msg("%s: exit status %d, not 1 (after %ld ms): %.300s", base, o.status, o.ms, o.err);
    assert_true(o.ms < TIME_BOUND_MS);
    if (o.maxrss_kb >= RSS_BOUND_MB * 1024L)
        fail_msg("%s: peak RSS %ld KiB, over the bound of %d MiB", base, o.maxrss_kb, RSS_BOUND_MB);
    char line[4096 + 256];
    snprintf(line, sizeof(line), "%s: error: %s", where, want);
    if (!strstr(o.err, line))
        fail_msg("%s: no \"%s\" in its errors: %.600s", base, line, o.err);
    /* A message quotes at most a bounded part of what it refuses. */
    assert_true(o.err_len < 4096);
}

/* "service: s" and a source and route that would load, then the rest. */
static void valid_head(text *t)
{
    add(t, "service: s\n"
           "sources:\n"
           "  in: { type: memory, name: t }\n"
           "routes:\n"
           "  - source: in\n"
           "    handler: log\n");
}

static void a_billion_laughs_is_refused_at_the_alias(void **state)
{
    (void)state;
    text t = {0};
    valid_head(&t);
    add(&t, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 10; i++) {
        add(&t, "a%d: &a%d [", i, i);
        for (int k = 0; k < 10; k++)
            add(&t, "%s*a%d", k ? ", " : "", i - 1);
        add(&t, "]\n");
    }
    char where[160];
    const char *path = save(&t, "alias_bomb.yaml");
    snprintf(where, sizeof(where), "%s:11:45", path);
    assert_refused(path, where, "alias '*a3' expands the document past 100000 added nodes");
}

static void dev_zero_is_refused_unread(void **state)
{
    (void)state;
    assert_refused("/dev/zero", "/dev/zero:1:1",
                   "cannot read the file: it is a character device, not a regular file");
}

static void a_mapping_of_many_keys_at_the_size_cap_is_checked_whole(void **state)
{
    (void)state;
    /* As many keys as the node bound lets in (each key and value a node), padded so the
     * file is close to the size cap; a duplicate at the end must still be found. */
    const size_t keys = TL_CONFIG_MAX_NODES / 2 - 20;
    text t = {0};
    valid_head(&t);
    size_t line_start = t.len;
    add(&t, "    params: {");
    for (size_t i = 0; i < keys; i++)
        add(&t, "k%05zu: v,", i);
    size_t col = t.len - line_start + 1;
    add(&t, "k00000: again}\n");
    assert_true(t.len <= TL_CONFIG_MAX_BYTES && t.len > TL_CONFIG_MAX_BYTES * 9 / 10);
    char where[160];
    const char *path = save(&t, "many_keys.yaml");
    snprintf(where, sizeof(where), "%s:7:%zu", path, col);
    assert_refused(path, where, "duplicate key");
}

static void more_nodes_than_the_bound_are_refused_unbuilt(void **state)
{
    (void)state;
    text t = {0};
    add(&t, "service: s\nx: [");
    repeat(&t, "a,", TL_CONFIG_MAX_NODES + 10);
    add(&t, "a]\n");
    char where[160];
    const char *path = save(&t, "many_nodes.yaml");
    /* The root mapping, "service", "s", "x" and the sequence come first. */
    snprintf(where, sizeof(where), "%s:2:%d", path, 5 + 2 * (TL_CONFIG_MAX_NODES - 5));
    assert_refused(path, where, "more than 200000 nodes in one file");
}

static void brackets_nested_half_a_million_deep_are_refused_unparsed(void **state)
{
    (void)state;
    text t = {0};
    const size_t deep = (TL_CONFIG_MAX_BYTES - 64) / 2;
    add(&t, "service: s\nx: ");
    repeat(&t, "[", deep);
    repeat(&t, "]", deep);
    add(&t, "\n");
    char where[160];
    const char *path = save(&t, "deep_flow.yaml");
    snprintf(where, sizeof(where), "%s:2:%d", path, 4 + TL_CONFIG_MAX_OPEN_BRACKETS);
    assert_refused(path, where, "more than 1000 '[' or '{' open at once");
}

static void nesting_at_the_bracket_bound_is_refused_past_64_levels(void **state)
{
    (void)state;
    text t = {0};
    add(&t, "service: s\nx: ");
    repeat(&t, "{a: ", TL_CONFIG_MAX_OPEN_BRACKETS / 2);
    repeat(&t, "[", TL_CONFIG_MAX_OPEN_BRACKETS / 2);
    repeat(&t, "]", TL_CONFIG_MAX_OPEN_BRACKETS / 2);
    repeat(&t, "}", TL_CONFIG_MAX_OPEN_BRACKETS / 2);
    add(&t, "\n");
    char where[160];
    const char *path = save(&t, "deep_at_bound.yaml");
    /* libfyaml's own limit, past the 64 levels resolve.c allows an alias too. */
    snprintf(where, sizeof(where), "%s:2:%d", path, DEPTH_COL);
    assert_refused(path, where, "Max depth (64) exceeded");
}

static void a_scalar_of_a_mebibyte_is_refused_and_quoted_in_part(void **state)
{
    (void)state;
    text t = {0};
    valid_head(&t);
    add(&t, "loop: { workers: ");
    repeat(&t, "9", TL_CONFIG_MAX_BYTES - t.len - 64);
    add(&t, " }\n");
    char where[160];
    const char *path = save(&t, "huge_scalar.yaml");
    snprintf(where, sizeof(where), "%s:7:18", path);
    assert_refused(path, where, "loop.workers: ");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, make_dir, remove_dir)
    const struct CMUnitTest tests[] = {
        T(a_billion_laughs_is_refused_at_the_alias),
        T(dev_zero_is_refused_unread),
        T(a_mapping_of_many_keys_at_the_size_cap_is_checked_whole),
        T(more_nodes_than_the_bound_are_refused_unbuilt),
        T(brackets_nested_half_a_million_deep_are_refused_unparsed),
        T(nesting_at_the_bracket_bound_is_refused_past_64_levels),
        T(a_scalar_of_a_mebibyte_is_refused_and_quoted_in_part),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

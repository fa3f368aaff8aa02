/*
 * What a handler's sleep really takes here: THREADS threads each sleep MS
 * milliseconds ROUNDS times, as the `work` handler does (nanosleep), and the mean of
 * one sleep is printed in microseconds. Timer slack and wake-up latency make a 1 ms
 * sleep last longer, which bounds what any consumer running such a handler can reach:
 * bench/catchup.sh quotes its ratios against this too.
 *
 *   sleep_time MS THREADS [ROUNDS]
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long ms_arg;
static int rounds = 500;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *sleeper(void *out)
{
    double t0 = now_s();
    for (int i = 0; i < rounds; i++) {
        struct timespec ts = {ms_arg / 1000, (ms_arg % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    *(double *)out = (now_s() - t0) / rounds;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (ms_arg = atol(argv[1])) <= 0 || atoi(argv[2]) <= 0 || atoi(argv[2]) > 4096) {
        fprintf(stderr, "usage: sleep_time MS THREADS(1..4096) [ROUNDS]\n");
        return 2;
    }
    int n = atoi(argv[2]);
    if (argc > 3 && atoi(argv[3]) > 0)
        rounds = atoi(argv[3]);
    pthread_t *t = calloc((size_t)n, sizeof(*t));
    double *took = calloc((size_t)n, sizeof(*took));
    if (!t || !took)
        return 1;
    int started = 0;
    while (started < n && pthread_create(&t[started], NULL, sleeper, &took[started]) == 0)
        started++;
    double sum = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
        sum += took[i];
    }
    free(t);
    free(took);
    if (started == 0)
        return 1;
    printf("%.0f\n", 1e6 * sum / started);
    return 0;
}

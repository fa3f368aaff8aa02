/*
 * The ring a worker process shares with the service (ring.c), on its own: requests
 * come out whole and in order over many turns of the ring, one too large for it
 * leaves a marker in its place, markers fit in a full ring, a reset empties it, and a
 * worker process asleep on it is woken by the service's push.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime.h"

/* A frame of type 'M' whose body is len bytes of a pattern of n, into buf. */
static size_t frame(char *buf, uint32_t len, unsigned n)
{
    buf[0] = TL_FRAME_MSG;
    memcpy(buf + 1, &len, sizeof(len));
    for (uint32_t i = 0; i < len; i++)
        buf[5 + i] = (char)(n * 31 + i);
    return 5 + (size_t)len;
}

/* Takes the next request and checks it is frame n of len bytes. */
static void expect_frame(tl_ring *r, uint32_t len, unsigned n)
{
    char type;
    const char *body;
    uint32_t got;
    assert_true(tl__ring_next(r, &type, &body, &got));
    assert_int_equal(type, TL_FRAME_MSG);
    assert_int_equal(got, len);
    for (uint32_t i = 0; i < len; i++)
        if (body[i] != (char)(n * 31 + i))
            fail_msg("frame %u: byte %u differs", n, i);
    tl__ring_take(r);
}

static void expect_marker(tl_ring *r)
{
    char type;
    const char *body;
    uint32_t len;
    assert_true(tl__ring_next(r, &type, &body, &len));
    assert_int_equal(type, TL_FRAME_SOCKET);
    assert_int_equal(len, 0);
    tl__ring_take(r);
}

static void assert_empty(tl_ring *r)
{
    char type;
    const char *body;
    uint32_t len;
    assert_false(tl__ring_next(r, &type, &body, &len));
}

static void frames_come_out_whole_and_in_order_over_many_turns(void **state)
{
    (void)state;
    tl_ring *rings = tl__rings_new(2);
    assert_non_null(rings);
    tl_ring *r = tl__ring_at(rings, 0);
    static char buf[16384];
    unsigned pushed = 0, taken = 0;
    /* Sizes that do not divide the ring, so frames meet its end at every offset. */
    while (taken < 20000) {
        for (int i = 0; i < 7; i++, pushed++)
            assert_true(tl__ring_push(r, buf, frame(buf, (pushed * 977) % 9001, pushed)));
        for (; taken < pushed; taken++)
            expect_frame(r, (taken * 977) % 9001, taken);
    }
    assert_empty(r);
    assert_empty(tl__ring_at(rings, 1));
    tl__rings_free(rings, 2);
}

static void a_frame_too_large_leaves_a_marker_in_its_place(void **state)
{
    (void)state;
    tl_ring *rings = tl__rings_new(1);
    tl_ring *r = tl__ring_at(rings, 0);
    static char buf[1 << 20];
    assert_true(tl__ring_push(r, buf, frame(buf, 100, 1)));
    assert_false(tl__ring_push(r, buf, frame(buf, sizeof(buf) - 5, 2)));
    assert_true(tl__ring_push(r, buf, frame(buf, 100, 3)));
    expect_frame(r, 100, 1);
    expect_marker(r);
    expect_frame(r, 100, 3);
    assert_empty(r);
    tl__rings_free(rings, 1);
}

/* The service has at most TL_PROC_AHEAD messages out: once frames fill the ring, the
 * markers of that many more still fit, and the ring next to it is untouched. */
static void markers_fit_in_a_full_ring(void **state)
{
    (void)state;
    tl_ring *rings = tl__rings_new(2);
    tl_ring *r = tl__ring_at(rings, 0);
    static char buf[20005];
    unsigned n = 0;
    while (tl__ring_push(r, buf, frame(buf, 20000, n)))
        n++;
    assert_true(n > 4);
    for (int i = 1; i < TL_PROC_AHEAD; i++)
        assert_false(tl__ring_push(r, buf, frame(buf, 20000, 0)));
    for (unsigned i = 0; i < n; i++)
        expect_frame(r, 20000, i);
    for (int i = 0; i < TL_PROC_AHEAD; i++)
        expect_marker(r);
    assert_empty(r);
    assert_empty(tl__ring_at(rings, 1));
    tl__rings_free(rings, 2);
}

static void a_reset_empties_the_requests(void **state)
{
    (void)state;
    tl_ring *rings = tl__rings_new(1);
    tl_ring *r = tl__ring_at(rings, 0);
    char buf[64];
    assert_true(tl__ring_push(r, buf, frame(buf, 10, 1)));
    tl__ring_reset(r);
    assert_empty(r);
    assert_true(tl__ring_push(r, buf, frame(buf, 10, 2)));
    expect_frame(r, 10, 2);
    tl__rings_free(rings, 1);
}

/* A worker process that sleeps on the ring wakes for the frame the service pushes; a
 * lost wake-up would leave it asleep until its alarm kills it. */
static void a_worker_asleep_in_another_process_wakes_for_a_push(void **state)
{
    (void)state;
    tl_ring *rings = tl__rings_new(1);
    tl_ring *r = tl__ring_at(rings, 0);
    for (unsigned round = 0; round < 20; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            alarm(5);
            char type;
            const char *body;
            uint32_t len;
            while (!tl__ring_next(r, &type, &body, &len))
                if (tl__ring_req_sleep(r))
                    tl__ring_req_wait(r);
            _exit(type == TL_FRAME_MSG && len == 8 && body[0] == (char)(round * 31) ? 0 : 2);
        }
        /* Some rounds push before the worker sleeps, most after. */
        if (round % 4)
            usleep(20000);
        char buf[64];
        assert_true(tl__ring_push(r, buf, frame(buf, 8, round)));
        tl__ring_req_wake(r);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status))
            fail_msg("round %u: the worker was not woken (signal %d)", round, WTERMSIG(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        tl__ring_reset(r);
    }
    tl__rings_free(rings, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames_come_out_whole_and_in_order_over_many_turns),
        cmocka_unit_test(a_frame_too_large_leaves_a_marker_in_its_place),
        cmocka_unit_test(markers_fit_in_a_full_ring),
        cmocka_unit_test(a_reset_empties_the_requests),
        cmocka_unit_test(a_worker_asleep_in_another_process_wakes_for_a_push),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

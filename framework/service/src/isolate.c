/*
 * The zygote: a process forked from the service when it is built, after its config
 * and plugins are loaded and its handlers set up but before the loop, the sources or
 * the admin endpoint start a thread. It has one thread for ever, so the worker
 * processes it forks on request (isolation: process) start from a clean copy of the
 * service, with every registered handler, and no lock held by a thread that is not
 * there. A worker replacing a crashed one is forked the same way, while the service
 * itself runs many threads.
 *
 * Requests and replies are fixed-size structs over a socket pair: spawn (the request
 * names the route and the ring its results go to, ring.c, mapped before the zygote
 * was forked and so at the same address here; the reply carries the new worker's pid
 * and, as SCM_RIGHTS, the service's end of its socket) and reap (the reply is the
 * wait status). Workers are the zygote's children, so it
 * reaps them; a dead worker stays a zombie until then, and its pid cannot be reused
 * before the service has killed or reaped it.
 *
 * The zygote and its workers ignore SIGINT and SIGTERM (a ^C on the terminal reaches
 * the whole process group; the service drains instead). The zygote ends when the
 * service's end of its socket closes, which includes the service dying, once its
 * workers have: each ends as its own socket closes, even one wedged in a handler
 * (child.c's socket reader ends the process: nothing waits for its result), so that
 * none outlives tl_service_free; one still there ZYGOTE_DRAIN_S later dies with the
 * zygote (PR_SET_PDEATHSIG).
 *
 * Thread rules: tl__zygote_start and tl__zygote_stop on the thread building and
 * freeing the service; spawn and reap from any thread, one request at a time under
 * the zygote's lock.
 */
#include "runtime.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct tl_zygote tl_zygote;

enum { REQ_SPAWN = 1, REQ_REAP = 2 };

typedef struct request {
    int op;
    int route;     /* spawn: the route's index */
    tl_ring *ring; /* spawn: where its results go (the zygote has the same mapping) */
    pid_t pid;     /* reap: the worker */
} request;

typedef struct reply {
    pid_t pid;  /* spawn: the worker, or -1 */
    int status; /* reap: its wait status, or -1 */
} reply;

struct tl_zygote {
    pid_t pid;
    int fd;
    pthread_mutex_t mu;
};

/* ---------------------------------------------------------------- in the zygote */

/* How long the zygote waits for its workers to end once the service is freed or gone. */
#define ZYGOTE_DRAIN_S 10

/* Sends the reply, with fd passed along when it is not -1. */
static int send_reply(int sock, const reply *r, int fd)
{
    struct iovec iov = {(void *)r, sizeof(*r)};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n;
    while ((n = sendmsg(sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
    }
    return n == (ssize_t)sizeof(*r) ? 0 : -1;
}

/* In a new worker: signals as a crash should show them, then its loop. */
static void worker_start(tl_service *svc, tl_route_state *route, tl_ring *ring, int fd,
                         tl_child_main child, pid_t zygote)
{
    /* A handler that never reads its socket again (spinning) must not outlive the
     * service: the zygote ends with it, and takes its workers along. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != zygote)
        _exit(0);
    /* A handler crash must reach the service as the signal that caused it: a handler
     * the program installed (a sanitizer's, a crash reporter's) would turn it into an
     * exit code. */
    static const int crash[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGXCPU};
    for (size_t i = 0; i < sizeof(crash) / sizeof(crash[0]); i++)
        signal(crash[i], SIG_DFL);
    child(svc, route, ring, fd);
    _exit(0);
}

/* Forks a worker for the route; replies with its pid and the service's socket end. */
static void spawn(tl_service *svc, int sock, const request *q, tl_child_main child)
{
    reply r = {.pid = -1, .status = -1};
    int sv[2];
    if (q->route < 0 || (size_t)q->route >= svc->nroutes || !q->ring ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        send_reply(sock, &r, -1);
        return;
    }
    pid_t self = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(sock);
        close(sv[0]);
        worker_start(svc, &svc->routes[q->route], q->ring, sv[1], child, self);
    }
    close(sv[1]);
    r.pid = pid;
    send_reply(sock, &r, pid > 0 ? sv[0] : -1);
    close(sv[0]);
}

static void zygote_main(tl_service *svc, int sock, tl_child_main child)
{
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    request q;
    while (tl__frame_read(sock, &q, sizeof(q)) == 0) {
        if (q.op == REQ_SPAWN) {
            spawn(svc, sock, &q, child);
        } else if (q.op == REQ_REAP) {
            reply r = {.pid = q.pid, .status = -1};
            while (waitpid(q.pid, &r.status, 0) < 0 && errno == EINTR) {
            }
            send_reply(sock, &r, -1);
        }
    }
    /* The service is freed or gone: its workers end as their sockets close. Waiting
     * for them means none outlives tl_service_free and their CPU time counts as the
     * service's (RUSAGE_CHILDREN). One not gone within ZYGOTE_DRAIN_S ends by
     * PR_SET_PDEATHSIG when the alarm ends the zygote. */
    signal(SIGALRM, SIG_DFL);
    alarm(ZYGOTE_DRAIN_S);
    while (wait(NULL) > 0 || errno == EINTR) {
    }
    _exit(0);
}

/* ---------------------------------------------------------------- in the service */

int tl__zygote_start(tl_service *svc, tl_child_main child, char *err, size_t errlen)
{
    int sv[2];
    tl_zygote *z = calloc(1, sizeof(*z));
    if (!z || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(err, errlen, "cannot start the worker processes: %s", strerror(errno));
        free(z);
        return TL_ESYS;
    }
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        free(z); /* the service's; the zygote needs none */
        zygote_main(svc, sv[1], child);
    }
    close(sv[1]);
    if (pid < 0) {
        snprintf(err, errlen, "cannot fork the worker processes' parent: %s", strerror(errno));
        close(sv[0]);
        free(z);
        return TL_ESYS;
    }
    z->pid = pid;
    z->fd = sv[0];
    pthread_mutex_init(&z->mu, NULL);
    svc->zygote = z;
    return 0;
}

/* Receives a reply, and the descriptor that came with it into *fd (or -1). */
static int recv_reply(int sock, reply *r, int *fd)
{
    struct iovec iov = {r, sizeof(*r)};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl)};
    ssize_t n;
    while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
    }
    *fd = -1;
    struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
        memcpy(fd, CMSG_DATA(c), sizeof(int));
    return n == (ssize_t)sizeof(*r) ? 0 : TL_ESYS;
}

/* One request and its reply, under the zygote's lock. */
static int ask(tl_service *svc, const request *q, reply *r, int *fd)
{
    tl_zygote *z = svc->zygote;
    if (!z)
        return TL_ESYS;
    pthread_mutex_lock(&z->mu);
    int rc = tl__frame_write(z->fd, q, sizeof(*q));
    if (rc == 0)
        rc = recv_reply(z->fd, r, fd);
    pthread_mutex_unlock(&z->mu);
    return rc;
}

int tl__zygote_spawn(tl_service *svc, const tl_route_state *route, tl_ring *ring, tl_proc_id *out)
{
    request q = {.op = REQ_SPAWN, .route = (int)(route - svc->routes), .ring = ring};
    reply r;
    int fd = -1;
    if (ask(svc, &q, &r, &fd) != 0 || r.pid <= 0 || fd < 0) {
        if (fd >= 0)
            close(fd);
        return TL_ESYS;
    }
    *out = (tl_proc_id){.pid = r.pid, .fd = fd};
    return 0;
}

int tl__zygote_reap(tl_service *svc, pid_t pid)
{
    request q = {.op = REQ_REAP, .pid = pid};
    reply r;
    int fd = -1;
    if (ask(svc, &q, &r, &fd) != 0)
        return -1;
    return r.status;
}

void tl__zygote_stop(tl_service *svc)
{
    tl_zygote *z = svc->zygote;
    if (!z)
        return;
    close(z->fd);
    while (waitpid(z->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    pthread_mutex_destroy(&z->mu);
    free(z);
    svc->zygote = NULL;
}

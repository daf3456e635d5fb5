/* The C epoll connect loop: the physical floor the tcp and syn probes are measured against.
 *
 *   connect_loop MODE RATE SECONDS INFLIGHT TARGETS [PORT_BASE [SUBNET]]
 *
 * MODE     full: connect, then close (FIN; what healthd's tcp probe does by default)
 *          rst:  connect, then close with SO_LINGER {1, 0} (RST; `close: reset`)
 *          syn:  TCP_QUICKACK 0 before connect, SO_LINGER {1, 0}, close when writable:
 *                SYN, SYN-ACK, RST and no accept() on the far side (as the syn probe)
 * RATE     connects started per second; 0 = unpaced, as fast as INFLIGHT allows
 * SECONDS  how long to start connects (bounded: at most 600)
 * INFLIGHT connects in flight at most
 * TARGETS  how many of bench/targets.py's listeners: 127.70.SUBNET.(1 + i % 50), port PORT_BASE + i / 50
 * PORT_BASE 20000 and SUBNET 0 unless given
 *
 * Every connect has a 1 s deadline. SIGUSR1 prints the counts so far as one JSON line (the
 * bench reads them at a window's edges); the end prints the totals the same way.
 * Traffic goes to 127.70.0.0/24 only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 65536
#define DEADLINE 1.0

enum mode { FULL, RST, SYN };

static volatile sig_atomic_t report_now = 0;
static double started_at[MAX_FD]; /* 0: no connect in flight on this fd */
static long ok, failed, timed_out, started;
static int port_base = 20000, subnet = 0;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_usr1(int sig) {
    (void)sig;
    report_now = 1;
}

static void report(const char *what, double elapsed) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
                 usage.ru_stime.tv_usec / 1e6;
    printf("{\"at\": \"%s\", \"seconds\": %.6f, \"started\": %ld, \"ok\": %ld, \"failed\": %ld, "
           "\"timed_out\": %ld, \"cpu\": %.6f}\n",
           what, elapsed, started, ok, failed, timed_out, cpu);
    fflush(stdout);
}

static void set_linger0(int fd) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

static void finish(int ep, int fd, enum mode mode, int good) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    if (good && mode == RST) set_linger0(fd);
    close(fd);
    started_at[fd] = 0;
    if (good) ok++; else failed++;
}

static int start_one(int ep, enum mode mode, long index, int targets) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || fd >= MAX_FD) {
        if (fd >= 0) close(fd);
        failed++; /* a local limit: counted, never hidden */
        return -1;
    }
    if (mode == SYN) {
        int zero = 0;
        setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof zero);
        set_linger0(fd);
    }
    long i = index % targets;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port_base + i / 50)};
    addr.sin_addr.s_addr = htonl((127u << 24) | (70u << 16) | ((unsigned)subnet << 8) | (unsigned)(1 + i % 50));
    started++;
    started_at[fd] = now();
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
        finish(ep, fd, mode, 1);
        return 0;
    }
    if (errno != EINPROGRESS) {
        finish(ep, fd, mode, 0);
        return 0;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    return 1;
}

static int expire(int ep, enum mode mode, double t) {
    /* a linear sweep is fine once per 100 ms: at most MAX_FD slots, mostly empty */
    int gone = 0;
    for (int fd = 0; fd < MAX_FD; fd++) {
        if (started_at[fd] > 0 && t - started_at[fd] > DEADLINE) {
            finish(ep, fd, mode, 0);
            failed--;
            timed_out++;
            gone++;
        }
    }
    return gone;
}

int main(int argc, char **argv) {
    if (argc < 6 || argc > 8) {
        fprintf(stderr, "usage: %s full|rst|syn RATE SECONDS INFLIGHT TARGETS [PORT_BASE [SUBNET]]\n", argv[0]);
        return 2;
    }
    if (argc >= 7) port_base = atoi(argv[6]);
    if (argc == 8) subnet = atoi(argv[7]);
    enum mode mode = !strcmp(argv[1], "syn") ? SYN : !strcmp(argv[1], "rst") ? RST : FULL;
    double rate = atof(argv[2]), seconds = atof(argv[3]);
    int inflight_max = atoi(argv[4]), targets = atoi(argv[5]);
    if (seconds <= 0 || seconds > 600 || inflight_max < 1 || inflight_max > 10000 || targets < 1 ||
        port_base < 1 || port_base + (targets - 1) / 50 > 65535 || subnet < 0 || subnet > 255) {
        fprintf(stderr, "out of range: SECONDS 0-600, INFLIGHT 1-10000, TARGETS >= 1, ports 1-65535\n");
        return 2;
    }
    signal(SIGUSR1, on_usr1);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event events[256];
    double begin = now(), end = begin + seconds, next_due = begin, next_sweep = begin + 0.1;
    int inflight = 0;
    long index = 0;
    while (1) {
        double t = now();
        if (t >= end && inflight == 0) break;
        if (t >= end + DEADLINE + 0.5) break; /* bounded even if a socket never answers */
        /* at most INFLIGHT starts per turn: connects that fail at once (no fds) cannot spin here */
        for (int burst = 0; burst < inflight_max && t < end && inflight < inflight_max &&
                            (rate <= 0 || t >= next_due);
             burst++) {
            inflight += start_one(ep, mode, index++, targets) > 0;
            next_due += rate > 0 ? 1.0 / rate : 0;
        }
        int wait_ms = 100;
        if (rate > 0 && t < end) {
            double until = next_due - now();
            wait_ms = until <= 0 ? 0 : (int)(until * 1000) + 1;
        }
        int n = epoll_wait(ep, events, 256, wait_ms);
        for (int k = 0; k < n; k++) {
            int fd = events[k].data.fd, err = 0;
            socklen_t len = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            finish(ep, fd, mode, err == 0);
            inflight--;
        }
        t = now();
        if (t >= next_sweep) {
            inflight -= expire(ep, mode, t);
            next_sweep = t + 0.1;
        }
        if (report_now) {
            report_now = 0;
            report("now", now() - begin);
        }
    }
    report("end", now() - begin);
    return 0;
}

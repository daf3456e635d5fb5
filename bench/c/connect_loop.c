/* The C floor for tcp and syn probes: paced non-blocking connects on one epoll loop.
 *
 * connect_loop RATE SECONDS tcp|syn ADDRESS:PORT...
 *
 * Starts RATE connects per second (checked every millisecond, drift-free from the
 * start), each to the next target in turn: socket, (syn: TCP_QUICKACK 0 and
 * SO_LINGER {1, 0}), connect, wait for writable on epoll, SO_ERROR, TCP_INFO, close.
 * That is what healthd's tcp and syn probes do per run, with no scheduler, store or
 * metrics. Prints "started done failed" at the end. Bounded by SECONDS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: connect_loop RATE SECONDS tcp|syn ADDRESS:PORT...\n");
        return 2;
    }
    double rate = atof(argv[1]), seconds = atof(argv[2]);
    int syn = strcmp(argv[3], "syn") == 0, count = argc - 4;
    struct sockaddr_in *targets = calloc(count, sizeof *targets);
    for (int i = 0; i < count; i++) {
        char host[64];
        snprintf(host, sizeof host, "%s", argv[4 + i]);
        char *colon = strrchr(host, ':');
        if (!colon) return 2;
        *colon = 0;
        targets[i].sin_family = AF_INET;
        targets[i].sin_port = htons(atoi(colon + 1));
        inet_pton(AF_INET, host, &targets[i].sin_addr);
    }
    int ep = epoll_create1(0);
    struct epoll_event events[256];
    long started = 0, done = 0, failed = 0;
    double begin = now();
    for (;;) {
        double elapsed = now() - begin;
        if (elapsed >= seconds) break;
        long due = (long)(elapsed * rate);
        while (started < due) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            started++;
            if (fd < 0) { failed++; continue; }
            if (syn) {
                int zero = 0;
                struct linger abort_close = {1, 0};
                setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof zero);
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
            }
            struct sockaddr_in *to = &targets[started % count];
            if (connect(fd, (struct sockaddr *)to, sizeof *to) < 0 && errno != EINPROGRESS) {
                close(fd);
                failed++;
                continue;
            }
            struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        int n = epoll_wait(ep, events, 256, 1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd, err = 0;
            socklen_t len = sizeof err;
            struct tcp_info info;
            socklen_t info_len = sizeof info;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &info_len);
            epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
            close(fd);
            done++;
            if (err) failed++;
        }
    }
    printf("%ld %ld %ld\n", started, done, failed);
    return 0;
}

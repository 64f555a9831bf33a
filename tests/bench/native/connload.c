/*
 * connload: short TCP connections at a fixed offered rate, for bench_conntrack.py.
 *
 *   connload server ADDRESS PORT
 *       Accepts, writes one byte, closes; until SIGTERM. Prints "ready" once listening.
 *   connload client ADDRESS PORT RATE SECONDS
 *       Starts RATE connections a second for SECONDS (paced every millisecond;
 *       when late, at most 4 ms worth at once: it falls behind rather than burst),
 *       counts one as answered when the server's byte arrives, then closes it
 *       with SO_LINGER 0 (a RST: no TIME_WAIT, so the client's ports are free
 *       again at once). Waits up to GRACE seconds for the last ones, then
 *       prints one JSON line: started, answered, failed (refused, reset, closed
 *       without the byte, or connect() itself failing), timed_out (still open
 *       at the end), the seconds it took to start them all and the most open
 *       at once.
 *
 * Non-blocking sockets and one epoll; no threads. Python cannot offer tens of
 * thousands of connections a second on a small machine; this can.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loadclock.h"

#define GRACE 3.0
#define MAX_OPEN 60000
#define BATCH 1024

static struct sockaddr_in address_of(const char *ip, const char *port) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(port));
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", ip);
        exit(2);
    }
    return sa;
}

/* How many connections may be open at once: as many as the file limit allows
 * (raised, as root may), up to MAX_OPEN. */
static long open_limit(void) {
    struct rlimit limit = {.rlim_cur = MAX_OPEN + 64, .rlim_max = MAX_OPEN + 64};
    if (setrlimit(RLIMIT_NOFILE, &limit) < 0 && getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    getrlimit(RLIMIT_NOFILE, &limit);
    return limit.rlim_cur > MAX_OPEN + 64 ? MAX_OPEN : (long)limit.rlim_cur - 64;
}

static volatile sig_atomic_t stopping;

static void on_term(int sig) {
    (void)sig;
    stopping = 1;
}

static int serve(struct sockaddr_in sa) {
    int one = 1;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (listener < 0) die("socket");
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(listener, 65535) < 0) die("listen");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) < 0) die("epoll_ctl");
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);
    printf("ready\n");
    fflush(stdout);
    unsigned long accepted = 0;
    struct epoll_event events[8];
    while (!stopping) {
        if (epoll_wait(ep, events, 8, 200) <= 0) continue;
        for (;;) {
            int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
            if (fd < 0) break; /* EAGAIN, or a connection reset before it was accepted */
            if (write(fd, "x", 1) == 1) accepted++;
            close(fd);
        }
    }
    printf("{\"answered\": %lu}\n", accepted);
    return 0;
}

static int load(struct sockaddr_in sa, long rate, double seconds) {
    long max_open = open_limit();
    signal(SIGPIPE, SIG_IGN);
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    struct linger rst = {.l_onoff = 1, .l_linger = 0};
    long total = (long)(rate * seconds);
    long burst = rate / 250 > 1 ? rate / 250 : 1; /* at most 4 ms worth at once */
    long started = 0, answered = 0, failed = 0, open_now = 0, most_open = 0;
    struct epoll_event events[BATCH];
    double start = now(), all_started = 0, deadline = 0;
    for (;;) {
        double t = now();
        if (started < total) {
            long due = (long)((t - start) * rate);
            if (due > started + burst) due = started + burst; /* late: no catch-up burst */
            if (due > total) due = total;
            while (started < due && open_now < max_open) {
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
                if (fd < 0) die("socket");
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
                started++;
                if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
                    failed++; /* EADDRNOTAVAIL: no free local port */
                    close(fd);
                    continue;
                }
                struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
                if (++open_now > most_open) most_open = open_now;
            }
            if (started == total) {
                all_started = now() - start;
                deadline = now() + GRACE;
            }
        } else if (open_now == 0 || t > deadline) {
            break;
        }
        int ready = epoll_wait(ep, events, BATCH, started < total ? 1 : 50);
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            char byte;
            ssize_t got = read(fd, &byte, 1);
            if (got == 1) {
                answered++;
            } else if (got < 0 && errno == EAGAIN && !(events[i].events & (EPOLLERR | EPOLLHUP))) {
                continue; /* woken without the byte: keep waiting */
            } else {
                failed++;
            }
            close(fd); /* also leaves the epoll set */
            open_now--;
        }
    }
    printf("{\"started\": %ld, \"answered\": %ld, \"failed\": %ld, \"timed_out\": %ld, "
           "\"seconds\": %.4f, \"most_open\": %ld}\n",
           started, answered, failed, open_now, all_started, most_open);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "server") == 0)
        return serve(address_of(argv[2], argv[3]));
    if (argc == 6 && strcmp(argv[1], "client") == 0)
        return load(address_of(argv[2], argv[3]), atol(argv[4]), atof(argv[5]));
    fprintf(stderr, "usage: connload server ADDRESS PORT | client ADDRESS PORT RATE SECONDS\n");
    return 2;
}

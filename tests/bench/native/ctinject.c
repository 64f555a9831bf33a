/*
 * ctinject: connection-tracking entries written over ctnetlink at a fixed rate, for
 * bench_conntrack.py --synthetic.
 *
 *   ctinject CLIENT DIALLED:PORT BACKEND:PORT RATE SECONDS
 *
 * Run in the namespace whose connection tracking is followed. Each connection is
 * three ctnetlink requests, paced every millisecond like connload (when late, at
 * most 4 ms worth at once: it falls behind rather than bursts):
 *
 *   1. create a TCP entry in SYN_SENT from CLIENT:port to DIALLED:PORT, its reply
 *      tuple from BACKEND:PORT (a DNAT'd call, as kube-proxy's): a NEW event;
 *   2. 5 ms later, make it ESTABLISHED with IPS_SEEN_REPLY | IPS_ASSURED (the
 *      backend answered): an UPDATE event;
 *   3. 20 ms after its start, delete it: a DESTROY event.
 *
 * The kernel does the same bookkeeping and sends the same events as for a real
 * connection, without the packets, sockets and forwarding that limit how many
 * real connections a small machine can make (connload). Client ports cycle
 * through 1024-65535, each entry gone long before its port comes round again.
 * Requests go out up to 64 to a datagram, without NLM_F_ACK: the kernel answers
 * only the ones that failed. Prints one JSON line: started (entries created),
 * answered (created and made ESTABLISHED), failed (requests the kernel refused),
 * timed_out (0: kept for the bench's format) and the seconds it took to start
 * them all.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loadclock.h"

#define PER_DATAGRAM 64
#define MESSAGE_MAX 256
#define ANSWER_AFTER 0.005
#define END_AFTER 0.020
#define RING 65536 /* connections in flight at most: 20 ms at up to 3M/s */
#define TCP_SYN_SENT 1
#define TCP_ESTABLISHED 3
#define IPS_SEEN_REPLY_ASSURED_CONFIRMED (2 | 4 | 8)

enum step { CREATE, ANSWER, DELETE };

struct conn {
    double start;
    uint16_t port;
};

static int nl;
static char datagram[PER_DATAGRAM * MESSAGE_MAX];
static size_t used, queued;
static uint32_t seq;
static long failed[3];
static enum step kinds[1 << 20]; /* the step of each request by its seq, to count failures */
static uint32_t client, dialled, backend;
static uint16_t dialled_port, backend_port;

static void endpoint(const char *text, uint32_t *ip, uint16_t *port) {
    char copy[64];
    snprintf(copy, sizeof copy, "%s", text);
    char *colon = strchr(copy, ':');
    if (port != NULL) {
        if (colon == NULL) {
            fprintf(stderr, "not ADDRESS:PORT: %s\n", text);
            exit(2);
        }
        *colon = 0;
        *port = htons((uint16_t)atoi(colon + 1));
    }
    if (inet_pton(AF_INET, copy, ip) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", copy);
        exit(2);
    }
}

/* Attributes, appended at *at; nests are closed by end_nest. */
static char *put(char *at, uint16_t type, const void *value, uint16_t size) {
    struct nlattr *attr = (struct nlattr *)at;
    attr->nla_type = type;
    attr->nla_len = NLA_HDRLEN + size;
    memcpy(at + NLA_HDRLEN, value, size);
    return at + NLA_ALIGN(attr->nla_len);
}

static char *nest(char *at, uint16_t type) {
    ((struct nlattr *)at)->nla_type = type | NLA_F_NESTED;
    return at + NLA_HDRLEN;
}

static void end_nest(char *start, char *at) {
    ((struct nlattr *)start)->nla_len = (uint16_t)(at - start);
}

static char *tuple(char *at, uint16_t type, uint32_t src, uint32_t dst, uint16_t sport,
                   uint16_t dport) {
    char *outer = at, *inner;
    uint8_t tcp = IPPROTO_TCP;
    at = nest(at, type);
    inner = at;
    at = nest(at, CTA_TUPLE_IP);
    at = put(at, CTA_IP_V4_SRC, &src, 4);
    at = put(at, CTA_IP_V4_DST, &dst, 4);
    end_nest(inner, at);
    inner = at;
    at = nest(at, CTA_TUPLE_PROTO);
    at = put(at, CTA_PROTO_NUM, &tcp, 1);
    at = put(at, CTA_PROTO_SRC_PORT, &sport, 2);
    at = put(at, CTA_PROTO_DST_PORT, &dport, 2);
    end_nest(inner, at);
    end_nest(outer, at);
    return at;
}

static void flush(void) {
    if (used && send(nl, datagram, used, 0) < 0 && errno != ENOBUFS)
        die("send");
    used = queued = 0;
}

static void request(enum step step, uint16_t port) {
    if (queued == PER_DATAGRAM)
        flush();
    char *start = datagram + used, *at;
    struct nlmsghdr *header = (struct nlmsghdr *)start;
    struct nfgenmsg *gen = (struct nfgenmsg *)NLMSG_DATA(header);
    header->nlmsg_type =
        (NFNL_SUBSYS_CTNETLINK << 8) | (step == DELETE ? IPCTNL_MSG_CT_DELETE : IPCTNL_MSG_CT_NEW);
    header->nlmsg_flags = NLM_F_REQUEST | (step == CREATE ? NLM_F_CREATE | NLM_F_EXCL : 0);
    header->nlmsg_seq = ++seq;
    header->nlmsg_pid = 0;
    kinds[seq & ((1 << 20) - 1)] = step;
    gen->nfgen_family = AF_INET;
    gen->version = NFNETLINK_V0;
    gen->res_id = 0;
    at = (char *)gen + NLMSG_ALIGN(sizeof *gen);
    uint16_t sport = htons(port);
    at = tuple(at, CTA_TUPLE_ORIG, client, dialled, sport, dialled_port);
    if (step != DELETE) {
        uint32_t timeout = htonl(30);
        uint8_t state = step == CREATE ? TCP_SYN_SENT : TCP_ESTABLISHED;
        char *info, *tcp;
        if (step == CREATE)
            at = tuple(at, CTA_TUPLE_REPLY, backend, client, backend_port, sport);
        else {
            uint32_t status = htonl(IPS_SEEN_REPLY_ASSURED_CONFIRMED);
            at = put(at, CTA_STATUS, &status, 4);
        }
        at = put(at, CTA_TIMEOUT, &timeout, 4);
        info = at;
        at = nest(at, CTA_PROTOINFO);
        tcp = at;
        at = nest(at, CTA_PROTOINFO_TCP);
        at = put(at, CTA_PROTOINFO_TCP_STATE, &state, 1);
        end_nest(tcp, at);
        end_nest(info, at);
    }
    header->nlmsg_len = (uint32_t)(at - start);
    used += NLMSG_ALIGN(header->nlmsg_len);
    queued++;
}

/* The kernel's answers: only errors, as no request asked for an acknowledgement. */
static void read_errors(void) {
    char buffer[65536];
    for (;;) {
        ssize_t size = recv(nl, buffer, sizeof buffer, MSG_DONTWAIT);
        if (size < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == ENOBUFS)
                continue;
            die("recv");
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buffer; NLMSG_OK(h, (size_t)size);
             h = NLMSG_NEXT(h, size)) {
            if (h->nlmsg_type != NLMSG_ERROR)
                continue;
            struct nlmsgerr *error = (struct nlmsgerr *)NLMSG_DATA(h);
            if (error->error != 0) {
                if (failed[0] + failed[1] + failed[2] == 0)
                    fprintf(stderr, "ctinject: the kernel refused a request: %s\n",
                            strerror(-error->error));
                failed[kinds[error->msg.nlmsg_seq & ((1 << 20) - 1)]]++;
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: ctinject CLIENT DIALLED:PORT BACKEND:PORT RATE SECONDS\n");
        return 2;
    }
    endpoint(argv[1], &client, NULL);
    endpoint(argv[2], &dialled, &dialled_port);
    endpoint(argv[3], &backend, &backend_port);
    double rate = atof(argv[4]), seconds = atof(argv[5]);
    long total = (long)(rate * seconds);
    static struct conn ring[RING];
    long head = 0, answered_upto = 0, ended_upto = 0, started = 0;
    uint16_t port = 1024;

    nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (nl < 0)
        die("socket");
    int buffer = 8 << 20;
    setsockopt(nl, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);

    double begin = now(), last_start = begin;
    while (ended_upto < total) {
        double t = now();
        long due = (long)((t - begin) * rate) + 1;
        if (due > total)
            due = total;
        if (due - started > (long)(rate * 0.004) + 1) /* late: fall behind, no burst */
            due = started + (long)(rate * 0.004) + 1;
        while (started < due && started - ended_upto < RING) {
            ring[head % RING] = (struct conn){t, port};
            request(CREATE, port);
            port = port == 65535 ? 1024 : port + 1;
            head++;
            started++;
            last_start = t;
        }
        while (answered_upto < started && t - ring[answered_upto % RING].start >= ANSWER_AFTER)
            request(ANSWER, ring[answered_upto++ % RING].port);
        while (ended_upto < answered_upto && t - ring[ended_upto % RING].start >= END_AFTER)
            request(DELETE, ring[ended_upto++ % RING].port);
        flush();
        read_errors();
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    usleep(100000);
    read_errors();
    printf("{\"started\": %ld, \"answered\": %ld, \"failed\": %ld, \"timed_out\": 0, "
           "\"seconds\": %.6f, \"refused\": [%ld, %ld, %ld]}\n",
           started - failed[CREATE], started - failed[CREATE] - failed[ANSWER],
           failed[0] + failed[1] + failed[2], last_start - begin > 0 ? last_start - begin : seconds,
           failed[CREATE], failed[ANSWER], failed[DELETE]);
    return 0;
}

/*
 * What the three files of capture._dnsfast share (see capture/_dnsfast.c): the
 * usual response and frame, read in _dnsfast.c; the receive ring's block walk,
 * in _dnsfast_ring.c; the fold of a block's usual frames, in _dnsfast_fold.c.
 */
#ifndef CALLMAP_DNSFAST_H
#define CALLMAP_DNSFAST_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#define HEADER 12
#define POINTER_TO_QNAME (0xC000 | HEADER)
#define MAX_NAME_WIRE 255 /* octets, labels and zero byte: so at most 127 labels */
#define SHORT_LABEL 0x2A  /* capture.dnswire._SHORT_LABEL: longer labels go to Python */
#define TYPE_A 1
#define TYPE_AAAA 28
#define CLASS_IN 1
#define TTL_NEGATIVE 0x80000000u
#define MAX_ANSWERS 64 /* more go to Python, whose deduplication is not quadratic */

#define ETHER_IPV4_UDP 42 /* 14 + 20 + 8: capture.frames._ETHER_IPV4_UDP_SIZE */
#define ETHERTYPE_IPV4 0x0800
#define PROTO_UDP 17
#define DNS_PORT 53

extern PyObject *response_type;      /* capture.dnswire.DnsResponse; NULL until given */
extern PyObject *text_a, *text_aaaa; /* "A" and "AAAA", interned */
extern PyObject *segment_type;       /* capture.frames.Segment; NULL until given */
extern PyObject *text_udp;           /* "udp", interned */

static inline unsigned u16_at(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }

static inline uint32_t u32_at(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* The usual response read into C values: what parse makes its DnsResponse of. */
typedef struct {
    unsigned msg_id;
    Py_ssize_t zero; /* the question name's zero byte */
    int size;        /* of an address: 4 (A) or 16 (AAAA) */
    uint32_t ttl;    /* the lowest */
    int count;       /* distinct addresses, in order */
    char texts[MAX_ANSWERS][INET6_ADDRSTRLEN];
} Plain;

/* _dnsfast.c: the usual response and frame. */
int read_plain(const unsigned char *data, Py_ssize_t end, Plain *plain);
Py_ssize_t name_text(const unsigned char *data, Py_ssize_t zero, Py_UCS1 *out);
PyObject *address_texts(const Plain *plain);
PyObject *qtype_text(const Plain *plain);
Py_ssize_t usual_payload(const unsigned char *data, Py_ssize_t size);
int plain_parts(const unsigned char *data, Py_ssize_t size, PyObject **segment,
                PyObject **response);
PyObject *ipv4_text(const unsigned char *raw);
int frame_types_given(const char *caller);
/* *slot = cls (a type), for set_..._type(cls) of `caller`; None, or NULL on an error. */
PyObject *keep_type(PyObject **slot, PyObject *cls, const char *caller);

/* _dnsfast_ring.c: a receive ring block's walk. */
/* What takes each frame of a block: 1 if it was the usual frame, 0 if not, -1
 * on a Python error (the sinks' included). `ring` is the buffer the block is
 * in, `base` its bytes; the frame is ring[start:end], captured at `ts`. */
typedef int (*FrameTaker)(void *taker, PyObject *ring, const unsigned char *base,
                          Py_ssize_t start, Py_ssize_t end, double ts);

int walk_block(PyObject *ring, PyObject *start_arg, PyObject *size_arg, FrameTaker take,
               void *taker, Py_ssize_t *taken, int *sound, Py_ssize_t *usual);
int hand_other(PyObject *other, PyObject *ring, Py_ssize_t start, Py_ssize_t end, double ts);
PyObject *read_block(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* _dnsfast_fold.c: a block's usual frames folded. */
int fold_init(void);
PyObject *fold_block(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *set_fold_type(PyObject *module, PyObject *cls);
PyObject *python_hashes(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif

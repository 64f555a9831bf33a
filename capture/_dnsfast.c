/*
 * capture._dnsfast: the usual DNS response, read in C for capture.dnswire.
 *
 * Why: parse_response is the largest single cost per DNS answer the capture
 * agent takes (about 6 us in Python; tests/bench/bench_dnswire.py), and nearly
 * every answer is the plain one: one IN A or AAAA question, and every answer
 * an address of the asked type for the question name itself (its owner a
 * pointer to it). parse(data) reads that case and only that case, and makes
 * the same DnsResponse as the plain path of capture.dnswire._parse. For
 * anything else it returns None and the Python parser, the reference, decides:
 * every drop reason, every broken message, CNAME chains, names with escaped
 * bytes or labels of 42 octets and more, the root name, and IPv6 addresses
 * that glibc writes with a dotted tail (Python writes those as ipaddress does).
 * tests/unit/capture/test_dnswire_fast.py holds the two to the same results on
 * generated, mutated and random messages. It is optional: an install without a
 * C compiler parses everything in Python.
 *
 * read_frame(frame) does the same one layer down, for the DNS capture's usual
 * frame: an untagged Ethernet frame of IPv4 without options, unfragmented and
 * whole, carrying a UDP datagram from port 53 whose payload is the usual
 * response. It makes the Segment capture.frames.decode_frame makes (its
 * addresses from the same memo of texts) and the response, in one call instead
 * of four Python functions and a copy of the frame; any other frame is None,
 * and Python decides. tests/unit/capture/test_frames_fast.py holds it to the
 * Python decoders.
 *
 * read_block(...) walks a whole block of a TPACKET_V3 receive ring as
 * capture.packetring.read_block does (the same checks, in the same order), and
 * reads each frame as read_frame does in the same pass: the capture thread
 * then runs no Python per usual frame until its folder takes the answer (the
 * block's walk in Python was about a tenth of the agent's time at 70,000
 * distinct answers/s). tests/unit/capture/test_ringblock_fast.py holds it to
 * capture.packetring.read_block with read_frame.
 *
 * What it is given (from capture/dnswire.py and capture/frames.py, so nothing
 * is defined twice):
 *   set_response_type(DnsResponse)  once, at import: the type parse makes;
 *   parse(data)                     data is bytes; a DnsResponse, or None;
 *   set_frame_types(Segment, texts, limit)  once, at import: the type
 *                                   read_frame makes, and the IPv4 texts' memo
 *                                   (capture.texts.Texts.shared);
 *   read_frame(frame)               any buffer; (Segment, DnsResponse), or None;
 *   read_block(ring, start, size, plain, other)  ring is any buffer; each
 *                                   usual frame to plain(segment, response, ts),
 *                                   every other to other(ring[a:b], ts);
 *                                   (frames, sound, usual frames).
 * Layout: RFC 1035 section 4.1, RFC 791, RFC 768, all in network byte order;
 * linux/if_packet.h (the ring's headers), in the machine's.
 */
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

static PyObject *response_type;      /* capture.dnswire.DnsResponse; NULL until given */
static PyObject *text_a, *text_aaaa; /* "A" and "AAAA", interned */

static unsigned u16_at(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }

static uint32_t u32_at(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* A label's byte as the name's text holds it (ASCII upper case lowered), or 0
 * when it is none of capture.dnswire._SAFE_BYTES, which Python escapes. */
static char name_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '*' || c == '-')
        return (char)c;
    if (c >= 'A' && c <= 'Z')
        return (char)(c - 'A' + 'a');
    return 0;
}

/* The offset of the zero byte that ends the question name, when it is one or
 * more short labels of plain bytes, all inside the data; else -1. */
static Py_ssize_t question_name_end(const unsigned char *data, Py_ssize_t end)
{
    Py_ssize_t at = HEADER;
    while (at < end && data[at] != 0) {
        unsigned length = data[at];
        if (length >= SHORT_LABEL || at + 1 + length > end)
            return -1;
        for (unsigned i = 1; i <= length; i++)
            if (name_char(data[at + i]) == 0)
                return -1;
        at += 1 + length;
    }
    if (at >= end || at == HEADER || at + 1 - HEADER > MAX_NAME_WIRE)
        return -1;
    return at;
}

/* The text of the question name that ends at `zero`: labels joined by dots. */
static PyObject *question_name(const unsigned char *data, Py_ssize_t zero)
{
    PyObject *text = PyUnicode_New(zero - HEADER - 1, 127);
    if (text == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t written = 0;
    for (Py_ssize_t at = HEADER; at < zero; at += 1 + data[at]) {
        if (written > 0)
            out[written++] = '.';
        for (unsigned i = 1; i <= data[at]; i++)
            out[written++] = (Py_UCS1)name_char(data[at + i]);
    }
    return text;
}

/* The dotted-decimal text of the IPv4 address at `raw` into `out` (at least
 * INET_ADDRSTRLEN bytes), as inet_ntop writes it, without its formatting
 * machinery: a third of a plain response's parse went to inet_ntop. */
static void ipv4_dotted(const unsigned char *raw, char *out)
{
    for (int i = 0; i < 4; i++) {
        unsigned v = raw[i];
        if (v >= 100)
            *out++ = (char)('0' + v / 100);
        if (v >= 10)
            *out++ = (char)('0' + v / 10 % 10);
        *out++ = (char)('0' + v % 10);
        *out++ = i < 3 ? '.' : '\0';
    }
}

/* A new str of the ASCII text `text` (NUL-terminated), made without decoding it. */
static PyObject *ascii_text(const char *text)
{
    size_t size = strlen(text);
    PyObject *made = PyUnicode_New((Py_ssize_t)size, 127);
    if (made != NULL)
        memcpy(PyUnicode_1BYTE_DATA(made), text, size);
    return made;
}

/* The addresses' texts, in order, or None when one has a dotted tail. */
static PyObject *address_texts(const unsigned char *const *rdata, int count, int size)
{
    PyObject *texts = PyTuple_New(count);
    if (texts == NULL)
        return NULL;
    for (int i = 0; i < count; i++) {
        char text[INET6_ADDRSTRLEN];
        if (size == 4)
            ipv4_dotted(rdata[i], text);
        else if (inet_ntop(AF_INET6, rdata[i], text, sizeof text) == NULL) {
            Py_DECREF(texts);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (size == 16 && strchr(text, '.') != NULL) { /* IPv4-mapped or -compatible */
            Py_DECREF(texts);
            Py_RETURN_NONE;
        }
        PyObject *item = ascii_text(text);
        if (item == NULL) {
            Py_DECREF(texts);
            return NULL;
        }
        PyTuple_SET_ITEM(texts, i, item);
    }
    return texts;
}

/* The DnsResponse of the `end` bytes at `data` when they are the usual
 * response, else None (new references), or NULL on a Python error. */
static PyObject *parse_plain(const unsigned char *data, Py_ssize_t end)
{
    if (end < HEADER)
        Py_RETURN_NONE;
    unsigned msg_id = u16_at(data), flags = u16_at(data + 2);
    unsigned qdcount = u16_at(data + 4), ancount = u16_at(data + 6);
    /* QR set; opcode QUERY, TC and RCODE all zero. */
    if ((flags & 0xFA0F) != 0x8000 || qdcount != 1 || ancount == 0 || ancount > MAX_ANSWERS)
        Py_RETURN_NONE;
    Py_ssize_t zero = question_name_end(data, end);
    if (zero < 0 || zero + 5 > end)
        Py_RETURN_NONE;
    unsigned qtype = u16_at(data + zero + 1);
    int size = qtype == TYPE_A ? 4 : qtype == TYPE_AAAA ? 16 : 0;
    if (size == 0 || u16_at(data + zero + 3) != CLASS_IN)
        Py_RETURN_NONE;

    /* Every answer: owner a pointer to the question name, its type, IN, its size. */
    const unsigned char *distinct[MAX_ANSWERS]; /* rdata of each new address, in order */
    int count = 0;
    uint32_t lowest = TTL_NEGATIVE;
    Py_ssize_t at = zero + 5;
    for (unsigned n = 0; n < ancount; n++, at += 12 + size) {
        if (at + 12 + size > end)
            Py_RETURN_NONE;
        const unsigned char *rr = data + at;
        if (u16_at(rr) != POINTER_TO_QNAME || u16_at(rr + 2) != qtype ||
            u16_at(rr + 4) != CLASS_IN || u16_at(rr + 10) != (unsigned)size)
            Py_RETURN_NONE;
        uint32_t ttl = u32_at(rr + 6);
        if (ttl >= TTL_NEGATIVE) /* RFC 2181 section 8: read as zero */
            ttl = 0;
        if (ttl < lowest)
            lowest = ttl;
        int seen = 0;
        for (int i = 0; i < count && !seen; i++)
            seen = memcmp(distinct[i], rr + 12, (size_t)size) == 0;
        if (!seen)
            distinct[count++] = rr + 12;
    }

    PyObject *answers = address_texts(distinct, count, size);
    if (answers == NULL || answers == Py_None)
        return answers;
    /* DnsResponse(qname, qtype, answers, cnames, ttl, msg_id) */
    PyObject *fields[6] = {NULL, Py_NewRef(size == 4 ? text_a : text_aaaa), answers};
    PyObject *made = NULL;
    if ((fields[0] = question_name(data, zero)) != NULL && (fields[3] = PyTuple_New(0)) != NULL &&
        (fields[4] = PyLong_FromUnsignedLong(lowest)) != NULL &&
        (fields[5] = PyLong_FromUnsignedLong(msg_id)) != NULL)
        made = PyObject_Vectorcall(response_type, fields, 6, NULL);
    for (int i = 0; i < 6; i++)
        Py_XDECREF(fields[i]);
    return made;
}

static PyObject *parse(PyObject *module, PyObject *arg)
{
    (void)module;
    if (response_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "parse: set_response_type was not called");
        return NULL;
    }
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "parse takes bytes");
        return NULL;
    }
    return parse_plain((const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg));
}

/* ---- the usual frame: Ethernet, IPv4, UDP from port 53, the usual response ---- */

#define ETHER_IPV4_UDP 42 /* 14 + 20 + 8: capture.frames._ETHER_IPV4_UDP_SIZE */
#define ETHERTYPE_IPV4 0x0800
#define PROTO_UDP 17
#define DNS_PORT 53

static PyObject *segment_type;      /* capture.frames.Segment; NULL until given */
static PyObject *ipv4_texts;        /* the dict of capture.frames' Texts of IPv4 addresses */
static Py_ssize_t ipv4_texts_limit; /* and its limit: past it, the memo starts again */
static PyObject *text_udp;          /* "udp", interned */

/* New reference to the text of the IPv4 address at `raw`, from the memo it
 * shares with capture.texts.Texts.text (the same keys and the same rule). */
static PyObject *ipv4_text(const unsigned char *raw)
{
    PyObject *key = PyBytes_FromStringAndSize((const char *)raw, 4);
    if (key == NULL)
        return NULL;
    PyObject *text = PyDict_GetItemWithError(ipv4_texts, key);
    if (text != NULL) {
        Py_INCREF(text);
    } else if (!PyErr_Occurred()) {
        char made[INET_ADDRSTRLEN];
        if (PyDict_GET_SIZE(ipv4_texts) >= ipv4_texts_limit)
            PyDict_Clear(ipv4_texts);
        ipv4_dotted(raw, made);
        if ((text = ascii_text(made)) != NULL &&
            PyDict_SetItem(ipv4_texts, key, text) < 0)
            Py_CLEAR(text);
    }
    Py_DECREF(key);
    return text;
}

/* Reads a frame that is the usual case all through, as
 * capture.frames._plain_udp_over_ipv4 and then parse make it: 1 with new
 * references to its Segment and DnsResponse in *segment and *response, 0 when
 * it is not the usual frame, -1 on a Python error. */
static int plain_parts(const unsigned char *data, Py_ssize_t size, PyObject **segment,
                       PyObject **response)
{
    if (size < ETHER_IPV4_UDP)
        return 0;
    Py_ssize_t total = u16_at(data + 16), length = u16_at(data + 38);
    Py_ssize_t packet_end = 14 + total;
    if (u16_at(data + 12) != ETHERTYPE_IPV4 || data[14] != 0x45 || data[23] != PROTO_UDP ||
        (u16_at(data + 20) & 0x3FFF) != 0 || total < 28 || packet_end > size || length < 8 ||
        34 + length > packet_end || u16_at(data + 34) != DNS_PORT)
        return 0;
    PyObject *parsed = parse_plain(data + ETHER_IPV4_UDP, length - 8);
    if (parsed == NULL)
        return -1;
    if (parsed == Py_None) {
        Py_DECREF(parsed);
        return 0;
    }
    /* Segment(src_ip, dst_ip, src_port, dst_port, transport, payload) */
    PyObject *fields[6] = {NULL, NULL, NULL, NULL, Py_NewRef(text_udp), NULL};
    PyObject *made = NULL;
    if ((fields[0] = ipv4_text(data + 26)) != NULL && (fields[1] = ipv4_text(data + 30)) != NULL &&
        (fields[2] = PyLong_FromLong(DNS_PORT)) != NULL &&
        (fields[3] = PyLong_FromLong((long)u16_at(data + 36))) != NULL &&
        (fields[5] = PyBytes_FromStringAndSize((const char *)data + ETHER_IPV4_UDP,
                                               length - 8)) != NULL)
        made = PyObject_Vectorcall(segment_type, fields, 6, NULL);
    for (int i = 0; i < 6; i++)
        Py_XDECREF(fields[i]);
    if (made == NULL) {
        Py_DECREF(parsed);
        return -1;
    }
    *segment = made;
    *response = parsed;
    return 1;
}

static int frame_types_given(const char *caller)
{
    if (response_type != NULL && segment_type != NULL)
        return 1;
    PyErr_Format(PyExc_RuntimeError, "%s: set_frame_types was not called", caller);
    return 0;
}

static PyObject *read_frame(PyObject *module, PyObject *arg)
{
    (void)module;
    if (!frame_types_given("read_frame"))
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *segment, *response, *found = NULL;
    int plain = plain_parts(view.buf, view.len, &segment, &response);
    PyBuffer_Release(&view);
    if (plain == 0)
        Py_RETURN_NONE;
    if (plain > 0) {
        found = PyTuple_Pack(2, segment, response);
        Py_DECREF(segment);
        Py_DECREF(response);
    }
    return found;
}

/* ---- a block of a TPACKET_V3 receive ring: capture.packetring.read_block ---- */

#define BLOCK_HEADER_SIZE 48 /* struct tpacket_block_desc with its tpacket_hdr_v1 */
#define FRAME_HEADER_SIZE 48 /* struct tpacket3_hdr, padding included */
#define STATUS_AT 8          /* block_status; then num_pkts, offset_to_first_pkt */

static uint32_t native_u32(const unsigned char *p)
{
    uint32_t value;
    memcpy(&value, p, sizeof value);
    return value;
}

/* Hands one frame to plain(segment, response, ts) when it is the usual frame,
 * else a view of it (ring[start:end]) to other(frame, ts); 1 if it was the
 * usual frame, 0 if not, -1 on a Python error (the sinks' included). */
static int hand_frame(PyObject *ring, const unsigned char *base, Py_ssize_t start,
                      Py_ssize_t end, double ts, PyObject *plain, PyObject *other)
{
    PyObject *args[3] = {NULL, NULL, PyFloat_FromDouble(ts)};
    if (args[2] == NULL)
        return -1;
    int usual = plain_parts(base + start, end - start, &args[0], &args[1]);
    PyObject *sink = plain;
    if (usual == 0) {
        sink = other;
        args[1] = args[2];
        args[2] = NULL;
        args[0] = PySequence_GetSlice(ring, start, end);
        if (args[0] == NULL)
            usual = -1;
    }
    if (usual >= 0) {
        PyObject *done = PyObject_Vectorcall(sink, args, usual ? 3 : 2, NULL);
        if (done == NULL)
            usual = -1;
        Py_XDECREF(done);
    }
    for (int i = 0; i < 3; i++)
        Py_XDECREF(args[i]);
    return usual;
}

/* read_block(ring, start, size, plain, other) -> (frames, sound, usual): as
 * capture.packetring.read_block, the same checks in the same order, with
 * the usual frames read here. */
static PyObject *read_block(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "read_block takes ring, start, size, plain, other");
        return NULL;
    }
    if (!frame_types_given("read_block"))
        return NULL;
    Py_ssize_t start = PyLong_AsSsize_t(args[1]), size = PyLong_AsSsize_t(args[2]);
    if ((start == -1 || size == -1) && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *base = view.buf;
    Py_ssize_t end = start + size, taken = 0, usual = 0;
    int sound = 0, failed = 0;
    if (start >= 0 && size >= BLOCK_HEADER_SIZE && end <= view.len) {
        uint32_t count = native_u32(base + start + STATUS_AT + 4);
        Py_ssize_t pos = start + (Py_ssize_t)native_u32(base + start + STATUS_AT + 8);
        sound = 1;
        for (; taken < (Py_ssize_t)count; taken++) {
            if (pos < start + BLOCK_HEADER_SIZE || pos + FRAME_HEADER_SIZE > end) {
                sound = 0;
                break;
            }
            const unsigned char *header = base + pos;
            uint32_t following = native_u32(header), captured = native_u32(header + 12);
            uint16_t mac;
            memcpy(&mac, header + 24, sizeof mac);
            Py_ssize_t frame_start = pos + mac, frame_end = frame_start + captured;
            if (mac < FRAME_HEADER_SIZE || frame_end > end) {
                sound = 0;
                break;
            }
            double ts = (double)native_u32(header + 4) + (double)native_u32(header + 8) * 1e-9;
            int handed = hand_frame(args[0], base, frame_start, frame_end, ts, args[3], args[4]);
            if (handed < 0) {
                failed = 1;
                break;
            }
            usual += handed;
            if (following == 0) {
                taken++;
                sound = taken == (Py_ssize_t)count;
                break;
            }
            pos += following;
        }
    }
    PyBuffer_Release(&view);
    if (failed)
        return NULL;
    return Py_BuildValue("(nOn)", taken, sound ? Py_True : Py_False, usual);
}

static PyObject *set_frame_types(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 || !PyType_Check(args[0]) || !PyDict_Check(args[1]) ||
        !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "set_frame_types takes a type, a dict and an int");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    Py_XSETREF(segment_type, Py_NewRef(args[0]));
    Py_XSETREF(ipv4_texts, Py_NewRef(args[1]));
    ipv4_texts_limit = limit;
    Py_RETURN_NONE;
}

static PyObject *set_response_type(PyObject *module, PyObject *cls)
{
    (void)module;
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "set_response_type takes a type");
        return NULL;
    }
    Py_XSETREF(response_type, Py_NewRef(cls));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_O,
     "parse(data, /)\n"
     "--\n\n"
     "The DnsResponse of a plain DNS response (see capture/_dnsfast.c), or None: Python decides."},
    {"set_response_type", set_response_type, METH_O,
     "set_response_type(cls, /)\n"
     "--\n\n"
     "The type parse makes: capture.dnswire.DnsResponse."},
    {"read_frame", read_frame, METH_O,
     "read_frame(frame, /)\n"
     "--\n\n"
     "(Segment, DnsResponse) of the usual frame (see capture/_dnsfast.c), or None: Python decides."},
    {"read_block", (PyCFunction)(void (*)(void))read_block, METH_FASTCALL,
     "read_block(ring, start, size, plain, other, /)\n"
     "--\n\n"
     "capture.packetring.read_block with the usual frames read here: each one to\n"
     "plain(segment, response, ts), every other to other(frame, ts); (frames, sound, usual)."},
    {"set_frame_types", (PyCFunction)(void (*)(void))set_frame_types, METH_FASTCALL,
     "set_frame_types(segment, texts, limit, /)\n"
     "--\n\n"
     "What read_frame makes and shares: capture.frames.Segment, and the IPv4 texts' memo."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_dnsfast",
    "capture.dnswire's usual case in C (see capture/_dnsfast.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__dnsfast(void)
{
    if (text_a == NULL && (text_a = PyUnicode_InternFromString("A")) == NULL)
        return NULL;
    if (text_aaaa == NULL && (text_aaaa = PyUnicode_InternFromString("AAAA")) == NULL)
        return NULL;
    if (text_udp == NULL && (text_udp = PyUnicode_InternFromString("udp")) == NULL)
        return NULL;
    return PyModule_Create(&module);
}

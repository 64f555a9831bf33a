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
 * Three files, one module: this one reads the usual response and frame and
 * makes the module; _dnsfast_ring.c walks a receive ring's block;
 * _dnsfast_fold.c folds a block's usual frames; _dnsfast.h is what they share.
 *
 * read_block(...) walks a whole block of a TPACKET_V3 receive ring as
 * capture.packetring.read_block does (the same checks, in the same order), and
 * reads each frame as read_frame does in the same pass: the capture thread
 * then runs no Python per usual frame until its folder takes the answer (the
 * block's walk in Python was about a tenth of the agent's time at 70,000
 * distinct answers/s). tests/unit/capture/test_ringblock_fast.py holds it to
 * capture.packetring.read_block with read_frame.
 *
 * fold_block(...) is that walk with each usual frame's response folded here
 * too, into the DnsFolder's own dicts, step for step as
 * capture.dnsfold.DnsFolder._add_response folds it: the sighting, the
 * server's address, the rewritten destination, the window's entry. The keys
 * are CPython's hash() of the same tuples (written out in _dnsfast_fold.c),
 * so the folder's Python, which still takes every other frame, finds what was
 * put here and the other way round. Python runs for a usual frame only when it
 * turns the folder's memory or takes back a rewritten response (a new entry,
 * a capture.dnsfold.FoldedAnswer, is made here); the folder's state is read
 * again after any Python ran.
 * tests/unit/capture/test_fold_fast.py holds it to the folder in Python.
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
 *   set_fold_type(FoldedAnswer)     once, at import: the entry fold_block makes;
 *   fold_block(ring, start, size, folder, other)  each usual frame folded into
 *                                   folder, every other to other(ring[a:b], ts);
 *                                   (frames, sound, usual, duplicates, folded).
 *   python_hashes(text, items)      (hash(text), hash(items)) as fold_block
 *                                   makes them: checked against hash() at import.
 * Layout: RFC 1035 section 4.1, RFC 791, RFC 768, all in network byte order;
 * linux/if_packet.h (the ring's headers), in the machine's.
 */
#include "_dnsfast.h"

PyObject *response_type;      /* capture.dnswire.DnsResponse; NULL until given */
PyObject *text_a, *text_aaaa; /* "A" and "AAAA", interned */

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

/* The text of the question name that ends at `zero` (labels joined by dots)
 * written to `out` (at least MAX_NAME_WIRE bytes); its length. */
Py_ssize_t name_text(const unsigned char *data, Py_ssize_t zero, Py_UCS1 *out)
{
    Py_ssize_t written = 0;
    for (Py_ssize_t at = HEADER; at < zero; at += 1 + data[at]) {
        if (written > 0)
            out[written++] = '.';
        for (unsigned i = 1; i <= data[at]; i++)
            out[written++] = (Py_UCS1)name_char(data[at + i]);
    }
    return written;
}

/* The text of the question name that ends at `zero`, as a str. */
static PyObject *question_name(const unsigned char *data, Py_ssize_t zero)
{
    PyObject *text = PyUnicode_New(zero - HEADER - 1, 127);
    if (text != NULL)
        name_text(data, zero, PyUnicode_1BYTE_DATA(text));
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

/* 1 when the `end` bytes at `data` are the usual response, its values then in
 * *plain; 0 when they are not; -1 on a Python error. */
int read_plain(const unsigned char *data, Py_ssize_t end, Plain *plain)
{
    if (end < HEADER)
        return 0;
    unsigned flags = u16_at(data + 2), qdcount = u16_at(data + 4), ancount = u16_at(data + 6);
    /* QR set; opcode QUERY, TC and RCODE all zero. */
    if ((flags & 0xFA0F) != 0x8000 || qdcount != 1 || ancount == 0 || ancount > MAX_ANSWERS)
        return 0;
    Py_ssize_t zero = question_name_end(data, end);
    if (zero < 0 || zero + 5 > end)
        return 0;
    unsigned qtype = u16_at(data + zero + 1);
    int size = qtype == TYPE_A ? 4 : qtype == TYPE_AAAA ? 16 : 0;
    if (size == 0 || u16_at(data + zero + 3) != CLASS_IN)
        return 0;

    /* Every answer: owner a pointer to the question name, its type, IN, its size. */
    const unsigned char *distinct[MAX_ANSWERS]; /* rdata of each new address, in order */
    int count = 0;
    uint32_t lowest = TTL_NEGATIVE;
    Py_ssize_t at = zero + 5;
    for (unsigned n = 0; n < ancount; n++, at += 12 + size) {
        if (at + 12 + size > end)
            return 0;
        const unsigned char *rr = data + at;
        if (u16_at(rr) != POINTER_TO_QNAME || u16_at(rr + 2) != qtype ||
            u16_at(rr + 4) != CLASS_IN || u16_at(rr + 10) != (unsigned)size)
            return 0;
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
    for (int i = 0; i < count; i++) {
        char *text = plain->texts[i];
        if (size == 4)
            ipv4_dotted(distinct[i], text);
        else if (inet_ntop(AF_INET6, distinct[i], text, INET6_ADDRSTRLEN) == NULL) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (size == 16 && strchr(text, '.') != NULL) /* IPv4-mapped or -compatible */
            return 0;
    }
    plain->msg_id = u16_at(data);
    plain->zero = zero;
    plain->size = size;
    plain->ttl = lowest;
    plain->count = count;
    return 1;
}

/* The addresses' texts, in order, as a tuple of str. */
PyObject *address_texts(const Plain *plain)
{
    PyObject *texts = PyTuple_New(plain->count);
    if (texts == NULL)
        return NULL;
    for (int i = 0; i < plain->count; i++) {
        PyObject *item = ascii_text(plain->texts[i]);
        if (item == NULL) {
            Py_DECREF(texts);
            return NULL;
        }
        PyTuple_SET_ITEM(texts, i, item);
    }
    return texts;
}

/* "A" or "AAAA": the question's type as DnsResponse holds it (borrowed). */
PyObject *qtype_text(const Plain *plain) { return plain->size == 4 ? text_a : text_aaaa; }

/* The DnsResponse of the usual response at `data` read into *plain. */
static PyObject *plain_response(const unsigned char *data, const Plain *plain)
{
    /* DnsResponse(qname, qtype, answers, cnames, ttl, msg_id) */
    PyObject *fields[6] = {NULL, Py_NewRef(qtype_text(plain)), NULL};
    PyObject *made = NULL;
    if ((fields[2] = address_texts(plain)) != NULL &&
        (fields[0] = question_name(data, plain->zero)) != NULL &&
        (fields[3] = PyTuple_New(0)) != NULL &&
        (fields[4] = PyLong_FromUnsignedLong(plain->ttl)) != NULL &&
        (fields[5] = PyLong_FromUnsignedLong(plain->msg_id)) != NULL)
        made = PyObject_Vectorcall(response_type, fields, 6, NULL);
    for (int i = 0; i < 6; i++)
        Py_XDECREF(fields[i]);
    return made;
}

/* The DnsResponse of the `end` bytes at `data` when they are the usual
 * response, else None (new references), or NULL on a Python error. */
static PyObject *parse_plain(const unsigned char *data, Py_ssize_t end)
{
    Plain plain;
    int usual = read_plain(data, end, &plain);
    if (usual < 0)
        return NULL;
    if (usual == 0)
        Py_RETURN_NONE;
    return plain_response(data, &plain);
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

PyObject *segment_type;             /* capture.frames.Segment; NULL until given */
static PyObject *ipv4_texts;        /* the dict of capture.frames' Texts of IPv4 addresses */
static Py_ssize_t ipv4_texts_limit; /* and its limit: past it, the memo starts again */
PyObject *text_udp;                 /* "udp", interned */

/* New reference to the text of the IPv4 address at `raw`, from the memo it
 * shares with capture.texts.Texts.text (the same keys and the same rule). */
PyObject *ipv4_text(const unsigned char *raw)
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

/* The length of the DNS message in a frame whose layers are the usual ones
 * (the message at data + ETHER_IPV4_UDP), as capture.frames._plain_udp_over_ipv4
 * reads them; -1 when they are not. */
Py_ssize_t usual_payload(const unsigned char *data, Py_ssize_t size)
{
    if (size < ETHER_IPV4_UDP)
        return -1;
    Py_ssize_t total = u16_at(data + 16), length = u16_at(data + 38);
    Py_ssize_t packet_end = 14 + total;
    if (u16_at(data + 12) != ETHERTYPE_IPV4 || data[14] != 0x45 || data[23] != PROTO_UDP ||
        (u16_at(data + 20) & 0x3FFF) != 0 || total < 28 || packet_end > size || length < 8 ||
        34 + length > packet_end || u16_at(data + 34) != DNS_PORT)
        return -1;
    return length - 8;
}

/* Reads a frame that is the usual case all through, as
 * capture.frames._plain_udp_over_ipv4 and then parse make it: 1 with new
 * references to its Segment and DnsResponse in *segment and *response, 0 when
 * it is not the usual frame, -1 on a Python error. */
int plain_parts(const unsigned char *data, Py_ssize_t size, PyObject **segment,
                PyObject **response)
{
    Py_ssize_t length = usual_payload(data, size);
    if (length < 0)
        return 0;
    PyObject *parsed = parse_plain(data + ETHER_IPV4_UDP, length);
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
        (fields[5] = PyBytes_FromStringAndSize((const char *)data + ETHER_IPV4_UDP, length)) !=
            NULL)
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

int frame_types_given(const char *caller)
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

PyObject *keep_type(PyObject **slot, PyObject *cls, const char *caller)
{
    if (!PyType_Check(cls)) {
        PyErr_Format(PyExc_TypeError, "%s takes a type", caller);
        return NULL;
    }
    Py_XSETREF(*slot, Py_NewRef(cls));
    Py_RETURN_NONE;
}

static PyObject *set_response_type(PyObject *module, PyObject *cls)
{
    (void)module;
    return keep_type(&response_type, cls, "set_response_type");
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
    {"fold_block", (PyCFunction)(void (*)(void))fold_block, METH_FASTCALL,
     "fold_block(ring, start, size, folder, other, /)\n"
     "--\n\n"
     "read_block's walk with each usual frame's response folded into the DnsFolder here,\n"
     "every other frame to other(frame, ts); (frames, sound, usual, duplicates, folded)."},
    {"python_hashes", (PyCFunction)(void (*)(void))python_hashes, METH_FASTCALL,
     "python_hashes(text, items, /)\n"
     "--\n\n"
     "(hash of an ASCII str, hash of a tuple) as fold_block makes them, to compare with hash()."},
    {"set_fold_type", set_fold_type, METH_O,
     "set_fold_type(cls, /)\n"
     "--\n\n"
     "The window entry fold_block makes: capture.dnsfold.FoldedAnswer."},
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
    if (fold_init() < 0)
        return NULL;
    return PyModule_Create(&module);
}

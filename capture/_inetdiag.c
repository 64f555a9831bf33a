/*
 * capture._inetdiag: the message loop of capture.inetdiag.DumpParser.feed, in C.
 *
 * Why: a node's 100,000 sockets cost 1.5 us each to read in Python, 0.15 s of
 * a socket pass that must stay under 0.2 s (issue 19; docs/capture.md,
 * "Socket tables"). This file does exactly what the Python loop in
 * capture/inetdiag.py does, message for message, and builds the same
 * DiagSocket records; the Python loop stays the reference, and
 * tests/unit/capture/test_inetdiag.py holds the two to the same answers on
 * broken and random dumps (tests/integration/capture/test_sockdiag_live.py on
 * this kernel's own). It is optional: an install without a C
 * compiler gets the Python loop.
 *
 * What it is given (all from capture/inetdiag.py, so nothing is defined twice):
 *   feed(data, sockets, dropped, names4, names6, states, make, reasons)
 * data     any buffer of whole or partial netlink messages;
 * sockets  the list DiagSockets are appended to;
 * dropped  the dict of drop counts, by reason;
 * names4/6 canonical text of raw 16-byte address fields, by family (added to);
 * states   the 256-tuple of TcpState (or None) by state number;
 * make     DiagSocket, called with its fields in order;
 * reasons  the drop reasons, as a tuple in the order of the DROP_* indices below.
 * It returns None while the dump goes on, or the errno it ended with (0 when it
 * ended well). Layouts: see capture/inetdiag.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#define NLMSG_HEADER 16
#define DIAG_MSG_END (NLMSG_HEADER + 72)
#define NLMSG_NOOP 1
#define NLMSG_ERROR 2
#define NLMSG_DONE 3
#define TCPDIAG_GETSOCK 18
#define SOCK_DIAG_BY_FAMILY 20
#define INET_DIAG_INFO 2
#define FAMILY_INET 2
#define FAMILY_INET6 10
#define MAX_FIELDS 15

/* Indices into `reasons`: the order of capture.inetdiag.DROP_REASONS. */
enum { TRUNCATED, BAD_LENGTH, SHORT_MESSAGE, OTHER_MESSAGE, ODD_FAMILY, BAD_STATE,
       BAD_ATTRIBUTE, SHORT_TCP_INFO, REASON_COUNT };

static uint16_t u16_at(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t u32_at(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t u64_at(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static long port_at(const unsigned char *p) { return ((long)p[0] << 8) | p[1]; }

static int drop(PyObject *dropped, PyObject *reasons, int reason)
{
    PyObject *key = PyTuple_GET_ITEM(reasons, reason);
    PyObject *old = PyDict_GetItemWithError(dropped, key);
    long count = 0;
    if (old != NULL) {
        count = PyLong_AsLong(old);
        if (count == -1 && PyErr_Occurred())
            return -1;
    } else if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *now = PyLong_FromLong(count + 1);
    if (now == NULL)
        return -1;
    int failed = PyDict_SetItem(dropped, key, now);
    Py_DECREF(now);
    return failed;
}

static const unsigned char V4_MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* The canonical text of an address field, as capture.addresses.packed_address
 * gives it (inet_ntop, as Python's socket.inet_ntop; IPv4-mapped as IPv4). */
static PyObject *address_text(int family, const unsigned char *raw)
{
    char text[INET6_ADDRSTRLEN];
    const char *made;
    if (family == FAMILY_INET)
        made = inet_ntop(AF_INET, raw, text, sizeof text);
    else if (memcmp(raw, V4_MAPPED, sizeof V4_MAPPED) == 0)
        made = inet_ntop(AF_INET, raw + sizeof V4_MAPPED, text, sizeof text);
    else
        made = inet_ntop(AF_INET6, raw, text, sizeof text);
    if (made == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyUnicode_FromString(text);
}

/* The last raw address read and its text: in one namespace the same local
 * address is on nearly every socket. */
typedef struct {
    int family;
    unsigned char raw[16];
    PyObject *text; /* owned; NULL when empty */
} LastName;

/* New reference to the canonical text of `raw`, from `last`, then `names`,
 * then made (and remembered in both). */
static PyObject *name_of(LastName *last, PyObject *names, int family, const unsigned char *raw)
{
    if (last->text != NULL && last->family == family && memcmp(last->raw, raw, 16) == 0) {
        Py_INCREF(last->text);
        return last->text;
    }
    PyObject *key = PyBytes_FromStringAndSize((const char *)raw, 16);
    if (key == NULL)
        return NULL;
    PyObject *text = PyDict_GetItemWithError(names, key);
    if (text != NULL) {
        Py_INCREF(text);
    } else if (!PyErr_Occurred()) {
        text = address_text(family, raw);
        if (text != NULL && PyDict_SetItem(names, key, text) < 0)
            Py_CLEAR(text);
    }
    Py_DECREF(key);
    if (text == NULL)
        return NULL;
    Py_XSETREF(last->text, Py_NewRef(text));
    last->family = family;
    memcpy(last->raw, raw, 16);
    return text;
}

/* The tcp_info fields a tcp_info of `size` bytes holds, as in _info_struct. */
static int info_fields(Py_ssize_t size)
{
    if (size >= 144) return 7;
    if (size >= 136) return 5;
    if (size >= 104) return 3;
    if (size >= 76) return 2;
    return -1;
}

/* Walks a socket message's attributes as DumpParser._walk does. Returns the
 * number of tcp_info fields found (0: none), with `*info` where tcp_info
 * starts, or -1 when the attributes are broken (counted), -2 on a Python error. */
static int walk(const unsigned char *data, Py_ssize_t offset, Py_ssize_t stop,
                Py_ssize_t *info, PyObject *dropped, PyObject *reasons)
{
    Py_ssize_t at = offset + DIAG_MSG_END;
    while (at + 4 <= stop) {
        Py_ssize_t size = u16_at(data + at);
        int kind = u16_at(data + at + 2);
        if (size < 4 || at + size > stop)
            return drop(dropped, reasons, BAD_ATTRIBUTE) < 0 ? -2 : -1;
        if (kind == INET_DIAG_INFO) {
            int fields = info_fields(size - 4);
            if (fields < 0)
                return drop(dropped, reasons, SHORT_TCP_INFO) < 0 ? -2 : 0;
            *info = at + 4;
            return fields;
        }
        at += (size + 3) & ~3;
    }
    if (at < stop) /* 1 to 3 bytes: too short for an attribute header */
        return drop(dropped, reasons, BAD_ATTRIBUTE) < 0 ? -2 : -1;
    return 0;
}

/* What feed is given after the data (borrowed references), by name. */
typedef struct {
    PyObject *sockets, *dropped, *names4, *names6, *states, *make, *reasons;
} Given;

/* One socket message at `offset` (at least DIAG_MSG_END long, ending at
 * `stop`) appended to `sockets`, or counted; -1 on a Python error. */
static int read_socket(const unsigned char *data, Py_ssize_t offset, Py_ssize_t stop,
                       const Given *given, LastName *local, LastName *remote)
{
    PyObject *dropped = given->dropped, *reasons = given->reasons;
    const unsigned char *msg = data + offset;
    int family = msg[16];
    PyObject *state = PyTuple_GET_ITEM(given->states, msg[17]);
    PyObject *names = family == FAMILY_INET    ? given->names4
                      : family == FAMILY_INET6 ? given->names6
                                               : NULL;
    if (state == Py_None)
        return drop(dropped, reasons, BAD_STATE);
    if (names == NULL)
        return drop(dropped, reasons, ODD_FAMILY);

    PyObject *fields[MAX_FIELDS] = {NULL};
    int count = 0, result = -1;
    fields[1] = Py_NewRef(state);
    fields[2] = name_of(local, names, family, msg + 24);
    if (fields[2] == NULL)
        goto done;
    fields[4] = name_of(remote, names, family, msg + 40);
    if (fields[4] == NULL)
        goto done;
    Py_ssize_t info = 0;
    int extra = walk(data, offset, stop, &info, dropped, reasons);
    if (extra == -2)
        goto done;
    if (extra == -1) {
        result = 0;
        goto done;
    }
    fields[0] = PyLong_FromLong(family);
    fields[3] = PyLong_FromLong(port_at(msg + 20));
    fields[5] = PyLong_FromLong(port_at(msg + 22));
    fields[6] = PyLong_FromUnsignedLong(u32_at(msg + 84)); /* inode */
    fields[7] = PyLong_FromUnsignedLong(u32_at(msg + 80)); /* uid */
    count = 8;
    if (extra >= 2) {
        fields[count++] = PyLong_FromUnsignedLong(u32_at(data + info + 68));  /* rtt */
        fields[count++] = PyLong_FromUnsignedLong(u32_at(data + info + 72));  /* rttvar */
    }
    if (extra >= 3)
        fields[count++] = PyLong_FromUnsignedLong(u32_at(data + info + 100)); /* total_retrans */
    if (extra >= 5) {
        fields[count++] = PyLong_FromUnsignedLongLong(u64_at(data + info + 120)); /* bytes_acked */
        fields[count++] = PyLong_FromUnsignedLongLong(u64_at(data + info + 128)); /* bytes_received */
    }
    if (extra >= 7) {
        fields[count++] = PyLong_FromUnsignedLong(u32_at(data + info + 136)); /* segs_out */
        fields[count++] = PyLong_FromUnsignedLong(u32_at(data + info + 140)); /* segs_in */
    }
    for (int i = 0; i < count; i++)
        if (fields[i] == NULL)
            goto done;
    PyObject *made = PyObject_Vectorcall(given->make, fields, count, NULL);
    if (made == NULL)
        goto done;
    result = PyList_Append(given->sockets, made);
    Py_DECREF(made);
done:
    for (int i = 0; i < MAX_FIELDS; i++)
        Py_XDECREF(fields[i]);
    return result;
}

/* NLMSG_DONE or NLMSG_ERROR, as DumpParser._end: 1 with `*errno_out` when it
 * ends the dump, 0 when not, -1 on a Python error. */
static int read_end(const unsigned char *data, Py_ssize_t offset, Py_ssize_t stop, int kind,
                    long long *errno_out, PyObject *dropped, PyObject *reasons)
{
    if (stop < offset + NLMSG_HEADER + 4) {
        if (kind == NLMSG_DONE) { /* the status int is optional in old kernels' DONE */
            *errno_out = 0;
            return 1;
        }
        return drop(dropped, reasons, SHORT_MESSAGE);
    }
    long long status = (int32_t)u32_at(data + offset + NLMSG_HEADER);
    if (kind == NLMSG_ERROR && status == 0)
        return 0; /* an acknowledgement, not an end */
    *errno_out = status < 0 ? -status : kind == NLMSG_ERROR ? status : 0;
    return 1;
}

static PyObject *feed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "feed takes 8 arguments");
        return NULL;
    }
    if (!PyList_Check(args[1]) || !PyDict_Check(args[2]) || !PyDict_Check(args[3]) ||
        !PyDict_Check(args[4]) || !PyTuple_Check(args[5]) || PyTuple_GET_SIZE(args[5]) != 256 ||
        !PyTuple_Check(args[7]) || PyTuple_GET_SIZE(args[7]) != REASON_COUNT) {
        PyErr_SetString(PyExc_TypeError, "feed: arguments of the wrong kind");
        return NULL;
    }
    const Given given = {args[1], args[2], args[3], args[4], args[5], args[6], args[7]};
    PyObject *dropped = given.dropped, *reasons = given.reasons;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *data = view.buf;
    Py_ssize_t end = view.len, offset = 0;
    LastName local = {0}, remote = {0};
    long long error = 0;
    int ended = 0, failed = 0;
    while (offset < end && !failed) {
        if (end - offset < NLMSG_HEADER) {
            failed = drop(dropped, reasons, TRUNCATED) < 0;
            break;
        }
        Py_ssize_t length = u32_at(data + offset);
        int kind = u16_at(data + offset + 4);
        if (length < NLMSG_HEADER) {
            failed = drop(dropped, reasons, BAD_LENGTH) < 0;
            break;
        }
        Py_ssize_t stop = offset + length;
        if (stop > end) {
            failed = drop(dropped, reasons, TRUNCATED) < 0;
            break;
        }
        int socket_message = kind == SOCK_DIAG_BY_FAMILY || kind == TCPDIAG_GETSOCK;
        if (socket_message && length >= DIAG_MSG_END) {
            failed = read_socket(data, offset, stop, &given, &local, &remote) < 0;
        } else if (socket_message) {
            failed = drop(dropped, reasons, SHORT_MESSAGE) < 0;
        } else if (kind == NLMSG_DONE || kind == NLMSG_ERROR) {
            int done = read_end(data, offset, stop, kind, &error, dropped, reasons);
            failed = done < 0;
            if (done == 1) {
                ended = 1;
                break;
            }
        } else if (kind != NLMSG_NOOP) {
            failed = drop(dropped, reasons, OTHER_MESSAGE) < 0;
        }
        offset = (stop + 3) & ~(Py_ssize_t)3; /* NLMSG_ALIGN */
    }
    Py_XDECREF(local.text);
    Py_XDECREF(remote.text);
    PyBuffer_Release(&view);
    if (failed)
        return NULL;
    return ended ? PyLong_FromLongLong(error) : Py_NewRef(Py_None);
}

static PyMethodDef methods[] = {
    {"feed", (PyCFunction)(void (*)(void))feed, METH_FASTCALL,
     "feed(data, sockets, dropped, names4, names6, states, make, reasons)\n"
     "--\n\n"
     "DumpParser.feed's message loop: None while the dump goes on, else its errno (0: ended well)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_inetdiag",
    "capture.inetdiag's message loop in C (see capture/_inetdiag.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__inetdiag(void) { return PyModule_Create(&module); }

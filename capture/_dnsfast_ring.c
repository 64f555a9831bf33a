/*
 * capture._dnsfast's walk of a TPACKET_V3 receive ring block (see
 * capture/_dnsfast.c): read_block, and the walk fold_block shares.
 */
#include "_dnsfast.h"

#define BLOCK_HEADER_SIZE 48 /* struct tpacket_block_desc with its tpacket_hdr_v1 */
#define FRAME_HEADER_SIZE 48 /* struct tpacket3_hdr, padding included */
#define STATUS_AT 8          /* block_status; then num_pkts, offset_to_first_pkt */

static uint32_t native_u32(const unsigned char *p)
{
    uint32_t value;
    memcpy(&value, p, sizeof value);
    return value;
}

/* other(ring[start:end], ts): a frame that is not the usual one, for Python. */
int hand_other(PyObject *other, PyObject *ring, Py_ssize_t start, Py_ssize_t end, double ts)
{
    PyObject *args[2] = {PySequence_GetSlice(ring, start, end), PyFloat_FromDouble(ts)};
    PyObject *done = NULL;
    if (args[0] != NULL && args[1] != NULL)
        done = PyObject_Vectorcall(other, args, 2, NULL);
    Py_XDECREF(args[0]);
    Py_XDECREF(args[1]);
    if (done == NULL)
        return -1;
    Py_DECREF(done);
    return 0;
}

typedef struct {
    PyObject *plain, *other;
} Sinks;

/* read_block's taker: the usual frame to plain(segment, response, ts), any
 * other to other(frame, ts). */
static int hand_frame(void *taker, PyObject *ring, const unsigned char *base, Py_ssize_t start,
                      Py_ssize_t end, double ts)
{
    const Sinks *sinks = taker;
    PyObject *args[3] = {NULL, NULL, NULL};
    int usual = plain_parts(base + start, end - start, &args[0], &args[1]);
    if (usual <= 0)
        return usual < 0 ? -1 : hand_other(sinks->other, ring, start, end, ts);
    PyObject *done = NULL;
    if ((args[2] = PyFloat_FromDouble(ts)) != NULL)
        done = PyObject_Vectorcall(sinks->plain, args, 3, NULL);
    for (int i = 0; i < 3; i++)
        Py_XDECREF(args[i]);
    if (done == NULL)
        return -1;
    Py_DECREF(done);
    return 1;
}

/* The walk of capture.packetring.read_block, the same checks in the same
 * order, each frame to `take`: *taken frames, *sound, *usual of them usual;
 * -1 on a Python error. */
int walk_block(PyObject *ring, PyObject *start_arg, PyObject *size_arg, FrameTaker take,
               void *taker, Py_ssize_t *taken, int *sound, Py_ssize_t *usual)
{
    Py_ssize_t start = PyLong_AsSsize_t(start_arg), size = PyLong_AsSsize_t(size_arg);
    if ((start == -1 || size == -1) && PyErr_Occurred())
        return -1;
    Py_buffer view;
    if (PyObject_GetBuffer(ring, &view, PyBUF_SIMPLE) < 0)
        return -1;
    const unsigned char *base = view.buf;
    Py_ssize_t end = start + size;
    int failed = 0;
    *taken = *usual = 0;
    *sound = 0;
    if (start >= 0 && size >= BLOCK_HEADER_SIZE && end <= view.len) {
        uint32_t count = native_u32(base + start + STATUS_AT + 4);
        Py_ssize_t pos = start + (Py_ssize_t)native_u32(base + start + STATUS_AT + 8);
        *sound = 1;
        for (; *taken < (Py_ssize_t)count; (*taken)++) {
            if (pos < start + BLOCK_HEADER_SIZE || pos + FRAME_HEADER_SIZE > end) {
                *sound = 0;
                break;
            }
            const unsigned char *header = base + pos;
            uint32_t following = native_u32(header), captured = native_u32(header + 12);
            uint16_t mac;
            memcpy(&mac, header + 24, sizeof mac);
            Py_ssize_t frame_start = pos + mac, frame_end = frame_start + captured;
            if (mac < FRAME_HEADER_SIZE || frame_end > end) {
                *sound = 0;
                break;
            }
            double ts = (double)native_u32(header + 4) + (double)native_u32(header + 8) * 1e-9;
            int handed = take(taker, ring, base, frame_start, frame_end, ts);
            if (handed < 0) {
                failed = 1;
                break;
            }
            *usual += handed;
            if (following == 0) {
                (*taken)++;
                *sound = *taken == (Py_ssize_t)count;
                break;
            }
            pos += following;
        }
    }
    PyBuffer_Release(&view);
    return failed ? -1 : 0;
}

/* read_block(ring, start, size, plain, other) -> (frames, sound, usual): as
 * capture.packetring.read_block, with the usual frames read here. */
PyObject *read_block(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "read_block takes ring, start, size, plain, other");
        return NULL;
    }
    if (!frame_types_given("read_block"))
        return NULL;
    Sinks sinks = {args[3], args[4]};
    Py_ssize_t taken, usual;
    int sound;
    if (walk_block(args[0], args[1], args[2], hand_frame, &sinks, &taken, &sound, &usual) < 0)
        return NULL;
    return Py_BuildValue("(nOn)", taken, sound ? Py_True : Py_False, usual);
}


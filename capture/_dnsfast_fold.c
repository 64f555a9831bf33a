/*
 * capture._dnsfast's fold of a receive ring block's usual frames into a
 * capture.dnsfold.DnsFolder (see capture/_dnsfast.c): fold_block.
 */
#include "_dnsfast.h"

/* CPython's hashes, so that a key made here is the key DnsFolder._add_response
 * makes of the same response with hash() of a tuple: a str's is _Py_HashBytes
 * of its bytes (all ASCII here), an int's below 2**61 - 1 is itself, and a
 * tuple's is this xxHash-like mix of its items' (Objects/tupleobject.c,
 * unchanged since 3.8). tests/unit/capture/test_fold_fast.py holds the two
 * folders to the same windows, counters and cross-path duplicates. */
#if SIZEOF_PY_HASH_T != 8
#error "the tuple hash below is CPython's 64-bit one"
#endif
#define XXPRIME_1 ((Py_uhash_t)11400714785074694791ULL)
#define XXPRIME_2 ((Py_uhash_t)14029467366897019727ULL)
#define XXPRIME_5 ((Py_uhash_t)2870177450012600261ULL)
#define XXROTATE(x) ((x << 31) | (x >> 33))

static Py_hash_t tuple_hash(const Py_hash_t *lanes, Py_ssize_t count)
{
    Py_uhash_t acc = XXPRIME_5;
    for (Py_ssize_t i = 0; i < count; i++) {
        acc += (Py_uhash_t)lanes[i] * XXPRIME_2;
        acc = XXROTATE(acc);
        acc *= XXPRIME_1;
    }
    acc += (Py_uhash_t)count ^ (XXPRIME_5 ^ 3527539UL);
    if (acc == (Py_uhash_t)-1)
        return 1546275796;
    return (Py_hash_t)acc;
}

/* python_hashes(text, items) -> (hash of text, hash of items) as this file makes
 * them: text an ASCII str, its bytes hashed; items a tuple, its items' hashes
 * mixed. capture.dnsfold compares them with hash() at import and folds in
 * Python should a CPython ever hash otherwise. */
PyObject *python_hashes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyUnicode_IS_ASCII(args[0]) ||
        !PyTuple_Check(args[1]) || PyTuple_GET_SIZE(args[1]) > MAX_ANSWERS) {
        PyErr_SetString(PyExc_TypeError,
                        "python_hashes takes an ASCII str and a tuple of at most 64 items");
        return NULL;
    }
    Py_hash_t lanes[MAX_ANSWERS];
    Py_ssize_t count = PyTuple_GET_SIZE(args[1]);
    for (Py_ssize_t i = 0; i < count; i++)
        if ((lanes[i] = PyObject_Hash(PyTuple_GET_ITEM(args[1], i))) == -1)
            return NULL;
    Py_hash_t text = _Py_HashBytes(PyUnicode_1BYTE_DATA(args[0]), PyUnicode_GET_LENGTH(args[0]));
    return Py_BuildValue("(nn)", text, tuple_hash(lanes, count));
}

static PyObject *folded_type; /* capture.dnsfold.FoldedAnswer; NULL until given */
static PyObject *empty_tuple, *one;
static PyObject *name_seen, *name_destinations, *name_window, *name_servers, *name_turn_at,
    *name_head, *name_turn, *name_retract, *name_new, *name_old, *name_count, *name_ttl, *name_ts;

/* A folder's state as fold_block reads it, taken again after any Python runs. */
typedef struct {
    PyObject *folder, *other;                         /* borrowed */
    PyObject *seen_new, *seen_old, *dest_new, *dest_old; /* RecentKeys' dicts */
    PyObject *window, *servers;
    PyObject *head; /* (v, cluster, node): every new entry's first fields */
    double turn_at;
    Py_ssize_t duplicates, folded;
} Fold;

static void fold_let_go(Fold *fold)
{
    Py_CLEAR(fold->seen_new);
    Py_CLEAR(fold->seen_old);
    Py_CLEAR(fold->dest_new);
    Py_CLEAR(fold->dest_old);
    Py_CLEAR(fold->window);
    Py_CLEAR(fold->servers);
    Py_CLEAR(fold->head);
}

/* owner.name as a new reference, which must be a dict; NULL on an error. */
static PyObject *dict_at(PyObject *owner, PyObject *name)
{
    PyObject *found = PyObject_GetAttr(owner, name);
    if (found != NULL && !PyDict_CheckExact(found)) {
        PyErr_Format(PyExc_TypeError, "fold_block: %U is not a dict", name);
        Py_CLEAR(found);
    }
    return found;
}

/* Reads the folder's dicts and next turn again: Python may have changed them. */
static int fold_take_state(Fold *fold)
{
    fold_let_go(fold);
    PyObject *seen = PyObject_GetAttr(fold->folder, name_seen);
    PyObject *destinations = PyObject_GetAttr(fold->folder, name_destinations);
    PyObject *turn_at = PyObject_GetAttr(fold->folder, name_turn_at);
    int failed = seen == NULL || destinations == NULL || turn_at == NULL ||
                 (fold->seen_new = dict_at(seen, name_new)) == NULL ||
                 (fold->seen_old = dict_at(seen, name_old)) == NULL ||
                 (fold->dest_new = dict_at(destinations, name_new)) == NULL ||
                 (fold->dest_old = dict_at(destinations, name_old)) == NULL ||
                 (fold->window = dict_at(fold->folder, name_window)) == NULL ||
                 (fold->servers = dict_at(fold->folder, name_servers)) == NULL ||
                 (fold->head = PyObject_GetAttr(fold->folder, name_head)) == NULL;
    if (!failed && (!PyTuple_CheckExact(fold->head) || PyTuple_GET_SIZE(fold->head) != 3)) {
        PyErr_SetString(PyExc_TypeError, "fold_block: _head is not a 3-tuple");
        failed = 1;
    }
    if (!failed) {
        fold->turn_at = PyFloat_AsDouble(turn_at);
        failed = fold->turn_at == -1.0 && PyErr_Occurred();
    }
    Py_XDECREF(seen);
    Py_XDECREF(destinations);
    Py_XDECREF(turn_at);
    return failed ? -1 : 0;
}

/* RecentKeys.put on its two dicts: `key` set to `value` in the newer; 1 with a
 * new reference to the value it had in *before (when given), 0 if it had
 * none, -1 on an error. */
static int put_recent(PyObject *newer, PyObject *older, PyObject *key, PyObject *value,
                      PyObject **before)
{
    PyObject *found = PyDict_GetItemWithError(newer, key);
    if (found == NULL && !PyErr_Occurred())
        found = PyDict_GetItemWithError(older, key);
    if (found == NULL && PyErr_Occurred())
        return -1;
    Py_XINCREF(found);
    if (PyDict_SetItem(newer, key, value) < 0) {
        Py_XDECREF(found);
        return -1;
    }
    if (before != NULL)
        *before = found;
    else
        Py_XDECREF(found);
    return found != NULL;
}

/* folder.method(arg), and the folder's state read again. */
static int fold_call(Fold *fold, PyObject *method, PyObject *arg)
{
    PyObject *done = PyObject_CallMethodOneArg(fold->folder, method, arg);
    if (done == NULL)
        return -1;
    Py_DECREF(done);
    return fold_take_state(fold);
}

/* entry.name, a number, in *value; -1 on a Python error. */
static int number_at(PyObject *entry, PyObject *name, double *value)
{
    PyObject *held = PyObject_GetAttr(entry, name);
    if (held == NULL)
        return -1;
    *value = PyFloat_AsDouble(held);
    Py_DECREF(held);
    return *value == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* entry.name = made, a new reference it takes (NULL: the error of making it). */
static int set_made(PyObject *entry, PyObject *name, PyObject *made)
{
    if (made == NULL)
        return -1;
    int result = PyObject_SetAttr(entry, name, made);
    Py_DECREF(made);
    return result;
}

/* One more response for the window's entry: count, smallest TTL, first time. */
static int fold_again(PyObject *entry, const Plain *plain, PyObject *when, double ts)
{
    double count, ttl, first;
    if (number_at(entry, name_count, &count) < 0 || number_at(entry, name_ttl, &ttl) < 0 ||
        number_at(entry, name_ts, &first) < 0 ||
        set_made(entry, name_count, PyLong_FromDouble(count + 1)) < 0)
        return -1;
    if (plain->ttl < ttl && set_made(entry, name_ttl, PyLong_FromUnsignedLong(plain->ttl)) < 0)
        return -1;
    return ts < first ? PyObject_SetAttr(entry, name_ts, when) : 0;
}

/* A new entry of the window: FoldedAnswer(*head, ts, client_ip, server_ip,
 * transport, qname, qtype, answers, cnames, ttl, 1); the question name's text
 * already written to `qname` (`length` bytes). */
static PyObject *new_entry(const Fold *fold, const Py_UCS1 *qname, Py_ssize_t length,
                           const Plain *plain, PyObject *client, PyObject *server,
                           PyObject *when)
{
    PyObject *head = fold->head;
    PyObject *fields[13] = {PyTuple_GET_ITEM(head, 0), PyTuple_GET_ITEM(head, 1),
                            PyTuple_GET_ITEM(head, 2), when, client, server, text_udp, NULL,
                            qtype_text(plain), NULL, empty_tuple, NULL, one};
    PyObject *made = NULL;
    if ((fields[7] = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, qname, length)) != NULL &&
        (fields[9] = address_texts(plain)) != NULL &&
        (fields[11] = PyLong_FromUnsignedLong(plain->ttl)) != NULL)
        made = PyObject_Vectorcall(folded_type, fields, 13, NULL);
    Py_XDECREF(fields[7]);
    Py_XDECREF(fields[9]);
    Py_XDECREF(fields[11]);
    return made;
}

/* DnsFolder._add_response of a usual frame's response, step by step (after
 * its fold.seen, which the caller counts): 0, or -1 on a Python error. */
static int fold_response(Fold *fold, const unsigned char *frame, const Plain *plain, double ts)
{
    const unsigned char *dns = frame + ETHER_IPV4_UDP;
    PyObject *when = PyFloat_FromDouble(ts);
    if (when == NULL)
        return -1;
    PyObject *client = NULL, *server = NULL, *sighting = NULL, *key = NULL, *response = NULL;
    PyObject *before = NULL;
    int result = -1;
    if (ts > fold->turn_at && fold_call(fold, name_turn, when) < 0)
        goto done;
    if ((client = ipv4_text(frame + 30)) == NULL || (server = ipv4_text(frame + 26)) == NULL)
        goto done;
    Py_UCS1 qname[MAX_NAME_WIRE];
    Py_ssize_t qname_length = name_text(dns, plain->zero, qname);
    Py_hash_t h_client = PyObject_Hash(client), h_server = PyObject_Hash(server);
    Py_hash_t h_udp = PyObject_Hash(text_udp), h_qtype = PyObject_Hash(qtype_text(plain));
    Py_hash_t h_qname = _Py_HashBytes(qname, qname_length);
    if (h_client == -1 || h_server == -1 || h_udp == -1 || h_qtype == -1)
        goto done;
    Py_hash_t msg_id = plain->msg_id, client_port = u16_at(frame + 36);
    /* (dst_ip, dst_port, msg_id, transport, qname, qtype) */
    Py_hash_t of_sighting[6] = {h_client, client_port, msg_id, h_udp, h_qname, h_qtype};
    if ((sighting = PyLong_FromSsize_t(tuple_hash(of_sighting, 6))) == NULL)
        goto done;
    int again = put_recent(fold->seen_new, fold->seen_old, sighting, Py_True, NULL);
    if (again != 0) {
        fold->duplicates += again > 0;
        result = again > 0 ? 0 : -1;
        goto done;
    }
    if (PyDict_SetItem(fold->servers, server, when) < 0)
        goto done;
    Py_hash_t of_answers[MAX_ANSWERS];
    for (int i = 0; i < plain->count; i++)
        of_answers[i] = _Py_HashBytes(plain->texts[i], (Py_ssize_t)strlen(plain->texts[i]));
    /* (dst_ip, src_ip, transport, qname, qtype, answers, cnames) */
    Py_hash_t of_key[7] = {h_client, h_server, h_udp, h_qname, h_qtype,
                           tuple_hash(of_answers, plain->count), tuple_hash(NULL, 0)};
    /* (src_ip, src_port, dst_port, msg_id, transport, qname, qtype) */
    Py_hash_t of_response[7] = {h_server, DNS_PORT, client_port, msg_id, h_udp, h_qname, h_qtype};
    if ((key = PyLong_FromSsize_t(tuple_hash(of_key, 7))) == NULL ||
        (response = PyLong_FromSsize_t(tuple_hash(of_response, 7))) == NULL ||
        put_recent(fold->dest_new, fold->dest_old, response, key, &before) < 0)
        goto done;
    if (before != NULL) {
        int same = PyObject_RichCompareBool(before, key, Py_EQ);
        if (same < 0 || (same == 0 && fold_call(fold, name_retract, before) < 0))
            goto done;
    }
    PyObject *entry = PyDict_GetItemWithError(fold->window, key); /* borrowed */
    if (entry == NULL) {
        if (PyErr_Occurred())
            goto done;
        PyObject *made = new_entry(fold, qname, qname_length, plain, client, server, when);
        if (made == NULL)
            goto done;
        result = PyDict_SetItem(fold->window, key, made);
        Py_DECREF(made);
        goto done;
    }
    fold->folded++;
    Py_INCREF(entry);
    result = fold_again(entry, plain, when, ts);
    Py_DECREF(entry);
done:
    Py_DECREF(when);
    Py_XDECREF(client);
    Py_XDECREF(server);
    Py_XDECREF(sighting);
    Py_XDECREF(key);
    Py_XDECREF(response);
    Py_XDECREF(before);
    return result;
}

/* fold_block's taker: the usual frame folded here, any other to other(frame, ts)
 * (after which the folder's state is read again). */
static int fold_frame(void *taker, PyObject *ring, const unsigned char *base, Py_ssize_t start,
                      Py_ssize_t end, double ts)
{
    Fold *fold = taker;
    const unsigned char *frame = base + start;
    Py_ssize_t length = usual_payload(frame, end - start);
    if (length >= 0) {
        Plain plain;
        int usual = read_plain(frame + ETHER_IPV4_UDP, length, &plain);
        if (usual < 0)
            return -1;
        if (usual > 0)
            return fold_response(fold, frame, &plain, ts) < 0 ? -1 : 1;
    }
    if (hand_other(fold->other, ring, start, end, ts) < 0)
        return -1;
    return fold_take_state(fold);
}

/* fold_block(ring, start, size, folder, other) -> (frames, sound, usual,
 * duplicates, folded): read_block's walk, each usual frame's response taken as
 * folder._add_response takes it, in C; every other frame to other(frame, ts). */
PyObject *fold_block(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "fold_block takes ring, start, size, folder, other");
        return NULL;
    }
    if (!frame_types_given("fold_block"))
        return NULL;
    if (folded_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "fold_block: set_fold_type was not called");
        return NULL;
    }
    Fold fold = {.folder = args[3], .other = args[4]};
    Py_ssize_t taken = 0, usual = 0;
    int sound = 0;
    int failed = fold_take_state(&fold) < 0 ||
                 walk_block(args[0], args[1], args[2], fold_frame, &fold, &taken, &sound,
                            &usual) < 0;
    fold_let_go(&fold);
    if (failed)
        return NULL;
    return Py_BuildValue("(nOnnn)", taken, sound ? Py_True : Py_False, usual, fold.duplicates,
                         fold.folded);
}

PyObject *set_fold_type(PyObject *module, PyObject *cls)
{
    (void)module;
    return keep_type(&folded_type, cls, "set_fold_type");
}

/* What fold_block names and shares, made once, at the module's import: -1 on an error. */
int fold_init(void)
{
    if (empty_tuple == NULL && (empty_tuple = PyTuple_New(0)) == NULL)
        return -1;
    if (one == NULL && (one = PyLong_FromLong(1)) == NULL)
        return -1;
    struct {
        PyObject **name;
        const char *text;
    } names[] = {
        {&name_seen, "_seen"},       {&name_destinations, "_destinations"},
        {&name_window, "_window"},   {&name_servers, "_servers"},
        {&name_turn_at, "_turn_at"}, {&name_head, "_head"},
        {&name_turn, "_turn"},
        {&name_retract, "_retract"}, {&name_new, "_new"},
        {&name_old, "_old"},         {&name_count, "count"},
        {&name_ttl, "ttl"},          {&name_ts, "ts"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (*names[i].name == NULL &&
            (*names[i].name = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    return 0;
}

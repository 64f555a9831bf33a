/*
 * streams._repeats: a raw batch's repeats found in its bytes, without decoding them.
 *
 * Why: steady traffic repeats itself. Capture publishes each call once per
 * one-second window, so a warm worker receives, window after window, the same
 * records again, different only in their time and count. Decoding each of them
 * into objects, looking its client and name up in the identity store and its
 * route in a dict cost a worker twice what a plain consumer spends on the same
 * messages (issue 18; docs/streams.md, "The hot path"). A record whose bytes,
 * but for its `ts` and `count` values, equal those of a record already
 * resolved to a plain route resolves to that route again: this table finds
 * such records in the message's bytes, and streams/repeats.py (which says what
 * may be learnt, and when it is forgotten) decides everything else.
 *
 * RepeatTable.scan(data, start, end, counted, seen, now, limit) reads the
 * records between data[start] and data[end] (the inside of a batch's
 * "records" array, as callmap's encoder writes it: objects separated by
 * commas, no blanks), each with a small tokenizer (keys and values skipped,
 * strings to their unescaped quote, nesting counted). When every record's key
 * is learnt, `lo <= ts < hi` holds for each, and there are at most `limit`,
 * it calls seen(slots, ts, port, source, now, count) for each record in
 * order (the combiner's seen_each; value is (slots, port, source)) and
 * returns (records, sightings). Otherwise it calls nothing and returns
 * (hits, misses):
 *   hits    a list with one item per record: (value, ts, count) for a known
 *           one, else None;
 *   misses  a list of (index, key, ts, count) for the others: key is None
 *           when the record cannot be keyed (a backslash, a repeated or
 *           missing `ts` or `count`, a value that is not a plain JSON number);
 *           ts and count are what this file read (None when it could not).
 * It returns None when the region is not a list of objects as the encoder
 * writes them: the caller decodes the message in full.
 * A record's key is its bytes with the values of its "ts" and (when `counted`:
 * the records have a count) "count" keys cut out. Two records with one key are
 * the same but for those values, which this file reads itself (strictly as
 * JSON numbers; `count` absent, or not `counted`, is 1).
 *
 * Why reading the bytes is safe: a key is learnt only from a record that
 * decoded in full and whose two values read here equal the decoded ones, and
 * has no backslash. A record this tokenizer reads wrongly (it only counts
 * nesting) has bytes no learnt record has, so it misses, and its message is
 * decoded in full. When every record is known, the message is a valid batch:
 * a head seen in a message that decoded (streams/repeats.py checks it), then
 * records that are learnt records with other numbers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NUMBER 40
#define MAX_COUNT_DIGITS 18

typedef struct {
    uint64_t hash;
    PyObject *key; /* bytes; NULL: empty; &tombstone: deleted */
    PyObject *value;
    double lo, hi;
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *entries;
    Py_ssize_t capacity; /* a power of two */
    Py_ssize_t used;     /* live entries */
    Py_ssize_t filled;   /* live entries and tombstones */
    char *buf;
    Py_ssize_t buflen;
} Table;

static PyObject tombstone_object;
#define TOMBSTONE (&tombstone_object)

static uint64_t hash_bytes(const unsigned char *p, Py_ssize_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, (size_t)n);
    h = (h ^ w) * 0x94D049BB133111EBULL;
    h ^= h >> 29;
    return h;
}

/* The entry of `key`, or the free place for it (key NULL there). */
static Entry *find(Table *t, const char *key, Py_ssize_t n, uint64_t hash)
{
    size_t mask = (size_t)t->capacity - 1;
    size_t i = (size_t)hash & mask;
    Entry *free_place = NULL;
    for (;;) {
        Entry *e = &t->entries[i];
        if (e->key == NULL)
            return free_place != NULL ? free_place : e;
        if (e->key == TOMBSTONE) {
            if (free_place == NULL)
                free_place = e;
        } else if (e->hash == hash && PyBytes_GET_SIZE(e->key) == n
                   && memcmp(PyBytes_AS_STRING(e->key), key, (size_t)n) == 0) {
            return e;
        }
        i = (i + 1) & mask;
    }
}

static int resize(Table *t, Py_ssize_t capacity)
{
    Entry *old = t->entries;
    Py_ssize_t old_capacity = t->capacity;
    Entry *entries = PyMem_Calloc((size_t)capacity, sizeof(Entry));
    if (entries == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->entries = entries;
    t->capacity = capacity;
    t->filled = t->used;
    for (Py_ssize_t i = 0; i < old_capacity; i++) {
        Entry *e = &old[i];
        if (e->key == NULL || e->key == TOMBSTONE)
            continue;
        size_t mask = (size_t)capacity - 1, j = (size_t)e->hash & mask;
        while (entries[j].key != NULL)
            j = (j + 1) & mask;
        entries[j] = *e;
    }
    PyMem_Free(old);
    return 0;
}

static void clear_entries(Table *t)
{
    for (Py_ssize_t i = 0; i < t->capacity; i++) {
        Entry *e = &t->entries[i];
        if (e->key != NULL && e->key != TOMBSTONE) {
            Py_DECREF(e->key);
            Py_DECREF(e->value);
        }
        e->key = NULL;
        e->value = NULL;
    }
    t->used = t->filled = 0;
}

/* A JSON number, strictly (RFC 8259), finite; 0 if it is not one. */
static int read_number(const char *p, Py_ssize_t n, double *out)
{
    char text[MAX_NUMBER + 1];
    Py_ssize_t i = 0;
    if (n <= 0 || n > MAX_NUMBER)
        return 0;
    if (p[i] == '-')
        i++;
    if (i < n && p[i] == '0')
        i++;
    else if (i < n && p[i] >= '1' && p[i] <= '9')
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    else
        return 0;
    if (i < n && p[i] == '.') {
        Py_ssize_t digits = ++i;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == digits)
            return 0;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        Py_ssize_t digits = i;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == digits)
            return 0;
    }
    if (i != n)
        return 0;
    memcpy(text, p, (size_t)n);
    text[n] = '\0';
    char *end;
    double value = strtod(text, &end);
    if (end != text + n || !isfinite(value))
        return 0;
    *out = value;
    return 1;
}

/* A non-negative JSON integer of at most MAX_COUNT_DIGITS digits; 0 if not one. */
static int read_count(const char *p, Py_ssize_t n, long long *out)
{
    if (n <= 0 || n > MAX_COUNT_DIGITS || (p[0] == '0' && n > 1))
        return 0;
    long long value = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        value = value * 10 + (p[i] - '0');
    }
    *out = value;
    return 1;
}

static int ensure_buf(Table *t, Py_ssize_t n)
{
    if (t->buflen >= n)
        return 0;
    char *buf = PyMem_Realloc(t->buf, (size_t)n);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->buf = buf;
    t->buflen = n;
    return 0;
}

/* The end of the JSON string whose opening quote is at p (just past its closing
 * quote), or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    const char *q = p + 1;
    for (;;) {
        q = memchr(q, '"', (size_t)(end - q));
        if (q == NULL)
            return NULL;
        const char *b = q;
        while (b > p + 1 && b[-1] == '\\')
            b--;
        if (((q - b) & 1) == 0)
            return q + 1;
        q++;
    }
}

/* Just past the JSON value at p, or NULL. Nesting is only counted: a record
 * this reads wrongly matches no learnt key, and misses. */
static const char *skip_value(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '[' || *p == '{') {
        int depth = 0;
        while (p < end) {
            char c = *p;
            if (c == '"') {
                p = skip_string(p, end);
                if (p == NULL)
                    return NULL;
                continue;
            }
            if (c == '[' || c == '{')
                depth++;
            else if ((c == ']' || c == '}') && --depth == 0)
                return p + 1;
            p++;
        }
        return NULL;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']')
        p++;
    return p;
}

typedef struct {
    PyObject *value; /* what a known record sights (owned: the table may change while
                        the combiner runs); NULL: a miss */
    PyObject *key;   /* a miss's key (owned), or NULL */
    double ts;
    long long count;
    int read;      /* ts and count were read */
} Found;

/* One record from rec (its `{`): what the table has for it, in `found`. Returns
 * where the record ends (just past its `}`), or NULL when it is not an object of
 * plain keys (or on an error, with an exception set). */
static const char *scan_record(Table *t, const char *rec, const char *end, int counted,
                               Found *found)
{
    const char *spans[2][2] = {{NULL, NULL}, {NULL, NULL}}; /* the values of ts, count */
    int keyable = 1, seen_ts = 0, seen_count = 0;
    const char *p = rec + 1;
    memset(found, 0, sizeof(*found));
    found->count = 1;
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            if (p >= end || *p != '"')
                return NULL;
            const char *name = p + 1, *name_end = skip_string(p, end);
            if (name_end == NULL || name_end >= end || *name_end != ':')
                return NULL;
            Py_ssize_t name_len = (name_end - 1) - name;
            const char *value = name_end + 1, *value_end = skip_value(value, end);
            if (value_end == NULL || value_end >= end)
                return NULL;
            if (name_len == 2 && memcmp(name, "ts", 2) == 0) {
                keyable &= !seen_ts++;
                spans[0][0] = value;
                spans[0][1] = value_end;
            } else if (counted && name_len == 5 && memcmp(name, "count", 5) == 0) {
                keyable &= !seen_count++;
                spans[1][0] = value;
                spans[1][1] = value_end;
            }
            p = value_end;
            if (*p == '}') {
                p++;
                break;
            }
            if (*p != ',')
                return NULL;
            p++;
        }
    }
    Py_ssize_t n = p - rec;
    if (!keyable || !seen_ts || memchr(rec, '\\', (size_t)n) != NULL)
        return p;
    if (!read_number(spans[0][0], spans[0][1] - spans[0][0], &found->ts))
        return p;
    if (seen_count && !read_count(spans[1][0], spans[1][1] - spans[1][0], &found->count))
        return p;
    found->read = 1;
    /* the key: the record without its values of ts (and count), in order */
    int cuts = seen_count ? 2 : 1;
    if (cuts == 2 && spans[1][0] < spans[0][0]) {
        const char *first[2] = {spans[1][0], spans[1][1]};
        spans[1][0] = spans[0][0];
        spans[1][1] = spans[0][1];
        spans[0][0] = first[0];
        spans[0][1] = first[1];
    }
    if (ensure_buf(t, n) < 0)
        return NULL;
    Py_ssize_t at = 0;
    const char *from = rec;
    for (int k = 0; k < cuts; k++) {
        memcpy(t->buf + at, from, (size_t)(spans[k][0] - from));
        at += spans[k][0] - from;
        from = spans[k][1];
    }
    memcpy(t->buf + at, from, (size_t)(p - from));
    at += p - from;
    uint64_t hash = hash_bytes((const unsigned char *)t->buf, at);
    Entry *e = find(t, t->buf, at, hash);
    if (e->key != NULL && e->key != TOMBSTONE && e->lo <= found->ts && found->ts < e->hi) {
        found->value = Py_NewRef(e->value);
        return p;
    }
    found->key = PyBytes_FromStringAndSize(t->buf, at);
    return found->key != NULL ? p : NULL;
}

static PyObject *hit_tuple(const Found *f)
{
    PyObject *ts = PyFloat_FromDouble(f->ts), *count = PyLong_FromLongLong(f->count);
    PyObject *hit = NULL;
    if (ts != NULL && count != NULL)
        hit = PyTuple_Pack(3, f->value, ts, count);
    Py_XDECREF(ts);
    Py_XDECREF(count);
    return hit;
}

static PyObject *miss_tuple(Py_ssize_t index, Found *f)
{
    if (!f->read || f->key == NULL)
        return Py_BuildValue("(nOOO)", index, Py_None, Py_None, Py_None);
    PyObject *miss = Py_BuildValue("(nNdL)", index, f->key, f->ts, f->count);
    f->key = NULL; /* stolen by N, even when building failed */
    return miss;
}

/* Every record known: sight each through `seen`; the sightings made, or -1. */
static long long apply(const Found *found, Py_ssize_t records, PyObject *seen, PyObject *now)
{
    long long sightings = 0;
    for (Py_ssize_t i = 0; i < records; i++) {
        PyObject *value = found[i].value; /* (slots, port, source) */
        PyObject *ts = PyFloat_FromDouble(found[i].ts);
        PyObject *count = PyLong_FromLongLong(found[i].count);
        if (ts == NULL || count == NULL) {
            Py_XDECREF(ts);
            Py_XDECREF(count);
            return -1;
        }
        PyObject *args[6] = {PyTuple_GET_ITEM(value, 0), ts, PyTuple_GET_ITEM(value, 1),
                             PyTuple_GET_ITEM(value, 2), now, count};
        PyObject *made = PyObject_Vectorcall(seen, args, 6, NULL);
        Py_DECREF(ts);
        Py_DECREF(count);
        if (made == NULL)
            return -1;
        long long n = PyLong_AsLongLong(made);
        Py_DECREF(made);
        if (n == -1 && PyErr_Occurred())
            return -1;
        sightings += n;
    }
    return sightings;
}

/* The hits and misses of records that are not all known, as Python lists. */
static PyObject *found_lists(Found *found, Py_ssize_t records)
{
    PyObject *hits = PyList_New(records), *misses = PyList_New(0), *result = NULL;
    if (hits == NULL || misses == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < records; i++) {
        PyObject *item;
        if (found[i].value != NULL) {
            item = hit_tuple(&found[i]);
        } else {
            PyObject *miss = miss_tuple(i, &found[i]);
            int failed = miss == NULL || PyList_Append(misses, miss) < 0;
            Py_XDECREF(miss);
            item = failed ? NULL : Py_NewRef(Py_None);
        }
        if (item == NULL)
            goto done;
        PyList_SET_ITEM(hits, i, item);
    }
    result = PyTuple_Pack(2, hits, misses);
done:
    Py_XDECREF(hits);
    Py_XDECREF(misses);
    return result;
}

static PyObject *table_scan(Table *t, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, end, limit;
    int counted;
    PyObject *seen, *now;
    if (!PyArg_ParseTuple(args, "y*nnpOOn", &view, &start, &end, &counted, &seen, &now, &limit))
        return NULL;
    PyObject *result = NULL;
    Found *found = NULL;
    Py_ssize_t records = 0, capacity = 0, misses = 0;
    const char *data = view.buf;
    if (start < 0 || end > view.len || start > end) {
        PyErr_SetString(PyExc_ValueError, "the region is outside the data");
        goto done;
    }
    const char *p = data + start, *stop = data + end;
    while (p < stop) {
        if (*p != '{')
            goto refuse;
        if (records == capacity) {
            capacity = capacity ? capacity * 2 : 256;
            Found *more = PyMem_Realloc(found, (size_t)capacity * sizeof(Found));
            if (more == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            found = more;
        }
        Found *f = &found[records];
        const char *next = scan_record(t, p, stop, counted, f);
        if (next == NULL) {
            Py_CLEAR(f->key);
            Py_CLEAR(f->value);
            if (PyErr_Occurred())
                goto done;
            goto refuse;
        }
        records++;
        misses += f->value == NULL;
        if (next < stop && (*next != ',' || next + 1 >= stop))
            goto refuse;
        p = next < stop ? next + 1 : next;
    }
    if (misses == 0 && records <= limit) {
        long long sightings = apply(found, records, seen, now);
        if (sightings >= 0)
            result = Py_BuildValue("(nL)", records, sightings);
    } else {
        result = found_lists(found, records);
    }
    goto done;
refuse:
    result = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < records; i++) {
        Py_XDECREF(found[i].key);
        Py_XDECREF(found[i].value);
    }
    PyMem_Free(found);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *table_learn(Table *t, PyObject *args)
{
    PyObject *key, *value;
    double lo, hi;
    if (!PyArg_ParseTuple(args, "SOdd", &key, &value, &lo, &hi))
        return NULL;
    if ((t->filled + 1) * 3 >= t->capacity * 2
        && resize(t, t->used * 3 >= t->capacity ? t->capacity * 2 : t->capacity) < 0)
        return NULL;
    Py_ssize_t n = PyBytes_GET_SIZE(key);
    uint64_t hash = hash_bytes((const unsigned char *)PyBytes_AS_STRING(key), n);
    Entry *e = find(t, PyBytes_AS_STRING(key), n, hash);
    if (e->key != NULL && e->key != TOMBSTONE) {
        Py_SETREF(e->value, Py_NewRef(value));
    } else {
        if (e->key == NULL)
            t->filled++;
        t->used++;
        e->key = Py_NewRef(key);
        e->value = Py_NewRef(value);
        e->hash = hash;
    }
    e->lo = lo;
    e->hi = hi;
    Py_RETURN_NONE;
}

static PyObject *table_drop(Table *t, PyObject *key)
{
    if (!PyBytes_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "a key is bytes");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(key);
    uint64_t hash = hash_bytes((const unsigned char *)PyBytes_AS_STRING(key), n);
    Entry *e = find(t, PyBytes_AS_STRING(key), n, hash);
    if (e->key != NULL && e->key != TOMBSTONE) {
        Py_DECREF(e->key);
        Py_DECREF(e->value);
        e->key = TOMBSTONE;
        e->value = NULL;
        t->used--;
    }
    Py_RETURN_NONE;
}

static PyObject *table_clear(Table *t, PyObject *Py_UNUSED(ignored))
{
    clear_entries(t);
    Py_RETURN_NONE;
}

static Py_ssize_t table_len(Table *t) { return t->used; }

static PyObject *table_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (!_PyArg_NoPositional("RepeatTable", args) || !_PyArg_NoKeywords("RepeatTable", kwds))
        return NULL;
    Table *t = (Table *)type->tp_alloc(type, 0);
    if (t == NULL)
        return NULL;
    t->capacity = 64;
    t->entries = PyMem_Calloc((size_t)t->capacity, sizeof(Entry));
    if (t->entries == NULL) {
        Py_DECREF(t);
        return PyErr_NoMemory();
    }
    return (PyObject *)t;
}

static int table_traverse(Table *t, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < t->capacity; i++) {
        Entry *e = &t->entries[i];
        if (e->key != NULL && e->key != TOMBSTONE)
            Py_VISIT(e->value);
    }
    return 0;
}

static int table_clear_refs(Table *t)
{
    if (t->entries != NULL)
        clear_entries(t);
    return 0;
}

static void table_dealloc(Table *t)
{
    PyObject_GC_UnTrack(t);
    table_clear_refs(t);
    PyMem_Free(t->entries);
    PyMem_Free(t->buf);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyMethodDef table_methods[] = {
    {"scan", (PyCFunction)table_scan, METH_VARARGS,
     "scan(data, start, end, counted, seen, now, limit): see the module."},
    {"learn", (PyCFunction)table_learn, METH_VARARGS,
     "learn(key, value, lo, hi): records of `key` at lo <= ts < hi hit with `value`."},
    {"drop", (PyCFunction)table_drop, METH_O, "drop(key): forget `key`."},
    {"clear", (PyCFunction)table_clear, METH_NOARGS, "Forget every key."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods table_as_sequence = {.sq_length = (lenfunc)table_len};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streams._repeats.RepeatTable",
    .tp_doc = "Learnt record keys and what their records resolve to (see the module).",
    .tp_basicsize = sizeof(Table),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = table_new,
    .tp_dealloc = (destructor)table_dealloc,
    .tp_traverse = (traverseproc)table_traverse,
    .tp_clear = (inquiry)table_clear_refs,
    .tp_methods = table_methods,
    .tp_as_sequence = &table_as_sequence,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "streams._repeats",
    .m_doc = "A raw batch's repeats found in its bytes (see streams/repeats.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__repeats(void)
{
    if (PyType_Ready(&TableType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "RepeatTable", (PyObject *)&TableType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

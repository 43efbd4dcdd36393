/* The per-record loop of streams.kafka_fetch.decode_records in C (optional: anomon runs without it).
 *
 * decode_records(buf, pos, n, base_offset, first_ts, fixed_ts, topic, partition, leader_epoch, cls)
 * reads the n records of a Kafka v2 record batch that start at buf[pos] and end exactly at len(buf),
 * and returns (list of cls instances, sum of the record lengths), the tuples the Python loop builds:
 * cls is kafka-python's ConsumerRecord (a namedtuple of 13 fields). It returns None, and builds
 * nothing, for anything it does not read exactly as the Python loop does: a malformed or truncated
 * record, a varint of more than 9 bytes, a header key that is not UTF-8, an offset or timestamp
 * beyond 64 bits. The caller then runs the Python loop, which raises kafka-python's errors.
 * Every read is bounds-checked against len(buf).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* A zigzag varint at buf[*pos]: 0 and the value (position moved on), or -1 (truncated, or more than
 * 9 bytes: left to the Python loop, whose integers have no width). */
static inline int
read_varint(const unsigned char *buf, Py_ssize_t len, Py_ssize_t *pos, int64_t *out)
{
    Py_ssize_t p = *pos;
    uint64_t v = 0;
    int shift = 0;
    for (;;) {
        if (p >= len || shift > 56)
            return -1;
        unsigned char b = buf[p++];
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            break;
        shift += 7;
    }
    *pos = p;
    *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    return 0;
}

/* bytes of length n at buf[*pos] (n >= 0), or None for a negative length; NULL when truncated
 * (no exception set) or out of memory (exception set). */
static inline PyObject *
read_blob(const unsigned char *buf, Py_ssize_t len, Py_ssize_t *pos, int64_t n)
{
    if (n < 0)
        Py_RETURN_NONE;
    if (n > len - *pos)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize((const char *)buf + *pos, (Py_ssize_t)n);
    *pos += (Py_ssize_t)n;
    return out;
}

/* The headers of a record: a new list of (str, bytes | None), and their size (key bytes + value
 * bytes). NULL with no exception set: not read exactly (the Python loop decides); with one: out of
 * memory. */
static PyObject *
read_headers(const unsigned char *buf, Py_ssize_t len, Py_ssize_t *pos, int64_t count, int64_t *size)
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    *size = 0;
    for (int64_t i = 0; i < count; i++) {
        int64_t kl, vl;
        if (read_varint(buf, len, pos, &kl) < 0 || kl < 0 || kl > len - *pos)
            goto fail;
        PyObject *k = PyUnicode_DecodeUTF8((const char *)buf + *pos, (Py_ssize_t)kl, "strict");
        if (k == NULL) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                PyErr_Clear();  /* (the Python loop raises it) */
            goto fail;
        }
        *pos += (Py_ssize_t)kl;
        PyObject *v = NULL;
        if (read_varint(buf, len, pos, &vl) < 0 || (v = read_blob(buf, len, pos, vl)) == NULL) {
            Py_DECREF(k);
            goto fail;
        }
        PyObject *pair = PyTuple_Pack(2, k, v);
        Py_DECREF(k);
        Py_DECREF(v);
        if (pair == NULL || PyList_Append(out, pair) < 0) {
            Py_XDECREF(pair);
            goto fail;
        }
        Py_DECREF(pair);
        *size += kl + (vl >= 0 ? vl : 0);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyObject *
decode_records(PyObject *self, PyObject *args)
{
    PyObject *data, *fixed_ts, *topic, *partition, *leader_epoch;
    PyTypeObject *cls;
    Py_ssize_t pos, n;
    long long base_offset, first_ts;
    if (!PyArg_ParseTuple(args, "SnnLLOOOOO!:decode_records", &data, &pos, &n, &base_offset, &first_ts, &fixed_ts,
                          &topic, &partition, &leader_epoch, &PyType_Type, &cls))
        return NULL;
    if (!PyType_IsSubtype(cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "decode_records: cls must be a tuple subclass (ConsumerRecord)");
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t len = PyBytes_GET_SIZE(data);
    if (pos < 0 || pos > len || n < 0)
        Py_RETURN_NONE;
    int fixed = fixed_ts != Py_None;
    PyObject *ts_type = PyLong_FromLong(fixed ? 1 : 0);
    PyObject *out = PyList_New(0);
    if (ts_type == NULL || out == NULL)
        goto fail;
    long long size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t length, attrs, tsd, od, kl, vl, hc, hsize = -1;
        if (read_varint(buf, len, &pos, &length) < 0)
            goto unread;
        Py_ssize_t body = pos;
        size += length;
        if (read_varint(buf, len, &pos, &attrs) < 0 || read_varint(buf, len, &pos, &tsd) < 0 ||
            read_varint(buf, len, &pos, &od) < 0 || read_varint(buf, len, &pos, &kl) < 0)
            goto unread;
        long long offset, ts = 0;
        if (__builtin_add_overflow(base_offset, od, &offset) ||
            (!fixed && __builtin_add_overflow(first_ts, tsd, &ts)))
            goto unread;
        PyObject *key = read_blob(buf, len, &pos, kl);
        if (key == NULL)
            goto unread_or_fail;
        PyObject *value = NULL, *headers = NULL;
        if (read_varint(buf, len, &pos, &vl) < 0 || (value = read_blob(buf, len, &pos, vl)) == NULL ||
            read_varint(buf, len, &pos, &hc) < 0 || hc < 0) {
            Py_DECREF(key);
            Py_XDECREF(value);
            goto unread_or_fail;
        }
        if (hc == 0) {
            headers = PyList_New(0);
        } else {
            headers = read_headers(buf, len, &pos, hc, &hsize);
            if (headers != NULL && PyList_GET_SIZE(headers) == 0)
                hsize = -1;
        }
        if (headers == NULL || pos - body != length) {
            Py_DECREF(key);
            Py_DECREF(value);
            Py_XDECREF(headers);
            goto unread_or_fail;
        }
        PyObject *rec = cls->tp_alloc(cls, 13);
        PyObject *items[13] = {
            topic, partition, leader_epoch, PyLong_FromLongLong(offset),
            fixed ? fixed_ts : PyLong_FromLongLong(ts), ts_type, key, value, headers, Py_None,
            PyLong_FromLongLong(key == Py_None ? -1 : kl), PyLong_FromLongLong(value == Py_None ? -1 : vl),
            PyLong_FromLongLong(hsize),
        };
        /* borrowed ones get a reference of their own; the new ones (offset, ts, sizes, key, value,
         * headers) are handed over */
        Py_INCREF(topic);
        Py_INCREF(partition);
        Py_INCREF(leader_epoch);
        if (fixed)
            Py_INCREF(fixed_ts);
        Py_INCREF(ts_type);
        Py_INCREF(Py_None);
        int bad = rec == NULL;
        for (int j = 0; j < 13; j++) {
            if (items[j] == NULL)
                bad = 1;
        }
        if (bad) {
            for (int j = 0; j < 13; j++)
                Py_XDECREF(items[j]);
            Py_XDECREF(rec);
            goto fail;
        }
        for (int j = 0; j < 13; j++)
            PyTuple_SET_ITEM(rec, j, items[j]);
        if (PyList_Append(out, rec) < 0) {
            Py_DECREF(rec);
            goto fail;
        }
        Py_DECREF(rec);
    }
    if (pos != len)
        goto unread;
    Py_DECREF(ts_type);
    return Py_BuildValue("(NL)", out, size);
unread_or_fail:
    if (PyErr_Occurred())
        goto fail;
unread:
    Py_DECREF(ts_type);
    Py_DECREF(out);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(ts_type);
    Py_XDECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode_records", decode_records, METH_VARARGS,
     "decode_records(buf, pos, n, base_offset, first_ts, fixed_ts, topic, partition, leader_epoch, cls)\n"
     "--\n\n"
     "The records of a Kafka v2 batch as (list of cls, size); None when they are not read exactly as\n"
     "streams.kafka_fetch's Python loop reads them (that loop then raises kafka-python's error)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fetch_speedups", "C loop of streams.kafka_fetch.decode_records.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fetch_speedups(void)
{
    return PyModule_Create(&module);
}

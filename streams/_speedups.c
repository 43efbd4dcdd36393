/* C loops of anomon's two hottest per-record paths (optional: anomon runs without them, in Python).
 *
 * decode_records: the record loop of streams.kafka_fetch.decode_records.
 * add_plain: the fast path of streams.windowing.Windower.add_values.
 */

/* ---- decode_records
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
#include <string.h>

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


/* ---- add_plain
 *
 * add_plain(series_map, items, i, now, T, S, C, nb, gap_us, last_off, out, starts, ends, offs, sids, idx)
 * goes through items[i:] ((offset, series, ts_us, row) each) while each item takes the windower's
 * fast path: its series is known (series_map[series], a _Series with an unpacked bytearray buffer and
 * no resume point) and its row has C numbers. For each such item it does what the Python loop does:
 * the partition's next offset, the series' last-seen time (re-inserting it at the end of series_map),
 * the duplicate / late check, the gap restart, and the append to the series' ring (_append_raw); a
 * completed window's float32 bytes go to the bytearray `out`, its start, end, offset, series and item
 * index to the five lists. It stops at the first item it does not handle and returns
 * (index, last_off, code): code 0 all done, 1 items[index] needs the Python path, 2 items[index] is
 * a duplicate, 3 items[index] is late (nothing of a stopping item is changed, except the next offset
 * for a duplicate or late one, as in Python).
 */

static PyObject *s_buf, *s_n, *s_w_next, *s_last_ts, *s_seen, *s_resume_ts;

enum { DONE = 0, SLOW = 1, DUPLICATE = 2, LATE = 3 };

/* an int attribute of a _Series as int64; -1 with an exception set on failure */
static int
get_i64(PyObject *obj, PyObject *name, int64_t *out)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "window state beyond 64 bits");
        return -1;
    }
    *out = x;
    return 0;
}

static int
set_i64(PyObject *obj, PyObject *name, int64_t value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    int r = PyObject_SetAttr(obj, name, v);
    Py_DECREF(v);
    return r;
}

static inline int64_t
load_i64(const char *p)
{
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void
store_i64(char *p, int64_t v)
{
    memcpy(p, &v, 8);
}

/* append obj to list; -1 on failure. Steals the reference of obj. */
static inline int
append_new(PyObject *list, PyObject *obj)
{
    if (obj == NULL)
        return -1;
    int r = PyList_Append(list, obj);
    Py_DECREF(obj);
    return r;
}

static PyObject *
add_plain(PyObject *self, PyObject *args)
{
    PyObject *series_map, *items, *now, *out, *starts, *ends, *offs, *sids, *idx;
    Py_ssize_t i, T, S, C, nb;
    long long gap_us, last_off;
    if (!PyArg_ParseTuple(args, "O!O!nOnnnnLLO!O!O!O!O!O!:add_plain", &PyDict_Type, &series_map, &PyList_Type, &items,
                          &i, &now, &T, &S, &C, &nb, &gap_us, &last_off, &PyByteArray_Type, &out, &PyList_Type,
                          &starts, &PyList_Type, &ends, &PyList_Type, &offs, &PyList_Type, &sids, &PyList_Type, &idx))
        return NULL;
    if (T < 1 || S < 1 || C < 1 || nb < 1 || i < 0) {
        PyErr_SetString(PyExc_ValueError, "add_plain: bad window spec");
        return NULL;
    }
    const Py_ssize_t rb = 4 * C, ring_off = 16 * nb, size = 16 * nb + 4 * T * C;
    float row_f[64];
    if (C > 64)
        return Py_BuildValue("(nLi)", i, last_off, SLOW);
    int code = DONE;
    Py_ssize_t n_items = PyList_GET_SIZE(items);
    for (; i < n_items; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 4) {
            code = SLOW;
            break;
        }
        PyObject *off_o = PyTuple_GET_ITEM(item, 0), *sid = PyTuple_GET_ITEM(item, 1);
        PyObject *t_o = PyTuple_GET_ITEM(item, 2), *row = PyTuple_GET_ITEM(item, 3);
        PyObject *st = PyDict_GetItemWithError(series_map, sid); /* borrowed */
        if (st == NULL) {
            if (PyErr_Occurred())
                return NULL;
            code = SLOW;
            break;
        }
        if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != C || !PyLong_CheckExact(off_o) ||
            !PyLong_CheckExact(t_o)) {
            code = SLOW;
            break;
        }
        int ovf1 = 0, ovf2 = 0;
        long long off = PyLong_AsLongLongAndOverflow(off_o, &ovf1);
        long long t = PyLong_AsLongLongAndOverflow(t_o, &ovf2);
        if (ovf1 || ovf2 || off > INT64_MAX - 1) {
            code = SLOW;
            break;
        }
        for (Py_ssize_t c = 0; c < C; c++) {
            PyObject *x = PyTuple_GET_ITEM(row, c);
            double d = PyFloat_CheckExact(x) ? PyFloat_AS_DOUBLE(x) : -1.0;
            if (!PyFloat_CheckExact(x) || !(d >= -3.4028234663852886e38 && d <= 3.4028234663852886e38)) {
                code = SLOW; /* (an int, NaN, or beyond float32: the Python path, as struct packs it) */
                break;
            }
            row_f[c] = (float)d;
        }
        if (code != DONE)
            break;
        Py_INCREF(st);
        PyObject *buf = PyObject_GetAttr(st, s_buf);
        int64_t resume_ts;
        if (buf == NULL || get_i64(st, s_resume_ts, &resume_ts) < 0) {
            Py_XDECREF(buf);
            Py_DECREF(st);
            return NULL;
        }
        if (!PyByteArray_CheckExact(buf) || PyByteArray_GET_SIZE(buf) != size || resume_ts >= 0) {
            Py_DECREF(buf);
            Py_DECREF(st);
            code = SLOW;
            break;
        }
        if (off >= last_off)
            last_off = off + 1;
        /* last seen: re-insert at the end of series_map (dicts keep insertion order: the front is the idlest) */
        PyObject *seen = PyObject_GetAttr(st, s_seen);
        if (seen == NULL)
            goto error;
        int same = PyObject_RichCompareBool(seen, now, Py_EQ);
        Py_DECREF(seen);
        if (same < 0)
            goto error;
        if (!same) {
            if (PyObject_SetAttr(st, s_seen, now) < 0 || PyDict_DelItem(series_map, sid) < 0 ||
                PyDict_SetItem(series_map, sid, st) < 0)
                goto error;
        }
        int64_t last, n0, w;
        if (get_i64(st, s_last_ts, &last) < 0 || get_i64(st, s_n, &n0) < 0 || get_i64(st, s_w_next, &w) < 0)
            goto error;
        if (t <= last) { /* Windower._admit_one */
            code = t == last ? DUPLICATE : LATE;
            Py_DECREF(buf);
            Py_DECREF(st);
            break;
        }
        if (gap_us >= 0 && n0 && t - last > gap_us)
            n0 = w = 0;
        /* Windower._append_raw */
        char *b = PyByteArray_AS_STRING(buf);
        memcpy(b + ring_off + rb * (n0 % T), row_f, (size_t)rb);
        if (n0 >= w * S) { /* this reading is needed by the next window: its block's start and min offset */
            Py_ssize_t k = 16 * ((n0 / S) % nb);
            if (n0 % S == 0) {
                store_i64(b + k, t);
                store_i64(b + k + 8, off);
            } else if (off < load_i64(b + k + 8)) {
                store_i64(b + k + 8, off);
            }
        }
        int complete = n0 == w * S + T - 1;
        if (set_i64(st, s_n, n0 + 1) < 0 || set_i64(st, s_last_ts, t) < 0 ||
            set_i64(st, s_w_next, complete ? w + 1 : w) < 0)
            goto error;
        if (complete) { /* the ring from its oldest row on, then from its start */
            int64_t start = T == 1 ? t : load_i64(b + 16 * (w % nb));
            Py_ssize_t j = rb * ((n0 + 1) % T), at = PyByteArray_GET_SIZE(out);
            if (PyByteArray_Resize(out, at + rb * T) < 0)
                goto error;
            char *o = PyByteArray_AS_STRING(out) + at;
            memcpy(o, b + ring_off + j, (size_t)(rb * T - j));
            memcpy(o + (rb * T - j), b + ring_off, (size_t)j);
            Py_INCREF(sid);
            if (append_new(starts, PyLong_FromLongLong(start)) < 0 || append_new(ends, PyLong_FromLongLong(t)) < 0 ||
                append_new(offs, PyLong_FromLongLong(off)) < 0 || append_new(sids, sid) < 0 ||
                append_new(idx, PyLong_FromSsize_t(i)) < 0)
                goto error;
        }
        Py_DECREF(buf);
        Py_DECREF(st);
        continue;
    error:
        Py_DECREF(buf);
        Py_DECREF(st);
        return NULL;
    }
    return Py_BuildValue("(nLi)", i, last_off, code);
}

static PyMethodDef methods[] = {
    {"decode_records", decode_records, METH_VARARGS,
     "decode_records(buf, pos, n, base_offset, first_ts, fixed_ts, topic, partition, leader_epoch, cls)\n"
     "--\n\n"
     "The records of a Kafka v2 batch as (list of cls, size); None when they are not read exactly as\n"
     "streams.kafka_fetch's Python loop reads them (that loop then raises kafka-python's error)."},
    {"add_plain", add_plain, METH_VARARGS,
     "add_plain(series_map, items, i, now, T, S, C, nb, gap_us, last_off, out, starts, ends, offs, sids, idx)\n"
     "--\n\n"
     "The fast path of Windower.add_values over items[i:], up to the first item it does not handle:\n"
     "(index, last_off, code), code 0 done, 1 Python path, 2 duplicate, 3 late."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "C loops of streams.kafka_fetch and streams.windowing.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    s_buf = PyUnicode_InternFromString("buf");
    s_n = PyUnicode_InternFromString("n");
    s_w_next = PyUnicode_InternFromString("w_next");
    s_last_ts = PyUnicode_InternFromString("last_ts");
    s_seen = PyUnicode_InternFromString("seen");
    s_resume_ts = PyUnicode_InternFromString("resume_ts");
    if (!s_buf || !s_n || !s_w_next || !s_last_ts || !s_seen || !s_resume_ts)
        return NULL;
    return PyModule_Create(&module);
}

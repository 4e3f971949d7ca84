/* Kafka record batches (message format v2) straight from fetched bytes into columns.
 *
 * A fetch response carries each partition's records as raw batches. Unpacking them one
 * Python object per record cost more than the whole detection engine, so for the input
 * topics this walks the batches here and hands back four lists: offsets, keys, values and
 * headers. It handles what a plain producer writes: uncompressed v2 batches, control
 * batches skipped. Anything else (compression, v0/v1 message sets) stops the walk at that
 * batch, and streams/kafka/fetch.py unpacks it with the Kafka client's own code.
 *
 * Layout of a v2 batch, offsets from its start (all big-endian):
 *   0 baseOffset i64 | 8 batchLength i32 | 12 leaderEpoch i32 | 16 magic i8 | 17 crc u32
 *   21 attributes i16 | 23 lastOffsetDelta i32 | 27 baseTimestamp i64 | 35 maxTimestamp i64
 *   43 producerId i64 | 51 producerEpoch i16 | 53 baseSequence i32 | 57 count i32 | 61 records
 * The CRC (CRC-32C) covers everything from the attributes to the end of the batch.
 *
 * What is read is checked at least as strictly as aiokafka's own reader checks it, so that a
 * garbled batch is refused (MALFORMED) instead of being read as other records or moving the
 * fetch position: offsets are non-negative and fit an int64 with the whole batch
 * (base + lastOffsetDelta + 1, computed unsigned after range checks, never overflowing);
 * every record's offset delta lies in [0, lastOffsetDelta] and rises strictly; each batch
 * after the first of a fetch starts at or after the previous one's end, and no batch ends at
 * or before the fetch position; a record's declared length is exactly what its fields use,
 * the declared count of records is exactly what the batch holds, and nothing is left over;
 * varints are at most 10 bytes and fit 64 bits; header keys are strict UTF-8.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define HEADER 61
enum { ST_END = 0, ST_DECLINED = 1, ST_BAD_CRC = 2, ST_MALFORMED = 3 };

static inline uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline int64_t be64(const unsigned char *p) {
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* ---- CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 ----------------------------- */
static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++)
            crc_table[t][n] = (crc_table[t - 1][n] >> 8) ^ crc_table[0][crc_table[t - 1][n] & 0xff];
}

/* Eight bytes per step: a byte-at-a-time table costs more than the rest of the parse. */
static uint32_t crc32c_table(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
              crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* SSE 4.2 has a CRC-32C instruction; checked at run time, so the module runs anywhere. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p,
                                                            size_t n) {
    uint64_t c = ~crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
static int have_hw = 0;
#endif

static uint32_t crc32c(const unsigned char *p, size_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (have_hw) return crc32c_hw(0, p, n);
#endif
    return crc32c_table(0, p, n);
}

/* ---- varints ------------------------------------------------------------------------- */
/* Zigzag-encoded, at most 10 bytes. Returns 0 when it runs past `end`, is too long, or
 * does not fit 64 bits (a 10th byte above 1). */
static inline int read_varint(const unsigned char **pp, const unsigned char *end, int64_t *out) {
    const unsigned char *p = *pp;
    uint64_t u = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (p >= end) return 0;
        unsigned char b = *p++;
        if (shift == 63 && b > 1) return 0;
        u |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)((u >> 1) ^ (0u - (u & 1)));
            *pp = p;
            return 1;
        }
    }
    return 0;
}

/* A length-prefixed field: NULL-able bytes (or strict UTF-8 str when `text`), advanced past.
 * *ok: 1 read, 0 malformed (a Python error from strict decoding is cleared), -1 error. */
static PyObject *read_field(const unsigned char **pp, const unsigned char *end, int text,
                            int *ok) {
    int64_t n;
    *ok = 0;
    if (!read_varint(pp, end, &n) || n < -1 || n > end - *pp) return NULL;
    *ok = 1;
    if (n < 0) Py_RETURN_NONE;
    const char *s = (const char *)*pp;
    *pp += n;
    PyObject *o = text ? PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, NULL)
                       : PyBytes_FromStringAndSize(s, (Py_ssize_t)n);
    if (!o) {
        if (text && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear(); /* not UTF-8: a garbled header key, refused like aiokafka does */
            *ok = 0;
        } else {
            *ok = -1;
        }
    }
    return o;
}

/* Walks one record's key, value and headers without making objects; 1 when they end
 * exactly at rend. Header keys are checked as UTF-8 here too. */
static int skip_fields(const unsigned char **pp, const unsigned char *rend) {
    int64_t n, nh;
    for (int f = 0; f < 2; f++) {
        if (!read_varint(pp, rend, &n) || n < -1 || n > rend - *pp) return 0;
        if (n > 0) *pp += n;
    }
    if (!read_varint(pp, rend, &nh) || nh < 0 || nh > rend - *pp) return 0;
    for (int64_t h = 0; h < nh; h++) {
        if (!read_varint(pp, rend, &n) || n < 0 || n > rend - *pp) return 0;
        PyObject *k = PyUnicode_DecodeUTF8((const char *)*pp, (Py_ssize_t)n, NULL);
        if (!k) {
            PyErr_Clear();
            return 0;
        }
        Py_DECREF(k);
        *pp += n;
        if (!read_varint(pp, rend, &n) || n < -1 || n > rend - *pp) return 0;
        if (n > 0) *pp += n;
    }
    return *pp == rend;
}

/* One batch's records into the lists. 1: done; 0: malformed; -1: Python error.
 * `base` is at least 0 and base + last_delta fits an int64 (checked by the caller). */
static int parse_records(const unsigned char *p, const unsigned char *end, int64_t base,
                         int32_t count, int32_t last_delta, int64_t min_offset,
                         PyObject *offsets, PyObject *keys, PyObject *values, PyObject *headers,
                         PyObject *no_headers) {
    int64_t prev_delta = -1;
    for (int32_t i = 0; i < count; i++) {
        int64_t len, ts_delta, off_delta, nh;
        if (!read_varint(&p, end, &len) || len < 1 || len > end - p) return 0;
        const unsigned char *rend = p + len;
        if (*p++ & 0x80) return 0; /* attributes: one byte, unused in v2 records */
        if (!read_varint(&p, rend, &ts_delta) || !read_varint(&p, rend, &off_delta)) return 0;
        /* Offsets rise within a batch and stay inside what its header declares. */
        if (off_delta <= prev_delta || off_delta > last_delta) return 0;
        prev_delta = off_delta;
        int64_t offset = (int64_t)((uint64_t)base + (uint64_t)off_delta);
        if (offset < min_offset) {
            /* Already consumed (the fetch began inside this batch): still checked whole,
             * so that a garbled record is refused wherever it is. */
            if (!skip_fields(&p, rend)) return 0;
            continue;
        }
        int ok;
        PyObject *key = read_field(&p, rend, 0, &ok);
        if (ok <= 0) return ok;
        PyObject *value = read_field(&p, rend, 0, &ok);
        if (ok <= 0) {
            Py_XDECREF(key);
            return ok;
        }
        PyObject *hs = NULL;
        if (!read_varint(&p, rend, &nh) || nh < 0 || nh > rend - p) {
            ok = 0;
        } else if (nh == 0) {
            hs = Py_NewRef(no_headers);
        } else {
            hs = PyTuple_New((Py_ssize_t)nh);
            for (int64_t h = 0; hs && h < nh; h++) {
                PyObject *hk = read_field(&p, rend, 1, &ok);
                if (ok <= 0 || hk == Py_None) {
                    if (ok > 0) ok = 0; /* a header always has a key */
                    Py_XDECREF(hk);
                    break;
                }
                PyObject *hv = read_field(&p, rend, 0, &ok);
                if (ok <= 0) {
                    Py_DECREF(hk);
                    break;
                }
                PyObject *pair = PyTuple_Pack(2, hk, hv);
                Py_DECREF(hk);
                Py_DECREF(hv);
                if (!pair) {
                    ok = -1;
                    break;
                }
                PyTuple_SET_ITEM(hs, h, pair);
            }
            if (!hs) ok = -1;
        }
        PyObject *off = ok > 0 ? PyLong_FromLongLong(offset) : NULL;
        if (ok > 0 && !off) ok = -1;
        if (ok > 0 && (PyList_Append(offsets, off) || PyList_Append(keys, key) ||
                       PyList_Append(values, value) || PyList_Append(headers, hs)))
            ok = -1;
        Py_XDECREF(off);
        Py_XDECREF(key);
        Py_XDECREF(value);
        Py_XDECREF(hs);
        if (ok <= 0) return ok;
        if (p != rend) return 0; /* the declared length must be exactly what was read */
    }
    return p == end; /* the declared count must use the whole batch */
}

/* The end of the batch at p (base + lastOffsetDelta + 1), or -1 when its header cannot be
 * right: a negative base offset, delta or count, or an end past INT64_MAX. */
static int64_t batch_end(const unsigned char *p) {
    int64_t base = be64(p);
    int32_t last_delta = (int32_t)be32(p + 23), count = (int32_t)be32(p + 57);
    if (base < 0 || last_delta < 0 || count < 0) return -1;
    if ((uint64_t)base > (uint64_t)INT64_MAX - (uint64_t)last_delta - 1u) return -1;
    return (int64_t)((uint64_t)base + (uint64_t)last_delta + 1u);
}

/* parse(buffer, min_offset, check_crcs, first) ->
 *   (offsets, keys, values, headers, next_offset, position, status)
 * Walks whole batches from the start of `buffer`, which begins a fetch's first batch when
 * `first` (that one may start before min_offset; any later one must start at or after the
 * end of the one before). `next_offset` follows the last batch walked (-1 if none);
 * `position` is where the walk stopped; `status` says why: the end or a partial batch
 * (END), a batch to unpack elsewhere (DECLINED), or a bad one. */
static PyObject *parse(PyObject *self, PyObject *args) {
    Py_buffer view;
    long long min_offset;
    int check_crcs, first;
    if (!PyArg_ParseTuple(args, "y*Lpp", &view, &min_offset, &check_crcs, &first)) return NULL;
    PyObject *offsets = PyList_New(0), *keys = PyList_New(0), *values = PyList_New(0);
    PyObject *headers = PyList_New(0), *no_headers = PyTuple_New(0);
    PyObject *result = NULL;
    const unsigned char *buf = view.buf, *end = buf + view.len;
    const unsigned char *p = buf;
    int64_t next_offset = -1, position = (int64_t)min_offset;
    int status = ST_END;
    if (!offsets || !keys || !values || !headers || !no_headers) goto done;
    while (end - p >= 12) {
        int32_t length = (int32_t)be32(p + 8);
        if (length >= 0 && length > end - p - 12) break; /* a partial batch ends a fetch */
        if (length < 14) { /* less than any message format's smallest record */
            status = ST_MALFORMED;
            break;
        }
        const unsigned char *bend = p + 12 + length;
        if (p[16] < 2) {
            status = ST_DECLINED; /* an older message set: its own, shorter layout */
            break;
        }
        if (p[16] != 2 || length < HEADER - 12) {
            status = ST_MALFORMED;
            break;
        }
        int attributes = (int)(((unsigned)p[21] << 8) | p[22]);
        if (attributes & 0x07) {
            status = ST_DECLINED; /* compressed */
            break;
        }
        if (check_crcs && crc32c(p + 21, (size_t)(bend - (p + 21))) != be32(p + 17)) {
            status = ST_BAD_CRC;
            break;
        }
        int64_t base = be64(p), stop = batch_end(p);
        /* Batches follow each other, and none ends where the fetch already is: a lying
         * header must not move the position back, nor hand out offsets twice. */
        if (stop < 0 || stop <= position || (!first && base < position)) {
            status = ST_MALFORMED;
            break;
        }
        if (!(attributes & 0x20)) { /* control batches carry markers, not records */
            Py_ssize_t had = PyList_GET_SIZE(offsets);
            int ok = parse_records(p + HEADER, bend, base, (int32_t)be32(p + 57),
                                   (int32_t)be32(p + 23), position, offsets, keys, values,
                                   headers, no_headers);
            if (ok < 0) goto done;
            if (ok == 0) {
                /* Nothing of a refused batch is handed over, not even its first records. */
                PyObject *lists[4] = {offsets, keys, values, headers};
                for (int k = 0; k < 4; k++)
                    if (PyList_SetSlice(lists[k], had, PY_SSIZE_T_MAX, NULL)) goto done;
                status = ST_MALFORMED;
                break;
            }
        }
        next_offset = position = stop;
        first = 0;
        p = bend;
    }
    result = Py_BuildValue("(OOOOLni)", offsets, keys, values, headers, (long long)next_offset,
                           (Py_ssize_t)(p - buf), status);
done:
    Py_XDECREF(offsets);
    Py_XDECREF(keys);
    Py_XDECREF(values);
    Py_XDECREF(headers);
    Py_XDECREF(no_headers);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *crc(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    uint32_t c = crc32c(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

static inline uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) v = v << 8 | p[k];
    return v;
}

static inline uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* unbundle(value, header) -> (source, offsets, events) or None: a bundle of forwarded
 * events (streams/kafka/bundles.py, whose `unpack` is the reference this must match). The
 * header is the source partition and each event's input offset as int64, then each
 * event's length as uint32, all little-endian; None unless it describes the value exactly
 * and names a source >= 0. Slicing the events here, not one Python slice each, was a tenth
 * of the Kafka consumer thread when most events were forwarded. */
static PyObject *unbundle(PyObject *self, PyObject *args) {
    PyObject *value, *header;
    if (!PyArg_ParseTuple(args, "OO!", &value, &PyBytes_Type, &header)) return NULL;
    if (!PyBytes_Check(value)) Py_RETURN_NONE;
    const unsigned char *h = (const unsigned char *)PyBytes_AS_STRING(header);
    const char *v = PyBytes_AS_STRING(value);
    Py_ssize_t hn = PyBytes_GET_SIZE(header), vn = PyBytes_GET_SIZE(value);
    if (hn < 8 || (hn - 8) % 12) Py_RETURN_NONE;
    Py_ssize_t n = (hn - 8) / 12;
    int64_t source = (int64_t)le64(h);
    const unsigned char *lens = h + 8 + 8 * n;
    uint64_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) total += le32(lens + 4 * i);
    if (n < 1 || source < 0 || total != (uint64_t)vn) Py_RETURN_NONE;
    PyObject *offsets = PyList_New(n), *events = PyList_New(n), *src = NULL;
    if (!offsets || !events) goto fail;
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len = (Py_ssize_t)le32(lens + 4 * i);
        PyObject *o = PyLong_FromLongLong((long long)(int64_t)le64(h + 8 + 8 * i));
        PyObject *e = PyBytes_FromStringAndSize(v + at, len);
        if (!o || !e) {
            Py_XDECREF(o);
            Py_XDECREF(e);
            goto fail;
        }
        PyList_SET_ITEM(offsets, i, o);
        PyList_SET_ITEM(events, i, e);
        at += len;
    }
    if (!(src = PyLong_FromLongLong((long long)source))) goto fail;
    return Py_BuildValue("(NNN)", src, offsets, events);
fail:
    Py_XDECREF(offsets);
    Py_XDECREF(events);
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_VARARGS,
     "parse(buffer, min_offset, check_crcs, first): walk v2 record batches into lists."},
    {"crc32c", crc, METH_VARARGS, "CRC-32C of a buffer."},
    {"unbundle", unbundle, METH_VARARGS,
     "unbundle(value, header): (source, offsets, events) of a bundle, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_records", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__records(void) {
    crc_init();
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    have_hw = __builtin_cpu_supports("sse4.2");
#endif
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddIntConstant(m, "END", ST_END) ||
        PyModule_AddIntConstant(m, "DECLINED", ST_DECLINED) ||
        PyModule_AddIntConstant(m, "BAD_CRC", ST_BAD_CRC) ||
        PyModule_AddIntConstant(m, "MALFORMED", ST_MALFORMED)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

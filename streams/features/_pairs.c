/* Distinct 64-bit keys with the index of each one's first occurrence and its count, in the
 * order of the sorted keys: what streams/features/groups.py `first_and_counts` gives.
 *
 * Every feature of a closing window asks it for its distinct (account, code) pairs, a few
 * thousand keys a call, many repeated. numpy answered with a sort of all the keys, about
 * 60 ns a key and a tenth of a replay's time. Here one pass over the keys fills an
 * open-addressing table (linear probing), and only the distinct keys are sorted (by their
 * top bits first), without the GIL. The same tables answer np.unique's return_inverse, and
 * np.isin for 64-bit codes (`member`).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t key;
    int64_t first;
    int64_t count;
    int64_t at; /* its place in first-occurrence order */
} Entry;

/* Tables of indices into an array of keys (-1: empty), a power of two at least twice the
 * keys they hold, probed linearly. */
static int table_bits(Py_ssize_t n) {
    int bits = 1;
    while (((Py_ssize_t)1 << bits) < 2 * n) bits++;
    return bits;
}

/* The slot holding key, or the empty slot where it would go. Keys are hashes mostly, but a
 * multiply spreads any run of similar ones. */
static inline uint64_t slot_of(const int32_t *table, const uint64_t *keys, int bits, uint64_t key) {
    uint64_t mask = ((uint64_t)1 << bits) - 1;
    uint64_t s = (key * 0x9E3779B97F4A7C15ull) >> (64 - bits);
    while (table[s] >= 0 && keys[table[s]] != key) s = (s + 1) & mask;
    return s;
}

static int32_t *new_table(int bits) {
    int32_t *t = malloc(((size_t)1 << bits) * sizeof(int32_t));
    if (t) memset(t, 0xff, ((size_t)1 << bits) * sizeof(int32_t));
    return t;
}

static int by_key(const void *a, const void *b) {
    uint64_t x = ((const Entry *)a)->key, y = ((const Entry *)b)->key;
    return (x > y) - (x < y);
}

/* Sorts in[0:m] by key into out (distinct keys). Keys are spread evenly (hashes mixed with
 * the group), so one pass by their top bits, about one bucket per key, leaves buckets of a
 * few entries, each sorted by insertion; a bucket much fuller than that (keys not spread)
 * falls back to qsort, which alone took longer than numpy's sort of all the keys. */
static int sort_entries(const Entry *in, Entry *out, Py_ssize_t m) {
    int bits = 1;
    while (bits < 16 && ((Py_ssize_t)1 << bits) < m) bits++;
    Py_ssize_t buckets = (Py_ssize_t)1 << bits;
    Py_ssize_t *start = calloc(buckets + 1, sizeof(Py_ssize_t));
    if (!start) return -1;
    for (Py_ssize_t j = 0; j < m; j++) start[(in[j].key >> (64 - bits)) + 1]++;
    for (Py_ssize_t b = 0; b < buckets; b++) start[b + 1] += start[b];
    for (Py_ssize_t j = 0; j < m; j++) out[start[in[j].key >> (64 - bits)]++] = in[j];
    /* start[b] is now the end of bucket b, and the start of bucket b + 1 */
    Py_ssize_t lo = 0;
    for (Py_ssize_t b = 0; b < buckets; b++) {
        Py_ssize_t hi = start[b];
        if (hi - lo > 32) {
            qsort(out + lo, hi - lo, sizeof(Entry), by_key);
        } else {
            for (Py_ssize_t i = lo + 1; i < hi; i++) {
                Entry e = out[i];
                Py_ssize_t j = i;
                for (; j > lo && out[j - 1].key > e.key; j--) out[j] = out[j - 1];
                out[j] = e;
            }
        }
        lo = hi;
    }
    free(start);
    return 0;
}

/* first_and_counts(keys, first, counts[, inverse]) -> number of distinct keys, m
 *
 * keys: n uint64; first, counts and inverse: room for n int64 each. On return first[:m]
 * holds the least index of each distinct key and counts[:m] how often it occurs, ordered by
 * key, and inverse[i] the place of keys[i] among them: np.unique's return_index,
 * return_counts and return_inverse. */
static PyObject *first_and_counts(PyObject *self, PyObject *args) {
    Py_buffer keys, first, counts, inverse = {0};
    if (!PyArg_ParseTuple(args, "y*w*w*|w*", &keys, &first, &counts, &inverse)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = keys.len / 8;
    Entry *entries = NULL, *sorted = NULL;
    uint64_t *distinct = NULL;
    int32_t *table = NULL;
    if (keys.len % 8 || first.len < n * 8 || counts.len < n * 8 ||
        (inverse.buf && inverse.len < n * 8)) {
        PyErr_SetString(PyExc_ValueError, "keys need 8 bytes each, first, counts and inverse room for as many");
        goto done;
    }
    if (n > INT32_MAX / 4) {
        PyErr_SetString(PyExc_ValueError, "too many keys");
        goto done;
    }
    int bits = table_bits(n);
    entries = malloc((n ? n : 1) * sizeof(Entry));
    sorted = malloc((n ? n : 1) * sizeof(Entry));
    distinct = malloc((n ? n : 1) * sizeof(uint64_t));
    table = new_table(bits);
    if (!entries || !sorted || !distinct || !table) {
        PyErr_NoMemory();
        goto done;
    }
    const uint64_t *k = keys.buf;
    int64_t *f = first.buf, *c = counts.buf, *inv = inverse.buf;
    Py_ssize_t m = 0;
    int failed;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t s = slot_of(table, distinct, bits, k[i]);
        if (table[s] < 0) {
            table[s] = (int32_t)m;
            distinct[m] = k[i];
            entries[m] = (Entry){k[i], i, 1, m};
            m++;
        } else {
            entries[table[s]].count++;
        }
        if (inv) inv[i] = table[s];
    }
    failed = sort_entries(entries, sorted, m);
    for (Py_ssize_t j = 0; j < m && !failed; j++) {
        f[j] = sorted[j].first;
        c[j] = sorted[j].count;
        entries[sorted[j].at].at = j; /* first-occurrence place -> sorted place */
    }
    for (Py_ssize_t i = 0; i < n && inv && !failed; i++) inv[i] = entries[inv[i]].at;
    Py_END_ALLOW_THREADS
    result = failed ? PyErr_NoMemory() : PyLong_FromSsize_t(m);
done:
    free(entries);
    free(sorted);
    free(distinct);
    free(table);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&first);
    PyBuffer_Release(&counts);
    if (inverse.buf) PyBuffer_Release(&inverse);
    return result;
}

/* member(keys, known, out): out[i] = 1 where keys[i] is among known, else 0 (out: one byte
 * a key), as np.isin says, which sorts both. */
static PyObject *member(PyObject *self, PyObject *args) {
    Py_buffer keys, known, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &keys, &known, &out)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = keys.len / 8, m = known.len / 8;
    int32_t *table = NULL;
    if (keys.len % 8 || known.len % 8 || out.len != n) {
        PyErr_SetString(PyExc_ValueError, "keys and known need 8 bytes each, out one byte a key");
        goto done;
    }
    if (m > INT32_MAX / 4) {
        PyErr_SetString(PyExc_ValueError, "too many known keys");
        goto done;
    }
    int bits = table_bits(m);
    if (!(table = new_table(bits))) {
        PyErr_NoMemory();
        goto done;
    }
    const uint64_t *k = keys.buf, *kn = known.buf;
    uint8_t *o = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < m; j++) {
        uint64_t s = slot_of(table, kn, bits, kn[j]);
        if (table[s] < 0) table[s] = (int32_t)j;
    }
    for (Py_ssize_t i = 0; i < n; i++) o[i] = table[slot_of(table, kn, bits, k[i])] >= 0;
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    free(table);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&known);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"first_and_counts", first_and_counts, METH_VARARGS,
     "Each distinct key's first index and count, in key order, and each key's place among them."},
    {"member", member, METH_VARARGS, "Whether each key is among the known ones."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pairs", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pairs(void) { return PyModule_Create(&module); }

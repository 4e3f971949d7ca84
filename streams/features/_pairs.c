/* Distinct 64-bit keys with the index of each one's first occurrence and its count, in the
 * order of the sorted keys: what streams/features/groups.py `first_and_counts` gives.
 *
 * Every feature of a closing window asks it for its distinct (account, code) pairs, a few
 * thousand keys a call, many repeated. numpy answered with a sort of all the keys, about
 * 60 ns a key and a tenth of a replay's time. Here one pass over the keys fills an
 * open-addressing table (linear probing), and only the distinct keys are sorted (by their
 * top bits first), without the GIL.
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
} Entry;

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

/* first_and_counts(keys, first, counts) -> number of distinct keys, m
 *
 * keys: n uint64; first and counts: room for n int64 each. On return first[:m] holds the
 * least index of each distinct key and counts[:m] how often it occurs, ordered by key. */
static PyObject *first_and_counts(PyObject *self, PyObject *args) {
    Py_buffer keys, first, counts;
    if (!PyArg_ParseTuple(args, "y*w*w*", &keys, &first, &counts)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = keys.len / 8;
    Entry *entries = NULL, *sorted = NULL;
    int32_t *table = NULL;
    if (keys.len % 8 || first.len < n * 8 || counts.len < n * 8) {
        PyErr_SetString(PyExc_ValueError, "keys need 8 bytes each, first and counts room for as many");
        goto done;
    }
    if (n > INT32_MAX / 4) {
        PyErr_SetString(PyExc_ValueError, "too many keys");
        goto done;
    }
    int bits = 1;
    while (((Py_ssize_t)1 << bits) < 2 * n) bits++;
    Py_ssize_t cap = (Py_ssize_t)1 << bits;
    entries = malloc((n ? n : 1) * sizeof(Entry));
    sorted = malloc((n ? n : 1) * sizeof(Entry));
    table = malloc(cap * sizeof(int32_t));
    if (!entries || !sorted || !table) {
        PyErr_NoMemory();
        goto done;
    }
    const uint64_t *k = keys.buf;
    int64_t *f = first.buf, *c = counts.buf;
    Py_ssize_t m = 0;
    int failed;
    Py_BEGIN_ALLOW_THREADS
    memset(table, 0xff, cap * sizeof(int32_t)); /* -1: empty */
    uint64_t mask = (uint64_t)cap - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t key = k[i];
        /* Keys are hashes mostly, but a multiply spreads any run of similar ones. */
        uint64_t s = ((key * 0x9E3779B97F4A7C15ull) >> (64 - bits)) & mask;
        while (table[s] >= 0 && entries[table[s]].key != key) s = (s + 1) & mask;
        if (table[s] < 0) {
            table[s] = (int32_t)m;
            entries[m].key = key;
            entries[m].first = i;
            entries[m].count = 1;
            m++;
        } else {
            entries[table[s]].count++;
        }
    }
    failed = sort_entries(entries, sorted, m);
    for (Py_ssize_t j = 0; j < m && !failed; j++) {
        f[j] = sorted[j].first;
        c[j] = sorted[j].count;
    }
    Py_END_ALLOW_THREADS
    result = failed ? PyErr_NoMemory() : PyLong_FromSsize_t(m);
done:
    free(entries);
    free(sorted);
    free(table);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&first);
    PyBuffer_Release(&counts);
    return result;
}

static PyMethodDef methods[] = {
    {"first_and_counts", first_and_counts, METH_VARARGS,
     "Each distinct key's first index and count, in key order."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pairs", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pairs(void) { return PyModule_Create(&module); }

/* Event ids already seen: an open-addressing hash set of 64-bit id codes in a numpy array.
 *
 * Deduplication asked a Python set about every event: about 250 ns an id, and in a worker
 * 8% of all the time the GIL was held. Here a whole batch is checked and inserted in one
 * call, without the GIL. Id codes are never 0 (streams/contract/_decode.c makes every code odd), so
 * 0 marks an empty slot. streams/contract/seen.py owns the tables and keeps them at most half full.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Codes are hashes already, but a multiply spreads any run of similar ones. */
static inline uint64_t first_slot(uint64_t id, int shift) {
    return (id * 0x9E3779B97F4A7C15ull) >> shift;
}

static int shift_of(Py_ssize_t cap) {
    int bits = 0;
    while (((Py_ssize_t)1 << bits) < cap) bits++;
    return 64 - bits;
}

/* The slot holding id, or the empty slot where it would go (linear probing). */
static uint64_t slot_of(const uint64_t *t, uint64_t mask, int shift, uint64_t id) {
    uint64_t i = first_slot(id, shift) & mask;
    while (t[i] != 0 && t[i] != id) i = (i + 1) & mask;
    return i;
}

static int is_table(Py_buffer *b) {
    Py_ssize_t n = b->len / 8;
    return b->len % 8 == 0 && n >= 2 && (n & (n - 1)) == 0;
}

/* add_new(table, count, prev, ids, keep) -> ids added
 *
 * For each id in order: keep[i] = 0 when it is in prev or already in table (an earlier
 * copy in the same batch included), else it goes into table and keep[i] = 1. table and
 * prev are power-of-two uint64 buffers; count is how many ids table holds. */
static PyObject *add_new(PyObject *self, PyObject *args) {
    Py_buffer table, prev, ids, keep;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "w*ny*y*w*", &table, &count, &prev, &ids, &keep)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = ids.len / 8, cap = table.len / 8;
    if (!is_table(&table) || !is_table(&prev) || ids.len % 8) {
        PyErr_SetString(PyExc_ValueError, "tables need a power-of-two number (2 or more) of uint64 slots");
    } else if (keep.len != n) {
        PyErr_SetString(PyExc_ValueError, "keep needs one byte per id");
    } else if (count < 0 || count + n >= cap) {
        PyErr_SetString(PyExc_ValueError, "table too small for this batch");
    } else {
        uint64_t *t = table.buf;
        const uint64_t *p = prev.buf, *in = ids.buf;
        uint8_t *k = keep.buf;
        uint64_t tmask = (uint64_t)cap - 1, pmask = (uint64_t)(prev.len / 8) - 1;
        int tshift = shift_of(cap), pshift = shift_of(prev.len / 8);
        Py_ssize_t added = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t j = 0; j < n; j++) {
            uint64_t id = in[j];
            k[j] = id == 0;  /* not an id code: nothing to compare it with */
            if (id == 0 || p[slot_of(p, pmask, pshift, id)] == id) continue;
            uint64_t i = slot_of(t, tmask, tshift, id);
            if (t[i] == id) continue;
            t[i] = id;
            k[j] = 1;
            added++;
        }
        Py_END_ALLOW_THREADS
        result = PyLong_FromSsize_t(added);
    }
    PyBuffer_Release(&table);
    PyBuffer_Release(&prev);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&keep);
    return result;
}

static PyMethodDef methods[] = {
    {"add_new", add_new, METH_VARARGS, "Check a batch of ids against two tables, adding the new."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_seen", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__seen(void) { return PyModule_Create(&module); }

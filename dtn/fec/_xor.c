/* The table-lookup kernel of the Reed-Solomon code (rs.py): out[c] = XOR over p of
 * tables[p, symbols[c, p]], for tables (P, 256, W) uint64 and symbols (C, P) uint8 of any
 * strides. Parity, the damage check and the syndromes are all this one linear map; the numpy
 * twin in rs.py (_xor_of_rows_numpy) is the reference and runs where this does not build.
 *
 * Written in C because numpy needs two calls and a full pass over the output per symbol
 * position, so it streams the whole (C, W) result through memory P times; here it stays in
 * cache and in registers. Only plain CPython and the buffer protocol, no numpy C API. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Codewords per tile: its output (64 KiB at W = 4) stays in L2 while the tile walks through
 * the positions, so the table (1.8 MiB for parity) is read once per tile, not once per
 * codeword. Positions go GROUP at a time, XORed in registers: each output row is loaded and
 * stored once per group. Both measured best on the framing layouts (a few % either way). */
#define TILE 2048
#define GROUP 4

/* Whether a buffer's struct format is a native 8-byte unsigned integer (numpy says "L"). */
static int is_uint64(const Py_buffer *view) {
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=') f++;
#if PY_LITTLE_ENDIAN
    else if (*f == '<') f++;
#else
    else if (*f == '>' || *f == '!') f++;
#endif
    if (view->itemsize != 8 || f[0] == '\0' || f[1] != '\0') return 0;
    return f[0] == 'Q' || (f[0] == 'L' && sizeof(unsigned long) == 8);
}

static int is_uint8(const Py_buffer *view) {
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=' || *f == '<' || *f == '>' || *f == '!') f++;
    return view->itemsize == 1 && f[0] == 'B' && f[1] == '\0';
}

/* g positions of one tile of n codewords: symbols s (codeword stride sc, position stride sp),
 * output o (n rows of `width` words), stored rather than XORed for the first group (no
 * zeroing pass). Inlined with constant width and g, the loops unroll into plain XORs. */
static inline void group(const uint64_t *rows, Py_ssize_t g, Py_ssize_t width, int first,
                         const uint8_t *s, Py_ssize_t sc, Py_ssize_t sp, uint64_t *o,
                         Py_ssize_t n) {
    for (Py_ssize_t c = 0; c < n; c++) {
        uint64_t acc[4];  /* width is 4 or 1 on this path */
        for (Py_ssize_t w = 0; w < width; w++) acc[w] = first ? 0 : o[c * width + w];
        const uint8_t *sym = s + c * sc;
        for (Py_ssize_t k = 0; k < g; k++) {
            const uint64_t *r = rows + ((size_t)k * 256 + sym[k * sp]) * width;
            for (Py_ssize_t w = 0; w < width; w++) acc[w] ^= r[w];
        }
        for (Py_ssize_t w = 0; w < width; w++) o[c * width + w] = acc[w];
    }
}

#define TILE_LOOP(W)                                                                      \
    for (Py_ssize_t p = 0; p < positions; p += GROUP) {                                   \
        const uint64_t *rows = tables + (size_t)p * 256 * (W);                            \
        if (positions - p >= GROUP)                                                       \
            group(rows, GROUP, (W), p == 0, s + p * sp, sc, sp, o, n);                    \
        else                                                                              \
            group(rows, positions - p, (W), p == 0, s + p * sp, sc, sp, o, n);            \
    }

static void tile4(const uint64_t *tables, Py_ssize_t positions, const uint8_t *s,
                  Py_ssize_t sc, Py_ssize_t sp, uint64_t *o, Py_ssize_t n) {
    TILE_LOOP(4)
}

static void tile1(const uint64_t *tables, Py_ssize_t positions, const uint8_t *s,
                  Py_ssize_t sc, Py_ssize_t sp, uint64_t *o, Py_ssize_t n) {
    TILE_LOOP(1)
}

/* Any other width: one position at a time, the output row XORed in memory. */
static void tile_any(const uint64_t *tables, Py_ssize_t positions, Py_ssize_t width,
                     const uint8_t *s, Py_ssize_t sc, Py_ssize_t sp, uint64_t *o, Py_ssize_t n) {
    memset(o, 0, (size_t)n * (size_t)width * 8);
    for (Py_ssize_t p = 0; p < positions; p++) {
        const uint64_t *row = tables + (size_t)p * 256 * width;
        for (Py_ssize_t c = 0; c < n; c++) {
            const uint64_t *r = row + (size_t)s[c * sc + p * sp] * width;
            for (Py_ssize_t w = 0; w < width; w++) o[c * width + w] ^= r[w];
        }
    }
}

static PyObject *xor_of_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "xor_of_rows(tables, symbols, out) takes 3 arguments, "
                     "got %zd", nargs);
        return NULL;
    }
    Py_buffer tv = {0}, sv = {0}, ov = {0};
    PyObject *result = NULL;
    if (PyObject_GetBuffer(args[0], &tv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    if (PyObject_GetBuffer(args[1], &sv, PyBUF_RECORDS_RO) < 0) goto done;
    if (PyObject_GetBuffer(args[2], &ov, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0)
        goto done;
    if (!is_uint64(&tv) || !is_uint8(&sv) || !is_uint64(&ov)) {
        PyErr_Format(PyExc_TypeError, "tables and out must be uint64 and symbols uint8, got "
                     "formats '%s', '%s', '%s'", tv.format ? tv.format : "B",
                     sv.format ? sv.format : "B", ov.format ? ov.format : "B");
        goto done;
    }
    if (tv.ndim != 3 || tv.shape[1] != 256) {
        PyErr_SetString(PyExc_ValueError, "tables must be (P, 256, W)");
        goto done;
    }
    if (sv.ndim != 2 || ov.ndim != 2) {
        PyErr_Format(PyExc_ValueError, "symbols and out must be 2-D, got %d-D and %d-D",
                     sv.ndim, ov.ndim);
        goto done;
    }
    Py_ssize_t positions = tv.shape[0], width = tv.shape[2], count = sv.shape[0];
    if (sv.shape[1] != positions) {
        PyErr_Format(PyExc_ValueError, "symbols have %zd positions, tables %zd",
                     sv.shape[1], positions);
        goto done;
    }
    if (ov.shape[0] != count || ov.shape[1] != width) {
        PyErr_Format(PyExc_ValueError, "out must be (%zd, %zd), got (%zd, %zd)", count, width,
                     ov.shape[0], ov.shape[1]);
        goto done;
    }
    const uint64_t *tables = tv.buf;
    const uint8_t *symbols = sv.buf;
    uint64_t *out = ov.buf;
    Py_ssize_t sc = sv.strides[0], sp = sv.strides[1];
    Py_BEGIN_ALLOW_THREADS
    if (positions == 0) {
        memset(out, 0, (size_t)count * (size_t)width * 8);
    } else {
        for (Py_ssize_t first = 0; first < count; first += TILE) {
            Py_ssize_t n = count - first < TILE ? count - first : TILE;
            const uint8_t *s = symbols + first * sc;
            uint64_t *o = out + first * width;
            if (width == 4) tile4(tables, positions, s, sc, sp, o, n);
            else if (width == 1) tile1(tables, positions, s, sc, sp, o, n);
            else tile_any(tables, positions, width, s, sc, sp, o, n);
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    if (tv.obj) PyBuffer_Release(&tv);
    if (sv.obj) PyBuffer_Release(&sv);
    if (ov.obj) PyBuffer_Release(&ov);
    return result;
}

static PyMethodDef methods[] = {
    {"xor_of_rows", (PyCFunction)(void (*)(void))xor_of_rows, METH_FASTCALL,
     "xor_of_rows(tables, symbols, out): out[c] = XOR over p of tables[p, symbols[c, p]];\n"
     "tables (P, 256, W) uint64 C-contiguous, symbols (C, P) uint8 any strides, out (C, W)\n"
     "uint64 C-contiguous and writable."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_xor", NULL, -1, methods};

PyMODINIT_FUNC PyInit__xor(void) { return PyModule_Create(&module); }

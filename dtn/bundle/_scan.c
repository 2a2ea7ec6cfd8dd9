/* Fast path of the BPv7 decoder: walks a bundle that is in the common, fully deterministic
 * shape (definite-length arrays, shortest-form heads) and returns the primary block's fields and
 * every block's spans, or None for anything else. The pure-Python decoder (dtn/bundle/bundle.py)
 * handles what this returns None for, including every error, so this file never needs to explain
 * a rejection; it only must never accept bytes the Python decoder rejects. It verifies every CRC
 * (a mismatch also falls back, so the Python walk names it); the cross-block rules stay in Python.
 *
 * Written in C because a strict CBOR walk in Python costs ~20 us per bundle and no CBOR library
 * reports the byte spans that the CRC check needs. Large CRC-32C spans go to the `crc32c`
 * package (hardware instructions); short ones and CRC-16/X.25 use tables here. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *crc32c_func;  /* crc32c.crc32c(data, value) */
static uint32_t crc32c_table[256];
static uint16_t crc16_table[256];
#define SMALL_SPAN 256

static void make_tables(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        uint16_t h = (uint16_t)i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  /* Castagnoli, reflected */
            h = (h & 1) ? (uint16_t)((h >> 1) ^ 0x8408) : (uint16_t)(h >> 1);  /* X.25 */
        }
        crc32c_table[i] = c;
        crc16_table[i] = h;
    }
}

/* Continues a CRC-32C (pre/post-inverted state as the crc32c package keeps it). */
static int crc32c_update(uint32_t *value, const uint8_t *p, Py_ssize_t n) {
    if (n < SMALL_SPAN) {
        uint32_t c = ~*value;
        for (Py_ssize_t i = 0; i < n; i++) c = crc32c_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
        *value = ~c;
        return 0;
    }
    PyObject *args[2] = {PyMemoryView_FromMemory((char *)p, n, PyBUF_READ),
                         PyLong_FromUnsignedLong(*value)};
    PyObject *r = (args[0] && args[1]) ? PyObject_Vectorcall(crc32c_func, args, 2, NULL) : NULL;
    Py_XDECREF(args[0]);
    Py_XDECREF(args[1]);
    if (r == NULL) return -1;
    *value = (uint32_t)PyLong_AsUnsignedLong(r);
    Py_DECREF(r);
    return PyErr_Occurred() ? -1 : 0;
}

static uint16_t crc16_update(uint16_t c, const uint8_t *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) c = crc16_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c;
}

static const uint8_t zeros[4] = {0, 0, 0, 0};

/* Whether the CRC stored in [crc0, crc1) matches the block [start, end) with that field zeroed.
 * 1 match, 0 mismatch, -1 Python error. */
static int crc_ok(const uint8_t *p, int type, Py_ssize_t start, Py_ssize_t crc0, Py_ssize_t crc1,
                  Py_ssize_t end) {
    Py_ssize_t n = crc1 - crc0;
    if (type == 1) {
        if (n != 2) return 0;
        uint16_t c = crc16_update(0xFFFF, p + start, crc0 - start);
        c = crc16_update(c, zeros, 2);
        c = crc16_update(c, p + crc1, end - crc1) ^ 0xFFFF;
        return p[crc0] == (c >> 8) && p[crc0 + 1] == (c & 0xff);
    }
    if (n != 4) return 0;
    uint32_t v = 0;
    if (crc32c_update(&v, p + start, crc0 - start) || crc32c_update(&v, zeros, 4)
        || crc32c_update(&v, p + crc1, end - crc1)) return -1;
    uint32_t stored = ((uint32_t)p[crc0] << 24) | ((uint32_t)p[crc0 + 1] << 16)
                      | ((uint32_t)p[crc0 + 2] << 8) | p[crc0 + 3];
    return stored == v;
}

typedef struct {
    const uint8_t *p;
    Py_ssize_t pos, len;
} cursor;

/* Reads one shortest-form, definite head. Returns 0 on success, -1 to fall back. */
static int head(cursor *c, int *major, uint64_t *value) {
    if (c->pos >= c->len) return -1;
    uint8_t ib = c->p[c->pos++];
    int info = ib & 0x1f;
    *major = ib >> 5;
    if (info < 24) { *value = (uint64_t)info; return 0; }
    int size;
    if (info == 24) size = 1; else if (info == 25) size = 2;
    else if (info == 26) size = 4; else if (info == 27) size = 8;
    else return -1;
    if (c->len - c->pos < size) return -1;
    uint64_t v = 0;
    for (int i = 0; i < size; i++) v = (v << 8) | c->p[c->pos + i];
    c->pos += size;
    if (size == 1 ? v < 24 : v < (1ULL << (4 * size))) return -1;  /* not shortest */
    *value = v;
    return 0;
}

static int uint_item(cursor *c, uint64_t *value) {
    int major;
    return (head(c, &major, value) == 0 && major == 0) ? 0 : -1;
}

static int array_of(cursor *c, uint64_t *count) {
    int major;
    return (head(c, &major, count) == 0 && major == 4) ? 0 : -1;
}

static int string_span(cursor *c, int want_major, Py_ssize_t *start, Py_ssize_t *end) {
    int major;
    uint64_t n;
    if (head(c, &major, &n) != 0 || major != want_major) return -1;
    if (n > (uint64_t)(c->len - c->pos)) return -1;
    *start = c->pos;
    c->pos += (Py_ssize_t)n;
    *end = c->pos;
    return 0;
}

/* An EID: [1, 0] | [1, text] | [2, [uint, uint]]. Its content is validated in Python. */
static int eid_item(cursor *c) {
    uint64_t count, scheme, v;
    Py_ssize_t s, e;
    if (array_of(c, &count) != 0 || count != 2 || uint_item(c, &scheme) != 0) return -1;
    if (scheme == 1) {
        if (c->pos >= c->len) return -1;
        if ((c->p[c->pos] >> 5) == 0) return (uint_item(c, &v) == 0 && v == 0) ? 0 : -1;
        return string_span(c, 3, &s, &e);
    }
    if (scheme == 2) {
        if (array_of(c, &count) != 0 || count != 2) return -1;
        return (uint_item(c, &v) == 0 && uint_item(c, &v) == 0) ? 0 : -1;
    }
    return -1;
}

/* The EID object cached for these encoded bytes, or the (start, end) span for Python to parse. */
static PyObject *eid_or_span(PyObject *cache, const uint8_t *p, Py_ssize_t start, Py_ssize_t end) {
    PyObject *key = PyBytes_FromStringAndSize((const char *)p + start, end - start);
    if (key == NULL) return NULL;
    PyObject *eid = PyDict_GetItemWithError(cache, key);
    Py_DECREF(key);
    if (eid != NULL) return Py_NewRef(eid);
    if (PyErr_Occurred()) return NULL;
    return Py_BuildValue("(nn)", start, end);
}

/* A tuple of unsigned integers, built without format-string parsing (this runs per bundle). */
static PyObject *uint_tuple(int n, const uint64_t *values) {
    PyObject *t = PyTuple_New(n);
    if (t == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(values[i]);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer buf;
    PyObject *cache;
    if (!PyArg_ParseTuple(args, "y*O!", &buf, &PyDict_Type, &cache)) return NULL;
    cursor c = {(const uint8_t *)buf.buf, 0, buf.len};
    PyObject *result = NULL, *blocks = NULL;
    uint64_t count, version, flags, crc_type, ctime, seq, lifetime, offset = 0, total = 0;
    Py_ssize_t d0, d1, s0, s1, r0, r1, crc0 = 0, crc1 = 0;
    int fragment;

    if (c.len < 2 || c.p[0] != 0x9f) goto fallback;
    c.pos = 1;
    /* primary block */
    if (array_of(&c, &count) != 0 || uint_item(&c, &version) != 0 || version != 7) goto fallback;
    if (uint_item(&c, &flags) != 0 || uint_item(&c, &crc_type) != 0 || crc_type > 2) goto fallback;
    fragment = (int)(flags & 1);
    if (count != (uint64_t)(8 + (fragment ? 2 : 0) + (crc_type ? 1 : 0))) goto fallback;
    d0 = c.pos; if (eid_item(&c) != 0) goto fallback; d1 = c.pos;
    s0 = c.pos; if (eid_item(&c) != 0) goto fallback; s1 = c.pos;
    r0 = c.pos; if (eid_item(&c) != 0) goto fallback; r1 = c.pos;
    if (array_of(&c, &count) != 0 || count != 2) goto fallback;
    if (uint_item(&c, &ctime) != 0 || uint_item(&c, &seq) != 0) goto fallback;
    if (uint_item(&c, &lifetime) != 0) goto fallback;
    if (fragment && (uint_item(&c, &offset) != 0 || uint_item(&c, &total) != 0)) goto fallback;
    if (crc_type && string_span(&c, 2, &crc0, &crc1) != 0) goto fallback;
    Py_ssize_t primary_end = c.pos;
    if (crc_type) {
        int ok = crc_ok(c.p, (int)crc_type, 1, crc0, crc1, primary_end);
        if (ok < 0) goto error;
        if (!ok) goto fallback;
    }

    blocks = PyList_New(0);
    if (blocks == NULL) goto error;
    while (1) {
        if (c.pos >= c.len) goto fallback;
        if (c.p[c.pos] == 0xff) break;
        Py_ssize_t start = c.pos, b0, b1, bc0 = 0, bc1 = 0;
        uint64_t btype, number, bflags, bcrc;
        if (array_of(&c, &count) != 0) goto fallback;
        if (uint_item(&c, &btype) != 0 || uint_item(&c, &number) != 0) goto fallback;
        if (uint_item(&c, &bflags) != 0 || uint_item(&c, &bcrc) != 0 || bcrc > 2) goto fallback;
        if (count != 5 + (bcrc ? 1 : 0)) goto fallback;
        if (string_span(&c, 2, &b0, &b1) != 0) goto fallback;
        if (bcrc) {
            if (string_span(&c, 2, &bc0, &bc1) != 0) goto fallback;
            int ok = crc_ok(c.p, (int)bcrc, start, bc0, bc1, c.pos);
            if (ok < 0) goto error;
            if (!ok) goto fallback;
        }
        uint64_t fields[6] = {btype, number, bflags, bcrc, (uint64_t)b0, (uint64_t)b1};
        PyObject *item = uint_tuple(6, fields);
        if (item == NULL) goto error;
        int failed = PyList_Append(blocks, item);
        Py_DECREF(item);
        if (failed) goto error;
    }
    if (c.pos + 1 != c.len) goto fallback;
    {
        PyObject *frag_offset = fragment ? PyLong_FromUnsignedLongLong(offset) : Py_NewRef(Py_None);
        PyObject *frag_total = fragment ? PyLong_FromUnsignedLongLong(total) : Py_NewRef(Py_None);
        if (frag_offset == NULL || frag_total == NULL) {
            Py_XDECREF(frag_offset);
            Py_XDECREF(frag_total);
            goto error;
        }
        PyObject *destination = eid_or_span(cache, c.p, d0, d1);
        PyObject *source = destination ? eid_or_span(cache, c.p, s0, s1) : NULL;
        PyObject *report_to = source ? eid_or_span(cache, c.p, r0, r1) : NULL;
        if (report_to == NULL) {
            Py_XDECREF(destination);
            Py_XDECREF(source);
            Py_DECREF(frag_offset);
            Py_DECREF(frag_total);
            goto error;
        }
        result = Py_BuildValue("((NNNKKKKKNN)y#N)", destination, source, report_to, ctime, seq,
                               lifetime, flags, crc_type, frag_offset, frag_total,
                               (const char *)c.p + 1, primary_end - 1, blocks);
        blocks = NULL;  /* stolen by "N" */
    }
    PyBuffer_Release(&buf);
    return result;
fallback:
    Py_XDECREF(blocks);
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
error:
    Py_XDECREF(blocks);
    PyBuffer_Release(&buf);
    return NULL;
}

/* Appends the shortest CBOR head of an unsigned integer; returns the new length. */
static Py_ssize_t put_uint(uint8_t *out, Py_ssize_t n, uint64_t v) {
    if (v < 24) { out[n++] = (uint8_t)v; return n; }
    int size = v < 0x100 ? 1 : v < 0x10000 ? 2 : v < 0x100000000ULL ? 4 : 8;
    out[n++] = (uint8_t)(size == 1 ? 24 : size == 2 ? 25 : size == 4 ? 26 : 27);
    for (int i = size - 1; i >= 0; i--) out[n++] = (uint8_t)(v >> (8 * i));
    return n;
}

/* encode_primary(flags, crc_type, destination, source, report_to, creation_time, sequence,
 * lifetime, fragment_offset, total_adu_length) -> bytes: the deterministic primary block with
 * its CRC. EIDs come already encoded; the fragment fields are None for a whole bundle. */
static PyObject *encode_primary(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    /* METH_FASTCALL with the arguments read by hand: this runs for every bundle made or sent,
     * and PyArg_ParseTuple's format parsing and buffer requests cost more than the encoding. */
    unsigned long long flags, crc_type, ctime, seq, lifetime, offset = 0, total = 0;
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "encode_primary takes 10 arguments");
        return NULL;
    }
    Py_buffer eids[3];
    for (int i = 0; i < 3; i++) {
        PyObject *eid = args[2 + i];
        if (!PyBytes_Check(eid)) {
            PyErr_SetString(PyExc_TypeError, "encoded EIDs must be bytes");
            return NULL;
        }
        eids[i].buf = PyBytes_AS_STRING(eid);
        eids[i].len = PyBytes_GET_SIZE(eid);
    }
    flags = PyLong_AsUnsignedLongLong(args[0]);
    crc_type = PyLong_AsUnsignedLongLong(args[1]);
    ctime = PyLong_AsUnsignedLongLong(args[5]);
    seq = PyLong_AsUnsignedLongLong(args[6]);
    lifetime = PyLong_AsUnsignedLongLong(args[7]);
    if (PyErr_Occurred()) return NULL;
    PyObject *offset_obj = args[8], *total_obj = args[9];
    PyObject *result = NULL;
    int fragment = (int)(flags & 1);
    if (crc_type > 2) {
        PyErr_SetString(PyExc_ValueError, "CRC type must be 0, 1 or 2");
        goto done;
    }
    if (fragment) {
        offset = PyLong_AsUnsignedLongLong(offset_obj);
        total = PyErr_Occurred() ? 0 : PyLong_AsUnsignedLongLong(total_obj);
        if (PyErr_Occurred()) goto done;
    }
    Py_ssize_t size = 64 + eids[0].len + eids[1].len + eids[2].len;
    uint8_t *out = PyMem_Malloc(size);
    if (out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t n = 0;
    out[n++] = (uint8_t)(0x80 | (8 + (fragment ? 2 : 0) + (crc_type ? 1 : 0)));
    out[n++] = 7;
    n = put_uint(out, n, flags);
    n = put_uint(out, n, crc_type);
    for (int i = 0; i < 3; i++) {
        memcpy(out + n, eids[i].buf, eids[i].len);
        n += eids[i].len;
    }
    out[n++] = 0x82;
    n = put_uint(out, n, ctime);
    n = put_uint(out, n, seq);
    n = put_uint(out, n, lifetime);
    if (fragment) {
        n = put_uint(out, n, offset);
        n = put_uint(out, n, total);
    }
    if (crc_type == 1) {
        out[n++] = 0x42;
        uint16_t c = crc16_update(crc16_update(0xFFFF, out, n), zeros, 2) ^ 0xFFFF;
        out[n++] = (uint8_t)(c >> 8);
        out[n++] = (uint8_t)c;
    } else if (crc_type == 2) {
        out[n++] = 0x44;
        uint32_t v = 0;
        if (crc32c_update(&v, out, n) || crc32c_update(&v, zeros, 4)) {
            PyMem_Free(out);
            goto done;
        }
        for (int i = 3; i >= 0; i--) out[n++] = (uint8_t)(v >> (8 * i));
    }
    result = PyBytes_FromStringAndSize((const char *)out, n);
    PyMem_Free(out);
done:
    return result;
}

/* The canonical block fields encode_bundle reads, by name (interned at import). */
static PyObject *name_block_type, *name_number, *name_flags, *name_crc_type, *name_data;

typedef struct {
    uint64_t type, number, flags, crc_type;
    Py_buffer data;
} block_fields;

static int read_uint_attribute(PyObject *block, PyObject *name, uint64_t *out) {
    PyObject *value = PyObject_GetAttr(block, name);
    if (value == NULL) return -1;
    int is_int = PyLong_Check(value);
    *out = is_int ? PyLong_AsUnsignedLongLong(value) : 0;
    Py_DECREF(value);
    if (!is_int || PyErr_Occurred()) {  /* not an int, negative or past 64 bits */
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "block %U is not an unsigned 64-bit integer", name);
        return -1;
    }
    return 0;
}

/* encode_bundle(primary, blocks) -> bytes: what Bundle.encode makes from the encoded primary
 * block and the canonical blocks (CanonicalBlock.encode_parts), in one buffer: one copy of
 * each block's data, CRCs computed in place. */
static PyObject *encode_bundle(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "encode_bundle(primary: bytes, blocks: list)");
        return NULL;
    }
    PyObject *primary = args[0], *blocks = args[1];
    Py_ssize_t count = PyList_GET_SIZE(blocks);
    block_fields *fields = PyMem_Calloc(count ? count : 1, sizeof(block_fields));
    if (fields == NULL) return PyErr_NoMemory();
    PyObject *result = NULL;
    Py_ssize_t size = 2 + PyBytes_GET_SIZE(primary);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *block = PyList_GET_ITEM(blocks, i);
        block_fields *f = &fields[i];
        if (read_uint_attribute(block, name_block_type, &f->type) < 0 ||
            read_uint_attribute(block, name_number, &f->number) < 0 ||
            read_uint_attribute(block, name_flags, &f->flags) < 0 ||
            read_uint_attribute(block, name_crc_type, &f->crc_type) < 0)
            goto done;
        if (f->crc_type > 2) {
            PyErr_SetString(PyExc_ValueError, "CRC type must be 0, 1 or 2");
            goto done;
        }
        PyObject *data = PyObject_GetAttr(block, name_data);
        if (data == NULL) goto done;
        int got = PyObject_GetBuffer(data, &f->data, PyBUF_SIMPLE);
        Py_DECREF(data);  /* the buffer keeps what it views alive */
        if (got < 0) goto done;
        /* array head, four uints and the byte-string head (9 bytes each at most), the CRC */
        size += 1 + 4 * 9 + 9 + f->data.len + 5;
    }
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) goto done;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    Py_ssize_t n = 0;
    out[n++] = 0x9f;
    memcpy(out + n, PyBytes_AS_STRING(primary), PyBytes_GET_SIZE(primary));
    n += PyBytes_GET_SIZE(primary);
    for (Py_ssize_t i = 0; i < count; i++) {
        block_fields *f = &fields[i];
        Py_ssize_t start = n;
        out[n++] = f->crc_type ? 0x86 : 0x85;
        n = put_uint(out, n, f->type);
        n = put_uint(out, n, f->number);
        n = put_uint(out, n, f->flags);
        n = put_uint(out, n, f->crc_type);
        Py_ssize_t head = n;
        n = put_uint(out, n, (uint64_t)f->data.len);
        out[head] |= 0x40;  /* major type 2: byte string */
        memcpy(out + n, f->data.buf, f->data.len);
        n += f->data.len;
        if (f->crc_type == 1) {
            out[n++] = 0x42;
            uint16_t c = crc16_update(crc16_update(0xFFFF, out + start, n - start), zeros, 2);
            c ^= 0xFFFF;
            out[n++] = (uint8_t)(c >> 8);
            out[n++] = (uint8_t)c;
        } else if (f->crc_type == 2) {
            out[n++] = 0x44;
            uint32_t v = 0;
            if (crc32c_update(&v, out + start, n - start) || crc32c_update(&v, zeros, 4)) {
                Py_CLEAR(result);
                goto done;
            }
            for (int k = 3; k >= 0; k--) out[n++] = (uint8_t)(v >> (8 * k));
        }
    }
    out[n++] = 0xff;
    if (_PyBytes_Resize(&result, n) < 0) result = NULL;
done:
    for (Py_ssize_t i = 0; i < count; i++)
        if (fields[i].data.obj) PyBuffer_Release(&fields[i].data);
    PyMem_Free(fields);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(bundle, eid_cache): (primary block fields, primary block bytes, block spans) of a "
     "deterministic bundle whose CRCs check, or None. EIDs found in eid_cache (encoded bytes -> EID) "
     "come back as objects."},
    {"encode_bundle", (PyCFunction)(void (*)(void))encode_bundle, METH_FASTCALL,
     "encode_bundle(primary, blocks): the encoded bundle, from its encoded primary block and "
     "its canonical blocks."},
    {"encode_primary", (PyCFunction)(void (*)(void))encode_primary, METH_FASTCALL,
     "encode_primary(flags, crc_type, destination, source, report_to, creation_time, "
     "sequence, lifetime, fragment_offset, total_adu_length): the encoded primary block."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__scan(void) {
    PyObject *crc_module = PyImport_ImportModule("crc32c");
    if (crc_module == NULL) return NULL;
    crc32c_func = PyObject_GetAttrString(crc_module, "crc32c");
    Py_DECREF(crc_module);
    if (crc32c_func == NULL) return NULL;
    make_tables();
    name_block_type = PyUnicode_InternFromString("block_type");
    name_number = PyUnicode_InternFromString("number");
    name_flags = PyUnicode_InternFromString("flags");
    name_crc_type = PyUnicode_InternFromString("crc_type");
    name_data = PyUnicode_InternFromString("_data");  /* CanonicalBlock.data_view */
    if (!name_block_type || !name_number || !name_flags || !name_crc_type || !name_data)
        return NULL;
    return PyModule_Create(&module);
}

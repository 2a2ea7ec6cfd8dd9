/* Fast path of the payload pipeline (pipeline.py) for its two per-bundle steps under a BCB-only
 * rule: sealing a new bundle's payload, and opening a bundle from a security source whose BCB
 * the pipeline has accepted before. Each function does in one call what the Python path does in
 * some twenty steps; the crypto and the compression stay in the `cryptography` and `zstandard`
 * packages, called from here. The Python code is the reference and runs where this module
 * does not build; tests check that both paths agree (same bytes sealed, same answer for every
 * tampered bundle).
 *
 * Written in C because the pipeline's own Python work, ~4 us a bundle sealed and ~2 us a bundle
 * opened, is what limits small bundles of incompressible data: a 64 KiB payload takes the
 * libraries ~20 us to compress and encrypt and ~9 us to decrypt. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#define IV_SIZE 12
#define TAG_SIZE 16
#define BCB_TYPE 12
#define BIB_TYPE 11
#define PAYLOAD_TYPE 1
#define REPLICATE 0x01          /* RFC 9171 4.2.4 block processing control flags */
#define DISCARD 0x10
#define ALGORITHM_STORED 0
#define ALGORITHM_ZSTD 1

static const unsigned char zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
static PyObject *iv_size;  /* the int 12, the argument of random_bytes */
static PyObject *name_block_type, *name_number, *name_flags, *name_data, *name_head, *name_tail;

/* IVs drawn from OS randomness read 4 KiB at a time (what security/randomness.py does for the
 * Python steps): a getrandom call per bundle would cost more than the rest of this file. The
 * GIL guards the pool; a forked child empties its copy (pthread_atfork), so parent and child
 * never hand out the same bytes. */
static unsigned char random_pool[4096];
static size_t random_used = sizeof random_pool;

static void forget_random_pool(void) {
    random_used = sizeof random_pool;
}

static PyObject *draw_iv(void) {
    if (random_used + IV_SIZE > sizeof random_pool) {
        size_t filled = 0;
        while (filled < sizeof random_pool) {
            ssize_t got = getrandom(random_pool + filled, sizeof random_pool - filled, 0);
            if (got < 0) {
                if (errno == EINTR) continue;
                return PyErr_SetFromErrno(PyExc_OSError);
            }
            filled += (size_t)got;
        }
        random_used = 0;
    }
    PyObject *iv = PyBytes_FromStringAndSize((const char *)random_pool + random_used, IV_SIZE);
    memset(random_pool + random_used, 0, IV_SIZE);  /* handed out once */
    random_used += IV_SIZE;
    return iv;
}

/* A new bytes object: the concatenation of n buffers. */
static PyObject *concat(const Py_buffer *parts, int n) {
    Py_ssize_t size = 0;
    for (int i = 0; i < n; i++) size += parts[i].len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) return NULL;
    char *p = PyBytes_AS_STRING(out);
    for (int i = 0; i < n; i++) {
        memcpy(p, parts[i].buf, parts[i].len);
        p += parts[i].len;
    }
    return out;
}

static Py_buffer bytes_view(PyObject *bytes) {
    Py_buffer view = {.buf = PyBytes_AS_STRING(bytes), .len = PyBytes_GET_SIZE(bytes)};
    return view;
}

/* The additional authenticated data: head, or head + primary + tail (scope.scope_frame). */
static PyObject *make_aad(PyObject *head, PyObject *primary, PyObject *tail) {
    if (tail == Py_None) return Py_NewRef(head);
    Py_buffer parts[3] = {bytes_view(head), bytes_view(primary), bytes_view(tail)};
    return concat(parts, 3);
}

/* seal_payload(compress, random_bytes, data, primary, plan) -> (ciphertext, algorithm, bcb)
 * with plan = (encrypt, head, tail, before_iv, between, after_tag), a BcbSealer's constant part.
 *
 * Compressor.pack's choice (zstd when it shrinks the data or the data starts like a zstd
 * frame, else the data as it is), then BcbSealer.encrypt without key wrap: a 12-byte IV from
 * random_bytes (None: from the pool above), AES-GCM over the chosen bytes with the AAD head
 * [+ primary + tail], the ciphertext as a view of encrypt's output, and the BCB's data: the
 * IV and tag spliced between the layout's fixed pieces. algorithm is 0 (stored) or 1. */
static PyObject *seal_payload(PyObject *self, PyObject *const *call_args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyTuple_Check(call_args[4]) || PyTuple_GET_SIZE(call_args[4]) != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "seal_payload(compress, random_bytes, data, primary, plan)");
        return NULL;
    }
    PyObject *plan = call_args[4];
    /* the arguments in the order used below: compress, encrypt, random_bytes, data, head,
     * primary, tail, before_iv, between, after_tag */
    PyObject *args[10] = {call_args[0], PyTuple_GET_ITEM(plan, 0), call_args[1], call_args[2],
                          PyTuple_GET_ITEM(plan, 1), call_args[3], PyTuple_GET_ITEM(plan, 2),
                          PyTuple_GET_ITEM(plan, 3), PyTuple_GET_ITEM(plan, 4),
                          PyTuple_GET_ITEM(plan, 5)};
    for (int i = 3; i < 10; i++) {
        if (!PyBytes_Check(args[i]) && !(i == 6 && args[i] == Py_None)) {  /* tail: or None */
            PyErr_SetString(PyExc_TypeError, "seal_payload: data, primary and plan must be bytes");
            return NULL;
        }
    }
    PyObject *compress = args[0], *encrypt = args[1], *random_bytes = args[2], *data = args[3];
    Py_ssize_t size = PyBytes_GET_SIZE(data);

    PyObject *compressed = PyObject_CallOneArg(compress, data);
    if (compressed == NULL) return NULL;
    if (!PyBytes_Check(compressed)) {
        Py_DECREF(compressed);
        PyErr_SetString(PyExc_TypeError, "compress must return bytes");
        return NULL;
    }
    long algorithm = ALGORITHM_ZSTD;
    PyObject *plain = compressed;
    if (PyBytes_GET_SIZE(compressed) >= size &&
        !(size >= 4 && memcmp(PyBytes_AS_STRING(data), zstd_magic, 4) == 0)) {
        Py_DECREF(compressed);  /* freed before encrypting: its memory is reused, still warm */
        plain = Py_NewRef(data);
        algorithm = ALGORITHM_STORED;
    }

    PyObject *iv = random_bytes == Py_None ? draw_iv() : PyObject_CallOneArg(random_bytes, iv_size);
    if (iv == NULL) goto fail_plain;
    if (!PyBytes_Check(iv) || PyBytes_GET_SIZE(iv) != IV_SIZE) {
        PyErr_Format(PyExc_ValueError, "random_bytes gave %zd bytes for a %d-byte IV",
                     PyObject_Length(iv), IV_SIZE);
        goto fail_iv;
    }
    PyObject *aad = make_aad(args[4], args[5], args[6]);
    if (aad == NULL) goto fail_iv;
    PyObject *call[3] = {iv, plain, aad};
    PyObject *sealed = PyObject_Vectorcall(encrypt, call, 3, NULL);
    Py_DECREF(aad);
    Py_CLEAR(plain);
    if (sealed == NULL) goto fail_iv;
    if (!PyBytes_Check(sealed) || PyBytes_GET_SIZE(sealed) < TAG_SIZE) {
        PyErr_SetString(PyExc_TypeError, "encrypt must return ciphertext and tag as bytes");
        goto fail_sealed;
    }
    Py_ssize_t text = PyBytes_GET_SIZE(sealed) - TAG_SIZE;
    Py_buffer pieces[5] = {
        bytes_view(args[7]), bytes_view(iv), bytes_view(args[8]),
        {.buf = PyBytes_AS_STRING(sealed) + text, .len = TAG_SIZE}, bytes_view(args[9])};
    PyObject *bcb_data = concat(pieces, 5);
    if (bcb_data == NULL) goto fail_sealed;
    PyObject *whole = PyMemoryView_FromObject(sealed);
    PyObject *ciphertext = whole ? PySequence_GetSlice(whole, 0, text) : NULL;
    Py_XDECREF(whole);
    Py_DECREF(sealed);
    Py_DECREF(iv);
    if (ciphertext == NULL) {
        Py_DECREF(bcb_data);
        return NULL;
    }
    return Py_BuildValue("(NlN)", ciphertext, algorithm, bcb_data);

fail_sealed:
    Py_DECREF(sealed);
fail_iv:
    Py_DECREF(iv);
fail_plain:
    Py_XDECREF(plain);
    return NULL;
}

/* An int attribute of a block; -1 with an exception set when it is not an int. A received
 * value too large for a long (block types and numbers go up to 2**64 - 1) comes back as -2,
 * which matches nothing this file looks for. */
static long int_attribute(PyObject *block, PyObject *name) {
    PyObject *value = PyObject_GetAttr(block, name);
    if (value == NULL) return -1;
    int overflow;
    long result = PyLong_AsLongAndOverflow(value, &overflow);
    Py_DECREF(value);
    return overflow ? -2 : result;
}

/* The CBOR encoding of [0, length]: the compression block of a stored payload. */
static Py_ssize_t stored_marker(unsigned char *out, unsigned long long length) {
    out[0] = 0x82;
    out[1] = ALGORITHM_STORED;
    if (length < 24) {
        out[2] = (unsigned char)length;
        return 3;
    }
    int bytes = length < 0x100 ? 1 : length < 0x10000 ? 2 : length < 0x100000000ULL ? 4 : 8;
    out[2] = (unsigned char)(bytes == 1 ? 24 : bytes == 2 ? 25 : bytes == 4 ? 26 : 27);
    for (int i = 0; i < bytes; i++) out[3 + i] = (unsigned char)(length >> (8 * (bytes - 1 - i)));
    return 3 + bytes;
}

/* open_known(blocks, primary, (decrypt, before_iv, between, after_tag, sealers), stream_min,
 *            max_payload, compression_type)
 *   -> plaintext | (plaintext, compression block data) | None
 *
 * What pipeline._open_known and BcbTemplate.open do for a template without key wrap: the
 * bundle must hold exactly one BCB, one compression block and no BIB, end with the payload
 * (block 1), and the BCB must be replicated in fragments and not "discard if unprocessable";
 * its data must be the template's layout with a 12-byte IV and a 16-byte tag in the holes; the
 * template must already have a sealer for the headers (sealers[(1, 1, payload flags, BCB
 * number, BCB flags)]) and the payload must be shorter than stream_min. Anything else gives None
 * and the Python path decides. AES-GCM's failure is decrypt's exception. A stored payload whose
 * compression block is [0, its length], within max_payload, comes back as bytes; anything else
 * as (plaintext, compression block data) for Compressor.restore to judge. */
static PyObject *open_known(PyObject *self, PyObject *const *call_args, Py_ssize_t nargs) {
    /* (blocks, primary, plan, stream_min, max_payload, compression_type), plan = (decrypt,
     * before_iv, between, after_tag, sealers): the template's constant part in one tuple */
    if (nargs != 6 || !PyTuple_Check(call_args[2]) || PyTuple_GET_SIZE(call_args[2]) != 5) {
        PyErr_SetString(PyExc_TypeError, "open_known(blocks, primary, plan, stream_min, "
                                         "max_payload, compression_type)");
        return NULL;
    }
    PyObject *plan = call_args[2];
    PyObject *args[9] = {call_args[0], call_args[1], PyTuple_GET_ITEM(plan, 1),
                         PyTuple_GET_ITEM(plan, 2), PyTuple_GET_ITEM(plan, 3),
                         PyTuple_GET_ITEM(plan, 4), PyTuple_GET_ITEM(plan, 0), call_args[3],
                         call_args[4]};
    PyObject *blocks = args[0], *primary = args[1], *sealers = args[5], *decrypt = args[6];
    if (!PyList_Check(blocks) || !PyBytes_Check(primary) || !PyBytes_Check(args[2]) ||
        !PyBytes_Check(args[3]) || !PyBytes_Check(args[4]) || !PyDict_Check(sealers)) {
        PyErr_SetString(PyExc_TypeError, "open_known: wrong argument types");
        return NULL;
    }
    Py_ssize_t stream_min = PyLong_AsSsize_t(args[7]);
    Py_ssize_t max_payload = PyLong_AsSsize_t(args[8]);
    long compression_type = PyLong_AsLong(call_args[5]);
    if ((stream_min == -1 || max_payload == -1 || compression_type == -1) && PyErr_Occurred())
        return NULL;

    Py_ssize_t count = PyList_GET_SIZE(blocks);
    PyObject *bcb = NULL, *marker = NULL, *payload = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *block = PyList_GET_ITEM(blocks, i);
        long type = int_attribute(block, name_block_type);
        if (type == -1 && PyErr_Occurred()) return NULL;
        if (type == BIB_TYPE) Py_RETURN_NONE;
        if (type == BCB_TYPE) {
            if (bcb != NULL) Py_RETURN_NONE;
            bcb = block;
        } else if (type == compression_type) {
            if (marker != NULL) Py_RETURN_NONE;
            marker = block;
        }
        if (i == count - 1) {
            if (type != PAYLOAD_TYPE) Py_RETURN_NONE;
            payload = block;
        }
    }
    if (bcb == NULL || marker == NULL || payload == NULL) Py_RETURN_NONE;
    long payload_number = int_attribute(payload, name_number);
    long payload_flags = int_attribute(payload, name_flags);
    long bcb_number = int_attribute(bcb, name_number);
    long bcb_flags = int_attribute(bcb, name_flags);
    if (PyErr_Occurred()) return NULL;
    if (payload_number != 1 || (bcb_flags & (REPLICATE | DISCARD)) != REPLICATE) Py_RETURN_NONE;

    PyObject *result = NULL, *bcb_data = NULL, *ciphertext = NULL, *marker_data = NULL;
    PyObject *sealer = NULL, *head = NULL, *tail = NULL, *key = NULL;
    Py_buffer bcb_view = {0}, text_view = {0}, marker_view = {0};
    if ((bcb_data = PyObject_GetAttr(bcb, name_data)) == NULL) goto done;
    if (PyObject_GetBuffer(bcb_data, &bcb_view, PyBUF_SIMPLE) < 0) goto done;
    Py_ssize_t before = PyBytes_GET_SIZE(args[2]), between = PyBytes_GET_SIZE(args[3]);
    Py_ssize_t after = PyBytes_GET_SIZE(args[4]);
    const char *asb = bcb_view.buf;
    Py_ssize_t tag_at = before + IV_SIZE + between;
    if (bcb_view.len != tag_at + TAG_SIZE + after ||
        memcmp(asb, PyBytes_AS_STRING(args[2]), before) != 0 ||
        memcmp(asb + before + IV_SIZE, PyBytes_AS_STRING(args[3]), between) != 0 ||
        memcmp(asb + tag_at + TAG_SIZE, PyBytes_AS_STRING(args[4]), after) != 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    key = Py_BuildValue("(iilll)", PAYLOAD_TYPE, 1, payload_flags, bcb_number, bcb_flags);
    if (key == NULL) goto done;
    sealer = PyDict_GetItemWithError(sealers, key);  /* borrowed */
    if (sealer == NULL) {
        if (!PyErr_Occurred()) result = Py_NewRef(Py_None);
        goto done;
    }
    if ((ciphertext = PyObject_GetAttr(payload, name_data)) == NULL) goto done;
    if (PyObject_GetBuffer(ciphertext, &text_view, PyBUF_SIMPLE) < 0) goto done;
    if (text_view.len >= stream_min) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if ((head = PyObject_GetAttr(sealer, name_head)) == NULL) goto done;
    if ((tail = PyObject_GetAttr(sealer, name_tail)) == NULL) goto done;
    if (!PyBytes_Check(head) || (tail != Py_None && !PyBytes_Check(tail))) {
        PyErr_SetString(PyExc_TypeError, "open_known: a sealer's frame must be bytes");
        goto done;
    }
    PyObject *iv = PyBytes_FromStringAndSize(asb + before, IV_SIZE);
    PyObject *aad = make_aad(head, primary, tail);
    Py_buffer sealed_parts[2] = {text_view, {.buf = (char *)asb + tag_at, .len = TAG_SIZE}};
    PyObject *sealed = concat(sealed_parts, 2);
    PyObject *plaintext = NULL;
    if (iv && aad && sealed) {
        PyObject *call[3] = {iv, sealed, aad};
        plaintext = PyObject_Vectorcall(decrypt, call, 3, NULL);
    }
    Py_XDECREF(iv);
    Py_XDECREF(aad);
    Py_XDECREF(sealed);
    if (plaintext == NULL) goto done;
    if (!PyBytes_Check(plaintext)) {
        Py_DECREF(plaintext);
        PyErr_SetString(PyExc_TypeError, "decrypt must return bytes");
        goto done;
    }
    if ((marker_data = PyObject_GetAttr(marker, name_data)) == NULL) {
        Py_DECREF(plaintext);
        goto done;
    }
    if (PyObject_GetBuffer(marker_data, &marker_view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(plaintext);
        goto done;
    }
    Py_ssize_t length = PyBytes_GET_SIZE(plaintext);
    unsigned char expected[11];
    Py_ssize_t expected_length = stored_marker(expected, (unsigned long long)length);
    int stored = !(length >= 4 && memcmp(PyBytes_AS_STRING(plaintext), zstd_magic, 4) == 0);
    if (stored && length <= max_payload && marker_view.len == expected_length &&
        memcmp(marker_view.buf, expected, expected_length) == 0) {
        result = plaintext;
    } else {
        result = Py_BuildValue("(NO)", plaintext, marker_data);
    }

done:
    if (bcb_view.obj) PyBuffer_Release(&bcb_view);
    if (text_view.obj) PyBuffer_Release(&text_view);
    if (marker_view.obj) PyBuffer_Release(&marker_view);
    Py_XDECREF(bcb_data);
    Py_XDECREF(ciphertext);
    Py_XDECREF(marker_data);
    Py_XDECREF(head);
    Py_XDECREF(tail);
    Py_XDECREF(key);
    return result;
}

static PyMethodDef methods[] = {
    {"seal_payload", (PyCFunction)(void (*)(void))seal_payload, METH_FASTCALL,
     "Compress or store, then encrypt, a new bundle's payload under a BCB-only rule."},
    {"open_known", (PyCFunction)(void (*)(void))open_known, METH_FASTCALL,
     "Open a bundle whose BCB matches a template the pipeline accepted before."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastpath(void) {
    iv_size = PyLong_FromLong(IV_SIZE);
    name_block_type = PyUnicode_InternFromString("block_type");
    name_number = PyUnicode_InternFromString("number");
    name_flags = PyUnicode_InternFromString("flags");
    name_data = PyUnicode_InternFromString("_data");  /* CanonicalBlock.data_view */
    name_head = PyUnicode_InternFromString("head");
    name_tail = PyUnicode_InternFromString("tail");
    if (!iv_size || !name_block_type || !name_number || !name_flags || !name_data || !name_head ||
        !name_tail)
        return NULL;
    if (pthread_atfork(NULL, NULL, forget_random_pool) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
        return NULL;
    }
    return PyModule_Create(&module);
}

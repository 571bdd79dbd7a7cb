/* The message engine's hottest small loops, compiled: autosmime.smime._speedups.
 *
 * Each function here has a pure-Python twin with the same answers and the same
 * exception types: crlf_only, clean_7bit, strip_whitespace, wrap_lines,
 * split_header and find_delimiters in autosmime/smime/_scan.py; read_tlv, expect, length, header
 * and tlv in autosmime/smime/_cms/der.py; walk_signed and walk_enveloped in
 * autosmime/smime/_cms/signed_walk.py and enveloped_walk.py. tests/smime/test_scan.py compares each
 * pair on generated input, for this build and for the portable one
 * (-DAUTOSMIME_NO_SIMD, what a machine without SSE2 gets); test_perf2_walks.py
 * does the same for the two CMS walks. Nothing here keeps a
 * pointer into its input after it returns.
 *
 * Why compiled: on a 10 KB message these loops cost about 85 us of a
 * decrypt+verify in Python (line-ending checks, base64 whitespace, header
 * blocks, some 60 DER headers), a third of the RSA operation the message needs;
 * memchr, 16-byte vector compares and plain C do the same work in a few.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE  /* memmem */
#include <Python.h>
#include <string.h>

#if defined(__SSE2__) && !defined(AUTOSMIME_NO_SIMD)
#include <emmintrin.h>
#endif

/* [start, end) of a buffer, clamped the way a Python slice is. */
static int
clamp_range(Py_ssize_t len, Py_ssize_t *start, Py_ssize_t *end)
{
    if (*start < 0 || *end < 0) {
        PyErr_SetString(PyExc_ValueError, "negative offset");
        return -1;
    }
    if (*end > len) *end = len;
    if (*start > *end) *start = *end;
    return 0;
}

/* (data, start=0): data's buffer and the range [start, len) clamped like a slice; 0, or -1 with an
 * exception (and no buffer held). */
static int
data_and_start(PyObject *const *args, Py_ssize_t nargs, const char *usage, Py_buffer *view,
               Py_ssize_t *start, Py_ssize_t *end)
{
    *start = 0;
    *end = PY_SSIZE_T_MAX;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    if (nargs == 2 && (*start = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred())
        return -1;
    if (PyObject_GetBuffer(args[0], view, PyBUF_SIMPLE) < 0)
        return -1;
    if (clamp_range(view->len, start, end) < 0) {
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(crlf_only_doc,
"crlf_only(data, start=0, end=None) -> bool\n\n"
"True when every CR and LF of data[start:end] belongs to a CRLF pair inside that range.");

static PyObject *
crlf_only(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t start = 0, end = PY_SSIZE_T_MAX;

    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "crlf_only(data, start=0, end=None)");
        return NULL;
    }
    if (nargs >= 2 && (start = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred())
        return NULL;
    if (nargs == 3 && args[2] != Py_None && (end = PyLong_AsSsize_t(args[2])) == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (clamp_range(view.len, &start, &end) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *q = (const unsigned char *)view.buf + start;
    const unsigned char *stop = (const unsigned char *)view.buf + end;
    /* Canonical iff each byte is an LF exactly when the byte before it (inside the range) is
     * a CR, and the range does not end with a CR. */
    unsigned after_cr = 0;
    int ok = 1;
#if defined(__SSE2__) && !defined(AUTOSMIME_NO_SIMD)
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    for (; ok && stop - q >= 16; q += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)q);
        unsigned crs = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, cr));
        unsigned lfs = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, lf));
        ok = lfs == (((crs << 1) | after_cr) & 0xFFFF);
        after_cr = crs >> 15;
    }
#else
    /* No vector unit to count on: memchr (vectorised by the C library) from line end to line end. */
    const unsigned char *first = q, *at;
    for (at = first; ok && (at = memchr(at, '\n', (size_t)(stop - at))) != NULL; at++)
        ok = at > first && at[-1] == '\r';
    for (at = first; ok && (at = memchr(at, '\r', (size_t)(stop - at))) != NULL; at++)
        ok = at + 1 < stop && at[1] == '\n';
    q = stop;
#endif
    for (; ok && q < stop; q++) {
        ok = (*q == '\n') == after_cr;
        after_cr = *q == '\r';
    }
    ok = ok && !after_cr;
    PyBuffer_Release(&view);
    return PyBool_FromLong(ok);
}

static const unsigned char is_space[256] = {[' '] = 1, ['\t'] = 1, ['\r'] = 1, ['\n'] = 1};

PyDoc_STRVAR(strip_whitespace_doc,
"strip_whitespace(data, start=0) -> bytes\n\n"
"data[start:] without its spaces, tabs, CRs and LFs: bytes(data[start:]).translate(None, b' \\t\\r\\n').");

static PyObject *
strip_whitespace(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t start, end;

    if (data_and_start(args, nargs, "strip_whitespace(data, start=0)", &view, &start, &end) < 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, end - start);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *q = (const unsigned char *)view.buf + start;
    const unsigned char *stop = (const unsigned char *)view.buf + end;
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);
    unsigned char *const out_start = dst;

#if defined(__SSE2__) && !defined(AUTOSMIME_NO_SIMD)
    const __m128i sp = _mm_set1_epi8(' '), tab = _mm_set1_epi8('\t');
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    /* The output never runs ahead of the input (dst - out_start <= q - (buf + start)), so
     * a full 16-byte store at dst stays inside the output whenever q + 16 <= stop. */
    while (stop - q >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)q);
        __m128i ws = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, sp), _mm_cmpeq_epi8(v, tab)),
                                  _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
        unsigned mask = (unsigned)_mm_movemask_epi8(ws);
        _mm_storeu_si128((__m128i *)dst, v);
        if (mask == 0) {
            dst += 16;
            q += 16;
            continue;
        }
        unsigned keep = (unsigned)__builtin_ctz(mask);  /* bytes before the first whitespace */
        dst += keep;
        q += keep;
        while (q < stop && is_space[*q])
            q++;
    }
#endif
    for (; q < stop; q++) {
        *dst = *q;
        dst += !is_space[*q];
    }

    PyBuffer_Release(&view);
    if (_PyBytes_Resize(&out, dst - out_start) < 0)
        return NULL;
    return out;
}

/* -- header blocks ------------------------------------------------------------------ */

static int
is_py_space(unsigned char c)  /* bytes.strip()'s whitespace */
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

/* The field's lower-cased, stripped name: what precedes its first colon. */
static PyObject *
field_name(const unsigned char *line, Py_ssize_t len)
{
    const unsigned char *colon = memchr(line, ':', (size_t)len);
    Py_ssize_t a = 0, b = colon ? colon - line : len;
    while (a < b && is_py_space(line[a])) a++;
    while (b > a && is_py_space(line[b - 1])) b--;
    PyObject *name = PyBytes_FromStringAndSize(NULL, b - a);
    if (name == NULL)
        return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(name);
    for (Py_ssize_t i = a; i < b; i++)
        out[i - a] = (line[i] >= 'A' && line[i] <= 'Z') ? line[i] + 32 : line[i];
    return name;
}

/* fields[-1] += line + CRLF */
static int
append_continuation(PyObject *fields, const unsigned char *line, Py_ssize_t len)
{
    Py_ssize_t last = PyList_GET_SIZE(fields) - 1;
    PyObject *old = PyList_GET_ITEM(fields, last);
    Py_ssize_t old_len = PyBytes_GET_SIZE(old);
    PyObject *joined = PyBytes_FromStringAndSize(NULL, old_len + len + 2);
    if (joined == NULL)
        return -1;
    char *out = PyBytes_AS_STRING(joined);
    memcpy(out, PyBytes_AS_STRING(old), (size_t)old_len);
    memcpy(out + old_len, line, (size_t)len);
    memcpy(out + old_len + len, "\r\n", 2);
    return PyList_SetItem(fields, last, joined);  /* steals joined, releases old */
}

PyDoc_STRVAR(split_header_doc,
"split_header(raw) -> (fields, names, body_start)\n\n"
"The header fields of a message (each with its continuation lines, CRLF-ended), their\n"
"lower-cased names, and where the body starts; ValueError on a malformed header block.");

static PyObject *
split_header(PyObject *module, PyObject *raw)
{
    Py_buffer view;
    PyObject *fields = NULL, *names = NULL, *result = NULL;

    if (PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *p = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len, head_end, body_start;

    /* The header block ends at the first blank line: the earliest LF followed by LF or CRLF. */
    if (n >= 2 && p[0] == '\r' && p[1] == '\n') {
        head_end = 0, body_start = 2;
    } else if (n >= 1 && p[0] == '\n') {
        head_end = 0, body_start = 1;
    } else {
        head_end = body_start = n;
        for (const unsigned char *q = p; (q = memchr(q, '\n', (size_t)(p + n - q))) != NULL; q++) {
            Py_ssize_t lf = q - p;
            int lflf = lf + 1 < n && p[lf + 1] == '\n';
            if (lflf || (lf + 2 < n && p[lf + 1] == '\r' && p[lf + 2] == '\n')) {
                head_end = lf > 0 && p[lf - 1] == '\r' ? lf - 1 : lf;
                body_start = lf + (lflf ? 2 : 3);
                break;
            }
        }
    }
    if ((fields = PyList_New(0)) == NULL || (names = PyList_New(0)) == NULL)
        goto done;
    /* Lines end at CRLF, CR or LF; empty lines are skipped. */
    for (Py_ssize_t i = 0; i < head_end;) {
        Py_ssize_t j = i;
        while (j < head_end && p[j] != '\r' && p[j] != '\n')
            j++;
        Py_ssize_t len = j - i;
        if (len > 0) {
            if (p[i] == ' ' || p[i] == '\t') {
                if (PyList_GET_SIZE(fields) == 0) {
                    PyErr_SetString(PyExc_ValueError, "message starts with a header continuation line");
                    goto done;
                }
                if (append_continuation(fields, p + i, len) < 0)
                    goto done;
            } else if (memchr(p + i, ':', (size_t)len) != NULL) {
                PyObject *field = PyBytes_FromStringAndSize(NULL, len + 2);
                if (field == NULL)
                    goto done;
                memcpy(PyBytes_AS_STRING(field), p + i, (size_t)len);
                memcpy(PyBytes_AS_STRING(field) + len, "\r\n", 2);
                int failed = PyList_Append(fields, field) < 0;
                Py_DECREF(field);
                PyObject *name = failed ? NULL : field_name(p + i, len);
                if (name == NULL)
                    goto done;
                failed = PyList_Append(names, name) < 0;
                Py_DECREF(name);
                if (failed)
                    goto done;
            } else {
                PyErr_SetString(PyExc_ValueError, "malformed header line");
                goto done;
            }
        }
        /* CRLF is one line end; a lone CR or LF is one too. */
        i = j + (j + 1 < head_end && p[j] == '\r' && p[j + 1] == '\n' ? 2 : 1);
    }
    result = Py_BuildValue("(OOn)", fields, names, body_start);
done:
    Py_XDECREF(fields);
    Py_XDECREF(names);
    PyBuffer_Release(&view);
    return result;
}

/* A DER TLV header at p[pos], inside p[:limit] of a buffer of len bytes: NULL and (tag, content
 * start, content end), or the reason it is malformed, the same message as the Python twin's ValueError.
 * The header must lie inside the buffer; the value only inside the container. */
static const char *
tlv_parse(const unsigned char *p, Py_ssize_t len, Py_ssize_t pos, Py_ssize_t limit,
          int *tag, Py_ssize_t *start, Py_ssize_t *end)
{
    Py_ssize_t available = limit < len ? limit : len;
    if (pos < 0)
        return "negative TLV position";
    if (pos > available - 2)
        return "truncated TLV";
    if ((p[pos] & 0x1F) == 0x1F)
        return "high tag number";
    unsigned first = p[pos + 1];
    unsigned long long n;
    *tag = p[pos];
    pos += 2;
    if (first < 0x80) {
        n = first;
    } else if (first == 0x80) {
        return "indefinite length";
    } else {
        unsigned count = first & 0x7F;
        if (count > 8 || pos > available - (Py_ssize_t)count)
            return "bad length";
        n = 0;
        for (unsigned i = 0; i < count; i++)
            n = (n << 8) | p[pos + i];
        pos += count;
    }
    if (n > (unsigned long long)(limit - pos))
        return "value overruns its container";
    *start = pos;
    *end = pos + (Py_ssize_t)n;
    return NULL;
}

/* tlv_parse on any bytes-like object: 0, or -1 with a ValueError. */
static int
tlv_at(PyObject *data, Py_ssize_t pos, Py_ssize_t limit, int *tag, Py_ssize_t *start, Py_ssize_t *end)
{
    Py_buffer view;

    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return -1;
    const char *err = tlv_parse((const unsigned char *)view.buf, view.len, pos, limit, tag, start, end);
    PyBuffer_Release(&view);
    if (err != NULL) {
        PyErr_SetString(PyExc_ValueError, err);
        return -1;
    }
    return 0;
}

static int
ssize_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char *usage, Py_ssize_t *out)
{
    if (nargs != want) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    for (Py_ssize_t i = 1; i < want; i++)
        if ((out[i - 1] = PyLong_AsSsize_t(args[i])) == -1 && PyErr_Occurred())
            return -1;
    return 0;
}

PyDoc_STRVAR(read_tlv_doc,
"read_tlv(data, pos, limit) -> (tag, start, end)\n\n"
"The DER TLV at data[pos] inside data[:limit]; ValueError if malformed (see autosmime.smime._cms.der).");

static PyObject *
read_tlv(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t a[2], start, end;
    int tag;

    if (ssize_args(args, nargs, 3, "read_tlv(data, pos, limit)", a) < 0
        || tlv_at(args[0], a[0], a[1], &tag, &start, &end) < 0)
        return NULL;
    return Py_BuildValue("(inn)", tag, start, end);
}

PyDoc_STRVAR(expect_doc,
"expect(data, pos, limit, tag) -> (start, end)\n\n"
"read_tlv, which must find ``tag``; ValueError otherwise.");

static PyObject *
expect(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t a[3], start, end;
    int tag;

    if (ssize_args(args, nargs, 4, "expect(data, pos, limit, tag)", a) < 0
        || tlv_at(args[0], a[0], a[1], &tag, &start, &end) < 0)
        return NULL;
    if (tag != a[2]) {
        PyErr_SetString(PyExc_ValueError, "unexpected tag");
        return NULL;
    }
    return Py_BuildValue("(nn)", start, end);
}

/* -- 7-bit clean entities ------------------------------------------------------------- */

PyDoc_STRVAR(clean_7bit_doc,
"clean_7bit(data, start=0) -> bool\n\n"
"True when data[start:] can be signed as it is: ASCII without NUL, every CR and LF in a CRLF\n"
"pair, no line over 998 octets, and no line that starts with \"From \" (which mbox relays mangle).");

#define MAX_LINE 998

static int
is_clean_7bit(const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t i = 0, line = 0;  /* line: where the current line starts */

    if (n >= 5 && memcmp(p, "From ", 5) == 0)
        return 0;
    while (i < n) {
#if defined(__SSE2__) && !defined(AUTOSMIME_NO_SIMD)
        /* Sixteen bytes at a time while none is 8-bit, NUL, CR or LF: most of a mail. */
        const __m128i zero = _mm_setzero_si128(), cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
        while (n - i >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
            __m128i special = _mm_or_si128(_mm_cmpeq_epi8(v, zero),
                                           _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
            unsigned stops = (unsigned)_mm_movemask_epi8(_mm_or_si128(v, special));  /* 8-bit or special */
            i += stops ? __builtin_ctz(stops) : 16;  /* the plain bytes before the first stop */
            if (i - line > MAX_LINE)
                return 0;
            if (stops)
                break;
        }
        if (i >= n)
            break;
#endif
        unsigned c = p[i];
        if (c == 0 || c >= 0x80 || c == '\n')  /* an LF here has no CR before it */
            return 0;
        if (c == '\r') {
            if (i + 1 >= n || p[i + 1] != '\n' || i - line > MAX_LINE)
                return 0;
            i += 2;
            line = i;
            if (n - i >= 5 && memcmp(p + i, "From ", 5) == 0)
                return 0;
            continue;
        }
        i++;
        if (i - line > MAX_LINE)
            return 0;
    }
    return 1;
}

static PyObject *
clean_7bit(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t start, end;

    if (data_and_start(args, nargs, "clean_7bit(data, start=0)", &view, &start, &end) < 0)
        return NULL;
    int clean = is_clean_7bit((const unsigned char *)view.buf + start, end - start);
    PyBuffer_Release(&view);
    return PyBool_FromLong(clean);
}

/* -- SignedData ------------------------------------------------------------------------ */

/* The TLV at p[pos] inside p[:limit] has tag ``want``: 0 and its content range, else -1 (no Python error). */
static int
expect_at(const unsigned char *p, Py_ssize_t len, Py_ssize_t pos, Py_ssize_t limit, int want,
          Py_ssize_t *start, Py_ssize_t *end)
{
    int tag;
    if (tlv_parse(p, len, pos, limit, &tag, start, end) != NULL || tag != want)
        return -1;
    return 0;
}

static PyObject *
slice(const unsigned char *p, Py_ssize_t start, Py_ssize_t end)
{
    return PyBytes_FromStringAndSize((const char *)p + start, end - start);
}

/* Appends a new reference to ``list``, which takes it; -1 on error. */
static int
append_new(PyObject *list, PyObject *item)
{
    if (item == NULL)
        return -1;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc;
}

#define SHAPE_IF(cond) do { if (cond) goto shape; } while (0)
#define SEQUENCE 0x30
#define SET 0x31
#define INTEGER 0x02
#define OCTET_STRING 0x04
#define OID 0x06

/* The SignerInfo in p[pos:end] as the tuple walk_signed documents; Py_None when it is not of the
 * fixed shape; NULL on error. Mirrors _signer in autosmime/smime/_cms/signed_walk.py. */
static PyObject *
walk_signer(const unsigned char *p, Py_ssize_t len, Py_ssize_t pos, Py_ssize_t end, PyObject *read_oids)
{
    PyObject *issuer = NULL, *serial = NULL, *ski = NULL, *digest = NULL, *attrs_der = NULL;
    PyObject *attributes = NULL, *values = NULL, *sig_alg = NULL, *signature = NULL, *result = NULL;
    Py_ssize_t s, e, sid_start, sid_end, name_end, serial_start, serial_end, alg_end, attrs_start, attrs_end;
    int tag;

    SHAPE_IF(expect_at(p, len, pos, end, INTEGER, &s, &pos) < 0);
    SHAPE_IF(tlv_parse(p, len, pos, end, &tag, &sid_start, &sid_end) != NULL);
    if (tag == SEQUENCE) {  /* issuerAndSerialNumber */
        SHAPE_IF(expect_at(p, len, sid_start, sid_end, SEQUENCE, &s, &name_end) < 0);
        SHAPE_IF(expect_at(p, len, name_end, sid_end, INTEGER, &serial_start, &serial_end) < 0);
        SHAPE_IF(serial_end != sid_end || serial_start == serial_end);
        if ((issuer = slice(p, sid_start, name_end)) == NULL
                || (serial = slice(p, serial_start, serial_end)) == NULL)
            goto error;
    } else if (tag == 0x80) {  /* [0] IMPLICIT SubjectKeyIdentifier */
        if ((ski = slice(p, sid_start, sid_end)) == NULL)
            goto error;
    } else {
        goto shape;
    }
    SHAPE_IF(expect_at(p, len, sid_end, end, SEQUENCE, &s, &alg_end) < 0);
    if ((digest = slice(p, sid_end, alg_end)) == NULL || (attributes = PyList_New(0)) == NULL)
        goto error;
    pos = alg_end;
    SHAPE_IF(tlv_parse(p, len, pos, end, &tag, &attrs_start, &attrs_end) != NULL);
    if (tag == 0xA0) {
        /* RFC 5652 5.4: the signature is over the attributes as received, retagged SET OF. */
        if ((attrs_der = PyBytes_FromStringAndSize(NULL, attrs_end - pos)) == NULL)
            goto error;
        char *out = PyBytes_AS_STRING(attrs_der);
        out[0] = SET;
        memcpy(out + 1, p + pos + 1, attrs_end - pos - 1);
        for (Py_ssize_t at = attrs_start; at < attrs_end;) {
            Py_ssize_t a_start, a_end, oid_end, v_start, v_end;
            SHAPE_IF(expect_at(p, len, at, attrs_end, SEQUENCE, &a_start, &a_end) < 0);
            SHAPE_IF(expect_at(p, len, a_start, a_end, OID, &s, &oid_end) < 0);
            SHAPE_IF(expect_at(p, len, oid_end, a_end, SET, &v_start, &v_end) < 0);
            SHAPE_IF(v_end != a_end);
            PyObject *oid = slice(p, a_start, oid_end);
            if (oid == NULL || (values = PyList_New(0)) == NULL) {
                Py_XDECREF(oid);
                goto error;
            }
            int wanted = PySet_Contains(read_oids, oid);
            if (wanted < 0) {
                Py_DECREF(oid);
                goto error;
            }
            for (Py_ssize_t v = v_start; v < v_end; v = e) {
                if (tlv_parse(p, len, v, v_end, &tag, &s, &e) != NULL) {
                    Py_DECREF(oid);
                    goto shape;
                }
                if (wanted && append_new(values, slice(p, v, e)) < 0) {
                    Py_DECREF(oid);
                    goto error;
                }
            }
            PyObject *kept = wanted ? PyList_AsTuple(values) : PyTuple_New(0);
            Py_CLEAR(values);
            if (kept == NULL) {
                Py_DECREF(oid);
                Py_XDECREF(kept);
                goto error;
            }
            PyObject *pair = PyTuple_Pack(2, oid, kept);
            Py_DECREF(oid);
            Py_DECREF(kept);
            if (append_new(attributes, pair) < 0)
                goto error;
            at = a_end;
        }
        pos = attrs_end;
    }
    SHAPE_IF(expect_at(p, len, pos, end, SEQUENCE, &s, &e) < 0);
    if ((sig_alg = slice(p, pos, e)) == NULL)
        goto error;
    SHAPE_IF(expect_at(p, len, e, end, OCTET_STRING, &s, &pos) < 0);
    if ((signature = slice(p, s, pos)) == NULL)
        goto error;
    if (pos != end) {  /* only unsignedAttrs may follow; never looked at */
        SHAPE_IF(tlv_parse(p, len, pos, end, &tag, &s, &e) != NULL || tag != 0xA1 || e != end);
    }
    PyObject *attr_tuple = PyList_AsTuple(attributes);
    if (attr_tuple == NULL)
        goto error;
    result = Py_BuildValue("(OOOOONOO)", issuer ? issuer : Py_None, serial ? serial : Py_None,
                           ski ? ski : Py_None, digest, attrs_der ? attrs_der : Py_None, attr_tuple,
                           sig_alg, signature);
    goto done;
shape:
    result = Py_NewRef(Py_None);
    goto done;
error:
    result = NULL;
done:
    Py_XDECREF(issuer);
    Py_XDECREF(serial);
    Py_XDECREF(ski);
    Py_XDECREF(digest);
    Py_XDECREF(attrs_der);
    Py_XDECREF(attributes);
    Py_XDECREF(values);
    Py_XDECREF(sig_alg);
    Py_XDECREF(signature);
    return result;
}

static const unsigned char SIGNED_DATA_OID[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02};

PyDoc_STRVAR(walk_signed_doc,
"walk_signed(der, read_oids) -> (content_type, content, certificates, signers) or None\n\n"
"The raw fields of a DER ContentInfo holding SignedData of the fixed shape that\n"
"autosmime.smime._cms.signed_walk reads by hand, or None for anything else. Each signer is\n"
"(issuer, serial octets, ski, digest algorithm, signed attributes, attributes, signature\n"
"algorithm, signature); an attribute's value TLVs are kept only when its type OID TLV is in read_oids.");

static PyObject *
walk_signed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    PyObject *content_type = NULL, *content = NULL, *certs = NULL, *signers = NULL, *result = NULL;
    Py_ssize_t s, e, start, end, pos, encap, encap_end, type_end, set_start, set_end;
    int tag;

    if (nargs != 2 || !PyAnySet_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "walk_signed(der, read_oids: frozenset)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *p = (const unsigned char *)view.buf;
    Py_ssize_t len = view.len;
    end = len;

    SHAPE_IF(expect_at(p, len, 0, end, SEQUENCE, &start, &e) < 0 || e != end);
    SHAPE_IF(start + (Py_ssize_t)sizeof SIGNED_DATA_OID > len
             || memcmp(p + start, SIGNED_DATA_OID, sizeof SIGNED_DATA_OID) != 0);
    SHAPE_IF(expect_at(p, len, start + sizeof SIGNED_DATA_OID, end, 0xA0, &start, &e) < 0 || e != end);
    SHAPE_IF(expect_at(p, len, start, end, SEQUENCE, &pos, &e) < 0 || e != end);
    SHAPE_IF(expect_at(p, len, pos, end, INTEGER, &s, &pos) < 0);  /* version: informational only */
    SHAPE_IF(expect_at(p, len, pos, end, SET, &s, &pos) < 0);  /* digestAlgorithms: each signer names its own */
    SHAPE_IF(expect_at(p, len, pos, end, SEQUENCE, &encap, &encap_end) < 0);
    SHAPE_IF(expect_at(p, len, encap, encap_end, OID, &s, &type_end) < 0);
    if ((content_type = slice(p, encap, type_end)) == NULL)
        goto error;
    if (type_end != encap_end) {
        Py_ssize_t explicit, explicit_end, octets, octets_end;
        SHAPE_IF(expect_at(p, len, type_end, encap_end, 0xA0, &explicit, &explicit_end) < 0);
        SHAPE_IF(expect_at(p, len, explicit, explicit_end, OCTET_STRING, &octets, &octets_end) < 0);
        SHAPE_IF(explicit_end != encap_end || octets_end != explicit_end);
        if ((content = slice(p, octets, octets_end)) == NULL)
            goto error;
    }
    pos = encap_end;
    if ((certs = PyList_New(0)) == NULL || (signers = PyList_New(0)) == NULL)
        goto error;
    SHAPE_IF(tlv_parse(p, len, pos, end, &tag, &start, &e) != NULL);
    if (tag == 0xA0) {  /* [0] IMPLICIT CertificateSet */
        for (Py_ssize_t at = start; at < e;) {
            int ctag;
            Py_ssize_t cend;
            SHAPE_IF(tlv_parse(p, len, at, e, &ctag, &s, &cend) != NULL);
            if (ctag == SEQUENCE) {
                if (append_new(certs, slice(p, at, cend)) < 0)
                    goto error;
            } else {
                /* Other CertificateChoices ([0] extended, [1]/[2] attribute, [3] other) are skipped. */
                SHAPE_IF(ctag < 0xA0 || ctag > 0xA3);
            }
            at = cend;
        }
        pos = e;
        SHAPE_IF(tlv_parse(p, len, pos, end, &tag, &s, &e) != NULL);
    }
    if (tag == 0xA1)  /* [1] IMPLICIT RevocationInfoChoices: not used */
        pos = e;
    SHAPE_IF(expect_at(p, len, pos, end, SET, &set_start, &set_end) < 0 || set_end != end);
    for (pos = set_start; pos < set_end; pos = e) {
        SHAPE_IF(expect_at(p, len, pos, set_end, SEQUENCE, &s, &e) < 0);
        PyObject *signer = walk_signer(p, len, s, e, args[1]);
        if (signer == Py_None) {
            Py_DECREF(signer);
            goto shape;
        }
        if (append_new(signers, signer) < 0)
            goto error;
    }
    PyObject *cert_tuple = PyList_AsTuple(certs), *signer_tuple = PyList_AsTuple(signers);
    if (cert_tuple == NULL || signer_tuple == NULL) {
        Py_XDECREF(cert_tuple);
        Py_XDECREF(signer_tuple);
        goto error;
    }
    result = Py_BuildValue("(ONNN)", content_type, content ? Py_NewRef(content) : Py_NewRef(Py_None),
                           cert_tuple, signer_tuple);
    goto done;
shape:
    result = Py_NewRef(Py_None);
    goto done;
error:
    result = NULL;
done:
    Py_XDECREF(content_type);
    Py_XDECREF(content);
    Py_XDECREF(certs);
    Py_XDECREF(signers);
    PyBuffer_Release(&view);
    return result;
}

/* -- EnvelopedData ------------------------------------------------------------------- */

/* One ktri RecipientInfo in p[pos:end] as (issuer, serial, ski, algorithm, encrypted key); Py_None
 * when it is not of the fixed shape; NULL on error. Mirrors _ktri in enveloped_walk.py. */
static PyObject *
walk_ktri(const unsigned char *p, Py_ssize_t len, Py_ssize_t pos, Py_ssize_t end)
{
    Py_ssize_t v_start, rid_start, rid_end, name_end, serial_start, serial_end, s, alg_end, key_start, key_end;
    int tag;

    if (expect_at(p, len, pos, end, INTEGER, &v_start, &pos) < 0
            || tlv_parse(p, len, pos, end, &tag, &rid_start, &rid_end) != NULL)
        return Py_NewRef(Py_None);
    int v0 = pos - v_start == 1 && p[v_start] == 0, v2 = pos - v_start == 1 && p[v_start] == 2;
    int ias = tag == SEQUENCE && v0;
    if (ias) {  /* issuerAndSerialNumber */
        if (expect_at(p, len, rid_start, rid_end, SEQUENCE, &s, &name_end) < 0
                || expect_at(p, len, name_end, rid_end, INTEGER, &serial_start, &serial_end) < 0
                || serial_end != rid_end || serial_start == serial_end)
            return Py_NewRef(Py_None);
    } else if (!(tag == 0x80 && v2)) {  /* [0] IMPLICIT SubjectKeyIdentifier, version 2 */
        return Py_NewRef(Py_None);
    }
    if (expect_at(p, len, rid_end, end, SEQUENCE, &s, &alg_end) < 0
            || expect_at(p, len, alg_end, end, OCTET_STRING, &key_start, &key_end) < 0 || key_end != end)
        return Py_NewRef(Py_None);
    if (ias)
        return Py_BuildValue("(y#y#Oy#y#)", p + rid_start, name_end - rid_start, p + serial_start,
                             serial_end - serial_start, Py_None, p + rid_end, alg_end - rid_end,
                             p + key_start, key_end - key_start);
    return Py_BuildValue("(OOy#y#y#)", Py_None, Py_None, p + rid_start, rid_end - rid_start,
                         p + rid_end, alg_end - rid_end, p + key_start, key_end - key_start);
}

static const unsigned char ENVELOPED_DATA_OID[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03};

PyDoc_STRVAR(walk_enveloped_doc,
"walk_enveloped(der) -> (recipients, content type, cipher OID, IV, ciphertext start, end) or None\n\n"
"The raw fields of a DER ContentInfo holding EnvelopedData of the fixed shape that\n"
"autosmime.smime._cms.enveloped_walk reads by hand (py_walk_enveloped_raw), or None.");

static PyObject *
walk_enveloped(PyObject *module, PyObject *der)
{
    Py_buffer view;
    PyObject *recipients = NULL, *result = NULL;
    Py_ssize_t s, e, start, pos, v_start, set_start, set_end, eci, eci_end, alg, alg_end, oid_end;
    Py_ssize_t iv_start, iv_end, ct_start, ct_end;

    if (PyObject_GetBuffer(der, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *p = (const unsigned char *)view.buf;
    Py_ssize_t len = view.len, end = len;

    SHAPE_IF(expect_at(p, len, 0, end, SEQUENCE, &start, &e) < 0 || e != end);
    SHAPE_IF(start + (Py_ssize_t)sizeof ENVELOPED_DATA_OID > len
             || memcmp(p + start, ENVELOPED_DATA_OID, sizeof ENVELOPED_DATA_OID) != 0);
    SHAPE_IF(expect_at(p, len, start + sizeof ENVELOPED_DATA_OID, end, 0xA0, &start, &e) < 0 || e != end);
    SHAPE_IF(expect_at(p, len, start, end, SEQUENCE, &pos, &e) < 0 || e != end);
    SHAPE_IF(expect_at(p, len, pos, end, INTEGER, &v_start, &pos) < 0);
    SHAPE_IF(pos - v_start != 1 || (p[v_start] != 0 && p[v_start] != 2));  /* RFC 5652 6.1: 0, or 2 */
    SHAPE_IF(expect_at(p, len, pos, end, SET, &set_start, &set_end) < 0);
    if ((recipients = PyList_New(0)) == NULL)
        goto error;
    for (pos = set_start; pos < set_end; pos = e) {
        SHAPE_IF(expect_at(p, len, pos, set_end, SEQUENCE, &s, &e) < 0);
        PyObject *recipient = walk_ktri(p, len, s, e);
        if (recipient == Py_None) {
            Py_DECREF(recipient);
            goto shape;
        }
        if (append_new(recipients, recipient) < 0)
            goto error;
    }
    SHAPE_IF(PyList_GET_SIZE(recipients) == 0);
    SHAPE_IF(expect_at(p, len, set_end, end, SEQUENCE, &eci, &eci_end) < 0 || eci_end != end);
    SHAPE_IF(expect_at(p, len, eci, end, OID, &s, &pos) < 0);
    SHAPE_IF(expect_at(p, len, pos, end, SEQUENCE, &alg, &alg_end) < 0);
    SHAPE_IF(expect_at(p, len, alg, alg_end, OID, &s, &oid_end) < 0);
    SHAPE_IF(expect_at(p, len, oid_end, alg_end, OCTET_STRING, &iv_start, &iv_end) < 0);
    SHAPE_IF(iv_end != alg_end || iv_end - iv_start != 16);
    SHAPE_IF(expect_at(p, len, alg_end, end, 0x80, &ct_start, &ct_end) < 0 || ct_end != end);
    PyObject *recipient_tuple = PyList_AsTuple(recipients);
    if (recipient_tuple == NULL)
        goto error;
    result = Py_BuildValue("(Ny#y#y#nn)", recipient_tuple, p + eci, pos - eci, p + alg, oid_end - alg,
                           p + iv_start, iv_end - iv_start, ct_start, ct_end);
    goto done;
shape:
    result = Py_NewRef(Py_None);
    goto done;
error:
    result = NULL;
done:
    Py_XDECREF(recipients);
    PyBuffer_Release(&view);
    return result;
}

/* -- base64 lines -------------------------------------------------------------------- */

PyDoc_STRVAR(wrap_lines_doc,
"wrap_lines(data, width) -> bytes\n\n"
"data cut into lines of ``width`` bytes (the last may be shorter), each ended with CRLF.");

static PyObject *
wrap_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t width;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "wrap_lines(data, width)");
        return NULL;
    }
    if ((width = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred())
        return NULL;
    if (width <= 0) {
        PyErr_SetString(PyExc_ValueError, "width must be positive");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t n = view.len, lines = n ? (n + width - 1) / width : 1;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n + 2 * lines);
    if (out != NULL) {
        const char *q = (const char *)view.buf;
        char *w = PyBytes_AS_STRING(out);
        for (Py_ssize_t left = n; lines--; ) {
            Py_ssize_t take = left < width ? left : width;
            memcpy(w, q, (size_t)take);
            w += take, q += take, left -= take;
            *w++ = '\r';
            *w++ = '\n';
        }
    }
    PyBuffer_Release(&view);
    return out;
}

/* -- multipart boundaries ----------------------------------------------------------- */

PyDoc_STRVAR(find_delimiters_doc,
"find_delimiters(body, boundary, origin) -> [(start, end, is_close), ...]\n\n"
"The boundary lines of a multipart body, up to the closing one (see autosmime.smime._scan).");

static PyObject *
find_delimiters(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer body, boundary;
    Py_ssize_t origin;
    PyObject *found = NULL;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "find_delimiters(body, boundary, origin)");
        return NULL;
    }
    if ((origin = PyLong_AsSsize_t(args[2])) == -1 && PyErr_Occurred())
        return NULL;
    if (origin < 0) {
        PyErr_SetString(PyExc_ValueError, "negative origin");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &body, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &boundary, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&body);
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)body.buf;
    const Py_ssize_t n = body.len, blen = boundary.len;
    const Py_ssize_t mlen = blen + 2;  /* "--" boundary */
    unsigned char *marker = PyMem_Malloc((size_t)mlen);
    if (marker == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    marker[0] = marker[1] = '-';
    memcpy(marker + 2, boundary.buf, (size_t)blen);
    if ((found = PyList_New(0)) == NULL)
        goto done;
    Py_ssize_t last_end = -1;
    for (Py_ssize_t from = origin; from <= n - mlen;) {
        const unsigned char *hit = memmem(p + from, (size_t)(n - from), marker, (size_t)mlen);
        if (hit == NULL)
            break;
        Py_ssize_t pos = hit - p, after = pos + mlen;
        int at_line_start = pos == origin || p[pos - 1] == '\n';
        int close = after + 2 <= n && p[after] == '-' && p[after + 1] == '-';
        if (close)
            after += 2;
        Py_ssize_t eol = after;
        while (eol < n && (p[eol] == ' ' || p[eol] == '\t'))
            eol++;
        if (at_line_start && (eol == n || p[eol] == '\r' || p[eol] == '\n')) {
            Py_ssize_t end = eol + (eol + 2 <= n && p[eol] == '\r' && p[eol + 1] == '\n' ? 2 : eol < n ? 1 : 0);
            Py_ssize_t before = pos - origin;
            Py_ssize_t start = pos - (before >= 2 && p[pos - 2] == '\r' && p[pos - 1] == '\n' ? 2 : before ? 1 : 0);
            if (last_end >= 0 && start < last_end)  /* the line break may close the previous boundary line */
                start = last_end;
            PyObject *item = Py_BuildValue("(nnO)", start, end, close ? Py_True : Py_False);
            if (item == NULL || PyList_Append(found, item) < 0) {
                Py_XDECREF(item);
                Py_CLEAR(found);
                goto done;
            }
            Py_DECREF(item);
            last_end = end;
            if (close)
                break;
        }
        from = pos + 1;
    }
done:
    PyMem_Free(marker);
    PyBuffer_Release(&boundary);
    PyBuffer_Release(&body);
    return found;
}

/* -- DER writing -------------------------------------------------------------------- */

/* Octets of the minimal DER length of n (n >= 0). */
static Py_ssize_t
length_size(Py_ssize_t n)
{
    Py_ssize_t k = 0;
    if (n < 0x80)
        return 1;
    for (size_t v = (size_t)n; v; v >>= 8)
        k++;
    return 1 + k;
}

static unsigned char *
write_length(unsigned char *out, Py_ssize_t n)
{
    Py_ssize_t size = length_size(n);
    if (size == 1) {
        *out++ = (unsigned char)n;
        return out;
    }
    *out++ = (unsigned char)(0x80 | (size - 1));
    for (Py_ssize_t i = size - 2; i >= 0; i--)
        *out++ = (unsigned char)((size_t)n >> (8 * i));
    return out;
}

static int
tag_and_length_args(PyObject *tag_obj, PyObject *n_obj, int *tag, Py_ssize_t *n)
{
    long t = tag_obj == NULL ? 0 : PyLong_AsLong(tag_obj);
    if (t == -1 && PyErr_Occurred())
        return -1;
    if (t < 0 || t > 255) {
        PyErr_SetString(PyExc_ValueError, "bytes must be in range(0, 256)");
        return -1;
    }
    *tag = (int)t;
    if (n_obj != NULL) {
        if ((*n = PyLong_AsSsize_t(n_obj)) == -1 && PyErr_Occurred())
            return -1;
        if (*n < 0) {
            PyErr_SetString(PyExc_ValueError, "bytes must be in range(0, 256)");
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(length_doc, "length(n) -> bytes\n\nDER length octets of n (minimal form).");

static PyObject *
length(PyObject *module, PyObject *n_obj)
{
    int tag;
    Py_ssize_t n = 0;
    unsigned char buf[16];
    if (tag_and_length_args(NULL, n_obj, &tag, &n) < 0)
        return NULL;
    return PyBytes_FromStringAndSize((char *)buf, write_length(buf, n) - buf);
}

PyDoc_STRVAR(header_doc, "header(tag, n) -> bytes\n\nTag and length octets of a value of n octets.");

static PyObject *
header(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int tag;
    Py_ssize_t n = 0;
    unsigned char buf[16];
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "header(tag, n)");
        return NULL;
    }
    if (tag_and_length_args(args[0], args[1], &tag, &n) < 0)
        return NULL;
    buf[0] = (unsigned char)tag;
    return PyBytes_FromStringAndSize((char *)buf, write_length(buf + 1, n) - buf);
}

PyDoc_STRVAR(tlv_doc, "tlv(tag, *parts) -> bytes\n\nA TLV whose value is the parts joined.");

static PyObject *
tlv(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int tag;
    Py_ssize_t total = 0, nparts = nargs - 1;
    PyObject *out = NULL;
    Py_buffer small[8], *views = small;

    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "tlv(tag, *parts)");
        return NULL;
    }
    if (tag_and_length_args(args[0], NULL, &tag, &total) < 0)
        return NULL;
    if (nparts > 8 && (views = PyMem_New(Py_buffer, nparts)) == NULL)
        return PyErr_NoMemory();
    Py_ssize_t got = 0;
    for (; got < nparts; got++) {
        if (PyObject_GetBuffer(args[got + 1], &views[got], PyBUF_SIMPLE) < 0)
            goto done;
        if (views[got].len > PY_SSIZE_T_MAX - 16 - total) {
            PyErr_NoMemory();
            got++;
            goto done;
        }
        total += views[got].len;
    }
    out = PyBytes_FromStringAndSize(NULL, 1 + length_size(total) + total);
    if (out == NULL)
        goto done;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(out);
    *w++ = (unsigned char)tag;
    w = write_length(w, total);
    for (Py_ssize_t i = 0; i < nparts; i++) {
        memcpy(w, views[i].buf, (size_t)views[i].len);
        w += views[i].len;
    }
done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    if (views != small)
        PyMem_Free(views);
    return out;
}

static PyMethodDef methods[] = {
    {"wrap_lines", (PyCFunction)(void (*)(void))wrap_lines, METH_FASTCALL, wrap_lines_doc},
    {"find_delimiters", (PyCFunction)(void (*)(void))find_delimiters, METH_FASTCALL, find_delimiters_doc},
    {"length", (PyCFunction)length, METH_O, length_doc},
    {"header", (PyCFunction)(void (*)(void))header, METH_FASTCALL, header_doc},
    {"tlv", (PyCFunction)(void (*)(void))tlv, METH_FASTCALL, tlv_doc},
    {"split_header", (PyCFunction)split_header, METH_O, split_header_doc},
    {"read_tlv", (PyCFunction)(void (*)(void))read_tlv, METH_FASTCALL, read_tlv_doc},
    {"expect", (PyCFunction)(void (*)(void))expect, METH_FASTCALL, expect_doc},
    {"crlf_only", (PyCFunction)(void (*)(void))crlf_only, METH_FASTCALL, crlf_only_doc},
    {"strip_whitespace", (PyCFunction)(void (*)(void))strip_whitespace, METH_FASTCALL, strip_whitespace_doc},
    {"clean_7bit", (PyCFunction)(void (*)(void))clean_7bit, METH_FASTCALL, clean_7bit_doc},
    {"walk_enveloped", (PyCFunction)walk_enveloped, METH_O, walk_enveloped_doc},
    {"walk_signed", (PyCFunction)(void (*)(void))walk_signed, METH_FASTCALL, walk_signed_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "autosmime.smime._speedups",
    .m_doc = "Compiled twins of byte scans in autosmime.smime._scan and DER helpers in autosmime.smime._cms.der.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module_def);
}

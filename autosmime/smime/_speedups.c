/* The message engine's hottest small loops, compiled: autosmime.smime._speedups.
 *
 * Each function here has a pure-Python twin with the same answers and the same
 * exception types: crlf_only, strip_whitespace, wrap_lines, split_header and
 * find_delimiters in autosmime/smime/_scan.py; read_tlv, expect, length, header
 * and tlv in autosmime/smime/_cms/der.py. tests/smime/test_scan.py compares each
 * pair on generated input, for this build and for the portable one
 * (-DAUTOSMIME_NO_SIMD, what a machine without SSE2 gets). Nothing here keeps a
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
    Py_ssize_t start = 0, end = PY_SSIZE_T_MAX;

    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "strip_whitespace(data, start=0)");
        return NULL;
    }
    if (nargs == 2 && (start = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (clamp_range(view.len, &start, &end) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
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

/* A DER TLV header at data[pos], inside data[:limit]: 0 and (tag, content start, content end), or -1
 * with a ValueError carrying the same message as the Python twin. */
static int
tlv_at(PyObject *data, Py_ssize_t pos, Py_ssize_t limit, int *tag, Py_ssize_t *start, Py_ssize_t *end)
{
    Py_buffer view;
    const char *err = NULL;

    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return -1;
    const unsigned char *p = (const unsigned char *)view.buf;
    /* The header must lie inside the data; the value only inside the container. */
    Py_ssize_t available = limit < view.len ? limit : view.len;
    if (pos < 0) {
        err = "negative TLV position";
    } else if (pos > available - 2) {
        err = "truncated TLV";
    } else if ((p[pos] & 0x1F) == 0x1F) {
        err = "high tag number";
    } else {
        unsigned first = p[pos + 1];
        unsigned long long n = 0;
        *tag = p[pos];
        pos += 2;
        if (first < 0x80) {
            n = first;
        } else if (first == 0x80) {
            err = "indefinite length";
        } else {
            unsigned count = first & 0x7F;
            if (count > 8 || pos > available - (Py_ssize_t)count) {
                err = "bad length";
            } else {
                n = 0;
                for (unsigned i = 0; i < count; i++)
                    n = (n << 8) | p[pos + i];
                pos += count;
            }
        }
        if (err == NULL && n > (unsigned long long)(limit - pos))
            err = "value overruns its container";
        if (err == NULL) {
            *start = pos;
            *end = pos + (Py_ssize_t)n;
        }
    }
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

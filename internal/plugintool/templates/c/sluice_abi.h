/* sluice_abi.h: small helpers for writing a Sluice plugin (ABI v1) in C.
 *
 * The ABI is specified byte by byte in plugins/sdk/ABI.md; this header is
 * written against that document only, so its comments cite its sections.
 * It needs wasi-libc (malloc, memcpy) and builds as a WASI reactor:
 *
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor \
 *         -Wl,--strip-debug -o plugin.wasm plugin.c
 *
 * (`agent plugin build` runs exactly that.) Include it in exactly one .c
 * file: it defines the sluice_v1_alloc export and keeps the response in
 * static buffers. The plugin defines sluice_v1_init and sluice_v1_process.
 *
 * Wasm is little-endian, as the ABI is (§1), so multi-byte values are
 * copied with memcpy rather than assembled byte by byte.
 *
 * Not covered here: stateful plugins (§8.7-8.9) and metrics (§8.10). */
#ifndef SLUICE_ABI_H
#define SLUICE_ABI_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SLUICE_EXPORT(name) __attribute__((export_name(name)))

/* Status words (§5). */
/* SL_INVALID_CONFIG, at init only: the config itself is wrong, so a
 * scheduled run that fails on it is not retried (§5). */
enum { SL_OK = 0, SL_ERROR = 1, SL_FATAL = 2, SL_INVALID_CONFIG = 3 };
/* Descriptor modes (§6.2). */
enum { SL_MODE_BYTES = 0, SL_MODE_COLUMNS = 1 };
/* Field types (§8.5) and the field flag "required" (§6.2). */
enum { SL_INT = 1, SL_FLOAT = 2, SL_BOOL = 3, SL_STRING = 4, SL_TIME = 5, SL_VALUE = 6 };
enum { SL_REQUIRED = 1 };
/* Per-message actions (§7.2, §8.3); SL_REPLACE is bytes mode only. */
enum { SL_KEEP = 0, SL_DROP = 1, SL_REPLACE = 2, SL_FAIL = 3 };
/* Log levels of sluice_v1.log (§2). */
enum { SL_LOG_DEBUG = -4, SL_LOG_INFO = 0, SL_LOG_WARN = 4, SL_LOG_ERROR = 8 };

/* The one optional import (§2). Declaring it costs nothing: the linker
 * imports it only if the plugin calls sl_log. */
__attribute__((import_module("sluice_v1"), import_name("log")))
void sluice_v1_log(int32_t level, const char *msg, uint32_t len);

static inline void sl_log(int32_t level, const char *msg) {
    sluice_v1_log(level, msg, (uint32_t)strlen(msg));
}

/* ---- the request buffer (§3.2) ---------------------------------------- */

static uint8_t *sl_req_buf;

/* The host asks again only for a request longer than the last size, so the
 * old buffer is ours to free once it does. The region must be 8-aligned so
 * that int, float and time columns can be read in place (§8.1). Returning
 * 0 when memory runs out is allowed: the host fails the call. */
SLUICE_EXPORT("sluice_v1_alloc") uint8_t *sluice_v1_alloc(uint32_t size) {
    free(sl_req_buf);
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    sl_req_buf = aligned_alloc(8, ((size_t)size + 7) & ~(size_t)7);
    return sl_req_buf;
}

/* ---- growable buffers ------------------------------------------------- */

typedef struct {
    uint8_t *p;
    uint32_t len, cap;
} sl_buf;

/* The response (guest-owned, §3.3: the host copies it before the next call,
 * so one buffer serves every call), and the failure and metadata lists of a
 * columns response, which go after the last column and so are collected
 * aside until then. */
static sl_buf sl_out, sl_fails, sl_metas;
static uint32_t sl_nfails, sl_nmetas;

static inline void sl_reserve(sl_buf *b, uint32_t n) {
    if ((uint64_t)b->len + n <= b->cap) return;
    uint64_t cap = 2 * (uint64_t)b->cap + n + 64;
    if (cap > UINT32_MAX) __builtin_trap();
    uint8_t *p = realloc(b->p, (size_t)cap);
    if (p == NULL) __builtin_trap(); /* out of memory: the host replaces us (§9) */
    b->p = p;
    b->cap = (uint32_t)cap;
}

/* sl_put appends n bytes from src (zeros if src is NULL) and returns their
 * offset. Keep offsets, not pointers, across puts: the buffer may move. */
static inline uint32_t sl_put(sl_buf *b, const void *src, uint32_t n) {
    sl_reserve(b, n);
    uint32_t at = b->len;
    if (src) memcpy(b->p + at, src, n);
    else memset(b->p + at, 0, n);
    b->len += n;
    return at;
}
static inline void sl_put_u8(sl_buf *b, uint8_t v) { sl_put(b, &v, 1); }
static inline void sl_put_u16(sl_buf *b, uint16_t v) { sl_put(b, &v, 2); }
static inline void sl_put_u32(sl_buf *b, uint32_t v) { sl_put(b, &v, 4); }
/* A `string`/`bytes` (§1): u32 length, then the bytes. */
static inline void sl_put_str(sl_buf *b, const void *s, uint32_t n) {
    sl_put_u32(b, n);
    sl_put(b, s, n);
}
/* pad8 (§1): zeros up to a multiple of 8 from the start of the buffer. */
static inline void sl_pad8(sl_buf *b) {
    static const uint8_t zeros[8];
    sl_put(b, zeros, (8 - b->len % 8) % 8);
}

/* The packed result of init and process (§3.3). */
static inline uint64_t sl_packed(void) {
    return (uint64_t)(uintptr_t)sl_out.p << 32 | sl_out.len;
}

/* sl_error answers a call with status SL_ERROR (the call fails, the
 * instance is kept), SL_FATAL (it is replaced) or, at init,
 * SL_INVALID_CONFIG, and a message (§5). */
static inline uint64_t sl_error(uint32_t status, const char *msg) {
    sl_out.len = 0;
    sl_put_u32(&sl_out, status);
    sl_put_str(&sl_out, msg, (uint32_t)strlen(msg));
    return sl_packed();
}

/* ---- init (§6) -------------------------------------------------------- */

/* sl_config_is_empty reports whether the init request carries no settings:
 * no config (len 0), `null` or `{}` (§6.1). A plugin that takes no config
 * should refuse anything else, so a typo fails at load. */
static inline int sl_config_is_empty(const uint8_t *cfg, uint32_t len) {
    return len == 0 || (len == 4 && memcmp(cfg, "null", 4) == 0) ||
           (len == 2 && memcmp(cfg, "{}", 2) == 0);
}

typedef struct {
    uint8_t type;  /* SL_INT ... SL_VALUE */
    uint8_t flags; /* SL_REQUIRED, inputs only */
    const char *name; /* a field path (§8.5) */
} sl_field;

static inline void sl_put_fields(const sl_field *f, uint32_t n) {
    sl_put_u32(&sl_out, n);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = (uint32_t)strlen(f[i].name);
        sl_put_u8(&sl_out, f[i].type);
        sl_put_u8(&sl_out, f[i].flags);
        sl_put_u16(&sl_out, (uint16_t)len); /* u16 here, unlike every other length */
        sl_put(&sl_out, f[i].name, len);
    }
}

/* sl_descriptor answers init with the descriptor (§6.2): the mode, the
 * descriptor flags (0 for a stateless plugin) and, in columns mode, the
 * fields read and written, in the order their columns will come. */
static inline uint64_t sl_descriptor(uint8_t mode, uint8_t flags, const sl_field *in, uint32_t n_in,
                              const sl_field *out, uint32_t n_out) {
    sl_out.len = 0;
    sl_put_u32(&sl_out, SL_OK);
    sl_put_u8(&sl_out, mode);
    sl_put_u8(&sl_out, flags);
    sl_put_u16(&sl_out, 0); /* reserved */
    sl_put_fields(in, n_in);
    sl_put_fields(out, n_out);
    return sl_packed();
}

/* ---- reading a request ------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    uint32_t len, off;
} sl_reader;

/* sl_take returns the next n bytes of the request, or NULL if there are not
 * that many (a truncated request). */
static inline const uint8_t *sl_take(sl_reader *r, uint64_t n) {
    if (r->off + n > r->len) return NULL;
    const uint8_t *at = r->p + r->off;
    r->off += (uint32_t)n;
    return at;
}
static inline uint32_t sl_pad8_len(uint64_t n) { return (uint32_t)((8 - n % 8) % 8); }
static inline int sl_skip_pad8(sl_reader *r) { return sl_take(r, sl_pad8_len(r->off)) != NULL; }
static inline int sl_get_u32(sl_reader *r, uint32_t *v) {
    const uint8_t *p = sl_take(r, 4);
    if (p) memcpy(v, p, 4);
    return p != NULL;
}

/* sl_request reads the 8-byte header shared by both modes (§7.1, §8.2):
 * the number of messages or rows, and a reserved word. */
static inline int sl_request(sl_reader *r, const uint8_t *req, uint32_t len, uint32_t *rows) {
    r->p = req;
    r->len = len;
    r->off = 0;
    uint32_t reserved;
    return sl_get_u32(r, rows) && sl_get_u32(r, &reserved);
}

/* ---- columns mode: input columns (§8.1, §8.2) ------------------------- */

typedef struct {
    uint32_t rows;
    /* One byte per row: non-zero when present; for SL_VALUE, the kind. */
    const uint8_t *valid;
    const int64_t *i64;  /* SL_INT, SL_TIME (nanoseconds since the epoch, UTC) */
    const double *f64;   /* SL_FLOAT */
    const uint8_t *bools; /* SL_BOOL: non-zero is true */
    const uint32_t *offs; /* SL_STRING, SL_VALUE: rows+1 offsets into data */
    const uint8_t *data;
} sl_column;

/* sl_column_read reads the next input column, of the type declared for it.
 * Fixed-width values are viewed in place: the request starts 8-aligned
 * (sluice_v1_alloc) and every column starts on a multiple of 8. */
static inline int sl_column_read(sl_reader *r, uint8_t type, uint32_t rows, sl_column *c) {
    memset(c, 0, sizeof *c);
    c->rows = rows;
    if (!(c->valid = sl_take(r, rows)) || !sl_skip_pad8(r)) return 0;
    const uint8_t *v;
    switch (type) {
    case SL_INT:
    case SL_TIME:
    case SL_FLOAT:
        if (!(v = sl_take(r, 8 * (uint64_t)rows))) return 0;
        c->i64 = (const int64_t *)v;
        c->f64 = (const double *)v;
        return 1; /* 8·rows is already a multiple of 8 */
    case SL_BOOL:
        if (!(c->bools = sl_take(r, rows))) return 0;
        return sl_skip_pad8(r);
    case SL_STRING:
    case SL_VALUE:
        if (!(v = sl_take(r, 4 * ((uint64_t)rows + 1))) || !sl_skip_pad8(r)) return 0;
        c->offs = (const uint32_t *)v;
        if (!(c->data = sl_take(r, c->offs[rows]))) return 0;
        return sl_skip_pad8(r);
    }
    return 0;
}

static inline int sl_has(const sl_column *c, uint32_t row) { return c->valid[row] != 0; }

/* sl_str returns a string row's bytes (not NUL-terminated) and length. */
static inline const uint8_t *sl_str(const sl_column *c, uint32_t row, uint32_t *len) {
    *len = c->offs[row + 1] - c->offs[row];
    return c->data + c->offs[row];
}

/* ---- columns mode: the response (§8.3) -------------------------------- */

static uint32_t sl_rows, sl_actions;

/* sl_columns_begin starts a response of rows rows, every action keep. Then
 * add one output column per declared output, in descriptor order, set rows,
 * and finish with sl_columns_end. */
static inline void sl_columns_begin(uint32_t rows) {
    sl_out.len = sl_fails.len = sl_metas.len = 0;
    sl_nfails = sl_nmetas = 0;
    sl_rows = rows;
    sl_put_u32(&sl_out, SL_OK);
    sl_put_u32(&sl_out, rows);
    sl_actions = sl_put(&sl_out, NULL, rows);
    sl_pad8(&sl_out);
}

/* An output column: offsets of its parts in sl_out. */
typedef struct {
    uint32_t valid, values;
    uint32_t next; /* string columns: the next row not yet written */
} sl_outcol;

/* sl_out_fixed adds an int, float, time or bool output column, every row
 * absent; set rows with sl_set_*. */
static inline sl_outcol sl_out_fixed(uint8_t type) {
    sl_outcol c = {0, 0, 0};
    c.valid = sl_put(&sl_out, NULL, sl_rows);
    sl_pad8(&sl_out);
    c.values = sl_put(&sl_out, NULL, (type == SL_BOOL ? 1 : 8) * sl_rows);
    sl_pad8(&sl_out);
    return c;
}

static inline void sl_set_i64(sl_outcol c, uint32_t row, int64_t v) {
    sl_out.p[c.valid + row] = 1;
    memcpy(sl_out.p + c.values + 8 * row, &v, 8);
}
static inline void sl_set_f64(sl_outcol c, uint32_t row, double v) {
    sl_out.p[c.valid + row] = 1;
    memcpy(sl_out.p + c.values + 8 * row, &v, 8);
}
static inline void sl_set_bool(sl_outcol c, uint32_t row, int v) {
    sl_out.p[c.valid + row] = 1;
    sl_out.p[c.values + row] = v ? 1 : 0;
}

/* A string output column is written in row order: sl_out_string_begin, then
 * sl_set_str for rows in increasing order (skipped rows stay absent), then
 * sl_out_string_end before the next column. */
static inline sl_outcol sl_out_string_begin(void) {
    sl_outcol c = {0, 0, 0};
    c.valid = sl_put(&sl_out, NULL, sl_rows);
    sl_pad8(&sl_out);
    c.values = sl_put(&sl_out, NULL, 4 * (sl_rows + 1)); /* offsets, off[0] = 0 */
    sl_pad8(&sl_out);
    return c;
}
static inline uint32_t sl_str_data_len(const sl_outcol *c) {
    uint32_t end;
    memcpy(&end, sl_out.p + c->values + 4 * c->next, 4);
    return end;
}
static inline void sl_str_fill(sl_outcol *c, uint32_t upto) {
    /* Absent rows are empty ranges: off[i+1] = off[i] (§8.1). */
    uint32_t end = sl_str_data_len(c);
    for (; c->next < upto; c->next++) memcpy(sl_out.p + c->values + 4 * (c->next + 1), &end, 4);
}
static inline void sl_set_str(sl_outcol *c, uint32_t row, const void *s, uint32_t n) {
    if (row < c->next || row >= sl_rows) __builtin_trap(); /* rows must come in order */
    sl_str_fill(c, row);
    sl_out.p[c->valid + row] = 1;
    uint32_t end = sl_str_data_len(c) + n;
    sl_put(&sl_out, s, n);
    memcpy(sl_out.p + c->values + 4 * (row + 1), &end, 4);
    c->next = row + 1;
}
static inline void sl_out_string_end(sl_outcol *c) {
    sl_str_fill(c, sl_rows);
    sl_pad8(&sl_out);
}

/* sl_fail marks a row failed with a reason, sl_drop removes it, sl_meta
 * sets metadata on its message (whatever its action). */
static inline void sl_fail(uint32_t row, const char *reason) {
    sl_out.p[sl_actions + row] = SL_FAIL;
    sl_put_u32(&sl_fails, row);
    sl_put_str(&sl_fails, reason, (uint32_t)strlen(reason));
    sl_nfails++;
}
static inline void sl_drop(uint32_t row) { sl_out.p[sl_actions + row] = SL_DROP; }
static inline void sl_meta(uint32_t row, const char *key, const char *value) {
    sl_put_u32(&sl_metas, row);
    sl_put_str(&sl_metas, key, (uint32_t)strlen(key));
    sl_put_str(&sl_metas, value, (uint32_t)strlen(value));
    sl_nmetas++;
}

/* sl_columns_end appends the failures and metadata lists, packed right after
 * the last column, and returns the packed result. */
static inline uint64_t sl_columns_end(void) {
    sl_put_u32(&sl_out, sl_nfails);
    sl_put(&sl_out, sl_fails.p, sl_fails.len);
    sl_put_u32(&sl_out, sl_nmetas);
    sl_put(&sl_out, sl_metas.p, sl_metas.len);
    return sl_packed();
}

/* ---- bytes mode (§7) -------------------------------------------------- */

typedef struct {
    const uint8_t *body;
    uint32_t body_len;
    uint32_t n_meta;
    const uint8_t *meta; /* n_meta × (string key, string value), packed */
    uint32_t meta_len;
} sl_message;

/* sl_next_message reads the next message of a bytes request (§7.1). */
static inline int sl_next_message(sl_reader *r, sl_message *m) {
    if (!sl_get_u32(r, &m->body_len) || !(m->body = sl_take(r, m->body_len)) || !sl_get_u32(r, &m->n_meta))
        return 0;
    uint32_t start = r->off;
    for (uint32_t i = 0; i < 2 * m->n_meta; i++) {
        uint32_t n;
        if (!sl_get_u32(r, &n) || !sl_take(r, n)) return 0;
    }
    m->meta = r->p + start;
    m->meta_len = r->off - start;
    return 1;
}

/* sl_message_meta looks a metadata key up; it returns 0 if it is not set. */
static inline int sl_message_meta(const sl_message *m, const char *key, const uint8_t **val, uint32_t *len) {
    sl_reader r = {m->meta, m->meta_len, 0};
    uint32_t klen = (uint32_t)strlen(key);
    for (uint32_t i = 0; i < m->n_meta; i++) {
        uint32_t kn, vn;
        const uint8_t *k, *v;
        sl_get_u32(&r, &kn);
        k = sl_take(&r, kn);
        sl_get_u32(&r, &vn);
        v = sl_take(&r, vn);
        if (kn == klen && memcmp(k, key, klen) == 0) {
            *val = v;
            *len = vn;
            return 1;
        }
    }
    return 0;
}

/* sl_bytes_begin starts a bytes response of n results; then, per message in
 * order, sl_bytes_result and n_meta calls of sl_bytes_meta; then
 * sl_packed(). */
static inline void sl_bytes_begin(uint32_t n) {
    sl_out.len = 0;
    sl_put_u32(&sl_out, SL_OK);
    sl_put_u32(&sl_out, n);
}

/* sl_bytes_result writes one result (§7.2): for SL_REPLACE data is the new
 * body, for SL_FAIL the reason; otherwise data is ignored. */
static inline void sl_bytes_result(uint8_t action, const void *data, uint32_t len, uint32_t n_meta) {
    sl_put_u8(&sl_out, action);
    if (action == SL_REPLACE || action == SL_FAIL) sl_put_str(&sl_out, data, len);
    sl_put_u32(&sl_out, n_meta);
}
static inline void sl_bytes_meta(const char *key, const void *value, uint32_t len) {
    sl_put_str(&sl_out, key, (uint32_t)strlen(key));
    sl_put_str(&sl_out, value, len);
}

#endif /* SLUICE_ABI_H */

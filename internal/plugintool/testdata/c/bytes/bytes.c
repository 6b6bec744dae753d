/* A bytes-mode test plugin for the bytes helpers of sluice_abi.h: it
 * upper-cases each body (replace) and sets the metadata len to the body's
 * length, drops a body "drop", fails a body "bye" (keeping len), and keeps
 * a body "keep" as it is, copying metadata "in" to "in_seen" if set. */
#include <stdio.h>

#include "../../../../../examples/wasm/c-transform/sluice_abi.h"

SLUICE_EXPORT("sluice_v1_init") uint64_t sluice_v1_init(const uint8_t *cfg, uint32_t len) {
    if (!sl_config_is_empty(cfg, len)) return sl_error(SL_ERROR, "config: bytes takes no config");
    return sl_descriptor(SL_MODE_BYTES, 0, NULL, 0, NULL, 0);
}

static int is(const sl_message *m, const char *s) {
    return m->body_len == strlen(s) && memcmp(m->body, s, m->body_len) == 0;
}

SLUICE_EXPORT("sluice_v1_process") uint64_t sluice_v1_process(const uint8_t *req, uint32_t len) {
    sl_reader r;
    uint32_t n;
    if (!sl_request(&r, req, len, &n)) return sl_error(SL_ERROR, "truncated request");
    sl_bytes_begin(n);
    for (uint32_t i = 0; i < n; i++) {
        sl_message m;
        if (!sl_next_message(&r, &m)) return sl_error(SL_ERROR, "truncated message");
        char lenbuf[12];
        int lenlen = snprintf(lenbuf, sizeof lenbuf, "%u", (unsigned)m.body_len);
        if (is(&m, "drop")) {
            sl_bytes_result(SL_DROP, NULL, 0, 0);
        } else if (is(&m, "bye")) {
            sl_bytes_result(SL_FAIL, "no goodbyes", 11, 1);
            sl_bytes_meta("len", lenbuf, (uint32_t)lenlen);
        } else if (is(&m, "keep")) {
            const uint8_t *in;
            uint32_t inlen;
            int has = sl_message_meta(&m, "in", &in, &inlen);
            sl_bytes_result(SL_KEEP, NULL, 0, has ? 1 : 0);
            if (has) sl_bytes_meta("in_seen", in, inlen);
        } else {
            /* The request is ours to scribble on during the call (§3.2). */
            uint8_t *b = (uint8_t *)m.body;
            for (uint32_t j = 0; j < m.body_len; j++)
                if (b[j] >= 'a' && b[j] <= 'z') b[j] -= 'a' - 'A';
            sl_bytes_result(SL_REPLACE, b, m.body_len, 1);
            sl_bytes_meta("len", lenbuf, (uint32_t)lenlen);
        }
    }
    return sl_packed();
}

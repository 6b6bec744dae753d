/* A columns-mode test plugin for the helpers of sluice_abi.h that the
 * transform does not use: string, int and bool inputs, a string output
 * written with rows skipped, a float output, drop, fail and metadata.
 *
 * Per row: flag true drops it; name gives greeting "hi NAME"; n gives
 * half = n / 2, or fails the row if n is negative; every row gets the
 * metadata seen=yes. */
#include "../../../../../examples/wasm/c-transform/sluice_abi.h"

static const sl_field inputs[] = {
    {SL_STRING, 0, "name"},
    {SL_INT, 0, "n"},
    {SL_BOOL, 0, "flag"},
};
static const sl_field outputs[] = {
    {SL_STRING, 0, "greeting"},
    {SL_FLOAT, 0, "half"},
};

SLUICE_EXPORT("sluice_v1_init") uint64_t sluice_v1_init(const uint8_t *cfg, uint32_t len) {
    if (!sl_config_is_empty(cfg, len)) return sl_error(SL_ERROR, "config: columns takes no config");
    return sl_descriptor(SL_MODE_COLUMNS, 0, inputs, 3, outputs, 2);
}

SLUICE_EXPORT("sluice_v1_process") uint64_t sluice_v1_process(const uint8_t *req, uint32_t len) {
    sl_reader r;
    uint32_t rows;
    sl_column name, n, flag;
    if (!sl_request(&r, req, len, &rows) || !sl_column_read(&r, SL_STRING, rows, &name) ||
        !sl_column_read(&r, SL_INT, rows, &n) || !sl_column_read(&r, SL_BOOL, rows, &flag))
        return sl_error(SL_ERROR, "truncated request");

    sl_columns_begin(rows);
    sl_outcol greeting = sl_out_string_begin();
    for (uint32_t i = 0; i < rows; i++) {
        if (!sl_has(&name, i)) continue;
        uint32_t nlen;
        const uint8_t *s = sl_str(&name, i, &nlen);
        char buf[64] = "hi ";
        if (nlen > sizeof buf - 4) nlen = sizeof buf - 4;
        memcpy(buf + 3, s, nlen);
        sl_set_str(&greeting, i, buf, 3 + nlen);
    }
    sl_out_string_end(&greeting);
    sl_outcol half = sl_out_fixed(SL_FLOAT);
    for (uint32_t i = 0; i < rows; i++) {
        sl_meta(i, "seen", "yes");
        if (sl_has(&flag, i) && flag.bools[i]) {
            sl_drop(i);
            continue;
        }
        if (!sl_has(&n, i)) continue;
        if (n.i64[i] < 0) {
            sl_fail(i, "negative n");
            continue;
        }
        sl_set_f64(half, i, (double)n.i64[i] / 2);
    }
    return sl_columns_end();
}

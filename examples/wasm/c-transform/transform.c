/* transform.c: the seed's transform step as a Sluice plugin in C, written
 * against plugins/sdk/ABI.md alone. From each event's timestamp it derives,
 * in UTC, hour_of_day (0-23), day_of_week (Monday = 0, as pandas'
 * dayofweek) and is_weekend, exactly as the Go plugin in
 * examples/wasm/transform does, and its output is byte-identical.
 *
 * Fast (columns) mode: the host parses "timestamp" and hands the plugin a
 * column of nanoseconds, so there is no JSON here. Build (Debian: apt-get
 * install clang lld wasi-libc libclang-rt-14-dev-wasm32):
 *
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor \
 *         -Wl,--strip-debug -o transform.wasm transform.c
 *
 * or `agent plugin build examples/wasm/c-transform`. */
#include "sluice_abi.h"

static const sl_field inputs[] = {
    {SL_TIME, SL_REQUIRED, "timestamp"},
};
static const sl_field outputs[] = {
    {SL_INT, 0, "hour_of_day"},
    {SL_INT, 0, "day_of_week"},
    {SL_BOOL, 0, "is_weekend"},
};

SLUICE_EXPORT("sluice_v1_init") uint64_t sluice_v1_init(const uint8_t *cfg, uint32_t len) {
    if (!sl_config_is_empty(cfg, len)) return sl_error(SL_INVALID_CONFIG, "config: transform takes no config");
    return sl_descriptor(SL_MODE_COLUMNS, 0, inputs, 1, outputs, 3);
}

#define NANOS_PER_SEC 1000000000LL
#define SECONDS_PER_DAY 86400LL

/* floordiv rounds toward negative infinity, so instants before 1970 land in
 * the right hour and day (C's / truncates toward zero). */
static int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

SLUICE_EXPORT("sluice_v1_process") uint64_t sluice_v1_process(const uint8_t *req, uint32_t len) {
    sl_reader r;
    uint32_t rows;
    sl_column ts;
    if (!sl_request(&r, req, len, &rows) || !sl_column_read(&r, SL_TIME, rows, &ts))
        return sl_error(SL_ERROR, "truncated request");

    sl_columns_begin(rows);
    sl_outcol hour = sl_out_fixed(SL_INT);
    sl_outcol dow = sl_out_fixed(SL_INT);
    sl_outcol weekend = sl_out_fixed(SL_BOOL);
    for (uint32_t i = 0; i < rows; i++) {
        /* timestamp is required: the host sends only rows that have it. */
        int64_t secs = floordiv(ts.i64[i], NANOS_PER_SEC);
        int64_t days = floordiv(secs, SECONDS_PER_DAY);
        /* 1970-01-01 was a Thursday, day 3 when Monday is 0. */
        int64_t d = (days % 7 + 7 + 3) % 7;
        sl_set_i64(hour, i, (secs - days * SECONDS_PER_DAY) / 3600);
        sl_set_i64(dow, i, d);
        sl_set_bool(weekend, i, d >= 5);
    }
    return sl_columns_end();
}

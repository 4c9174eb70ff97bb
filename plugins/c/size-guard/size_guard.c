/*
 * size-guard: a Weir ingest plugin (world weir:plugin/bytes-plugin@0.1.0) in C.
 *
 * Config: value_bytes_max (default 1024).
 *   - a message whose value is longer than value_bytes_max is rejected (kind invalid);
 *   - a message with an empty or absent value is dropped;
 *   - every other message is kept.
 */
#define WEIR_PLUGIN_IMPLEMENTATION
#include "../../../plugins-sdk/c/weir_plugin.h"

static uint64_t value_bytes_max = 1024;

int weir_init(const weir_config *config, weir_str *err) {
    if (weir_config_u64(config, "value_bytes_max", 1024, &value_bytes_max) != 0) {
        weir_str got;
        weir_config_get(config, "value_bytes_max", &got);
        weir_buf b;
        weir_buf_init(&b, 96);
        weir_buf_c(&b, "value_bytes_max must be a whole number of bytes, not \"");
        weir_buf_str(&b, got);
        weir_buf_c(&b, "\"");
        *err = weir_buf_as_str(&b);
        return 1;
    }
    for (uint32_t i = 0; i < config->len; i++) {
        if (!weir_str_eq(config->items[i].key, "value_bytes_max")) {
            weir_buf b;
            weir_buf_init(&b, 64);
            weir_buf_c(&b, "size-guard: ignoring unknown config key ");
            weir_buf_str(&b, config->items[i].key);
            weir_log(WEIR_LOG_WARN, weir_buf_as_str(&b));
        }
    }
    return 0;
}

weir_verdict weir_on_message(const weir_message *m) {
    if (!m->value.present || m->value.len == 0) return weir_drop();
    if (m->value.len > value_bytes_max) {
        weir_buf b;
        weir_buf_init(&b, 80);
        weir_buf_c(&b, "value is ");
        weir_buf_u64(&b, m->value.len);
        weir_buf_c(&b, " bytes, more than value_bytes_max ");
        weir_buf_u64(&b, value_bytes_max);
        return weir_reject(WEIR_INVALID, weir_buf_as_str(&b));
    }
    return weir_keep();
}

/*
 * weir_plugin.h - C SDK for Weir ingest plugins, world `weir:plugin/bytes-plugin@0.1.0`.
 *
 * One header, no dependencies: no libc, no WASI. It holds
 *   - the batch layout of plugins-sdk/LAYOUT.md: a bounds-checked decoder (batch iterator,
 *     message struct, header iterator) and an encoder for the answer (verdicts);
 *   - the canonical-ABI glue a component of world `bytes-plugin` needs: the exports
 *     `weir:plugin/bytes@0.1.0#init` and `#process`, their `cabi_post_*` functions,
 *     `cabi_realloc`, and the import of `weir:plugin/host@0.1.0` `log`;
 *   - a small arena allocator, config helpers, a string builder, memcpy & co.
 *
 * A plugin is one .c file:
 *
 *     #define WEIR_PLUGIN_IMPLEMENTATION
 *     #include "weir_plugin.h"
 *
 *     int weir_init(const weir_config *config, weir_str *err) { ...; return 0; }
 *     weir_verdict weir_on_message(const weir_message *m) { return weir_keep(); }
 *
 * weir_init returns 0 for success; anything else refuses the binding, with *err (UTF-8) as
 * the reason (set it with weir_str_c("...") or a weir_buf; left empty, a generic text is used).
 * weir_on_message is called once per message, in order; its verdict is encoded at once, so
 * what it points to only has to live until it returns.
 *
 * For a whole batch at once, define WEIR_PLUGIN_PER_BATCH before including the header and
 * write instead
 *
 *     int weir_process(weir_batch *batch, weir_answer *answer, weir_str *err);
 *
 * which iterates with weir_batch_next() and calls weir_answer_push() exactly once per
 * message; return 0, or nonzero with *err set to fail the whole batch. The SDK checks the
 * verdict count and that the batch parsed to its last byte.
 *
 * Build (clang 14 or newer, no libc, no wasi-libc):
 *     clang --target=wasm32-unknown-unknown -Os -ffreestanding -nostdlib -mbulk-memory \
 *           -Wl,--no-entry -Wl,--stack-first -Wl,-z,stack-size=65536 -Wl,--strip-all \
 *           -o core.wasm plugin.c
 * then embed world `bytes-plugin` of plugins-sdk/wit/plugin.wit and make the component
 * (wasm-tools component embed + component new; plugins/c/size-guard/build.sh and its
 * componentize.mjs do it with npm's @bytecodealliance/jco-transpile). The core module imports
 * only `weir:plugin/host@0.1.0` `log` (and only if weir_log is used), so the component
 * imports no WASI.
 *
 * Memory: weir_alloc() hands out memory from an arena. What is allocated during weir_init
 * (the config included: keep pointers into it freely) lives as long as the instance. What is
 * allocated during a batch (the batch itself, the answer, any weir_alloc/weir_buf in
 * weir_on_message) is released when the host is done with the answer. State that must outlive
 * a batch belongs in static storage or in memory allocated during weir_init.
 *
 * Strings handed to the host (reasons, topics, header names, log lines, the init error) must
 * be UTF-8, or the host fails the call. The SDK checks them: a bad string in a verdict fails
 * the batch with a clear error; a bad log line has its non-ASCII bytes replaced by '?'; a bad
 * init error is replaced by a generic text.
 */
#ifndef WEIR_PLUGIN_H
#define WEIR_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if !defined(__wasm32__)
#error "weir_plugin.h targets wasm32 (clang --target=wasm32-unknown-unknown)"
#endif

/* ---------------------------------------------------------------------------------------- */
/* Types                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* A string: UTF-8 bytes, not NUL-terminated. Same memory layout as a canonical-ABI string. */
typedef struct weir_str {
    const char *ptr;
    uint32_t len;
} weir_str;

/* A byte string. */
typedef struct weir_bytes {
    const uint8_t *ptr;
    uint32_t len;
} weir_bytes;

/* An optional byte string: present == 0 means absent (ptr/len are then NULL/0). */
typedef struct weir_opt_bytes {
    const uint8_t *ptr;
    uint32_t len;
    int present;
} weir_opt_bytes;

typedef struct weir_header {
    weir_str name;
    weir_bytes value;
} weir_header;

/* One configuration entry; the array below is the canonical-ABI list<tuple<string,string>>
 * exactly as the host wrote it. */
typedef struct weir_kv {
    weir_str key;
    weir_str value;
} weir_kv;

typedef struct weir_config {
    const weir_kv *items;
    uint32_t len;
} weir_config;

/* A message, decoded from the batch (all pointers point into the batch), or built by the
 * plugin for a `change` or `route` verdict.
 *
 * Headers: a decoded message carries them encoded (headers_raw: header_count times
 * "str name, bytes value", already bounds-checked); iterate with weir_header_iter. To
 * return a message with other headers, set `headers` to an array of header_count entries;
 * when `headers` is NULL the encoder copies headers_raw. So `weir_message out = *m;
 * out.value = ...;` keeps the original headers. */
typedef struct weir_message {
    weir_str topic;
    weir_opt_bytes key;
    weir_opt_bytes value;
    uint32_t header_count;
    const weir_header *headers;   /* NULL in decoded messages */
    const uint8_t *headers_raw;
    uint32_t headers_raw_len;
    int64_t timestamp_ms;
    int has_mqtt;                 /* ignored in messages a plugin returns */
    weir_str mqtt_topic;
    uint8_t mqtt_qos;
} weir_message;

typedef enum weir_reject_kind {
    WEIR_INVALID = 0,
    WEIR_NOT_AUTHORIZED = 1,
    WEIR_REFUSED = 2
} weir_reject_kind;

typedef enum weir_verdict_tag {
    WEIR_KEEP = 0,
    WEIR_CHANGE = 1,
    WEIR_DROP = 2,
    WEIR_REJECT = 3,
    WEIR_ROUTE = 4
} weir_verdict_tag;

typedef struct weir_verdict {
    weir_verdict_tag tag;
    weir_reject_kind kind;          /* WEIR_REJECT */
    weir_str reason;                /* WEIR_REJECT */
    const weir_message *messages;   /* WEIR_CHANGE: 1 message; WEIR_ROUTE: count messages */
    uint32_t count;
} weir_verdict;

typedef enum weir_level {
    WEIR_LOG_ERROR = 0,
    WEIR_LOG_WARN = 1,
    WEIR_LOG_INFO = 2,
    WEIR_LOG_DEBUG = 3
} weir_level;

/* Batch iterator. */
typedef struct weir_batch {
    const uint8_t *data;
    uint32_t len;
    uint32_t pos;       /* next byte to read */
    uint32_t count;     /* messages in the batch */
    uint32_t index;     /* messages read so far */
    int error;          /* nonzero once something did not parse */
} weir_batch;

typedef struct weir_header_iter {
    const uint8_t *p;
    uint32_t remaining_bytes;
    uint32_t remaining;
} weir_header_iter;

/* Growable byte buffer in the arena: the answer, or a string being built. */
typedef struct weir_buf {
    uint8_t *ptr;
    uint32_t len;
    uint32_t cap;
    int oom;            /* set when the arena could not grow; the buffer stops growing */
} weir_buf;

typedef struct weir_answer {
    weir_buf buf;       /* starts with a u32 count placeholder */
    uint32_t count;     /* verdicts pushed */
    int error;          /* nonzero after an invalid verdict (see err_text) */
    const char *err_text;
} weir_answer;

/* ---------------------------------------------------------------------------------------- */
/* What the plugin writes                                                                   */
/* ---------------------------------------------------------------------------------------- */

int weir_init(const weir_config *config, weir_str *err);
#ifdef WEIR_PLUGIN_PER_BATCH
int weir_process(weir_batch *batch, weir_answer *answer, weir_str *err);
#else
weir_verdict weir_on_message(const weir_message *message);
#endif

/* ---------------------------------------------------------------------------------------- */
/* Small inline helpers                                                                     */
/* ---------------------------------------------------------------------------------------- */

static inline weir_str weir_str_n(const char *p, uint32_t n) { weir_str s = {p, n}; return s; }
static inline weir_str weir_str_c(const char *c) {
    uint32_t n = 0;
    if (c) while (c[n]) n++;
    return weir_str_n(c, n);
}
static inline int weir_str_eq(weir_str a, const char *c) {
    weir_str b = weir_str_c(c);
    if (a.len != b.len) return 0;
    for (uint32_t i = 0; i < a.len; i++) if (a.ptr[i] != b.ptr[i]) return 0;
    return 1;
}
static inline weir_opt_bytes weir_some(const void *p, uint32_t n) {
    weir_opt_bytes o = {(const uint8_t *)p, n, 1}; return o;
}
static inline weir_opt_bytes weir_none(void) { weir_opt_bytes o = {0, 0, 0}; return o; }

static inline weir_verdict weir_keep(void) { weir_verdict v = {WEIR_KEEP, WEIR_INVALID, {0, 0}, 0, 0}; return v; }
static inline weir_verdict weir_drop(void) { weir_verdict v = {WEIR_DROP, WEIR_INVALID, {0, 0}, 0, 0}; return v; }
static inline weir_verdict weir_reject(weir_reject_kind kind, weir_str reason) {
    weir_verdict v = {WEIR_REJECT, kind, reason, 0, 0}; return v;
}
static inline weir_verdict weir_change(const weir_message *m) {
    weir_verdict v = {WEIR_CHANGE, WEIR_INVALID, {0, 0}, m, 1}; return v;
}
static inline weir_verdict weir_route(const weir_message *ms, uint32_t n) {
    weir_verdict v = {WEIR_ROUTE, WEIR_INVALID, {0, 0}, ms, n}; return v;
}

/* ---------------------------------------------------------------------------------------- */
/* SDK functions                                                                            */
/* ---------------------------------------------------------------------------------------- */

/* Memory (see "Memory" above). weir_alloc returns NULL when memory cannot grow. */
void *weir_alloc(uint32_t size, uint32_t align);

/* Logging through weir:plugin/host.log. Invalid UTF-8 is replaced rather than trap the host. */
void weir_log(weir_level level, weir_str message);
void weir_log_c(weir_level level, const char *message);

/* Config: the last entry with that key wins. */
int weir_config_get(const weir_config *c, const char *key, weir_str *out);
/* Parses a decimal u64 (no sign, no spaces). Returns 0 when absent (out = dflt) or valid,
 * -1 when present but not a number in range. */
int weir_config_u64(const weir_config *c, const char *key, uint64_t dflt, uint64_t *out);

/* Batch decoding. weir_batch_next: 1 = *m filled, 0 = no more messages, -1 = does not parse. */
int weir_batch_begin(weir_batch *b, const uint8_t *data, uint32_t len);
int weir_batch_next(weir_batch *b, weir_message *m);
/* After the last message: nonzero when bytes are left over. */
int weir_batch_trailing(const weir_batch *b);

weir_header_iter weir_headers(const weir_message *m);
int weir_header_next(weir_header_iter *it, weir_header *h);   /* 1 = *h filled, 0 = end */

/* Answer encoding: push one verdict per message, in order. Returns 0, or -1 (answer->error
 * set) when the verdict cannot be encoded (non-UTF-8 string, out of memory, bad tag). */
int weir_answer_push(weir_answer *a, weir_verdict v);

/* String building in the arena. */
void weir_buf_init(weir_buf *b, uint32_t cap);
void weir_buf_bytes(weir_buf *b, const void *p, uint32_t n);
void weir_buf_str(weir_buf *b, weir_str s);
void weir_buf_c(weir_buf *b, const char *c);
void weir_buf_u64(weir_buf *b, uint64_t v);
void weir_buf_i64(weir_buf *b, int64_t v);
weir_str weir_buf_as_str(const weir_buf *b);

int weir_utf8_valid(const uint8_t *p, uint32_t n);

/* Freestanding builtins the compiler may call (defined here unless WEIR_PLUGIN_HAVE_LIBC). */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#ifdef __cplusplus
}
#endif

/* ======================================================================================== */
/* Implementation: define WEIR_PLUGIN_IMPLEMENTATION in exactly one .c file.               */
/* ======================================================================================== */
#ifdef WEIR_PLUGIN_IMPLEMENTATION

#ifdef __cplusplus
extern "C" {
#endif

#define WEIR__EXPORT(name) __attribute__((export_name(name)))

/* ---- builtins ----
 * With -mbulk-memory they are single instructions; otherwise byte loops, marked no_builtin so
 * the optimiser does not turn them back into calls to themselves. Define WEIR_PLUGIN_HAVE_LIBC
 * when linking a libc that provides them (wasi-libc: then the component imports WASI). */
#ifndef WEIR_PLUGIN_HAVE_LIBC

#define WEIR__NO_BUILTIN __attribute__((no_builtin))

WEIR__NO_BUILTIN void *memcpy(void *dst, const void *src, size_t n) {
#if defined(__wasm_bulk_memory__)
    return __builtin_memcpy(dst, src, n);
#else
    uint8_t *d = (uint8_t *)dst; const uint8_t *s = (const uint8_t *)src;
    while (n--) *d++ = *s++;
    return dst;
#endif
}
WEIR__NO_BUILTIN void *memmove(void *dst, const void *src, size_t n) {
#if defined(__wasm_bulk_memory__)
    return __builtin_memmove(dst, src, n);
#endif
    uint8_t *d = (uint8_t *)dst; const uint8_t *s = (const uint8_t *)src;
    if (d < s) { while (n--) *d++ = *s++; }
    else if (d > s) { d += n; s += n; while (n--) *--d = *--s; }
    return dst;
}
WEIR__NO_BUILTIN void *memset(void *dst, int c, size_t n) {
#if defined(__wasm_bulk_memory__)
    return __builtin_memset(dst, c, n);
#endif
    uint8_t *d = (uint8_t *)dst;
    while (n--) *d++ = (uint8_t)c;
    return dst;
}
WEIR__NO_BUILTIN int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;
    for (; n; n--, x++, y++) if (*x != *y) return *x < *y ? -1 : 1;
    return 0;
}
#endif /* WEIR_PLUGIN_HAVE_LIBC */

/* ---- arena ----
 * [__heap_base, top) is in use. `mark` is where the per-batch region starts: everything below
 * it was allocated up to the end of init and stays. After a batch, top goes back to mark: in
 * cabi_post_process, or (should a host skip post-return) at the next cabi_realloc / process. */
extern unsigned char __heap_base;
static uintptr_t weir__top, weir__mark, weir__last;
static int weir__answer_out; /* an answer was returned and its memory not yet released */

static void weir__arena_setup(void) {
    if (!weir__top) weir__top = weir__mark = (uintptr_t)&__heap_base;
}
static void weir__release_batch(void) {
    weir__arena_setup();
    weir__top = weir__mark;
    weir__last = 0;
    weir__answer_out = 0;
}

void *weir_alloc(uint32_t size, uint32_t align) {
    weir__arena_setup();
    if (align == 0 || (align & (align - 1))) align = 1;
    uintptr_t p = (weir__top + (align - 1)) & ~(uintptr_t)(align - 1);
    if (p < weir__top || (uint64_t)p + size > 0xFFFFFFFFull) return 0;
    uintptr_t end = p + size;
    uintptr_t have = (uintptr_t)__builtin_wasm_memory_size(0) * 65536u;
    if (end > have) {
        uintptr_t pages = (end - have + 65535u) / 65536u;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return 0;
    }
    weir__top = end;
    weir__last = p;
    return (void *)p;
}

/* Grows the block at p (size old) to size n: in place when it is the last block. */
static void *weir__grow(void *p, uint32_t old, uint32_t n, uint32_t align) {
    if (p && (uintptr_t)p == weir__last && (uintptr_t)p + old == weir__top) {
        uintptr_t end = (uintptr_t)p + n;
        if ((uint64_t)(uintptr_t)p + n > 0xFFFFFFFFull) return 0;
        uintptr_t have = (uintptr_t)__builtin_wasm_memory_size(0) * 65536u;
        if (end > have) {
            uintptr_t pages = (end - have + 65535u) / 65536u;
            if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return 0;
        }
        if (end > weir__top) weir__top = end;
        return p;
    }
    void *q = weir_alloc(n, align);
    if (q && p) memcpy(q, p, old < n ? old : n);
    return q;
}

WEIR__EXPORT("cabi_realloc")
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    /* The host lowers the next call's arguments only after it is done with the last answer. */
    if (weir__answer_out) weir__release_batch();
    void *p = old ? weir__grow(old, (uint32_t)old_size, (uint32_t)new_size, (uint32_t)align)
                  : weir_alloc((uint32_t)new_size, (uint32_t)align);
    if (!p && new_size) __builtin_trap();
    return p;
}

/* ---- UTF-8 ---- */

int weir_utf8_valid(const uint8_t *p, uint32_t n) {
    uint32_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) { i++; continue; }
        uint32_t need; uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; }
        else return 0;
        if (n - i - 1 < need) return 0;
        for (uint32_t k = 1; k <= need; k++) {
            uint8_t d = p[i + k];
            if ((d & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (d & 0x3F);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += need + 1;
    }
    return 1;
}

/* ---- log ---- */

__attribute__((import_module("weir:plugin/host@0.1.0"), import_name("log")))
extern void weir__host_log(int32_t level, const char *ptr, uint32_t len);

void weir_log(weir_level level, weir_str message) {
    if (weir_utf8_valid((const uint8_t *)message.ptr, message.len)) {
        weir__host_log((int32_t)level, message.ptr, message.len);
        return;
    }
    /* Replace every byte >= 0x80 with '?' in a copy: the host traps on invalid UTF-8. */
    char *copy = (char *)weir_alloc(message.len, 1);
    if (!copy) { weir__host_log((int32_t)level, "(log line not UTF-8)", 20); return; }
    for (uint32_t i = 0; i < message.len; i++) {
        char ch = message.ptr[i];
        copy[i] = ((uint8_t)ch < 0x80) ? ch : '?';
    }
    weir__host_log((int32_t)level, copy, message.len);
}
void weir_log_c(weir_level level, const char *message) { weir_log(level, weir_str_c(message)); }

/* ---- config ---- */

int weir_config_get(const weir_config *c, const char *key, weir_str *out) {
    int found = 0;
    for (uint32_t i = 0; i < c->len; i++) {
        if (weir_str_eq(c->items[i].key, key)) { *out = c->items[i].value; found = 1; }
    }
    return found;
}

int weir_config_u64(const weir_config *c, const char *key, uint64_t dflt, uint64_t *out) {
    weir_str s;
    if (!weir_config_get(c, key, &s)) { *out = dflt; return 0; }
    if (s.len == 0) return -1;
    uint64_t v = 0;
    for (uint32_t i = 0; i < s.len; i++) {
        char ch = s.ptr[i];
        if (ch < '0' || ch > '9') return -1;
        uint64_t d = (uint64_t)(ch - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* ---- string building ---- */

void weir_buf_init(weir_buf *b, uint32_t cap) {
    b->len = 0; b->oom = 0;
    b->ptr = (uint8_t *)weir_alloc(cap, 4);
    b->cap = b->ptr ? cap : 0;
    if (!b->ptr) b->oom = 1;
}
static int weir__buf_reserve(weir_buf *b, uint32_t more) {
    if (b->oom) return 0;
    if (more > 0xFFFFFFFFu - b->len) { b->oom = 1; return 0; }
    uint32_t need = b->len + more;
    if (need <= b->cap) return 1;
    uint32_t cap = b->cap ? b->cap : 16;
    while (cap < need) cap = (cap > 0x7FFFFFFFu) ? need : cap * 2;
    uint8_t *p = (uint8_t *)weir__grow(b->ptr, b->cap, cap, 4);
    if (!p) { b->oom = 1; return 0; }
    b->ptr = p; b->cap = cap;
    return 1;
}
void weir_buf_bytes(weir_buf *b, const void *p, uint32_t n) {
    if (!n || !weir__buf_reserve(b, n)) return;
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
}
void weir_buf_str(weir_buf *b, weir_str s) { weir_buf_bytes(b, s.ptr, s.len); }
void weir_buf_c(weir_buf *b, const char *c) { weir_buf_str(b, weir_str_c(c)); }
void weir_buf_u64(weir_buf *b, uint64_t v) {
    char tmp[20]; int n = 0;
    do { tmp[19 - n] = (char)('0' + v % 10); v /= 10; n++; } while (v);
    weir_buf_bytes(b, tmp + 20 - n, (uint32_t)n);
}
void weir_buf_i64(weir_buf *b, int64_t v) {
    if (v < 0) { weir_buf_bytes(b, "-", 1); weir_buf_u64(b, (uint64_t)0 - (uint64_t)v); }
    else weir_buf_u64(b, (uint64_t)v);
}
weir_str weir_buf_as_str(const weir_buf *b) { return weir_str_n((const char *)b->ptr, b->len); }

/* ---- batch decoding (every length is checked against what remains) ---- */

static int weir__need(weir_batch *b, uint32_t n) {
    if (b->error || b->len - b->pos < n) { b->error = 1; return 0; }
    return 1;
}
static uint32_t weir__u32(weir_batch *b) {
    if (!weir__need(b, 4)) return 0;
    const uint8_t *p = b->data + b->pos; b->pos += 4;
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint8_t weir__u8(weir_batch *b) {
    if (!weir__need(b, 1)) return 0;
    return b->data[b->pos++];
}
static const uint8_t *weir__take(weir_batch *b, uint32_t n) {
    if (!weir__need(b, n)) return 0;
    const uint8_t *p = b->data + b->pos; b->pos += n;
    return p;
}
static weir_str weir__str(weir_batch *b) {
    uint32_t n = weir__u32(b);
    const char *p = (const char *)weir__take(b, n);
    return p ? weir_str_n(p, n) : weir_str_n(0, 0);
}
static weir_opt_bytes weir__opt(weir_batch *b) {
    uint32_t n = weir__u32(b);
    if (b->error || n == 0xFFFFFFFFu) return weir_none();
    const uint8_t *p = weir__take(b, n);
    return p ? weir_some(p, n) : weir_none();
}

static int weir__message(weir_batch *b, weir_message *m) {
    memset(m, 0, sizeof *m);
    m->topic = weir__str(b);
    m->key = weir__opt(b);
    m->value = weir__opt(b);
    m->header_count = weir__u32(b);
    if (b->error) return -1;
    /* A header takes at least 8 bytes: rejects absurd counts before looping. */
    if (m->header_count > (b->len - b->pos) / 8) { b->error = 1; return -1; }
    uint32_t start = b->pos;
    for (uint32_t i = 0; i < m->header_count && !b->error; i++) {
        (void)weir__str(b);
        uint32_t n = weir__u32(b);
        (void)weir__take(b, n);
    }
    if (b->error) return -1;
    m->headers_raw = b->data + start;
    m->headers_raw_len = b->pos - start;
    const uint8_t *ts = weir__take(b, 8);
    if (!ts) return -1;
    uint64_t t = 0;
    for (int i = 7; i >= 0; i--) t = (t << 8) | ts[i];
    m->timestamp_ms = (int64_t)t;
    uint8_t has = weir__u8(b);
    if (b->error || has > 1) { b->error = 1; return -1; }
    m->has_mqtt = has;
    if (has) {
        m->mqtt_topic = weir__str(b);
        m->mqtt_qos = weir__u8(b);
    }
    return b->error ? -1 : 1;
}

int weir_batch_begin(weir_batch *b, const uint8_t *data, uint32_t len) {
    b->data = data; b->len = len; b->pos = 0; b->index = 0; b->error = 0;
    b->count = weir__u32(b);
    /* A message takes at least 25 bytes: rejects absurd counts up front. */
    if (!b->error && b->count > (len - b->pos) / 25) b->error = 1;
    return b->error ? -1 : 0;
}

int weir_batch_next(weir_batch *b, weir_message *m) {
    if (b->error) return -1;
    if (b->index >= b->count) return 0;
    if (weir__message(b, m) < 0) return -1;
    b->index++;
    return 1;
}

int weir_batch_trailing(const weir_batch *b) { return b->pos != b->len; }

weir_header_iter weir_headers(const weir_message *m) {
    weir_header_iter it;
    if (m->headers) {   /* a plugin-built message: iterate its array through p */
        it.p = (const uint8_t *)m->headers; it.remaining_bytes = 0xFFFFFFFFu;
    } else {
        it.p = m->headers_raw; it.remaining_bytes = m->headers_raw_len;
    }
    it.remaining = m->header_count;
    return it;
}

int weir_header_next(weir_header_iter *it, weir_header *h) {
    if (!it->remaining) return 0;
    if (it->remaining_bytes == 0xFFFFFFFFu) {
        const weir_header *arr = (const weir_header *)it->p;
        *h = arr[0];
        it->p = (const uint8_t *)(arr + 1);
        it->remaining--;
        return 1;
    }
    /* Raw headers were bounds-checked when the message was decoded; re-checked anyway. */
    weir_batch b = {it->p, it->remaining_bytes, 0, 0, 0, 0};
    h->name = weir__str(&b);
    uint32_t n = weir__u32(&b);
    const uint8_t *v = weir__take(&b, n);
    if (b.error) { it->remaining = 0; return 0; }
    h->value.ptr = v; h->value.len = n;
    it->p += b.pos; it->remaining_bytes -= b.pos; it->remaining--;
    return 1;
}

/* ---- answer encoding ---- */

static void weir__put_u32(weir_buf *b, uint32_t v) {
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    weir_buf_bytes(b, t, 4);
}
static void weir__put_u8(weir_buf *b, uint8_t v) { weir_buf_bytes(b, &v, 1); }

static int weir__answer_fail(weir_answer *a, const char *why) {
    if (!a->error) { a->error = 1; a->err_text = why; }
    return -1;
}
static int weir__put_str(weir_answer *a, weir_str s, const char *what) {
    if (s.len && !s.ptr) return weir__answer_fail(a, what);
    if (!weir_utf8_valid((const uint8_t *)s.ptr, s.len)) return weir__answer_fail(a, what);
    weir__put_u32(&a->buf, s.len);
    weir_buf_bytes(&a->buf, s.ptr, s.len);
    return 0;
}
static int weir__put_opt(weir_answer *a, weir_opt_bytes o) {
    if (!o.present) { weir__put_u32(&a->buf, 0xFFFFFFFFu); return 0; }
    if (o.len == 0xFFFFFFFFu || (o.len && !o.ptr)) return weir__answer_fail(a, "a key or value is too long or NULL");
    weir__put_u32(&a->buf, o.len);
    weir_buf_bytes(&a->buf, o.ptr, o.len);
    return 0;
}
static int weir__put_message(weir_answer *a, const weir_message *m) {
    if (!m) return weir__answer_fail(a, "a verdict names a NULL message");
    if (weir__put_str(a, m->topic, "a returned topic is not UTF-8")) return -1;
    if (weir__put_opt(a, m->key) || weir__put_opt(a, m->value)) return -1;
    weir__put_u32(&a->buf, m->header_count);
    if (m->headers) {
        for (uint32_t i = 0; i < m->header_count; i++) {
            if (weir__put_str(a, m->headers[i].name, "a returned header name is not UTF-8")) return -1;
            if (m->headers[i].value.len && !m->headers[i].value.ptr) return weir__answer_fail(a, "a header value is NULL");
            weir__put_u32(&a->buf, m->headers[i].value.len);
            weir_buf_bytes(&a->buf, m->headers[i].value.ptr, m->headers[i].value.len);
        }
    } else {
        /* Re-validate raw headers: they may have been set by hand. */
        weir_header_iter it = weir_headers(m);
        weir_header h; uint32_t n = 0;
        while (weir_header_next(&it, &h)) {
            if (!weir_utf8_valid((const uint8_t *)h.name.ptr, h.name.len)) return weir__answer_fail(a, "a returned header name is not UTF-8");
            n++;
        }
        if (n != m->header_count) return weir__answer_fail(a, "a returned message's raw headers do not match header_count");
        weir_buf_bytes(&a->buf, m->headers_raw, m->headers_raw_len);
    }
    uint64_t t = (uint64_t)m->timestamp_ms;
    uint8_t ts[8];
    for (int i = 0; i < 8; i++) ts[i] = (uint8_t)(t >> (8 * i));
    weir_buf_bytes(&a->buf, ts, 8);
    weir__put_u8(&a->buf, 0); /* has-mqtt: ignored on the way back */
    return 0;
}

int weir_answer_push(weir_answer *a, weir_verdict v) {
    if (a->error) return -1;
    switch (v.tag) {
    case WEIR_KEEP: case WEIR_DROP:
        weir__put_u8(&a->buf, (uint8_t)v.tag);
        break;
    case WEIR_CHANGE:
        weir__put_u8(&a->buf, 1);
        if (weir__put_message(a, v.messages)) return -1;
        break;
    case WEIR_REJECT:
        if ((unsigned)v.kind > 2) return weir__answer_fail(a, "unknown reject kind");
        weir__put_u8(&a->buf, 3);
        weir__put_u8(&a->buf, (uint8_t)v.kind);
        if (weir__put_str(a, v.reason, "a reject reason is not UTF-8")) return -1;
        break;
    case WEIR_ROUTE:
        if (v.count && !v.messages) return weir__answer_fail(a, "a route verdict has NULL messages");
        weir__put_u8(&a->buf, 4);
        weir__put_u32(&a->buf, v.count);
        for (uint32_t i = 0; i < v.count; i++)
            if (weir__put_message(a, &v.messages[i])) return -1;
        break;
    default:
        return weir__answer_fail(a, "unknown verdict tag");
    }
    if (a->buf.oom) return weir__answer_fail(a, "out of memory while encoding the answer");
    a->count++;
    return 0;
}

/* ---- canonical-ABI exports ---- */

/* result<_, string> and result<list<u8>, string>: u8 discriminant at 0, (ptr, len) at 4. */
static uint32_t weir__ret[3] __attribute__((aligned(4)));

static uint32_t *weir__ok(const void *p, uint32_t n) {
    ((uint8_t *)weir__ret)[0] = 0; weir__ret[1] = (uint32_t)(uintptr_t)p; weir__ret[2] = n;
    return weir__ret;
}
static uint32_t *weir__err(weir_str s) {
    if (!s.ptr || !weir_utf8_valid((const uint8_t *)s.ptr, s.len)) s = weir_str_c("plugin error (message not UTF-8)");
    ((uint8_t *)weir__ret)[0] = 1; weir__ret[1] = (uint32_t)(uintptr_t)s.ptr; weir__ret[2] = s.len;
    return weir__ret;
}

WEIR__EXPORT("weir:plugin/bytes@0.1.0#init")
uint32_t *weir__export_init(const weir_kv *items, uint32_t len) {
    weir__arena_setup();
    weir_config c = {items, len};
    weir_str err = {0, 0};
    int rc = weir_init(&c, &err);
    /* Everything so far (config, plugin state) lives as long as the instance. */
    weir__mark = weir__top;
    weir__last = 0;
    if (rc == 0) return weir__ok(0, 0);
    if (!err.len) err = weir_str_c("init failed");
    return weir__err(err);
}

WEIR__EXPORT("cabi_post_weir:plugin/bytes@0.1.0#init")
void weir__post_init(uint32_t *ret) { (void)ret; }

WEIR__EXPORT("weir:plugin/bytes@0.1.0#process")
uint32_t *weir__export_process(const uint8_t *data, uint32_t len) {
    /* The host's cabi_realloc for this batch released the last answer; an empty list needs
     * no realloc, so release here if that did not happen (nothing of this call is there). */
    if (weir__answer_out) weir__release_batch();
    weir__answer_out = 1;

    weir_answer a;
    a.count = 0; a.error = 0; a.err_text = 0;
    weir_batch b;
    weir_batch_begin(&b, data, len);
    weir_buf_init(&a.buf, len / 4 + 64);
    weir__put_u32(&a.buf, 0); /* count, patched below */
    weir_str err = {0, 0};
    weir_buf eb;

#ifdef WEIR_PLUGIN_PER_BATCH
    if (b.error) goto bad_batch;
    if (weir_process(&b, &a, &err) != 0) {
        if (!err.len) err = weir_str_c("plugin failed the batch");
        return weir__err(err);
    }
    if (b.error) goto bad_batch;
#else
    weir_message m;
    int r;
    while ((r = weir_batch_next(&b, &m)) > 0) {
        if (weir_answer_push(&a, weir_on_message(&m)) != 0) break;
    }
    if (r < 0) goto bad_batch;
#endif
    if (a.error) return weir__err(weir_str_c(a.err_text));
    if (a.buf.oom) return weir__err(weir_str_c("out of memory while encoding the answer"));
    if (b.index != b.count) {
        /* weir_process stopped early: read the rest so a bad tail is still reported. */
        weir_message rest;
        int r2;
        while ((r2 = weir_batch_next(&b, &rest)) > 0) {}
        if (r2 < 0) goto bad_batch;
    }
    if (weir_batch_trailing(&b)) goto bad_batch;
    if (a.count != b.count) {
        weir_buf_init(&eb, 96);
        weir_buf_c(&eb, "plugin gave "); weir_buf_u64(&eb, a.count);
        weir_buf_c(&eb, " verdicts for a batch of "); weir_buf_u64(&eb, b.count);
        return weir__err(weir_buf_as_str(&eb));
    }
    a.buf.ptr[0] = (uint8_t)a.count; a.buf.ptr[1] = (uint8_t)(a.count >> 8);
    a.buf.ptr[2] = (uint8_t)(a.count >> 16); a.buf.ptr[3] = (uint8_t)(a.count >> 24);
    return weir__ok(a.buf.ptr, a.buf.len);

bad_batch:
    weir_buf_init(&eb, 96);
    weir_buf_c(&eb, "batch does not parse (message "); weir_buf_u64(&eb, b.index);
    weir_buf_c(&eb, ", byte "); weir_buf_u64(&eb, b.pos); weir_buf_c(&eb, " of ");
    weir_buf_u64(&eb, b.len); weir_buf_c(&eb, ")");
    (void)err;
    return weir__err(weir_buf_as_str(&eb));
}

WEIR__EXPORT("cabi_post_weir:plugin/bytes@0.1.0#process")
void weir__post_process(uint32_t *ret) { (void)ret; weir__release_batch(); }

#ifdef __cplusplus
}
#endif

#endif /* WEIR_PLUGIN_IMPLEMENTATION */
#endif /* WEIR_PLUGIN_H */

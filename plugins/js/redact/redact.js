// redact: a Weir ingest plugin (world weir:plugin/typed-plugin@0.1.0) in JavaScript,
// built with componentize-qjs (QuickJS).
//
// Config: fields = comma-separated top-level field names (default "password").
// A message whose value is a JSON object loses those fields: the verdict is `change` with the
// re-serialised object. A JSON object that has none of them, any other JSON value, a value
// that is not JSON (or not UTF-8) and an absent value are kept unchanged.
import host from "weir:plugin/host@0.1.0";

let fields = ["password"];

// QuickJS here has no TextEncoder/TextDecoder: UTF-8 by hand. decode returns null for
// invalid UTF-8 (such a value cannot be JSON).
function utf8Decode(b) {
  let s = "";
  let chunk = [];
  for (let i = 0; i < b.length; ) {
    const c = b[i];
    let cp, n;
    if (c < 0x80) { cp = c; n = 0; }
    else if (c >= 0xc2 && c <= 0xdf) { cp = c & 0x1f; n = 1; }
    else if (c >= 0xe0 && c <= 0xef) { cp = c & 0x0f; n = 2; }
    else if (c >= 0xf0 && c <= 0xf4) { cp = c & 0x07; n = 3; }
    else return null;
    if (i + n >= b.length + (n ? 0 : 1)) return null;
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if ((d & 0xc0) !== 0x80) return null;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n === 2 && cp < 0x800) || (n === 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) return null;
    chunk.push(cp);
    if (chunk.length >= 4096) { s += String.fromCodePoint(...chunk); chunk = []; }
    i += n + 1;
  }
  return s + String.fromCodePoint(...chunk);
}

function utf8Encode(s) {
  const out = [];
  for (const ch of s) {
    let cp = ch.codePointAt(0);
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd; // lone surrogate
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return new Uint8Array(out);
}

function verdictFor(message) {
  const value = message.value;
  if (value == null || value.length === 0) return { tag: "keep" };
  // Cheap pre-check: a JSON object starts with '{' after optional whitespace.
  let i = 0;
  while (i < value.length && (value[i] === 0x20 || value[i] === 0x09 || value[i] === 0x0a || value[i] === 0x0d)) i++;
  if (value[i] !== 0x7b) return { tag: "keep" };
  const text = utf8Decode(value);
  if (text === null) return { tag: "keep" };
  let obj;
  try {
    obj = JSON.parse(text);
  } catch (_) {
    return { tag: "keep" };
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) return { tag: "keep" };
  let removed = 0;
  for (const f of fields) {
    if (Object.prototype.hasOwnProperty.call(obj, f)) {
      delete obj[f];
      removed++;
    }
  }
  if (removed === 0) return { tag: "keep" };
  return { tag: "change", val: { ...message, value: utf8Encode(JSON.stringify(obj)) } };
}

export const typed = {
  init(config) {
    for (const [key, value] of config) {
      if (key === "fields") {
        fields = value.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
        if (fields.length === 0) throw "fields names no field (expected e.g. \"password,token\")";
      } else {
        host.log("warn", `redact: ignoring unknown config key ${key}`);
      }
    }
    host.log("info", `redact: removing fields ${fields.join(", ")}`);
  },

  process(batch) {
    return batch.map(verdictFor);
  },
};

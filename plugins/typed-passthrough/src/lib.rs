//! Keeps every message unchanged through the `typed-plugin` world (typed records, straight
//! from wit-bindgen): what a plugin from any language's bindings generator costs per call,
//! next to `passthrough` (the Rust SDK's batch-as-bytes world).
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    path: "../../plugins-sdk/wit",
    world: "typed-plugin",
});

use exports::weir::plugin::typed::{Guest, Message, Verdict};

struct TypedPassthrough;

impl Guest for TypedPassthrough {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(batch: Vec<Message>) -> Result<Vec<Verdict>, String> {
        Ok(batch.iter().map(|_| Verdict::Keep).collect())
    }
}

export!(TypedPassthrough);

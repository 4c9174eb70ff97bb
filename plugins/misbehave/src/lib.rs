//! A plugin that fails on purpose, for the broker's tests of its limits: messages whose value
//! contains `trigger` (default: every message) make it do `mode`, others are kept.
//!
//! `mode`: `loop` (never returns), `grow` (allocates without end), `trap` (aborts),
//! `error` (answers a route to an empty topic name, which the host counts as a failure of the
//! batch), `keep`.

use weir_plugin_sdk::{Config, MessageRef, Plugin, Verdict};

/// The plugin.
pub struct Misbehave {
    mode: String,
    trigger: Vec<u8>,
    hoard: Vec<Vec<u8>>,
}

impl Plugin for Misbehave {
    fn init(config: &Config) -> Result<Self, String> {
        let mode = config.get("mode").unwrap_or("keep").to_owned();
        if !["loop", "grow", "trap", "error", "keep"].contains(&mode.as_str()) {
            return Err(format!("unknown mode {mode:?}"));
        }
        Ok(Misbehave {
            mode,
            trigger: config.get("trigger").unwrap_or("").as_bytes().to_vec(),
            hoard: Vec::new(),
        })
    }

    fn process(&mut self, message: &MessageRef<'_>) -> Verdict {
        let value = message.value.unwrap_or_default();
        let triggered = self.trigger.is_empty()
            || value.windows(self.trigger.len()).any(|w| w == self.trigger.as_slice());
        if !triggered {
            return Verdict::Keep;
        }
        match self.mode.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "grow" => loop {
                let chunk = vec![1u8; 1 << 20];
                self.hoard.push(std::hint::black_box(chunk));
            },
            "trap" => std::process::abort(),
            "error" => Verdict::Route(vec![message.to_owned().with_topic("")]),
            _ => Verdict::Keep,
        }
    }
}

weir_plugin_sdk::export_plugin!(Misbehave);

//! Keeps every message unchanged: the baseline for measuring what a plugin call costs.

use weir_plugin_sdk::{Config, MessageRef, Plugin, Verdict};

/// The plugin.
pub struct Passthrough;

impl Plugin for Passthrough {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Passthrough)
    }

    fn process(&mut self, _message: &MessageRef<'_>) -> Verdict {
        Verdict::Keep
    }
}

weir_plugin_sdk::export_plugin!(Passthrough);

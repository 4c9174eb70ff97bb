//! Runs a plugin natively, through the same encoding and code the wasm build uses, so a
//! plugin's behaviour is tested with `cargo test` and no broker.
//!
//! ```
//! use weir_plugin_sdk::testing::Harness;
//! use weir_plugin_sdk::{Config, Message, MessageRef, Plugin, Verdict};
//!
//! struct Upper;
//! impl Plugin for Upper {
//!     fn init(_: &Config) -> Result<Self, String> { Ok(Upper) }
//!     fn process(&mut self, m: &MessageRef<'_>) -> Verdict {
//!         let value = m.value.unwrap_or_default().to_ascii_uppercase();
//!         Verdict::Change(m.to_owned().with_value(value))
//!     }
//! }
//!
//! let mut harness = Harness::<Upper>::new(&[]).unwrap();
//! let verdicts = harness.process(&[Message::new("t", "abc")]).unwrap();
//! assert_eq!(verdicts, vec![Verdict::Change(Message::new("t", "ABC"))]);
//! ```

use crate::layout::{self, Message, Verdict};
use crate::{Config, Plugin};

/// One plugin instance, as the broker would hold it.
#[derive(Debug)]
pub struct Harness<P> {
    plugin: P,
}

impl<P: Plugin> Harness<P> {
    /// Runs `init` with this configuration.
    pub fn new(config: &[(&str, &str)]) -> Result<Harness<P>, String> {
        let pairs = config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Ok(Harness {
            plugin: P::init(&Config::new(pairs))?,
        })
    }

    /// Runs one batch: encoded as the host encodes it, processed, the answer decoded and
    /// checked as the host checks it.
    pub fn process(&mut self, batch: &[Message]) -> Result<Vec<Verdict>, String> {
        let bytes = layout::write_batch(batch);
        let answer = crate::runtime::process_with(&mut self.plugin, &bytes)?;
        layout::read_answer(&answer, batch.len()).map_err(|e| e.to_string())
    }

    /// Runs one message.
    pub fn process_one(&mut self, message: Message) -> Result<Verdict, String> {
        let mut verdicts = self.process(std::slice::from_ref(&message))?;
        verdicts.pop().ok_or_else(|| "no verdict".to_owned())
    }
}

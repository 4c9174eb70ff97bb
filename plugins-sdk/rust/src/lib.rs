//! Write Weir ingest plugins in Rust.
//!
//! A plugin is a type implementing [`Plugin`]: built once per instance from the binding's
//! configuration, then asked for a [`Verdict`] on each message on its way into the log.
//! [`export_plugin!`] turns it into a component of the `bytes-plugin` world of
//! `weir:plugin@0.1.0` (plugins-sdk/wit): the whole batch crosses into the plugin as one byte
//! list and the answer comes back as one, which is what makes a call cheap. [`testing`] runs
//! the same code natively, through the same encoding, so a plugin's tests are a plain
//! `cargo test`.
//!
//! ```
//! use weir_plugin_sdk::{Config, MessageRef, Plugin, Verdict};
//!
//! struct DropEmpty;
//!
//! impl Plugin for DropEmpty {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(DropEmpty)
//!     }
//!     fn process(&mut self, message: &MessageRef<'_>) -> Verdict {
//!         match message.value {
//!             Some(v) if !v.is_empty() => Verdict::Keep,
//!             _ => Verdict::Drop,
//!         }
//!     }
//! }
//! weir_plugin_sdk::export_plugin!(DropEmpty);
//! ```
//!
//! Build for `wasm32-wasip2` (see plugins-sdk/README.md); the SDK depends on nothing but
//! `wit-bindgen` when built for wasm.

pub mod layout;
pub mod testing;

pub use layout::{Header, Message, MessageRef, MqttOrigin, RejectKind, Rejection, Verdict};

/// The binding's configuration: key/value pairs, sorted by key, each key once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    /// A configuration of these pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Config {
        Config { pairs }
    }

    /// The value of `key` (the last one if written twice).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed, `default` if absent; an error naming the key if it does
    /// not parse.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|e| format!("config {key} = {text:?}: {e}")),
        }
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

/// An ingest plugin.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from its binding's configuration; an error refuses the binding at
    /// deploy time.
    fn init(config: &Config) -> Result<Self, String>;

    /// What becomes of one message. Called for every message of a batch, in order.
    fn process(&mut self, message: &MessageRef<'_>) -> Verdict;
}

/// Writes a line to the broker's log, attributed to the plugin (natively: to stderr).
pub mod log {
    /// Log levels.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Level {
        /// Errors.
        Error,
        /// Warnings.
        Warn,
        /// Information.
        Info,
        /// Detail.
        Debug,
    }

    /// Logs `message` at `level`.
    pub fn log(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        {
            use crate::bindings::weir::plugin::host::{self, Level as L};
            let level = match level {
                Level::Error => L::Error,
                Level::Warn => L::Warn,
                Level::Info => L::Info,
                Level::Debug => L::Debug,
            };
            host::log(level, message);
        }
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("plugin {level:?}: {message}");
    }

    /// Logs at [`Level::Info`].
    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    /// Logs at [`Level::Warn`].
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
}

/// What [`export_plugin!`] calls: one plugin value per instance, kept between calls.
#[doc(hidden)]
pub mod runtime {
    use std::any::Any;
    use std::cell::RefCell;

    use crate::layout::{AnswerWriter, BatchReader};
    use crate::{Config, Plugin};

    thread_local! {
        static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    /// `init`: builds the plugin and keeps it.
    pub fn init<P: Plugin>(config: Vec<(String, String)>) -> Result<(), String> {
        let plugin = P::init(&Config::new(config))?;
        PLUGIN.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
        Ok(())
    }

    /// `process`: one verdict per message of `batch`, encoded.
    pub fn process<P: Plugin>(batch: &[u8]) -> Result<Vec<u8>, String> {
        PLUGIN.with(|slot| {
            let mut slot = slot.borrow_mut();
            let plugin = slot
                .as_mut()
                .and_then(|p| p.downcast_mut::<P>())
                .ok_or("process called before init")?;
            process_with(plugin, batch)
        })
    }

    /// One verdict per message of `batch` from `plugin`, encoded.
    pub fn process_with<P: Plugin>(plugin: &mut P, batch: &[u8]) -> Result<Vec<u8>, String> {
        let reader = BatchReader::new(batch).map_err(|e| e.to_string())?;
        let mut answer = AnswerWriter::new(reader.message_count());
        for message in reader {
            let message = message.map_err(|e| e.to_string())?;
            answer.verdict(&plugin.process(&message));
        }
        Ok(answer.finish())
    }
}

/// The `bytes-plugin` world's bindings (wasm builds only).
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "bytes-plugin",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "weir_plugin_sdk::bindings",
    });
}

/// Exports a [`Plugin`] type as the component's `weir:plugin/bytes` interface. Natively it
/// expands to nothing, so the plugin crate also builds (and tests) on the host.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct WeirExport;
            impl $crate::bindings::exports::weir::plugin::bytes::Guest for WeirExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::runtime::init::<$plugin>(config)
                }
                fn process(
                    batch: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    $crate::runtime::process::<$plugin>(&batch)
                }
            }
    $crate::bindings::export!(WeirExport with_types_in $crate::bindings);
        };
    };
}

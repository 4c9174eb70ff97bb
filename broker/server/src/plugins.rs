//! Ingest plugins in the server: the bindings (from the config file, and deployed at run time
//! through the admin API), the engine's epoch ticker, each shard's warm instances, the
//! circuit breaker and the per-plugin metrics.
//!
//! A binding attaches an ordered chain of plugins to Kafka topic patterns. A message bound for
//! a topic goes through the chain of the first binding whose pattern matches (config-file
//! bindings first, in file order, then deployed ones by name), on the shard that received it,
//! before anything is stored. Shards see a new set of bindings at their next message after a
//! deploy (a generation counter; no lock on the message path) and drop the instances of
//! bindings that are gone, so a hot swap closes no connection.
//!
//! The parts: `spec.rs` (settings and bindings as written, and their checks), `registry.rs`
//! (the running bindings, deploys, breakers, metrics) and `shard_plugins.rs` (a shard's
//! instances and one call of a chain).

mod registry;
mod shard_plugins;
mod spec;

pub use registry::{Binding, Link, LinkMetrics, ModuleInfo, Registry};
pub use shard_plugins::{RunOutcome, ShardPlugins};
pub use spec::{BindingSpec, PluginSettings, PluginSpec, WhenOpen, check_name, parse_bindings};

#[cfg(test)]
mod tests;

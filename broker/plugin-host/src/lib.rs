//! Weir's WebAssembly plugin host, on wasmtime (Cranelift only).
//!
//! - [`PluginEngine`]: one per process. A pooling allocator sized by
//!   [`EngineSettings::instances_max`], epoch interruption for call deadlines (the server ticks
//!   the epoch; this crate reads no clock), and the compiled-module cache: a component is
//!   compiled once and kept serialized under [`EngineSettings::cache_dir`], keyed by the
//!   SHA-256 of its bytes and the engine's compatibility hash, so a restart loads it in
//!   microseconds instead of compiling it again.
//! - [`LoadedPlugin`]: a compiled component and the world it implements (`typed-plugin` or
//!   `bytes-plugin` of `weir:plugin@0.1.0`, found from its exports), its imports linked
//!   (`weir:plugin/host`; anything else, WASI included, is linked to a trap).
//! - [`Instance`]: one warm instance with its configuration applied (`init` ran), called per
//!   batch through [`weir_core::plugin::PluginCall`]. Each call has a deadline and each
//!   instance a memory cap; after any failure the caller drops the instance.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use weir_core::plugin::{PluginCall, PluginFailure, Verdict};
use weir_plugin_sdk::layout;

mod bytes_world {
    wasmtime::component::bindgen!({
        path: "../../plugins-sdk/wit",
        world: "bytes-plugin",
    });
}

mod typed_world {
    wasmtime::component::bindgen!({
        path: "../../plugins-sdk/wit",
        world: "typed-plugin",
        with: {
            "weir:plugin/types": crate::bytes_world::weir::plugin::types,
            "weir:plugin/host": crate::bytes_world::weir::plugin::host,
        },
    });
}

use bytes_world::weir::plugin::{host, types};

/// The interface names a component may export, one per world.
const BYTES_EXPORT: &str = "weir:plugin/bytes@0.1.0";
const TYPED_EXPORT: &str = "weir:plugin/typed@0.1.0";
/// The one interface the host offers.
const HOST_IMPORT: &str = "weir:plugin/host@0.1.0";
/// Types only (no functions): bindings generators import it for `use types.{...}`.
const TYPES_IMPORT: &str = "weir:plugin/types@0.1.0";
/// Log lines one call may write; more are counted, not written.
const LOG_LINES_PER_CALL: u32 = 16;
/// Longest log line kept, in bytes.
const LOG_LINE_BYTES_MAX: usize = 1024;

/// What went wrong loading or instantiating a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The bytes are no valid component, or it implements neither world.
    #[error("{0}")]
    Invalid(String),
    /// `init` refused the configuration, trapped, or no instance could be made.
    #[error("{0}")]
    Init(String),
    /// The engine could not be set up.
    #[error("plugin engine: {0}")]
    Engine(String),
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Instances alive at once, all plugins and shards together (the pool's size).
    pub instances_max: u32,
    /// The largest memory any instance may have, in bytes (each binding may set less).
    pub memory_bytes_max: usize,
    /// Where compiled components are kept; `None`: compiled on every load.
    pub cache_dir: Option<PathBuf>,
}

/// The wasmtime engine and the compiled-module cache.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    engine_key: String,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl PluginEngine {
    /// Sets up the engine.
    pub fn new(settings: &EngineSettings) -> Result<PluginEngine, PluginError> {
        let n = settings.instances_max.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // A component built by wasm-component-ld holds the program's module and a few small
        // shim modules (with tables, without memories); one from componentize-qjs (QuickJS)
        // nests 24 components with 50 core instances and 3 memories. Slots are address space
        // reserved up front and committed only when used.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(64))
            .total_memories(n.saturating_mul(4))
            .max_memories_per_component(4)
            .total_tables(n.saturating_mul(16))
            .max_memory_size(settings.memory_bytes_max);
        let mut config = wasmtime::Config::new();
        config
            .strategy(wasmtime::Strategy::Cranelift)
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .max_wasm_stack(512 * 1024);
        if !large_reservations_fit(u64::from(n.saturating_mul(4))) {
            // Reserve only what an instance may use: the pool fits a small address space
            // (39-bit aarch64 kernels), and compiled code checks each memory access.
            config
                .memory_reservation(settings.memory_bytes_max as u64)
                .memory_guard_size(64 * 1024);
        }
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        if let Some(dir) = &settings.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                PluginError::Engine(format!("cannot create cache dir {}: {e}", dir.display()))
            })?;
        }
        Ok(PluginEngine {
            engine,
            cache_dir: settings.cache_dir.clone(),
            engine_key,
        })
    }

    /// Advances the epoch: a call's deadline is a number of ticks. The server ticks every
    /// millisecond while plugins are bound.
    pub fn tick(&self) {
        self.engine.increment_epoch();
    }

    /// Compiles `wasm` (or loads it compiled from the cache) and checks it implements one of
    /// the contract's worlds. `name` is for logs.
    pub fn load(&self, name: &str, wasm: &[u8]) -> Result<LoadedPlugin, PluginError> {
        let digest = hex(&Sha256::digest(wasm));
        let cached = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{digest}-{}.cwasm", self.engine_key)));
        let (component, from_cache) = match cached.as_deref().and_then(|p| self.load_cached(p)) {
            Some(component) => (component, true),
            None => {
                let component = Component::new(&self.engine, wasm).map_err(|e| {
                    PluginError::Invalid(format!("not a valid WebAssembly component: {e:#}"))
                })?;
                (component, false)
            }
        };
        let loaded = LoadedPlugin::link(self, name, &digest, component)?;
        if let (Some(path), false) = (cached, from_cache) {
            self.store_cached(&path, &loaded.component);
        }
        Ok(loaded)
    }

    fn load_cached(&self, path: &Path) -> Option<Component> {
        // Read into memory rather than mapped: a file changed under a mapping is SIGBUS.
        let bytes = std::fs::read(path).ok()?;
        // SAFETY: the file was written by `store_cached` of an engine with the same
        // compatibility hash (it is in the name), under the broker's own data directory,
        // which only the broker writes; wasmtime checks the header and refuses other files.
        match unsafe { Component::deserialize(&self.engine, &bytes) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "compiled plugin not loaded, compiling again: {e:#}");
                None
            }
        }
    }

    fn store_cached(&self, path: &Path, component: &Component) {
        let write = || -> std::io::Result<()> {
            let bytes = component.serialize().map_err(std::io::Error::other)?;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), "compiled plugin not cached: {e}");
        }
    }
}

/// Whether `memories` slots of wasmtime's default reservation (4 GiB plus a 32 MiB guard,
/// which lets compiled code skip bounds checks) fit in an eighth of the address space this
/// architecture's kernels give a process (47 bits on x86_64; 39 assumed elsewhere, the
/// smallest aarch64 configuration).
fn large_reservations_fit(memories: u64) -> bool {
    let va_bits = if cfg!(target_arch = "x86_64") { 47 } else { 39 };
    let slot = (4u64 << 30) + (32 << 20);
    memories.saturating_mul(slot) <= (1u64 << va_bits) / 8
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `weir:plugin/typed-plugin`: typed records.
    Typed,
    /// `weir:plugin/bytes-plugin`: the batch as one byte list.
    Bytes,
}

impl World {
    /// The world's name.
    pub fn name(self) -> &'static str {
        match self {
            World::Typed => "typed-plugin",
            World::Bytes => "bytes-plugin",
        }
    }
}

enum Pre {
    Bytes(bytes_world::BytesPluginPre<State>),
    Typed(typed_world::TypedPluginPre<State>),
}

/// A compiled component, linked and ready to instantiate.
pub struct LoadedPlugin {
    engine: Engine,
    component: Component,
    pre: Pre,
    name: Arc<str>,
    version: String,
    world: World,
    trapping_imports: Vec<String>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    fn link(
        engine: &PluginEngine,
        name: &str,
        digest: &str,
        component: Component,
    ) -> Result<LoadedPlugin, PluginError> {
        let ty = component.component_type();
        let exports: Vec<&str> = ty.exports(&engine.engine).map(|(n, _)| n).collect();
        let world = if exports.contains(&BYTES_EXPORT) {
            World::Bytes
        } else if exports.contains(&TYPED_EXPORT) {
            World::Typed
        } else {
            return Err(PluginError::Invalid(format!(
                "the component exports neither {BYTES_EXPORT} nor {TYPED_EXPORT} (it exports: {})",
                if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                }
            )));
        };
        let trapping_imports: Vec<String> = ty
            .imports(&engine.engine)
            .map(|(n, _)| n.to_owned())
            .filter(|n| n != HOST_IMPORT && n != TYPES_IMPORT)
            .collect();
        let invalid = |e: wasmtime::Error| {
            PluginError::Invalid(format!(
                "the component does not match {} of weir:plugin@0.1.0: {e:#}",
                world.name()
            ))
        };
        let mut linker: Linker<State> = Linker::new(&engine.engine);
        bytes_world::BytesPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(invalid)?;
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(invalid)?;
        let instance_pre = linker.instantiate_pre(&component).map_err(invalid)?;
        let pre = match world {
            World::Bytes => {
                Pre::Bytes(bytes_world::BytesPluginPre::new(instance_pre).map_err(invalid)?)
            }
            World::Typed => {
                Pre::Typed(typed_world::TypedPluginPre::new(instance_pre).map_err(invalid)?)
            }
        };
        if !trapping_imports.is_empty() {
            tracing::info!(
                plugin = name,
                "imports the host does not offer are linked to traps: {}",
                trapping_imports.join(", ")
            );
        }
        Ok(LoadedPlugin {
            engine: engine.engine.clone(),
            component,
            pre,
            name: name.into(),
            version: digest[..12].to_owned(),
            world,
            trapping_imports,
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its version: the first 12 hex digits of its bytes' SHA-256.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The world it implements.
    pub fn world(&self) -> World {
        self.world
    }

    /// Imports other than `weir:plugin/host` (linked to traps).
    pub fn trapping_imports(&self) -> &[String] {
        &self.trapping_imports
    }

    /// A new instance with `config` applied (`init` called), under `limits`.
    pub fn instantiate(
        &self,
        config: &[(String, String)],
        limits: Limits,
    ) -> Result<Instance, PluginError> {
        let mut store = Store::new(
            &self.engine,
            State {
                plugin: self.name.clone(),
                memory_bytes_max: limits.memory_bytes_max,
                memory_denied: false,
                log_lines: 0,
                logs_dropped: 0,
            },
        );
        store.limiter(|s| s);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(limits.deadline_ticks);
        let fail = |e: wasmtime::Error| PluginError::Init(format!("{e:#}"));
        let bindings = match &self.pre {
            Pre::Bytes(pre) => Bindings::Bytes(pre.instantiate(&mut store).map_err(fail)?),
            Pre::Typed(pre) => Bindings::Typed(pre.instantiate(&mut store).map_err(fail)?),
        };
        let config = config.to_vec();
        let refused = match &bindings {
            Bindings::Bytes(b) => b.weir_plugin_bytes().call_init(&mut store, &config),
            Bindings::Typed(b) => b.weir_plugin_typed().call_init(&mut store, &config),
        };
        match refused {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                return Err(PluginError::Init(format!(
                    "init refused the configuration: {reason}"
                )));
            }
            Err(e) => {
                let failure = failure_of(e, &store);
                return Err(PluginError::Init(format!("init failed: {failure}")));
            }
        }
        Ok(Instance {
            store,
            bindings,
            deadline_ticks: limits.deadline_ticks,
        })
    }
}

/// Limits of one instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A call ends with [`PluginFailure::Timeout`] after this many epoch ticks (the server
    /// ticks every millisecond; one more tick is added for the partial first one).
    pub deadline_ticks: u64,
    /// The instance's linear memory may not grow past this many bytes.
    pub memory_bytes_max: usize,
}

struct State {
    plugin: Arc<str>,
    memory_bytes_max: usize,
    memory_denied: bool,
    log_lines: u32,
    logs_dropped: u64,
}

impl wasmtime::ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.memory_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl host::Host for State {
    fn log(&mut self, level: host::Level, message: String) {
        if self.log_lines >= LOG_LINES_PER_CALL {
            self.logs_dropped += 1;
            return;
        }
        self.log_lines += 1;
        let mut line = message;
        if line.len() > LOG_LINE_BYTES_MAX {
            let mut end = LOG_LINE_BYTES_MAX;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
        let plugin = &*self.plugin;
        match level {
            host::Level::Error => tracing::error!(plugin, "{line}"),
            host::Level::Warn => tracing::warn!(plugin, "{line}"),
            host::Level::Info => tracing::info!(plugin, "{line}"),
            host::Level::Debug => tracing::debug!(plugin, "{line}"),
        }
    }
}

impl types::Host for State {}

enum Bindings {
    Bytes(bytes_world::BytesPlugin),
    Typed(typed_world::TypedPlugin),
}

/// One warm instance of a plugin, its configuration applied.
pub struct Instance {
    store: Store<State>,
    bindings: Bindings,
    deadline_ticks: u64,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("plugin", &self.store.data().plugin)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Log lines the plugin wrote past the per-call limit, not written.
    pub fn logs_dropped(&self) -> u64 {
        self.store.data().logs_dropped
    }
}

/// What a trap or host error means for the caller.
fn failure_of(error: wasmtime::Error, store: &Store<State>) -> PluginFailure {
    if store.data().memory_denied {
        return PluginFailure::MemoryCap;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginFailure::Timeout,
        Some(trap) => PluginFailure::Trap(trap.to_string()),
        None => PluginFailure::Trap(format!("{error:#}")),
    }
}

impl PluginCall for Instance {
    fn process(&mut self, batch: &[u8], count: usize) -> Result<Vec<Verdict>, PluginFailure> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().log_lines = 0;
        let answered = match &self.bindings {
            Bindings::Bytes(b) => {
                match b.weir_plugin_bytes().call_process(&mut self.store, batch) {
                    Ok(Ok(answer)) => layout::read_answer(&answer, count)
                        .map_err(|e| PluginFailure::BadAnswer(e.to_string())),
                    Ok(Err(reason)) => Err(PluginFailure::Error(reason)),
                    Err(e) => Err(failure_of(e, &self.store)),
                }
            }
            Bindings::Typed(b) => {
                let messages = layout::BatchReader::new(batch)
                    .and_then(|r| {
                        r.map(|m| m.map(|m| typed_message(&m)))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(|e| PluginFailure::BadAnswer(format!("host batch: {e}")))?;
                match b
                    .weir_plugin_typed()
                    .call_process(&mut self.store, &messages)
                {
                    Ok(Ok(verdicts)) => Ok(verdicts.into_iter().map(from_typed_verdict).collect()),
                    Ok(Err(reason)) => Err(PluginFailure::Error(reason)),
                    Err(e) => Err(failure_of(e, &self.store)),
                }
            }
        };
        let verdicts = answered?;
        if verdicts.len() != count {
            return Err(PluginFailure::BadAnswer(format!(
                "{} verdicts for {count} messages",
                verdicts.len()
            )));
        }
        Ok(verdicts)
    }
}

fn typed_message(m: &layout::MessageRef<'_>) -> types::Message {
    types::Message {
        topic: m.topic.to_owned(),
        key: m.key.map(<[u8]>::to_vec),
        value: m.value.map(<[u8]>::to_vec),
        headers: m
            .headers
            .iter()
            .map(|(name, value)| types::Header {
                name: name.to_owned(),
                value: value.to_vec(),
            })
            .collect(),
        timestamp_ms: m.timestamp_ms,
        mqtt: m.mqtt.map(|o| types::MqttOrigin {
            topic: o.topic.to_owned(),
            qos: o.qos,
        }),
    }
}

fn from_typed_message(m: types::Message) -> layout::Message {
    layout::Message {
        topic: m.topic,
        key: m.key,
        value: m.value,
        headers: m
            .headers
            .into_iter()
            .map(|h| layout::Header {
                name: h.name,
                value: h.value,
            })
            .collect(),
        timestamp_ms: m.timestamp_ms,
        mqtt: None,
    }
}

fn from_typed_verdict(v: types::Verdict) -> Verdict {
    match v {
        types::Verdict::Keep => Verdict::Keep,
        types::Verdict::Change(m) => Verdict::Change(from_typed_message(m)),
        types::Verdict::Drop => Verdict::Drop,
        types::Verdict::Reject(r) => Verdict::Reject(layout::Rejection {
            kind: match r.kind {
                types::RejectKind::Invalid => layout::RejectKind::Invalid,
                types::RejectKind::NotAuthorized => layout::RejectKind::NotAuthorized,
                types::RejectKind::Refused => layout::RejectKind::Refused,
            },
            reason: r.reason,
        }),
        types::Verdict::Route(ms) => {
            Verdict::Route(ms.into_iter().map(from_typed_message).collect())
        }
    }
}

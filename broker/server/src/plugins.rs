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

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_core::plugin::{ChainFailure, Fate, PluginCall, run_chain};
use weir_plugin_host::{EngineSettings, Instance, Limits, LoadedPlugin, PluginEngine};

/// Engine-wide plugin settings, from the `plugins.*` keys.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Default time per call, milliseconds.
    pub deadline_ms: u32,
    /// Default and largest memory per instance, bytes.
    pub memory_bytes_max: usize,
    /// Instances alive at once, all shards and bindings together.
    pub instances_max: u32,
    /// Consecutive failed calls that open a binding's circuit.
    pub failures_max: u32,
    /// How long an open circuit stays open before a call is tried again, milliseconds.
    pub breaker_open_ms: u32,
    /// Largest module accepted, bytes.
    pub module_bytes_max: usize,
}

/// What happens to messages while a binding's circuit is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenOpen {
    /// Refuse them: clients get an error (MQTT 5 0x83, Kafka INVALID_RECORD).
    #[default]
    Reject,
    /// Store them as they came, without the plugins.
    Pass,
}

/// One plugin of a binding's chain, as written in the config file or sent to the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// A component file (config file bindings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A module deployed through the admin API (`PUT /plugins/modules/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Name in logs, metrics and dead-letter headers; default: the module name or file stem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Passed to the plugin's `init`, sorted by key.
    #[serde(default, deserialize_with = "string_map")]
    pub config: BTreeMap<String, String>,
}

/// A binding, as written in the config file (`[[plugins.bindings]]`) or sent to the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingSpec {
    /// Unique name.
    pub name: String,
    /// Kafka topic names the chain applies to; a trailing `*` matches any suffix (`plant-*`,
    /// or `*` for every topic).
    pub topics: Vec<String>,
    /// The chain, in order.
    pub plugins: Vec<PluginSpec>,
    /// Where records a plugin failed on go; default `<topic>.dlq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// What happens while the circuit is open.
    #[serde(default)]
    pub when_open: WhenOpen,
    /// Time per call, milliseconds; default `plugins.deadline_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u32>,
    /// Memory per instance, bytes; default (and at most) `plugins.memory_bytes_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes_max: Option<u32>,
}

fn string_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            serde_json::Value::Bool(b) => Ok((k, b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "config value of {k:?} must be a string, number or boolean, not {other}"
            ))),
        })
        .collect()
}

/// Parses the `plugins.bindings` value: an array of tables (JSON-shaped).
pub fn parse_bindings(value: serde_json::Value) -> Result<Vec<BindingSpec>, String> {
    let specs: Vec<BindingSpec> = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let mut names = std::collections::HashSet::new();
    for spec in &specs {
        check_spec(spec)?;
        if !names.insert(spec.name.clone()) {
            return Err(format!("two bindings are named {:?}", spec.name));
        }
    }
    Ok(specs)
}

/// A name for a binding or module: 1 to 64 of `[A-Za-z0-9._-]`.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

fn check_spec(spec: &BindingSpec) -> Result<(), String> {
    check_name("binding", &spec.name)?;
    let named = |m: &str| format!("binding {:?}: {m}", spec.name);
    if spec.topics.is_empty() {
        return Err(named("names no topic"));
    }
    for pattern in &spec.topics {
        let literal = pattern.strip_suffix('*').unwrap_or(pattern);
        if literal.contains('*') {
            return Err(named(&format!(
                "topic pattern {pattern:?}: '*' may only end a pattern"
            )));
        }
        if !literal.is_empty() {
            weir_core::log_store::check_topic_name(literal)
                .map_err(|e| named(&format!("topic pattern {pattern:?}: {e}")))?;
        }
    }
    if spec.plugins.is_empty() {
        return Err(named("has no plugin"));
    }
    for plugin in &spec.plugins {
        match (&plugin.path, &plugin.module) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(named(
                    "each plugin needs exactly one of `path` and `module`",
                ));
            }
        }
        if let Some(module) = &plugin.module {
            check_name("module", module).map_err(|e| named(&e))?;
        }
    }
    if let Some(topic) = &spec.dead_letter_topic {
        weir_core::log_store::check_topic_name(topic)
            .map_err(|e| named(&format!("dead_letter_topic: {e}")))?;
    }
    if spec.deadline_ms == Some(0) || spec.memory_bytes_max == Some(0) {
        return Err(named("deadline_ms and memory_bytes_max must be above 0"));
    }
    Ok(())
}

fn matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

/// Counters of one plugin of one binding, for `/metrics` and `GET /plugins`.
#[derive(Debug, Default)]
pub struct LinkMetrics {
    /// Calls (one per batch).
    pub calls: AtomicU64,
    /// Messages given to the plugin.
    pub records_in: AtomicU64,
    /// Messages it kept, changed or routed (each routed copy counts).
    pub records_out: AtomicU64,
    /// Messages it dropped.
    pub drops: AtomicU64,
    /// Messages it rejected.
    pub rejects: AtomicU64,
    /// Messages sent to the dead-letter topic after it failed.
    pub dead_lettered: AtomicU64,
    /// Failed calls (trap, timeout, memory cap, error, bad answer, instantiation).
    pub failures: AtomicU64,
    /// Time in calls, nanoseconds.
    pub nanos: AtomicU64,
}

/// One plugin of a running binding.
#[derive(Debug)]
pub struct Link {
    /// The compiled plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// Its name in logs, metrics and headers.
    pub name: String,
    /// Its `init` configuration.
    pub config: Vec<(String, String)>,
    /// Its counters.
    pub metrics: Arc<LinkMetrics>,
}

/// A running binding.
#[derive(Debug)]
pub struct Binding {
    /// Unique per deploy: instances of an older deploy are never reused.
    pub id: u64,
    /// What it was made from.
    pub spec: BindingSpec,
    /// The chain.
    pub chain: Vec<Link>,
    /// Per-instance limits.
    pub limits: Limits,
    breaker: Arc<Breaker>,
}

impl Binding {
    /// The dead-letter topic for messages bound for `topic`.
    pub fn dead_letter_topic(&self, topic: &str) -> String {
        self.spec
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{topic}.dlq"))
    }

    /// What happens while the circuit is open.
    pub fn when_open(&self) -> WhenOpen {
        self.spec.when_open
    }
}

/// The circuit breaker of one binding (all shards): open after `failures_max` consecutive
/// failed calls, for `open_ms`; then one call is tried, and a success closes it.
#[derive(Debug, Default)]
struct Breaker {
    consecutive: AtomicU32,
    /// Milliseconds since the registry started until which the circuit is open; 0: closed.
    open_until_ms: AtomicU64,
    /// Times the circuit opened.
    trips: AtomicU64,
    /// Messages handled by the open-circuit policy.
    bypassed: AtomicU64,
}

/// The bindings every shard runs, replaced whole on each change.
#[derive(Debug, Default)]
pub struct BindingSet {
    bindings: Vec<Arc<Binding>>,
}

struct Deployed {
    specs: BTreeMap<String, BindingSpec>,
    modules: BTreeMap<String, Arc<LoadedPlugin>>,
}

/// Every binding, the engine, and what was deployed at run time.
pub struct Registry {
    /// Made at the first plugin: a broker without plugins reserves no address space for them.
    engine: std::sync::OnceLock<PluginEngine>,
    engine_settings: EngineSettings,
    engine_made: Mutex<()>,
    settings: PluginSettings,
    started: Instant,
    config_specs: Vec<BindingSpec>,
    /// Modules of config-file bindings, by path: read and loaded once, not at every deploy.
    path_modules: Mutex<HashMap<PathBuf, Arc<LoadedPlugin>>>,
    deployed: Mutex<Deployed>,
    current: RwLock<Arc<BindingSet>>,
    generation: AtomicU64,
    next_id: AtomicU64,
    /// Counters by binding and plugin name, kept across redeploys.
    link_metrics: Mutex<HashMap<(String, String), Arc<LinkMetrics>>>,
    breakers: Mutex<HashMap<String, Arc<Breaker>>>,
    dir: PathBuf,
    stop: AtomicBool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A description of a plugin for `GET /plugins` and deploy answers.
#[derive(Debug, Serialize)]
pub struct ModuleInfo {
    /// Module name.
    pub name: String,
    /// First 12 hex digits of the SHA-256 of its bytes.
    pub version: String,
    /// `typed-plugin` or `bytes-plugin`.
    pub world: &'static str,
    /// Imports linked to traps (the host offers only `weir:plugin/host`).
    pub trapping_imports: Vec<String>,
}

fn module_info(name: &str, plugin: &LoadedPlugin) -> ModuleInfo {
    ModuleInfo {
        name: name.to_owned(),
        version: plugin.version().to_owned(),
        world: plugin.world().name(),
        trapping_imports: plugin.trapping_imports().to_vec(),
    }
}

const DEPLOYED_FILE: &str = "bindings.json";

impl Registry {
    /// Sets up the engine (compiled modules cached under `<data_dir>/plugins/cache`), loads
    /// the modules and bindings deployed earlier (`<data_dir>/plugins`), and starts the
    /// config-file bindings and the deployed ones. A binding that cannot start is an error:
    /// the broker does not run without a plugin it was told to run.
    pub fn open(
        settings: PluginSettings,
        data_dir: &Path,
        config_specs: Vec<BindingSpec>,
    ) -> anyhow::Result<Arc<Registry>> {
        let dir = data_dir.join("plugins");
        std::fs::create_dir_all(dir.join("modules"))?;
        let engine_settings = EngineSettings {
            instances_max: settings.instances_max,
            memory_bytes_max: settings.memory_bytes_max,
            cache_dir: Some(dir.join("cache")),
        };
        let registry = Arc::new(Registry {
            engine: std::sync::OnceLock::new(),
            engine_settings,
            engine_made: Mutex::new(()),
            settings,
            started: crate::clock::now(),
            config_specs,
            path_modules: Mutex::new(HashMap::new()),
            deployed: Mutex::new(Deployed {
                specs: BTreeMap::new(),
                modules: BTreeMap::new(),
            }),
            current: RwLock::new(Arc::default()),
            generation: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            link_metrics: Mutex::new(HashMap::new()),
            breakers: Mutex::new(HashMap::new()),
            dir,
            stop: AtomicBool::new(false),
        });
        {
            let mut deployed = registry.lock_deployed();
            let file = registry.dir.join(DEPLOYED_FILE);
            if file.exists() {
                let text = std::fs::read_to_string(&file)?;
                let specs: Vec<BindingSpec> = serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                for spec in specs {
                    deployed.specs.insert(spec.name.clone(), spec);
                }
            }
            for entry in std::fs::read_dir(registry.dir.join("modules"))? {
                let path = entry?.path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".wasm"))
                else {
                    continue;
                };
                let bytes = std::fs::read(&path)?;
                let loaded = registry
                    .engine()?
                    .load(name, &bytes)
                    .map_err(|e| anyhow::anyhow!("deployed module {}: {e}", path.display()))?;
                deployed.modules.insert(name.to_owned(), Arc::new(loaded));
            }
            let set = registry.build(&deployed)?;
            registry.install(set);
        }
        let count = registry.bindings().bindings.len();
        if count > 0 {
            tracing::info!("{count} plugin bindings running");
        }
        Ok(registry)
    }

    /// The engine, made on first use.
    fn engine(&self) -> anyhow::Result<&PluginEngine> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine);
        }
        let _made = self.engine_made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(engine) = self.engine.get() {
            return Ok(engine);
        }
        let engine = PluginEngine::new(&self.engine_settings)?;
        Ok(self.engine.get_or_init(|| engine))
    }

    fn lock_deployed(&self) -> std::sync::MutexGuard<'_, Deployed> {
        self.deployed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bindings now.
    pub fn bindings(&self) -> Arc<BindingSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn install(&self, set: BindingSet) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Builds every binding (config file first, then deployed by name), instantiating each
    /// plugin once with its configuration so a refused one is reported here.
    fn build(&self, deployed: &Deployed) -> anyhow::Result<BindingSet> {
        let mut bindings = Vec::new();
        let mut loaded_paths = self.path_modules.lock().unwrap_or_else(|e| e.into_inner());
        for spec in self.config_specs.iter().chain(deployed.specs.values()) {
            let binding = self
                .start_binding(spec, deployed, &mut loaded_paths)
                .map_err(|e| anyhow::anyhow!("plugin binding {:?}: {e}", spec.name))?;
            bindings.push(Arc::new(binding));
        }
        Ok(BindingSet { bindings })
    }

    fn start_binding(
        &self,
        spec: &BindingSpec,
        deployed: &Deployed,
        loaded_paths: &mut HashMap<PathBuf, Arc<LoadedPlugin>>,
    ) -> Result<Binding, String> {
        check_spec(spec)?;
        let memory = spec
            .memory_bytes_max
            .map_or(self.settings.memory_bytes_max, |m| m as usize);
        if memory > self.settings.memory_bytes_max {
            return Err(format!(
                "memory_bytes_max {memory} is above plugins.memory_bytes_max {}",
                self.settings.memory_bytes_max
            ));
        }
        let deadline_ms = spec.deadline_ms.unwrap_or(self.settings.deadline_ms);
        // The ticker ticks every millisecond; the first tick may come at once.
        let limits = Limits {
            deadline_ticks: u64::from(deadline_ms) + 1,
            memory_bytes_max: memory,
        };
        let mut chain = Vec::new();
        for plugin in &spec.plugins {
            let (loaded, default_name) = match (&plugin.path, &plugin.module) {
                (Some(path), _) => {
                    let loaded = match loaded_paths.get(path) {
                        Some(loaded) => loaded.clone(),
                        None => {
                            let bytes = read_module(path, self.settings.module_bytes_max)?;
                            let name = stem(path);
                            let loaded = Arc::new(
                                self.engine()
                                    .map_err(|e| format!("{e:#}"))?
                                    .load(&name, &bytes)
                                    .map_err(|e| format!("{}: {e}", path.display()))?,
                            );
                            loaded_paths.insert(path.clone(), loaded.clone());
                            loaded
                        }
                    };
                    (loaded, stem(path))
                }
                (None, Some(module)) => (
                    deployed
                        .modules
                        .get(module)
                        .cloned()
                        .ok_or_else(|| format!("no module named {module:?} is deployed"))?,
                    module.clone(),
                ),
                (None, None) => return Err("a plugin without path or module".into()),
            };
            let name = plugin.name.clone().unwrap_or(default_name);
            let config: Vec<(String, String)> = plugin
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            // Instantiated once now, so a configuration init refuses is refused here.
            loaded
                .instantiate(&config, limits)
                .map_err(|e| format!("plugin {name:?}: {e}"))?;
            let metrics = self
                .link_metrics
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry((spec.name.clone(), name.clone()))
                .or_default()
                .clone();
            chain.push(Link {
                plugin: loaded,
                name,
                config,
                metrics,
            });
        }
        let breaker = self
            .breakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(spec.name.clone())
            .or_default()
            .clone();
        Ok(Binding {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            spec: spec.clone(),
            chain,
            limits,
            breaker,
        })
    }

    /// Validates and stores a module under `name` (replacing one of that name; bindings
    /// using it start using the new one). Refused with the validation error if the bytes
    /// are no component of the contract.
    pub fn put_module(&self, name: &str, bytes: &[u8]) -> Result<ModuleInfo, String> {
        check_name("module", name)?;
        if bytes.len() > self.settings.module_bytes_max {
            return Err(format!(
                "the module is {} bytes, more than plugins.module_bytes_max {}",
                bytes.len(),
                self.settings.module_bytes_max
            ));
        }
        let engine = self.engine().map_err(|e| format!("{e:#}"))?;
        let loaded = Arc::new(engine.load(name, bytes).map_err(|e| e.to_string())?);
        let info = module_info(name, &loaded);
        let mut deployed = self.lock_deployed();
        let previous = deployed.modules.insert(name.to_owned(), loaded);
        let rebuilt = self.build(&deployed);
        match rebuilt {
            Ok(set) => {
                write_atomically(
                    &self.dir.join("modules").join(format!("{name}.wasm")),
                    bytes,
                )
                .map_err(|e| format!("module not stored: {e}"))?;
                self.install(set);
                tracing::info!(module = name, version = %info.version, "plugin module deployed");
                Ok(info)
            }
            Err(e) => {
                match previous {
                    Some(previous) => deployed.modules.insert(name.to_owned(), previous),
                    None => deployed.modules.remove(name),
                };
                Err(format!("{e:#}"))
            }
        }
    }

    /// Adds or replaces a deployed binding. Refused (and nothing changed) if it does not start.
    pub fn put_binding(&self, spec: BindingSpec) -> Result<(), String> {
        if self.config_specs.iter().any(|c| c.name == spec.name) {
            return Err(format!(
                "binding {:?} is defined in the config file; change it there",
                spec.name
            ));
        }
        if spec.plugins.iter().any(|p| p.path.is_some()) {
            return Err("deployed bindings name modules (`module`), not files".into());
        }
        check_spec(&spec)?;
        let mut deployed = self.lock_deployed();
        let previous = deployed.specs.insert(spec.name.clone(), spec.clone());
        match self.build(&deployed).and_then(|set| {
            self.persist(&deployed)?;
            Ok(set)
        }) {
            Ok(set) => {
                self.install(set);
                // A new deploy starts with a closed circuit.
                if let Some(breaker) = self
                    .breakers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&spec.name)
                {
                    breaker.consecutive.store(0, Ordering::Release);
                    breaker.open_until_ms.store(0, Ordering::Release);
                }
                tracing::info!(binding = %spec.name, topics = ?spec.topics, "plugin binding deployed");
                Ok(())
            }
            Err(e) => {
                match previous {
                    Some(previous) => deployed.specs.insert(spec.name.clone(), previous),
                    None => deployed.specs.remove(&spec.name),
                };
                Err(format!("{e:#}"))
            }
        }
    }

    /// Removes a deployed binding; false if there is none of that name.
    pub fn remove_binding(&self, name: &str) -> Result<bool, String> {
        if self.config_specs.iter().any(|c| c.name == name) {
            return Err(format!(
                "binding {name:?} is defined in the config file; remove it there"
            ));
        }
        let mut deployed = self.lock_deployed();
        if deployed.specs.remove(name).is_none() {
            return Ok(false);
        }
        let set = self.build(&deployed).map_err(|e| format!("{e:#}"))?;
        self.persist(&deployed).map_err(|e| format!("{e:#}"))?;
        self.install(set);
        tracing::info!(binding = name, "plugin binding removed");
        Ok(true)
    }

    fn persist(&self, deployed: &Deployed) -> anyhow::Result<()> {
        let specs: Vec<&BindingSpec> = deployed.specs.values().collect();
        let text = serde_json::to_vec_pretty(&specs)?;
        write_atomically(&self.dir.join(DEPLOYED_FILE), &text)?;
        Ok(())
    }

    /// Largest module accepted, bytes.
    pub fn module_bytes_max(&self) -> usize {
        self.settings.module_bytes_max
    }

    /// Modules, bindings and their counters, for `GET /plugins`.
    pub fn describe(&self) -> serde_json::Value {
        let deployed = self.lock_deployed();
        let modules: Vec<ModuleInfo> = deployed
            .modules
            .iter()
            .map(|(name, m)| module_info(name, m))
            .collect();
        drop(deployed);
        let now = self.now_ms();
        let bindings: Vec<serde_json::Value> = self
            .bindings()
            .bindings
            .iter()
            .map(|b| {
                let plugins: Vec<serde_json::Value> = b
                    .chain
                    .iter()
                    .map(|l| {
                        let m = &l.metrics;
                        serde_json::json!({
                            "name": l.name,
                            "version": l.plugin.version(),
                            "world": l.plugin.world().name(),
                            "calls": m.calls.load(Ordering::Relaxed),
                            "records_in": m.records_in.load(Ordering::Relaxed),
                            "records_out": m.records_out.load(Ordering::Relaxed),
                            "drops": m.drops.load(Ordering::Relaxed),
                            "rejects": m.rejects.load(Ordering::Relaxed),
                            "dead_lettered": m.dead_lettered.load(Ordering::Relaxed),
                            "failures": m.failures.load(Ordering::Relaxed),
                        })
                    })
                    .collect();
                let open = b.breaker.open_until_ms.load(Ordering::Acquire) > now;
                serde_json::json!({
                    "name": b.spec.name,
                    "topics": b.spec.topics,
                    "source": if self.config_specs.iter().any(|c| c.name == b.spec.name) { "config" } else { "deployed" },
                    "circuit": if open { "open" } else { "closed" },
                    "plugins": plugins,
                })
            })
            .collect();
        serde_json::json!({ "modules": modules, "bindings": bindings })
    }

    /// The plugin counters in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let set = self.bindings();
        type Counter = fn(&LinkMetrics) -> &AtomicU64;
        let counters: [(&str, &str, Counter); 8] = [
            ("calls", "Plugin calls (one per batch).", |m| &m.calls),
            ("records_in", "Messages given to plugins.", |m| {
                &m.records_in
            }),
            (
                "records_out",
                "Messages plugins kept, changed or routed.",
                |m| &m.records_out,
            ),
            ("drops", "Messages plugins dropped.", |m| &m.drops),
            ("rejects", "Messages plugins rejected.", |m| &m.rejects),
            (
                "dead_lettered",
                "Messages sent to a dead-letter topic after a plugin failed.",
                |m| &m.dead_lettered,
            ),
            (
                "failures",
                "Failed plugin calls (trap, timeout, memory cap, error, bad answer).",
                |m| &m.failures,
            ),
            (
                "call_nanoseconds",
                "Time in plugin calls, nanoseconds.",
                |m| &m.nanos,
            ),
        ];
        // Every plugin any binding ever ran, so counters never go back when one is swapped.
        let mut links: Vec<((String, String), Arc<LinkMetrics>)> = self
            .link_metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        links.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, help, get) in counters {
            let _ = writeln!(out, "# HELP weir_plugin_{name}_total {help}");
            let _ = writeln!(out, "# TYPE weir_plugin_{name}_total counter");
            for ((binding, plugin), metrics) in &links {
                let _ = writeln!(
                    out,
                    "weir_plugin_{name}_total{{binding=\"{binding}\",plugin=\"{plugin}\"}} {}",
                    get(metrics).load(Ordering::Relaxed)
                );
            }
        }
        let now = self.now_ms();
        type PerBinding<'a> = (&'a str, &'a str, &'a str, &'a dyn Fn(&Breaker) -> u64);
        let per_binding: [PerBinding<'_>; 3] = [
            (
                "weir_plugin_circuit_open",
                "gauge",
                "Whether a binding's circuit is open (1) or closed (0).",
                &|b| u64::from(b.open_until_ms.load(Ordering::Acquire) > now),
            ),
            (
                "weir_plugin_circuit_trips_total",
                "counter",
                "Times a binding's circuit opened.",
                &|b| b.trips.load(Ordering::Relaxed),
            ),
            (
                "weir_plugin_circuit_bypassed_total",
                "counter",
                "Messages handled by a binding's open-circuit policy.",
                &|b| b.bypassed.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in per_binding {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for b in &set.bindings {
                let _ = writeln!(
                    out,
                    "{name}{{binding=\"{}\"}} {}",
                    b.spec.name,
                    value(&b.breaker)
                );
            }
        }
    }

    fn now_ms(&self) -> u64 {
        // Never 0, which means "closed".
        u64::try_from(crate::clock::since(self.started).as_millis()).unwrap_or(u64::MAX) + 1
    }

    /// Starts the thread that ticks the engine's epoch every millisecond (the unit of call
    /// deadlines) while any binding exists; it ends with [`Registry::stop`].
    pub fn start_ticker(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let registry = self.clone();
        std::thread::Builder::new()
            .name("weir-plugin-epoch".into())
            .spawn(move || {
                while !registry.stop.load(Ordering::Acquire) {
                    if registry.bindings().bindings.is_empty() {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    if let Some(engine) = registry.engine.get() {
                        engine.tick();
                    }
                }
            })
    }

    /// Stops the ticker.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_owned()
}

fn read_module(path: &Path, bytes_max: usize) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if size > bytes_max as u64 {
        return Err(format!(
            "{} is {size} bytes, more than plugins.module_bytes_max {bytes_max}",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` through a synced temporary file and a rename, so a crash leaves
/// the old file or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What running a binding's chain came to.
#[derive(Debug)]
pub enum RunOutcome {
    /// The chain ran: the fate of each message.
    Ran(Vec<Fate>),
    /// A plugin failed: every message goes to the dead-letter topic.
    Failed {
        /// The plugin's name.
        plugin: String,
        /// Its version.
        version: String,
        /// The failure.
        error: String,
    },
    /// The circuit is open: the binding's policy applies.
    Open(WhenOpen),
}

/// A shard's view of the bindings and its warm instances.
pub struct ShardPlugins {
    registry: Option<Arc<Registry>>,
    generation: u64,
    set: Arc<BindingSet>,
    instances: HashMap<(u64, usize), Instance>,
}

impl std::fmt::Debug for ShardPlugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardPlugins")
            .field("instances", &self.instances.len())
            .finish_non_exhaustive()
    }
}

impl ShardPlugins {
    /// A shard's plugins; `None`: plugins are off.
    pub fn new(registry: Option<Arc<Registry>>) -> ShardPlugins {
        ShardPlugins {
            registry,
            generation: u64::MAX,
            set: Arc::default(),
            instances: HashMap::new(),
        }
    }

    fn refresh(&mut self) {
        let Some(registry) = &self.registry else {
            return;
        };
        let generation = registry.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.set = registry.bindings();
        let alive: std::collections::HashSet<u64> =
            self.set.bindings.iter().map(|b| b.id).collect();
        self.instances.retain(|(id, _), _| alive.contains(id));
    }

    /// The binding for messages bound for Kafka topic `topic`, if any.
    pub fn binding_for(&mut self, topic: &str) -> Option<Arc<Binding>> {
        self.refresh();
        self.set
            .bindings
            .iter()
            .find(|b| b.spec.topics.iter().any(|p| matches(p, topic)))
            .cloned()
    }

    /// Runs `binding`'s chain over `batch` (`count` messages in the layout). `topic_ok`
    /// checks the topics plugins send messages to.
    pub fn run(
        &mut self,
        binding: &Binding,
        batch: Vec<u8>,
        count: usize,
        topic_ok: &dyn Fn(&str) -> Result<(), String>,
    ) -> RunOutcome {
        let Some(registry) = self.registry.clone() else {
            return RunOutcome::Ran(vec![Fate::Keep; count]);
        };
        let breaker = &binding.breaker;
        let now = registry.now_ms();
        if breaker.open_until_ms.load(Ordering::Acquire) > now {
            breaker.bypassed.fetch_add(count as u64, Ordering::Relaxed);
            return RunOutcome::Open(binding.when_open());
        }
        // Warm instances, made on first use (and after a failure discarded the last one).
        for (index, link) in binding.chain.iter().enumerate() {
            if self.instances.contains_key(&(binding.id, index)) {
                continue;
            }
            match link.plugin.instantiate(&link.config, binding.limits) {
                Ok(instance) => {
                    self.instances.insert((binding.id, index), instance);
                }
                Err(e) => {
                    link.metrics.failures.fetch_add(1, Ordering::Relaxed);
                    link.metrics
                        .dead_lettered
                        .fetch_add(count as u64, Ordering::Relaxed);
                    self.failed(&registry, binding, now);
                    return RunOutcome::Failed {
                        plugin: link.name.clone(),
                        version: link.plugin.version().to_owned(),
                        error: format!("instantiate: {e}"),
                    };
                }
            }
        }
        let started = crate::clock::now();
        let mut taken: Vec<Instance> = (0..binding.chain.len())
            .filter_map(|index| self.instances.remove(&(binding.id, index)))
            .collect();
        let mut calls: Vec<Counting<'_>> = taken
            .iter_mut()
            .zip(&binding.chain)
            .map(|(instance, link)| Counting {
                instance,
                link,
                called: false,
            })
            .collect();
        let result = {
            let mut chain: Vec<&mut dyn PluginCall> =
                calls.iter_mut().map(|c| c as &mut dyn PluginCall).collect();
            run_chain(&mut chain, batch, count, topic_ok)
        };
        let called: Vec<bool> = calls.iter().map(|c| c.called).collect();
        drop(calls);
        let elapsed = u64::try_from(crate::clock::since(started).as_nanos()).unwrap_or(u64::MAX);
        let share = elapsed / (called.iter().filter(|c| **c).count().max(1) as u64);
        for (link, called) in binding.chain.iter().zip(&called) {
            if *called {
                link.metrics.calls.fetch_add(1, Ordering::Relaxed);
                link.metrics.nanos.fetch_add(share, Ordering::Relaxed);
            }
        }
        let failed_at = result.as_ref().err().map(|f| f.plugin);
        for (index, instance) in taken.into_iter().enumerate() {
            // After a failure the instance is discarded, never reused.
            if Some(index) != failed_at {
                self.instances.insert((binding.id, index), instance);
            }
        }
        match result {
            Ok(fates) => {
                if breaker.consecutive.swap(0, Ordering::AcqRel) >= registry.settings.failures_max {
                    breaker.open_until_ms.store(0, Ordering::Release);
                    tracing::info!(binding = %binding.spec.name, "plugin circuit closed: a call succeeded");
                }
                RunOutcome::Ran(fates)
            }
            Err(ChainFailure { plugin, failure }) => {
                let link = &binding.chain[plugin];
                link.metrics.failures.fetch_add(1, Ordering::Relaxed);
                link.metrics
                    .dead_lettered
                    .fetch_add(count as u64, Ordering::Relaxed);
                tracing::debug!(binding = %binding.spec.name, plugin = %link.name, "plugin failed: {failure}");
                self.failed(&registry, binding, now);
                RunOutcome::Failed {
                    plugin: link.name.clone(),
                    version: link.plugin.version().to_owned(),
                    error: failure.to_string(),
                }
            }
        }
    }

    fn failed(&self, registry: &Registry, binding: &Binding, now: u64) {
        let breaker = &binding.breaker;
        let failures = breaker.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= registry.settings.failures_max {
            let until = now + u64::from(registry.settings.breaker_open_ms);
            let was = breaker.open_until_ms.swap(until, Ordering::AcqRel);
            if was <= now {
                breaker.trips.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    binding = %binding.spec.name,
                    failures,
                    policy = ?binding.when_open(),
                    "plugin circuit open for {} ms after {failures} consecutive failures: messages are {} meanwhile",
                    registry.settings.breaker_open_ms,
                    match binding.when_open() {
                        WhenOpen::Reject => "rejected",
                        WhenOpen::Pass => "stored without the plugins",
                    }
                );
            }
        }
    }
}

/// An instance that counts what it is given and answers.
struct Counting<'a> {
    instance: &'a mut Instance,
    link: &'a Link,
    called: bool,
}

impl PluginCall for Counting<'_> {
    fn process(
        &mut self,
        batch: &[u8],
        count: usize,
    ) -> Result<Vec<weir_core::plugin::Verdict>, weir_core::plugin::PluginFailure> {
        use weir_core::plugin::Verdict;
        self.called = true;
        let m = &self.link.metrics;
        m.records_in.fetch_add(count as u64, Ordering::Relaxed);
        let verdicts = self.instance.process(batch, count)?;
        let (mut out, mut drops, mut rejects) = (0u64, 0u64, 0u64);
        for v in &verdicts {
            match v {
                Verdict::Keep | Verdict::Change(_) => out += 1,
                Verdict::Route(ms) if ms.is_empty() => drops += 1,
                Verdict::Route(ms) => out += ms.len() as u64,
                Verdict::Drop => drops += 1,
                Verdict::Reject(_) => rejects += 1,
            }
        }
        m.records_out.fetch_add(out, Ordering::Relaxed);
        m.drops.fetch_add(drops, Ordering::Relaxed);
        m.rejects.fetch_add(rejects, Ordering::Relaxed);
        Ok(verdicts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_specs_parse_and_are_checked() {
        let ok = serde_json::json!([{
            "name": "f", "topics": ["sensors", "plant-*"],
            "plugins": [{"path": "a.wasm", "config": {"max": 50, "on": true, "s": "x"}}],
            "when_open": "pass"
        }]);
        let specs = parse_bindings(ok).unwrap();
        assert_eq!(specs[0].plugins[0].config["max"], "50");
        assert_eq!(specs[0].when_open, WhenOpen::Pass);
        for bad in [
            serde_json::json!([{"name": "f", "topics": [], "plugins": [{"path": "a"}]}]),
            serde_json::json!([{"name": "f", "topics": ["a*b"], "plugins": [{"path": "a"}]}]),
            serde_json::json!([{"name": "f", "topics": ["t"], "plugins": []}]),
            serde_json::json!([{"name": "f", "topics": ["t"], "plugins": [{"path": "a", "module": "m"}]}]),
            serde_json::json!([{"name": "bad name", "topics": ["t"], "plugins": [{"path": "a"}]}]),
            serde_json::json!([{"name": "f", "topics": ["t"], "plugins": [{"path": "a"}], "colour": 1}]),
            serde_json::json!([{"name": "f", "topics": ["t"], "plugins": [{"path": "a"}]},
                               {"name": "f", "topics": ["u"], "plugins": [{"path": "a"}]}]),
        ] {
            assert!(parse_bindings(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_match_names_or_prefixes() {
        assert!(matches("sensors", "sensors"));
        assert!(!matches("sensors", "sensors2"));
        assert!(matches("plant-*", "plant-a"));
        assert!(matches("*", "anything"));
        assert!(!matches("plant-*", "plan"));
    }
}

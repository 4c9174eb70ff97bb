//! The registry: every running binding, the engine, what was deployed at run time (kept in
//! the data directory), the circuit breakers and the per-plugin metrics.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use weir_plugin_host::{EngineSettings, Limits, LoadedPlugin, PluginEngine};

use super::spec::{BindingSpec, PluginSettings, PluginSpec, WhenOpen, check_name, check_spec};

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
    pub(super) breaker: Arc<Breaker>,
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
pub(super) struct Breaker {
    pub(super) consecutive: AtomicU32,
    /// Milliseconds since the registry started until which the circuit is open; 0: closed.
    pub(super) open_until_ms: AtomicU64,
    /// Times the circuit opened.
    pub(super) trips: AtomicU64,
    /// Messages handled by the open-circuit policy.
    pub(super) bypassed: AtomicU64,
}

/// The bindings every shard runs, replaced whole on each change.
#[derive(Debug, Default)]
pub struct BindingSet {
    pub(super) bindings: Vec<Arc<Binding>>,
}

pub(super) struct Deployed {
    pub(super) specs: BTreeMap<String, BindingSpec>,
    pub(super) modules: BTreeMap<String, Arc<LoadedPlugin>>,
}

/// Every binding, the engine, and what was deployed at run time.
pub struct Registry {
    /// Made at the first plugin: a broker without plugins reserves no address space for them.
    pub(super) engine: std::sync::OnceLock<PluginEngine>,
    pub(super) engine_settings: EngineSettings,
    pub(super) engine_made: Mutex<()>,
    pub(super) settings: PluginSettings,
    pub(super) started: Instant,
    pub(super) config_specs: Vec<BindingSpec>,
    /// Modules of config-file bindings, by path: read and loaded once, not at every deploy.
    pub(super) path_modules: Mutex<HashMap<PathBuf, Arc<LoadedPlugin>>>,
    pub(super) deployed: Mutex<Deployed>,
    pub(super) current: RwLock<Arc<BindingSet>>,
    pub(super) generation: AtomicU64,
    pub(super) next_id: AtomicU64,
    /// Counters by binding and plugin name, kept across redeploys.
    pub(super) link_metrics: Mutex<HashMap<(String, String), Arc<LinkMetrics>>>,
    pub(super) breakers: Mutex<HashMap<String, Arc<Breaker>>>,
    pub(super) dir: PathBuf,
    pub(super) stop: AtomicBool,
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

pub(super) fn module_info(name: &str, plugin: &LoadedPlugin) -> ModuleInfo {
    ModuleInfo {
        name: name.to_owned(),
        version: plugin.version().to_owned(),
        world: plugin.world().name(),
        trapping_imports: plugin.trapping_imports().to_vec(),
    }
}

pub(super) const DEPLOYED_FILE: &str = "bindings.json";

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
    pub(super) fn engine(&self) -> anyhow::Result<&PluginEngine> {
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

    pub(super) fn lock_deployed(&self) -> std::sync::MutexGuard<'_, Deployed> {
        self.deployed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bindings now.
    pub fn bindings(&self) -> Arc<BindingSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn install(&self, set: BindingSet) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Builds every binding (config file first, then deployed by name), instantiating each
    /// plugin once with its configuration so a refused one is reported here.
    pub(super) fn build(&self, deployed: &Deployed) -> anyhow::Result<BindingSet> {
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

    pub(super) fn start_binding(
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
            let (loaded, default_name) = self.plugin_module(plugin, deployed, loaded_paths)?;
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

    /// The compiled module a plugin of a binding names, and the plugin's default name: a file
    /// (`path`, loaded once per start even if several bindings name it) or a deployed module.
    pub(super) fn plugin_module(
        &self,
        plugin: &PluginSpec,
        deployed: &Deployed,
        loaded_paths: &mut HashMap<PathBuf, Arc<LoadedPlugin>>,
    ) -> Result<(Arc<LoadedPlugin>, String), String> {
        match (&plugin.path, &plugin.module) {
            (Some(path), _) => {
                if let Some(loaded) = loaded_paths.get(path) {
                    return Ok((loaded.clone(), stem(path)));
                }
                let bytes = read_module(path, self.settings.module_bytes_max)?;
                let name = stem(path);
                let loaded = Arc::new(
                    self.engine()
                        .map_err(|e| format!("{e:#}"))?
                        .load(&name, &bytes)
                        .map_err(|e| format!("{}: {e}", path.display()))?,
                );
                loaded_paths.insert(path.clone(), loaded.clone());
                Ok((loaded, name))
            }
            (None, Some(module)) => {
                let loaded = (deployed.modules.get(module).cloned())
                    .ok_or_else(|| format!("no module named {module:?} is deployed"))?;
                Ok((loaded, module.clone()))
            }
            (None, None) => Err("a plugin without path or module".into()),
        }
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

    pub(super) fn persist(&self, deployed: &Deployed) -> anyhow::Result<()> {
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

    pub(super) fn now_ms(&self) -> u64 {
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

pub(super) fn stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_owned()
}

pub(super) fn read_module(path: &Path, bytes_max: usize) -> Result<Vec<u8>, String> {
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
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

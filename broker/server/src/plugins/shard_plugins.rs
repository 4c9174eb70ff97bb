//! A shard's view of the bindings and its warm instances: one call of a binding's chain per
//! batch, its outcome, and its cost counted per plugin.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use weir_core::plugin::{ChainFailure, Fate, PluginCall, run_chain};
use weir_plugin_host::Instance;

use super::registry::*;
use super::spec::*;

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
    pub(super) registry: Option<Arc<Registry>>,
    pub(super) generation: u64,
    pub(super) set: Arc<BindingSet>,
    pub(super) instances: HashMap<(u64, usize), Instance>,
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

    pub(super) fn refresh(&mut self) {
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

    pub(super) fn failed(&self, registry: &Registry, binding: &Binding, now: u64) {
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
pub(super) struct Counting<'a> {
    pub(super) instance: &'a mut Instance,
    pub(super) link: &'a Link,
    pub(super) called: bool,
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

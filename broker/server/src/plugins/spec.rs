//! What the operator writes: the `plugins.*` settings and the bindings (config file or admin
//! API), parsed and checked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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

pub(super) fn string_map<'de, D: serde::Deserializer<'de>>(
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

pub(super) fn check_spec(spec: &BindingSpec) -> Result<(), String> {
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

pub(super) fn matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

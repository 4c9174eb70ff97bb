//! The types configuration keys hold, and how each parses from TOML or from text (an
//! environment variable, a flag, an embedded default).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a raw value came from, for error messages.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    /// A value from the TOML file.
    Toml(&'a toml_edit::Value),
    /// A value given as text: an environment variable, a flag, or an embedded default.
    Text(&'a str),
}

/// A type a config key can hold.
pub trait ConfigValue: Sized {
    /// What the documentation calls this type.
    const KIND: &'static str;
    /// Parses text (environment, flags, defaults).
    fn from_text(text: &str) -> Result<Self, String>;
    /// Parses a TOML value; the default accepts a TOML string and parses its text.
    fn from_toml(value: &toml_edit::Value) -> Result<Self, String> {
        match value.as_str() {
            Some(text) => Self::from_text(text),
            None => Err(format!(
                "expected a string ({}), found {}",
                Self::KIND,
                value.type_name()
            )),
        }
    }
    /// Parses either kind of raw value.
    fn parse(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Toml(value) => Self::from_toml(value),
            Raw::Text(text) => Self::from_text(text),
        }
    }
}

impl ConfigValue for PathBuf {
    const KIND: &'static str = "path";
    fn from_text(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a path must not be empty".into());
        }
        Ok(PathBuf::from(text))
    }
}

impl ConfigValue for Option<PathBuf> {
    const KIND: &'static str = "path, or empty for none";
    fn from_text(text: &str) -> Result<Self, String> {
        Ok((!text.is_empty()).then(|| PathBuf::from(text)))
    }
}

impl ConfigValue for SocketAddr {
    const KIND: &'static str = "socket address, ip:port";
    fn from_text(text: &str) -> Result<Self, String> {
        SocketAddr::from_str(text).map_err(|e| {
            format!("`{text}` is not a socket address like 0.0.0.0:1883 or [::1]:9092 ({e})")
        })
    }
}

impl ConfigValue for Option<SocketAddr> {
    const KIND: &'static str = "socket address, ip:port, or empty for none";
    fn from_text(text: &str) -> Result<Self, String> {
        (!text.is_empty())
            .then(|| <SocketAddr as ConfigValue>::from_text(text))
            .transpose()
    }
}

impl ConfigValue for u32 {
    const KIND: &'static str = "integer";
    fn from_text(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an integer from 0 to {}", u32::MAX))
    }
    fn from_toml(value: &toml_edit::Value) -> Result<Self, String> {
        match value.as_integer() {
            Some(n) => u32::try_from(n).map_err(|_| format!("{n} is outside 0..={}", u32::MAX)),
            None => Err(format!("expected an integer, found {}", value.type_name())),
        }
    }
}

impl ConfigValue for NonZeroU32 {
    const KIND: &'static str = "integer, at least 1";
    fn from_text(text: &str) -> Result<Self, String> {
        let n = u32::from_text(text)?;
        NonZeroU32::new(n).ok_or_else(|| "must be at least 1".to_owned())
    }
    fn from_toml(value: &toml_edit::Value) -> Result<Self, String> {
        let n = u32::from_toml(value)?;
        NonZeroU32::new(n).ok_or_else(|| "must be at least 1".to_owned())
    }
}

impl ConfigValue for u64 {
    const KIND: &'static str = "integer";
    fn from_text(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an integer from 0 to {}", u64::MAX))
    }
    fn from_toml(value: &toml_edit::Value) -> Result<Self, String> {
        match value.as_integer() {
            Some(n) => u64::try_from(n).map_err(|_| format!("{n} is negative")),
            None => Err(format!("expected an integer, found {}", value.type_name())),
        }
    }
}

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after a synced commit.
    Fsync,
    /// Acknowledge after commit; sync every `storage.relaxed_sync_interval_ms`.
    Relaxed,
}

impl ConfigValue for Durability {
    const KIND: &'static str = "`fsync` or `relaxed`";
    fn from_text(text: &str) -> Result<Self, String> {
        match text {
            "fsync" => Ok(Durability::Fsync),
            "relaxed" => Ok(Durability::Relaxed),
            other => Err(format!(
                "`{other}` is not a durability mode: use `fsync` or `relaxed`"
            )),
        }
    }
}

impl ConfigValue for bool {
    const KIND: &'static str = "`true` or `false`";
    fn from_text(text: &str) -> Result<Self, String> {
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("`{other}` is not `true` or `false`")),
        }
    }
    fn from_toml(value: &toml_edit::Value) -> Result<Self, String> {
        value
            .as_bool()
            .ok_or_else(|| format!("expected true or false, found {}", value.type_name()))
    }
}

impl ConfigValue for String {
    const KIND: &'static str = "string";
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

/// A list of MQTT topic filters.
/// Plugin bindings: `[[plugins.bindings]]` tables in the file, or the same as a TOML inline
/// array in the environment or a flag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PluginBindings(pub Vec<crate::plugins::BindingSpec>);

impl ConfigValue for PluginBindings {
    const KIND: &'static str = "array of tables";
    fn from_text(text: &str) -> Result<Self, String> {
        let doc = format!("v = {text}");
        let parsed = toml_edit::Document::parse(doc)
            .map_err(|e| format!("not a TOML array of inline tables: {}", e.message()))?;
        let value = parsed
            .get("v")
            .and_then(toml_edit::Item::as_value)
            .ok_or("not a TOML array of inline tables")?;
        Self::from_toml(value)
    }
    fn from_toml(value: &toml_edit::Value) -> Result<Self, String> {
        crate::plugins::parse_bindings(toml_to_json(value)).map(PluginBindings)
    }
}

/// A TOML value as JSON (dates become strings).
fn toml_to_json(value: &toml_edit::Value) -> serde_json::Value {
    use toml_edit::Value as T;
    match value {
        T::String(s) => serde_json::Value::String(s.value().clone()),
        T::Integer(i) => serde_json::Value::from(*i.value()),
        T::Float(f) => serde_json::Value::from(*f.value()),
        T::Boolean(b) => serde_json::Value::Bool(*b.value()),
        T::Datetime(d) => serde_json::Value::String(d.value().to_string()),
        T::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        T::InlineTable(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_owned(), toml_to_json(v)))
                .collect(),
        ),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicFilters(pub Vec<String>);

impl ConfigValue for TopicFilters {
    const KIND: &'static str =
        "list of MQTT topic filters (TOML array; comma-separated in the environment)";
    fn from_text(text: &str) -> Result<Self, String> {
        let filters = text
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned);
        Self::checked(filters.collect())
    }
    fn from_toml(value: &toml_edit::Value) -> Result<Self, String> {
        let Some(array) = value.as_array() else {
            return match value.as_str() {
                Some(text) => Self::from_text(text),
                None => Err(format!(
                    "expected an array of strings, found {}",
                    value.type_name()
                )),
            };
        };
        let mut filters = Vec::new();
        for item in array {
            match item.as_str() {
                Some(filter) => filters.push(filter.to_owned()),
                None => return Err(format!("expected a string, found {}", item.type_name())),
            }
        }
        Self::checked(filters)
    }
}

impl TopicFilters {
    fn checked(filters: Vec<String>) -> Result<Self, String> {
        for filter in &filters {
            if !weir_mqtt::topic::is_valid_topic_filter(filter)
                || weir_mqtt::topic::is_shared_filter(filter)
            {
                return Err(format!("`{filter}` is not a valid MQTT topic filter"));
            }
        }
        Ok(TopicFilters(filters))
    }
}

/// Rules naming the Kafka topic of MQTT topics: `filter=kafka_topic`, the first matching
/// filter wins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicRules(pub Vec<(String, String)>);

impl ConfigValue for TopicRules {
    const KIND: &'static str =
        "list of `mqtt/filter=kafka_topic` rules (TOML array; comma-separated in the environment)";
    fn from_text(text: &str) -> Result<Self, String> {
        let rules = text.split(',').map(str::trim).filter(|r| !r.is_empty());
        Self::checked(rules.map(str::to_owned).collect())
    }
    fn from_toml(value: &toml_edit::Value) -> Result<Self, String> {
        match value.as_array() {
            Some(array) => {
                let mut rules = Vec::new();
                for item in array {
                    match item.as_str() {
                        Some(rule) => rules.push(rule.to_owned()),
                        None => {
                            return Err(format!("expected a string, found {}", item.type_name()));
                        }
                    }
                }
                Self::checked(rules)
            }
            None => match value.as_str() {
                Some(text) => Self::from_text(text),
                None => Err(format!(
                    "expected an array of strings, found {}",
                    value.type_name()
                )),
            },
        }
    }
}

impl TopicRules {
    fn checked(rules: Vec<String>) -> Result<Self, String> {
        let mut out = Vec::with_capacity(rules.len());
        for rule in rules {
            // Kafka topic names cannot hold `=`; filters can.
            let Some((filter, topic)) = rule.rsplit_once('=') else {
                return Err(format!("rule `{rule}` is not `mqtt/filter=kafka_topic`"));
            };
            TopicFilters::checked(vec![filter.to_owned()])?;
            weir_core::log_store::check_topic_name(topic)?;
            out.push((filter.to_owned(), topic.to_owned()));
        }
        Ok(TopicRules(out))
    }
}

/// Which event-loop backend the shards run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBackend {
    /// io_uring where it works here, else epoll.
    Auto,
    /// io_uring, or fail at start.
    Uring,
    /// epoll.
    Epoll,
}

impl ConfigValue for IoBackend {
    const KIND: &'static str = "`auto`, `uring` or `epoll`";
    fn from_text(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(IoBackend::Auto),
            "uring" => Ok(IoBackend::Uring),
            "epoll" => Ok(IoBackend::Epoll),
            other => Err(format!(
                "`{other}` is not an I/O backend: use `auto`, `uring` or `epoll`"
            )),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl ConfigValue for LogFormat {
    const KIND: &'static str = "`text` or `json`";
    fn from_text(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "`{other}` is not a log format: use `text` or `json`"
            )),
        }
    }
}

/// A `tracing` filter directive such as `info` or `info,weir=debug`, checked at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(pub String);

impl ConfigValue for LogFilter {
    const KIND: &'static str = "log filter, e.g. `info` or `warn,weir=debug`";
    fn from_text(text: &str) -> Result<Self, String> {
        tracing_subscriber::EnvFilter::builder()
            .parse(text)
            .map(|_| LogFilter(text.to_owned()))
            .map_err(|e| format!("`{text}` is not a log filter ({e})"))
    }
}

//! The scenario file: a fleet and what it does, parsed from TOML with every key checked
//! (see `scenarios/factory.toml` and `scenarios/churn.toml`).

use std::time::Duration;

use anyhow::{Context, bail};
use weir_mqtt::QoS;

use crate::payload::Payload;

/// A fleet and what it does.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The broker, `host:port`.
    pub broker: String,
    /// Seed of every random choice (jitter, QoS, values).
    pub seed: u64,
    /// How long devices publish.
    pub duration: Duration,
    /// How long to wait after that for acknowledgements and deliveries.
    pub drain: Duration,
    /// Number of devices, each on its own connection.
    pub devices: usize,
    /// Messages per second per device.
    pub rate_per_device_per_s: f64,
    /// Each interval varies by up to this fraction either way.
    pub jitter: f64,
    /// Weights of QoS 0, 1 and 2 in the mix.
    pub qos_mix: [f64; 3],
    /// The payload model.
    pub payload: Payload,
    /// Topic of each device; `{device}` is its number.
    pub topic: String,
    /// Subscribers, each reading everything with `subscribe_filter`.
    pub subscribers: usize,
    /// Their filter.
    pub subscribe_filter: String,
    /// Their QoS.
    pub subscriber_qos: QoS,
    /// Threads driving the devices.
    pub workers: usize,
    /// Client id prefix (device `n` is `<prefix>-<n>`).
    pub client_id_prefix: String,
    /// Devices connect with a clean session (false: persistent sessions, which the broker
    /// keeps across their reconnections).
    pub clean_session: bool,
    /// Each device drops its connection abruptly (no DISCONNECT) and reconnects about this
    /// often, in seconds, with jitter; 0: never. In-flight publishes are sent again (DUP) on
    /// the new connection.
    pub reconnect_every_s: f64,
    /// Status topic of each device (`{device}` is its number): a retained `online` after
    /// each CONNECT, and a retained `offline` will the broker publishes when the connection
    /// drops without DISCONNECT.
    pub status_topic: Option<String>,
    /// Command topic of each device: each subscribes to its own (QoS 1).
    pub command_topic: Option<String>,
    /// Commands per second a commander connection publishes (QoS 1) to random devices.
    pub commands_per_s: f64,
    /// A Kafka bootstrap address to read the messages back from, if any.
    pub kafka_bootstrap: Option<String>,
    /// The Kafka topic to read (default: the topic's first level, which is where a broker
    /// mapping MQTT to Kafka as Weir does stores it).
    pub kafka_topic: String,
}

impl Scenario {
    /// Parses a scenario; every key has a default except none is required (an empty file is
    /// 10 devices at 1 message per second for 10 s against 127.0.0.1:1883).
    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        let doc: toml_edit::DocumentMut = text.parse().context("scenario TOML")?;
        let keys = Keys(&doc);
        // A file with several mistakes is refused for the first in this order, so reordering
        // these reads changes its error.
        let payload = keys.payload()?;
        let qos_mix = keys.qos_mix()?;
        let subscriber_qos = keys.subscriber_qos()?;
        let topic = keys.string("topic", "factory/{device}/temp")?;
        let first_level = topic.split('/').next().unwrap_or("").to_owned();
        let scenario = Scenario {
            broker: keys.string("broker", "127.0.0.1:1883")?,
            seed: keys.int("seed", 42)? as u64,
            duration: Duration::from_secs_f64(keys.float("duration_s", 10.0)?.max(0.0)),
            drain: Duration::from_secs_f64(keys.float("drain_s", 5.0)?.max(0.0)),
            devices: keys.positive("devices", 10)?,
            rate_per_device_per_s: keys.float("rate_per_device_per_s", 1.0)?,
            jitter: keys.float("jitter", 0.1)?.clamp(0.0, 0.99),
            qos_mix,
            payload,
            subscribe_filter: keys.string("subscribe_filter", &default_filter(&topic))?,
            topic,
            subscribers: usize::try_from(keys.int("subscribers", 1)?).context("`subscribers`")?,
            subscriber_qos,
            workers: keys.positive("workers", 4)?,
            client_id_prefix: keys.string("client_id_prefix", "iot-sim")?,
            clean_session: keys.bool("clean_session", true)?,
            reconnect_every_s: keys.float("reconnect_every_s", 0.0)?.max(0.0),
            status_topic: keys.optional_string("status_topic")?,
            command_topic: keys.optional_string("command_topic")?,
            commands_per_s: keys.float("commands_per_s", 0.0)?.max(0.0),
            kafka_bootstrap: keys.optional_string("kafka_bootstrap")?,
            kafka_topic: keys.string("kafka_topic", &first_level)?,
        };
        scenario.check()?;
        Ok(scenario)
    }

    /// Refuses what each key allows alone but the scenario cannot run.
    fn check(&self) -> anyhow::Result<()> {
        if self.rate_per_device_per_s.is_nan() || self.rate_per_device_per_s <= 0.0 {
            bail!("`rate_per_device_per_s` must be positive");
        }
        if self.commands_per_s > 0.0 && self.command_topic.is_none() {
            bail!("`commands_per_s` needs a `command_topic`");
        }
        Ok(())
    }
}

/// The top-level keys of a scenario file, each read with its default and checked for its
/// type.
struct Keys<'a>(&'a toml_edit::DocumentMut);

impl Keys<'_> {
    fn int(&self, key: &str, default: i64) -> anyhow::Result<i64> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_integer()
                .with_context(|| format!("`{key}` must be an integer")),
        }
    }

    /// An integer above 0 (its default too).
    fn positive(&self, key: &str, default: i64) -> anyhow::Result<usize> {
        usize::try_from(self.int(key, default)?)
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("`{key}` must be positive"))
    }

    /// A float, or an integer taken as one.
    fn float(&self, key: &str, default: f64) -> anyhow::Result<f64> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .with_context(|| format!("`{key}` must be a number")),
        }
    }

    fn string(&self, key: &str, default: &str) -> anyhow::Result<String> {
        match self.0.get(key) {
            None => Ok(default.to_owned()),
            Some(v) => v
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("`{key}` must be a string")),
        }
    }

    fn optional_string(&self, key: &str) -> anyhow::Result<Option<String>> {
        self.0
            .get(key)
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("`{key}` must be a string"))
            })
            .transpose()
    }

    fn bool(&self, key: &str, default: bool) -> anyhow::Result<bool> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .with_context(|| format!("`{key}` must be true or false")),
        }
    }

    /// `payload`: `"json"`, `"cbor"` or `"bytes:N"` with room for the send time, device and
    /// sequence number.
    fn payload(&self) -> anyhow::Result<Payload> {
        Ok(match self.string("payload", "json")?.as_str() {
            "json" => Payload::Json,
            "cbor" => Payload::Cbor,
            other => match other.strip_prefix("bytes:").and_then(|n| n.parse().ok()) {
                Some(n) if n >= 16 => Payload::Bytes(n),
                _ => bail!(
                    "`payload` is \"json\", \"cbor\" or \"bytes:N\" with N >= 16, not {other:?}"
                ),
            },
        })
    }

    /// `qos_mix`: three weights, none negative and not all 0.
    fn qos_mix(&self) -> anyhow::Result<[f64; 3]> {
        let Some(v) = self.0.get("qos_mix") else {
            return Ok([0.0, 1.0, 0.0]);
        };
        let array = v.as_array().context("`qos_mix` is [w0, w1, w2]")?;
        let weights: Vec<f64> = array
            .iter()
            .map(|w| w.as_float().or_else(|| w.as_integer().map(|i| i as f64)))
            .collect::<Option<_>>()
            .context("`qos_mix` weights are numbers")?;
        match weights[..] {
            [a, b, c] if a >= 0.0 && b >= 0.0 && c >= 0.0 && a + b + c > 0.0 => Ok([a, b, c]),
            _ => bail!("`qos_mix` is three non-negative weights, not all 0"),
        }
    }

    fn subscriber_qos(&self) -> anyhow::Result<QoS> {
        Ok(match self.int("subscriber_qos", 1)? {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            q => bail!("`subscriber_qos` is 0, 1 or 2, not {q}"),
        })
    }
}

/// The topic's levels before the first `{device}`, then `#`.
fn default_filter(topic: &str) -> String {
    let fixed: Vec<&str> = topic
        .split('/')
        .take_while(|level| !level.contains("{device}"))
        .collect();
    if fixed.is_empty() {
        "#".to_owned()
    } else {
        format!("{}/#", fixed.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_with_defaults_and_refuse_nonsense() {
        let s = Scenario::parse("").unwrap();
        assert_eq!((s.devices, s.subscribe_filter.as_str()), (10, "factory/#"));
        let s = Scenario::parse(
            "devices = 1000\npayload = \"bytes:256\"\nqos_mix = [1, 3, 0]\ntopic = \"site/a/{device}\"\n",
        )
        .unwrap();
        assert_eq!(s.payload, Payload::Bytes(256));
        assert_eq!(s.qos_mix, [1.0, 3.0, 0.0]);
        assert_eq!(s.subscribe_filter, "site/a/#");
        for bad in [
            "devices = 0",
            "payload = \"bytes:8\"",
            "qos_mix = [0, 0, 0]",
            "subscriber_qos = 3",
            "rate_per_device_per_s = 0",
            "devices = \"many\"",
        ] {
            assert!(Scenario::parse(bad).is_err(), "{bad}");
        }
    }
}

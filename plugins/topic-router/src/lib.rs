//! Routes messages to Kafka topics by one level of their MQTT topic (or, for messages not
//! from MQTT, of their key read as a `/`-separated path).
//!
//! Configuration:
//! - `level` (default `1`): which level decides, counting from 0 (`site/temp/a`: level 1 is
//!   `temp`);
//! - `route.<value>`: a comma-separated list of Kafka topics for messages whose level is
//!   `<value>` (several topics: a copy in each);
//! - `default`: the topics for any other message (absent: it stays in its topic).
//!
//! Example: `level = "1"`, `route.temp = "temperature,all-readings"`,
//! `route.hum = "humidity,all-readings"`, `default = "unrouted"`.

use std::collections::BTreeMap;

use weir_plugin_sdk::{Config, MessageRef, Plugin, Verdict};

/// The plugin.
pub struct TopicRouter {
    level: usize,
    routes: BTreeMap<String, Vec<String>>,
    default: Option<Vec<String>>,
}

fn topics(list: &str, key: &str) -> Result<Vec<String>, String> {
    let topics: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if topics.is_empty() {
        return Err(format!("config {key} names no topic"));
    }
    Ok(topics)
}

impl Plugin for TopicRouter {
    fn init(config: &Config) -> Result<Self, String> {
        let mut routes = BTreeMap::new();
        for (key, value) in config.pairs() {
            if let Some(level_value) = key.strip_prefix("route.") {
                routes.insert(level_value.to_owned(), topics(value, key)?);
            }
        }
        if routes.is_empty() {
            return Err("no route.<value> in the config: nothing to route".into());
        }
        Ok(TopicRouter {
            level: config.parse_or("level", 1)?,
            routes,
            default: config.get("default").map(|d| topics(d, "default")).transpose()?,
        })
    }

    fn process(&mut self, message: &MessageRef<'_>) -> Verdict {
        let path = match (message.mqtt, message.key) {
            (Some(origin), _) => origin.topic,
            (None, Some(key)) => std::str::from_utf8(key).unwrap_or(""),
            (None, None) => "",
        };
        let level = path.split('/').nth(self.level).unwrap_or("");
        let Some(targets) = self.routes.get(level).or(self.default.as_ref()) else {
            return Verdict::Keep;
        };
        let original = message.to_owned();
        Verdict::Route(
            targets
                .iter()
                .map(|topic| original.clone().with_topic(topic.clone()))
                .collect(),
        )
    }
}

weir_plugin_sdk::export_plugin!(TopicRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::Message;
    use weir_plugin_sdk::testing::Harness;

    fn router() -> Harness<TopicRouter> {
        Harness::new(&[
            ("route.temp", "temperature, all"),
            ("route.hum", "humidity"),
            ("default", "other"),
        ])
        .unwrap()
    }

    fn targets(v: &Verdict) -> Vec<String> {
        match v {
            Verdict::Route(ms) => ms.iter().map(|m| m.topic.clone()).collect(),
            other => panic!("not routed: {other:?}"),
        }
    }

    #[test]
    fn the_level_chooses_the_topics_and_copies_fan_out() {
        let mut h = router();
        let v = h
            .process(&[
                Message::from_mqtt("site", "site/temp/a", 1, "20"),
                Message::from_mqtt("site", "site/hum/a", 0, "40"),
                Message::from_mqtt("site", "site/door/a", 1, "open"),
            ])
            .unwrap();
        assert_eq!(targets(&v[0]), ["temperature", "all"]);
        assert_eq!(targets(&v[1]), ["humidity"]);
        assert_eq!(targets(&v[2]), ["other"]);
        let Verdict::Route(copies) = &v[0] else { unreachable!() };
        assert!(copies.iter().all(|m| m.value.as_deref() == Some(&b"20"[..])));
    }

    #[test]
    fn kafka_keys_route_too_and_unmatched_stay_without_a_default() {
        let mut h = Harness::<TopicRouter>::new(&[("route.temp", "t")]).unwrap();
        let mut m = Message::new("in", "1");
        m.key = Some(b"x/temp".to_vec());
        assert_eq!(targets(&h.process_one(m).unwrap()), ["t"]);
        assert_eq!(h.process_one(Message::new("in", "1")).unwrap(), Verdict::Keep);
        assert!(Harness::<TopicRouter>::new(&[("level", "1")]).is_err());
    }
}

//! Drops JSON readings whose number is outside a range.
//!
//! Configuration:
//! - `field` (default `value`): the top-level field of the JSON object holding the reading;
//! - `min`, `max` (defaults: no bound): the range kept, bounds included;
//! - `invalid` (default `reject`): what becomes of a message that is not a JSON object with
//!   a numeric `field`: `reject` (the client gets an error), `drop` or `keep`.

use weir_plugin_sdk::{Config, MessageRef, Plugin, Verdict};

/// The plugin.
pub struct ThresholdFilter {
    field: String,
    min: f64,
    max: f64,
    invalid: Invalid,
}

enum Invalid {
    Reject,
    Drop,
    Keep,
}

impl Plugin for ThresholdFilter {
    fn init(config: &Config) -> Result<Self, String> {
        let invalid = match config.get("invalid").unwrap_or("reject") {
            "reject" => Invalid::Reject,
            "drop" => Invalid::Drop,
            "keep" => Invalid::Keep,
            other => return Err(format!("config invalid = {other:?}: use reject, drop or keep")),
        };
        let min = config.parse_or("min", f64::NEG_INFINITY)?;
        let max = config.parse_or("max", f64::INFINITY)?;
        if min > max {
            return Err(format!("config min {min} is above max {max}"));
        }
        Ok(ThresholdFilter {
            field: config.get("field").unwrap_or("value").to_owned(),
            min,
            max,
            invalid,
        })
    }

    fn process(&mut self, message: &MessageRef<'_>) -> Verdict {
        let reading = message
            .value
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
            .and_then(|v| v.get(&self.field).and_then(serde_json::Value::as_f64));
        match reading {
            Some(x) if (self.min..=self.max).contains(&x) => Verdict::Keep,
            Some(_) => Verdict::Drop,
            None => match self.invalid {
                Invalid::Reject => Verdict::invalid(format!(
                    "not a JSON object with a numeric field {:?}",
                    self.field
                )),
                Invalid::Drop => Verdict::Drop,
                Invalid::Keep => Verdict::Keep,
            },
        }
    }
}

weir_plugin_sdk::export_plugin!(ThresholdFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::testing::Harness;
    use weir_plugin_sdk::{Message, RejectKind};

    #[test]
    fn readings_outside_the_range_are_dropped_and_garbage_rejected() {
        let mut h =
            Harness::<ThresholdFilter>::new(&[("field", "t"), ("min", "-10"), ("max", "50")])
                .unwrap();
        let batch = [
            Message::new("s", r#"{"t": 21.5}"#),
            Message::new("s", r#"{"t": 50}"#),
            Message::new("s", r#"{"t": 51}"#),
            Message::new("s", r#"{"t": -11}"#),
            Message::new("s", "not json"),
            Message::new("s", r#"{"other": 1}"#),
        ];
        let v = h.process(&batch).unwrap();
        assert_eq!(&v[..4], &[Verdict::Keep, Verdict::Keep, Verdict::Drop, Verdict::Drop]);
        for verdict in &v[4..] {
            assert!(matches!(verdict, Verdict::Reject(r) if r.kind == RejectKind::Invalid));
        }
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(Harness::<ThresholdFilter>::new(&[("min", "ten")]).is_err());
        assert!(Harness::<ThresholdFilter>::new(&[("min", "5"), ("max", "1")]).is_err());
        assert!(Harness::<ThresholdFilter>::new(&[("invalid", "explode")]).is_err());
    }

    #[test]
    fn invalid_messages_can_be_dropped_or_kept_instead() {
        let mut drop = Harness::<ThresholdFilter>::new(&[("invalid", "drop")]).unwrap();
        assert_eq!(drop.process_one(Message::new("s", "x")).unwrap(), Verdict::Drop);
        let mut keep = Harness::<ThresholdFilter>::new(&[("invalid", "keep")]).unwrap();
        assert_eq!(keep.process_one(Message::new("s", "x")).unwrap(), Verdict::Keep);
    }
}

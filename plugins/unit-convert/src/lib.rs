//! Converts a temperature in a JSON reading from one unit to another, and records the unit in
//! a `unit` header.
//!
//! Configuration:
//! - `field` (default `temperature`): the top-level numeric field to convert;
//! - `from`, `to` (defaults `F` and `C`): `C`, `F` or `K`.
//!
//! A message without that numeric field (or that is not JSON) is kept unchanged.

use weir_plugin_sdk::{Config, Header, MessageRef, Plugin, Verdict};

/// The plugin.
pub struct UnitConvert {
    field: String,
    from: Unit,
    to: Unit,
}

#[derive(Clone, Copy)]
enum Unit {
    C,
    F,
    K,
}

impl Unit {
    fn parse(text: &str) -> Result<Unit, String> {
        match text {
            "C" | "c" => Ok(Unit::C),
            "F" | "f" => Ok(Unit::F),
            "K" | "k" => Ok(Unit::K),
            other => Err(format!("unknown unit {other:?}: use C, F or K")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::C => "C",
            Unit::F => "F",
            Unit::K => "K",
        }
    }

    fn to_celsius(self, x: f64) -> f64 {
        match self {
            Unit::C => x,
            Unit::F => (x - 32.0) * 5.0 / 9.0,
            Unit::K => x - 273.15,
        }
    }

    fn from_celsius(self, c: f64) -> f64 {
        match self {
            Unit::C => c,
            Unit::F => c * 9.0 / 5.0 + 32.0,
            Unit::K => c + 273.15,
        }
    }
}

impl Plugin for UnitConvert {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(UnitConvert {
            field: config.get("field").unwrap_or("temperature").to_owned(),
            from: Unit::parse(config.get("from").unwrap_or("F"))?,
            to: Unit::parse(config.get("to").unwrap_or("C"))?,
        })
    }

    fn process(&mut self, message: &MessageRef<'_>) -> Verdict {
        let Some(mut json) = message
            .value
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
        else {
            return Verdict::Keep;
        };
        let Some(x) = json.get(&self.field).and_then(serde_json::Value::as_f64) else {
            return Verdict::Keep;
        };
        // Two decimals: a converted reading claims no more precision than it had.
        let converted = (self.to.from_celsius(self.from.to_celsius(x)) * 100.0).round() / 100.0;
        json[&self.field] = serde_json::json!(converted);
        let mut out = message.to_owned();
        out.value = Some(json.to_string().into_bytes());
        out.headers.retain(|h| h.name != "unit");
        out.headers.push(Header {
            name: "unit".into(),
            value: self.to.name().as_bytes().to_vec(),
        });
        Verdict::Change(out)
    }
}

weir_plugin_sdk::export_plugin!(UnitConvert);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::Message;
    use weir_plugin_sdk::testing::Harness;

    #[test]
    fn fahrenheit_becomes_celsius_with_a_unit_header() {
        let mut h = Harness::<UnitConvert>::new(&[]).unwrap();
        let Verdict::Change(out) = h
            .process_one(Message::new("s", r#"{"temperature": 212, "id": "a"}"#))
            .unwrap()
        else {
            panic!("not changed");
        };
        let json: serde_json::Value = serde_json::from_slice(out.value.as_deref().unwrap()).unwrap();
        assert_eq!(json["temperature"], serde_json::json!(100.0));
        assert_eq!(json["id"], "a");
        assert_eq!(out.header("unit"), Some(&b"C"[..]));
    }

    #[test]
    fn kelvin_to_fahrenheit_and_other_messages_unchanged() {
        let mut h =
            Harness::<UnitConvert>::new(&[("from", "K"), ("to", "F"), ("field", "t")]).unwrap();
        let v = h
            .process(&[Message::new("s", r#"{"t": 273.15}"#), Message::new("s", "raw")])
            .unwrap();
        let Verdict::Change(out) = &v[0] else { panic!("not changed") };
        assert_eq!(out.value.as_deref(), Some(&br#"{"t":32.0}"#[..]));
        assert_eq!(v[1], Verdict::Keep);
        assert!(Harness::<UnitConvert>::new(&[("to", "R")]).is_err());
    }
}

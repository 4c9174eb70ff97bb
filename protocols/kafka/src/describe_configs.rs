//! DescribeConfigs (key 32): the settings of topics (and of the broker).
//!
//! Versions 0 to 4; 4 is flexible. Synonyms (v1+) are not reported; `config_type` (v3+) is.

use crate::header::write_response_header;
use crate::wire::{Reader, WireError, Writer};

/// API key of DescribeConfigs.
pub const API_KEY: i16 = 32;
/// Highest version implemented.
pub const VERSION_MAX: i16 = 4;

/// Resource type of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// Resource type of a broker.
pub const RESOURCE_BROKER: i8 = 4;

/// Request header version for `version` (flexible from 4).
pub fn request_header_version(version: i16) -> u8 {
    if version >= 4 { 2 } else { 1 }
}

/// One resource whose settings are asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// [`RESOURCE_TOPIC`], [`RESOURCE_BROKER`] or another type.
    pub resource_type: i8,
    /// The topic name or broker id.
    pub name: String,
    /// Only these settings (empty or null: all).
    pub keys: Vec<String>,
}

/// Parses a request body of `version`: the resources. Array counts are checked against the
/// bytes present before anything is allocated for them.
pub fn parse_request(body: &[u8], version: i16) -> Result<Vec<Resource>, WireError> {
    let mut r = Reader::new(body);
    let flexible = version >= 4;
    let count = r.array_len(flexible, 3)?;
    let mut resources = Vec::new();
    for _ in 0..count {
        let resource_type = r.i8()?;
        let name = r
            .string_of(flexible)?
            .ok_or(WireError::Invalid("null resource name"))?
            .to_owned();
        let key_count = r.array_len(flexible, 1)?;
        let mut keys = Vec::new();
        for _ in 0..key_count {
            let key = r
                .string_of(flexible)?
                .ok_or(WireError::Invalid("null key"))?;
            keys.push(key.to_owned());
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
        resources.push(Resource {
            resource_type,
            name,
            keys,
        });
    }
    if version >= 1 {
        r.bool()?; // include_synonyms: none are reported
    }
    if version >= 3 {
        r.bool()?; // include_documentation: none is reported
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(resources)
}

/// One setting of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Where the value comes from (Kafka's `ConfigSource`: 1 topic, 5 default).
    pub source: i8,
    /// Kafka's `ConfigType` (5 long, 7 list, ...).
    pub config_type: i8,
    /// Cannot be changed.
    pub read_only: bool,
}

/// One resource's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceResult {
    /// 0, or why the settings are not given.
    pub error_code: i16,
    /// With an error, why.
    pub error_message: Option<String>,
    /// As asked.
    pub resource_type: i8,
    /// As asked.
    pub name: String,
    /// The settings.
    pub entries: Vec<Entry>,
}

/// Writes the whole response (header included) for a request of `version`.
pub fn write_response(
    out: &mut Vec<u8>,
    correlation_id: i32,
    version: i16,
    results: &[ResourceResult],
) {
    let flexible = version >= 4;
    write_response_header(out, correlation_id, u8::from(flexible));
    let mut w = Writer::new(out, flexible);
    w.i32(0); // throttle_time_ms
    w.array_len(results.len());
    for result in results {
        w.i16(result.error_code);
        w.nullable_string(result.error_message.as_deref());
        w.i8(result.resource_type);
        w.string(&result.name);
        w.array_len(result.entries.len());
        for entry in &result.entries {
            w.string(&entry.name);
            w.nullable_string(Some(&entry.value));
            w.i8(i8::from(entry.read_only));
            if version == 0 {
                w.i8(i8::from(entry.source == 5)); // is_default
            } else {
                w.i8(entry.source);
            }
            w.i8(0); // is_sensitive
            if version >= 1 {
                w.array_len(0); // synonyms
            }
            if version >= 3 {
                w.i8(entry.config_type);
                w.nullable_string(None); // documentation
            }
            w.tagged();
        }
        w.tagged();
    }
    w.tagged();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v0_and_v4_requests() {
        // v0: topic "t", keys null.
        let v0 = [0, 0, 0, 1, 2, 0, 1, b't', 0xff, 0xff, 0xff, 0xff];
        let expected = Resource {
            resource_type: RESOURCE_TOPIC,
            name: "t".into(),
            keys: vec![],
        };
        assert_eq!(parse_request(&v0, 0).unwrap(), [expected]);
        // v4: broker "0", one key; synonyms and documentation flags.
        let v4 = [2, 4, 2, b'0', 2, 2, b'k', 0, 0, 1, 0, 0];
        let resources = parse_request(&v4, 4).unwrap();
        assert_eq!(resources[0].resource_type, RESOURCE_BROKER);
        assert_eq!(resources[0].keys, ["k"]);
        assert!(parse_request(&v4[..8], 4).is_err());
        assert!(parse_request(&[0x7f, 0xff, 0xff, 0xff], 0).is_err());
    }

    #[test]
    fn response_layouts() {
        let result = ResourceResult {
            error_code: 0,
            error_message: None,
            resource_type: RESOURCE_TOPIC,
            name: "t".into(),
            entries: vec![Entry {
                name: "a".into(),
                value: "1".into(),
                source: 5,
                config_type: 5,
                read_only: false,
            }],
        };
        let mut v0 = Vec::new();
        write_response(&mut v0, 1, 0, std::slice::from_ref(&result));
        let mut expected = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 2];
        expected.extend_from_slice(&[0, 1, b't', 0, 0, 0, 1, 0, 1, b'a', 0, 1, b'1', 0, 1, 0]);
        assert_eq!(v0, expected);
        let mut v4 = Vec::new();
        write_response(&mut v4, 1, 4, &[result]);
        let mut expected = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 2, b't', 2];
        expected.extend_from_slice(&[2, b'a', 2, b'1', 0, 5, 0, 1, 5, 0, 0, 0, 0]);
        assert_eq!(v4, expected);
    }
}

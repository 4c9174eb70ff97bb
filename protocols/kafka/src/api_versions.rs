//! ApiVersions (key 18): the first request every client sends, and the table that tells it
//! exactly which APIs and versions this broker implements.
//!
//! Responses always use response header v0 (Kafka's exception for ApiVersions, so a client
//! can parse the answer before it knows the broker's versions). A request for a version this
//! broker does not implement is answered in v0 with `UNSUPPORTED_VERSION` and the table, as
//! Apache Kafka does, so the client can retry with a version from it. Tagged fields are never
//! written with default values (old librdkafka fails to parse some of them).

use crate::error::ErrorCode;
use crate::header::write_response_header;
use crate::wire::put_uvarint;
use crate::{
    cluster, create_partitions, create_topics, delete_records, delete_topics, describe_configs,
    fetch, find_coordinator, init_producer_id, membership, metadata, offsets, produce, sasl,
};

/// API key of ApiVersions.
pub const API_KEY: i16 = 18;

/// Highest ApiVersions version implemented.
pub const VERSION_MAX: i16 = 4;

/// One implemented API and its version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API key.
    pub api_key: i16,
    /// Lowest version implemented.
    pub min: i16,
    /// Highest version implemented.
    pub max: i16,
}

/// The APIs and versions this broker implements: exactly what ApiVersions advertises, in
/// API key order.
pub const IMPLEMENTED: &[ApiRange] = &[
    ApiRange {
        api_key: produce::API_KEY,
        min: produce::VERSION_MIN,
        max: produce::VERSION_MAX,
    },
    ApiRange {
        api_key: fetch::FETCH_KEY,
        min: fetch::FETCH_MIN,
        max: fetch::FETCH_MAX,
    },
    ApiRange {
        api_key: fetch::LIST_OFFSETS_KEY,
        min: fetch::LIST_OFFSETS_MIN,
        max: fetch::LIST_OFFSETS_MAX,
    },
    ApiRange {
        api_key: metadata::API_KEY,
        min: 0,
        max: metadata::VERSION_MAX,
    },
    ApiRange {
        api_key: offsets::COMMIT_KEY,
        min: offsets::COMMIT_MIN,
        max: offsets::COMMIT_MAX,
    },
    ApiRange {
        api_key: offsets::FETCH_KEY,
        min: offsets::FETCH_MIN,
        max: offsets::FETCH_MAX,
    },
    ApiRange {
        api_key: find_coordinator::API_KEY,
        min: 0,
        max: find_coordinator::VERSION_MAX,
    },
    ApiRange {
        api_key: membership::JOIN_KEY,
        min: 0,
        max: membership::JOIN_MAX,
    },
    ApiRange {
        api_key: membership::HEARTBEAT_KEY,
        min: 0,
        max: membership::HEARTBEAT_MAX,
    },
    ApiRange {
        api_key: membership::LEAVE_KEY,
        min: 0,
        max: membership::LEAVE_MAX,
    },
    ApiRange {
        api_key: membership::SYNC_KEY,
        min: 0,
        max: membership::SYNC_MAX,
    },
    ApiRange {
        api_key: membership::DESCRIBE_KEY,
        min: 0,
        max: membership::DESCRIBE_MAX,
    },
    ApiRange {
        api_key: membership::LIST_KEY,
        min: 0,
        max: membership::LIST_MAX,
    },
    ApiRange {
        api_key: sasl::HANDSHAKE_KEY,
        min: sasl::HANDSHAKE_MIN,
        max: sasl::HANDSHAKE_MAX,
    },
    ApiRange {
        api_key: API_KEY,
        min: 0,
        max: VERSION_MAX,
    },
    ApiRange {
        api_key: create_topics::API_KEY,
        min: 0,
        max: create_topics::VERSION_MAX,
    },
    ApiRange {
        api_key: delete_topics::API_KEY,
        min: 0,
        max: delete_topics::VERSION_MAX,
    },
    ApiRange {
        api_key: delete_records::API_KEY,
        min: 0,
        max: delete_records::VERSION_MAX,
    },
    ApiRange {
        api_key: init_producer_id::API_KEY,
        min: 0,
        max: init_producer_id::VERSION_MAX,
    },
    ApiRange {
        api_key: cluster::EPOCH_KEY,
        min: 0,
        max: cluster::EPOCH_MAX,
    },
    ApiRange {
        api_key: describe_configs::API_KEY,
        min: 0,
        max: describe_configs::VERSION_MAX,
    },
    ApiRange {
        api_key: sasl::AUTHENTICATE_KEY,
        min: 0,
        max: sasl::AUTHENTICATE_MAX,
    },
    ApiRange {
        api_key: create_partitions::API_KEY,
        min: 0,
        max: create_partitions::VERSION_MAX,
    },
    ApiRange {
        api_key: membership::DELETE_KEY,
        min: 0,
        max: membership::DELETE_MAX,
    },
    ApiRange {
        api_key: cluster::DESCRIBE_KEY,
        min: 0,
        max: cluster::DESCRIBE_MAX,
    },
];

/// Request header version of ApiVersions at `version` (v3 and up are flexible).
pub fn request_header_version(version: i16) -> u8 {
    if version >= 3 { 2 } else { 1 }
}

/// Writes a whole ApiVersions response frame body (response header included) for a request
/// of `version` with `correlation_id`, listing `apis`. Versions above [`VERSION_MAX`] get the
/// v0 answer with `UNSUPPORTED_VERSION`.
pub fn write_response(out: &mut Vec<u8>, correlation_id: i32, version: i16, apis: &[ApiRange]) {
    write_response_header(out, correlation_id, 0);
    let (version, error) = if (0..=VERSION_MAX).contains(&version) {
        (version, 0i16)
    } else {
        (0, ErrorCode::UnsupportedVersion.code())
    };
    out.extend_from_slice(&error.to_be_bytes());
    let flexible = version >= 3;
    if flexible {
        put_uvarint(out, apis.len() as u32 + 1);
    } else {
        out.extend_from_slice(&(apis.len() as i32).to_be_bytes());
    }
    for api in apis {
        out.extend_from_slice(&api.api_key.to_be_bytes());
        out.extend_from_slice(&api.min.to_be_bytes());
        out.extend_from_slice(&api.max.to_be_bytes());
        if flexible {
            out.push(0); // no tagged fields
        }
    }
    if version >= 1 {
        out.extend_from_slice(&0i32.to_be_bytes()); // throttle_time_ms
    }
    if flexible {
        out.push(0); // no tagged fields: every optional feature field is at its default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: [ApiRange; 1] = [ApiRange {
        api_key: API_KEY,
        min: 0,
        max: VERSION_MAX,
    }];

    #[test]
    fn v0_and_v3_layouts() {
        let mut v0 = Vec::new();
        write_response(&mut v0, 7, 0, &TABLE);
        assert_eq!(v0, [0, 0, 0, 7, 0, 0, 0, 0, 0, 1, 0, 18, 0, 0, 0, 4]);
        let mut v3 = Vec::new();
        write_response(&mut v3, 7, 3, &TABLE);
        assert_eq!(
            v3,
            [0, 0, 0, 7, 0, 0, 2, 0, 18, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn an_unknown_version_gets_v0_with_unsupported_version() {
        let mut out = Vec::new();
        write_response(&mut out, 9, 99, &TABLE);
        assert_eq!(
            &out[4..6],
            &ErrorCode::UnsupportedVersion.code().to_be_bytes()
        );
        assert_eq!(out.len(), 16);
    }
}

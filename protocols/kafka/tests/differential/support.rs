//! What every differential case shares: the proptest runner, value strategies, and the two
//! oracle steps (a client's request frame through Weir's header parser; Weir's response bytes
//! through kafka-protocol's decoder), for both kafka-protocol releases.

use std::collections::BTreeMap;
use std::fmt::Debug;

use bytes::Bytes;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Generated values per version: enough to vary every field, few enough for a quick debug run.
const CASES_PER_VERSION: u32 = 24;

/// Runs `test` on values of `strategy` for `what` at `version`; a failure (a panic in `test`)
/// is shrunk and reported with the smallest value that fails.
pub fn check<S>(what: &str, version: i16, strategy: S, test: impl Fn(S::Value))
where
    S: Strategy,
    S::Value: Debug,
{
    let config = Config {
        failure_persistence: None,
        ..Config::with_cases(CASES_PER_VERSION)
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |value| {
        test(value);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{what} v{version}: {error}");
    }
}

/// A request header's variable part, as a client may send it.
#[derive(Debug, Clone)]
pub struct Head {
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// Unknown tagged fields (header v2 only): Weir must skip them.
    pub tags: BTreeMap<i32, Bytes>,
}

pub fn head() -> impl Strategy<Value = Head> {
    (any::<i32>(), opt_text(), tags()).prop_map(|(correlation_id, client_id, tags)| Head {
        correlation_id,
        client_id,
        tags,
    })
}

/// A short string, multi-byte characters included; now and then one over 127 bytes, whose
/// compact length takes two varint bytes.
pub fn text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![8 => "\\PC{0,8}", 1 => "[a-z]{120,160}"]
}

/// A string or null.
pub fn opt_text() -> impl Strategy<Value = Option<String>> + Clone {
    proptest::option::of(text())
}

/// Opaque bytes; now and then over 127 of them.
pub fn blob() -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![8 => vec(any::<u8>(), 0..12), 1 => vec(any::<u8>(), 120..300)]
}

/// Zero to three of `element`.
pub fn few<S: Strategy>(element: S) -> impl Strategy<Value = Vec<S::Value>> {
    vec(element, 0..4)
}

/// Zero to three of `element`, or now and then over 127, whose compact count takes two
/// varint bytes (for arrays of small elements that nest no other array).
pub fn many<S: Strategy + Clone>(element: S) -> impl Strategy<Value = Vec<S::Value>> + Clone {
    prop_oneof![6 => vec(element.clone(), 0..4), 1 => vec(element, 127..131)]
}

/// Unknown tagged fields, with tags above any the schemas define (some taking two or three
/// varint bytes): a flexible version carries them, a classic one drops them, and Weir must
/// skip them wherever they are.
pub fn tags() -> impl Strategy<Value = BTreeMap<i32, Bytes>> + Clone {
    let tag = prop_oneof![100i32..110, 128i32..130, 20_000i32..20_010];
    btree_map(tag, blob().prop_map(Bytes::from), 0..3)
}

/// A 16-byte id, zero (no id) about a third of the time.
pub fn uuid() -> impl Strategy<Value = [u8; 16]> + Clone {
    prop_oneof![Just([0u8; 16]), any::<[u8; 16]>(), any::<[u8; 16]>()]
}

/// The two oracle steps and value conversions, for one kafka-protocol crate.
macro_rules! oracle {
    ($kp:ident) => {
        use bytes::{Buf, Bytes};
        use weir_kafka::header::{self, HeaderStart};
        use $kp::messages::{ApiKey, BrokerId, GroupId, RequestHeader, ResponseHeader, TopicName};
        pub use $kp::protocol::StrBytes;
        use $kp::protocol::{Decodable, Encodable, HeaderVersion};

        use crate::support::Head;

        /// Encodes `request` of API `key` as a client does (request header of the version
        /// kafka-protocol gives, then the body at `version`), checks that Weir picks the same
        /// header version and reads the header back, and returns the body Weir's parser gets.
        pub fn request_body<R: Encodable + HeaderVersion>(
            key: ApiKey,
            request: &R,
            version: i16,
            weir_header_version: fn(i16) -> u8,
            head: &Head,
        ) -> Vec<u8> {
            let header_version = key.request_header_version(version);
            assert_eq!(R::header_version(version), header_version);
            assert_eq!(
                i16::from(weir_header_version(version)),
                header_version,
                "request header version of {key:?} v{version}"
            );
            let header = RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version)
                .with_correlation_id(head.correlation_id)
                .with_client_id(head.client_id.clone().map(StrBytes::from_string))
                .with_unknown_tagged_fields(head.tags.clone());
            let mut frame = Vec::new();
            header
                .encode(&mut frame, header_version)
                .expect("kafka-protocol encodes the header");
            request
                .encode(&mut frame, version)
                .expect("kafka-protocol encodes the request");
            let start = HeaderStart {
                api_key: key as i16,
                api_version: version,
                correlation_id: head.correlation_id,
            };
            assert_eq!(
                header::peek(&frame).expect("Weir peeks at the header"),
                start
            );
            let (parsed, body) = header::RequestHeader::parse(&frame, weir_header_version(version))
                .expect("Weir parses the header");
            assert_eq!(parsed.start, start);
            let client_id = if header_version >= 1 {
                head.client_id.as_deref()
            } else {
                None
            };
            assert_eq!(parsed.client_id, client_id);
            body.to_vec()
        }

        /// Decodes a whole response Weir wrote (response header of the version kafka-protocol
        /// gives, then the body at `version`), checking the correlation id and that every
        /// byte was read.
        pub fn decode_response<R: Decodable + HeaderVersion>(
            bytes: &[u8],
            version: i16,
            correlation_id: i32,
        ) -> R {
            let mut buf = Bytes::copy_from_slice(bytes);
            let header = ResponseHeader::decode(&mut buf, R::header_version(version))
                .unwrap_or_else(|e| panic!("response header v{version}: {e:#}\n{bytes:?}"));
            assert_eq!(header.correlation_id, correlation_id);
            let response = R::decode(&mut buf, version)
                .unwrap_or_else(|e| panic!("response body v{version}: {e:#}\n{bytes:?}"));
            assert_eq!(
                buf.remaining(),
                0,
                "bytes left after the v{version} response"
            );
            response
        }

        pub fn s(text: &str) -> StrBytes {
            StrBytes::from_string(text.to_owned())
        }

        pub fn os(text: Option<&str>) -> Option<StrBytes> {
            text.map(s)
        }

        pub fn topic(name: &str) -> TopicName {
            TopicName(s(name))
        }

        pub fn group(name: &str) -> GroupId {
            GroupId(s(name))
        }

        pub fn broker(id: i32) -> BrokerId {
            BrokerId(id)
        }
    };
}

/// kafka-protocol's newest release (Kafka 4 schemas).
pub mod newest {
    oracle!(kafka_protocol);
}

/// kafka-protocol 0.15 (Kafka 3 schemas), for the versions Kafka 4 removed.
#[allow(dead_code)] // its cases, group-free, need fewer conversions
pub mod legacy {
    oracle!(kafka_protocol_legacy);
}

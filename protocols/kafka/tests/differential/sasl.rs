//! SaslHandshake (key 17) and SaslAuthenticate (36), against kafka-protocol's newest release.

use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use proptest::prelude::*;
use weir_kafka::sasl;

use crate::support::newest::{self as oracle, s};
use crate::support::{blob, check, few, head, opt_text, tags, text};

pub fn handshake_request(version: i16) {
    check(
        "SaslHandshake request",
        version,
        (head(), text()),
        |(head, mechanism)| {
            let sent = SaslHandshakeRequest::default().with_mechanism(s(&mechanism));
            let header_version = sasl::handshake_header_version;
            let body =
                oracle::request_body(ApiKey::SaslHandshake, &sent, version, header_version, &head);
            let parsed = sasl::parse_handshake(&body, version).expect("Weir parses the request");
            assert_eq!(parsed, mechanism);
        },
    );
}

pub fn handshake_response(version: i16) {
    let values = (any::<(i32, i16)>(), few(text()));
    check(
        "SaslHandshake response",
        version,
        values,
        |((correlation_id, error_code), mechanisms)| {
            let mut out = Vec::new();
            let names: Vec<&str> = mechanisms.iter().map(String::as_str).collect();
            sasl::write_handshake_response(&mut out, correlation_id, error_code, &names);
            let read: SaslHandshakeResponse =
                oracle::decode_response(&out, version, correlation_id);
            let expected = SaslHandshakeResponse::default()
                .with_error_code(error_code)
                .with_mechanisms(mechanisms.iter().map(|m| s(m)).collect());
            assert_eq!(read, expected);
        },
    );
}

pub fn authenticate_request(version: i16) {
    check(
        "SaslAuthenticate request",
        version,
        (head(), blob(), tags()),
        |(head, token, tags)| {
            let mut sent = SaslAuthenticateRequest::default().with_auth_bytes(token.clone().into());
            if version >= 2 {
                sent = sent.with_unknown_tagged_fields(tags);
            }
            let header_version = sasl::authenticate_header_version;
            let body = oracle::request_body(
                ApiKey::SaslAuthenticate,
                &sent,
                version,
                header_version,
                &head,
            );
            let parsed = sasl::parse_authenticate(&body, version).expect("Weir parses the request");
            assert_eq!(parsed, token);
        },
    );
}

pub fn authenticate_response(version: i16) {
    let values = (any::<(i32, i16, i64)>(), opt_text(), blob());
    check(
        "SaslAuthenticate response",
        version,
        values,
        |((correlation_id, error_code, lifetime), message, token)| {
            let mut out = Vec::new();
            let answer = sasl::Authenticated {
                error_code,
                error_message: message.as_deref(),
                token: &token,
                session_lifetime_ms: lifetime,
            };
            sasl::write_authenticate_response(&mut out, correlation_id, version, &answer);
            let read: SaslAuthenticateResponse =
                oracle::decode_response(&out, version, correlation_id);
            let mut expected = SaslAuthenticateResponse::default()
                .with_error_code(error_code)
                .with_error_message(message.as_deref().map(s))
                .with_auth_bytes(token.clone().into());
            if version >= 1 {
                expected = expected.with_session_lifetime_ms(lifetime);
            }
            assert_eq!(read, expected);
        },
    );
}

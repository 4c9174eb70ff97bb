//! SASL on a Kafka session: PLAIN and SCRAM with a test user, the requests refused before
//! authentication, and the out-of-order cases that close the connection.

use super::*;
use crate::auth::scram::{ScramCredential, ScramMechanism, TestClient};
use crate::auth::{Authenticator, Verdict};

/// Knows `alice` (password `secret`, SCRAM-SHA-256 keys too); anonymous clients refused.
#[derive(Debug)]
struct Alice;

/// Alice's SCRAM-SHA-256 client.
fn alice_scram() -> TestClient {
    TestClient::new(ScramMechanism::Sha256, b"secret", b"alice-salt")
}

impl Authenticator for Alice {
    fn authenticate(&self, username: Option<&str>, password: Option<&[u8]>) -> Verdict {
        match (username, password) {
            (None, _) => Verdict::NotAuthorized,
            (Some("alice"), Some(b"secret")) => Verdict::User("alice".into()),
            _ => Verdict::BadCredentials,
        }
    }

    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        (user == "alice" && mechanism == ScramMechanism::Sha256).then(|| alice_scram().credential)
    }

    fn nonce(&self) -> String {
        "server-nonce".into()
    }
}

fn session() -> KafkaSession {
    let mut settings = (*settings()).clone();
    settings.auth = Arc::new(Alice);
    KafkaSession::new(Arc::new(settings), "/127.0.0.1".into())
}

fn handshake(mechanism: &str) -> Vec<u8> {
    let mut body = (mechanism.len() as i16).to_be_bytes().to_vec();
    body.extend_from_slice(mechanism.as_bytes());
    frame(17, 1, 1, &body)
}

fn authenticate(token: &[u8]) -> Vec<u8> {
    let mut body = (token.len() as i32).to_be_bytes().to_vec();
    body.extend_from_slice(token);
    frame(36, 1, 2, &body)
}

/// Feeds `input`; the answers written and the session's verdict.
fn feed(session: &mut KafkaSession, input: &[u8]) -> (Vec<u8>, Result<usize, KafkaError>) {
    let mut out = Vec::new();
    let mut ops = Vec::new();
    let result = session.on_bytes(input, &mut out, 1 << 20, &mut ops, 0);
    (out, result)
}

/// A SaslAuthenticate v1 answer's error code and token.
fn authenticated(answer: &[u8]) -> (i16, Vec<u8>) {
    let body = &answer[8..];
    let code = i16::from_be_bytes([body[0], body[1]]);
    let message_len = i16::from_be_bytes([body[2], body[3]]);
    let at = 4 + usize::try_from(message_len).unwrap_or(0);
    let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap()) as usize;
    (code, body[at + 4..at + 4 + len].to_vec())
}

/// Metadata v1 for every topic.
fn metadata() -> Vec<u8> {
    frame(3, 1, 9, &(-1i32).to_be_bytes())
}

#[test]
fn without_sasl_only_api_versions_is_answered_when_anonymous_clients_are_refused() {
    let mut s = session();
    let (out, result) = feed(&mut s, &request(18, 0, 1));
    assert!(result.is_ok() && !out.is_empty());
    let (_, result) = feed(&mut s, &metadata());
    assert_eq!(result, Err(KafkaError::Unauthenticated { api_key: 3 }));
}

#[test]
fn plain_lets_alice_in_and_refuses_a_wrong_password() {
    let mut s = session();
    let (out, result) = feed(&mut s, &handshake("PLAIN"));
    assert!(result.is_ok());
    assert_eq!(i16::from_be_bytes([out[8], out[9]]), 0);
    let (_, result) = feed(&mut s, &metadata());
    assert!(result.is_err(), "nothing else until the exchange is over");

    let mut s = session();
    feed(&mut s, &handshake("PLAIN")).1.unwrap();
    let (out, result) = feed(&mut s, &authenticate(b"\0alice\0secret"));
    assert!(result.is_ok());
    assert_eq!(authenticated(&out).0, 0);
    assert_eq!(s.user(), Some("alice"));
    // No second authentication on the connection.
    let mut again = session();
    feed(&mut again, &handshake("PLAIN")).1.unwrap();
    feed(&mut again, &authenticate(b"\0alice\0secret"))
        .1
        .unwrap();
    let (out, result) = feed(&mut again, &handshake("PLAIN"));
    assert_eq!(
        i16::from_be_bytes([out[8], out[9]]),
        ErrorCode::IllegalSaslState.code()
    );
    assert!(matches!(result, Err(KafkaError::Sasl(_))));
    // Authenticated, the other requests go on as usual.
    let mut ops = Vec::new();
    let mut out = Vec::new();
    assert!(
        s.on_bytes(&metadata(), &mut out, 1 << 20, &mut ops, 0)
            .is_ok()
    );
    assert_eq!(ops.len(), 1, "Metadata becomes its operation");

    for token in [
        &b"\0alice\0wrong"[..],
        b"\0mallory\0secret",
        b"bob\0alice\0secret",
        b"garbage",
    ] {
        let mut s = session();
        feed(&mut s, &handshake("PLAIN")).1.unwrap();
        let (out, result) = feed(&mut s, &authenticate(token));
        assert_eq!(
            authenticated(&out).0,
            ErrorCode::SaslAuthenticationFailed.code(),
            "{token:?}"
        );
        assert!(matches!(result, Err(KafkaError::Sasl(_))));
        assert_eq!(s.user(), None);
    }
}

#[test]
fn scram_sha_256_lets_alice_in_with_the_right_proof_only() {
    for right in [true, false] {
        let mut s = session();
        feed(&mut s, &handshake("SCRAM-SHA-256")).1.unwrap();
        let client_first_bare = "n=alice,r=client-nonce";
        let (out, result) = feed(
            &mut s,
            &authenticate(format!("n,,{client_first_bare}").as_bytes()),
        );
        assert!(result.is_ok());
        let (code, server_first) = authenticated(&out);
        assert_eq!(code, 0);
        let server_first = String::from_utf8(server_first).unwrap();
        assert!(
            server_first.starts_with("r=client-nonceserver-nonce,s="),
            "{server_first}"
        );
        let without_proof = "c=biws,r=client-nonceserver-nonce";
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let mut proof = alice_scram().proof(&auth_message);
        if !right {
            proof[0] ^= 1;
        }
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let last = format!("{without_proof},p={}", b64.encode(&proof));
        let (out, result) = feed(&mut s, &authenticate(last.as_bytes()));
        let (code, server_final) = authenticated(&out);
        if right {
            assert_eq!(code, 0);
            assert!(server_final.starts_with(b"v="));
            assert!(result.is_ok());
            assert_eq!(s.user(), Some("alice"));
        } else {
            assert_eq!(code, ErrorCode::SaslAuthenticationFailed.code());
            assert!(result.is_err());
            assert_eq!(s.user(), None);
        }
    }
}

#[test]
fn out_of_order_and_unknown_sasl_requests_close_the_connection() {
    let mut s = session();
    let (out, result) = feed(&mut s, &authenticate(b"\0alice\0secret"));
    assert_eq!(authenticated(&out).0, ErrorCode::IllegalSaslState.code());
    assert!(result.is_err(), "SaslAuthenticate before a handshake");

    let mut s = session();
    let (out, result) = feed(&mut s, &handshake("GSSAPI"));
    assert_eq!(
        i16::from_be_bytes([out[8], out[9]]),
        ErrorCode::UnsupportedSaslMechanism.code()
    );
    assert!(result.is_err());

    let mut s = session();
    feed(&mut s, &handshake("SCRAM-SHA-512")).1.unwrap();
    let oversized = format!("n,,n=alice,r={}", "x".repeat(5000));
    let (out, result) = feed(&mut s, &authenticate(oversized.as_bytes()));
    assert_eq!(
        authenticated(&out).0,
        ErrorCode::SaslAuthenticationFailed.code()
    );
    assert!(result.is_err(), "an oversized SCRAM message");
}

/// After a version 0 handshake the tokens come as raw frames (PLAIN's token is shorter than
/// any request): the reply is a raw frame, and the connection speaks Kafka again after.
#[test]
fn a_version_0_handshake_takes_raw_tokens() {
    let mut s = session();
    let mut body = 5i16.to_be_bytes().to_vec();
    body.extend_from_slice(b"PLAIN");
    feed(&mut s, &frame(17, 0, 1, &body)).1.unwrap();
    let token = b"\0al\0x";
    let mut raw = (token.len() as i32).to_be_bytes().to_vec();
    raw.extend_from_slice(token);
    let (_, result) = feed(&mut s, &raw);
    assert!(
        matches!(result, Err(KafkaError::Sasl(_))),
        "a wrong password closes"
    );

    let mut s = session();
    feed(&mut s, &frame(17, 0, 1, &body)).1.unwrap();
    let token = b"\0alice\0secret";
    let mut raw = (token.len() as i32).to_be_bytes().to_vec();
    raw.extend_from_slice(token);
    let (out, result) = feed(&mut s, &raw);
    assert_eq!(result, Ok(raw.len()));
    assert_eq!(out, [0, 0, 0, 0], "an empty raw reply");
    assert_eq!(s.user(), Some("alice"));
    let mut ops = Vec::new();
    let mut out = Vec::new();
    assert!(
        s.on_bytes(&metadata(), &mut out, 1 << 20, &mut ops, 0)
            .is_ok()
    );
    assert_eq!(ops.len(), 1);
}

/// A failed authentication is answered, and the connection closed, only once
/// `refused_auth_delay_ms` has passed; meanwhile nothing more is read.
#[test]
fn a_failed_authentication_waits_out_the_refusal_delay() {
    let mut settings = (*settings()).clone();
    settings.auth = Arc::new(Alice);
    settings.refused_auth_delay_ms = 1000;
    let mut s = KafkaSession::new(Arc::new(settings), "/127.0.0.1".into());
    feed(&mut s, &handshake("PLAIN")).1.unwrap();
    let input = [authenticate(b"\0alice\0wrong"), request(18, 0, 3)].concat();
    let (out, result) = feed(&mut s, &input);
    assert!(out.is_empty(), "no answer yet");
    assert_eq!(
        result,
        Ok(authenticate(b"\0alice\0wrong").len()),
        "the request after it waits"
    );
    assert!(s.refusing() && s.saturated());
    let mut out = Vec::new();
    assert_eq!(s.tick(999, &mut out), Ok(()));
    assert!(out.is_empty());
    assert!(matches!(s.tick(1000, &mut out), Err(KafkaError::Sasl(_))));
    assert_eq!(
        authenticated(&out).0,
        ErrorCode::SaslAuthenticationFailed.code()
    );
    assert!(!s.refusing());
}

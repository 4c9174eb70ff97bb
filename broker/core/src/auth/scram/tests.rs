use super::*;

/// RFC 7677's example user: password "pencil", this salt, 4096 iterations; its SHA-256 keys
/// were computed with Python's hashlib and hmac.
fn rfc_credential() -> ScramCredential {
    ScramCredential {
        mechanism: ScramMechanism::Sha256,
        iterations: 4096,
        salt: B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
        stored_key: B64
            .decode("WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=")
            .unwrap(),
        server_key: B64
            .decode("wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")
            .unwrap(),
    }
}

const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

/// RFC 7677 section 3's exchange, message for message.
#[test]
fn the_rfc_7677_exchange() {
    let mut server = ScramServer::new(ScramMechanism::Sha256);
    let lookup = |user: &str| (user == "user").then(rfc_credential);
    let first = server
        .first(CLIENT_FIRST.as_bytes(), lookup, SERVER_NONCE)
        .unwrap();
    assert_eq!(
        String::from_utf8(first).unwrap(),
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let (user, last) = server.finish(CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(user, "user");
    assert_eq!(
        String::from_utf8(last).unwrap(),
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
    assert_eq!(
        server.finish(CLIENT_FINAL.as_bytes()),
        Err(ScramError::Over)
    );
}

/// A wrong proof, an unknown user (whose first answer looks like a known one's), a nonce
/// that is not the exchange's: each fails.
#[test]
fn wrong_proofs_unknown_users_and_foreign_nonces_fail() {
    let lookup = |user: &str| (user == "user").then(rfc_credential);
    let mut server = ScramServer::new(ScramMechanism::Sha256);
    server
        .first(CLIENT_FIRST.as_bytes(), lookup, SERVER_NONCE)
        .unwrap();
    let wrong = CLIENT_FINAL.replace("p=dHz", "p=dHy");
    assert_eq!(server.finish(wrong.as_bytes()), Err(ScramError::Failed));

    let mut server = ScramServer::new(ScramMechanism::Sha256);
    let unknown = CLIENT_FIRST.replace("n=user", "n=nobody");
    let first = server
        .first(unknown.as_bytes(), lookup, SERVER_NONCE)
        .unwrap();
    assert!(String::from_utf8(first).unwrap().ends_with(",i=4096"));
    assert_eq!(
        server.finish(CLIENT_FINAL.as_bytes()),
        Err(ScramError::Failed)
    );

    let mut server = ScramServer::new(ScramMechanism::Sha256);
    server
        .first(CLIENT_FIRST.as_bytes(), lookup, "another-nonce")
        .unwrap();
    assert_eq!(
        server.finish(CLIENT_FINAL.as_bytes()),
        Err(ScramError::NonceMismatch)
    );
}

/// Hostile and unsupported first messages are refused before any lookup.
#[test]
fn bad_first_messages_are_refused() {
    let oversized = format!("n,,n=user,r={}", "x".repeat(SCRAM_MESSAGE_BYTES_MAX));
    let cases: [(&[u8], ScramError); 8] = [
        (oversized.as_bytes(), ScramError::TooLong(oversized.len())),
        (
            b"p=tls-unique,,n=user,r=abc",
            ScramError::Unsupported("channel binding"),
        ),
        (
            b"n,,n=user,r=abc,tokenauth=true",
            ScramError::Unsupported("delegation tokens"),
        ),
        (b"x,,n=user,r=abc", ScramError::Malformed("the GS2 header")),
        (b"n,,r=abc", ScramError::Malformed("no user name")),
        (b"n,,n=user", ScramError::Malformed("no nonce")),
        (
            b"n,,n=us=er,r=abc",
            ScramError::Malformed("a user name escape"),
        ),
        (b"n,,n=user,r=\xff", ScramError::Malformed("not UTF-8")),
    ];
    for (message, error) in cases {
        let mut server = ScramServer::new(ScramMechanism::Sha512);
        let looked = std::cell::Cell::new(false);
        let lookup = |_: &str| {
            looked.set(true);
            None
        };
        assert_eq!(server.first(message, lookup, "n0nce"), Err(error));
        assert!(!looked.get());
    }
}

/// SCRAM-SHA-512 with a client computed here from the salted password (PBKDF2 from the
/// `pbkdf2` crate), and a user name with escaped `,` and `=`.
#[test]
fn a_sha512_exchange_with_an_escaped_user_name() {
    let mechanism = ScramMechanism::Sha512;
    let client = TestClient::new(mechanism, b"pass word", b"0123456789abcdef");
    let credential = client.credential.clone();
    let mut server = ScramServer::new(mechanism);
    let client_first_bare = "n=a=2Cb=3Dc,r=clientnonce";
    let lookup = |user: &str| (user == "a,b=c").then(|| credential.clone());
    let first = server
        .first(
            format!("n,,{client_first_bare}").as_bytes(),
            lookup,
            "servernonce",
        )
        .unwrap();
    let server_first = String::from_utf8(first).unwrap();
    let without_proof = "c=biws,r=clientnonceservernonce";
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let proof = client.proof(&auth_message);
    let last = format!("{without_proof},p={}", B64.encode(proof));
    let (user, server_final) = server.finish(last.as_bytes()).unwrap();
    assert_eq!(user, "a,b=c");
    let expected = mechanism.hmac(&credential.server_key, auth_message.as_bytes());
    assert_eq!(
        server_final,
        format!("v={}", B64.encode(expected)).into_bytes()
    );
}

/// librdkafka sends its client nonce before the combined nonce in its final message (Kafka
/// accepts it): that passes, with the proof over the message as sent; other prefixes do not.
#[test]
fn librdkafkas_doubled_client_nonce_is_taken() {
    let mechanism = ScramMechanism::Sha256;
    let client = TestClient::new(mechanism, b"pw", b"salt");
    let credential = client.credential.clone();
    for (nonce, accepted) in [("cnoncecnoncesnonce", true), ("xcnoncesnonce", false)] {
        let mut server = ScramServer::new(mechanism);
        let lookup = |_: &str| Some(credential.clone());
        let first = server.first(b"n,,n=u,r=cnonce", lookup, "snonce").unwrap();
        let server_first = String::from_utf8(first).unwrap();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("n=u,r=cnonce,{server_first},{without_proof}");
        let proof = client.proof(&auth_message);
        let last = format!("{without_proof},p={}", B64.encode(proof));
        assert_eq!(server.finish(last.as_bytes()).is_ok(), accepted, "{nonce}");
    }
}

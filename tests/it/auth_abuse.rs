//! Hostile authentication inputs from past broker CVEs (../shared/design/TESTING.md), sent
//! over the wire to the real process: SASL out of order, an oversized SCRAM message, a SCRAM
//! nonce that is not the server's, a second authentication as another user, huge lengths
//! before and after authentication (MQTT and Kafka), and password files with empty lines.
//! Each gets its documented answer and closes only its own connection; the broker keeps
//! serving, and its memory does not grow by what the lengths ask for.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use weir_tests::{Weir, api_versions_request, closed_by_peer, read_frame};

use crate::security::add_user;

const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// A request frame of `api_key` v1 (header v1, client id "t"), then `body`.
fn request(api_key: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&1i16.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&[0, 1, b't']);
    frame.extend_from_slice(body);
    [&(frame.len() as u32).to_be_bytes()[..], &frame].concat()
}

/// SaslHandshake v1 naming `mechanism`.
fn handshake(mechanism: &str) -> Vec<u8> {
    let name = [
        &(mechanism.len() as u16).to_be_bytes()[..],
        mechanism.as_bytes(),
    ]
    .concat();
    request(SASL_HANDSHAKE, 1, &name)
}

/// SaslAuthenticate v1 carrying `token`.
fn authenticate(token: &[u8]) -> Vec<u8> {
    let bytes = [&(token.len() as u32).to_be_bytes()[..], token].concat();
    request(SASL_AUTHENTICATE, 2, &bytes)
}

/// Sends `frame`; the error code of the answer (the first field after the correlation id)
/// and the answer itself.
fn ask(stream: &mut TcpStream, frame: &[u8]) -> (i16, Vec<u8>) {
    stream.write_all(frame).expect("the request is sent");
    let answer = read_frame(stream).expect("an answer comes");
    (i16::from_be_bytes([answer[4], answer[5]]), answer)
}

/// A SaslAuthenticate v1 answer's token.
fn token_of(answer: &[u8]) -> Vec<u8> {
    let message_len = i16::from_be_bytes([answer[6], answer[7]]);
    let at = 8 + usize::try_from(message_len).unwrap_or(0);
    let len = u32::from_be_bytes(answer[at..at + 4].try_into().expect("4 bytes")) as usize;
    answer[at + 4..at + 4 + len].to_vec()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("the broker accepts");
    (stream.set_read_timeout(Some(weir_tests::WAIT))).expect("a read timeout");
    stream
}

/// Whether a new Kafka connection still gets ApiVersions answered.
fn serves(addr: SocketAddr) -> bool {
    let mut stream = connect(addr);
    stream.write_all(&api_versions_request(0, 9)).is_ok() && read_frame(&mut stream).is_ok()
}

/// A broker that refuses anonymous clients, knows alice and bob, and answers refusals at
/// once (the delay has its own unit tests).
fn broker(dir: &std::path::Path) -> Weir {
    let users = dir.join("users").display().to_string();
    add_user(&users, "alice", "alice-pw");
    add_user(&users, "bob", "bob-pw");
    Weir::builder()
        .env("WEIR_AUTH_USERS_FILE", &users)
        .env("WEIR_AUTH_ALLOW_ANONYMOUS", "false")
        .env("WEIR_AUTH_REFUSED_CONNECT_DELAY_MS", "0")
        .start()
        .expect("the broker starts")
}

/// SaslAuthenticate before a handshake is ILLEGAL_SASL_STATE; a SCRAM client-first message
/// over 4 KiB and a client-final message whose nonce is not the server's are
/// SASL_AUTHENTICATION_FAILED; after alice authenticated, a second handshake and a
/// SaslAuthenticate as bob are ILLEGAL_SASL_STATE. Each closes its connection, and the broker
/// serves on.
#[test]
fn sasl_out_of_order_oversized_or_forged_is_refused_and_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = broker(dir.path());
    let addr = weir.kafka_addr().unwrap();

    let mut stream = connect(addr);
    let (code, _) = ask(&mut stream, &authenticate(b"\0alice\0alice-pw"));
    assert_eq!(code, ILLEGAL_SASL_STATE, "authenticate before a handshake");
    assert!(closed_by_peer(&mut stream));

    let mut stream = connect(addr);
    assert_eq!(ask(&mut stream, &handshake("SCRAM-SHA-256")).0, 0);
    let oversized = format!("n,,n=alice,r={}", "x".repeat(5000));
    let (code, _) = ask(&mut stream, &authenticate(oversized.as_bytes()));
    assert_eq!(
        code, SASL_AUTHENTICATION_FAILED,
        "a 5 KB client-first message"
    );
    assert!(closed_by_peer(&mut stream));

    let mut stream = connect(addr);
    assert_eq!(ask(&mut stream, &handshake("SCRAM-SHA-256")).0, 0);
    let (code, answer) = ask(&mut stream, &authenticate(b"n,,n=alice,r=client-nonce"));
    assert_eq!(code, 0);
    let server_first = String::from_utf8(token_of(&answer)).unwrap();
    assert!(server_first.starts_with("r=client-nonce"), "{server_first}");
    let forged =
        b"c=biws,r=client-nonce-not-the-servers,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (code, _) = ask(&mut stream, &authenticate(forged));
    assert_eq!(
        code, SASL_AUTHENTICATION_FAILED,
        "a nonce that is not the server's"
    );
    assert!(closed_by_peer(&mut stream));

    for second in [handshake("PLAIN"), authenticate(b"\0bob\0bob-pw")] {
        let mut stream = connect(addr);
        assert_eq!(ask(&mut stream, &handshake("PLAIN")).0, 0);
        assert_eq!(ask(&mut stream, &authenticate(b"\0alice\0alice-pw")).0, 0);
        let (code, _) = ask(&mut stream, &second);
        assert_eq!(code, ILLEGAL_SASL_STATE, "a second authentication");
        assert!(closed_by_peer(&mut stream));
    }
    assert!(serves(addr));
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));
}

/// A v3.1.1 CONNECT of client `abuser`, with `user`'s name and password if given.
fn mqtt_connect(user: Option<(&str, &str)>) -> Vec<u8> {
    let field = |text: &str| [&(text.len() as u16).to_be_bytes()[..], text.as_bytes()].concat();
    let flags: u8 = if user.is_some() { 0xc2 } else { 0x02 };
    let mut body = [&field("MQTT")[..], &[4, flags, 0, 60]].concat();
    body.extend(field("abuser"));
    if let Some((name, password)) = user {
        body.extend(field(name));
        body.extend(field(password));
    }
    [&[0x10, body.len() as u8][..], &body].concat()
}

/// A frame announcing 256 MiB (MQTT's largest remaining length) after `first`, with a few KiB
/// of filler.
fn huge_mqtt(first: u8) -> Vec<u8> {
    [&[first, 0xff, 0xff, 0xff, 0x7f][..], &[0u8; 4096]].concat()
}

/// Huge lengths before and after authentication: an MQTT CONNECT of 256 MiB, a PUBLISH of
/// 256 MiB after alice's CONNECT, a Kafka frame of 2 GiB before SASL and another after it.
/// Each closes its connection; the broker's resident memory does not grow by anything near
/// those sizes, and both fronts serve new clients.
#[test]
fn huge_lengths_before_and_after_authentication_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = broker(dir.path());
    let (mqtt, kafka) = (weir.mqtt_addr().unwrap(), weir.kafka_addr().unwrap());
    let before = weir.rss_bytes().unwrap();

    let mut stream = connect(mqtt);
    let _ = stream.write_all(&huge_mqtt(0x10));
    assert!(closed_by_peer(&mut stream), "a 256 MiB CONNECT");
    let mut stream = connect(mqtt);
    stream
        .write_all(&mqtt_connect(Some(("alice", "alice-pw"))))
        .unwrap();
    let mut connack = [0u8; 4];
    std::io::Read::read_exact(&mut stream, &mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "alice is let in");
    let _ = stream.write_all(&huge_mqtt(0x30));
    assert!(
        closed_by_peer(&mut stream),
        "a 256 MiB PUBLISH after authentication"
    );

    let huge_kafka = [&0x7fff_ffffu32.to_be_bytes()[..], &[0u8; 4096]].concat();
    let mut stream = connect(kafka);
    let _ = stream.write_all(&huge_kafka);
    assert!(closed_by_peer(&mut stream), "a 2 GiB frame before SASL");
    let mut stream = connect(kafka);
    assert_eq!(ask(&mut stream, &handshake("PLAIN")).0, 0);
    assert_eq!(ask(&mut stream, &authenticate(b"\0alice\0alice-pw")).0, 0);
    let _ = stream.write_all(&huge_kafka);
    assert!(closed_by_peer(&mut stream), "a 2 GiB frame after SASL");

    let grown = weir.rss_bytes().unwrap().saturating_sub(before);
    assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");
    assert!(serves(kafka));
    let mut stream = connect(mqtt);
    stream
        .write_all(&mqtt_connect(Some(("bob", "bob-pw"))))
        .unwrap();
    std::io::Read::read_exact(&mut stream, &mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "bob is let in after all that");
}

/// A Mosquitto password file with empty and blank lines loads (they are skipped); one whose
/// line has a name and no hash stops the start, naming the file and the line.
#[test]
fn empty_password_file_lines_are_skipped_and_a_hashless_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = weir_tests::unpacked_tool("mosquitto", "usr/bin/mosquitto_passwd");
    let file = dir.path().join("mosquitto.passwd");
    let status = std::process::Command::new(&passwd)
        .args([
            "-c",
            "-b",
            &file.display().to_string(),
            "bob",
            "bobs password",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let written = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("\n\n   \n{written}\n\n")).unwrap();
    let mut weir = Weir::builder()
        .env(
            "WEIR_AUTH_MOSQUITTO_PASSWORD_FILE",
            file.display().to_string(),
        )
        .env("WEIR_AUTH_ALLOW_ANONYMOUS", "false")
        .start()
        .unwrap();
    let mut stream = connect(weir.mqtt_addr().unwrap());
    stream
        .write_all(&mqtt_connect(Some(("bob", "bobs password"))))
        .unwrap();
    let mut connack = [0u8; 4];
    std::io::Read::read_exact(&mut stream, &mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    weir.signal(libc::SIGTERM).unwrap();
    assert_eq!(weir.wait_exit().unwrap().code(), Some(0));

    std::fs::write(&file, format!("{written}carol:\n")).unwrap();
    let mut weir = Weir::builder()
        .env(
            "WEIR_AUTH_MOSQUITTO_PASSWORD_FILE",
            file.display().to_string(),
        )
        .spawn()
        .unwrap();
    assert_ne!(weir.wait_exit().unwrap().code(), Some(0));
    weir.wait_for_log("mosquitto.passwd:2:").unwrap();
}

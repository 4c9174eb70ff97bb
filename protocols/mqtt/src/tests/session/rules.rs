//! Rules a conforming broker keeps that Mosquitto's and Paho's test suites check: the keep
//! alive cap, MQTT 3.1's client identifier and CONNACK, an authentication method the server
//! does not offer, publishes to `$share/` topics, and acknowledgements of the wrong type.

use super::*;

/// The CONNACK a CONNECT from `connect` gets under `limits` (the session's answer written),
/// the keep alive the broker is asked to apply, and the session's verdict.
fn connack_for(
    connect: Connect,
    limits: SessionLimits,
) -> (ConnAck, Option<u16>, Result<usize, SessionError>) {
    let mut h = Harness::new(connect.protocol_version, limits);
    let result = h.send(&[Packet::Connect(Box::new(connect))], 0);
    let keep_alive = match h.actions().first() {
        Some(Action::Connect(request)) => {
            h.session.accept(false, 0, &mut h.out);
            Some(request.keep_alive_s)
        }
        _ => None,
    };
    let sent = h.sent();
    (connack(&sent[0]).clone(), keep_alive, result)
}

#[test]
fn keep_alive_above_the_cap_or_none_is_held_to_it_or_refused_on_3_1_x() {
    let capped = SessionLimits {
        keep_alive_max_s: 60,
        ..SessionLimits::default()
    };
    for (asked, held) in [(120, 60), (0, 60), (30, 30), (60, 60)] {
        let (ack, keep_alive, result) = connack_for(connect_packet(V5, "c", asked), capped.clone());
        assert!(result.is_ok());
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        assert_eq!(keep_alive, Some(held), "asked {asked}");
        let told = (asked != held).then_some(held);
        assert_eq!(ack.properties.server_keep_alive, told, "asked {asked}");
    }
    for version in [V3, V4] {
        for asked in [120, 0] {
            let (ack, keep_alive, result) =
                connack_for(connect_packet(version, "c", asked), capped.clone());
            assert_eq!(ack.reason_code, ReasonCode(2), "{version:?} asked {asked}");
            assert_eq!(keep_alive, None);
            assert!(result.is_err());
        }
        let (ack, _, _) = connack_for(connect_packet(version, "c", 60), capped.clone());
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    }
    // Without a cap (the default), every keep alive stands, 0 included.
    let (ack, keep_alive, _) = connack_for(connect_packet(V4, "c", 0), SessionLimits::default());
    assert_eq!(
        (ack.reason_code, keep_alive),
        (ReasonCode::SUCCESS, Some(0))
    );
}

#[test]
fn mqtt_3_1_needs_a_client_id_and_its_connack_has_no_session_present_flag() {
    let (ack, _, result) = connack_for(connect_packet(V3, "", 0), SessionLimits::default());
    assert_eq!(ack.reason_code, ReasonCode(2));
    assert!(result.is_err());
    for (version, flags) in [(V3, 0), (V4, 1)] {
        let mut connect = connect_packet(version, "c", 0);
        connect.clean_start = false;
        let mut h = Harness::new(version, SessionLimits::default());
        h.send(&[Packet::Connect(Box::new(connect))], 0)
            .expect("valid CONNECT");
        h.session.accept(true, 0, &mut h.out);
        assert_eq!(h.out[..3], [0x20, 2, flags], "{version:?}");
    }
}

#[test]
fn an_authentication_method_is_refused_with_0x8c() {
    let mut connect = connect_packet(V5, "c", 0);
    connect.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let (ack, keep_alive, result) = connack_for(connect, SessionLimits::default());
    assert_eq!(ack.reason_code, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert_eq!(keep_alive, None, "the broker is not asked");
    assert!(result.is_err());
}

#[test]
fn a_publish_to_a_share_topic_closes_the_connection() {
    for version in [V5, V4] {
        let mut h = connected(version);
        let result = h.send(
            &[Packet::Publish(publish(
                QoS::AtLeastOnce,
                Some(1),
                "$share/g/t",
            ))],
            1,
        );
        assert!(result.is_err(), "{version:?}");
        let close = h.actions();
        assert!(
            matches!(close[..], [Action::Close { reason, .. }] if reason == ReasonCode::TOPIC_NAME_INVALID),
            "{close:?}"
        );
        let goodbye = h.sent();
        if version == V5 {
            assert!(
                matches!(&goodbye[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::TOPIC_NAME_INVALID),
                "{goodbye:?}"
            );
        } else {
            assert!(goodbye.is_empty());
        }
    }
}

/// A session of `version` with a QoS 1 message as packet 1 and a QoS 2 one as packet 2.
fn with_two_in_flight(version: ProtocolVersion) -> Harness {
    let mut h = connected(version);
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        h.session
            .deliver(message(qos, 3), &mut h.out)
            .expect("room");
    }
    h.sent();
    h
}

#[test]
fn acknowledgements_of_the_wrong_type_are_protocol_errors() {
    let wrong = [
        Packet::PubRec(PubResponse::new(pid(1))),
        Packet::PubComp(PubResponse::new(pid(1))),
        Packet::PubAck(PubResponse::new(pid(2))),
        Packet::PubComp(PubResponse::new(pid(2))),
    ];
    for version in [V5, V4] {
        for ack in &wrong {
            let mut h = with_two_in_flight(version);
            let result = h.send(std::slice::from_ref(ack), 1);
            assert!(result.is_err(), "{version:?} {ack:?}");
            assert!(
                matches!(h.actions()[..], [Action::Close { reason, .. }] if reason == ReasonCode::PROTOCOL_ERROR)
            );
        }
    }
    // A PUBCOMP for no publish at all: MQTT 5 closes; 3.1.1, which cannot say why, ignores it.
    let stray = Packet::PubComp(PubResponse::new(pid(9)));
    let mut h = with_two_in_flight(V5);
    assert!(h.send(std::slice::from_ref(&stray), 1).is_err());
    let mut h = with_two_in_flight(V4);
    assert!(h.send(&[stray], 1).is_ok());
    assert!(h.actions().is_empty() && h.sent().is_empty());
}

#[test]
fn nothing_larger_than_the_clients_maximum_packet_size_is_sent() {
    // An assigned client identifier and the server's limits make a CONNACK of about 50
    // bytes: a client taking at most 12 gets the CONNACK's code alone.
    let mut connect = connect_packet(V5, "", 0);
    connect.properties.maximum_packet_size = Some(12);
    let mut h = Harness::new(V5, SessionLimits::default());
    h.send(&[Packet::Connect(Box::new(connect))], 0)
        .expect("valid CONNECT");
    h.actions();
    h.session.accept(false, 0, &mut h.out);
    assert!(h.out.len() <= 12, "{} bytes", h.out.len());
    let sent = h.sent();
    assert_eq!(connack(&sent[0]).reason_code, ReasonCode::SUCCESS);
    assert_eq!(connack(&sent[0]).properties, Properties::default());
    // Without the limit the same CONNACK carries its properties.
    let mut h = Harness::new(V5, SessionLimits::default());
    h.send(&[Packet::Connect(Box::new(connect_packet(V5, "", 0)))], 0)
        .expect("valid CONNECT");
    h.actions();
    h.session.accept(false, 0, &mut h.out);
    let sent = h.sent();
    assert!(
        connack(&sent[0])
            .properties
            .assigned_client_identifier
            .is_some()
    );
}

#[test]
fn a_publish_with_more_topic_levels_than_the_limit_closes_the_connection() {
    let limits = SessionLimits {
        topic_levels_max: 3,
        ..SessionLimits::default()
    };
    let mut h = connected_with(connect_packet(V5, "c", 0), limits.clone());
    assert!(
        h.send(
            &[Packet::Publish(publish(QoS::AtMostOnce, None, "a/b/c"))],
            1
        )
        .is_ok()
    );
    assert!(matches!(h.actions()[..], [Action::Publish(_)]));
    let result = h.send(
        &[Packet::Publish(publish(QoS::AtMostOnce, None, "a/b/c/d"))],
        2,
    );
    assert!(result.is_err());
    assert!(
        matches!(&h.sent()[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::TOPIC_NAME_INVALID)
    );
}

#[test]
fn a_pubrel_left_waiting_is_sent_again_by_the_next_connection() {
    let mut h = connected(V4);
    h.session
        .deliver(message(QoS::ExactlyOnce, 3), &mut h.out)
        .expect("room");
    h.sent();
    h.send(&[Packet::PubRec(PubResponse::new(pid(1)))], 1)
        .expect("ok");
    assert_eq!(h.sent(), [Packet::PubRel(PubResponse::new(pid(1)))]);
    assert_eq!(h.session.awaiting_pubcomp(), [1]);
    // The next connection of the session.
    let mut next = connected(V4);
    next.session.resend_releases(&[1], &mut next.out);
    assert_eq!(next.sent(), [Packet::PubRel(PubResponse::new(pid(1)))]);
    assert_eq!(next.session.outbound_inflight(), 1, "it holds a slot");
    next.send(&[Packet::PubComp(PubResponse::new(pid(1)))], 1)
        .expect("its PUBCOMP is expected");
    assert_eq!(next.session.outbound_inflight(), 0);
    assert!(next.session.awaiting_pubcomp().is_empty());
}

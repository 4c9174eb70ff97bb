//! Any bytes a client can send over MQTT over WebSocket, through the whole server side of a
//! connection: the WebSocket upgrade and frame layer, then a `ServerSession` whose broker
//! accepts the CONNECT and answers every action at once (stores, subscriptions, releases)
//! and delivers messages to it. Nothing may panic, and what the session writes must decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_mqtt::websocket::WsServer;
use weir_mqtt::{
    Action, Message, PacketDecoder, Properties, QoS, ReasonCode, ServerSession, SessionLimits,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let limits = SessionLimits {
        receive_maximum: 4,
        topic_alias_max: 2,
        outbound_queue_bytes_max: 4096,
        packet_size_bytes_max: 16 * 1024,
        ..SessionLimits::default()
    };
    let mut session = ServerSession::new(limits, 1, 0);
    let mut ws = WsServer::new(32 * 1024);
    let (mut frames_out, mut mqtt_bytes, mut out, mut actions) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // With selector bit 0 clear the input is plain MQTT, without the WebSocket layer.
    let websocket = selector & 1 == 1;
    let mut rest = input;
    let mut now = 0;
    for chunk in 0..64 {
        if rest.is_empty() {
            break;
        }
        now += 700;
        let take = rest.len().min(1 + usize::from(selector >> 1) * 7);
        let (piece, tail) = rest.split_at(take);
        rest = tail;
        if websocket {
            match ws.decode(piece, &mut mqtt_bytes, &mut frames_out) {
                Ok(used) => assert!(used <= piece.len()),
                Err(_) => break,
            }
        } else {
            mqtt_bytes.extend_from_slice(piece);
        }
        let Ok(used) = session.on_bytes(&mqtt_bytes, now, &mut out, &mut actions) else {
            break;
        };
        mqtt_bytes.drain(..used);
        for action in std::mem::take(&mut actions) {
            match action {
                Action::Connect(_) => session.accept(false, now, &mut out),
                Action::Publish(p) => {
                    if let Some(id) = p.packet_id {
                        session.published(id, ReasonCode::SUCCESS, &mut out, &mut actions);
                    }
                }
                Action::Subscribe(s) => {
                    let codes = vec![ReasonCode::GRANTED_QOS_1; s.subscriptions.len()];
                    session.subscribed(s.packet_id, &codes, &mut out);
                }
                Action::Unsubscribe(u) => {
                    let codes = vec![ReasonCode::SUCCESS; u.filters.len()];
                    session.unsubscribed(u.packet_id, &codes, &mut out);
                }
                Action::Released { packet_id } => {
                    session.completed(packet_id, ReasonCode::SUCCESS, &mut out);
                }
                _ => {}
            }
        }
        if chunk % 3 == 0 && session.is_connected() {
            let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][chunk % 9 / 3];
            let message = Message {
                topic: "a/b".into(),
                payload: vec![chunk as u8; 40],
                qos,
                retain: false,
                properties: Properties::default(),
                dup: chunk % 2 == 0,
            };
            let _ = session.deliver_tagged(message.borrowed(), chunk as u64, &mut out);
        }
        session.tick(now, &mut actions);
        assert!(mqtt_bytes.len() <= 16 * 1024 + 64 * 1024, "held input stays bounded");
    }
    // Whatever the session wrote is a sequence of valid packets of its version.
    let decoder = PacketDecoder::new(usize::MAX >> 8);
    let version = session.protocol_version();
    let mut at = 0;
    while at < out.len() {
        match decoder.decode(&out[at..], version) {
            Ok(Some((_, used))) => at += used,
            other => panic!("the session wrote something undecodable: {other:?}"),
        }
    }
});

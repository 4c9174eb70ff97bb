//! Publishes' buffers, used again: the boxes messages travel in from a session to the
//! server, and the topic and payload buffers the decoder fills ([`weir_mqtt::Spares`]).

use weir_mqtt::{Properties, Spares};

use crate::mqtt_kafka::LogMessage;

/// What one shard's MQTT publishes leave for the next ones: a message the server has copied
/// into a record batch comes back ([`MessagePool::recycle`]) and the next PUBLISH decoded
/// reuses its box, topic and payload. The server lends it to a connection for each read
/// ([`super::MqttConnection::on_bytes`]). Bounded: at most [`MessagePool::BOXES_MAX`] boxes,
/// and the buffers [`Spares`] keeps (none over 4 KiB), so at most about 2 MiB per shard
/// after any load.
#[derive(Debug, Default)]
pub struct MessagePool {
    pub(super) spares: Spares,
    #[expect(
        clippy::vec_box,
        reason = "the boxes are what is reused: each goes out whole in a message's work item"
    )]
    boxes: Vec<Box<LogMessage>>,
}

impl MessagePool {
    /// Message boxes kept.
    pub const BOXES_MAX: usize = 256;

    /// A box for a message, from the pool if it has one.
    pub(super) fn message(&mut self, message: LogMessage) -> Box<LogMessage> {
        match self.boxes.pop() {
            Some(mut kept) => {
                *kept = message;
                kept
            }
            None => Box::new(message),
        }
    }

    /// Gives back a message the server is done with (its record is in a batch).
    pub fn recycle(&mut self, mut message: Box<LogMessage>) {
        let topic = std::mem::take(&mut message.topic);
        let payload = std::mem::take(&mut message.payload);
        self.spares.put(topic, payload);
        if self.boxes.len() < Self::BOXES_MAX {
            message.properties = Properties::default();
            self.boxes.push(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_message_lends_its_box_and_buffers_to_the_next() {
        let mut pool = MessagePool::default();
        let mut first = LogMessage::empty();
        first.topic = "a/b".to_owned();
        first.payload = vec![1; 100];
        let first = Box::new(first);
        let (boxed, payload) = (&*first as *const LogMessage, first.payload.as_ptr());
        pool.recycle(first);
        let decoder = weir_mqtt::PacketDecoder::new(1024);
        // A QoS 0 PUBLISH to `a/c` with a three-byte payload.
        let bytes = [0x30, 8, 0, 3, b'a', b'/', b'c', 7, 8, 9];
        let Some((weir_mqtt::Packet::Publish(publish), _)) = decoder
            .decode_reusing(&bytes, weir_mqtt::ProtocolVersion::V3_1_1, &mut pool.spares)
            .unwrap()
        else {
            panic!("a publish");
        };
        assert_eq!(
            (publish.topic.as_str(), &publish.payload[..]),
            ("a/c", &[7, 8, 9][..])
        );
        assert_eq!(
            publish.payload.as_ptr(),
            payload,
            "the payload buffer is reused"
        );
        let mut next = LogMessage::empty();
        next.payload = publish.payload;
        let next = pool.message(next);
        assert_eq!(&*next as *const LogMessage, boxed, "the box is reused");
    }
}

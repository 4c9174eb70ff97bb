//! Buffers for decoded PUBLISH topics and payloads, given back and used again.

/// Buffers a decoder fills with PUBLISH topics and payloads instead of allocating new ones:
/// whoever is done with a publish's buffers gives them back ([`Spares::put`]), and the next
/// publish decoded reuses them. At most [`Spares::BUFFERS_MAX`] of each are kept, and none
/// larger than [`Spares::BUFFER_BYTES_MAX`], so what is kept stays small whatever passed.
#[derive(Debug, Default)]
pub struct Spares {
    topics: Vec<String>,
    payloads: Vec<Vec<u8>>,
}

impl Spares {
    /// Buffers of each kind kept.
    pub const BUFFERS_MAX: usize = 256;
    /// The largest buffer kept, in bytes of capacity.
    pub const BUFFER_BYTES_MAX: usize = 4096;

    /// Gives back a publish's topic and payload buffers (kept if there is room and they
    /// are not too large; emptied either way).
    pub fn put(&mut self, mut topic: String, mut payload: Vec<u8>) {
        if topic.capacity() > 0
            && topic.capacity() <= Self::BUFFER_BYTES_MAX
            && self.topics.len() < Self::BUFFERS_MAX
        {
            topic.clear();
            self.topics.push(topic);
        }
        if payload.capacity() > 0
            && payload.capacity() <= Self::BUFFER_BYTES_MAX
            && self.payloads.len() < Self::BUFFERS_MAX
        {
            payload.clear();
            self.payloads.push(payload);
        }
    }

    /// A copy of `text` in a kept buffer if there is one.
    pub(crate) fn topic(&mut self, text: &str) -> String {
        match self.topics.pop() {
            Some(mut topic) => {
                topic.push_str(text);
                topic
            }
            None => text.to_owned(),
        }
    }

    /// A copy of `bytes` in a kept buffer if there is one.
    pub(crate) fn payload(&mut self, bytes: &[u8]) -> Vec<u8> {
        match self.payloads.pop() {
            Some(mut payload) => {
                payload.extend_from_slice(bytes);
                payload
            }
            None => bytes.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_keep_at_most_their_bound_and_no_large_buffer() {
        let mut spares = Spares::default();
        for _ in 0..Spares::BUFFERS_MAX + 10 {
            spares.put(String::with_capacity(16), Vec::with_capacity(100));
        }
        assert_eq!(spares.topics.len(), Spares::BUFFERS_MAX);
        assert_eq!(spares.payloads.len(), Spares::BUFFERS_MAX);
        let mut few = Spares::default();
        few.put(
            String::new(),
            Vec::with_capacity(Spares::BUFFER_BYTES_MAX + 1),
        );
        assert!(few.topics.is_empty() && few.payloads.is_empty());
        // A kept buffer comes back emptied, then filled with the new bytes.
        let mut one = Spares::default();
        one.put("old".to_owned(), b"old payload".to_vec());
        assert_eq!(one.payload(b"new"), b"new");
        assert_eq!(one.topic("t"), "t");
    }
}

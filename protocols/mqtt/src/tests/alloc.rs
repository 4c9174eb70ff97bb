//! Allocation bounds, measured: a counting global allocator (for this test binary only)
//! records the bytes each thread asks for, so a test can show that a hostile length costs no
//! allocation and a valid packet costs about its own size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::*;

struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread local without a destructor, so touching it never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size()));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + new_size));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated on this thread while `f` runs.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let value = f();
    (value, ALLOCATED.with(Cell::get) - before)
}

#[test]
fn hostile_lengths_allocate_nothing() {
    let decoder = PacketDecoder::new(PACKET_SIZE_BYTES_LIMIT);
    // A topic claiming 65,535 bytes in a 10-byte packet.
    let topic = [0x30, 0x08, 0xFF, 0xFF, b'a', b'b', b'c', b'd', b'e', b'f'];
    let (result, bytes) = allocated_by(|| decoder.decode(&topic, V4));
    assert_eq!(result, Err(DecodeError::Truncated("topic name")));
    assert_eq!(bytes, 0);
    // A remaining length of 268,435,455 with the largest limit: the decoder waits, buffering
    // and allocating nothing.
    let header = [0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x01, b'a'];
    let (result, bytes) = allocated_by(|| decoder.decode(&header, V4));
    assert_eq!(result, Ok(None));
    assert_eq!(bytes, 0);
    // A property length of 268,435,455 inside a small packet.
    let properties = [0x30, 0x08, 0x00, 0x01, b'a', 0xFF, 0xFF, 0xFF, 0x7F, 0x00];
    let (result, bytes) = allocated_by(|| decoder.decode(&properties, V5));
    assert_eq!(result, Err(DecodeError::Truncated("property length")));
    assert_eq!(
        bytes, 0,
        "the topic name is copied only once the packet is whole"
    );
}

#[test]
fn a_valid_packet_allocates_about_its_own_size() {
    for version in VERSIONS {
        for packet in samples(version) {
            let encoded = encode(&packet, version);
            let (decoded, bytes) = allocated_by(|| DECODER.decode(&encoded, version));
            assert_eq!(decoded, Ok(Some((packet, encoded.len()))));
            // Copies of strings and binary data, vectors that grow by doubling, the boxed
            // CONNECT: bounded by a small multiple of the bytes present.
            assert!(
                bytes <= 4 * encoded.len() + 1024,
                "{bytes} bytes allocated for a {}-byte packet",
                encoded.len()
            );
        }
    }
}

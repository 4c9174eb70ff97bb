//! The unsafe part of the io_uring loop: a provided-buffer ring (`IORING_REGISTER_PBUF_RING`)
//! and the anonymous mappings behind it. The kernel picks a buffer from the ring for each
//! receive; the loop reads it and gives it back. Every `unsafe` block here states why it holds.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// Buffer group id of the shard's buffer ring.
pub(super) const BGID: u16 = 0;

/// A registered buffer ring and the memory behind it.
pub(super) struct ProvidedBuffers {
    ring: *mut BufRingEntry,
    ring_bytes: usize,
    memory: *mut u8,
    memory_bytes: usize,
    entries: u16,
    buffer_bytes: usize,
    tail: u16,
    /// Set when the kernel may still use the memory at drop: it is then not unmapped.
    pub(super) leak: bool,
}

impl ProvidedBuffers {
    /// Maps the ring and `entries` buffers of `buffer_bytes`, registers them with `uring` as
    /// group [`BGID`], and hands every buffer to the kernel.
    pub(super) fn new(
        uring: &IoUring,
        entries: u16,
        buffer_bytes: usize,
    ) -> io::Result<ProvidedBuffers> {
        assert!(
            entries.is_power_of_two(),
            "the buffer ring size is a power of two"
        );
        let ring_bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        let memory_bytes = usize::from(entries) * buffer_bytes;
        let ring = map_anonymous(ring_bytes)?.cast::<BufRingEntry>();
        let memory = match map_anonymous(memory_bytes) {
            Ok(memory) => memory,
            Err(e) => {
                // SAFETY: `ring` was mapped above with this size and is not used elsewhere.
                unsafe { libc::munmap(ring.cast(), ring_bytes) };
                return Err(e);
            }
        };
        let mut buffers = ProvidedBuffers {
            ring,
            ring_bytes,
            memory,
            memory_bytes,
            entries,
            buffer_bytes,
            tail: 0,
            leak: false,
        };
        // SAFETY: the ring memory stays mapped until `self` is dropped, after the IoUring
        // that uses it (field order in the shard, and unregistering in Drop is not needed:
        // closing the ring releases the registration).
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                buffers.ring as u64,
                entries,
                BGID,
                0,
            )?;
        }
        for bid in 0..entries {
            buffers.recycle(bid);
        }
        Ok(buffers)
    }

    /// The bytes the kernel put in buffer `bid`.
    pub(super) fn get(&self, bid: u16, len: usize) -> &[u8] {
        let len = len.min(self.buffer_bytes);
        let start = usize::from(bid % self.entries) * self.buffer_bytes;
        // SAFETY: the buffer lies inside the mapping; the kernel finished writing it (its
        // completion was reaped) and does not use it again until it is recycled.
        unsafe { std::slice::from_raw_parts(self.memory.add(start), len) }
    }

    /// Gives buffer `bid` back to the kernel.
    pub(super) fn recycle(&mut self, bid: u16) {
        let mask = self.entries - 1;
        // SAFETY: `tail & mask` indexes inside the ring mapping; the entry at the tail is
        // not owned by the kernel until the tail is published below.
        unsafe {
            let entry = &mut *self.ring.add(usize::from(self.tail & mask));
            entry.set_addr(self.memory.add(usize::from(bid) * self.buffer_bytes) as u64);
            entry.set_len(self.buffer_bytes as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field lives in the first entry of the ring mapping and is 2-byte
        // aligned; the kernel reads it with acquire ordering.
        unsafe {
            let tail = BufRingEntry::tail(self.ring).cast_mut().cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for ProvidedBuffers {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: both regions were mapped in `new` with these sizes; the ring using them is
        // dropped before this struct.
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_bytes);
            libc::munmap(self.memory.cast(), self.memory_bytes);
        }
    }
}

fn map_anonymous(bytes: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping with no address hint.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast())
}

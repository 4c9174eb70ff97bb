//! The raw-socket load generator of `weir-bench mqtt`, built so that the generator is not what
//! limits a broker: PUBLISH frames are encoded once and patched in place (the packet id at
//! QoS 1, a sequence number in the payload for latency runs), then written in batches of
//! many frames with one `write_all`; subscribers parse what arrives with a minimal MQTT
//! fixed-header and remaining-length parser over a reusable buffer, and answer QoS 1
//! deliveries with PUBACKs from a reusable buffer. Nothing is allocated or decoded into a
//! packet per message. Only CONNECT and SUBSCRIBE go through `iot_sim::client::Conn`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use iot_sim::client::Conn;
use weir_mqtt::QoS;

/// The fixed header's packet type (high nibble) of PUBLISH.
const PUBLISH: u8 = 3;
/// The same, of PUBACK.
const PUBACK: u8 = 4;
/// Bytes of frames a publisher writes at once, at most.
const BATCH_BYTES: usize = 64 << 10;
/// How long the subscribers wait for more once the publishers are done.
const IDLE_AFTER_DONE: Duration = Duration::from_secs(1);
/// How long they wait for more while the publishers still run (a safety net: publishers end
/// by themselves, or fail after 10 s without a PUBACK).
const IDLE_WHILE_PUBLISHING: Duration = Duration::from_secs(60);

/// Connects to `addr` as `client_id` (CONNECT and its CONNACK), then subscribes to `filter`
/// at `qos` when given (SUBSCRIBE and its SUBACK): the bare socket, nothing left unread.
pub(crate) fn connect(
    addr: SocketAddr,
    client_id: &str,
    subscribe: Option<(&str, QoS)>,
) -> anyhow::Result<TcpStream> {
    let mut conn = Conn::connect(addr, client_id)?;
    if let Some((filter, qos)) = subscribe {
        conn.subscribe(filter, qos)?;
    }
    Ok(conn.stream)
}

/// One PUBLISH frame repeated, in one buffer that is written as it is: a batch.
#[derive(Debug)]
pub(crate) struct Frames {
    bytes: Vec<u8>,
    /// Bytes of one frame.
    len: usize,
    /// Where a frame's packet id is (QoS 1).
    id_at: Option<usize>,
    /// Where a frame's payload is.
    payload_at: usize,
}

impl Frames {
    /// The PUBLISH of `payload` on `topic` at `qos`, as many times as fit in a batch (at most
    /// `most`, at least one).
    pub(crate) fn new(topic: &str, qos: QoS, payload: &[u8], most: usize) -> Frames {
        let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
        let remaining = 2 + topic.len() + id_len + payload.len();
        let mut frame = vec![(PUBLISH << 4) | ((qos as u8) << 1)];
        let mut rest = remaining;
        loop {
            let byte = (rest % 128) as u8;
            rest /= 128;
            frame.push(if rest > 0 { byte | 0x80 } else { byte });
            if rest == 0 {
                break;
            }
        }
        frame.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        frame.extend_from_slice(topic.as_bytes());
        let id_at = (id_len > 0).then_some(frame.len());
        frame.extend_from_slice(&[0, 1][..id_len]);
        let payload_at = frame.len();
        frame.extend_from_slice(payload);
        let count = (BATCH_BYTES / frame.len()).clamp(1, most.max(1));
        Frames {
            bytes: frame.repeat(count),
            len: frame.len(),
            id_at,
            payload_at,
        }
    }

    /// Frames in the batch.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.len() / self.len
    }

    /// The bytes of the batch's first `n` frames.
    fn first(&self, n: usize) -> &[u8] {
        &self.bytes[..n.min(self.capacity()) * self.len]
    }

    /// Sets frame `k`'s packet id (QoS 1; nothing at QoS 0).
    fn set_id(&mut self, k: usize, id: u16) {
        if let Some(at) = self.id_at {
            let at = k * self.len + at;
            self.bytes[at..at + 2].copy_from_slice(&id.to_be_bytes());
        }
    }

    /// Sets the first 8 bytes of frame `k`'s payload (which must have them) to `seq`.
    fn set_seq(&mut self, k: usize, seq: u64) {
        let at = k * self.len + self.payload_at;
        if let Some(slot) = self.bytes.get_mut(at..at + 8) {
            slot.copy_from_slice(&seq.to_le_bytes());
        }
    }
}

/// Packet ids 1 to 65535, in turn.
#[derive(Debug, Default)]
struct Ids(u16);

impl Ids {
    fn next(&mut self) -> u16 {
        self.0 = self.0 % u16::MAX + 1;
        self.0
    }
}

/// A reusable receive buffer and the frames in it.
#[derive(Debug)]
pub(crate) struct Inbox {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Inbox {
    pub(crate) fn new() -> Inbox {
        Inbox {
            buf: vec![0; 256 << 10],
            start: 0,
            end: 0,
        }
    }

    /// One read from `stream` into the free space (compacting, or growing for a frame larger
    /// than the buffer); the bytes read, 0 when the peer closed.
    fn fill(&mut self, stream: &mut impl Read) -> std::io::Result<usize> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// The next complete frame: its first byte and its body (variable header and payload).
    fn next_frame(&mut self) -> anyhow::Result<Option<(u8, &[u8])>> {
        let have = &self.buf[self.start..self.end];
        let mut remaining = 0usize;
        let mut header = 1;
        loop {
            let Some(&byte) = have.get(header) else {
                return Ok(None);
            };
            remaining |= usize::from(byte & 0x7f) << (7 * (header - 1));
            header += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if header > 4 {
                bail!("malformed remaining length from the broker");
            }
        }
        if have.len() < header + remaining {
            return Ok(None);
        }
        let (first, at) = (have[0], self.start + header);
        self.start = at + remaining;
        Ok(Some((first, &self.buf[at..at + remaining])))
    }
}

/// Reads PUBACKs from `stream` (one read, blocking up to its read timeout): how many came.
fn read_acks(stream: &mut TcpStream, inbox: &mut Inbox) -> anyhow::Result<usize> {
    match inbox.fill(stream) {
        Ok(0) => bail!("the broker closed a publisher's connection"),
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            bail!("no PUBACK from the broker in 10 s")
        }
        Err(e) => return Err(e.into()),
    }
    let mut acks = 0;
    while let Some((first, _)) = inbox.next_frame()? {
        acks += usize::from(first >> 4 == PUBACK);
    }
    Ok(acks)
}

/// Publishes `count` copies of `frames`' message as fast as the broker takes them: at QoS 0
/// in whole batches; at QoS 1 keeping between `window / 2` and `window` unacknowledged.
pub(crate) fn publish_pipelined(
    mut stream: TcpStream,
    mut frames: Frames,
    count: u64,
    qos: QoS,
    window: usize,
) -> anyhow::Result<()> {
    let mut inbox = Inbox::new();
    let mut ids = Ids::default();
    let window = window.clamp(1, 60_000);
    let chunk = if qos == QoS::AtMostOnce {
        frames.capacity()
    } else {
        (window / 2).clamp(1, frames.capacity())
    };
    let (mut sent, mut in_flight) = (0u64, 0usize);
    while sent < count {
        let n = chunk.min((count - sent) as usize);
        if qos != QoS::AtMostOnce {
            while in_flight + n > window {
                in_flight -= read_acks(&mut stream, &mut inbox)?.min(in_flight);
            }
            for k in 0..n {
                frames.set_id(k, ids.next());
            }
            in_flight += n;
        }
        stream.write_all(frames.first(n))?;
        sent += n as u64;
    }
    while in_flight > 0 {
        in_flight -= read_acks(&mut stream, &mut inbox)?.min(in_flight);
    }
    Ok(())
}

/// A fixed-rate schedule: message `i` is due at `base + i * interval`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) base: Instant,
    pub(crate) interval_ns: f64,
    pub(crate) count: u64,
}

impl Schedule {
    /// Nanoseconds from `base` to when message `i` is due.
    fn due_ns(&self, i: u64) -> u64 {
        (i as f64 * self.interval_ns) as u64
    }
}

/// Publishes on `schedule`, each message carrying its sequence number in its first 8 bytes:
/// everything due is written at once, then the thread sleeps (with a 1 ns timer slack) until
/// the next is due or, at QoS 1, PUBACKs arrive. At QoS 1 no more than `window` wait for
/// their PUBACK; a message held back by that is late, and its lateness is measured.
pub(crate) fn publish_at_rate(
    mut stream: TcpStream,
    mut frames: Frames,
    schedule: Schedule,
    qos: QoS,
    window: usize,
) -> anyhow::Result<()> {
    // SAFETY: prctl(PR_SET_TIMERSLACK) sets this thread's timer slack; no memory is passed.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut inbox = Inbox::new();
    let mut ids = Ids::default();
    let window = window.clamp(1, 60_000);
    let (mut sent, mut in_flight) = (0u64, 0usize);
    let events = if qos == QoS::AtMostOnce {
        0
    } else {
        libc::POLLIN
    };
    while sent < schedule.count || in_flight > 0 {
        let now_ns = schedule.base.elapsed().as_nanos() as u64;
        let due = ((now_ns as f64 / schedule.interval_ns) as u64 + 1).min(schedule.count);
        let room = if qos == QoS::AtMostOnce {
            usize::MAX
        } else {
            window - in_flight
        };
        let n = (due.saturating_sub(sent) as usize)
            .min(room)
            .min(frames.capacity());
        if n > 0 {
            for k in 0..n {
                frames.set_seq(k, sent + k as u64);
                frames.set_id(k, ids.next());
            }
            stream.write_all(frames.first(n))?;
            sent += n as u64;
            in_flight += if qos == QoS::AtMostOnce { 0 } else { n };
            continue;
        }
        let wait_ns = if sent < schedule.count && room > 0 {
            schedule.due_ns(sent).saturating_sub(now_ns)
        } else {
            10_000_000_000
        };
        if wait(&stream, events, wait_ns)? && qos != QoS::AtMostOnce {
            in_flight -= read_acks(&mut stream, &mut inbox)?.min(in_flight);
        } else if wait_ns >= 10_000_000_000 {
            bail!("no PUBACK from the broker in 10 s");
        }
    }
    Ok(())
}

/// Waits up to `ns` for `events` on `stream`: whether they came.
fn wait(stream: &TcpStream, events: libc::c_short, ns: u64) -> anyhow::Result<bool> {
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events,
        revents: 0,
    };
    let timeout = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: ppoll(2) on one valid pollfd, a valid timespec and no signal mask.
    let ready = unsafe { libc::ppoll(&mut fd, 1, &timeout, std::ptr::null()) };
    if ready < 0 {
        let error = std::io::Error::last_os_error();
        if error.kind() == ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(error.into());
    }
    Ok(ready > 0 && fd.revents != 0)
}

/// Publish-to-delivery latencies of a fixed-rate run, by sequence number, from each
/// message's scheduled send time (so a late send counts against its latency: coordinated
/// omission corrected). Preallocated: recording allocates nothing.
#[derive(Debug)]
pub(crate) struct Latencies {
    schedule: Schedule,
    /// Nanoseconds, `u64::MAX` for a message not (yet) received.
    ns: Vec<u64>,
}

impl Latencies {
    pub(crate) fn new(schedule: Schedule) -> Latencies {
        Latencies {
            schedule,
            ns: vec![u64::MAX; schedule.count as usize],
        }
    }

    /// A message whose payload is `payload` arrived `now_ns` after the schedule's base.
    fn record(&mut self, payload: &[u8], now_ns: u64) {
        let Some(seq) = payload.get(..8).and_then(|b| b.try_into().ok()) else {
            return;
        };
        let seq = u64::from_le_bytes(seq);
        if let Some(slot) = self.ns.get_mut(seq as usize)
            && *slot == u64::MAX
        {
            *slot = now_ns.saturating_sub(self.schedule.due_ns(seq));
        }
    }

    /// p50, p99 and p99.9 of the messages received, in milliseconds.
    pub(crate) fn percentiles_ms(&self) -> [f64; 3] {
        let mut got: Vec<u64> = self.ns.iter().copied().filter(|&n| n != u64::MAX).collect();
        got.sort_unstable();
        [0.5, 0.99, 0.999].map(|q| {
            let at = ((got.len() as f64 - 1.0) * q).round().max(0.0) as usize;
            got.get(at).map_or(0.0, |&ns| ns as f64 / 1e6)
        })
    }
}

/// What subscribers received: deliveries, and when the last arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivered {
    pub(crate) count: u64,
    pub(crate) last: Instant,
}

/// Reads the subscriber connections `socks` from one thread (poll, then one read from each
/// ready one) until `expected` deliveries came or none came for a while (1 s once `done`,
/// 60 s before), counting them in `tally` too as they come; QoS 1 deliveries get their
/// PUBACK; with `latencies`, each message's latency is recorded (the time of the read that
/// brought it).
pub(crate) fn receive(
    mut socks: Vec<TcpStream>,
    expected: u64,
    (done, tally): (&AtomicBool, &AtomicU64),
    mut latencies: Option<&mut Latencies>,
) -> anyhow::Result<Delivered> {
    let mut fds: Vec<libc::pollfd> = (socks.iter())
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut inboxes: Vec<Inbox> = socks.iter().map(|_| Inbox::new()).collect();
    let mut acks: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut got = Delivered {
        count: 0,
        last: Instant::now(),
    };
    while got.count < expected {
        let idle = if done.load(Ordering::Acquire) {
            IDLE_AFTER_DONE
        } else {
            IDLE_WHILE_PUBLISHING
        };
        if got.last.elapsed() > idle {
            break;
        }
        // SAFETY: poll(2) on a valid array of pollfd structures of the given length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if ready <= 0 {
            continue;
        }
        for (k, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            if inboxes[k].fill(&mut socks[k])? == 0 {
                bail!("the broker closed a subscriber's connection");
            }
            let now = Instant::now();
            let delivered = deliveries(&mut inboxes[k], &mut acks, latencies.as_deref_mut(), now)?;
            if delivered > 0 {
                got.count += delivered;
                got.last = now;
                tally.store(got.count, Ordering::Relaxed);
            }
            if !acks.is_empty() {
                socks[k].write_all(&acks)?;
                acks.clear();
            }
        }
    }
    Ok(got)
}

/// The PUBLISHes complete in `inbox`, read at `now`: how many; a PUBACK queued in `acks`
/// for each at QoS 1, and each one's latency recorded in `latencies` when given.
fn deliveries(
    inbox: &mut Inbox,
    acks: &mut Vec<u8>,
    mut latencies: Option<&mut Latencies>,
    now: Instant,
) -> anyhow::Result<u64> {
    let mut count = 0;
    while let Some((first, body)) = inbox.next_frame()? {
        if first >> 4 != PUBLISH {
            continue;
        }
        count += 1;
        let topic = body.get(..2).context("a PUBLISH without its topic")?;
        let mut at = 2 + usize::from(u16::from_be_bytes([topic[0], topic[1]]));
        if (first >> 1) & 3 != 0 {
            let id = body.get(at..at + 2).context("a PUBLISH without its id")?;
            acks.extend_from_slice(&[PUBACK << 4, 2, id[0], id[1]]);
            at += 2;
        }
        if let Some(latencies) = latencies.as_deref_mut() {
            let since = now.saturating_duration_since(latencies.schedule.base);
            latencies.record(&body[at.min(body.len())..], since.as_nanos() as u64);
        }
    }
    Ok(count)
}

/// User plus system CPU time of this process (every thread) so far, in seconds.
pub(crate) fn own_cpu_s() -> f64 {
    // SAFETY: getrusage(2) fills the zeroed rusage it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

//! The device workers: each thread drives its share of the fleet from one poll loop over its
//! devices' non-blocking sockets, publishing on an open-loop schedule, dropping and
//! resuming connections (churn, persistent sessions), completing acknowledgements and
//! answering commands, then waiting out the drain time for what is still in flight.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Instant;

use hdrhistogram::Histogram;
use weir_mqtt::{Packet, PubResponse, Publish, QoS};

use crate::client::V;
use crate::device::{Device, connect_device, pick_qos};
use crate::payload::{COMMAND_PREFIX, parse_payload, payload};
use crate::report::{Progress, histogram};
use crate::rng::Rng;
use crate::scenario::Scenario;

/// What one worker's devices did.
pub(crate) struct WorkerResult {
    pub(crate) devices: usize,
    pub(crate) sent: [u64; 3],
    pub(crate) acked: u64,
    pub(crate) unacked: u64,
    pub(crate) ack_latency: Histogram<u64>,
    /// The QoS 1 and 2 messages sent: (device, sequence).
    pub(crate) qos12: Vec<(u32, u32)>,
    pub(crate) reconnects: u64,
    pub(crate) commands_received: u64,
    pub(crate) command_latency: Histogram<u64>,
}

impl WorkerResult {
    /// Nothing done yet by `devices` devices.
    fn new(devices: usize) -> WorkerResult {
        WorkerResult {
            devices,
            sent: [0; 3],
            acked: 0,
            unacked: 0,
            ack_latency: histogram(),
            qos12: Vec::new(),
            reconnects: 0,
            commands_received: 0,
            command_latency: histogram(),
        }
    }

    /// Adds another worker's counts and latencies to these (not its `qos12`).
    fn add(&mut self, other: &WorkerResult) -> anyhow::Result<()> {
        self.devices += other.devices;
        for (total, n) in self.sent.iter_mut().zip(other.sent) {
            *total += n;
        }
        self.acked += other.acked;
        self.unacked += other.unacked;
        self.ack_latency.add(&other.ack_latency)?;
        self.command_latency.add(&other.command_latency)?;
        self.reconnects += other.reconnects;
        self.commands_received += other.commands_received;
        Ok(())
    }
}

/// Starts the workers, one thread each (never more than there are devices), publishing
/// until `publish_until`.
pub(crate) fn spawn_workers(
    scenario: &Scenario,
    addr: SocketAddr,
    (epoch, publish_until): (Instant, Instant),
    progress: &Arc<Progress>,
) -> Vec<JoinHandle<anyhow::Result<WorkerResult>>> {
    (0..scenario.workers.min(scenario.devices))
        .map(|w| {
            let scenario = scenario.clone();
            let progress = progress.clone();
            std::thread::spawn(move || worker(&scenario, w, addr, epoch, publish_until, &progress))
        })
        .collect()
}

/// Waits for every worker: what the fleet did, added up (its `qos12` left empty), and the
/// QoS 1 and 2 messages it sent.
pub(crate) fn join_workers(
    workers: Vec<JoinHandle<anyhow::Result<WorkerResult>>>,
) -> anyhow::Result<(WorkerResult, HashSet<(u32, u32)>)> {
    let mut fleet = WorkerResult::new(0);
    let mut expected: HashSet<(u32, u32)> = HashSet::new();
    for handle in workers {
        let result = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a device worker panicked"))??;
        fleet.add(&result)?;
        expected.extend(result.qos12);
    }
    Ok((fleet, expected))
}

/// Drives devices `index`, `index + workers`, … until `publish_until`, then for up to the
/// drain time while any of them waits for an acknowledgement or has bytes to write.
fn worker(
    scenario: &Scenario,
    index: usize,
    addr: SocketAddr,
    epoch: Instant,
    publish_until: Instant,
    progress: &Progress,
) -> anyhow::Result<WorkerResult> {
    let mut worker = Worker::start(scenario, index, addr, (epoch, publish_until), progress)?;
    let drain_until = publish_until + scenario.drain;
    loop {
        let now_ns = epoch.elapsed().as_nanos() as u64;
        worker.publish_due(now_ns)?;
        let now_ns = epoch.elapsed().as_nanos() as u64;
        worker.churn(now_ns)?;
        worker.exchange()?;
        let publishing = Instant::now() < publish_until;
        let waiting = worker.waiting();
        if !publishing && (!waiting || Instant::now() >= drain_until) {
            break;
        }
        // Sleep until the next send is due or a socket has something, at most 1 ms.
        poll_readable(&worker.devices, worker.wait_ms(publishing) as i32);
    }
    Ok(worker.finish())
}

/// One worker's devices, their schedule and what they did so far.
struct Worker<'a> {
    scenario: &'a Scenario,
    addr: SocketAddr,
    epoch: Instant,
    progress: &'a Progress,
    /// Draws the start times, each publish's QoS and interval, and churn intervals.
    rng: Rng,
    /// Draws the payloads' values: a copy of `rng` as it was once the start times were drawn.
    value_rng: Rng,
    devices: Vec<Device>,
    /// (intended send time in ns since the epoch, device index) of each device's next
    /// message, earliest first.
    due: BinaryHeap<Reverse<(u64, usize)>>,
    /// A device's nominal time between messages, ns.
    interval_ns: f64,
    /// A device's nominal time between reconnections, ns (0: never).
    churn_ns: f64,
    /// When publishing ends, ns since the epoch.
    end_ns: u64,
    result: WorkerResult,
}

impl<'a> Worker<'a> {
    /// Connects worker `index`'s devices and draws their first churn and send times.
    fn start(
        scenario: &'a Scenario,
        index: usize,
        addr: SocketAddr,
        (epoch, publish_until): (Instant, Instant),
        progress: &'a Progress,
    ) -> anyhow::Result<Worker<'a>> {
        let mut rng = Rng(scenario.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let churn_ns = scenario.reconnect_every_s * 1e9;
        let start_ns = epoch.elapsed().as_nanos() as f64;
        let devices = connect_devices(
            scenario,
            index,
            addr,
            progress,
            &mut rng,
            (start_ns, churn_ns),
        )?;
        let interval_ns = 1e9 / scenario.rate_per_device_per_s;
        // Devices start spread over one interval.
        let due: BinaryHeap<Reverse<(u64, usize)>> = (0..devices.len())
            .map(|i| Reverse(((start_ns + rng.unit() * interval_ns) as u64, i)))
            .collect();
        let result = WorkerResult::new(devices.len());
        let end_ns = publish_until.duration_since(epoch).as_nanos() as u64;
        let value_rng = rng.clone();
        Ok(Worker {
            scenario,
            addr,
            epoch,
            progress,
            rng,
            value_rng,
            devices,
            due,
            interval_ns,
            churn_ns,
            end_ns,
            result,
        })
    }

    /// Publishes everything due by `now_ns` (open loop: the intended time is the
    /// schedule's), and nothing due at or after the end of publishing.
    fn publish_due(&mut self, now_ns: u64) -> anyhow::Result<()> {
        while let Some(&Reverse((at, i))) = self.due.peek() {
            if at > now_ns || at >= self.end_ns {
                break;
            }
            self.due.pop();
            self.publish(i, at)?;
        }
        Ok(())
    }

    /// Queues device `i`'s next message, intended for `at`, and schedules the one after.
    fn publish(&mut self, i: usize, at: u64) -> anyhow::Result<()> {
        let qos = pick_qos(self.scenario.qos_mix, self.rng.unit());
        let device = &mut self.devices[i];
        let packet_id = (qos != QoS::AtMostOnce).then(|| device.take_packet_id());
        let payload = payload(
            &self.scenario.payload,
            device.number,
            device.seq,
            at,
            &mut self.value_rng,
        );
        if qos != QoS::AtMostOnce {
            self.result.qos12.push((device.number, device.seq));
        }
        device.seq += 1;
        let publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic: device.topic.clone(),
            packet_id,
            properties: Default::default(),
            payload,
        };
        device.queue_publish(publish, at)?;
        self.result.sent[qos as usize] += 1;
        self.progress.sent.fetch_add(1, Ordering::Relaxed);
        let jitter = self.rng.jitter(self.scenario.jitter);
        self.due
            .push(Reverse((at + (self.interval_ns * jitter) as u64, i)));
        Ok(())
    }

    /// Devices whose time has come drop their connection without DISCONNECT (the broker
    /// publishes their will) and connect again, then send what was in flight again; none
    /// does once publishing has ended.
    fn churn(&mut self, now_ns: u64) -> anyhow::Result<()> {
        for device in &mut self.devices {
            if device.next_churn_ns > now_ns || now_ns >= self.end_ns {
                continue;
            }
            device.reconnect(self.scenario, self.addr)?;
            self.result.reconnects += 1;
            let jitter = self.rng.jitter(self.scenario.jitter);
            device.next_churn_ns = now_ns + (self.churn_ns * jitter) as u64;
        }
        Ok(())
    }

    /// Writes what is pending and reads what came, device by device, without blocking.
    fn exchange(&mut self) -> anyhow::Result<()> {
        for device in &mut self.devices {
            device.flush()?;
            for packet in device.conn.ready()? {
                let now = self.epoch.elapsed().as_nanos() as u64;
                on_packet(device, packet, now, &mut self.result, self.progress)?;
            }
        }
        Ok(())
    }

    /// Whether any device waits for an acknowledgement or has bytes to write.
    fn waiting(&self) -> bool {
        self.devices
            .iter()
            .any(|d| !d.in_flight.is_empty() || !d.pending.is_empty())
    }

    /// How long the poll may wait: while publishing, until the next send is due but at most
    /// 1 ms; after that, 1 ms.
    fn wait_ms(&self, publishing: bool) -> u64 {
        let next_ns = self.due.peek().map_or(u64::MAX, |Reverse((at, _))| *at);
        if publishing {
            (next_ns.saturating_sub(self.epoch.elapsed().as_nanos() as u64) / 1_000_000).min(1)
        } else {
            1
        }
    }

    /// What the devices did, with what is still in flight counted as unacknowledged, once
    /// each has disconnected.
    fn finish(mut self) -> WorkerResult {
        self.result.unacked = self.devices.iter().map(|d| d.in_flight.len() as u64).sum();
        for device in &mut self.devices {
            device.disconnect();
        }
        self.result
    }
}

/// Connects worker `index`'s devices one after the other; with churn on, each draws its
/// first reconnection time from `rng` once connected, somewhere in one churn interval
/// after `start_ns`.
fn connect_devices(
    scenario: &Scenario,
    index: usize,
    addr: SocketAddr,
    progress: &Progress,
    rng: &mut Rng,
    (start_ns, churn_ns): (f64, f64),
) -> anyhow::Result<Vec<Device>> {
    let mut devices: Vec<Device> = Vec::new();
    for number in (index..scenario.devices).step_by(scenario.workers.max(1)) {
        let conn = connect_device(scenario, addr, number as u32)?;
        progress.connected.fetch_add(1, Ordering::Relaxed);
        let topic = scenario.topic.replace("{device}", &number.to_string());
        let next_churn_ns = if churn_ns > 0.0 {
            (start_ns + rng.unit() * churn_ns) as u64
        } else {
            u64::MAX
        };
        devices.push(Device::new(number as u32, conn, topic, next_churn_ns));
    }
    Ok(devices)
}

/// Handles one packet `device` received at `now` (ns since the epoch): an acknowledgement
/// completes a publish, a PUBREC is answered with PUBREL, and a command is acknowledged and
/// counted once, with its latency.
fn on_packet(
    device: &mut Device,
    packet: Packet,
    now: u64,
    result: &mut WorkerResult,
    progress: &Progress,
) -> anyhow::Result<()> {
    match packet {
        Packet::PubAck(ack) | Packet::PubComp(ack) => {
            if let Some(flight) = device.in_flight.remove(&ack.packet_id.get()) {
                result.acked += 1;
                progress.acked.fetch_add(1, Ordering::Relaxed);
                let _ = result
                    .ack_latency
                    .record((now.saturating_sub(flight.at) / 1000).max(1));
            }
        }
        Packet::PubRec(rec) => {
            if let Some(flight) = device.in_flight.get_mut(&rec.packet_id.get()) {
                flight.released = true;
            }
            Packet::PubRel(PubResponse::new(rec.packet_id)).encode(V, &mut device.pending)?;
        }
        Packet::Publish(command) => {
            if let Some(id) = command.packet_id {
                Packet::PubAck(PubResponse::new(id)).encode(V, &mut device.pending)?;
            }
            if let Some((_, seq, sent)) = command
                .payload
                .strip_prefix(COMMAND_PREFIX)
                .and_then(parse_payload)
                && device.commands.insert(seq)
            {
                result.commands_received += 1;
                let _ = result
                    .command_latency
                    .record((now.saturating_sub(sent) / 1000).max(1));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Waits up to `ms` for any device socket to be readable.
fn poll_readable(devices: &[Device], ms: i32) {
    let mut fds: Vec<libc::pollfd> = devices
        .iter()
        .map(|d| libc::pollfd {
            fd: d.conn.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: poll(2) on a valid array of pollfd structures of the given length.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

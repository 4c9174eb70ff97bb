//! The commander: one connection playing a control system, which publishes commands (QoS 1,
//! open loop) to random devices' command topics once every device has subscribed.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weir_mqtt::{Packet, PacketId, Publish, QoS};

use crate::client::{Conn, V};
use crate::payload::COMMAND_PREFIX;
use crate::report::Progress;
use crate::rng::Rng;
use crate::scenario::Scenario;

/// Starts the commander when the scenario sends commands.
pub(crate) fn spawn_commander(
    scenario: &Scenario,
    addr: SocketAddr,
    (epoch, publish_until): (Instant, Instant),
    progress: &Arc<Progress>,
) -> Option<JoinHandle<anyhow::Result<u64>>> {
    // The commander stops a little before the devices do, so its last commands arrive while
    // they still read.
    let commands_until = publish_until - (scenario.duration / 4).min(Duration::from_secs(1));
    (scenario.commands_per_s > 0.0).then(|| {
        let (scenario, progress) = (scenario.clone(), progress.clone());
        std::thread::spawn(move || commander(&scenario, addr, (epoch, commands_until), &progress))
    })
}

/// Waits for the commander, if any: how many commands it sent.
pub(crate) fn join_commander(
    commander: Option<JoinHandle<anyhow::Result<u64>>>,
) -> anyhow::Result<u64> {
    match commander {
        Some(handle) => handle
            .join()
            .map_err(|_| anyhow::anyhow!("the commander panicked"))?,
        None => Ok(0),
    }
}

/// Publishes commands at `scenario.commands_per_s` (QoS 1, open loop) to random devices'
/// command topics until `until`; returns how many it sent.
fn commander(
    scenario: &Scenario,
    addr: SocketAddr,
    (epoch, until): (Instant, Instant),
    progress: &Progress,
) -> anyhow::Result<u64> {
    let Some(template) = &scenario.command_topic else {
        return Ok(0);
    };
    // Commands start once every device has subscribed.
    while progress.connected.load(Ordering::Relaxed) < scenario.devices as u64
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut conn = Conn::connect(addr, &format!("{}-commander", scenario.client_id_prefix))?;
    conn.stream.set_nonblocking(true)?;
    let mut rng = Rng(scenario.seed ^ 0xC0FF_EE00_D15E_A5E5);
    let interval_ns = 1e9 / scenario.commands_per_s;
    let mut next_ns = epoch.elapsed().as_nanos() as f64;
    let mut sent = 0u64;
    let mut pending = Vec::new();
    while Instant::now() < until {
        let now_ns = epoch.elapsed().as_nanos() as f64;
        while next_ns <= now_ns {
            let device = (rng.unit() * scenario.devices as f64) as u32 % scenario.devices as u32;
            let mut payload = COMMAND_PREFIX.to_vec();
            payload.extend_from_slice(
                format!(
                    "{{\"device\":{device},\"seq\":{sent},\"sent_ns\":{}}}",
                    next_ns as u64
                )
                .as_bytes(),
            );
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: template.replace("{device}", &device.to_string()),
                packet_id: PacketId::new((sent % 65_535) as u16 + 1),
                properties: Default::default(),
                payload,
            })
            .encode(V, &mut pending)?;
            sent += 1;
            next_ns += interval_ns;
        }
        while !pending.is_empty() {
            match conn.stream.write(&pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        // Acknowledgements are read and dropped: the devices count what arrives.
        conn.ready()?;
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(sent)
}

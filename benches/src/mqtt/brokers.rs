//! The brokers `weir-bench mqtt` (and `tls`, `suite`) run against: the real `weir` process
//! with one shard, and Mosquitto, each on CPU 0, started fresh for each run and stopped when
//! its [`Target`] is dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::server::Broker;

/// A broker under test: its MQTT address and PID; stopped when dropped.
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) pid: u32,
    pub(crate) weir: Option<Broker>,
    mosquitto: Option<Child>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.mosquitto {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts broker `name` (`weir fsync`, `weir relaxed`, `weir fsync acl` or `mosquitto`) on
/// CPU 0 in `dir`; `extra` is more environment for Weir.
pub(crate) fn start_with(
    name: &str,
    weir: &Path,
    mosquitto: Option<&str>,
    dir: &Path,
    extra: &[(&str, &str)],
) -> anyhow::Result<Target> {
    if name.starts_with("weir") {
        let durability = if name.contains("relaxed") {
            "relaxed"
        } else {
            "fsync"
        };
        let acl = dir.join("acl").display().to_string();
        let mut env = vec![
            ("WEIR_SERVER_SHARDS", "1"),
            ("WEIR_STORAGE_DURABILITY", durability),
        ];
        if name.ends_with("acl") {
            // Anonymous clients (the benchmark's) may publish and read `bench/#`.
            std::fs::write(&acl, "topic readwrite bench/#\ntopic readwrite fleet/#\n")?;
            env.push(("WEIR_AUTH_ACL_FILE", acl.as_str()));
        }
        env.extend_from_slice(extra);
        // Its one shard pins itself to CPU 0 (`server.pin_threads`).
        let broker = Broker::start(weir, dir, &env)?;
        return Ok(Target {
            addr: broker.mqtt,
            pid: broker.pid(),
            weir: Some(broker),
            mosquitto: None,
        });
    }
    start_mosquitto(mosquitto.context("mosquitto")?, dir, "")
}

/// Starts Mosquitto from `path` on CPU 0 in `dir`, in memory, with `more` added to its
/// configuration (more listeners); the address of its first listener.
pub(crate) fn start_mosquitto(path: &str, dir: &Path, more: &str) -> anyhow::Result<Target> {
    let port = free_port()?;
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\n\
             max_queued_messages 0\nmax_queued_bytes 0\n\
             max_inflight_messages 0\nlog_dest none\nlistener {port} 127.0.0.1\n{more}"
        ),
    )?;
    let child = Command::new(path)
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    pin_pid(pid, 0);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("mosquitto did not listen on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Target {
        addr,
        pid,
        weir: None,
        mosquitto: Some(child),
    })
}

/// The path of `program` on `PATH` (or in `/usr/sbin`), if there is one.
pub(crate) fn which(program: &str) -> Option<String> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain([Path::new("/usr/sbin").to_owned()])
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .map(|path| path.display().to_string())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Pins process `pid` to `cpu` (best effort).
fn pin_pid(pid: u32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity gets a valid pointer.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid as i32, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Raises this process's open-file limit to its hard limit (brokers started later inherit
/// it): the fleet opens one connection per device. The soft limit now in force.
pub(crate) fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit and setrlimit on a valid, initialised rlimit.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        limit.rlim_cur
    }
}

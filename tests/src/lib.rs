//! Harness for Weir's black-box tests: builds and starts the real `weir` binary in a fresh
//! temporary directory, follows its log, talks to it over real sockets and stops it by its PID.
//!
//! Nothing here sleeps to wait for a condition: every wait is on an event (a log line, the
//! end of the log stream, a socket read) bounded by a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod pki;

/// Names the event-loop backend (`uring`, `epoll`) every broker in the run uses.
pub const IO_BACKEND_VAR: &str = "TEST_IO_BACKEND";

/// How long any single wait in a test may take before the test fails. Generous: CI machines
/// are small and busy, and a test that passes slowly is still correct.
pub const WAIT: Duration = Duration::from_secs(30);

/// Path of the `weir` binary, built once per test process from the current sources so a
/// test never runs a stale binary.
pub fn weir_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/it-<hash> -> target/<profile>/weir
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in target/<profile>/deps");
        let release = profile_dir
            .file_name()
            .is_some_and(|name| name == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--package", "weir", "--bin", "weir"]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build for the weir binary");
        assert!(status.success(), "cargo build -p weir failed");
        profile_dir.join("weir")
    })
}

/// How to start a broker.
#[derive(Debug)]
pub struct WeirBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    defaults_only: bool,
}

impl WeirBuilder {
    /// A command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An environment variable for the broker.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the broker in `dir` instead of a fresh temporary directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Leaves the embedded defaults alone: no loopback admin port is set.
    pub fn defaults_only(mut self) -> Self {
        self.defaults_only = true;
        self
    }

    /// Starts the process and returns without waiting for it to be ready.
    pub fn spawn(self) -> anyhow::Result<Weir> {
        let dir = tempfile::tempdir()?;
        let cwd = self.cwd.clone().unwrap_or_else(|| dir.path().to_owned());
        let mut command = Command::new(weir_bin());
        command
            .args(&self.args)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The broker sees only the configuration the test gives it.
        for (key, _) in std::env::vars() {
            if key.starts_with("WEIR_") {
                command.env_remove(key);
            }
        }
        if !self.defaults_only {
            command.env("WEIR_ADMIN_LISTEN", "127.0.0.1:0");
            command.env("WEIR_KAFKA_LISTEN", "127.0.0.1:0");
            command.env("WEIR_MQTT_LISTEN", "127.0.0.1:0");
            command.env("WEIR_MQTT_WEBSOCKET_LISTEN", "127.0.0.1:0");
        }
        // `cargo xtask test` runs the suite once per event-loop backend.
        if let Ok(backend) = std::env::var(IO_BACKEND_VAR) {
            command.env("WEIR_SERVER_IO", backend);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().context("spawn weir")?;
        let (tx, rx) = channel();
        let stderr = child.stderr.take().context("stderr pipe")?;
        let stdout = child.stdout.take().context("stdout pipe")?;
        for stream in [Box::new(stderr) as Box<dyn Read + Send>, Box::new(stdout)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Weir {
            child,
            lines: rx,
            log: Vec::new(),
            dir,
            cwd,
        })
    }

    /// Starts the process and waits until it logs that it is ready.
    pub fn start(self) -> anyhow::Result<Weir> {
        let mut weir = self.spawn()?;
        weir.wait_for_log("weir ready")?;
        Ok(weir)
    }
}

/// A running (or finished) `weir` process.
#[derive(Debug)]
pub struct Weir {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
    dir: tempfile::TempDir,
    cwd: PathBuf,
}

impl Weir {
    /// A builder with a fresh working directory and the admin, Kafka and MQTT ports on
    /// 127.0.0.1:0.
    pub fn builder() -> WeirBuilder {
        WeirBuilder {
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            defaults_only: false,
        }
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary directory this broker owns (its working directory unless overridden).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's working directory.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// Every log line read so far.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// Reads log lines until one contains `needle`; returns it.
    pub fn wait_for_log(&mut self, needle: &str) -> anyhow::Result<String> {
        if let Some(line) = self.log.iter().find(|line| line.contains(needle)) {
            return Ok(line.clone());
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "no log line with {needle:?} within {WAIT:?}; log:\n{}",
                        self.log.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!(
                        "weir exited before logging {needle:?}; log:\n{}",
                        self.log.join("\n")
                    )
                }
            }
        }
    }

    /// The admin HTTP address the broker logged.
    pub fn admin_addr(&mut self) -> anyhow::Result<SocketAddr> {
        self.logged_addr("admin HTTP listening on ")
    }

    /// The admin HTTPS address the broker logged (`admin.tls`).
    pub fn admin_https_addr(&mut self) -> anyhow::Result<SocketAddr> {
        self.logged_addr("admin HTTPS listening on ")
    }

    /// The Kafka address the broker logged.
    pub fn kafka_addr(&mut self) -> anyhow::Result<SocketAddr> {
        self.logged_addr("kafka listening on ")
    }

    /// The MQTT address the broker logged.
    pub fn mqtt_addr(&mut self) -> anyhow::Result<SocketAddr> {
        self.logged_addr("mqtt listening on ")
    }

    /// The MQTT over WebSocket address the broker logged.
    pub fn mqtt_websocket_addr(&mut self) -> anyhow::Result<SocketAddr> {
        self.logged_addr("mqtt websocket listening on ")
    }

    /// The MQTT over TLS address the broker logged (`mqtt.tls_listen`).
    pub fn mqtt_tls_addr(&mut self) -> anyhow::Result<SocketAddr> {
        self.logged_addr("mqtt tls listening on ")
    }

    /// The MQTT over secure WebSocket address the broker logged
    /// (`mqtt.websocket_tls_listen`).
    pub fn mqtt_websocket_tls_addr(&mut self) -> anyhow::Result<SocketAddr> {
        self.logged_addr("mqtt websocket tls listening on ")
    }

    /// The Kafka over TLS address the broker logged (`kafka.tls_listen`).
    pub fn kafka_tls_addr(&mut self) -> anyhow::Result<SocketAddr> {
        self.logged_addr("kafka tls listening on ")
    }

    /// How many log lines so far contain `needle`, the lines the broker has written by now
    /// included (without waiting for more).
    pub fn count_in_log(&mut self, needle: &str) -> usize {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        self.log.iter().filter(|line| line.contains(needle)).count()
    }

    fn logged_addr(&mut self, marker: &str) -> anyhow::Result<SocketAddr> {
        let line = self.wait_for_log(marker)?;
        let addr = line
            .rsplit(marker)
            .next()
            .and_then(|rest| rest.split(['"', ' ']).next())
            .context("address after the marker")?;
        Ok(addr.parse()?)
    }

    /// Starts the process again in the same working directory (after it exited), with the
    /// same environment plus `env`, keeping the directory: replacing a `Weir` with a new
    /// one would delete the old one's temporary directory, the data directory included.
    pub fn start_again(&mut self, env: &[(&str, String)]) -> anyhow::Result<()> {
        let mut builder = Weir::builder().cwd(self.cwd.clone());
        for (key, value) in env {
            builder = builder.env(*key, value.clone());
        }
        let mut next = builder.start()?;
        std::mem::swap(&mut next.dir, &mut self.dir);
        *self = next;
        Ok(())
    }

    /// The process's resident memory, from /proc.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS:").map(|kib| kib * 1024)
    }

    /// The process's resident anonymous memory (heap and stacks; not the log's pages, which
    /// LMDB maps from the file and the kernel can drop), from /proc.
    pub fn rss_anon_bytes(&self) -> anyhow::Result<u64> {
        self.status_kib("RssAnon:").map(|kib| kib * 1024)
    }

    fn status_kib(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .with_context(|| format!("{field} line"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kib)
    }

    /// Sum over shards of a `/metrics` series.
    pub fn metric(&mut self, name: &str) -> anyhow::Result<u64> {
        let addr = self.admin_addr()?;
        let (status, body) = http_get(addr, "/metrics")?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        let prefix_labelled = format!("{name}{{");
        let prefix_plain = format!("{name} ");
        let mut total = 0u64;
        for line in body.lines() {
            if line.starts_with(&prefix_labelled) || line.starts_with(&prefix_plain) {
                let value = line.rsplit(' ').next().context("value")?;
                total += value.parse::<f64>()? as u64;
            }
        }
        Ok(total)
    }

    /// Polls `/metrics` until `name` satisfies `ok`, within the deadline; returns its value.
    pub fn wait_for_metric(&mut self, name: &str, ok: impl Fn(u64) -> bool) -> anyhow::Result<u64> {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.metric(name)?;
            if ok(value) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                bail!("{name} stayed at {value} for {WAIT:?}");
            }
            std::thread::yield_now();
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id())?;
        // SAFETY: kill(2) with the PID of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            bail!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the process to exit (its output streams close first), collecting the rest
    /// of its log.
    pub fn wait_exit(&mut self) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.log.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "weir did not exit within {WAIT:?}; log:\n{}",
                        self.log.join("\n")
                    )
                }
            }
        }
        Ok(self.child.wait()?)
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `weir` with `args` to completion (for commands that exit on their own) and returns
/// its exit code and everything it printed.
pub fn run_weir(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> anyhow::Result<(i32, String)> {
    run_weir_with_input(args, env, cwd, b"")
}

/// `weir` with `args` and `env` in `cwd`, `input` on standard input (a pipe, not a terminal);
/// its exit code and its stdout followed by its stderr.
pub fn run_weir_with_input(
    args: &[&str],
    env: &[(&str, &str)],
    cwd: &Path,
    input: &[u8],
) -> anyhow::Result<(i32, String)> {
    let mut command = Command::new(weir_bin());
    command
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("WEIR_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    let output = child.wait_with_output()?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok((output.status.code().unwrap_or(-1), text))
}

/// A tool `cargo xtask prereqs` unpacks from a Debian package into `target/tools` (not
/// installed system-wide), e.g. `("mosquitto", "usr/bin/mosquitto_passwd")`.
pub fn unpacked_tool(package: &str, path: &str) -> PathBuf {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools")
        .join(package)
        .join(path);
    assert!(
        tool.exists(),
        "{} is missing: `cargo xtask prereqs` unpacks it",
        tool.display()
    );
    tool
}

/// An ApiVersions request frame (v0-v2 header with a client id; v3+ flexible).
pub fn api_versions_request(version: i16, correlation_id: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"test");
    if version >= 3 {
        body.push(0); // header tagged fields
        body.extend_from_slice(&[5, b'w', b'e', b'i', b'r', 4, b'0', b'.', b'0', 0]);
    }
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Reads one size-prefixed response frame.
pub fn read_frame(stream: &mut impl Read) -> anyhow::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix)?;
    let len = u32::from_be_bytes(prefix) as usize;
    anyhow::ensure!(len < 1 << 20, "response of {len} bytes");
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// True once the peer has closed `stream` (a read returns 0 or fails) within the deadline.
pub fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(WAIT));
    read_to_close(stream)
}

/// Reads and drops what `stream` brings until the peer ends it (a read returns 0 or fails:
/// true) or a read times out (false). The caller sets the read timeout.
pub fn read_to_close(stream: &mut impl Read) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// An HTTP/1.1 GET (see [`http_request`]); returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    http_request(addr, "GET", path, b"")
}

/// A plugin component built by `cargo xtask plugins` (`plugins/target/wasm/<name>.wasm`).
pub fn plugin_wasm(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the plugins first with `cargo xtask plugins`",
        path.display()
    );
    path
}

/// An HTTP/1.1 request with a body to the admin API, through the client the CLI uses;
/// returns the status code and body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    http_request_with_token(addr, None, (method, path, body))
}

/// [`http_request`] with `token` as the bearer token (none without it).
pub fn http_request_with_token(
    addr: SocketAddr,
    token: Option<&str>,
    (method, path, body): (&str, &str, &[u8]),
) -> anyhow::Result<(u16, String)> {
    let request = weir::admin_client::AdminRequest {
        method,
        path,
        body,
        token,
        tls: None,
    };
    weir::admin_client::request(addr, &request, WAIT)
}

/// The keys of the records stored in `topic`'s partition 0 under `cwd`/weir-data, in order
/// (a null key as empty; the broker must be stopped).
pub fn stored_keys(cwd: &Path, topic: &str) -> Vec<Vec<u8>> {
    stored_fields(cwd, topic, |r| r.key)
}

/// The values of the records stored in `topic`'s partition 0 under `cwd`/weir-data, in order
/// (a null value as empty; the broker must be stopped).
pub fn stored_values(cwd: &Path, topic: &str) -> Vec<Vec<u8>> {
    stored_fields(cwd, topic, |r| r.value)
}

fn stored_fields(
    cwd: &Path,
    topic: &str,
    field: impl for<'a> Fn(weir_kafka::record_batch::RecordRef<'a>) -> Option<&'a [u8]>,
) -> Vec<Vec<u8>> {
    let batches = stored_batches(cwd, topic);
    (batches.iter())
        .flat_map(|batch| weir_kafka::record_batch::records(batch))
        .map(|record| field(record).unwrap_or_default().to_vec())
        .collect()
}

/// The names of the topics stored under `cwd`/weir-data, sorted (the broker must be stopped).
pub fn stored_topic_names(cwd: &Path) -> Vec<String> {
    use weir_core::log_store::LogStore;
    let (log, _) =
        weir_log::LmdbLog::open(&cwd.join("weir-data/log"), weir_log::LogOptions::default())
            .expect("the log opens");
    let mut names: Vec<String> = (log.topics().expect("topics readable").into_iter())
        .map(|topic| topic.name)
        .collect();
    names.sort();
    names
}

/// The batches stored in `topic`'s partition 0 under `cwd`/weir-data, byte for byte (the
/// broker must be stopped: the data directory is locked while it runs).
pub fn stored_batches(cwd: &Path, topic: &str) -> Vec<Vec<u8>> {
    use weir_core::log_store::LogStore;
    let (log, _) =
        weir_log::LmdbLog::open(&cwd.join("weir-data/log"), weir_log::LogOptions::default())
            .expect("the log opens");
    let pid = log
        .topic(topic)
        .expect("topics readable")
        .expect("topic exists")
        .partitions[0];
    let mut batches = Vec::new();
    log.read(pid, 0, usize::MAX, &mut |batch| {
        batches.push(batch.to_vec())
    })
    .expect("the partition reads");
    batches
}

/// A 127.0.0.1 address whose port was free a moment ago, for a broker that must come back
/// on the same port after a restart (a port of 0 would change).
pub fn free_local_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
}

/// Polls `check` every 100 ms until it holds; panics naming `what` if it does not within
/// `within`. For conditions no log line or metric announces.
pub fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How long a compatibility scenario may run in all before it is killed.
pub const COMPAT_SCRIPT_WAIT: Duration = Duration::from_secs(600);

/// Runs `command` to completion with `input` on its standard input (none: /dev/null),
/// collecting its stdout and stderr; kills it and fails if it has not ended `within`.
pub fn output_within(
    command: &mut Command,
    input: Option<&[u8]>,
    within: Duration,
) -> anyhow::Result<std::process::Output> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("spawn {command:?}"))?;
    let pid = i32::try_from(child.id())?;
    let mut stdin = child.stdin.take();
    let input = input.unwrap_or_default().to_vec();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        if let Some(mut pipe) = stdin.take() {
            let _ = pipe.write_all(&input);
        }
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(output) => Ok(output?),
        Err(_) => {
            // SAFETY: kill(2) on our child's PID; the thread waiting for it has not reaped it
            // (it has not sent its output).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = rx.recv_timeout(Duration::from_secs(5));
            bail!("{command:?} did not end within {within:?}")
        }
    }
}

/// Runs `program` (python3, node) on `tests/compat/<script>` with `args` and returns the JSON
/// objects it printed, one per line, by their `"step"`; `package` names the client in the
/// failure message (`cargo xtask test` installs it).
pub fn run_compat_script(
    program: &str,
    script: &str,
    package: &str,
    args: &[&str],
) -> std::collections::HashMap<String, serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compat")
        .join(script);
    // The scenarios bound their own waits; this bound only keeps a hung one from hanging the
    // suite.
    let output = output_within(
        Command::new(program).arg(script).args(args),
        None,
        COMPAT_SCRIPT_WAIT,
    )
    .unwrap_or_else(|e| panic!("{program} {args:?}: {e:#}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{package} {args:?} failed (is it installed? `cargo xtask test` installs {package}):\n\
         {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).expect("one JSON object per line");
            let step = value["step"].as_str().expect("a step name").to_owned();
            (step, value)
        })
        .collect()
}

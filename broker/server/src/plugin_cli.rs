//! `weir plugin ...`: plugin management through a running broker's admin API, with the token
//! of `admin.token_file` and, when `admin.tls` is on, over HTTPS: trusting the CAs of
//! `--cacert`, or else exactly the certificate the broker's `tls.cert_file` holds.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::admin;
use crate::admin_client::AdminTls;
use crate::config::Config;

/// `weir plugin`'s arguments.
#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    /// With `admin.tls`: PEM CA certificates the admin API's certificate must chain to (it
    /// must name the host of `--admin`, or the address of `admin.listen`). Without it, exactly
    /// the certificate of `tls.cert_file` is trusted.
    #[arg(long, global = true, value_name = "FILE")]
    cacert: Option<PathBuf>,

    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Upload a plugin component and bind it to topics (replacing a binding of that name,
    /// without dropping connections). The broker validates the module and runs its `init`
    /// first; a refusal changes nothing and prints why.
    Deploy {
        /// The component (.wasm).
        file: PathBuf,
        /// The binding's name (also the module's name unless --module is given).
        #[arg(long)]
        binding: String,
        /// A Kafka topic the plugin applies to; a trailing `*` matches any suffix. Repeat
        /// for several.
        #[arg(long = "topic", required = true)]
        topics: Vec<String>,
        /// The module's name (default: the binding's).
        #[arg(long)]
        module: Option<String>,
        /// A `key=value` pair of the plugin's configuration (its `init` gets them). Repeat
        /// for several.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Where messages go when the plugin fails (default `<topic>.dlq`).
        #[arg(long)]
        dead_letter_topic: Option<String>,
        /// While the circuit is open: `reject` (clients get an error) or `pass` (stored
        /// without the plugin).
        #[arg(long, default_value = "reject")]
        when_open: String,
        /// The broker's admin address (default: `admin.listen` of the configuration, with a
        /// wildcard address read as 127.0.0.1).
        #[arg(long)]
        admin: Option<String>,
    },
    /// List modules and bindings with their counters (JSON).
    List {
        /// The broker's admin address.
        #[arg(long)]
        admin: Option<String>,
    },
    /// Remove a deployed binding.
    Remove {
        /// The binding's name.
        binding: String,
        /// The broker's admin address.
        #[arg(long)]
        admin: Option<String>,
    },
}

/// Runs a `weir plugin` command against the admin API.
pub fn run(config: &Config, args: PluginArgs) -> anyhow::Result<String> {
    // The token of `admin.token_file`, if set, read once for the command's requests.
    let token = config.admin_token_file.as_deref().map(admin::read_token);
    let token = token.transpose()?;
    let token = token.as_deref();
    let cacert = args.cacert;
    let admin = |given: Option<String>| -> anyhow::Result<Target> {
        let (addr, host) = match given {
            Some(text) => {
                use std::net::ToSocketAddrs;
                let addr = (text.to_socket_addrs()?.next())
                    .ok_or_else(|| anyhow::anyhow!("{text} names no address"))?;
                let host = text.rsplit_once(':').map_or(text.as_str(), |(h, _)| h);
                (addr, host.trim_matches(['[', ']']).to_owned())
            }
            None => {
                let mut addr = config.admin_listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                (addr, addr.ip().to_string())
            }
        };
        Ok(Target {
            addr,
            tls: admin_tls(config, cacert.as_deref(), &host)?,
        })
    };
    match args.command {
        PluginCommand::Deploy {
            file,
            binding,
            topics,
            module,
            set: pairs,
            dead_letter_topic,
            when_open,
            admin: given,
        } => {
            let target = admin(given)?;
            let module = module.unwrap_or_else(|| binding.clone());
            let bytes =
                std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let mut plugin_config = serde_json::Map::new();
            for pair in pairs {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--set {pair:?}: use KEY=VALUE"))?;
                plugin_config.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
            }
            let uploaded = admin_request(
                token,
                &target,
                "PUT",
                &format!("/plugins/modules/{module}"),
                &bytes,
            )?;
            let mut spec = serde_json::json!({
                "topics": topics,
                "plugins": [{ "module": module, "config": plugin_config }],
                "when_open": when_open,
            });
            if let Some(topic) = dead_letter_topic {
                spec["dead_letter_topic"] = serde_json::Value::String(topic);
            }
            let bound = admin_request(
                token,
                &target,
                "PUT",
                &format!("/plugins/bindings/{binding}"),
                spec.to_string().as_bytes(),
            )?;
            Ok(format!("{uploaded}{bound}"))
        }
        PluginCommand::List { admin: given } => {
            admin_request(token, &admin(given)?, "GET", "/plugins", b"")
        }
        PluginCommand::Remove {
            binding,
            admin: given,
        } => admin_request(
            token,
            &admin(given)?,
            "DELETE",
            &format!("/plugins/bindings/{binding}"),
            b"",
        ),
    }
}

/// How long `weir plugin ...` waits for the admin API: to connect, and for each read (a
/// deploy compiles the module before it answers, which takes seconds on a Raspberry Pi).
const ADMIN_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Where the admin API is, and how its HTTPS is trusted (`None`: plain HTTP).
struct Target {
    addr: std::net::SocketAddr,
    tls: Option<AdminTls>,
}

/// With `admin.tls`: trust the CAs of `cacert` (the server's name: `host`), or else exactly
/// the certificate `tls.cert_file` starts with.
fn admin_tls(
    config: &Config,
    cacert: Option<&Path>,
    host: &str,
) -> anyhow::Result<Option<AdminTls>> {
    if !config.admin_tls {
        return Ok(None);
    }
    Ok(Some(match (cacert, &config.tls_cert_file) {
        (Some(ca_file), _) => AdminTls::with_ca_file(ca_file, host)?,
        (None, Some(cert_file)) => AdminTls::pinned(cert_file)?,
        (None, None) => anyhow::bail!("admin.tls is on: give --cacert, or set tls.cert_file"),
    }))
}

/// One request to the admin API at `target`, with the admin `token` if there is one; the
/// body of a 2xx answer, else an error with it.
fn admin_request(
    token: Option<&str>,
    target: &Target,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<String> {
    let request = crate::admin_client::AdminRequest {
        method,
        path,
        body,
        token,
        tls: target.tls.as_ref(),
    };
    let (status, text) =
        crate::admin_client::request(target.addr, &request, ADMIN_REQUEST_TIMEOUT)?;
    if (200..300).contains(&status) {
        Ok(text)
    } else {
        anyhow::bail!("{method} {path}: {status}: {}", text.trim())
    }
}

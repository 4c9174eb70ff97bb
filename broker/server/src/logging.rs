//! Log output through `tracing`: human-readable lines by default, JSON lines on request.
//! Logs go to standard error so that standard output stays free for command output.

use crate::config::{LogFilter, LogFormat};

/// Installs the global subscriber. Called once, before anything logs.
pub fn init(format: LogFormat, filter: &LogFilter) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::builder().parse(&filter.0)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

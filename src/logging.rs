//! Logging setup: tracing with a human or JSON formatter and a level filter
//! from config (`log.level`, already validated).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use crate::config::{LogFormat, LogSection};

/// Installs the global subscriber. Logs go to stderr; stdout carries only the
/// startup banner and command output.
pub fn init(log: &LogSection) -> anyhow::Result<()> {
    let filter: Targets = log
        .level
        .parse()
        .map_err(|e| anyhow::anyhow!("log.level `{}`: {e}", log.level))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match log.format {
        LogFormat::Human => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

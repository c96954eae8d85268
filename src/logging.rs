//! Logging setup: tracing with a human or JSON formatter and a level filter
//! from config (`log.level`, already validated) that can be changed live.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, Registry};

use crate::config::{LogFormat, LogSection};

/// Changes the log level of the running process (reload, admin).
#[derive(Clone)]
pub struct LogHandle(reload::Handle<Targets, Registry>);

impl LogHandle {
    pub fn set_level(&self, level: &str) -> anyhow::Result<()> {
        crate::config::check_log_filter(level).map_err(|e| anyhow::anyhow!("log level {e}"))?;
        let filter: Targets = level.parse().map_err(|e| anyhow::anyhow!("log.level `{level}`: {e}"))?;
        self.0
            .reload(filter)
            .map_err(|e| anyhow::anyhow!("cannot change the log level: {e}"))
    }
}

/// Installs the global subscriber. Logs go to stderr; stdout carries only the
/// startup banner and command output.
pub fn init(log: &LogSection) -> anyhow::Result<LogHandle> {
    let filter: Targets = log
        .level
        .parse()
        .map_err(|e| anyhow::anyhow!("log.level `{}`: {e}", log.level))?;
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match log.format {
        LogFormat::Human => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(LogHandle(handle))
}

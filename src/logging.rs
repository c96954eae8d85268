//! Logging setup: tracing with a human or JSON formatter and a level filter
//! from config (`log.level`, already validated) that can be changed live.

use std::io::IsTerminal as _;

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
        // Colour only for a person at a terminal: journald, files and pipes
        // would keep the escape codes as garbage.
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(LogHandle(handle))
}

/// Lets a warning through at most once per `interval`, so a stranger who
/// keeps hitting a limit cannot flood the log; the ones held back are
/// counted and reported with the next one let through.
#[derive(Debug)]
pub struct WarnLimiter {
    interval: std::time::Duration,
    last: Option<std::time::Instant>,
    held_back: u64,
}

impl WarnLimiter {
    pub fn new(interval: std::time::Duration) -> WarnLimiter {
        WarnLimiter {
            interval,
            last: None,
            held_back: 0,
        }
    }

    /// Some(warnings held back since the last one) when one may be logged at `now`.
    pub fn allow(&mut self, now: std::time::Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn once_per_interval_counting_the_rest() {
        let t0 = Instant::now();
        let mut w = WarnLimiter::new(Duration::from_secs(10));
        assert_eq!(w.allow(t0), Some(0));
        assert_eq!(w.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(w.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(w.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(w.allow(t0 + Duration::from_secs(11)), None);
    }
}

//! SIGTERM and SIGINT end a run early but cleanly: the result is still
//! printed and the agent (with its TURN allocations) closed, as when the
//! timeout passes. A test that stops an agent by its pid relies on this.
//!
//! The handlers are installed by [`Terminate::install`] first thing in the
//! runtime, before any work: installed lazily (on the first poll), a signal
//! arriving early would still kill the process without its result line.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The SIGTERM and SIGINT streams, listening from the moment they exist.
pub struct Terminate {
    /// `None` when the handlers could not be installed.
    streams: Option<(Signal, Signal)>,
}

impl Terminate {
    /// Installs the handlers; must run inside the tokio runtime. Logs
    /// "ready" at info level once a signal can no longer be lost (tests wait
    /// for that line before sending one).
    pub fn install() -> Terminate {
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => {
                log::info!("ready: SIGTERM and SIGINT end the run with its result");
                Terminate {
                    streams: Some((term, int)),
                }
            }
            _ => {
                log::warn!("cannot install the SIGTERM/SIGINT handlers; a signal ends the process without cleanup");
                Terminate { streams: None }
            }
        }
    }

    /// Resolves when SIGTERM or SIGINT arrives (or arrived since
    /// [`Terminate::install`]); never if the handlers are missing.
    pub async fn requested(&mut self) -> &'static str {
        let Some((term, int)) = &mut self.streams else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}

//! SIGTERM and SIGINT end a run early but cleanly: the result is still
//! printed and the agent (with its TURN allocations) closed, as when the
//! timeout passes. A test that stops an agent by its pid relies on this.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves when SIGTERM or SIGINT arrives (never, if the handlers cannot be installed).
pub async fn requested() -> &'static str {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        log::warn!("cannot install the SIGTERM/SIGINT handlers; a signal ends the process without cleanup");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

//! `ternd-ice-agent`: a real ICE agent (webrtc-rs `webrtc-ice`) driven from
//! the command line, so ternd's NAT-lab tests can run it inside network
//! namespaces behind simulated NATs. `gather` lists the candidates it finds
//! through the given STUN/TURN servers; `connect` meets a second agent in a
//! room of ternd's signaling WebSocket and exchanges messages over ICE.
//! Results are JSON lines on stdout (see `events`), logs go to stderr.

mod agent;
mod cli;
mod connect;
mod duration;
mod events;
mod exchange;
mod gather;
mod logger;
mod signal;
mod terminate;
mod urls;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logger::init(cli.log);
    // One thread is plenty for two or three sockets, and the test machines
    // are small; webrtc-ice only needs a tokio runtime with timers and IO.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ternd-ice-agent: cannot start the tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        // Before anything else, so an early SIGTERM still gets the result line.
        let stop = terminate::Terminate::install();
        match cli.command {
            cli::Command::Gather(args) => gather::run(args, stop).await,
            cli::Command::Connect(args) => connect::run(args, stop).await,
        }
    });
    // Tasks webrtc-ice spawned and never joined (its gatherers, TURN
    // refreshers) must not keep the process alive past the answer.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ternd-ice-agent: {e:#}");
            ExitCode::from(2)
        }
    }
}

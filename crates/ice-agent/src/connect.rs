//! `connect`: meet one other agent in a room of ternd's signaling WebSocket,
//! connect over ICE, exchange `--messages` messages, and print the selected
//! pair and the result.
//!
//! Roles: the agent that finds the other already in the room (`welcome.peers`
//! not empty) is controlling; it sends `offer{to, ufrag, pwd}` and the other
//! replies `answer{to, ufrag, pwd}`. Both trickle
//! `candidate{to, candidate: "<webrtc-ice marshalled candidate>"}` and end
//! with `candidate{to, candidate: ""}` (end of candidates, as in the browser
//! API). Then the controlling side runs `Agent::dial`, the other
//! `Agent::accept`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use webrtc_ice::agent::Agent;
use webrtc_ice::candidate::candidate_base::unmarshal_candidate;
use webrtc_ice::candidate::Candidate;
use webrtc_ice::state::ConnectionState;
use webrtc_util::Conn;

use crate::agent;
use crate::cli::ConnectArgs;
use crate::events::{self, emit};
use crate::exchange::{self, Counts};
use crate::signal::Signal;
use crate::terminate::Terminate;

/// How far the run got; names the error when the deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Phase {
    #[default]
    Signaling,
    Connecting,
    Exchanging,
}

/// What the run leaves behind for the report and the cleanup, also when the
/// deadline cut it short.
#[derive(Default)]
struct Progress {
    phase: Phase,
    agent: Option<Arc<Agent>>,
    counts: Arc<Counts>,
}

pub async fn run(args: ConnectArgs, mut terminate: Terminate) -> anyhow::Result<bool> {
    // A bad --url is a usage error (exit 2), found before joining any room.
    crate::urls::parse_all(
        &args.ice.urls,
        args.ice.username.as_deref(),
        args.ice.credential.as_deref(),
    )?;
    let deadline = Instant::now() + args.timeout;
    let mut progress = Progress::default();
    let mut signal = None;
    let outcome = tokio::select! {
        r = tokio::time::timeout_at(deadline, session(&args, &mut progress, &mut signal)) => match r {
            Ok(r) => r,
            Err(_) => Err(anyhow!(timeout_error(&args, progress.phase))),
        },
        name = terminate.requested() => Err(anyhow!("stopped by {name}")),
    };
    let received = progress.counts.received.load(Ordering::Relaxed);
    let ok = outcome.is_ok() && received == args.messages;
    emit(json!({
        "event": "result",
        "ok": ok,
        "sent": progress.counts.sent.load(Ordering::Relaxed),
        "received": received,
        "error": outcome.err().map(|e| format!("{e:#}")),
    }));
    if let Some(signal) = signal {
        let _ = tokio::time::timeout(Duration::from_secs(1), signal.close()).await;
    }
    if let Some(agent) = progress.agent.take() {
        agent::close(&agent).await;
    }
    Ok(ok)
}

fn timeout_error(args: &ConnectArgs, phase: Phase) -> String {
    let t = args.timeout;
    match phase {
        Phase::Signaling => format!(
            "signaling: no peer completed the offer/answer in room {} in {t:?}",
            args.room
        ),
        Phase::Connecting => format!("ice: no candidate pair succeeded in {t:?}"),
        Phase::Exchanging => format!("messages: not all {} messages arrived in {t:?}", args.messages),
    }
}

/// The whole run up to the result; leaves the signaling socket in `signal`
/// so the caller can leave the room also when the deadline cut the run short.
async fn session(args: &ConnectArgs, progress: &mut Progress, signal: &mut Option<Signal>) -> anyhow::Result<()> {
    progress.phase = Phase::Signaling;
    let signal = signal.insert(Signal::connect(&args.signal).await?);
    negotiate_and_exchange(args, progress, signal).await
}

async fn negotiate_and_exchange(
    args: &ConnectArgs,
    progress: &mut Progress,
    signal: &mut Signal,
) -> anyhow::Result<()> {
    let welcome = signal.join(&args.room).await?;
    let controlling = !welcome.peers.is_empty();
    log::info!(
        "joined room {} as {} ({})",
        args.room,
        welcome.id,
        if controlling { "controlling" } else { "controlled" }
    );
    let (agent, mut local) = agent::new_agent(&args.ice, controlling).await?;
    progress.agent = Some(Arc::clone(&agent));
    // Events from the agent's state machine, so a failed ICE run ends early.
    let (state_tx, mut states) = mpsc::unbounded_channel();
    agent.on_connection_state_change(Box::new(move |s: ConnectionState| {
        let _ = state_tx.send(s);
        Box::pin(async {})
    }));
    agent.gather_candidates().context("starting candidate gathering")?;
    let (ufrag, pwd) = agent.get_local_user_credentials().await;

    // The offer/answer: who the peer is and its credentials.
    let (peer, remote_ufrag, remote_pwd) = if controlling {
        let peer = welcome.peers[0].clone();
        signal
            .send(json!({"type": "offer", "to": peer, "ufrag": ufrag, "pwd": pwd}))
            .await?;
        let answer = wait_for(signal, &agent, &peer, "answer").await?;
        let (u, p) = credentials(&answer)?;
        (peer, u, p)
    } else {
        let offer = wait_for_offer(signal).await?;
        let peer = offer["from"].as_str().unwrap_or_default().to_owned();
        let (u, p) = credentials(&offer)?;
        signal
            .send(json!({"type": "answer", "to": peer, "ufrag": ufrag, "pwd": pwd}))
            .await?;
        (peer, u, p)
    };
    log::info!("peer {peer}: remote ufrag {remote_ufrag}");

    progress.phase = Phase::Connecting;
    // dial/accept run until a pair is selected; dropping `cancel_tx` cancels them.
    let (cancel_tx, cancel_rx) = mpsc::channel::<()>(1);
    let ice_agent = Arc::clone(&agent);
    let mut connecting: JoinHandle<anyhow::Result<Arc<dyn Conn + Send + Sync>>> = tokio::spawn(async move {
        let conn: Arc<dyn Conn + Send + Sync> = if controlling {
            ice_agent.dial(cancel_rx, remote_ufrag, remote_pwd).await?
        } else {
            ice_agent.accept(cancel_rx, remote_ufrag, remote_pwd).await?
        };
        Ok(conn)
    });

    let counts = Arc::clone(&progress.counts);
    let messages = args.messages;
    let mut exchanging: Option<JoinHandle<anyhow::Result<()>>> = None;
    let mut local_done = false;
    let mut signal_open = true;
    loop {
        tokio::select! {
            // Without the signaling socket there is nobody to trickle to.
            c = local.recv(), if !local_done && signal_open => {
                local_done = trickle(signal, &peer, c.flatten()).await?;
            }
            msg = signal.recv(), if signal_open => match msg {
                Ok(msg) => {
                    let phase = if exchanging.is_some() { Phase::Exchanging } else { Phase::Connecting };
                    on_signal(&agent, &peer, &msg, phase)?
                }
                // The signaling socket is not needed once ICE runs; keep going without it.
                Err(e) => {
                    log::warn!("{e:#}");
                    signal_open = false;
                }
            },
            Some(state) = states.recv() => {
                log::info!("ice connection state: {state}");
                if state == ConnectionState::Failed {
                    bail!("ice: the connection failed (no candidate pair succeeded, or the selected pair stopped answering)");
                }
            }
            joined = &mut connecting, if exchanging.is_none() => {
                let conn = joined.context("the ICE connect task")??;
                let pair = agent
                    .get_selected_candidate_pair()
                    .ok_or_else(|| anyhow!("ice: connected but no selected candidate pair"))?;
                emit(json!({
                    "event": "selected",
                    "local": events::candidate_fields(pair.local.as_ref()),
                    "remote": events::candidate_fields(pair.remote.as_ref()),
                }));
                progress.phase = Phase::Exchanging;
                let counts = Arc::clone(&counts);
                exchanging = Some(tokio::spawn(async move { exchange::run(conn, messages, &counts).await }));
            }
            done = async { exchanging.as_mut().expect("guarded by is_some").await }, if exchanging.is_some() => {
                drop(cancel_tx);
                return done.context("the message exchange task")?;
            }
        }
    }
}

/// Sends one local candidate to the peer, or the end-of-candidates marker
/// when gathering completed; returns true after the marker.
async fn trickle(signal: &mut Signal, peer: &str, c: Option<Arc<dyn Candidate + Send + Sync>>) -> anyhow::Result<bool> {
    match c {
        Some(c) => {
            emit(events::candidate(c.as_ref()));
            signal
                .send(json!({"type": "candidate", "to": peer, "candidate": c.marshal()}))
                .await?;
            Ok(false)
        }
        None => {
            signal
                .send(json!({"type": "candidate", "to": peer, "candidate": ""}))
                .await?;
            Ok(true)
        }
    }
}

/// Handles a signaling message from the room. The peer leaving ends the run
/// only before ICE connected (the error says which stage it cut short): once
/// connected, the peer leaves as soon as it holds all our messages, while we
/// may still linger.
fn on_signal(agent: &Agent, peer: &str, msg: &Value, phase: Phase) -> anyhow::Result<()> {
    let kind = msg["type"].as_str().unwrap_or_default();
    let from = msg["from"].as_str().unwrap_or_default();
    match kind {
        "candidate" if from == peer => add_remote(agent, msg),
        "peer-left" if msg["id"] == peer => match phase {
            Phase::Signaling => bail!("signaling: peer {peer} left the room before the offer/answer completed"),
            Phase::Connecting => bail!("ice: no candidate pair succeeded before peer {peer} gave up and left the room"),
            Phase::Exchanging => Ok(()),
        },
        _ => {
            log::debug!("ignoring signaling message {msg}");
            Ok(())
        }
    }
}

fn add_remote(agent: &Agent, msg: &Value) -> anyhow::Result<()> {
    let raw = msg["candidate"].as_str().unwrap_or_default();
    if raw.is_empty() {
        log::info!("the peer finished gathering");
        return Ok(());
    }
    let c = unmarshal_candidate(raw).with_context(|| format!("signaling: the peer sent a bad candidate `{raw}`"))?;
    let c: Arc<dyn Candidate + Send + Sync> = Arc::new(c);
    agent
        .add_remote_candidate(&c)
        .with_context(|| format!("adding the remote candidate `{raw}`"))
}

/// Waits for a message of `kind` from `peer`, adding any remote candidate
/// that comes first.
async fn wait_for(signal: &mut Signal, agent: &Agent, peer: &str, kind: &str) -> anyhow::Result<Value> {
    loop {
        let msg = signal.recv().await?;
        if msg["type"] == kind && msg["from"] == peer {
            return Ok(msg);
        }
        on_signal(agent, peer, &msg, Phase::Signaling)?;
    }
}

/// The controlled side waits in the room for the first offer.
async fn wait_for_offer(signal: &mut Signal) -> anyhow::Result<Value> {
    loop {
        let msg = signal.recv().await?;
        match msg["type"].as_str() {
            Some("offer") if msg["from"].is_string() => return Ok(msg),
            Some("peer-joined") => log::info!("peer {} joined", msg["id"]),
            _ => log::debug!("ignoring signaling message {msg} before the offer"),
        }
    }
}

fn credentials(msg: &Value) -> anyhow::Result<(String, String)> {
    match (msg["ufrag"].as_str(), msg["pwd"].as_str()) {
        (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok((u.to_owned(), p.to_owned())),
        _ => bail!("signaling: the peer's {} carries no ufrag/pwd: {msg}", msg["type"]),
    }
}

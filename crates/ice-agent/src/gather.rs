//! `gather`: print every local candidate the agent finds, then
//! `{"event":"gathered","count":n}`. Succeeds when gathering completed within
//! the timeout.

use serde_json::json;

use crate::agent;
use crate::cli::GatherArgs;
use crate::events::{self, emit};
use crate::terminate::Terminate;

pub async fn run(args: GatherArgs, mut terminate: Terminate) -> anyhow::Result<bool> {
    let (agent, mut candidates) = agent::new_agent(&args.ice, true).await?;
    agent.gather_candidates()?;
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut count = 0u32;
    let stop = terminate.requested();
    tokio::pin!(stop);
    let error = loop {
        tokio::select! {
            c = tokio::time::timeout_at(deadline, candidates.recv()) => match c {
                Ok(Some(Some(c))) => {
                    count += 1;
                    emit(events::candidate(c.as_ref()));
                }
                // `None` from the agent: every gatherer finished.
                Ok(Some(None)) => break None,
                Ok(None) => break Some("the agent stopped reporting candidates".to_owned()),
                Err(_) => break Some(format!("gathering did not complete in {:?}", args.timeout)),
            },
            name = &mut stop => break Some(format!("stopped by {name}")),
        }
    };
    let completed = error.is_none();
    match error {
        None => emit(json!({"event": "gathered", "count": count})),
        Some(e) => emit(json!({"event": "gathered", "count": count, "error": e})),
    }
    agent::close(&agent).await;
    Ok(completed)
}

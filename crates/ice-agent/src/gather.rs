//! `gather`: print every local candidate the agent finds, then
//! `{"event":"gathered","count":n}`. Succeeds when gathering completed within
//! the timeout.

use serde_json::json;

use crate::agent;
use crate::cli::GatherArgs;
use crate::events::{self, emit};

pub async fn run(args: GatherArgs) -> anyhow::Result<bool> {
    let (agent, mut candidates) = agent::new_agent(&args.ice, true).await?;
    agent.gather_candidates()?;
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut count = 0u32;
    let completed = loop {
        match tokio::time::timeout_at(deadline, candidates.recv()).await {
            Ok(Some(Some(c))) => {
                count += 1;
                emit(events::candidate(c.as_ref()));
            }
            // `None` from the agent: every gatherer finished.
            Ok(Some(None)) => break true,
            Ok(None) => break false,
            Err(_) => break false,
        }
    };
    if completed {
        emit(json!({"event": "gathered", "count": count}));
    } else {
        emit(json!({
            "event": "gathered",
            "count": count,
            "error": format!("gathering did not complete in {:?}", args.timeout),
        }));
    }
    agent::close(&agent).await;
    Ok(completed)
}

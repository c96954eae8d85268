//! A named thread that runs one future on its own single-threaded tokio
//! runtime (the HTTP listener, the cluster task): off the shards' threads,
//! so nothing it waits for can stall the packet path.

use std::future::Future;
use std::thread::JoinHandle;

/// Starts thread `name` running the future `make` builds there (so the
/// future itself need not be `Send`).
pub fn spawn<F, M>(name: &str, make: M) -> std::io::Result<JoinHandle<()>>
where
    M: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()>,
{
    let label = name.to_string();
    std::thread::Builder::new().name(name.into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(make()),
            Err(e) => tracing::error!("cannot start the runtime of {label}: {e}"),
        }
    })
}

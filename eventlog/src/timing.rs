//! How long a request waited on the log's appends (the round trip and the durable commit),
//! so the service can report it apart from its own time (`Server-Timing: log;dur=`).

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

tokio::task_local! {
    static APPEND_WAIT: Cell<Duration>;
}

/// Runs `work`, returning its output and the time its appends took.
pub async fn measured<F: Future>(work: F) -> (F::Output, Duration) {
    APPEND_WAIT
        .scope(Cell::new(Duration::ZERO), async move {
            let out = work.await;
            (out, APPEND_WAIT.with(Cell::get))
        })
        .await
}

/// Adds `took` to the current request's append time (nothing outside [`measured`]).
pub(crate) fn record(took: Duration) {
    let _ = APPEND_WAIT.try_with(|wait| wait.set(wait.get() + took));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_inside_a_measured_future_add_up() {
        let ((), took) = measured(async {
            record(Duration::from_millis(2));
            tokio::task::yield_now().await;
            record(Duration::from_millis(3));
        })
        .await;
        assert_eq!(took, Duration::from_millis(5));
        record(Duration::from_millis(1)); // outside any request: ignored
    }
}

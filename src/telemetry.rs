//! Prometheus metrics through the `metrics` facade: one recorder per process, rendered by the
//! operator port's `/metrics`. Counters and histograms are recorded where things happen (HTTP
//! requests, webhook deliveries, appends, group commits, process steps, outbound webhook
//! attempts); lag and counts are gauges read from the store when scraped.

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// Latency buckets (seconds): a tool-call answer is judged in milliseconds, a provider call
/// in seconds.
const SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use (every application in a process shares it:
/// metrics are per process, as Prometheus scrapes them).
pub fn prometheus() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("eventlog_group_commit_batch_size".into()),
                    &BATCH,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        describe();
        handle
    })
}

/// HELP lines for the scrape, and the gauges that must read 0 before anything happens.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by route, method and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "time inside the service per request"
    );
    describe_counter!(
        "webhook_deliveries_total",
        "provider deliveries by provider and outcome"
    );
    describe_histogram!(
        "eventlog_append_seconds",
        Unit::Seconds,
        "one append: round trip and durable commit"
    );
    describe_histogram!(
        "eventlog_group_commit_batch_size",
        "appends written by one statement (PostgreSQL)"
    );
    describe_gauge!(
        "projector_lag_events",
        "events in the log a projector has not applied"
    );
    describe_gauge!(
        "projector_lag_seconds",
        Unit::Seconds,
        "age of the oldest event a projector has not applied"
    );
    describe_gauge!(
        "process_lag_events",
        "events a process's starter has not read"
    );
    describe_gauge!(
        "process_lag_seconds",
        Unit::Seconds,
        "age of the oldest event a process's starter has not read"
    );
    describe_gauge!("process_instances", "a process's instances by status");
    describe_counter!(
        "process_steps_total",
        "process step attempts by process, step and outcome"
    );
    describe_counter!(
        "outbound_webhook_attempts_total",
        "attempts to deliver to integrators' endpoints, by outcome"
    );
    describe_gauge!("sse_clients", "clients connected to the live feed");
    metrics::gauge!("sse_clients").increment(0.0);
}

/// The route a request is counted under: ids (UUIDs, numbers, provider ids) become `:id`, so
/// labels stay few; a 404 or 405 on a path with no id is `unmatched` (a scanner's random
/// paths must not each become a series).
pub fn route_label(path: &str, status: u16) -> String {
    let mut had_id = false;
    let segments: Vec<&str> = path
        .split('/')
        .map(|segment| {
            if looks_like_id(segment) {
                had_id = true;
                ":id"
            } else {
                segment
            }
        })
        .collect();
    if matches!(status, 404 | 405) && !had_id {
        return "unmatched".into();
    }
    let route = segments.join("/");
    if route.len() > 120 {
        "unmatched".into()
    } else {
        route
    }
}

fn looks_like_id(segment: &str) -> bool {
    let word = segment
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    let digits = segment.chars().any(|c| c.is_ascii_digit());
    let all_digits = segment.chars().all(|c| c.is_ascii_digit());
    !segment.is_empty()
        && (!word || all_digits || segment.len() > 40 || digits && segment.len() >= 8)
}

/// Counts one answered HTTP request and its latency.
pub fn record_request(method: &str, path: &str, status: u16, seconds: f64) {
    let route = route_label(path, status);
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(seconds);
}

/// Counts one provider delivery by its outcome: `recorded` (new events), `nothing_new` (a
/// redelivery, or a message that changes nothing), `rejected` (4xx) or `failed` (5xx).
pub fn record_delivery(provider: &'static str, status: u16, nothing_new: bool) {
    let outcome = match status {
        200..=299 if nothing_new => "nothing_new",
        200..=299 => "recorded",
        400..=499 => "rejected",
        _ => "failed",
    };
    metrics::counter!("webhook_deliveries_total", "provider" => provider, "outcome" => outcome)
        .increment(1);
}

/// Reads the lag and counts the scrape reports, then renders every metric.
pub async fn render(state: &Arc<AppState>) -> Result<String, eventlog::StoreError> {
    let head = state.store.head().await?;
    metrics::gauge!("eventlog_head_position").set(head as f64);
    let now = eventlog::now_ms();
    for handle in &state.projectors {
        let status = handle.status();
        let (events, seconds) = lag(state, status.checkpoint, now).await?;
        let name = handle.name().to_string();
        metrics::gauge!("projector_lag_events", "projector" => name.clone()).set(events);
        metrics::gauge!("projector_lag_seconds", "projector" => name.clone()).set(seconds);
        metrics::gauge!("projector_active", "projector" => name).set(if status.active {
            1.0
        } else {
            0.0
        });
    }
    for handle in state.processes_running.get().into_iter().flatten() {
        let checkpoint = handle.starter.status().checkpoint;
        let (events, seconds) = lag(state, checkpoint, now).await?;
        let kind = handle.kind.to_string();
        metrics::gauge!("process_lag_events", "process" => kind.clone()).set(events);
        metrics::gauge!("process_lag_seconds", "process" => kind.clone()).set(seconds);
        let counts = crate::processes::work::counts(state.store.pool(), handle.kind).await?;
        for (standing, n) in counts {
            metrics::gauge!("process_instances", "process" => kind.clone(), "status" => standing)
                .set(n as f64);
        }
    }
    if let Some(g) = state.store.group_commit_stats() {
        metrics::counter!("eventlog_group_commit_statements_total").absolute(g.statements);
        metrics::counter!("eventlog_group_commit_appends_total").absolute(g.appends);
    }
    let handle = prometheus();
    handle.run_upkeep();
    Ok(handle.render())
}

/// Events not yet read after `checkpoint`, and how long the oldest of them has waited.
async fn lag(
    state: &AppState,
    checkpoint: eventlog::Checkpoint,
    now_ms: i64,
) -> Result<(f64, f64), eventlog::StoreError> {
    let events = state.store.count_after(checkpoint).await?;
    let oldest = state.store.read_all(checkpoint, 1).await?;
    let seconds = oldest
        .first()
        .map_or(0.0, |e| (now_ms - e.recorded_at).max(0) as f64 / 1e3);
    Ok((events as f64, seconds))
}

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn ids_become_one_label_and_unknown_paths_one_more() {
        assert_eq!(
            route_label("/api/v1/calls/7d9f0c1e-2b1a-4c57-9a55-0f3e2a1b9c8d", 200),
            "/api/v1/calls/:id"
        );
        assert_eq!(
            route_label(
                "/api/webhooks/vapi/7d9f0c1e-2b1a-4c57-9a55-0f3e2a1b9c8d",
                401
            ),
            "/api/webhooks/vapi/:id"
        );
        assert_eq!(route_label("/api/v1/calls", 200), "/api/v1/calls");
        assert_eq!(route_label("/api/v1/calls/42", 404), "/api/v1/calls/:id");
        assert_eq!(route_label("/wp-admin/setup.php", 404), "unmatched");
        assert_eq!(route_label("/health", 200), "/health");
    }
}

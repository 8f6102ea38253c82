//! Part of section `ingest`: deliveries of one call overlapping, as VAPI sends them (it does
//! not wait for one answer before the call's next message). Each of `calls` call slots plays
//! calls back to back with `k` of the call's deliveries in flight at once, in script order;
//! every non-2xx answer is a refused delivery (the target is none).

use std::sync::Arc;
use std::time::{Duration, Instant};

use callflex::simulate::call_script_with;
use tokio::sync::{mpsc, Mutex};

use crate::ingest::{send, Endpoint};

#[derive(Debug, Default)]
pub struct OverlapRun {
    pub deliveries: u64,
    pub refused: u64,
    pub first_refusal: Option<String>,
    pub elapsed: Duration,
}

pub async fn drive(
    endpoint: &Endpoint,
    calls: usize,
    k: usize,
    run_for: Duration,
    first_call: usize,
) -> OverlapRun {
    let total = Arc::new(Mutex::new(OverlapRun::default()));
    let started = Instant::now();
    let deadline = started + run_for;
    let mut tasks = Vec::new();
    for slot in 0..calls {
        // The slot's deliveries in script order; `k` senders take them as they come, so at
        // most `k` of one call are in flight.
        let (tx, rx) = mpsc::channel::<String>(1);
        let rx = Arc::new(Mutex::new(rx));
        let recordings = endpoint.recordings.clone();
        tasks.push(tokio::spawn(async move {
            'calls: for n in 0.. {
                let script = call_script_with(first_call + slot * 1_000_000 + n, &recordings);
                for delivery in script {
                    if Instant::now() >= deadline || tx.send(delivery.body).await.is_err() {
                        break 'calls;
                    }
                }
            }
        }));
        for _ in 0..k {
            let (rx, endpoint, total) = (rx.clone(), endpoint.clone(), total.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = None;
                let (mut sent, mut refused, mut first) = (0u64, 0u64, None);
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some(body) = next else { break };
                    sent += 1;
                    if let Err(err) = send(&mut conn, &endpoint, body).await {
                        refused += 1;
                        first.get_or_insert(err);
                    }
                }
                let mut total = total.lock().await;
                total.deliveries += sent;
                total.refused += refused;
                if total.first_refusal.is_none() {
                    total.first_refusal = first;
                }
            }));
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut run = std::mem::take(&mut *total.lock().await);
    run.elapsed = started.elapsed();
    run
}

//! Sign-up answers do not tell whether an address has an account: n = 30 sign-ups of new
//! addresses and 30 of the same addresses again, medians within 10%.
//!
//! A binary of its own: test binaries run one after another, so no other test's load skews
//! the comparison (inside the `it` binary dozens of scenarios run beside it).

#[allow(dead_code)]
#[path = "it/helpers.rs"]
mod helpers;
#[path = "it/stubs.rs"]
#[allow(dead_code)]
mod stubs;

use std::time::{Duration, Instant};

use helpers::*;

async fn timed_sign_up(app: &TestApp, email: &str, n: usize) -> Duration {
    let started = Instant::now();
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/signup", app.base))
        // A different client address each time (through the trusted proxy), so the per-IP
        // limit does not end the experiment.
        .header("x-forwarded-for", format!("203.0.113.{}", n % 250 + 1))
        .json(
            &serde_json::json!({"email": email, "password": PASSWORD, "name": "Timing",
                                  "organization_name": "Timing Co"}),
        )
        .send()
        .await
        .expect("signup");
    let took = started.elapsed();
    assert_eq!(res.status(), 202, "{email}");
    took
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

async fn sign_up_takes_as_long_for_a_known_address_as_for_a_new_one(backend: &str) {
    let app = spawn_app_with(backend, |c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    })
    .await;
    const N: usize = 30;
    // Warm-up (statements prepared, caches filled, the pace measured).
    for i in 0..5 {
        timed_sign_up(&app, &format!("warm{i}@timing.test"), 250 + i).await;
    }
    let mut new = Vec::new();
    let mut known = Vec::new();
    for i in 0..N {
        let email = format!("person{i}@timing.test");
        new.push(timed_sign_up(&app, &email, 2 * i + 1).await);
        known.push(timed_sign_up(&app, &email, 2 * i + 2).await);
    }
    let (new, known) = (median(new), median(known));
    let ratio = known.as_secs_f64() / new.as_secs_f64();
    eprintln!("{backend}: median sign-up, new {new:?}, known {known:?}, ratio {ratio:.3}");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "median sign-up: new address {new:?}, known address {known:?} (ratio {ratio:.2})"
    );
    app.app.stop().await;
}

/// Both backends, one after the other (not side by side: each would load the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_timing_does_not_tell_who_is_registered() {
    sign_up_takes_as_long_for_a_known_address_as_for_a_new_one("postgres").await;
    sign_up_takes_as_long_for_a_known_address_as_for_a_new_one("sqlite").await;
}

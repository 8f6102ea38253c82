//! Sign-up answers do not tell whether an address has an account: n = 30 sign-ups of new
//! addresses and 30 of the same addresses again, medians within 10%.

use std::time::{Duration, Instant};

use crate::helpers::*;

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
    // Warm-up (first statements are prepared, caches filled).
    timed_sign_up(&app, "warm@timing.test", 0).await;
    let mut new = Vec::new();
    let mut known = Vec::new();
    for i in 0..N {
        let email = format!("person{i}@timing.test");
        new.push(timed_sign_up(&app, &email, 2 * i + 1).await);
        known.push(timed_sign_up(&app, &email, 2 * i + 2).await);
    }
    let (new, known) = (median(new), median(known));
    let ratio = known.as_secs_f64() / new.as_secs_f64();
    assert!(
        (0.9..=1.1).contains(&ratio),
        "median sign-up: new address {new:?}, known address {known:?} (ratio {ratio:.2})"
    );
    app.app.stop().await;
}

crate::both_backends!(sign_up_takes_as_long_for_a_known_address_as_for_a_new_one);

//! Cron schedules on real service processes: a run missed while every process was down is
//! fired once at the next start-up (the clock of the restarted processes is moved past
//! 02:00 UTC with `CALLFLEX_CLOCK_OFFSET_MS`), and two processes starting together (on
//! PostgreSQL) fire it once between them.

use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};

use crate::child::ChildService;

async fn count(url: &str, sql: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("connect");
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

async fn wait_for(url: &str, sql: &str, at_least: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = count(url, sql).await;
        if n >= at_least {
            return n;
        }
        assert!(Instant::now() < deadline, "{sql}: {n} < {at_least}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const DAILY_FIRED: &str = "SELECT COUNT(*) FROM events WHERE aggregate_type = 'schedule' \
    AND aggregate_id = 'usage_daily' AND event_type = 'ScheduleFired'";
const DAILY_RUNS: &str = "SELECT COUNT(*) FROM process_work WHERE kind = 'scheduled_run' \
    AND subject LIKE 'usage_daily:%' AND status = 'completed'";

async fn a_daily_run_missed_while_down_runs_once_at_start_up(backend: &str) {
    let url = eventlog::testing::fresh_url(backend).await;
    let mut first = ChildService::start(&url, &[]);
    wait_for(
        &url,
        "SELECT COUNT(*) FROM events WHERE event_type = 'ScheduleRegistered'",
        2,
    )
    .await;
    first.signal("TERM");
    first.wait_exit(Duration::from_secs(20));
    assert_eq!(count(&url, DAILY_FIRED).await, 0);
    // Down over the next 02:00 UTC: the restarted processes' clock is 30 minutes past it.
    let now = Utc::now();
    let mut next = now
        .with_hour(2)
        .and_then(|t| t.with_minute(0))
        .and_then(|t| t.with_second(0))
        .expect("02:00");
    if next <= now {
        next += chrono::Duration::days(1);
    }
    let offset = (next - now + chrono::Duration::minutes(30)).num_milliseconds();
    let offset = offset.to_string();
    let env = [("CALLFLEX_CLOCK_OFFSET_MS", offset.as_str())];
    let restarted = ChildService::start(&url, &env);
    let other = (backend == "postgres").then(|| ChildService::start(&url, &env));
    wait_for(&url, DAILY_RUNS, 1).await;
    // Several ticks later, still one run.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(count(&url, DAILY_FIRED).await, 1);
    assert_eq!(count(&url, DAILY_RUNS).await, 1);
    let scheduled: String = {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
        let subject: String = sqlx::query_scalar(
            "SELECT subject FROM process_work WHERE kind = 'scheduled_run' \
             AND subject LIKE 'usage_daily:%'",
        )
        .fetch_one(&pool)
        .await
        .expect("run");
        pool.close().await;
        subject
    };
    assert_eq!(scheduled, format!("usage_daily:{}", next.timestamp()));
    drop(other);
    drop(restarted);
}

crate::both_backends!(a_daily_run_missed_while_down_runs_once_at_start_up);

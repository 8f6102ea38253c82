//! Shared application state handed to every handler.

use std::time::Duration;

use aggregates::call::Call;
use aggregates::organization::Organization;
use aggregates::subscription::Subscription;
use aggregates::telephony::TwilioCall;
use aggregates::user::{User, UserEmail};
use eventlog::{AggregateRepository, EventStore};
use projections::ProjectorHandle;

use crate::auth::SignInLimiter;
use crate::config::Config;
use crate::webhooks::deliveries::Ledger;

/// Snapshot every 50 events; bump a schema version when that aggregate's state shape changes.
const SNAPSHOT_EVERY: i64 = 50;

pub struct AppState {
    pub config: Config,
    pub store: EventStore,
    pub calls: AggregateRepository<Call>,
    pub organizations: AggregateRepository<Organization>,
    pub subscriptions: AggregateRepository<Subscription>,
    pub users: AggregateRepository<User>,
    /// One stream per normalized email address: who owns it.
    pub user_emails: AggregateRepository<UserEmail>,
    /// One stream per process instance (`{kind}:{subject}`): its steps and their outcomes.
    pub processes: AggregateRepository<aggregates::process::Process>,
    /// One stream per Twilio CallSid: status callbacks waiting for their VAPI call.
    pub twilio_calls: AggregateRepository<TwilioCall>,
    /// Cron schedules' runs (`src/schedules.rs`).
    pub schedules: AggregateRepository<aggregates::schedule::Schedule>,
    pub sign_in_limiter: SignInLimiter,
    pub projectors: Vec<ProjectorHandle>,
    /// The processes' starters and workers (set once, after the state exists: workers hold it).
    pub processes_running: std::sync::OnceLock<Vec<crate::processes::worker::ProcessHandle>>,
    /// Raw webhook deliveries and their answers (a 2xx waits for the row).
    pub ledger: Ledger,
    /// Where call recordings are copied.
    pub recordings: crate::recordings::Recordings,
    /// Seals and opens secrets carried by events.
    pub secrets: crate::secrets::Keyring,
    /// Keeps sign-up answers as slow for known addresses as for new ones.
    pub sign_up_pace: crate::http::accounts::pace::SignUpPace,
    /// The live feed's hub (set at start-up).
    pub live: std::sync::OnceLock<std::sync::Arc<crate::live::Hub>>,
    /// The clock process workers read (tests move it forward).
    pub clock: crate::clock::Clock,
    /// The request path's load; the processes yield to it under a burst.
    pub foreground: std::sync::Arc<crate::foreground::Foreground>,
}

impl AppState {
    pub fn new(
        config: Config,
        store: EventStore,
        projectors: Vec<ProjectorHandle>,
        recordings: crate::recordings::Recordings,
    ) -> Self {
        // Commands and read models decode old event versions through the same upcasters.
        let upcasters = projections::upcasting::all();
        let secrets = config
            .keyring
            .clone()
            .unwrap_or_else(crate::secrets::Keyring::ephemeral);
        Self {
            calls: AggregateRepository::new(store.clone(), ())
                .with_snapshots(SNAPSHOT_EVERY, 1)
                .with_upcasters(upcasters.clone()),
            // 2: assistants carry their configuration, phone numbers their provider ids,
            // purchases and integration configs are kept (older snapshots are replayed).
            organizations: AggregateRepository::new(store.clone(), ())
                .with_snapshots(SNAPSHOT_EVERY, 2)
                .with_upcasters(upcasters.clone()),
            // 2: metering periods, carried usage, thresholds and notifications are kept.
            subscriptions: AggregateRepository::new(store.clone(), ())
                .with_snapshots(SNAPSHOT_EVERY, 2)
                .with_upcasters(upcasters.clone()),
            users: AggregateRepository::new(store.clone(), ())
                .with_snapshots(SNAPSHOT_EVERY, 1)
                .with_upcasters(upcasters.clone()),
            user_emails: AggregateRepository::new(store.clone(), ())
                .with_upcasters(upcasters.clone()),
            // No snapshots: an instance's stream is a few events (its start, each attempt's
            // outcome, its end), and a snapshot read is one more round trip before every
            // new instance's first step (the outbound webhooks' throughput bound).
            processes: AggregateRepository::new(store.clone(), ())
                .with_snapshots(0, 1)
                .with_upcasters(upcasters.clone()),
            twilio_calls: AggregateRepository::new(store.clone(), ())
                .with_upcasters(upcasters.clone()),
            schedules: AggregateRepository::new(store.clone(), ())
                .with_upcasters(upcasters.clone()),
            sign_in_limiter: SignInLimiter::new(
                config.redis_url.as_deref(),
                crate::auth::Limits::default(),
            ),
            live: std::sync::OnceLock::new(),
            clock: crate::clock::Clock::ahead(config.clock_offset_ms),
            foreground: std::sync::Arc::new(crate::foreground::Foreground::new(config.yielding)),
            config,
            ledger: Ledger::start(store.clone()),
            sign_up_pace: Default::default(),
            secrets,
            store,
            projectors,
            recordings,
            processes_running: std::sync::OnceLock::new(),
        }
    }

    /// Waits until every read model reflects the event at `position` (read-your-writes).
    /// Returns false when the wait timed out.
    pub async fn wait_for_position(
        &self,
        position: i64,
        timeout: Duration,
    ) -> Result<bool, eventlog::StoreError> {
        if position <= 0 {
            return Ok(true);
        }
        let Some(target) = self.store.checkpoint_of(position).await? else {
            // Not (yet) visible in the log at all: nothing to wait for that we can name.
            return Ok(position <= self.store.head().await?);
        };
        let deadline = tokio::time::Instant::now() + timeout;
        for handle in &self.projectors {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !handle.wait_for(target, left).await {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether every process's starter has read the whole log (nothing after its checkpoint,
    /// in commit order) and no instance is still running or waiting for a retry.
    pub async fn processes_idle(&self) -> Result<bool, eventlog::StoreError> {
        for process in self.processes_running.get().into_iter().flatten() {
            if self
                .store
                .count_after(process.starter.status().checkpoint)
                .await?
                > 0
            {
                return Ok(false);
            }
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM process_work WHERE status NOT IN ('completed', 'failed')",
        )
        .fetch_one(self.store.pool())
        .await?;
        Ok(open == 0)
    }

    /// The lowest checkpoint position across read models (what every read model reflects).
    pub fn read_model_position(&self) -> i64 {
        self.projectors
            .iter()
            .map(|h| h.status().checkpoint.position)
            .min()
            .unwrap_or(0)
    }
}

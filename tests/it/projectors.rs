//! Projectors: a runner killed mid-batch and restarted ends with exactly the read model of an
//! uninterrupted build; projection state commits with its checkpoint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aggregates::call::{
    CallAction, CallCommand, CallContext, Direction, EndReport, FunctionInvocation,
    TranscriptSegment,
};
use async_trait::async_trait;
use eventlog::{AggregateRepository, CommandMeta, EventStore, StoredEvent};
use projections::{DomainEvent, ProjectionError, Projector, ProjectorRunner, Tables};
use sqlx::{Any, Row, Transaction};

/// Wraps a projector and hangs forever at the `kill_at`-th event, so the test can kill the
/// runner while its batch transaction is open.
struct Hanging {
    inner: Arc<dyn Projector>,
    seen: AtomicUsize,
    kill_at: usize,
}

#[async_trait]
impl Projector for Hanging {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn tables(&self) -> &'static [&'static str] {
        self.inner.tables()
    }
    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<(), ProjectionError> {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.kill_at {
            std::future::pending::<()>().await;
        }
        self.inner.apply(tx, tables, stored, event).await
    }
}

async fn fill_log(store: &EventStore, calls: usize) {
    let repo = AggregateRepository::<aggregates::call::Call>::new(store.clone(), ());
    let org = uuid::Uuid::new_v4();
    let at = chrono::Utc::now();
    for c in 0..calls {
        let ctx = CallContext {
            organization_id: org,
            vapi_call_id: format!("v{c}"),
            from_number: Some(format!("+1555000{:04}", c % 7)),
            to_number: Some("+15559990000".into()),
            direction: Direction::Inbound,
            phone_number_id: None,
            assistant_id: None,
            provider_call_id: None,
            started_at: Some(at),
        };
        let meta = CommandMeta::new("system:test").tenant(org);
        let id = format!("call-{c}");
        let mut commands = vec![CallCommand::Start {
            ctx: ctx.clone(),
            at,
        }];
        for s in 0..8 {
            commands.push(CallCommand::AddTranscript {
                ctx: ctx.clone(),
                segment: TranscriptSegment {
                    key: format!("s{s}"),
                    role: "user".into(),
                    text: format!("segment {s} of call {c}"),
                    at,
                    seconds_from_start: Some(s as f64),
                },
            });
        }
        commands.push(CallCommand::HandleFunctionCall {
            ctx: ctx.clone(),
            invocation: FunctionInvocation {
                tool_call_id: format!("t{c}"),
                name: "takeMessage".into(),
                arguments: serde_json::json!({"message": "hi"}),
                action: CallAction::MessageTaken {
                    caller_name: None,
                    caller_phone: None,
                    message_for: None,
                    message: "hi".into(),
                    urgent: false,
                },
                reply: "ok".into(),
                at,
                notifications: vec![],
            },
        });
        commands.push(CallCommand::End {
            ctx: ctx.clone(),
            report: EndReport {
                ended_reason: Some("customer-ended-call".into()),
                started_at: Some(at),
                ended_at: Some(at + chrono::Duration::seconds(61 + c as i64)),
                duration_seconds: None,
                cost: Some(0.1),
                cost_breakdown: serde_json::Value::Null,
                transcript: Some("full".into()),
                messages: serde_json::Value::Null,
                recording_url: None,
                stereo_recording_url: None,
                summary: Some(format!("summary {c}")),
                structured_data: serde_json::Value::Null,
                success_evaluation: None,
                at,
            },
        });
        for cmd in commands {
            repo.execute(&id, cmd, &meta).await.unwrap();
        }
    }
}

/// Runs `runner` until it has applied the whole log. On PostgreSQL a transaction open anywhere
/// in the cluster (other tests run beside this one) holds the readable horizon back for a
/// moment, so an empty batch alone does not mean "caught up".
async fn catch_up(store: &EventStore, runner: &ProjectorRunner) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if runner.run_batch().await.unwrap() > 0 {
            continue;
        }
        let at = runner.handle().status().checkpoint;
        if store.count_after(at).await.unwrap() == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "projector never caught up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A deterministic text dump of the listed tables.
async fn dump(store: &EventStore, tables: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for table in tables {
        // `transcript_search.tsv` (PostgreSQL tsvector) is derived from `body` and has no
        // Any-driver type: compare the columns it is generated from.
        let columns = if *table == "transcript_search" {
            "call_id, organization_id, body"
        } else {
            "*"
        };
        let rows = sqlx::query(&format!("SELECT {columns} FROM {table}"))
            .fetch_all(store.pool())
            .await
            .unwrap();
        let mut lines: Vec<String> = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        row.try_get::<Option<String>, _>(i)
                            .map(|v| format!("{v:?}"))
                            .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                            .or_else(|_| row.try_get::<Option<f64>, _>(i).map(|v| format!("{v:?}")))
                            .unwrap_or_else(|_| "?".into())
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        lines.sort();
        out.push(format!("{table}: {} rows", lines.len()));
        out.extend(lines);
    }
    out
}

async fn a_projector_killed_mid_batch_and_restarted_matches_an_uninterrupted_build(backend: &str) {
    let store = EventStore::open(&eventlog::testing::fresh_url(backend).await, 10)
        .await
        .unwrap();
    fill_log(&store, 30).await;
    let head = store.head().await.unwrap();
    for inner in projections::all() {
        let tables = inner.tables();
        let hanging = Arc::new(Hanging {
            inner: inner.clone(),
            seen: AtomicUsize::new(0),
            kill_at: 120,
        });
        let doomed = ProjectorRunner::new(store.clone(), hanging).batch_size(50);
        let doomed_store = store.clone();
        let task = tokio::spawn(async move {
            loop {
                if doomed.run_batch().await.unwrap() == 0 {
                    // Empty can also mean another test's open transaction holds the
                    // readable horizon back (PostgreSQL): only the head ends the loop.
                    let at = doomed.handle().status().checkpoint;
                    if doomed_store.count_after(at).await.unwrap() == 0 {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(!task.is_finished(), "the runner hangs mid-batch");
        task.abort();
        let _ = task.await;
        let checkpoint = eventlog::checkpoint::load(store.pool(), inner.name())
            .await
            .unwrap();
        assert_eq!(
            checkpoint.position % 50,
            0,
            "only whole batches were committed"
        );
        assert!(checkpoint.position < head);

        let restarted = ProjectorRunner::new(store.clone(), inner.clone()).batch_size(50);
        catch_up(&store, &restarted).await;
        let recovered = dump(&store, tables).await;

        let handle = restarted.handle();
        projections::rebuild::rebuild(&store, &handle)
            .await
            .unwrap();
        let uninterrupted = dump(&store, tables).await;
        assert_eq!(
            recovered,
            uninterrupted,
            "{} differs after restart",
            inner.name()
        );
        let checkpoint = eventlog::checkpoint::load(store.pool(), inner.name())
            .await
            .unwrap();
        assert_eq!(checkpoint.position, head);
    }
}

async fn every_read_model_is_built_from_the_log(backend: &str) {
    let store = EventStore::open(&eventlog::testing::fresh_url(backend).await, 10)
        .await
        .unwrap();
    fill_log(&store, 5).await;
    for projector in projections::all() {
        let runner = ProjectorRunner::new(store.clone(), projector);
        catch_up(&store, &runner).await;
    }
    let count = |sql: &'static str| {
        let store = store.clone();
        async move {
            sqlx::query(sql)
                .fetch_one(store.pool())
                .await
                .unwrap()
                .try_get::<i64, _>(0)
                .unwrap()
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM calls WHERE status = 'ended'").await,
        5
    );
    assert_eq!(count("SELECT COUNT(*) FROM call_actions").await, 5);
    let mut segments = 0;
    for row in sqlx::query("SELECT segments FROM transcripts")
        .fetch_all(store.pool())
        .await
        .unwrap()
    {
        let text: String = row.try_get(0).unwrap();
        segments += serde_json::from_str::<Vec<serde_json::Value>>(&text)
            .unwrap()
            .len();
    }
    assert_eq!(segments, 40);
    assert_eq!(
        count("SELECT CAST(SUM(calls) AS BIGINT) FROM usage_daily").await,
        5
    );
    // 61..65 s calls bill 2 minutes each.
    assert_eq!(
        count("SELECT CAST(SUM(minutes) AS BIGINT) FROM usage_daily").await,
        10
    );
    assert_eq!(
        count("SELECT CAST(SUM(call_count) AS BIGINT) FROM contacts").await,
        5
    );
}

/// A projector applied one event at a time (the trait's default `apply_batch`): the reference
/// the in-memory batch folds must match.
struct EventByEvent(Arc<dyn Projector>);

#[async_trait]
impl Projector for EventByEvent {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn tables(&self) -> &'static [&'static str] {
        self.0.tables()
    }
    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<(), ProjectionError> {
        self.0.apply(tx, tables, stored, event).await
    }
}

/// Calls of every shape (late-learned numbers, outbound, hang-ups, analyses, recordings,
/// repeat callers, costs that sum as floats) with contacts edited by hand in between.
/// Outbound webhook deliveries in every shape the attempt log projects: started and
/// delivered in one append, retried then delivered, dead-lettered, skipped then reopened,
/// refused for good.
async fn fill_webhook_deliveries(store: &EventStore, org: uuid::Uuid) {
    use aggregates::process::{Process, ProcessCommand, RetryPolicy, StepPlan};
    let processes = AggregateRepository::<Process>::new(store.clone(), ());
    let policy = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    let at = chrono::Utc::now();
    let seen = |code: i64| serde_json::json!({"status_code": code, "latency_ms": code / 100, "response": format!("answer {code}")});
    let fail = |code: i64, retryable: bool| ProcessCommand::Fail {
        step: "deliver".into(),
        error: format!("HTTP {code}"),
        retryable,
        not_before: None,
        detail: seen(code),
        at,
    };
    let succeed = || ProcessCommand::Succeed {
        step: "deliver".into(),
        output: seen(200),
        at,
    };
    for n in 0..6 {
        let subject = format!("evt-{n}:ep1");
        let stream = Process::stream_id("webhook", &subject);
        let meta = CommandMeta::new("system:test").tenant(org);
        let begin = ProcessCommand::Begin {
            kind: "webhook".into(),
            subject: subject.clone(),
            organization_id: Some(org),
            input: serde_json::json!({"endpoint_id": "ep1",
                "event": {"id": format!("evt-{n}"), "type": "call.ended", "position": n}}),
            steps: vec![StepPlan::new("deliver", policy.clone())],
            at,
        };
        let script = match n {
            0 => vec![ProcessCommand::Batch(vec![begin, succeed()])],
            1 => vec![begin, fail(500, true), succeed()],
            2 => vec![
                ProcessCommand::Batch(vec![begin, fail(500, true)]),
                fail(503, true),
            ],
            3 => vec![
                begin,
                ProcessCommand::Skip {
                    step: "deliver".into(),
                    reason: "the endpoint is disabled".into(),
                    at,
                },
                ProcessCommand::Reopen {
                    step: "deliver".into(),
                    reason: "retried by an admin".into(),
                    at,
                },
                succeed(),
            ],
            4 => vec![ProcessCommand::Batch(vec![begin, fail(410, false)])],
            _ => vec![begin],
        };
        for command in script {
            processes.execute(&stream, command, &meta).await.unwrap();
        }
    }
}

/// Notification processes in every state the read model shows: sent, retrying, gave up,
/// skipped, and sending (attempt recorded, no outcome).
async fn fill_notifications(store: &EventStore, org: uuid::Uuid) {
    use aggregates::process::{Process, ProcessCommand, RetryPolicy, StepPlan};
    let processes = AggregateRepository::<Process>::new(store.clone(), ());
    let policy = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    let at = chrono::Utc::now();
    for n in 0..8 {
        let subject = format!("event-{n}:0:0");
        let stream = Process::stream_id("notification", &subject);
        let meta = CommandMeta::new("system:test").tenant(org);
        let run = |command| processes.execute(&stream, command, &meta);
        run(ProcessCommand::Begin {
            kind: "notification".into(),
            subject: subject.clone(),
            organization_id: Some(org),
            input: serde_json::json!({"call_id": format!("call-{n}"), "channel": "sms",
                "recipient": "+15550001111", "body": "hi", "reason": "function:takeMessage"}),
            steps: vec![StepPlan::new("send", policy.clone())],
            at,
        })
        .await
        .unwrap();
        let fail = || ProcessCommand::Fail {
            step: "send".into(),
            error: "503".into(),
            retryable: true,
            not_before: None,
            detail: serde_json::Value::Null,
            at,
        };
        let outcomes = match n {
            0 => vec![ProcessCommand::Succeed {
                step: "send".into(),
                output: serde_json::json!({"provider_message_id": "SM1"}),
                at,
            }],
            1 => vec![fail()],
            2 => vec![fail(), fail()],
            3 => vec![ProcessCommand::Skip {
                step: "send".into(),
                reason: "no number".into(),
                at,
            }],
            // Deferred by quiet hours, then sent with its provider's id.
            5 => vec![
                ProcessCommand::Postpone {
                    step: "send".into(),
                    until: at + chrono::Duration::hours(8),
                    reason: "quiet hours".into(),
                    at,
                },
                ProcessCommand::Attempt {
                    step: "send".into(),
                    at,
                },
                ProcessCommand::Succeed {
                    step: "send".into(),
                    output: serde_json::json!({"provider_message_id": "SM5"}),
                    at,
                },
            ],
            // Gave up, reopened by someone, failed once more: the last error stays.
            6 => vec![
                fail(),
                fail(),
                ProcessCommand::Reopen {
                    step: "send".into(),
                    reason: "retried by an admin".into(),
                    at,
                },
                fail(),
            ],
            // Attempted and sent in the one append that follows the start.
            7 => vec![ProcessCommand::Batch(vec![
                ProcessCommand::Attempt {
                    step: "send".into(),
                    at,
                },
                ProcessCommand::Succeed {
                    step: "send".into(),
                    output: serde_json::json!({"provider_message_id": "SM7"}),
                    at,
                },
            ])],
            _ => vec![ProcessCommand::Attempt {
                step: "send".into(),
                at,
            }],
        };
        for command in outcomes {
            run(command).await.unwrap();
        }
    }
    // Webhook deliveries: delivered, retrying after a 500, dead-lettered, reopened.
    let webhook_policy = callflex::processes::webhooks::policy(30_000);
    for n in 0..4 {
        let subject = format!("evt_{n}:we_1");
        let stream = Process::stream_id("webhook", &subject);
        let meta = CommandMeta::new("system:test").tenant(org);
        let begin = ProcessCommand::Begin {
            kind: "webhook".into(),
            subject: subject.clone(),
            organization_id: Some(org),
            input: serde_json::json!({"endpoint_id": "we_1", "event": {"id": format!("evt_{n}"),
                "type": "contact.created", "position": 10 + n}}),
            steps: vec![StepPlan::new("deliver", webhook_policy.clone())],
            at,
        };
        let failed = |retryable| ProcessCommand::Fail {
            step: "deliver".into(),
            error: "the receiver answered 500".into(),
            retryable,
            not_before: None,
            detail: serde_json::json!({"status_code": 500, "latency_ms": 12, "response": "down"}),
            at,
        };
        let delivered = ProcessCommand::Succeed {
            step: "deliver".into(),
            output: serde_json::json!({"status_code": 204, "latency_ms": 3, "response": ""}),
            at,
        };
        let reopen = ProcessCommand::Reopen {
            step: "deliver".into(),
            reason: "retried".into(),
            at,
        };
        let commands = match n {
            0 => vec![ProcessCommand::Batch(vec![begin, delivered])],
            1 => vec![begin, failed(true)],
            2 => vec![begin, failed(false)],
            _ => vec![begin, failed(false), reopen, delivered],
        };
        for command in commands {
            processes.execute(&stream, command, &meta).await.unwrap();
        }
    }
}

async fn fill_varied_log(store: &EventStore) {
    use aggregates::organization::{ContactSource, Organization, OrganizationCommand};
    let calls = AggregateRepository::<aggregates::call::Call>::new(store.clone(), ());
    let orgs = AggregateRepository::<Organization>::new(store.clone(), ());
    let org = uuid::Uuid::new_v4();
    let meta = CommandMeta::new("system:test").tenant(org);
    let org_id = org.to_string();
    let actor = "user:u1".to_string();
    orgs.execute(
        &org_id,
        OrganizationCommand::Create {
            id: org,
            name: "Varied".into(),
            owner_user_id: "u1".into(),
            owner_email: "owner@example.com".into(),
            actor: actor.clone(),
        },
        &meta,
    )
    .await
    .unwrap();
    fill_notifications(store, org).await;
    fill_webhook_deliveries(store, org).await;
    let at = chrono::Utc::now();
    for c in 0..30i64 {
        let phone = format!("+1555000{:04}", c % 5);
        let learned_late = c % 6 == 0;
        let ctx = CallContext {
            organization_id: org,
            vapi_call_id: format!("v{c}"),
            from_number: (!learned_late).then(|| phone.clone()),
            to_number: Some("+15559990000".into()),
            direction: if c % 4 == 1 {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            phone_number_id: None,
            assistant_id: None,
            provider_call_id: Some(format!("CA{c}")),
            started_at: Some(at + chrono::Duration::seconds(c)),
        };
        let full = CallContext {
            from_number: Some(phone.clone()),
            ..ctx.clone()
        };
        let id = format!("call-{c}");
        let mut commands = vec![CallCommand::Start {
            ctx: ctx.clone(),
            at,
        }];
        for s in 0..3 {
            commands.push(CallCommand::AddTranscript {
                ctx: if s == 1 { full.clone() } else { ctx.clone() },
                segment: TranscriptSegment {
                    key: format!("s{s}"),
                    role: if s % 2 == 0 { "assistant" } else { "user" }.into(),
                    text: format!("segment {s} of call {c}"),
                    at,
                    // NULL before numbers: a cached statement must take both.
                    seconds_from_start: (s != 0).then_some(s as f64),
                },
            });
        }
        if c % 3 == 0 {
            commands.push(CallCommand::HandleFunctionCall {
                ctx: full.clone(),
                invocation: FunctionInvocation {
                    tool_call_id: format!("t{c}"),
                    name: "scheduleCallback".into(),
                    arguments: serde_json::json!({"reason": "quote"}),
                    action: CallAction::CallbackScheduled {
                        phone_number: phone.clone(),
                        caller_name: None,
                        reason: "quote".into(),
                        preferred_time: None,
                        urgency: "normal".into(),
                    },
                    reply: "ok".into(),
                    at,
                    notifications: vec![],
                },
            });
        }
        if c % 5 == 2 {
            commands.push(CallCommand::Hang {
                ctx: full.clone(),
                at,
            });
        }
        commands.push(CallCommand::End {
            ctx: full.clone(),
            report: EndReport {
                ended_reason: Some("customer-ended-call".into()),
                started_at: Some(at + chrono::Duration::seconds(c)),
                ended_at: Some(at + chrono::Duration::seconds(61 + 7 * c)),
                duration_seconds: None,
                cost: Some(0.1 + c as f64 * 0.013),
                cost_breakdown: serde_json::json!({"llm": 0.01 * c as f64}),
                transcript: Some("full".into()),
                messages: serde_json::Value::Null,
                recording_url: None,
                stereo_recording_url: None,
                summary: (c % 2 == 0).then(|| format!("summary {c}")),
                structured_data: serde_json::Value::Null,
                success_evaluation: None,
                at,
            },
        });
        if c % 7 == 3 {
            commands.push(CallCommand::RecordRecording {
                ctx: full.clone(),
                url: format!("https://recordings.example/{c}.wav"),
                stereo_url: None,
                stored_path: None,
                at,
            });
        }
        if c % 4 == 0 {
            commands.push(CallCommand::Analyze {
                ctx: full.clone(),
                analysis: aggregates::call::CallAnalysis {
                    summary: format!("analysed {c}"),
                    call_type: Some("message".into()),
                    sentiment: Some("neutral".into()),
                    caller_name: Some(format!("Caller {c}")),
                    action_items: vec![format!("call back {c}")],
                    urgency: None,
                    source: None,
                    at,
                },
            });
        }
        for cmd in commands {
            calls.execute(&id, cmd, &meta).await.unwrap();
        }
        let edit = match c {
            5 => Some(OrganizationCommand::CreateContact {
                contact_id: "manual-1".into(),
                phone_number: "+15550000001".into(),
                name: Some("Pat".into()),
                email: None,
                notes: None,
                source: ContactSource::Manual,
                actor: actor.clone(),
            }),
            9 => Some(OrganizationCommand::UpdateContact {
                contact_id: "manual-1".into(),
                name: None,
                email: Some("pat@example.com".into()),
                notes: Some("prefers mornings".into()),
                actor: actor.clone(),
            }),
            15 => Some(OrganizationCommand::DeleteContact {
                contact_id: "manual-1".into(),
                actor: actor.clone(),
            }),
            17 => Some(OrganizationCommand::CreateContact {
                contact_id: "manual-2".into(),
                phone_number: "+15550000099".into(),
                name: Some("Sam".into()),
                email: None,
                notes: None,
                source: ContactSource::Manual,
                actor: actor.clone(),
            }),
            _ => None,
        };
        if let Some(edit) = edit {
            orgs.execute(&org_id, edit, &meta).await.unwrap();
        }
    }
}

async fn batched_projection_equals_event_by_event_projection(backend: &str) {
    let store = EventStore::open(&eventlog::testing::fresh_url(backend).await, 10)
        .await
        .unwrap();
    fill_varied_log(&store).await;
    for projector in projections::all() {
        let tables = projector.tables();
        // Small odd batches: calls straddle batch boundaries and edits fall mid-batch.
        let batched = ProjectorRunner::new(store.clone(), projector.clone()).batch_size(7);
        catch_up(&store, &batched).await;
        let folded = dump(&store, tables).await;
        assert!(folded.len() > tables.len() || projector.name() == "billing");

        assert_eq!(
            folded,
            event_by_event(&store, &projector).await,
            "{}: batch fold differs from event-by-event",
            projector.name()
        );
    }
}

/// Rebuilds `projector`'s tables through `apply` alone (the reference) and dumps them.
async fn event_by_event(store: &EventStore, projector: &Arc<dyn Projector>) -> Vec<String> {
    let reference = ProjectorRunner::new(store.clone(), Arc::new(EventByEvent(projector.clone())));
    projections::rebuild::rebuild(store, &reference.handle())
        .await
        .unwrap();
    dump(store, projector.tables()).await
}

/// The service's arrangement: every projector live at once, reading through one shared
/// feed, skipping batches they do not want, while the log is written. The read models must
/// equal an event-by-event build, and runners restarted from the (lazily) persisted
/// checkpoints must change nothing.
async fn live_runners_sharing_one_feed_match_an_event_by_event_build(backend: &str) {
    let store = EventStore::open(&eventlog::testing::fresh_url(backend).await, 20)
        .await
        .unwrap();
    let feed = Arc::new(projections::LogFeed::new(
        store.clone(),
        std::time::Duration::from_millis(5),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    for projector in projections::all() {
        let runner = ProjectorRunner::new(store.clone(), projector).feed(feed.clone());
        let mut stopped = stopped.clone();
        let (handle, task) = runner.spawn(async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
        handles.push(handle);
        tasks.push(task);
    }
    fill_varied_log(&store).await;
    let head = store.head().await.unwrap();
    let target = store.checkpoint_of(head).await.unwrap().unwrap();
    for handle in &handles {
        assert!(
            handle
                .wait_for(target, std::time::Duration::from_secs(60))
                .await,
            "{} never reached the head",
            handle.name()
        );
    }
    let _ = stop.send(true);
    for task in tasks {
        task.await.unwrap();
    }
    let mut live = Vec::new();
    for projector in projections::all() {
        live.push(dump(&store, projector.tables()).await);
    }
    for (projector, live) in projections::all().into_iter().zip(&live) {
        let restarted = ProjectorRunner::new(store.clone(), projector.clone());
        catch_up(&store, &restarted).await;
        assert_eq!(
            &dump(&store, projector.tables()).await,
            live,
            "{}: re-applying after a restart changed the read model",
            projector.name()
        );
        assert_eq!(
            &event_by_event(&store, &projector).await,
            live,
            "{}: live projection differs from event-by-event",
            projector.name()
        );
    }
}

/// A read is shared by callers at the same checkpoint that woke up before it was taken, and
/// never by one that may be looking for something newer (a later wake-up, or a poll).
async fn the_feed_shares_a_read_only_with_callers_it_can_answer(backend: &str) {
    let store = EventStore::open(&eventlog::testing::fresh_url(backend).await, 10)
        .await
        .unwrap();
    fill_log(&store, 1).await;
    let feed = projections::LogFeed::new(store.clone(), std::time::Duration::ZERO);
    let start = eventlog::Checkpoint::START;
    let seen = store.wake().generation();
    // On PostgreSQL another test's open transaction can hold the readable horizon back.
    let first = loop {
        let read = feed.read_after(start, 100, None).await.unwrap();
        if read.len() == 11 {
            break read;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let again = feed.read_after(start, 100, Some(seen)).await.unwrap();
    assert!(first.same_read(&again), "same wake-up: one read");
    // A caller further on (it applied part of the log already) gets the rest of that read.
    let inside = first[4].0.checkpoint();
    let rest = feed.read_after(inside, 100, Some(seen)).await.unwrap();
    assert!(
        first.same_read(&rest),
        "a checkpoint inside a read to the end: no new read"
    );
    let positions = |batch: &projections::feed::Batch| -> Vec<i64> {
        batch.iter().map(|(stored, _)| stored.position).collect()
    };
    assert_eq!(positions(&rest), positions(&first)[5..].to_vec());
    let polled = feed.read_after(start, 100, None).await.unwrap();
    assert!(!first.same_read(&polled), "a poll always reads");
    let orgs =
        AggregateRepository::<aggregates::organization::Organization>::new(store.clone(), ());
    let org = uuid::Uuid::new_v4();
    orgs.execute(
        &org.to_string(),
        aggregates::organization::OrganizationCommand::Create {
            id: org,
            name: "Later".into(),
            owner_user_id: "u1".into(),
            owner_email: "owner@example.com".into(),
            actor: "user:u1".into(),
        },
        &CommandMeta::new("system:test").tenant(org),
    )
    .await
    .unwrap();
    let woken = store.wake().generation();
    assert!(woken > seen);
    let fresh = feed.read_after(start, 100, Some(woken)).await.unwrap();
    assert!(!first.same_read(&fresh), "a later wake-up reads again");
}

/// While its stretch answers a spacing (the service under a burst) the feed spaces its reads
/// by it instead of its own interval; otherwise a caught-up feed reads again at once. Feed
/// logic only, so SQLite alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stretched_feed_spaces_its_reads_while_the_service_is_busy() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let store = EventStore::open(&eventlog::testing::fresh_url("sqlite").await, 10)
        .await
        .unwrap();
    fill_log(&store, 1).await;
    let feed = projections::LogFeed::new(store.clone(), Duration::ZERO);
    let busy = Arc::new(AtomicBool::new(false));
    let spacing = Duration::from_secs(2);
    let flag = busy.clone();
    feed.stretch(Arc::new(move || {
        flag.load(Ordering::SeqCst).then_some(spacing)
    }));
    let start = eventlog::Checkpoint::START;
    assert_eq!(feed.read_after(start, 100, None).await.unwrap().len(), 11);
    let quiet = Instant::now();
    feed.read_after(start, 100, None).await.unwrap();
    assert!(quiet.elapsed() < spacing / 2, "not busy: read at once");
    busy.store(true, Ordering::SeqCst);
    let read = Instant::now();
    feed.read_after(start, 100, None).await.unwrap();
    assert!(read.elapsed() >= spacing * 9 / 10, "busy: spaced");
}

/// A runner that comes back to a long log (a restart after an outage) reads bigger batches
/// once a batch comes back full, and live-sized ones again once it has caught up. Runner logic
/// only, so SQLite alone: on PostgreSQL another test's open transaction can hold the readable
/// horizon back and make batch sizes vary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_behind_catches_up_in_bigger_batches() {
    let store = EventStore::open(&eventlog::testing::fresh_url("sqlite").await, 10)
        .await
        .unwrap();
    fill_log(&store, 100).await;
    let runner = ProjectorRunner::new(store.clone(), Arc::new(projections::calls::CallsProjector));
    let first = runner.run_batch().await.unwrap();
    assert_eq!(first, 500, "a live-sized first batch");
    let second = runner.run_batch().await.unwrap();
    assert_eq!(second, 1_100 - 500, "behind: the rest in one batch");
    catch_up(&store, &runner).await;
}

crate::both_backends!(
    live_runners_sharing_one_feed_match_an_event_by_event_build,
    the_feed_shares_a_read_only_with_callers_it_can_answer,
    batched_projection_equals_event_by_event_projection,
    a_projector_killed_mid_batch_and_restarted_matches_an_uninterrupted_build,
    every_read_model_is_built_from_the_log,
);

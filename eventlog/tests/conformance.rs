//! One conformance suite, run against every backend of the event log.

use std::collections::BTreeSet;
use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use eventlog::side::{carrying, SideRow, SideValue, SideWrite};
use eventlog::testing::fresh_url;
use eventlog::{
    AggregateRepository, Append, Checkpoint, CommandMeta, EventStore, NewEvent, StoreError,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;

// ---- a tiny aggregate used to exercise the repository ----

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    value: i64,
    applied: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CounterEvent {
    Added { amount: i64 },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> String {
        "Added".into()
    }
    fn event_version(&self) -> String {
        "2".into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("the counter cannot go below zero")]
struct Negative;

impl Aggregate for Counter {
    const TYPE: &'static str = "counter";
    type Command = i64;
    type Event = CounterEvent;
    type Error = Negative;
    type Services = ();

    async fn handle(
        &mut self,
        amount: i64,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Negative> {
        if self.value + amount < 0 {
            return Err(Negative);
        }
        if amount != 0 {
            sink.write(CounterEvent::Added { amount }, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: CounterEvent) {
        let CounterEvent::Added { amount } = event;
        self.value += amount;
        self.applied += 1;
    }
}

fn event(n: i64) -> NewEvent {
    NewEvent {
        event_type: "Added".into(),
        event_version: 2,
        payload: serde_json::json!({ "Added": { "amount": n } }),
        metadata: CommandMeta::new("system:test").tenant("t1").for_event(0),
    }
}

fn append(id: &str, expected: i64, events: Vec<NewEvent>) -> Append {
    Append {
        aggregate_type: "counter".into(),
        aggregate_id: id.into(),
        expected_version: expected,
        events,
        idempotency_key: None,
        snapshot: None,
    }
}

async fn open(backend: &str) -> EventStore {
    EventStore::open(&fresh_url(backend).await, 20)
        .await
        .expect("open store")
}

/// Reads the log from the start until `expected` events arrived. On PostgreSQL the readable
/// mark is the oldest running transaction of the whole cluster, so a transaction of another
/// database (a parallel test) can hold it back for a moment: keep reading, never skip.
async fn read_everything(store: &EventStore, expected: usize) -> Vec<eventlog::StoredEvent> {
    let mut all = Vec::new();
    let mut cp = Checkpoint::START;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while all.len() < expected && tokio::time::Instant::now() < deadline {
        let batch = store.read_all(cp, 100).await.expect("read_all");
        match batch.last() {
            Some(last) => cp = last.checkpoint(),
            None => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
        all.extend(batch);
    }
    all
}

// ---- the suite ----

async fn appended_events_are_read_back_in_stream_order(backend: &str) {
    let store = open(backend).await;
    let r = store
        .append(append("a", 0, vec![event(1), event(2)]))
        .await
        .unwrap();
    assert_eq!(r.version, 2);
    assert!(r.last_position > r.first_position);
    store.append(append("a", 2, vec![event(3)])).await.unwrap();
    let events = store.read_stream("counter", "a", 0).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(events[2].payload["Added"]["amount"], 3);
    assert_eq!(events[0].metadata.actor, "system:test");
    assert_eq!(events[0].metadata.tenant_id.as_deref(), Some("t1"));
    assert_eq!(events[0].event_version, 2);
    let tail = store.read_stream("counter", "a", 2).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(store.head().await.unwrap(), events[2].position);
}

async fn a_stale_expected_version_is_a_conflict_and_writes_nothing(backend: &str) {
    let store = open(backend).await;
    store.append(append("a", 0, vec![event(1)])).await.unwrap();
    let err = store
        .append(append("a", 0, vec![event(9), event(9)]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { expected: 0, .. }),
        "{err:?}"
    );
    assert_eq!(store.read_stream("counter", "a", 0).await.unwrap().len(), 1);
}

async fn racing_writers_on_one_stream_never_both_win(backend: &str) {
    let store = open(backend).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.append(append("race", 0, vec![event(i)])).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(
        store.read_stream("counter", "race", 0).await.unwrap().len(),
        1
    );
}

async fn a_retried_append_with_the_same_key_returns_the_first_result(backend: &str) {
    let store = open(backend).await;
    let mut first = append("k", 0, vec![event(1)]);
    first.idempotency_key = Some("delivery-1".into());
    let a = store.append(first.clone()).await.unwrap();
    assert!(!a.duplicate);
    let b = store.append(first).await.unwrap();
    assert!(b.duplicate);
    assert_eq!(
        (a.first_position, a.last_position, a.version),
        (b.first_position, b.last_position, b.version)
    );
    assert_eq!(store.read_stream("counter", "k", 0).await.unwrap().len(), 1);
}

/// A replayed keyed append of more events than one lookup statement finds (64 + 1 + 5) still
/// answers with the first append's whole result.
async fn a_retried_keyed_append_of_many_events_returns_all_of_them(backend: &str) {
    let store = open(backend).await;
    let mut first = append("many-keyed", 0, (0..70).map(event).collect());
    first.idempotency_key = Some("bulk-1".into());
    let a = store.append(first.clone()).await.unwrap();
    let b = store.append(first).await.unwrap();
    assert!(b.duplicate);
    assert_eq!(
        (a.first_position, a.last_position, a.version, a.event_count),
        (b.first_position, b.last_position, b.version, b.event_count)
    );
    assert_eq!(b.event_count, 70);
}

async fn read_all_pages_through_every_stream_after_a_checkpoint(backend: &str) {
    let store = open(backend).await;
    for i in 0..30 {
        store
            .append(append(&format!("s{}", i % 3), i / 3, vec![event(i)]))
            .await
            .unwrap();
    }
    let all = read_everything(&store, 30).await;
    assert_eq!(all.len(), 30);
    let positions: Vec<i64> = all.iter().map(|e| e.position).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(
        positions, sorted,
        "single writer: commit order equals position order"
    );
    let after = store.read_all(all[9].checkpoint(), 1000).await.unwrap();
    assert_eq!(after.len(), 20);
    assert_eq!(after[0].position, all[10].position);
}

async fn sixteen_concurrent_writers_are_read_exactly_once_while_they_write(backend: &str) {
    let store = open(backend).await;
    let writers = 16;
    let per_writer = 40;
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cp = Checkpoint::START;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            while seen.len() < writers * per_writer && tokio::time::Instant::now() < deadline {
                let batch = store.read_all(cp, 37).await.expect("read_all");
                if let Some(last) = batch.last() {
                    assert!(last.checkpoint() > cp);
                    cp = last.checkpoint();
                } else {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                seen.extend(batch.into_iter().map(|e| e.position));
            }
            seen
        })
    };
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer as i64 {
                store
                    .append(append(&format!("w{w}"), i, vec![event(i)]))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = reader.await.unwrap();
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(
        seen.len(),
        writers * per_writer,
        "every event read exactly once"
    );
    assert_eq!(unique.len(), seen.len());
}

async fn snapshot_state_equals_replayed_state(backend: &str) {
    let store = open(backend).await;
    let repo = AggregateRepository::<Counter>::new(store.clone(), ()).with_snapshots(3, 1);
    let meta = CommandMeta::new("system:test");
    for amount in 1..=10 {
        repo.execute("c", amount, &meta).await.unwrap();
    }
    let (loaded, version) = repo.load("c").await.unwrap();
    let (replayed, replay_version) = repo.replay("c").await.unwrap();
    assert_eq!(version, 10);
    assert_eq!(replay_version, 10);
    assert_eq!(loaded, replayed);
    assert_eq!(
        loaded,
        Counter {
            value: 55,
            applied: 10
        }
    );
    let snap = eventlog::snapshot::load(store.pool(), "counter", "c")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snap.sequence, 9);
    let at_nine: Counter = serde_json::from_str(&snap.payload).unwrap();
    assert_eq!(
        at_nine,
        Counter {
            value: 45,
            applied: 9
        },
        "snapshot applied each event once"
    );
}

async fn a_domain_error_appends_nothing_and_a_no_op_appends_nothing(backend: &str) {
    let store = open(backend).await;
    let repo = AggregateRepository::<Counter>::new(store.clone(), ());
    let meta = CommandMeta::new("system:test");
    let err = repo.execute("c", -1, &meta).await.unwrap_err();
    assert!(matches!(err, eventlog::ExecuteError::Domain(Negative)));
    let done = repo.execute("c", 0, &meta).await.unwrap();
    assert!(done.events.is_empty());
    assert_eq!(store.head().await.unwrap(), 0);
}

async fn concurrent_commands_on_one_aggregate_are_all_applied_after_retries(backend: &str) {
    let store = open(backend).await;
    let repo =
        Arc::new(AggregateRepository::<Counter>::new(store.clone(), ()).with_snapshots(0, 1));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            repo.execute("hot", 1, &CommandMeta::new("system:test"))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let (state, version) = repo.load("hot").await.unwrap();
    assert_eq!((state.value, version), (4, 4));
}

async fn an_idempotent_command_is_applied_once(backend: &str) {
    let store = open(backend).await;
    let repo = AggregateRepository::<Counter>::new(store.clone(), ());
    let meta = CommandMeta::new("provider:stripe:evt_1").idempotency_key("stripe:evt_1");
    let first = repo.execute("c", 5, &meta).await.unwrap();
    let second = repo.execute("c", 5, &meta).await.unwrap();
    assert_eq!(first.events.len(), 1);
    assert!(second.events.is_empty());
    assert!(second.result.duplicate);
    assert_eq!(second.result.last_position, first.result.last_position);
    assert_eq!(second.state.value, 5);
}

async fn old_event_versions_are_upcast_before_the_aggregate_sees_them(backend: &str) {
    let store = open(backend).await;
    let mut old = event(0);
    old.event_version = 1;
    old.payload = serde_json::json!({ "Added": { "amt": 7 } });
    store.append(append("u", 0, vec![old])).await.unwrap();
    let upcasters = eventlog::Upcasters::new().register("Added", 1, |mut v| {
        if let Some(inner) = v.get_mut("Added").and_then(|a| a.as_object_mut()) {
            if let Some(amount) = inner.remove("amt") {
                inner.insert("amount".into(), amount);
            }
        }
        v
    });
    let repo = AggregateRepository::<Counter>::new(store, ()).with_upcasters(upcasters);
    let (state, _) = repo.load("u").await.unwrap();
    assert_eq!(state.value, 7);
}

async fn a_cached_aggregate_still_sees_events_written_by_another_process(backend: &str) {
    let store = open(backend).await;
    // Two repositories with separate caches stand for two service processes.
    let a = AggregateRepository::<Counter>::new(store.clone(), ());
    let b = AggregateRepository::<Counter>::new(store.clone(), ());
    let meta = CommandMeta::new("system:test");
    a.execute("shared", 1, &meta).await.unwrap();
    b.execute("shared", 10, &meta).await.unwrap();
    let done = a.execute("shared", 100, &meta).await.unwrap();
    assert_eq!(done.state.value, 111);
    assert_eq!(done.result.version, 3);
    assert_eq!(
        a.load("shared").await.unwrap(),
        b.replay("shared").await.unwrap()
    );
}

async fn a_refusal_decided_on_a_stale_cached_state_is_decided_again_on_fresh_state(backend: &str) {
    let store = open(backend).await;
    let a = AggregateRepository::<Counter>::new(store.clone(), ());
    let b = AggregateRepository::<Counter>::new(store.clone(), ());
    let meta = CommandMeta::new("system:test");
    a.execute("s", 1, &meta).await.unwrap();
    b.execute("s", 5, &meta).await.unwrap();
    // `a` still caches value 1, where -3 is refused; the log says 6.
    let done = a.execute("s", -3, &meta).await.unwrap();
    assert_eq!((done.state.value, done.result.version), (3, 3));
    // Without trusting the cache the answer is the same.
    let c = AggregateRepository::<Counter>::new(store.clone(), ())
        .trust_cache_for(std::time::Duration::ZERO);
    c.load("s").await.unwrap();
    b.execute("s", 10, &meta).await.unwrap();
    assert_eq!(c.execute("s", -13, &meta).await.unwrap().state.value, 0);
}

/// A stream taken for new (`assume_new`) that another process already wrote: the command is
/// decided again on the stream read fresh, and nothing the other process wrote is lost.
async fn a_stream_wrongly_assumed_new_is_decided_again_on_fresh_state(backend: &str) {
    let store = open(backend).await;
    let a = AggregateRepository::<Counter>::new(store.clone(), ());
    let b = AggregateRepository::<Counter>::new(store.clone(), ());
    let meta = CommandMeta::new("system:test");
    a.execute("s", 4, &meta).await.unwrap();
    a.execute("s", 3, &meta).await.unwrap();
    // `b` has never seen "s": it takes it for new, and a command decided on that state alone
    // would be refused (-5 on 0) or land at sequence 1, over the events already there.
    assert_eq!(b.assume_new("s"), (Counter::default(), 0));
    let done = b.execute("s", -5, &meta).await.unwrap();
    assert_eq!((done.state.value, done.result.version), (2, 3));
    let done = b.execute("s", 1, &meta).await.unwrap();
    assert_eq!((done.state.value, done.result.version), (3, 4));
    let (fresh, version) = AggregateRepository::<Counter>::new(store.clone(), ())
        .load("s")
        .await
        .unwrap();
    assert_eq!((fresh.value, version), (3, 4));
}

/// Many appends at once (on PostgreSQL they share group-commit statements): each gets the
/// answer it would have had alone, whatever else was in its batch.
async fn concurrent_appends_each_get_their_own_answer(backend: &str) {
    let store = open(backend).await;
    let mut used = append("used", 0, vec![event(1)]);
    used.idempotency_key = Some("used-key".into());
    let first = store.append(used.clone()).await.unwrap();

    enum Job {
        Fresh(Append),
        Race(Append),
        Retry(Append),
    }
    let mut jobs = Vec::new();
    for i in 0..40 {
        let events = (0..1 + i % 3).map(|n| event(n as i64)).collect();
        let mut a = append(&format!("s{i}"), 0, events);
        if i % 2 == 0 {
            a.idempotency_key = Some(format!("key-{i}"));
        }
        jobs.push(Job::Fresh(a));
        if i % 8 == 0 {
            jobs.push(Job::Race(append("race", 0, vec![event(i as i64)])));
            jobs.push(Job::Retry(used.clone()));
        }
    }
    let mut tasks = Vec::new();
    for job in jobs {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            match job {
                Job::Fresh(a) => (0, a.clone(), store.append(a).await),
                Job::Race(a) => (1, a.clone(), store.append(a).await),
                Job::Retry(a) => (2, a.clone(), store.append(a).await),
            }
        }));
    }
    let (mut race_wins, mut total_events) = (0, 1);
    for task in tasks {
        let (kind, sent, result) = task.await.unwrap();
        match (kind, result) {
            (0, Ok(r)) => {
                let n = sent.events.len() as i64;
                assert_eq!((r.version, r.event_count, r.duplicate), (n, n, false));
                let stream = store
                    .read_stream("counter", &sent.aggregate_id, 0)
                    .await
                    .unwrap();
                let positions: Vec<i64> = stream.iter().map(|e| e.position).collect();
                let sequences: Vec<i64> = stream.iter().map(|e| e.sequence).collect();
                assert_eq!(sequences, (1..=n).collect::<Vec<_>>());
                assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
                assert_eq!(
                    (r.first_position, r.last_position),
                    (positions[0], positions[positions.len() - 1])
                );
                if let Some(key) = &sent.idempotency_key {
                    let again = store.append(sent.clone()).await.unwrap();
                    assert!(again.duplicate, "{key} replayed");
                    assert_eq!(
                        (again.first_position, again.last_position),
                        (r.first_position, r.last_position)
                    );
                }
                total_events += n as usize;
            }
            (1, Ok(_)) => {
                race_wins += 1;
                total_events += 1;
            }
            (1, Err(StoreError::Conflict { .. })) => {}
            (2, Ok(r)) => {
                assert!(r.duplicate);
                assert_eq!(
                    (r.first_position, r.last_position, r.version),
                    (first.first_position, first.last_position, first.version)
                );
            }
            (kind, other) => panic!("job kind {kind}: unexpected {other:?}"),
        }
    }
    assert_eq!(race_wins, 1, "one racer on a stream wins");
    let all = read_everything(&store, total_events).await;
    assert_eq!(all.len(), total_events, "nothing lost, nothing doubled");
}

/// Callers that go away mid-append (a client hanging up) never leave the store unable to
/// write: whatever they held (group-commit slots, connections) is given back.
async fn appends_abandoned_midway_do_not_stall_later_ones(backend: &str) {
    let store = open(backend).await;
    for (round, micros) in [0, 200, 500, 1_000, 2_000, 5_000].into_iter().enumerate() {
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .append(append(&format!("gone-{round}-{i}"), 0, vec![event(i)]))
                    .await
            }));
        }
        // Some are cut off before they start, some mid-statement.
        tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
        for task in &tasks {
            task.abort();
        }
    }
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let a = append(&format!("after-{i}"), 0, vec![event(i)]);
            tokio::time::timeout(std::time::Duration::from_secs(20), store.append(a)).await
        }));
    }
    for task in tasks {
        let written = task.await.unwrap().expect("append did not stall");
        assert_eq!(written.unwrap().version, 1);
    }
}

fn by(actor: &str, tenant: &str, n: i64) -> NewEvent {
    NewEvent {
        metadata: CommandMeta::new(actor).tenant(tenant).for_event(0),
        ..event(n)
    }
}

async fn a_tenants_activity_is_filtered_by_actor_kind_type_and_time(backend: &str) {
    let store = open(backend).await;
    let appends = [
        ("a", vec![by("user:u1", "t1", 1), by("user:u1", "t1", 2)]),
        ("b", vec![by("provider:vapi:k1", "t1", 3)]),
        ("c", vec![by("user:u10", "t1", 4)]),
        ("d", vec![by("user:u1", "t2", 5)]),
    ];
    for (id, events) in appends {
        store.append(append(id, 0, events)).await.unwrap();
    }
    let amounts = |events: Vec<eventlog::StoredEvent>| -> Vec<i64> {
        events
            .iter()
            .map(|e| e.payload["Added"]["amount"].as_i64().unwrap())
            .collect()
    };
    let read = |filter: eventlog::ActivityFilter, after: i64, limit: i64| {
        let store = store.clone();
        async move {
            store
                .read_activity("t1", &filter, after, limit)
                .await
                .unwrap()
        }
    };
    let all = read(Default::default(), 0, 100).await;
    assert_eq!(
        amounts(all.clone()),
        vec![1, 2, 3, 4],
        "another tenant's events never show"
    );
    // An actor matches exactly or as a prefix up to a colon: `user:u1` is not `user:u10`.
    let actor = |a: &str| eventlog::ActivityFilter {
        actor: Some(a.into()),
        ..Default::default()
    };
    assert_eq!(amounts(read(actor("user:u1"), 0, 100).await), vec![1, 2]);
    assert_eq!(amounts(read(actor("provider:vapi"), 0, 100).await), vec![3]);
    assert_eq!(
        amounts(read(actor("provider:vap"), 0, 100).await),
        Vec::<i64>::new()
    );
    let kind = eventlog::ActivityFilter {
        aggregate_type: Some("other".into()),
        ..Default::default()
    };
    assert!(read(kind, 0, 100).await.is_empty());
    let typed = eventlog::ActivityFilter {
        aggregate_type: Some("counter".into()),
        event_type: Some("Added".into()),
        ..Default::default()
    };
    assert_eq!(read(typed, 0, 100).await.len(), 4);
    // Keyset pages by position, and the time range is half-open.
    let page = read(Default::default(), all[1].position, 1).await;
    assert_eq!(amounts(page), vec![3]);
    let before = eventlog::ActivityFilter {
        to_ms: Some(all[0].recorded_at),
        ..Default::default()
    };
    assert!(read(before, 0, 100).await.is_empty());
    let from = eventlog::ActivityFilter {
        from_ms: Some(all[0].recorded_at),
        ..Default::default()
    };
    assert_eq!(read(from, 0, 100).await.len(), 4);
}

fn side(key: &str) -> SideRow {
    SideRow {
        table: "side_rows",
        columns: &["k", "n"],
        values: vec![SideValue::Text(Some(key.into())), SideValue::Int(Some(1))],
        write: SideWrite::Insert {
            on_conflict: "ON CONFLICT (k) DO NOTHING",
        },
    }
}

async fn side_keys(store: &EventStore) -> Vec<String> {
    side_values(store)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Appends to streams `many{i}` all at once (shared statements on PostgreSQL), each
/// carrying its side row; every one is written.
async fn appends_carrying(
    store: &EventStore,
    streams: std::ops::Range<i64>,
    row: impl Fn(i64) -> SideRow,
) {
    let mut tasks = Vec::new();
    for i in streams {
        let store = store.clone();
        tasks.push(tokio::spawn(carrying(row(i), async move {
            store
                .append(append(&format!("many{i}"), 0, vec![event(i)]))
                .await
        })));
    }
    for task in tasks {
        let (result, written) = task.await.unwrap();
        result.unwrap();
        assert!(written);
    }
}

/// A store with an empty `side_rows (k, n)` table.
async fn open_with_side_rows(backend: &str) -> EventStore {
    let store = open(backend).await;
    sqlx::query("CREATE TABLE side_rows (k TEXT PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    store
}

/// An append with a snapshot: it goes through a transaction, not a shared statement.
fn append_with_snapshot(id: &str) -> Append {
    let mut snap = append(id, 0, vec![event(1)]);
    snap.snapshot = Some(eventlog::snapshot::Snapshot {
        sequence: 1,
        schema_version: 1,
        payload: "{}".into(),
    });
    snap
}

/// A side row commits with the first append in its scope that commits, through every write
/// path (alone, shared statements, a transaction with a snapshot), and never with an append
/// that wrote nothing (a conflict, a used idempotency key).
async fn a_side_row_commits_with_the_append_that_carries_it(backend: &str) {
    let store = open_with_side_rows(backend).await;
    let mut used = append("used", 0, vec![event(1)]);
    used.idempotency_key = Some("used-key".into());
    store.append(used.clone()).await.unwrap();

    // A conflict and a used key write nothing, so the row waits for the append that commits.
    let store2 = store.clone();
    let ((), written) = carrying(side("a"), async move {
        assert!(store2
            .append(append("used", 0, vec![event(2)]))
            .await
            .is_err());
        assert!(store2.append(used).await.unwrap().duplicate);
        assert!(side_keys(&store2).await.is_empty(), "nothing written yet");
        store2.append(append("a", 0, vec![event(1)])).await.unwrap();
        store2.append(append("a", 1, vec![event(2)])).await.unwrap();
    })
    .await;
    assert!(written);
    assert_eq!(side_keys(&store).await, ["a"]);

    // Only a used key: not written, the caller writes it.
    let store2 = store.clone();
    let mut again = append("used", 0, vec![event(1)]);
    again.idempotency_key = Some("used-key".into());
    let ((), written) = carrying(side("b"), async move {
        assert!(store2.append(again).await.unwrap().duplicate);
    })
    .await;
    assert!(!written);

    // Through a transaction with a snapshot.
    let snap = append_with_snapshot("snap");
    let store2 = store.clone();
    let (result, written) = carrying(side("c"), async move { store2.append(snap).await }).await;
    result.unwrap();
    assert!(written);

    // Many at once (shared statements on PostgreSQL), two scopes carrying the same row.
    appends_carrying(&store, 0..40, |i| {
        side(&if i == 39 {
            "d00".to_string()
        } else {
            format!("d{i:02}")
        })
    })
    .await;
    let keys = side_keys(&store).await;
    let expected: Vec<String> = ["a", "c"]
        .iter()
        .map(|k| k.to_string())
        .chain((0..39).map(|i| format!("d{i:02}")))
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(keys, expected, "one row each, the repeated key once");
}

fn side_update(key: &str, n: i64) -> SideRow {
    SideRow {
        table: "side_rows",
        columns: &["k", "n"],
        values: vec![SideValue::Text(Some(key.into())), SideValue::Int(Some(n))],
        write: SideWrite::Update { key: &["k"] },
    }
}

async fn side_values(store: &EventStore) -> Vec<(String, i64)> {
    let rows = sqlx::query("SELECT k, n FROM side_rows ORDER BY k")
        .fetch_all(store.pool())
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap()))
        .collect()
}

/// An update side row changes its row in the commit of the append that carries it (alone,
/// in shared statements, in a transaction with a snapshot), and not when the append fails.
async fn an_update_side_row_changes_its_row_with_the_append(backend: &str) {
    let store = open_with_side_rows(backend).await;
    for i in 0..20 {
        sqlx::query("INSERT INTO side_rows (k, n) VALUES ($1, 0)")
            .bind(format!("u{i:02}"))
            .execute(store.pool())
            .await
            .unwrap();
    }
    store
        .append(append("taken", 0, vec![event(1)]))
        .await
        .unwrap();

    // A conflict changes nothing; the append that commits carries the change.
    let store2 = store.clone();
    let ((), written) = carrying(side_update("u00", 7), async move {
        assert!(store2
            .append(append("taken", 0, vec![event(2)]))
            .await
            .is_err());
        assert_eq!(side_values(&store2).await[0], ("u00".to_string(), 0));
        store2
            .append(append("alone", 0, vec![event(1)]))
            .await
            .unwrap();
    })
    .await;
    assert!(written);
    assert_eq!(side_values(&store).await[0], ("u00".to_string(), 7));

    // Through a transaction with a snapshot.
    let snap = append_with_snapshot("snap");
    let store2 = store.clone();
    let (result, written) = carrying(
        side_update("u01", 8),
        async move { store2.append(snap).await },
    )
    .await;
    result.unwrap();
    assert!(written);

    // Many at once (shared statements on PostgreSQL), mixed with insert rows.
    appends_carrying(&store, 2..20, |i| {
        if i % 5 == 0 {
            side(&format!("v{i:02}"))
        } else {
            side_update(&format!("u{i:02}"), i + 100)
        }
    })
    .await;
    let expected: Vec<(String, i64)> = (0..20)
        .map(|i| {
            let n = match i {
                0 => 7,
                1 => 8,
                i if i % 5 == 0 => 0,
                i => i + 100,
            };
            (format!("u{i:02}"), n)
        })
        .chain([5, 10, 15].map(|i| (format!("v{i:02}"), 1)))
        .collect();
    assert_eq!(side_values(&store).await, expected);
}

/// A side row written on its own is durable when `write_side` returns, alone or among
/// concurrent appends and other side rows (on PostgreSQL they share statements), and a row
/// refused by its table fails only its own write.
async fn a_side_row_written_alone_commits_among_concurrent_appends(backend: &str) {
    let store = open_with_side_rows(backend).await;
    store.write_side(side("alone")).await.unwrap();
    assert_eq!(side_keys(&store).await, vec!["alone".to_string()]);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                store
                    .write_side(side(&format!("s{i:02}")))
                    .await
                    .map(|_| ())
            } else {
                store
                    .append(append(&format!("beside{i}"), 0, vec![event(i)]))
                    .await
                    .map(|_| ())
            }
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let mut expected: Vec<String> = (0..40)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("s{i:02}"))
        .collect();
    expected.insert(0, "alone".into());
    assert_eq!(side_keys(&store).await, expected);
    for i in (1..40).step_by(2) {
        let stream = store
            .read_stream("counter", &format!("beside{i}"), 0)
            .await
            .unwrap();
        assert_eq!(stream.len(), 1, "beside{i}");
    }
    // A row its table refuses (NULL in a NOT NULL column) fails its own write only.
    let mut refused = side("refused");
    refused.values[1] = SideValue::Int(None);
    let (bad, good) = tokio::join!(
        store.write_side(refused),
        store.append(append("after", 0, vec![event(1)]))
    );
    assert!(bad.is_err());
    good.unwrap();
    assert!(!side_keys(&store).await.contains(&"refused".to_string()));
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        super::$name(stringify!($backend)).await;
                    }
                };
            }
            case!(appended_events_are_read_back_in_stream_order);
            case!(a_stale_expected_version_is_a_conflict_and_writes_nothing);
            case!(racing_writers_on_one_stream_never_both_win);
            case!(a_retried_append_with_the_same_key_returns_the_first_result);
            case!(a_retried_keyed_append_of_many_events_returns_all_of_them);
            case!(read_all_pages_through_every_stream_after_a_checkpoint);
            case!(sixteen_concurrent_writers_are_read_exactly_once_while_they_write);
            case!(snapshot_state_equals_replayed_state);
            case!(a_domain_error_appends_nothing_and_a_no_op_appends_nothing);
            case!(concurrent_commands_on_one_aggregate_are_all_applied_after_retries);
            case!(an_idempotent_command_is_applied_once);
            case!(old_event_versions_are_upcast_before_the_aggregate_sees_them);
            case!(a_cached_aggregate_still_sees_events_written_by_another_process);
            case!(a_refusal_decided_on_a_stale_cached_state_is_decided_again_on_fresh_state);
            case!(a_stream_wrongly_assumed_new_is_decided_again_on_fresh_state);
            case!(concurrent_appends_each_get_their_own_answer);
            case!(appends_abandoned_midway_do_not_stall_later_ones);
            case!(a_tenants_activity_is_filtered_by_actor_kind_type_and_time);
            case!(a_side_row_commits_with_the_append_that_carries_it);
            case!(an_update_side_row_changes_its_row_with_the_append);
            case!(a_side_row_written_alone_commits_among_concurrent_appends);
        }
    };
}

conformance!(postgres);
conformance!(sqlite);

/// PostgreSQL only: a transaction that took a lower position but commits later is not skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_late_commit_below_a_read_position_is_never_skipped() {
    use sqlx::Executor;
    let store = open("postgres").await;
    // Writer A takes position 1 and stays open.
    let mut held = store.pool().begin().await.unwrap();
    held.execute(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, event_id, correlation_id, actor, recorded_at) VALUES ('counter', 'held', 1, \
         'Added', 2, '{\"Added\":{\"amount\":1}}', 'held-1', 'c', 'system:test', 0)",
    )
    .await
    .unwrap();
    // Writers B.. commit positions 2..=6.
    for i in 0..5 {
        store
            .append(append(&format!("b{i}"), 0, vec![event(i)]))
            .await
            .unwrap();
    }
    assert_eq!(store.head().await.unwrap(), 6);
    // A reader now must not move past A's open transaction.
    let early = store.read_all(Checkpoint::START, 100).await.unwrap();
    assert!(
        early.is_empty(),
        "nothing is readable while an older writer is open: {early:?}"
    );
    held.commit().await.unwrap();
    let all = read_everything(&store, 6).await;
    let positions: Vec<i64> = all.iter().map(|e| e.position).collect();
    assert_eq!(positions, vec![1, 2, 3, 4, 5, 6]);
}

/// PostgreSQL only: appends that arrive while the writer slots are busy share statements, and
/// each still reads back as its own stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_appends_share_statements() {
    let store = open("postgres").await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut a = append(&format!("g{i}"), 0, vec![event(i), event(i + 1)]);
            a.idempotency_key = Some(format!("group-{i}"));
            store.append(a).await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!((r.version, r.event_count), (2, 2));
        // Concurrent statements draw positions from one identity, so they interleave.
        assert!(r.last_position > r.first_position, "{r:?}");
    }
    let stats = store
        .group_commit_stats()
        .expect("PostgreSQL groups appends");
    assert_eq!(stats.appends, 64);
    assert_eq!(stats.regrouped, 0, "{stats:?}");
    assert!(stats.shared_statements > 0, "{stats:?}");
    assert!(stats.statements < stats.appends, "{stats:?}");
    assert_eq!(read_everything(&store, 128).await.len(), 128);
}

/// Polls `future` once without a runtime waker (it is awaited properly afterwards).
fn poll_once<F: std::future::Future + ?Sized>(
    future: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

type Pending = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<eventlog::AppendResult, eventlog::StoreError>>>,
>;

/// PostgreSQL only: appends that arrive while a leader lets the ready tasks run join its
/// statement, even with writer slots free (before, the first four each led one).
#[tokio::test(flavor = "current_thread")]
async fn postgres_appends_arriving_together_share_one_statement() {
    let store = open("postgres").await;
    let mut appends: Vec<Pending> = (0..20)
        .map(|i| {
            let store = store.clone();
            Box::pin(async move {
                store
                    .append(append(&format!("t{i}"), 0, vec![event(i)]))
                    .await
            }) as Pending
        })
        .collect();
    for a in &mut appends {
        assert!(poll_once(a.as_mut()).is_pending());
    }
    for a in appends {
        assert_eq!(a.await.unwrap().version, 1);
    }
    let stats = store
        .group_commit_stats()
        .expect("PostgreSQL groups appends");
    assert_eq!((stats.appends, stats.statements), (20, 1), "{stats:?}");
    assert_eq!(read_everything(&store, 20).await.len(), 20);
    // Alone on a quiet runtime, an append goes out at once in a statement of its own.
    store
        .append(append("alone", 0, vec![event(1)]))
        .await
        .unwrap();
    let stats = store.group_commit_stats().unwrap();
    assert_eq!((stats.appends, stats.statements), (21, 2), "{stats:?}");
}

/// PostgreSQL only: a leader cancelled while it gathers (its request went away) leaves the
/// appends that joined it to be written all the same.
#[tokio::test(flavor = "current_thread")]
async fn postgres_a_leader_cancelled_while_gathering_strands_nobody() {
    let store = open("postgres").await;
    let pending = |id: String| -> Pending {
        let store = store.clone();
        Box::pin(async move { store.append(append(&id, 0, vec![event(1)])).await })
    };
    let mut leader = pending("leader".into());
    assert!(poll_once(leader.as_mut()).is_pending());
    let mut followers: Vec<Pending> = (0..5).map(|i| pending(format!("f{i}"))).collect();
    for f in &mut followers {
        assert!(poll_once(f.as_mut()).is_pending());
    }
    drop(leader);
    for f in followers {
        assert_eq!(f.await.unwrap().version, 1);
    }
    let events = read_everything(&store, 5).await;
    assert_eq!(events.len(), 5);
    assert!(events.iter().all(|e| e.aggregate_id.starts_with('f')));
    // The slot it held was given back: the next append still commits.
    store
        .append(append("after", 0, vec![event(1)]))
        .await
        .unwrap();
    assert_eq!(read_everything(&store, 6).await.len(), 6);
}

/// PostgreSQL only: connections are not pinged on every checkout (a round trip before every
/// statement), so one that died while idle (a server restart, an idle timeout) must still
/// never be handed out: after a moment idle it is pinged, found dead and replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_connections_killed_while_idle_are_replaced() {
    use sqlx::Executor;
    let store = open("postgres").await;
    // Several pooled connections, all idle afterwards.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(append(&format!("k{i}"), 0, vec![event(i)]))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Another session kills every backend of this database but its own.
    let url = fresh_url("postgres").await;
    let killer = EventStore::open(&url, 1).await.unwrap();
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let killed = killer
        .pool()
        .fetch_all(
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&database),
        )
        .await
        .unwrap();
    assert!(!killed.is_empty(), "no pooled connection to kill");
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    // Every write and read now gets a live connection.
    for i in 0..8 {
        store
            .append(append(&format!("after{i}"), 0, vec![event(i)]))
            .await
            .expect("a dead idle connection was handed out");
    }
    assert_eq!(read_everything(&store, 16).await.len(), 16);
}

/// PostgreSQL only: single writes through the relaxed pool commit without waiting for the
/// WAL flush (one round trip, not a transaction of three); everything else still waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_only_the_relaxed_pool_skips_the_flush() {
    let store = open("postgres").await;
    let setting = |pool: sqlx::AnyPool| async move {
        let row = sqlx::query("SELECT current_setting('synchronous_commit')::text")
            .fetch_one(&pool)
            .await
            .unwrap();
        row.get::<String, _>(0)
    };
    assert_eq!(setting(store.relaxed_pool().clone()).await, "off");
    assert_eq!(setting(store.pool().clone()).await, "on");
    assert_eq!(setting(store.write_pool().clone()).await, "on");
}

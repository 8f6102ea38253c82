//! `GET /api/v1/events/stream`: the organization's live feed as server-sent events (see
//! `crate::live`). Each event's SSE `id` is its log position: a client reconnecting with
//! `Last-Event-ID` (or `?after=`) gets everything after it, once. A comment line every 15 s
//! keeps proxies from closing an idle stream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use poem::web::sse::Event;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::EventStream;
use poem_openapi::types::ToJSON;
use poem_openapi::{Object, OpenApi};
use tokio::sync::broadcast::error::RecvError;

use crate::http::error::ApiError;
use crate::http::query::principal::OrganizationHeader;
use crate::http::query::{begin, Lenient};
use crate::http::ApiTags;
use crate::live::{feed_event, FeedEvent, FEED_EVENT_TYPES};
use crate::state::AppState;

/// How many backlog events one read takes.
const BACKLOG_PAGE: i64 = 200;

/// One event of the live feed.
#[derive(Debug, Clone, Object)]
pub struct LiveEvent {
    /// The log position (also the SSE `id`: send it back as `Last-Event-ID` to resume).
    pub position: i64,
    /// `call.started`, `call.status`, `transcript.segment`, `call.action`, `call.ended`,
    /// `call.processed`, `contact.created`, `contact.updated`, `contact.deleted`; `resync`
    /// when this client fell too far behind: reconnect with its `position` as
    /// `Last-Event-ID`.
    #[oai(rename = "type")]
    pub kind: String,
    pub at: DateTime<Utc>,
    pub data: serde_json::Value,
}

impl From<&FeedEvent> for LiveEvent {
    fn from(e: &FeedEvent) -> Self {
        LiveEvent {
            position: e.position,
            kind: e.kind.to_string(),
            at: e.at,
            data: e.data.clone(),
        }
    }
}

enum Phase {
    /// Reading the organization's events after `last` up to `safe` from the log.
    Backlog,
    /// Following the broadcast.
    Live,
    Closed,
}

struct Feed {
    state: Arc<AppState>,
    organization: String,
    last: i64,
    /// The hub's position when this client subscribed: the backlog ends, the broadcast
    /// begins, here.
    safe: i64,
    queue: VecDeque<LiveEvent>,
    rx: tokio::sync::broadcast::Receiver<Arc<FeedEvent>>,
    phase: Phase,
    _connected: Connected,
}

/// Counts a connected client in the `sse_clients` gauge for as long as its feed lives.
struct Connected;

impl Connected {
    fn new() -> Self {
        metrics::gauge!("sse_clients").increment(1.0);
        Connected
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        metrics::gauge!("sse_clients").decrement(1.0);
    }
}

impl Feed {
    /// Reads one page of backlog into the queue.
    async fn read_backlog(&mut self) -> Result<(), eventlog::StoreError> {
        let page = self
            .state
            .store
            .read_tenant(
                &self.organization,
                &FEED_EVENT_TYPES,
                i64::MIN,
                i64::MAX,
                self.last,
                BACKLOG_PAGE,
            )
            .await?;
        let complete = (page.len() as i64) < BACKLOG_PAGE;
        for stored in &page {
            if stored.position > self.safe {
                break;
            }
            let payload = stored.payload.to_string();
            if let Ok(event) = projections::DomainEvent::decode_payload(stored, &payload) {
                if let Some(feed) = feed_event(stored, &event) {
                    self.queue.push_back(LiveEvent::from(&feed));
                }
            }
            self.last = stored.position;
        }
        let past_safe = page.last().is_some_and(|s| s.position > self.safe);
        if complete || past_safe {
            self.last = self.last.max(self.safe);
            self.phase = Phase::Live;
        }
        Ok(())
    }

    async fn next(mut self) -> Option<(LiveEvent, Self)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some((event, self));
            }
            match self.phase {
                Phase::Closed => return None,
                Phase::Backlog => {
                    if let Err(err) = self.read_backlog().await {
                        tracing::warn!(error = %err, "live feed backlog read failed");
                        return None;
                    }
                }
                Phase::Live => match self.rx.recv().await {
                    Ok(event) => {
                        if event.organization_id == self.organization && event.position > self.last
                        {
                            self.last = event.position;
                            return Some((LiveEvent::from(event.as_ref()), self));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        self.phase = Phase::Closed;
                        let resync = LiveEvent {
                            position: self.last,
                            kind: "resync".into(),
                            at: Utc::now(),
                            data: serde_json::json!({
                                "resume_after": self.last,
                                "reason": format!(
                                    "this client fell {missed} events behind; reconnect with \
                                     Last-Event-ID: {}", self.last),
                            }),
                        };
                        return Some((resync, self));
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

pub struct LiveFeedApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Calls")]
impl LiveFeedApi {
    /// The organization's live feed (server-sent events): calls starting, changing status,
    /// transcript segments as they are final, tool calls, calls ending and processed,
    /// contacts. Resume after a disconnect with `Last-Event-ID` (or `after`): every event
    /// after it arrives once. A comment every 15 s keeps the connection alive; a client that
    /// falls too far behind gets `resync` and is disconnected.
    #[oai(
        path = "/events/stream",
        method = "get",
        operation_id = "stream_events"
    )]
    async fn stream(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// Resume after this log position (as `Last-Event-ID`; the header wins).
        after: Query<Option<Lenient<i64>>>,
        /// The `id` of the last event received (the browser sends it on reconnect).
        #[oai(name = "Last-Event-ID")]
        last_event_id: Header<Option<String>>,
    ) -> Result<EventStream<BoxStream<'static, LiveEvent>>, ApiError> {
        let scope = begin(&state, req, &auth, &["after"], None).await?;
        let hub = state.live.get().ok_or_else(|| {
            ApiError::unavailable("live_feed_unavailable", "the live feed is not running")
        })?;
        let from_header = match last_event_id.0.as_deref().map(str::trim) {
            Some(id) => Some(id.parse::<i64>().map_err(|_| {
                ApiError::bad_request("invalid_parameter", "Last-Event-ID must be a log position")
            })?),
            None => None,
        };
        let from_query = after.0.map(|a| a.get("after")).transpose()?;
        // Subscribe first, then note the hub's position: the broadcast has everything after.
        let organization = scope.org();
        let rx = hub.subscribe(&organization);
        let safe = hub.position();
        let start = from_header.or(from_query).unwrap_or(safe).max(0);
        let feed = Feed {
            state: state.0.clone(),
            organization,
            last: start,
            safe,
            queue: VecDeque::new(),
            rx,
            phase: if start >= safe {
                Phase::Live
            } else {
                Phase::Backlog
            },
            _connected: Connected::new(),
        };
        let stream = futures::stream::unfold(feed, Feed::next).boxed();
        Ok(EventStream::new(stream)
            .keep_alive(Duration::from_secs(15))
            .to_event(|e: LiveEvent| {
                Event::message(e.to_json_string())
                    .event_type(e.kind.clone())
                    .id(e.position.to_string())
            }))
    }
}

//! One integration-test binary (links once). Every scenario runs against both store
//! backends: PostgreSQL (127.0.0.1:5432, never skipped) and embedded SQLite.

mod accounts;
mod analysts;
mod audit;
mod billing;
mod billing_crash;
mod child;
mod helpers;
mod hostile;
mod inbound_integrations;
mod limits;
mod live_feed;
mod newcomer;
mod onboarding;
mod operators;
mod outbound;
mod outbound_webhooks;
mod overlap;
mod process_crash;
mod processes;
mod projectors;
mod provisioning;
mod query;
mod redeliver;
mod schedules;
mod secrets;
mod shutdown;
mod standby;
mod stripe_stub;
mod stubs;
mod telephony_stub;
mod webhook_crash;
mod webhook_credentials;
mod webhooks;

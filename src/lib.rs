//! CallFlex: the backend of an AI phone receptionist, as an event-sourced CQRS service.
//!
//! # Layout
//! - [`app`]: the use cases, written once for HTTP, webhooks and processes; [`app::AppError`].
//! - [`config`]: settings from the environment (embedded SQLite by default, no keys needed).
//! - [`startup`]: `Application::build(config)`: store, projectors, HTTP server (port 0 ok).
//! - [`state`]: what handlers share: the store, one repository per aggregate, projectors.
//! - [`auth`]: password hashing, tokens, password rules, the sign-in rate limiter.
//! - [`http`]: the only module that knows HTTP: poem-openapi APIs, errors, raw bodies.
//! - [`webhooks`]: provider deliveries → verified → deduplicated → aggregate commands.
//! - [`cli`]: `serve` (default), `migrate`, `rebuild`, `simulate`, `openapi`.
//! - [`simulate`]: the VAPI call generator used by `callflex simulate` and the benchmark.
//!
//! The crates below: `aggregates` (pure domain), `eventlog` (the log), `projections` (read
//! models), `wire` (provider formats and signatures).

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod foreground;
pub mod http;
pub mod live;
pub mod plans;
pub mod processes;
pub mod providers;
pub mod recordings;
pub mod schedules;
pub mod secrets;
pub mod simulate;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod templates;
pub mod webhooks;

//! Provider wire formats for CallFlex: webhook signature verification and payload
//! normalization for VAPI, Twilio and Stripe. Pure functions, no I/O, no clocks (callers pass
//! `now`), no panics on hostile input.
//!
//! # Layout
//!
//! * [`signature`]: constant-time verifiers (`vapi_shared_secret`, `vapi_hmac`,
//!   `vapi_body_hmac`, `twilio`, `twilio_json`, `stripe`) returning [`SignatureError`], plus
//!   builders that produce valid signatures for tests and the simulator.
//! * [`vapi`]: [`parse_vapi`] normalizes the `{"message": ...}` envelope and the older flat shape
//!   into [`VapiMessage`]; reply builders for tool calls, function calls, assistant requests.
//! * [`twilio`]: form-encoded status callbacks and inbound SMS.
//! * [`stripe`]: [`parse_stripe_event`] for checkout, subscription and invoice events across
//!   pre- and post-`2025-03-31.basil` shapes.
//! * [`llm`]: OpenAI-compatible chat completion requests and the validated call-data
//!   extraction the post-call processing asks for.
//! * [`surrogates`]: rewrites the unpaired UTF-16 surrogate escapes JavaScript senders emit
//!   (an emoji cut in half) so such a body is parsed instead of refused.
//! * [`WireError`]: a body that is authentic but unusable.
//!
//! Test fixtures live in `wire/fixtures/` (copies of `shared/fixtures`, provenance in
//! `shared/fixtures/SOURCES.md`).

mod error;
mod lenient;
pub mod llm;
pub mod signature;
pub mod standard_webhooks;
pub mod stripe;
pub mod surrogates;
pub mod twilio;
pub mod vapi;

pub use error::WireError;
pub use signature::SignatureError;
pub use stripe::{parse_stripe_event, Invoice, StripeChange, StripeEvent};
pub use twilio::{parse_inbound_sms, parse_status_callback, TwilioSms, TwilioStatus};
pub use vapi::{parse_vapi, CallInfo, EndOfCall, ToolCall, VapiKind, VapiMessage};

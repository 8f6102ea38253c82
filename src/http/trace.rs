//! Every request runs under one correlation id: the trace id of an incoming W3C
//! `traceparent`, else a new one. The commands it issues inherit it (see
//! `eventlog::context`), so its events share it with the request's span and logs; the answer
//! carries `traceparent` with that trace id, so a client can find its request's events in
//! the audit trail (`correlation_id`).

use std::sync::Arc;

use poem::{Endpoint, Request, Response};
use tracing::Instrument;
use uuid::Uuid;

/// The trace id of a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, neither id all
/// zeros), as a UUID.
pub fn trace_id(traceparent: &str) -> Option<Uuid> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let [version, trace, parent, flags] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    if !hex(version, 2) || *version == "ff" || !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2)
    {
        return None;
    }
    let id = u128::from_str_radix(trace, 16).ok()?;
    let parent = u64::from_str_radix(parent, 16).ok()?;
    (id != 0 && parent != 0).then(|| Uuid::from_u128(id))
}

pub async fn correlate<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    let incoming = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id);
    let correlation_id = incoming.unwrap_or_else(Uuid::new_v4);
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        correlation_id = %correlation_id,
    );
    let inherited = eventlog::context::Inherited {
        correlation_id,
        causation_id: None,
    };
    let mut response = eventlog::context::within(inherited, Box::pin(next.get_response(req)))
        .instrument(span)
        .await;
    let span_id = &Uuid::new_v4().simple().to_string()[..16];
    let header = format!("00-{}-{span_id}-01", correlation_id.simple());
    if let Ok(value) = poem::http::HeaderValue::from_str(&header) {
        response.headers_mut().insert("traceparent", value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::trace_id;

    #[test]
    fn only_valid_traceparents_are_honoured() {
        let id = trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(id.simple().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(trace_id(bad), None, "{bad}");
        }
    }
}

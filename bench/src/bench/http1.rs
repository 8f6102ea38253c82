//! The load generator's HTTP client: one keep-alive HTTP/1.1 connection per worker, driven by
//! hyper on the worker's own task. The load generator shares the machine's two cores with the
//! service and PostgreSQL, so every cycle it spends is taken from what is measured; a pooled
//! general-purpose client (reqwest: URL parsing, pool lookups, a connection task per
//! connection) cost about a third more CPU per request.

use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Io = TokioIo<TcpStream>;

/// An answer: status, one header's value, body.
pub struct Answer {
    pub status: u16,
    pub header: Option<String>,
    pub body: String,
}

pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// Polled together with each request, on the caller's task.
    driver: Pin<Box<Connection<Io, Full<Bytes>>>>,
    host: String,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        Ok(Self {
            sender,
            driver: Box::pin(driver),
            host: addr.to_string(),
        })
    }

    /// POSTs `body` to `path` with `headers`; returns the answer and `want_header`'s value.
    pub async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
        want_header: &str,
    ) -> Result<Answer, String> {
        let mut request = hyper::Request::post(path).header("host", self.host.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let (sender, driver) = (&mut self.sender, &mut self.driver);
        let closed = |what: &str| format!("connection closed while {what}");
        tokio::select! {
            ready = sender.ready() => ready.map_err(|e| e.to_string())?,
            _ = driver.as_mut() => return Err(closed("waiting to send")),
        }
        let response = tokio::select! {
            response = sender.send_request(request) => response.map_err(|e| e.to_string())?,
            _ = driver.as_mut() => return Err(closed("sending")),
        };
        let status = response.status().as_u16();
        let header = response
            .headers()
            .get(want_header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = tokio::select! {
            body = response.into_body().collect() => body.map_err(|e| e.to_string())?,
            _ = driver.as_mut() => return Err(closed("reading the answer")),
        };
        Ok(Answer {
            status,
            header,
            body: String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        })
    }
}

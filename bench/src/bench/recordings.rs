//! A recording store on 127.0.0.1 for the benchmark's simulated calls: every path answers the
//! same small WAV body, so the post-call `recording` step downloads and stores a real file
//! (the simulated calls name VAPI's storage otherwise, which this machine cannot reach).

use poem::{get, handler, Route};

/// The size of the served recording: a few seconds of 8 kHz mono audio.
const BYTES: usize = 48 * 1024;

#[handler]
fn recording() -> Vec<u8> {
    let mut body = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
    body.resize(BYTES, 0);
    body
}

/// Starts the store; answers its base URL (`http://127.0.0.1:<port>`).
pub async fn serve() -> anyhow::Result<String> {
    let app = Route::new().at("/*path", get(recording));
    crate::local::serve(app).await
}

//! The benchmark's stand-ins for the outside world (provider stubs, receivers, a recording
//! store) listen on 127.0.0.1 at a port of the system's choosing.

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{IntoEndpoint, Server};

/// Serves `app` on 127.0.0.1 in the background; answers its base URL
/// (`http://127.0.0.1:<port>`).
pub async fn serve<E>(app: E) -> anyhow::Result<String>
where
    E: IntoEndpoint + Send + 'static,
    E::Endpoint: 'static,
{
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let port = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().map(|a| a.port()))
        .ok_or_else(|| anyhow::anyhow!("the local server has no port"))?;
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    Ok(format!("http://127.0.0.1:{port}"))
}

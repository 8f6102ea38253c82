//! Building and running the service: `Application::build(config)` binds (port 0 works),
//! opens the store, starts the projectors and the HTTP server; tests use the same path.

use std::sync::Arc;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::Server;
use tokio::sync::watch;

use crate::config::Config;
use crate::http;
use crate::state::AppState;

/// Under sustained load the live projectors read the log at most this often (one shared read
/// per interval, every event since in one batch); an isolated event is still read at once.
/// Measured at 16 concurrent calls: 10 ms → 25 ms took deliveries/s from 3,213 to 3,510
/// (projector transactions compete with the webhooks for the same cores); read-your-writes
/// waits at most this much longer under load.
pub(crate) const PROJECTION_READ_INTERVAL: Duration = Duration::from_millis(25);

pub struct Application {
    port: u16,
    /// The operator port (`/health` in detail, `/metrics`), when one is configured.
    operator_port: Option<u16>,
    state: Arc<AppState>,
    /// Stops the HTTP server (graceful: requests in flight finish).
    stop: watch::Sender<bool>,
    /// Stops the projectors, once the server is down and the ledger flushed.
    stop_projectors: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Resolves on SIGTERM (how Docker, systemd and Kubernetes stop a service) or SIGINT
/// (Ctrl-C): both take the same graceful path in [`Application::run_until`].
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down gracefully"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down gracefully"),
                }
                return;
            }
            Err(err) => tracing::error!(error = %err, "cannot listen for SIGTERM"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("SIGINT: shutting down gracefully");
}

/// A future that resolves once `stop` is set.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

impl Application {
    pub async fn build(mut config: Config) -> anyhow::Result<Application> {
        if config.keyring.is_none() {
            config.keyring = Some(crate::secrets::Keyring::load_or_create(
                &config.secret_key_file,
            )?);
        }
        let store =
            eventlog::EventStore::open(&config.database_url, config.database_max_connections)
                .await?;
        let (stop, stop_rx) = watch::channel(false);
        let (stop_projectors, projectors_rx) = watch::channel(false);
        let mut handles = Vec::new();
        let feed = Arc::new(projections::LogFeed::new(
            store.clone(),
            PROJECTION_READ_INTERVAL,
        ));
        for projector in projections::all() {
            let runner =
                projections::ProjectorRunner::new(store.clone(), projector).feed(feed.clone());
            let (handle, _task) = runner.spawn(stopped(projectors_rx.clone()));
            handles.push(handle);
        }
        let recordings = crate::recordings::Recordings::from_config(&config)?;
        let state = Arc::new(AppState::new(
            config.clone(),
            store.clone(),
            handles,
            recordings,
        ));
        // Under a burst the live read models read every BUSY_READ_INTERVAL.
        feed.stretch(
            state
                .foreground
                .pace_while_busy(crate::foreground::BUSY_READ_INTERVAL),
        );
        let _ = state.live.set(
            crate::live::Hub::start(store.clone(), feed.clone(), state.foreground.clone()).await?,
        );
        // Processes: each one's starter reads the log like a projector, its worker runs
        // the instances (see `processes`).
        let mut processes = Vec::new();
        if config.processes_enabled {
            for definition in crate::processes::all(&state) {
                let starter = crate::processes::starter::Starter::new(definition.clone());
                let mark = starter.mark();
                // Under a burst a starter reads every STARTER_PACE_UNDER_LOAD (its worker
                // yields then too: `crate::foreground`).
                let runner = projections::ProjectorRunner::new(store.clone(), Arc::new(starter))
                    .feed(feed.clone())
                    .pace(
                        state
                            .foreground
                            .pace_while_busy(crate::foreground::STARTER_PACE_UNDER_LOAD),
                    );
                let (starter, _task) = runner.spawn(stopped(projectors_rx.clone()));
                let worker =
                    crate::processes::worker::Worker::new(definition, state.clone(), starter, mark);
                processes.push(worker.spawn(stopped(projectors_rx.clone())));
            }
        }
        if config.processes_enabled {
            crate::schedules::spawn(state.clone(), stopped(projectors_rx.clone()));
        }
        let _ = state.processes_running.set(processes);
        let acceptor = TcpListener::bind(config.listen).into_acceptor().await?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().map(|a| a.port()))
            .unwrap_or(config.listen.port());
        crate::telemetry::prometheus();
        let operator_port = match config.operator_listen {
            Some(addr) => Some(serve_operator(addr, state.clone(), stop_rx.clone()).await?),
            None => None,
        };
        let app = http::app(state.clone());
        let server = tokio::spawn(
            Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                app,
                stopped(stop_rx),
                Some(Duration::from_secs(10)),
            ),
        );
        tracing::info!(
            port,
            operator_port = operator_port.unwrap_or(0),
            backend = state.store.backend().name(),
            "CallFlex listening"
        );
        Ok(Application {
            port,
            operator_port,
            state,
            stop,
            stop_projectors,
            server,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn operator_port(&self) -> Option<u16> {
        self.operator_port
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops projectors and drains requests.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let mut server = self.server;
        tokio::select! {
            result = &mut server => { result??; return Ok(()); }
            _ = shutdown => {}
        }
        // Stop accepting and finish the requests in flight, then make their raw deliveries
        // durable, then stop the consumers.
        let _ = self.stop.send(true);
        let served = server.await;
        self.state.ledger.flush().await;
        let _ = self.stop_projectors.send(true);
        tracing::info!("stopped");
        served??;
        Ok(())
    }

    /// Stops the server and the projectors (tests).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        self.state.ledger.flush().await;
        let _ = self.stop_projectors.send(true);
    }
}

/// Binds the operator port and serves it until `stop`; returns the port bound.
async fn serve_operator(
    addr: std::net::SocketAddr,
    state: Arc<AppState>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<u16> {
    let acceptor = TcpListener::bind(addr)
        .into_acceptor()
        .await
        .map_err(|err| {
            anyhow::anyhow!(
                "cannot listen on the operator port {addr} ({err}); set CALLFLEX_OPERATOR_ADDR \
                 to a free address, or to `off`"
            )
        })?;
    let port = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().map(|a| a.port()))
        .unwrap_or(addr.port());
    let server = Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
        http::operator::app(state),
        stopped(stop),
        Some(Duration::from_secs(2)),
    );
    tokio::spawn(async move {
        if let Err(err) = server.await {
            tracing::error!(error = %err, "operator port stopped");
        }
    });
    Ok(port)
}

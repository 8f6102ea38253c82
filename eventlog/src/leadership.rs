//! [`Leadership`]: which consumers (projectors, process workers) this process runs, when
//! several processes share one PostgreSQL database. Each consumer is led by whoever holds its
//! session advisory lock; this process takes all of its locks on ONE connection kept outside
//! the pool (a connection per consumer would hold a dozen of the pool's connections idle).
//! When this process dies its session ends and every lock it held is free for a standby.
//! SQLite is single-process: every consumer is led here.

use sqlx::{Any, AnyConnection, AnyPool, Row};
use tokio::sync::Mutex;

use crate::Backend;

pub struct Leadership {
    pool: AnyPool,
    backend: Backend,
    /// The session holding this process's locks (opened on first use).
    session: Mutex<Option<AnyConnection>>,
}

impl Leadership {
    pub fn new(pool: AnyPool, backend: Backend) -> Self {
        Leadership {
            pool,
            backend,
            session: Mutex::new(None),
        }
    }

    /// Tries to become the leader of `name`; true when this process is (or already was).
    pub async fn try_lead(&self, name: &str) -> Result<bool, sqlx::Error> {
        if self.backend != Backend::Postgres {
            return Ok(true);
        }
        let mut session = self.session.lock().await;
        if session.is_none() {
            // Detached: it no longer counts against the pool's size.
            *session = Some(self.pool.acquire().await?.detach());
        }
        let Some(conn) = session.as_mut() else {
            return Ok(false);
        };
        let result = sqlx::query::<Any>("SELECT pg_try_advisory_lock(hashtext($1)::bigint)")
            .bind(format!("callflex:{name}"))
            .fetch_one(&mut *conn)
            .await;
        match result {
            Ok(row) => row.try_get(0),
            Err(err) => {
                // A broken session holds nothing: open a new one next time.
                *session = None;
                Err(err)
            }
        }
    }
}

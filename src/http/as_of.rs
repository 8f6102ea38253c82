//! `?as_of=<RFC 3339>` and `?as_of_position=<log position>` on detail routes: the answer as
//! it stood then, in the route's own shape, marked historical (`as_of`).

use chrono::{DateTime, Utc};
use poem_openapi::param::Query;
use poem_openapi::Object;

use crate::app::audit::historical::Until;
use crate::http::error::ApiError;
use crate::http::query::Lenient;

/// Present only on a historical answer.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AsOf {
    /// Always true: this is what the log held then, not the current state.
    pub historical: bool,
    /// The time asked for (events recorded up to it count).
    pub at: Option<DateTime<Utc>>,
    /// The log position asked for (events up to it count).
    pub position: Option<i64>,
    /// The log position of the last event the answer includes.
    pub last_position: i64,
}

/// The point asked for, if any.
pub struct Asked {
    pub until: Until,
    pub at: Option<DateTime<Utc>>,
    pub position: Option<i64>,
}

impl Asked {
    pub fn mark(&self, last_position: i64) -> AsOf {
        AsOf {
            historical: true,
            at: self.at,
            position: self.position,
            last_position,
        }
    }
}

/// The parameters read (400 on a malformed one); `None` when neither was given.
pub fn asked(
    as_of: Query<Option<Lenient<DateTime<Utc>>>>,
    as_of_position: Query<Option<Lenient<i64>>>,
) -> Result<Option<Asked>, ApiError> {
    let at = as_of.0.map(|a| a.get("as_of")).transpose()?;
    let position = as_of_position
        .0
        .map(|p| p.get("as_of_position"))
        .transpose()?;
    if at.is_none() && position.is_none() {
        return Ok(None);
    }
    Ok(Some(Asked {
        until: Until {
            until_ms: at.map(|t| t.timestamp_millis()),
            position,
        },
        at,
        position,
    }))
}

//! Cursors and page sizes.
//!
//! Lists are ordered by a key that never changes for a row (e.g. `started_at DESC, id DESC`),
//! and paged by KEYSET: the cursor names the last row of the previous page, and the next page
//! starts strictly after it. Rows inserted while a client pages never shift or repeat rows.
//!
//! Cursors are opaque to clients: base64url (no padding) of `k1|<i64>|<id>` for a keyset
//! position, or `o1|<offset>` for ranked results (search), whose order is not a stable key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::http::error::ApiError;
use crate::http::query::Lenient;

pub const DEFAULT_LIMIT: i64 = 25;
pub const MAX_LIMIT: i64 = 100;

/// The page size: 1..=100, default 25.
pub fn limit(value: Option<Lenient<super::position::PageSize>>) -> Result<i64, ApiError> {
    match value {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => {
            let n = v.get("limit")?.0;
            if (1..=MAX_LIMIT).contains(&n) {
                Ok(n)
            } else {
                Err(ApiError::bad_parameter(
                    "limit",
                    format!("limit must be between 1 and {MAX_LIMIT}"),
                ))
            }
        }
    }
}

/// A position in a keyset-ordered list: the sort key and the id of the last row returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    pub key: i64,
    pub id: String,
}

impl Keyset {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("k1|{}|{}", self.key, self.id))
    }

    pub fn decode(cursor: &str) -> Result<Keyset, ApiError> {
        let bad = || ApiError::bad_parameter("cursor", "cursor is not a valid page cursor");
        let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let rest = text.strip_prefix("k1|").ok_or_else(bad)?;
        let (key, id) = rest.split_once('|').ok_or_else(bad)?;
        Ok(Keyset {
            key: key.parse().map_err(|_| bad())?,
            id: id.to_string(),
        })
    }
}

/// The decoded keyset cursor of a request, if any.
pub fn keyset(cursor: Option<&str>) -> Result<Option<Keyset>, ApiError> {
    cursor.map(Keyset::decode).transpose()
}

/// An offset cursor (ranked results).
pub fn encode_offset(offset: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("o1|{offset}"))
}

pub fn decode_offset(cursor: Option<&str>) -> Result<i64, ApiError> {
    let Some(cursor) = cursor else {
        return Ok(0);
    };
    let bad = || ApiError::bad_parameter("cursor", "cursor is not a valid page cursor");
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let n: i64 = text
        .strip_prefix("o1|")
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyset_cursor_round_trips_and_garbage_is_rejected() {
        let k = Keyset {
            key: 1_721_000_000_000,
            id: "a|b".into(),
        };
        assert_eq!(Keyset::decode(&k.encode()).ok(), Some(k));
        assert!(Keyset::decode("not-a-cursor!").is_err());
        assert!(Keyset::decode(&encode_offset(3)).is_err());
        assert_eq!(decode_offset(Some(&encode_offset(3))).ok(), Some(3));
    }
}

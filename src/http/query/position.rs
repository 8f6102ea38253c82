//! Integer query parameters whose range the document declares (so a value outside it is not
//! a request the document allows, rather than one refused after the fact): `min_position`, a
//! log position ≥ 0, and `limit`, a page size of 1 to 100.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromParameter, ParseResult, Type};

use super::pagination::MAX_LIMIT;

/// Declares an `i64` parameter type documented with `minimum` (and `maximum`).
macro_rules! bounded_parameter {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr, $title:literal) => {
        $(#[$doc])*
        pub struct $name(pub i64);

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = i64;
            type RawElementValueType = i64;

            fn name() -> Cow<'static, str> {
                $title.into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    minimum: Some($min as f64),
                    maximum: $max.map(|m: i64| m as f64),
                    ..MetaSchema::new_with_format("integer", "int64")
                }))
            }

            fn as_raw_value(&self) -> Option<&i64> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a i64> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }

        impl ParseFromParameter for $name {
            fn parse_from_parameter(value: &str) -> ParseResult<Self> {
                let n: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| ParseError::custom("must be an integer"))?;
                let max: Option<i64> = $max;
                if n < $min || max.is_some_and(|max| n > max) {
                    return Err(ParseError::custom(format!(
                        "must be at least {}{}",
                        $min,
                        max.map(|m| format!(" and at most {m}")).unwrap_or_default()
                    )));
                }
                Ok($name(n))
            }
        }
    };
}

bounded_parameter!(
    /// `min_position`: a log position.
    Position,
    0,
    None,
    "integer(int64, >= 0)"
);

bounded_parameter!(
    /// `limit`: a page size.
    PageSize,
    1,
    Some(MAX_LIMIT),
    "integer(int64, 1..=100)"
);

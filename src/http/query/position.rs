//! `min_position` as a parameter: a log position, an integer ≥ 0, documented so (a negative
//! one is not a request the document allows, rather than one we refuse after the fact).

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromParameter, ParseResult, Type};

pub struct Position(pub i64);

impl Type for Position {
    const IS_REQUIRED: bool = true;
    type RawValueType = i64;
    type RawElementValueType = i64;

    fn name() -> Cow<'static, str> {
        "integer(int64, >= 0)".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            minimum: Some(0.0),
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

impl ParseFromParameter for Position {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        let n: i64 = value
            .trim()
            .parse()
            .map_err(|_| ParseError::custom("must be an integer"))?;
        if n < 0 {
            return Err(ParseError::custom("must not be negative"));
        }
        Ok(Position(n))
    }
}

/// `limit` as a parameter: a page size of 1 to 100, documented so.
pub struct PageSize(pub i64);

impl Type for PageSize {
    const IS_REQUIRED: bool = true;
    type RawValueType = i64;
    type RawElementValueType = i64;

    fn name() -> Cow<'static, str> {
        "integer(int64, 1..=100)".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            minimum: Some(1.0),
            maximum: Some(super::pagination::MAX_LIMIT as f64),
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

impl ParseFromParameter for PageSize {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        let n: i64 = value
            .trim()
            .parse()
            .map_err(|_| ParseError::custom("must be an integer"))?;
        if !(1..=super::pagination::MAX_LIMIT).contains(&n) {
            return Err(ParseError::custom(format!(
                "must be between 1 and {}",
                super::pagination::MAX_LIMIT
            )));
        }
        Ok(PageSize(n))
    }
}

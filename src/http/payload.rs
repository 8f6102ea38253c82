//! Raw request bodies for webhooks: signatures are computed over the exact bytes, so handlers
//! read bytes (up to the configured limit), verify, and only then parse.

use poem::{Request, RequestBody};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::http::error::ApiError;

/// The raw bytes of a request body, and its content type. Reading never fails on content
/// type; handlers check it themselves so they can answer 415 in our error shape.
pub struct RawBody {
    pub bytes: Result<Vec<u8>, usize>,
    pub content_type: Option<String>,
}

impl RawBody {
    /// The bytes, or 413 when the body exceeded the limit.
    pub fn bytes(&self) -> Result<&[u8], ApiError> {
        self.bytes
            .as_deref()
            .map_err(|limit| ApiError::too_large(*limit))
    }

    /// Checks the media type (ignoring parameters such as charset).
    pub fn require(&self, expected: &str) -> Result<(), ApiError> {
        let media = self
            .content_type
            .as_deref()
            .and_then(|ct| ct.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        match media.as_deref() {
            Some(m) if m == expected => Ok(()),
            Some(m) if expected == "application/json" && m.ends_with("+json") => Ok(()),
            _ => Err(ApiError::unsupported_media_type(
                expected,
                self.content_type.as_deref(),
            )),
        }
    }
}

/// Body limit used when the application state is not attached (tests of the type itself).
pub const DEFAULT_LIMIT: usize = 1024 * 1024;

#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

async fn read(request: &Request, body: &mut RequestBody) -> poem::Result<RawBody> {
    let limit = request
        .data::<BodyLimit>()
        .map(|l| l.0)
        .unwrap_or(DEFAULT_LIMIT);
    let content_type = request.content_type().map(str::to_string);
    let bytes = match body.take() {
        Ok(body) => match body.into_bytes_limit(limit).await {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(poem::error::ReadBodyError::PayloadTooLarge) => Err(limit),
            Err(err) => return Err(err.into()),
        },
        Err(_) => Ok(Vec::new()),
    };
    Ok(RawBody {
        bytes,
        content_type,
    })
}

/// Declares a raw-body extractor documented under one media type.
macro_rules! raw_body {
    ($name:ident, $media:literal) => {
        pub struct $name(pub RawBody);

        impl Payload for $name {
            const CONTENT_TYPE: &'static str = $media;

            fn check_content_type(_content_type: &str) -> bool {
                true
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new(MetaSchema::new("object")))
            }
        }

        impl<'a> ApiExtractor<'a> for $name {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
            type ParamType = ();
            type ParamRawType = ();

            fn register(registry: &mut Registry) {
                <Self as Payload>::register(registry);
            }

            fn request_meta() -> Option<MetaRequest> {
                Some(MetaRequest {
                    description: None,
                    content: vec![MetaMediaType {
                        content_type: $media,
                        schema: <Self as Payload>::schema_ref(),
                    }],
                    required: true,
                })
            }

            async fn from_request(
                request: &'a Request,
                body: &mut RequestBody,
                _param_opts: ExtractParamOptions<()>,
            ) -> poem::Result<Self> {
                Ok($name(read(request, body).await?))
            }
        }
    };
}

raw_body!(RawJson, "application/json");
raw_body!(RawForm, "application/x-www-form-urlencoded");

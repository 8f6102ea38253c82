//! What the OpenAPI document declares, read once from the document itself so the service and
//! the document cannot disagree: `Allow` on every 405 (RFC 9110 requires it), and the JSON
//! types of request bodies (poem-openapi reads `false` into a string field as `"false"`; the
//! document says a string, so such a body is refused with 400 naming the field).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::http::error::ApiError;

struct Route {
    /// Path segments; `{name}` for a parameter.
    segments: Vec<String>,
    /// Method (upper case) → its JSON request body schema, if any.
    methods: BTreeMap<String, Option<Value>>,
}

pub struct AllowedMethods {
    routes: Vec<Route>,
    components: Value,
}

impl AllowedMethods {
    pub fn from_spec(spec: &str) -> Self {
        let parsed: Value = serde_json::from_str(spec).unwrap_or_default();
        let mut routes = Vec::new();
        if let Some(paths) = parsed["paths"].as_object() {
            for (template, item) in paths {
                let methods = item
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(m, _)| {
                        matches!(
                            m.as_str(),
                            "get" | "post" | "put" | "patch" | "delete" | "head" | "options"
                        )
                    })
                    .map(|(m, op)| {
                        // poem-openapi names the media type with its charset parameter.
                        let body = op["requestBody"]["content"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .find(|(media, _)| media.starts_with("application/json"))
                            .map(|(_, content)| content["schema"].clone());
                        (m.to_ascii_uppercase(), body)
                    })
                    .collect();
                routes.push(Route {
                    segments: segments(template),
                    methods,
                });
            }
        }
        Self {
            routes,
            components: parsed["components"]["schemas"].clone(),
        }
    }

    /// The route serving `path`, as the router picks it: a literal segment beats a parameter
    /// at the first place two candidates differ.
    fn route(&self, path: &str) -> Option<&Route> {
        let wanted = segments(path);
        self.routes
            .iter()
            .filter(|r| {
                r.segments.len() == wanted.len()
                    && r.segments
                        .iter()
                        .zip(&wanted)
                        .all(|(t, w)| t.starts_with('{') || t == w)
            })
            .max_by_key(|r| {
                r.segments
                    .iter()
                    .map(|s| !s.starts_with('{'))
                    .collect::<Vec<bool>>()
            })
    }

    /// The `Allow` value for `path`, if a declared path matches it.
    pub fn for_path(&self, path: &str) -> Option<String> {
        let route = self.route(path)?;
        let mut methods: Vec<String> = route.methods.keys().cloned().collect();
        if methods.iter().any(|m| m == "GET") && !methods.iter().any(|m| m == "HEAD") {
            methods.push("HEAD".into());
            methods.sort();
        }
        Some(methods.join(", "))
    }

    /// Checks a JSON body's value types against the operation's declared schema.
    pub fn check_body(&self, method: &str, path: &str, body: &Value) -> Result<(), ApiError> {
        let Some(Some(schema)) = self.route(path).and_then(|r| r.methods.get(method)) else {
            return Ok(());
        };
        self.check(body, schema, "", 0)
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap_or_default();
                &self.components[name]
            }
            None => schema,
        }
    }

    fn check(&self, value: &Value, schema: &Value, at: &str, depth: usize) -> Result<(), ApiError> {
        if depth > 16 {
            return Ok(());
        }
        let schema = self.resolve(schema);
        if let Some(all) = schema["allOf"].as_array() {
            for part in all {
                self.check(value, part, at, depth + 1)?;
            }
        }
        let expected = schema["type"].as_str().unwrap_or_default();
        let fits = match expected {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => true,
        };
        // Null stands for "absent" (and clears a value in a PATCH): optional members are
        // declared nullable in the served document (see `document`).
        if !fits && !value.is_null() {
            let name = if at.is_empty() { "body" } else { at };
            return Err(ApiError::bad_parameter(
                name,
                format!("{name} must be of type {expected}"),
            ));
        }
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    let declared = &schema["properties"][key];
                    if !declared.is_null() {
                        let child = if at.is_empty() {
                            key.clone()
                        } else {
                            format!("{at}.{key}")
                        };
                        self.check(member, declared, &child, depth + 1)?;
                    }
                }
            }
            Value::Array(items) if !schema["items"].is_null() => {
                for (i, item) in items.iter().enumerate() {
                    self.check(item, &schema["items"], &format!("{at}[{i}]"), depth + 1)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn segments(path: &str) -> Vec<String> {
    path.trim_end_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> AllowedMethods {
        AllowedMethods::from_spec(&crate::http::openapi_json())
    }

    #[test]
    fn methods_come_from_the_document_and_literal_segments_win() {
        let allowed = declared();
        assert_eq!(
            allowed.for_path("/api/v1/contacts/abc").as_deref(),
            Some("DELETE, GET, HEAD, PATCH")
        );
        assert_eq!(
            allowed.for_path("/api/v1/phone-numbers/search").as_deref(),
            Some("POST")
        );
        assert_eq!(
            allowed.for_path("/api/webhooks/stripe").as_deref(),
            Some("POST")
        );
        assert_eq!(allowed.for_path("/nowhere"), None);
    }

    #[test]
    fn a_body_of_the_wrong_types_is_refused_naming_the_field() {
        let allowed = declared();
        assert!(allowed
            .check_body(
                "POST",
                "/api/v1/contacts",
                &serde_json::json!({"phone_number": false}),
            )
            .is_err());
        let err = allowed
            .check_body(
                "POST",
                "/api/v1/auth/forgot-password",
                &serde_json::json!({"email": true}),
            )
            .unwrap_err();
        assert_eq!(err.detail().details.as_ref().unwrap()["parameter"], "email");
        assert!(allowed
            .check_body(
                "POST",
                "/api/v1/auth/forgot-password",
                &serde_json::json!({"email": "a@b.test"}),
            )
            .is_ok());
    }
}

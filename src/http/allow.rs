//! `Allow` on every 405 (RFC 9110 requires it): the methods the OpenAPI document declares for
//! the requested path, read once from the document itself so the two cannot disagree.

use std::collections::BTreeSet;

/// Path templates (`/api/v1/calls/{id}`, split into segments) and their methods.
pub struct AllowedMethods {
    routes: Vec<(Vec<String>, BTreeSet<String>)>,
}

impl AllowedMethods {
    pub fn from_spec(spec: &str) -> Self {
        let parsed: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let mut routes = Vec::new();
        if let Some(paths) = parsed["paths"].as_object() {
            for (template, item) in paths {
                let methods: BTreeSet<String> = item
                    .as_object()
                    .into_iter()
                    .flat_map(|ops| ops.keys())
                    .filter(|m| {
                        matches!(
                            m.as_str(),
                            "get" | "post" | "put" | "patch" | "delete" | "head" | "options"
                        )
                    })
                    .map(|m| m.to_ascii_uppercase())
                    .collect();
                routes.push((segments(template), methods));
            }
        }
        Self { routes }
    }

    /// The `Allow` value for `path`, if a declared path matches it.
    pub fn for_path(&self, path: &str) -> Option<String> {
        let wanted = segments(path);
        let mut methods = BTreeSet::new();
        for (template, declared) in &self.routes {
            let matches = template.len() == wanted.len()
                && template
                    .iter()
                    .zip(&wanted)
                    .all(|(t, w)| t.starts_with('{') || t == w);
            if matches {
                methods.extend(declared.iter().cloned());
            }
        }
        if methods.contains("GET") {
            methods.insert("HEAD".into());
        }
        (!methods.is_empty()).then(|| methods.into_iter().collect::<Vec<_>>().join(", "))
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

    #[test]
    fn methods_come_from_the_document() {
        let allowed = AllowedMethods::from_spec(&crate::http::openapi_json());
        assert_eq!(
            allowed.for_path("/api/v1/contacts/abc").as_deref(),
            Some("DELETE, GET, HEAD, PATCH")
        );
        assert_eq!(
            allowed.for_path("/api/webhooks/stripe").as_deref(),
            Some("POST")
        );
        assert_eq!(allowed.for_path("/nowhere"), None);
    }
}

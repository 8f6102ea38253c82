//! Upcasting: old event versions are rewritten as raw JSON before they are deserialized, so
//! stored events are never edited and aggregates only know the current shape.

use std::collections::HashMap;
use std::sync::Arc;

type UpcastFn = Arc<dyn Fn(serde_json::Value) -> serde_json::Value + Send + Sync>;

/// Upcasters keyed by (event type, from version); each lifts a payload by one version.
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: HashMap<(String, i32), UpcastFn>,
}

impl Upcasters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the step that turns `event_type` at `from_version` into `from_version + 1`.
    pub fn register(
        mut self,
        event_type: &str,
        from_version: i32,
        step: impl Fn(serde_json::Value) -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.steps
            .insert((event_type.to_string(), from_version), Arc::new(step));
        self
    }

    /// Whether an event of this type and version needs upcasting at all (the fast path of
    /// readers that deserialize payload text straight into types skips the JSON tree).
    pub fn applies(&self, event_type: &str, version: i32) -> bool {
        !self.steps.is_empty() && self.steps.contains_key(&(event_type.to_string(), version))
    }

    /// Applies every registered step from `version` upwards.
    pub fn upcast(
        &self,
        event_type: &str,
        mut version: i32,
        mut payload: serde_json::Value,
    ) -> serde_json::Value {
        while let Some(step) = self.steps.get(&(event_type.to_string(), version)) {
            payload = step(payload);
            version += 1;
        }
        payload
    }
}

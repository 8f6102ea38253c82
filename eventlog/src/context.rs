//! The correlation a piece of work runs under: every [`CommandMeta`](crate::CommandMeta)
//! created inside [`within`] inherits its correlation id (and causation id) unless it names
//! its own. An HTTP request runs under one (from its `traceparent`, else a new one), a
//! process instance under the one of the event that started it, so the events of one
//! request, or of a delivery and all the work after it, share one correlation id.

use std::future::Future;

use uuid::Uuid;

tokio::task_local! {
    static CURRENT: Inherited;
}

/// What commands created inside [`within`] inherit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inherited {
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
}

/// Runs `work` with `inherited` as the correlation of the commands it creates.
pub async fn within<F: Future>(inherited: Inherited, work: F) -> F::Output {
    CURRENT.scope(inherited, work).await
}

/// The correlation the current task runs under, if any.
pub fn current() -> Option<Inherited> {
    CURRENT.try_with(|c| *c).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CommandMeta;

    #[tokio::test]
    async fn commands_inherit_the_correlation_they_are_created_under() {
        let outside = CommandMeta::new("system:test");
        assert_eq!(outside.causation_id, None);
        let inherited = Inherited {
            correlation_id: Uuid::new_v4(),
            causation_id: Some(Uuid::new_v4()),
        };
        let inside = within(inherited, async { CommandMeta::new("system:test") }).await;
        assert_eq!(inside.correlation_id, inherited.correlation_id);
        assert_eq!(inside.causation_id, inherited.causation_id);
        let named = within(inherited, async {
            CommandMeta::new("system:test").correlation(outside.correlation_id)
        })
        .await;
        assert_eq!(
            named.correlation_id, outside.correlation_id,
            "a named one wins"
        );
    }
}

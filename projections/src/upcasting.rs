//! Every upcaster this build knows: when an event's payload changes shape, bump its version
//! in the aggregate and register here the step that lifts the old shape, so stored events are
//! never edited. The repositories (commands) and the projectors (read models) both decode
//! through this one list. None is registered yet: every event is still at version 1.

use std::sync::OnceLock;

use eventlog::Upcasters;

/// The upcasters of every aggregate, keyed by event type and version.
pub fn all() -> &'static Upcasters {
    static ALL: OnceLock<Upcasters> = OnceLock::new();
    ALL.get_or_init(Upcasters::new)
}

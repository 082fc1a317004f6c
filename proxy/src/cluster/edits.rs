//! The edits admin changes and the rollout leader make to a [`Draft`] of the shared
//! state, mirroring what each does to a standalone instance.

use std::collections::BTreeMap;

use http::StatusCode;

use super::commit::{Draft, Rejected};
use super::records::{RolloutRecord, unix_ms};
use crate::persist::{SavedBackend, SavedRoute, SavedState};
use crate::traffic::RouteTarget;

/// Sets a backend's admin state (`active`, `draining`, `disabled`) and/or weight.
/// A backend back to active at its config weight leaves no entry.
pub fn set_backend(
    state: &mut SavedState,
    pool: &str,
    address: &str,
    config_weight: u32,
    admin: Option<&str>,
    weight: Option<u32>,
) {
    let key = format!("{pool}/{address}");
    let mut entry = state.backends.remove(&key).unwrap_or(SavedBackend {
        admin_state: "active".into(),
        weight: config_weight,
        config_weight,
    });
    if entry.config_weight != config_weight {
        entry.weight = config_weight;
        entry.config_weight = config_weight;
    }
    if let Some(admin) = admin {
        entry.admin_state = admin.to_string();
    }
    if let Some(weight) = weight {
        entry.weight = weight;
    }
    if entry.admin_state != "active" || entry.weight != entry.config_weight {
        state.backends.insert(key, entry);
    }
}

/// Points a route at `target` (its config naming `config_pool`).
pub fn set_route(state: &mut SavedState, route: &str, config_pool: &str, target: &RouteTarget) {
    let (pools, sticky) = match target {
        RouteTarget::Pool(p) => (BTreeMap::from([(p.to_string(), 100)]), None),
        RouteTarget::Split { pools, sticky } => (
            pools.iter().map(|(p, w)| (p.to_string(), *w)).collect(),
            sticky.as_ref().map(crate::traffic::sticky_name),
        ),
    };
    state.routes.insert(
        route.to_string(),
        SavedRoute {
            config_pool: config_pool.to_string(),
            pools,
            sticky,
        },
    );
}

/// Ends the running fleet rollout of `route`, if any, in `state` (`aborted`,
/// `rolled_back` or `completed`) with `reason`.
pub fn end_rollout(draft: &mut Draft, route: &str, state: &str, reason: Option<String>) -> bool {
    let Some(record) = draft.rollouts.get_mut(route).filter(|r| r.running()) else {
        return false;
    };
    record.state = state.to_string();
    if state != "completed" {
        record.percent = 0;
    }
    record.reason = reason;
    record.updated_ms = unix_ms();
    true
}

/// The running fleet rollout of `route`, or a refusal saying it stopped.
pub fn running<'a>(draft: &'a mut Draft, route: &str) -> Result<&'a mut RolloutRecord, Rejected> {
    draft
        .rollouts
        .get_mut(route)
        .filter(|r| r.running())
        .ok_or_else(|| Rejected {
            status: StatusCode::CONFLICT,
            message: format!("no rollout of route `{route}` is running"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_entries_exist_only_while_they_differ_from_the_config() {
        let mut state = SavedState::default();
        set_backend(&mut state, "app", "127.0.0.1:1", 2, Some("draining"), None);
        assert_eq!(state.backends["app/127.0.0.1:1"].weight, 2);
        set_backend(&mut state, "app", "127.0.0.1:1", 2, None, Some(5));
        assert_eq!(state.backends["app/127.0.0.1:1"].admin_state, "draining");
        set_backend(&mut state, "app", "127.0.0.1:1", 2, Some("active"), Some(2));
        assert!(state.backends.is_empty());
    }
}

//! Bindings generated from the `switchyard:policy` WIT package, one module per
//! world. The `host` and `types` interfaces are generated once (with the routing
//! world) and shared, so a `Header` is the same type in every world.
//!
//! The export macros are public so the `*_policy!` macros can expand them in the
//! plugin crate: only the world a plugin exports ends up in its component. The
//! generated glue passes records field by field (the canonical ABI flattens
//! them), hence the allowed lint.

/// The `routing` world (also the home of the shared `host` and `types`).
#[allow(clippy::too_many_arguments)]
pub mod routing {
    wit_bindgen::generate!({
        world: "routing",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_routing",
        default_bindings_module: "switchyard_policy::bindings::routing",
        additional_derives: [PartialEq],
    });
}

/// The `health-check` world.
#[allow(clippy::too_many_arguments)]
pub mod health {
    wit_bindgen::generate!({
        world: "health-check",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_health",
        default_bindings_module: "switchyard_policy::bindings::health",
        additional_derives: [PartialEq],
        with: {
            "switchyard:policy/host@0.1.1": crate::bindings::routing::switchyard::policy::host,
            "switchyard:policy/types@0.1.1": crate::bindings::routing::switchyard::policy::types,
        },
    });
}

/// The `recovery` world.
#[allow(clippy::too_many_arguments)]
pub mod recovery {
    wit_bindgen::generate!({
        world: "recovery",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_recovery",
        default_bindings_module: "switchyard_policy::bindings::recovery",
        additional_derives: [PartialEq],
        with: {
            "switchyard:policy/host@0.1.1": crate::bindings::routing::switchyard::policy::host,
        },
    });
}

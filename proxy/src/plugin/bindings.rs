//! Host-side bindings generated from `wit/`.

/// Bindings of the `routing` world, which also own the shared `host` and
/// `types` interfaces.
pub(crate) mod routing {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "routing",
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

/// Bindings of the `health-check` world.
pub(crate) mod health {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "health-check",
        ownership: Borrowing { duplicate_if_necessary: false },
        with: {
            "switchyard:policy/host": crate::plugin::bindings::routing::switchyard::policy::host,
            "switchyard:policy/types": crate::plugin::bindings::routing::switchyard::policy::types,
        },
    });
}

/// Bindings of the `recovery` world.
pub(crate) mod recovery {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "recovery",
        with: {
            "switchyard:policy/host": crate::plugin::bindings::routing::switchyard::policy::host,
        },
    });
}

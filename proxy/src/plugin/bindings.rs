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

/// Bindings of the `health-check` world's required exports (those of 0.1.0).
/// The optional `probe-request` export is looked up by name instead (see
/// `plugin::health`), so a plugin without it still links. Owned types: probes
/// run once per interval, not per request, and the borrowing mode trips over
/// the record types this world does not use.
pub(crate) mod health {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package switchyard:host-view;

            world health-check-required {
                import switchyard:policy/host@0.1.1;
                use switchyard:policy/health-types@0.1.1.{probe, verdict};

                export init: func(config: string) -> result<_, string>;
                export wanted-headers: func() -> list<string>;
                export evaluate: func(probe: probe) -> verdict;
            }
        ",
        world: "health-check-required",
        with: {
            "switchyard:policy/host": crate::plugin::bindings::routing::switchyard::policy::host,
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

//! Write Switchyard policy plugins as plain Rust.
//!
//! One trait per world ([`RoutingPolicy`], [`HealthPolicy`],
//! [`RecoveryPolicy`]) and one macro to export it; the `config` table arrives
//! typed (a `#[derive(Deserialize)]` struct, errors naming the field); the
//! helpers every policy needs are here ([`hash`], [`pick`], [`Rng`], [`Ewma`]);
//! and compiled natively, the [`host`] functions run against a mock host
//! ([`testing`]), so `cargo test` exercises a policy without a proxy.
//!
//! ```
//! use serde::Deserialize;
//! use switchyard_policy::{pick, ConfigError, RoutingPolicy};
//! use switchyard_policy::routing::{Candidate, Decision, Request};
//!
//! #[derive(Deserialize)]
//! struct Config { header: String }
//!
//! struct Sticky(Config);
//!
//! impl RoutingPolicy for Sticky {
//!     type Config = Config;
//!     fn init(config: Config) -> Result<Self, ConfigError> { Ok(Self(config)) }
//!     fn wanted_headers(&self) -> Vec<String> { vec![self.0.header.clone()] }
//!     fn choose(&mut self, req: &Request, candidates: &[Candidate]) -> Decision {
//!         let key = req.header(&self.0.header).unwrap_or(&req.client_ip);
//!         Decision::backend_or_503(switchyard_policy::hash::rendezvous(key.as_bytes(), candidates))
//!     }
//! }
//! // In the plugin crate: switchyard_policy::routing_policy!(Sticky);
//!
//! let mut policy = Sticky::from_json(r#"{"header": "x-user"}"#).unwrap();
//! let all = [Candidate::new(0), Candidate::new(1)];
//! let first = policy.choose(&Request::get("/").with_header("x-user", "ann"), &all);
//! assert_eq!(first, policy.choose(&Request::get("/").with_header("x-user", "ann"), &all));
//! ```

pub mod bindings;
pub mod config;
pub mod ewma;
pub mod hash;
pub mod health;
pub mod host;
pub mod pick;
pub mod recovery;
pub mod rng;
pub mod routing;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use config::ConfigError;
pub use ewma::Ewma;
pub use health::HealthPolicy;
pub use recovery::RecoveryPolicy;
pub use rng::Rng;
pub use routing::RoutingPolicy;

/// One HTTP header (lower-case name), as requests and probes carry them.
pub use bindings::routing::switchyard::policy::types::Header;

/// Exports a [`RoutingPolicy`] as the plugin's `routing` world. Use it once,
/// in the plugin crate (a `cdylib`).
#[macro_export]
macro_rules! routing_policy {
    ($policy:ty) => {
        // The export glue passes records field by field (the canonical ABI
        // flattens them).
        #[allow(clippy::too_many_arguments)]
        const _: () = {
            ::std::thread_local! {
                static POLICY: ::core::cell::RefCell<::core::option::Option<$policy>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }
            struct Export;
            impl $crate::bindings::routing::Guest for Export {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    let policy = <$policy as $crate::RoutingPolicy>::from_json(&config)?;
                    POLICY.set(::core::option::Option::Some(policy));
                    ::core::result::Result::Ok(())
                }
                fn wanted_headers() -> ::std::vec::Vec<::std::string::String> {
                    POLICY.with_borrow(|p| {
                        p.as_ref()
                            .map($crate::RoutingPolicy::wanted_headers)
                            .unwrap_or_default()
                    })
                }
                fn choose(
                    request: $crate::routing::Request,
                    candidates: ::std::vec::Vec<$crate::routing::Candidate>,
                ) -> $crate::routing::Decision {
                    POLICY.with_borrow_mut(|p| match p {
                        ::core::option::Option::Some(p) => {
                            $crate::RoutingPolicy::choose(p, &request, &candidates)
                        }
                        ::core::option::Option::None => {
                            $crate::routing::Decision::respond(503, "policy not initialised")
                        }
                    })
                }
            }
            $crate::bindings::routing::export_routing!(Export with_types_in $crate::bindings::routing);
        };
    };
}

/// Exports a [`HealthPolicy`] as the plugin's `health-check` world.
#[macro_export]
macro_rules! health_policy {
    ($policy:ty) => {
        // The export glue passes records field by field (the canonical ABI
        // flattens them).
        #[allow(clippy::too_many_arguments)]
        const _: () = {
            ::std::thread_local! {
                static POLICY: ::core::cell::RefCell<::core::option::Option<$policy>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }
            struct Export;
            impl $crate::bindings::health::Guest for Export {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    let policy = <$policy as $crate::HealthPolicy>::from_json(&config)?;
                    POLICY.set(::core::option::Option::Some(policy));
                    ::core::result::Result::Ok(())
                }
                fn wanted_headers() -> ::std::vec::Vec<::std::string::String> {
                    POLICY.with_borrow(|p| {
                        p.as_ref()
                            .map($crate::HealthPolicy::wanted_headers)
                            .unwrap_or_default()
                    })
                }
                fn evaluate(probe: $crate::health::Probe) -> $crate::health::Verdict {
                    POLICY.with_borrow_mut(|p| match p {
                        ::core::option::Option::Some(p) => {
                            $crate::HealthPolicy::evaluate(p, &probe)
                        }
                        ::core::option::Option::None => {
                            $crate::health::Verdict::Down("policy not initialised".into())
                        }
                    })
                }
                fn probe_request(
                    target: $crate::health::ProbeTarget,
                ) -> ::core::option::Option<$crate::health::CustomProbe> {
                    POLICY.with_borrow_mut(|p| {
                        p.as_mut()
                            .and_then(|p| $crate::HealthPolicy::probe_request(p, &target))
                    })
                }
            }
    $crate::bindings::health::export_health!(Export with_types_in $crate::bindings::health);
        };
    };
}

/// Exports a [`RecoveryPolicy`] as the plugin's `recovery` world.
#[macro_export]
macro_rules! recovery_policy {
    ($policy:ty) => {
        // The export glue passes records field by field (the canonical ABI
        // flattens them).
        #[allow(clippy::too_many_arguments)]
        const _: () = {
            ::std::thread_local! {
                static POLICY: ::core::cell::RefCell<::core::option::Option<$policy>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }
            struct Export;
            impl $crate::bindings::recovery::Guest for Export {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    let policy = <$policy as $crate::RecoveryPolicy>::from_json(&config)?;
                    POLICY.set(::core::option::Option::Some(policy));
                    ::core::result::Result::Ok(())
                }
                fn on_outcome(
                    stats: $crate::recovery::BackendStats,
                    outcome: $crate::recovery::Outcome,
                ) -> $crate::recovery::Action {
                    POLICY.with_borrow_mut(|p| match p {
                        ::core::option::Option::Some(p) => {
                            $crate::RecoveryPolicy::on_outcome(p, &stats, outcome)
                        }
                        ::core::option::Option::None => $crate::recovery::Action::Keep,
                    })
                }
                fn on_tick(stats: $crate::recovery::BackendStats) -> $crate::recovery::Action {
                    POLICY.with_borrow_mut(|p| match p {
                        ::core::option::Option::Some(p) => $crate::RecoveryPolicy::on_tick(p, &stats),
                        ::core::option::Option::None => $crate::recovery::Action::Keep,
                    })
                }
            }
            $crate::bindings::recovery::export_recovery!(Export with_types_in $crate::bindings::recovery);
        };
    };
}

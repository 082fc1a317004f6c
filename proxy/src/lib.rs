//! Switchyard: a reverse proxy that keeps services up.
//!
//! Request path: [`server`] accepts and speaks HTTP/1.1 and HTTP/2, [`proxy`] routes
//! with [`router`], picks a backend with [`balance`] among the usable ones of an
//! [`upstream`] pool (health from [`health`], passive ejection from [`breaker`]),
//! forwards with retries, and streams the answer back. [`state`] holds the immutable
//! snapshot every request reads; [`config`] loads and validates it; [`admin`] and
//! [`metrics`] expose it. [`tls`] holds certificates (SNI, reload) and client TLS,
//! [`acme`] obtains certificates, [`discovery`] resolves backends named by DNS.
//!
//! ## Layers
//!
//! Every module sits in one layer. A file imports only from its own layer or the
//! layers below it, and no two files import each other, directly or through
//! others, so each layer can be read and tested with only what is beneath it.
//! `tests/layers.rs` reads this table and checks every import of the crate
//! against it. Rows go from the bottom up:
//!
//! | layer | modules | what sits here |
//! |---|---|---|
//! | base | [`address_policy`], [`clock`], [`crypto`], [`error`], [`fs`], [`latency`], [`path`], [`process`], [`shard`] | leaves: the standard library and outside crates only |
//! | config | [`config`], [`membership`] | what the operator asked for: the validated file and backends added at run time |
//! | metrics | [`history`], [`metrics`], [`timeline`] | the metric handles every layer counts into, each backend's last minutes of traffic and the timeline of events; scrape-time readers sit higher, in [`scrape`] |
//! | mechanisms | [`breaker`], [`outcome`], [`plugin`], [`tls`] | self-contained machines: the breaker and the outcomes it judges, the WebAssembly host and its hot-swappable slots, certificates |
//! | upstream | [`balance`], [`health`], [`rollout`], [`traffic`], [`upstream`] | pools of backends and their shared state: native balancing, health checks (with their plugin verdict seam), traffic splits and rollout state |
//! | policy | [`policy`], [`router`], [`state`] | where a request goes: host and path routing, the plugin-or-native select step and breaker seam, and the snapshot of routers and pools |
//! | proxy | [`conn`], [`proxy`] | one request from its head to the end of its answer, and what it shares with its connection |
//! | services | [`acme`], [`alerts`], [`cluster`], [`discovery`], [`persist`], [`scrape`] | what the server runs beside the request path: certificates, alerts, the fleet, DNS, the state file, scrape-time metrics |
//! | server | [`server`] | the running proxy: listeners, config application, shutdown |
//! | control | [`reload`], [`systemd`], [`upgrade`] | driving a running server: reloads, the service manager, zero-downtime upgrades |
//! | admin | [`admin`] | the admin API |
//! | binary | `main`, [`ctl`], [`demo`], [`logging`], [`plugin_tool`] | the command line: `main.rs` and what only it uses |

#![forbid(unsafe_code)]

pub mod acme;
pub mod address_policy;
pub mod admin;
pub mod alerts;
pub mod balance;
pub mod breaker;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod crypto;
pub mod ctl;
pub mod demo;
pub mod discovery;
pub mod error;
pub mod fs;
pub mod health;
pub mod history;
pub mod latency;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod outcome;
pub mod path;
pub mod persist;
pub mod plugin;
pub mod plugin_tool;
pub mod policy;
pub mod process;
pub mod proxy;
pub mod reload;
pub mod rollout;
pub mod router;
pub mod scrape;
pub mod server;
pub mod shard;
pub mod state;
pub mod systemd;
pub mod timeline;
pub mod tls;
pub mod traffic;
pub mod upgrade;
pub mod upstream;

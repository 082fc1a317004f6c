//! Switchyard: a reverse proxy that keeps services up.
//!
//! Request path: [`server`] accepts and speaks HTTP/1.1 and HTTP/2, [`proxy`] routes
//! with [`router`], picks a backend with [`balance`] among the usable ones of an
//! [`upstream`] pool (health from [`health`], passive ejection from [`breaker`]),
//! forwards with retries, and streams the answer back. [`state`] holds the immutable
//! snapshot every request reads; [`config`] loads and validates it; [`admin`] and
//! [`metrics`] expose it. [`tls`] holds certificates (SNI, reload) and client TLS,
//! [`acme`] obtains certificates, [`discovery`] resolves backends named by DNS.

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
pub mod ctl;
pub mod demo;
pub mod discovery;
pub mod error;
pub mod fs;
pub mod health;
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
pub mod state;
pub mod systemd;
pub mod tls;
pub mod traffic;
pub mod upgrade;
pub mod upstream;

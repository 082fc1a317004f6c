//! Running under systemd: readiness, reload and stop notifications, the watchdog,
//! a status line for `systemctl status`, and socket activation.
//!
//! - `READY=1` once every listener is bound and serving and the first health round
//!   is done (or its time is up), see [`announce_ready`].
//! - `RELOADING=1` with `MONOTONIC_USEC`, then `READY=1`, around every config reload
//!   (SIGHUP, `POST /reload`, a changed file).
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, sent from a task on the async runtime
//!   and only while [`Server::serving`] holds: a runtime whose workers are stuck,
//!   or whose accept loops died, stops feeding the watchdog and systemd restarts it.
//! - `STATUS=` with pools usable and backends down, refreshed as it changes.
//! - `STOPPING=1` when shutdown begins; `MAINPID=` when an upgrade hands over.

pub mod activation;
pub mod notify;

use std::sync::Arc;
use std::time::Duration;

pub use notify::{
    Notify, hand_over, monotonic_usec, notify, reloading, stopping, watchdog, watchdog_period,
};

use crate::clock;
use crate::health::HealthStatus;
use crate::server::Server;
use crate::state::Snapshot;

/// How often the status line is refreshed when no watchdog asks for more.
const STATUS_REFRESH: Duration = Duration::from_secs(5);

/// A one-line summary of the proxy for `systemctl status`, e.g. `serving: 2/3 pools
/// usable, 1/6 backends down; no usable backend in: api`.
pub fn status_line(snapshot: &Snapshot) -> String {
    let now = clock::now_ms();
    let pools = snapshot.pools.iter_sorted();
    let unusable: Vec<&str> = pools
        .iter()
        .filter(|p| p.usable_count(now) == 0)
        .map(|p| p.name.as_ref())
        .collect();
    let backends: usize = pools.iter().map(|p| p.backends.len()).sum();
    let down: usize = pools
        .iter()
        .flat_map(|p| p.backends.iter())
        .filter(|b| b.state.health.status() == HealthStatus::Down)
        .count();
    let mut line = format!(
        "serving: {}/{} pools usable, {down}/{backends} backends down",
        pools.len() - unusable.len(),
        pools.len()
    );
    if !unusable.is_empty() {
        line.push_str("; no usable backend in: ");
        line.push_str(&unusable.join(", "));
    }
    line
}

/// Waits for the first health round (bounded by the slowest probe timeout), then
/// tells systemd the proxy is ready, with its status line.
pub async fn announce_ready(server: &Server) {
    if !notify::enabled() {
        return;
    }
    let limit = server.first_health_round_limit();
    if !server.first_health_round(limit).await {
        tracing::info!(
            waited_ms = limit.as_millis() as u64,
            "first health round not finished in time; reporting ready anyway"
        );
    }
    let status = status_line(&server.snapshot());
    notify(&[Notify::Ready, Notify::Status(&status)]);
}

/// `READY=1` and the status line after a reload (whatever its outcome: the proxy
/// runs either config).
pub fn reloaded(server: &Server, outcome: Result<(), &str>) {
    let status = match outcome {
        Ok(()) => status_line(&server.snapshot()),
        Err(e) => format!(
            "reload failed, running config kept: {}",
            e.lines().next().unwrap_or("")
        ),
    };
    notify(&[Notify::Ready, Notify::Status(&status)]);
}

/// Feeds the watchdog (every half `WATCHDOG_USEC`) while the proxy serves and keeps
/// the status line current, until shutdown. Does nothing when systemd is not
/// listening.
pub fn supervise(server: Arc<Server>) {
    if !notify::enabled() {
        return;
    }
    let half = watchdog_period().map(|period| period / 2);
    let stop = server.shutdown_token();
    tokio::spawn(async move {
        let mut last_status = String::new();
        let mut status_tick = tokio::time::interval(STATUS_REFRESH);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Without a watchdog this interval is never polled.
        let mut watchdog_tick = tokio::time::interval(half.unwrap_or(STATUS_REFRESH));
        watchdog_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let ping = tokio::select! {
                _ = watchdog_tick.tick(), if half.is_some() => true,
                _ = status_tick.tick() => false,
                () = stop.cancelled() => break,
            };
            if !server.serving() {
                if ping {
                    tracing::warn!("the proxy is not serving: the systemd watchdog is not fed");
                }
                continue;
            }
            let status = status_line(&server.snapshot());
            let changed = status != last_status;
            match (ping, changed) {
                (true, true) => notify::watchdog(Some(&status)),
                (true, false) => notify::watchdog(None),
                (false, true) => notify(&[Notify::Status(&status)]),
                (false, false) => {}
            }
            last_status = status;
        }
    });
}

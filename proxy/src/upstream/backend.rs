//! One backend and the state about it that must outlive config reloads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use tokio_util::sync::CancellationToken;

use crate::breaker::Breaker;
use crate::health::HealthState;
use crate::history::{History, Totals};
use crate::latency::LatencyHistogram;
use crate::upstream::UpstreamClient;

/// A backend as one config snapshot sees it: address and configured weight, plus a
/// handle on the [`BackendState`] that survives reloads (keyed by pool and address).
#[derive(Debug, Clone)]
pub struct Backend {
    pub address: SocketAddr,
    /// `ip:port`, the key used in the admin API, metrics and logs.
    pub key: Arc<str>,
    /// The authority used in upstream request URIs.
    pub authority: Authority,
    /// `https` when the pool speaks TLS to its backends.
    pub scheme: Scheme,
    /// The DNS name this address was resolved from, if any.
    pub origin: Option<Arc<str>>,
    /// The operator's name for it (`name = "alpha"` in the config), if any.
    pub name: Option<Arc<str>>,
    /// The backend's own client when its pool speaks TLS (else the shared one is used).
    pub client: Option<Arc<UpstreamClient>>,
    pub state: Arc<BackendState>,
}

impl Backend {
    /// A backend with fresh state.
    pub fn new(address: SocketAddr, weight: u32) -> Self {
        Self::with_state(address, Arc::new(BackendState::new(weight)))
    }

    /// A backend that keeps existing state (health, breaker, counters) from a previous snapshot.
    pub fn with_state(address: SocketAddr, state: Arc<BackendState>) -> Self {
        let key: Arc<str> = address.to_string().into();
        let authority =
            Authority::try_from(key.as_ref()).unwrap_or_else(|_| Authority::from_static("invalid"));
        Self {
            address,
            key,
            authority,
            scheme: Scheme::HTTP,
            origin: None,
            name: None,
            client: None,
            state,
        }
    }

    /// Gives the backend the operator's name for it.
    pub fn named(mut self, name: Option<Arc<str>>) -> Self {
        self.name = name;
        self
    }

    /// Whether `text` names this backend: its `ip:port` key or its configured name,
    /// as the admin API accepts either.
    pub fn is_called(&self, text: &str) -> bool {
        self.key.as_ref() == text || self.name.as_deref() == Some(text)
    }

    /// `alpha (127.0.0.1:9001)`, or the address alone for an unnamed backend: how
    /// messages meant for people refer to it.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} ({})", self.key),
            None => self.key.to_string(),
        }
    }

    /// Marks the backend as resolved from DNS name `origin`.
    pub fn resolved_from(mut self, origin: Option<Arc<str>>) -> Self {
        self.origin = origin;
        self
    }

    /// Reaches the backend over TLS through `client`.
    pub fn over_tls(mut self, client: Arc<UpstreamClient>) -> Self {
        self.scheme = Scheme::HTTPS;
        self.client = Some(client);
        self
    }

    /// The client requests to this backend go through: its own, or `shared`.
    pub fn client<'a>(&'a self, shared: &'a UpstreamClient) -> &'a UpstreamClient {
        self.client.as_deref().unwrap_or(shared)
    }

    /// The authority of an upstream request URI. Over TLS it is the client's host
    /// (HTTP/2 sends it as `:authority`, which servers prefer to `Host`); the
    /// backend's own client connects to the backend whatever it says. In plain
    /// HTTP it is the backend's `ip:port`, which the shared client connects to.
    pub fn request_authority(&self, headers: &http::HeaderMap) -> Authority {
        if self.client.is_some()
            && let Some(host) = headers
                .get(http::header::HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        {
            return host;
        }
        self.authority.clone()
    }
}

/// Operator intent for a backend, set through the admin API during deploys.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    Active = 0,
    Draining = 1,
    Drained = 2,
    Disabled = 3,
}

impl AdminState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => AdminState::Draining,
            2 => AdminState::Drained,
            3 => AdminState::Disabled,
            _ => AdminState::Active,
        }
    }

    /// Lower-case name used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Active => "active",
            AdminState::Draining => "draining",
            AdminState::Drained => "drained",
            AdminState::Disabled => "disabled",
        }
    }
}

/// Why a backend may or may not take a new request right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usability {
    Usable,
    AdminOff,
    HealthDown,
    BreakerOpen,
}

/// Everything about a backend that changes at run time. Shared by the request path,
/// the health checker and the admin API; all hot fields are atomics.
#[derive(Debug)]
pub struct BackendState {
    /// Current weight (config weight unless changed at run time).
    pub weight: AtomicU32,
    admin: AtomicU8,
    pub in_flight: AtomicU32,
    pub health: HealthState,
    pub breaker: Breaker,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    pub connect_errors: AtomicU64,
    /// Exponentially weighted moving average of response latency, microseconds, as of
    /// its last sample; read it through [`BackendState::latency_ewma_us`], which ages it.
    latency_ewma_us: AtomicU32,
    /// When the latency average last took a sample (ms clock; 0 = never).
    latency_sampled_ms: AtomicU64,
    /// Every answered request's latency, for the p99 of the backend's history.
    pub latency: LatencyHistogram,
    /// The last minutes of the backend's traffic, filled by the server's ticker.
    pub history: History,
    /// When the backend last became usable after being unusable (ms clock; 0 = since start).
    pub usable_since_ms: AtomicU64,
    /// Upgraded (WebSocket) tunnels open to this backend; each also counts in `in_flight`.
    pub tunnels: AtomicU32,
    /// Cancelled to close every open tunnel when a drain's grace period ends.
    tunnel_close: parking_lot::Mutex<CancellationToken>,
}

impl BackendState {
    /// Fresh state: health unknown, breaker closed, admin active.
    pub fn new(weight: u32) -> Self {
        Self {
            weight: AtomicU32::new(weight),
            admin: AtomicU8::new(AdminState::Active as u8),
            in_flight: AtomicU32::new(0),
            health: HealthState::default(),
            breaker: Breaker::default(),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            latency_ewma_us: AtomicU32::new(0),
            latency_sampled_ms: AtomicU64::new(0),
            latency: LatencyHistogram::default(),
            history: History::default(),
            usable_since_ms: AtomicU64::new(0),
            tunnels: AtomicU32::new(0),
            tunnel_close: parking_lot::Mutex::new(CancellationToken::new()),
        }
    }

    /// The token a new tunnel watches; it fires when the tunnels are told to close.
    pub fn tunnel_token(&self) -> CancellationToken {
        self.tunnel_close.lock().clone()
    }

    /// Closes every open tunnel (a drain's grace period is over); later tunnels get a
    /// fresh token.
    pub fn close_tunnels(&self) {
        std::mem::take(&mut *self.tunnel_close.lock()).cancel();
    }

    /// The operator's current intent.
    pub fn admin_state(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }

    /// Sets the operator's intent.
    pub fn set_admin_state(&self, state: AdminState) {
        self.admin.store(state as u8, Ordering::Relaxed);
    }

    /// Moves `Draining` to `Drained` once nothing is in flight; returns the state after.
    pub fn settle_drain(&self) -> AdminState {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.admin.compare_exchange(
                AdminState::Draining as u8,
                AdminState::Drained as u8,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        self.admin_state()
    }

    /// Whether a new request may be sent here now (no side effects).
    pub fn usability(&self, now_ms: u64) -> Usability {
        if self.admin_state() != AdminState::Active {
            Usability::AdminOff
        } else if !self.health.allows_traffic() {
            Usability::HealthDown
        } else if !self.breaker.may_admit(now_ms) {
            Usability::BreakerOpen
        } else {
            Usability::Usable
        }
    }

    /// Shorthand for `usability(now) == Usable`.
    pub fn is_usable(&self, now_ms: u64) -> bool {
        self.usability(now_ms) == Usability::Usable
    }

    /// Share of full weight (0.0..=1.0) while ramping up after recovery.
    pub fn slow_start_factor(&self, slow_start: Option<Duration>, now_ms: u64) -> f64 {
        let Some(window) = slow_start else {
            return 1.0;
        };
        let since = self.usable_since_ms.load(Ordering::Relaxed);
        if since == 0 || window.is_zero() {
            return 1.0;
        }
        let elapsed = now_ms.saturating_sub(since) as f64;
        (elapsed / window.as_millis() as f64).clamp(0.05, 1.0)
    }

    /// Weight after slow start, used by weighted algorithms.
    pub fn effective_weight(&self, slow_start: Option<Duration>, now_ms: u64) -> f64 {
        f64::from(self.weight.load(Ordering::Relaxed)) * self.slow_start_factor(slow_start, now_ms)
    }

    /// The counters a point of [`BackendState::history`] is measured from.
    pub fn totals(&self) -> Totals {
        Totals {
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            latency: self.latency.counts(),
        }
    }

    /// The latency average as selection should see it at `now_ms`: the average of
    /// recent answers, halved for every [`LATENCY_HALF_LIFE_MS`] without a sample. A
    /// backend that gets no traffic thus looks faster and faster until a latency-aware
    /// balancer tries it again (as Finagle's and linkerd's decaying averages do), so
    /// an average measured during a bad moment cannot starve a backend that recovered.
    pub fn latency_ewma_us(&self, now_ms: u64) -> u32 {
        let value = self.latency_ewma_us.load(Ordering::Relaxed);
        let sampled = self.latency_sampled_ms.load(Ordering::Relaxed);
        aged(value, now_ms.saturating_sub(sampled))
    }

    /// Folds one response latency, measured at `now_ms`, into the average: by 1/8
    /// when the average is fresh, by more the staler it is, so a backend tried again
    /// after a long idle period is judged by what it does now.
    pub fn record_latency(&self, latency: Duration, now_ms: u64) {
        let sample = latency.as_micros().min(u128::from(u32::MAX)) as f64;
        let age = now_ms.saturating_sub(self.latency_sampled_ms.swap(now_ms, Ordering::Relaxed));
        let staleness = 1.0 - half_lives(age);
        let _ = self
            .latency_ewma_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                if old == 0 {
                    return Some(sample as u32);
                }
                let current = f64::from(old) * half_lives(age);
                let alpha = staleness.max(1.0 / 8.0);
                Some((current + alpha * (sample - current)).round() as u32)
            });
    }
}

/// How long a backend's latency average keeps half its weight without a sample.
pub const LATENCY_HALF_LIFE_MS: u64 = 1000;

/// `value` after `age_ms` without a sample.
fn aged(value: u32, age_ms: u64) -> u32 {
    (f64::from(value) * half_lives(age_ms)).round() as u32
}

/// `0.5^(age / half-life)`: what is left of a latency average after `age_ms`.
fn half_lives(age_ms: u64) -> f64 {
    if age_ms == 0 {
        return 1.0;
    }
    0.5f64.powf(age_ms as f64 / LATENCY_HALF_LIFE_MS as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_average_without_samples_fades_and_a_fresh_sample_replaces_it() {
        let state = BackendState::new(1);
        let t0 = 10_000;
        state.record_latency(Duration::from_millis(40), t0);
        assert_eq!(state.latency_ewma_us(t0), 40_000);
        // Busy: samples a millisecond apart move it by about 1/8 each.
        state.record_latency(Duration::from_millis(8), t0 + 1);
        let busy = state.latency_ewma_us(t0 + 1);
        assert!((35_900..=36_100).contains(&busy), "{busy}");
        // Idle: half as much after each half-life.
        assert_eq!(state.latency_ewma_us(t0 + 1 + 1000), busy / 2);
        assert_eq!(state.latency_ewma_us(t0 + 1 + 3000), busy / 8);
        // Tried again after ten idle seconds: the new answer is most of the average.
        state.record_latency(Duration::from_millis(2), t0 + 10_001);
        let fresh = state.latency_ewma_us(t0 + 10_001);
        assert!((1_950..=2_050).contains(&fresh), "{fresh}");
    }
}

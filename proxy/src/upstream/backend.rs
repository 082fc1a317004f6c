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
            client: None,
            state,
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
    /// Exponentially weighted moving average of response latency, microseconds.
    pub latency_ewma_us: AtomicU32,
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

    /// Folds one response latency into the EWMA (alpha = 1/8).
    pub fn record_latency(&self, latency: Duration) {
        let sample = latency.as_micros().min(u128::from(u32::MAX)) as u32;
        let _ = self
            .latency_ewma_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else {
                    old - old / 8 + sample / 8
                })
            });
    }
}

//! Certificates from an ACME CA (Let's Encrypt, or any RFC 8555 server): obtained at
//! start when none is stored, renewed ahead of expiry, stored 0600, and hot-swapped
//! into the listener's certificate store. Domain control is proven with HTTP-01
//! (answered by every plain listener) or TLS-ALPN-01 (answered by the TLS listener).
//! A failed order is logged, counted in the listener's ACME slot, and retried with
//! exponential backoff between `retry_min` and `retry_max`.

mod http;
mod order;
mod storage;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use order::OrderError;
pub use storage::{Storage, write_private};

use crate::config::AcmeConfig;
use crate::tls::{LoadedCert, TlsRegistry};

/// A stored or renewed certificate is looked at again at least this often, so a
/// clock change or a long suspend cannot postpone a renewal indefinitely.
const RECHECK: Duration = Duration::from_secs(12 * 3600);

struct Running {
    config: AcmeConfig,
    cancel: CancellationToken,
}

/// Runs the `[acme]` section: one task that keeps a certificate for its names.
pub struct AcmeManager {
    running: Mutex<Option<Running>>,
    registry: Arc<TlsRegistry>,
    shutdown: CancellationToken,
}

impl AcmeManager {
    /// A manager whose task stops at `shutdown`.
    pub fn new(registry: Arc<TlsRegistry>, shutdown: CancellationToken) -> Self {
        Self {
            running: Mutex::new(None),
            registry,
            shutdown,
        }
    }

    /// Starts, restarts or stops the task to match `config` (a start or a reload).
    pub fn sync(&self, config: Option<&AcmeConfig>) {
        let mut running = self.running.lock();
        if running.as_ref().map(|r| &r.config) == config {
            return;
        }
        if let Some(old) = running.take() {
            old.cancel.cancel();
            if config.is_none_or(|c| c.listener != old.config.listener) {
                self.registry
                    .acme_slot(&old.config.listener)
                    .set(Vec::new());
                self.registry.acme_updated(&old.config.listener);
            }
        }
        if let Some(config) = config {
            let cancel = self.shutdown.child_token();
            tokio::spawn(keep_certificate(
                config.clone(),
                Arc::clone(&self.registry),
                cancel.clone(),
            ));
            *running = Some(Running {
                config: config.clone(),
                cancel,
            });
        }
    }
}

/// The task: serve the stored certificate if there is one, then obtain or renew
/// whenever due, backing off after failures.
async fn keep_certificate(
    config: AcmeConfig,
    registry: Arc<TlsRegistry>,
    cancel: CancellationToken,
) {
    let slot = registry.acme_slot(&config.listener);
    let storage = Storage::new(&config.storage, &config.directory, &config.names);
    let mut current = load_stored(&config, &storage).await;
    if let Some(cert) = &current {
        info!(listener = %config.listener, names = %cert.names.join(","), not_after = cert.not_after,
            "serving the stored ACME certificate");
        slot.set(vec![Arc::clone(cert)]);
        registry.acme_updated(&config.listener);
    }
    let mut backoff = config.retry_min;
    loop {
        let wait = current
            .as_ref()
            .map_or(Duration::ZERO, |c| renewal_wait(c, &config, unix_now()));
        if !wait.is_zero() {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait.min(RECHECK)) => {}
            }
            if wait > RECHECK {
                continue;
            }
        }
        info!(listener = %config.listener, names = %config.names.join(","), directory = %config.directory,
            renewal = current.is_some(), "requesting a certificate from the ACME CA");
        let attempt = tokio::select! {
            () = cancel.cancelled() => return,
            result = order::obtain(&config, &storage, registry.challenges()) => result,
        };
        match attempt {
            Ok(cert) => {
                let cert = Arc::new(cert);
                info!(listener = %config.listener, names = %cert.names.join(","), not_after = cert.not_after,
                    "ACME certificate obtained and installed");
                slot.set(vec![Arc::clone(&cert)]);
                registry.acme_updated(&config.listener);
                slot.issued.fetch_add(1, Ordering::Relaxed);
                slot.consecutive_failures.store(0, Ordering::Relaxed);
                *slot.last_error.lock() = None;
                current = Some(cert);
                backoff = config.retry_min;
            }
            Err(e) => {
                if e.account_gone() {
                    warn!(file = %storage.account().display(), "the ACME CA does not know the stored account; a new one will be created");
                    let path = storage.account().to_path_buf();
                    let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
                }
                slot.failed.fetch_add(1, Ordering::Relaxed);
                let failures = slot.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                *slot.last_error.lock() = Some(e.to_string());
                let delay = backoff.mul_f64(0.75 + fastrand::f64() / 2.0);
                error!(listener = %config.listener, names = %config.names.join(","), error = %e, failures,
                    retry_in_ms = delay.as_millis() as u64, "ACME order failed");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                backoff = (backoff * 2).min(config.retry_max);
            }
        }
    }
}

/// The stored certificate, if it covers every configured name and is still valid.
async fn load_stored(config: &AcmeConfig, storage: &Storage) -> Option<Arc<LoadedCert>> {
    let files = storage.clone();
    let read = tokio::task::spawn_blocking(move || {
        let cert = std::fs::read(files.cert()).ok()?;
        let key = std::fs::read(files.key()).ok()?;
        Some(LoadedCert::from_pem(
            &cert,
            files.cert(),
            &key,
            files.key(),
            "acme".to_string(),
        ))
    })
    .await
    .ok()??;
    match read {
        Ok(cert) if config.names.iter().all(|n| cert.covers(n)) && cert.not_after > unix_now() => {
            Some(Arc::new(cert))
        }
        Ok(_) => {
            info!(file = %storage.cert().display(), "the stored ACME certificate is expired or lacks a configured name; requesting a new one");
            None
        }
        Err(e) => {
            warn!(error = %e, "ignoring the stored ACME certificate");
            None
        }
    }
}

/// How long until `cert` is due for renewal: `renew_before` its expiry, or a third
/// of its lifetime before it for short-lived certificates.
fn renewal_wait(cert: &LoadedCert, config: &AcmeConfig, now_unix: i64) -> Duration {
    let lifetime = (cert.not_after - cert.not_before).max(0) as u64;
    let ahead = config.renew_before.as_secs().min(lifetime / 3) as i64;
    let due = cert.not_after - ahead;
    Duration::from_secs(due.saturating_sub(now_unix).max(0) as u64)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(renew_before_days: u64) -> AcmeConfig {
        AcmeConfig {
            directory: "https://ca.test/dir".into(),
            contact: Vec::new(),
            storage: "acme".into(),
            listener: "websecure".into(),
            names: vec!["a.test".into()],
            challenge: crate::config::AcmeChallenge::Http01,
            ca: None,
            renew_before: Duration::from_secs(renew_before_days * 86400),
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
        }
    }

    fn cert(not_before: i64, not_after: i64) -> LoadedCert {
        let c = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
        let path = std::path::Path::new("a.pem");
        let mut loaded = LoadedCert::from_pem(
            c.cert.pem().as_bytes(),
            path,
            c.signing_key.serialize_pem().as_bytes(),
            path,
            "test".into(),
        )
        .unwrap();
        loaded.not_before = not_before;
        loaded.not_after = not_after;
        loaded
    }

    #[test]
    fn renews_ahead_of_expiry_or_a_third_of_a_short_lifetime_before() {
        let day = 86400;
        let now = 1_000 * day;
        // 90-day certificate issued today, renewed 30 days before expiry: in 60 days.
        let ninety = cert(now, now + 90 * day);
        assert_eq!(
            renewal_wait(&ninety, &config(30), now),
            Duration::from_secs(60 * 86400)
        );
        // 6-day certificate: 30 days ahead would be at once; a third of it is 2 days.
        let six = cert(now, now + 6 * day);
        assert_eq!(
            renewal_wait(&six, &config(30), now),
            Duration::from_secs(4 * 86400)
        );
        // Already due: no wait.
        assert_eq!(
            renewal_wait(&ninety, &config(30), now + 70 * day),
            Duration::ZERO
        );
    }
}

//! Delivery to one receiver: a bounded queue and one task that POSTs each
//! notification, retrying with exponential backoff. A receiver that is down or slow
//! holds up only its own queue; what cannot be delivered is dropped and counted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::AlertConfig;
use crate::metrics::Metrics;

/// First pause before a retry; doubles each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One webhook call's worth: the JSON body and how many alerts it carries.
#[derive(Debug)]
pub struct Notification {
    pub body: Bytes,
    pub alerts: u64,
}

/// Starts the delivery task of a receiver; it ends when the queue's sender is
/// dropped (the receiver left the config) or at shutdown.
pub fn spawn(
    config: AlertConfig,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> mpsc::Sender<Notification> {
    let (tx, rx) = mpsc::channel(config.queue);
    tokio::spawn(async move {
        tokio::select! {
            () = run(config, rx, metrics) => {}
            () = stop.cancelled() => {}
        }
    });
    tx
}

async fn run(config: AlertConfig, mut queue: mpsc::Receiver<Notification>, metrics: Arc<Metrics>) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.timeout));
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build(connector);
    while let Some(notification) = queue.recv().await {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            match post(&client, &config, &notification.body).await {
                Ok(()) => {
                    metrics.alerts_sent(&config.name, notification.alerts);
                    debug!(receiver = %config.name, alerts = notification.alerts, "alerts delivered");
                    break;
                }
                Err(Failure::Final(why)) => {
                    metrics.alerts_dropped(&config.name, "failed", notification.alerts);
                    warn!(receiver = %config.name, url = %config.url, why, "alert receiver refused the notification; dropped");
                    break;
                }
                Err(Failure::Retry(why)) if attempt < config.retries => {
                    attempt += 1;
                    debug!(receiver = %config.name, why, attempt, "alert delivery failed; retrying");
                    let jitter = backoff.mul_f64(0.2 * fastrand::f64());
                    tokio::time::sleep(backoff + jitter).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(Failure::Retry(why)) => {
                    metrics.alerts_dropped(&config.name, "failed", notification.alerts);
                    warn!(receiver = %config.name, url = %config.url, why, attempts = attempt + 1,
                        "alert delivery failed on every attempt; dropped");
                    break;
                }
            }
        }
    }
}

/// Why a delivery attempt failed.
enum Failure {
    /// Worth another try (unreachable, timeout, 5xx, 408, 429).
    Retry(String),
    /// The receiver will not take it (another 4xx).
    Final(String),
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    config: &AlertConfig,
    body: &Bytes,
) -> Result<(), Failure> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(config.url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("switchyard/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in &config.headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(body.clone()))
        .map_err(|e| Failure::Final(e.to_string()))?;
    let response = match tokio::time::timeout(config.timeout, client.request(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Err(Failure::Retry(e.to_string())),
        Err(_) => return Err(Failure::Retry("timed out".into())),
    };
    let status = response.status();
    // Read (and discard) the answer so the connection can be reused.
    let _ = tokio::time::timeout(config.timeout, response.into_body().collect()).await;
    match status {
        s if s.is_success() => Ok(()),
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
            Err(Failure::Retry(status.to_string()))
        }
        s if s.is_server_error() => Err(Failure::Retry(status.to_string())),
        _ => Err(Failure::Final(status.to_string())),
    }
}

//! Protocol upgrades (WebSocket): after a 101, bytes are copied both ways until either
//! side closes. The request counts as in flight for as long as the tunnel lives, and
//! the tunnel is closed when its backend's drain grace period ends.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

use super::{BodyEnd, BodyOutcome, Completion};

/// Joins the client's and the backend's upgraded connections in a background task.
pub fn spawn_tunnel(client: OnUpgrade, backend: OnUpgrade, mut done: Completion) {
    let state = done.upstream.as_ref().map(|(_, b)| Arc::clone(&b.state));
    let close = state.as_ref().map(|s| s.tunnel_token()).unwrap_or_default();
    if let Some(s) = &state {
        s.tunnels.fetch_add(1, Ordering::AcqRel);
    }
    tokio::spawn(async move {
        let outcome = match tokio::try_join!(client, backend) {
            Ok((client, backend)) => {
                let mut client = TokioIo::new(client);
                let mut backend = TokioIo::new(backend);
                let copied = tokio::select! {
                    copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => copied,
                    () = close.cancelled() => {
                        debug!("upgraded connection closed: the backend's drain grace is over");
                        Ok((0, 0))
                    }
                };
                match copied {
                    Ok((up, down)) => {
                        debug!(
                            bytes_up = up,
                            bytes_down = down,
                            "upgraded connection closed"
                        );
                        BodyOutcome::Complete
                    }
                    Err(e) => {
                        debug!(error = %e, "upgraded connection failed");
                        BodyOutcome::Abandoned
                    }
                }
            }
            Err(e) => {
                debug!(error = %e, "upgrade did not complete");
                BodyOutcome::Abandoned
            }
        };
        if let Some(s) = &state {
            s.tunnels.fetch_sub(1, Ordering::AcqRel);
        }
        done.finish(outcome);
    });
}

//! Protocol upgrades (WebSocket): after a 101, bytes are copied both ways until either
//! side closes. The request counts as in flight for as long as the tunnel lives.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

use super::{BodyEnd, BodyOutcome, Completion};

/// Joins the client's and the backend's upgraded connections in a background task.
pub fn spawn_tunnel(client: OnUpgrade, backend: OnUpgrade, mut done: Completion) {
    tokio::spawn(async move {
        let outcome = match tokio::try_join!(client, backend) {
            Ok((client, backend)) => {
                let mut client = TokioIo::new(client);
                let mut backend = TokioIo::new(backend);
                match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
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
        done.finish(outcome);
    });
}

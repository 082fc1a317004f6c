//! A connection cap that a reload can raise or lower while connections are open.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// A semaphore of connection permits whose size follows the config.
///
/// Raising the cap adds permits at once. Lowering it takes back the free permits at
/// once and the rest as connections close, so the cap is never exceeded for long
/// and no open connection is cut.
#[derive(Debug)]
pub struct ConnectionCap {
    semaphore: Arc<Semaphore>,
    size: Mutex<usize>,
}

impl ConnectionCap {
    /// A cap of `size` connections.
    pub fn new(size: usize) -> Self {
        let size = size.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            semaphore: Arc::new(Semaphore::new(size)),
            size: Mutex::new(size),
        }
    }

    /// The semaphore accept loops take one permit from per connection.
    pub fn semaphore(&self) -> Arc<Semaphore> {
        Arc::clone(&self.semaphore)
    }

    /// The configured size.
    pub fn size(&self) -> usize {
        *self.size.lock()
    }

    /// Changes the cap to `size`; see the type's docs for how lowering works.
    pub fn resize(&self, size: usize) {
        let size = size.clamp(1, Semaphore::MAX_PERMITS);
        let mut current = self.size.lock();
        if size > *current {
            self.semaphore.add_permits(size - *current);
        } else if size < *current {
            let excess = *current - size;
            let pending = excess - self.semaphore.forget_permits(excess);
            if pending > 0 {
                // The semaphore is fair: while this waits, no new connection gets
                // ahead of it, which is what a lower cap asks for.
                let semaphore = Arc::clone(&self.semaphore);
                let pending = u32::try_from(pending).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(permits) = semaphore.acquire_many_owned(pending).await {
                        permits.forget();
                    }
                });
            }
        }
        *current = size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lowering_waits_for_open_connections_and_raising_is_immediate() {
        let cap = ConnectionCap::new(4);
        let held: Vec<_> = (0..3)
            .map(|_| cap.semaphore().try_acquire_owned().unwrap())
            .collect();
        cap.resize(2);
        assert_eq!(cap.size(), 2);
        assert_eq!(cap.semaphore().available_permits(), 0);
        drop(held);
        tokio::task::yield_now().await;
        assert_eq!(
            cap.semaphore().available_permits(),
            2,
            "the cap settles at 2"
        );
        cap.resize(5);
        assert_eq!(cap.semaphore().available_permits(), 5);
    }
}

//! The idle HTTP/1 connections to one backend, kept as a stack: the connection
//! given back last is the one taken next.
//!
//! Taking the most recent one keeps traffic on the fewest, warmest connections: a
//! burst that needed many leaves the extra ones untouched at the bottom, where they
//! age past `limits.upstream_idle_timeout` and are closed, while the few that
//! steady traffic needs are never idle for long, so a backend with a short
//! keep-alive timeout of its own rarely closes one just as a request takes it. A
//! queue would hand out every kept connection in turn and keep them all alive.
//!
//! The lock is held for a push, a pop or the periodic sweep's scan; closing a
//! connection, and checking the one a request is about to take, happen outside it.

use parking_lot::Mutex;

/// Idle values, each with when it was given back, newest on top.
pub(super) struct IdleStack<T> {
    entries: Mutex<Vec<Entry<T>>>,
    limit: usize,
}

struct Entry<T> {
    value: T,
    since_ms: u64,
}

impl<T> Entry<T> {
    fn expired(&self, now_ms: u64, timeout_ms: u64) -> bool {
        now_ms.saturating_sub(self.since_ms) > timeout_ms
    }
}

impl<T> IdleStack<T> {
    /// An empty stack that keeps at most `limit` values (at least one).
    pub fn new(limit: usize) -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            limit: limit.max(1),
        }
    }

    /// Puts `value` on top, given back at `now_ms`; hands it back when the stack
    /// is full, for the caller to drop outside the lock.
    pub fn push(&self, value: T, now_ms: u64) -> Result<(), T> {
        let mut entries = self.entries.lock();
        if entries.len() >= self.limit {
            return Err(value);
        }
        entries.push(Entry {
            value,
            since_ms: now_ms,
        });
        Ok(())
    }

    /// The newest value idle for at most `timeout_ms` that `fit` accepts; the ones
    /// above it, expired or refused, are dropped.
    pub fn pop_fit(
        &self,
        now_ms: u64,
        timeout_ms: u64,
        mut fit: impl FnMut(&mut T) -> bool,
    ) -> Option<T> {
        loop {
            let mut entry = self.entries.lock().pop()?;
            if !entry.expired(now_ms, timeout_ms) && fit(&mut entry.value) {
                return Some(entry.value);
            }
        }
    }

    /// Drops every value idle for longer than `timeout_ms` or refused by `fit`;
    /// the rest keep their order. `fit` runs under the lock, so it must be quick
    /// (a readiness check): a request that came meanwhile waits for the scan
    /// instead of finding the stack empty and opening a connection. What is
    /// dropped is dropped after the lock is released.
    pub fn expire(&self, now_ms: u64, timeout_ms: u64, mut fit: impl FnMut(&mut T) -> bool) {
        let mut entries = self.entries.lock();
        let gone: Vec<Entry<T>> = entries
            .extract_if(.., |entry| {
                entry.expired(now_ms, timeout_ms) || !fit(&mut entry.value)
            })
            .collect();
        drop(entries);
        drop(gone);
    }

    /// Values held right now.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack_of(values: &[(u32, u64)], limit: usize) -> IdleStack<u32> {
        let stack = IdleStack::new(limit);
        for &(value, since) in values {
            assert!(stack.push(value, since).is_ok());
        }
        stack
    }

    fn drain(stack: &IdleStack<u32>, now_ms: u64) -> Vec<u32> {
        std::iter::from_fn(|| stack.pop_fit(now_ms, 1_000, |_| true)).collect()
    }

    #[test]
    fn the_value_given_back_last_is_taken_first() {
        let stack = stack_of(&[(1, 0), (2, 0), (3, 0)], 8);
        assert_eq!(drain(&stack, 0), [3, 2, 1]);
        assert!(stack.is_empty());
    }

    #[test]
    fn a_full_stack_hands_the_value_back() {
        let stack = stack_of(&[(1, 0), (2, 0)], 2);
        assert_eq!(stack.push(3, 0), Err(3));
        assert_eq!(stack.len(), 2);
    }

    #[test]
    fn taking_skips_and_drops_expired_and_refused_values() {
        // 1 and 2 given back at 0, 3 and 4 at 900: at 1,500 the first two are past
        // a 1,000 ms timeout; 4 is refused.
        let stack = stack_of(&[(1, 0), (2, 0), (3, 900), (4, 900)], 8);
        assert_eq!(stack.pop_fit(1_500, 1_000, |v| *v != 4), Some(3));
        assert_eq!(stack.len(), 2);
        assert_eq!(stack.pop_fit(1_500, 1_000, |_| true), None);
        assert!(stack.is_empty());
    }

    #[test]
    fn expiring_keeps_the_order_of_what_is_left() {
        let stack = stack_of(&[(1, 0), (2, 600), (3, 700), (4, 800)], 8);
        stack.expire(1_500, 1_000, |v| *v != 3);
        assert_eq!(drain(&stack, 1_500), [4, 2]);
    }
}

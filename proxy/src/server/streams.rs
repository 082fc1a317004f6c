//! The HTTP/2 streams of one client connection, run inside that connection's task.
//!
//! hyper hands every stream it accepts to an executor. With tokio's, each stream
//! becomes a task of its own: a task allocation that copies the whole request
//! future, a slot in the runtime's task list taken under its lock, and wake-ups
//! that may move one connection's work across both workers, each side then
//! contending for the connection's shared stream state. HAProxy runs a
//! connection's streams on the thread that owns the connection; so does this:
//! [`ConnExecutor`] queues a stream in [`ConnStreams`], a set that the connection's
//! own task polls right after the connection (see `server::listener`).
//!
//! A stream queued here lives as long as its connection: when the connection
//! ends, the streams still running are dropped, so their requests are cancelled
//! and release what they hold, as an HTTP/1 request does when its client leaves.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};

/// One stream's future, as hyper built it.
type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

tokio::task_local! {
    /// The streams of the connection whose task is running.
    static STREAMS: RefCell<ConnStreams>;
}

/// The streams of one connection, waiting to be polled by its task.
#[derive(Default)]
pub struct ConnStreams {
    /// Created at the first stream: an HTTP/1 connection never needs one.
    running: Option<FuturesUnordered<StreamFuture>>,
}

impl ConnStreams {
    /// Runs `connection` (a future that serves one client connection) with a set of
    /// its own, where [`ConnExecutor`] puts the streams it is handed.
    pub fn scope<F: Future>(connection: F) -> impl Future<Output = F::Output> {
        STREAMS.scope(RefCell::new(Self::default()), connection)
    }

    /// Polls the current connection's streams until none can make progress. Call it
    /// after polling the connection itself, in the same task: a stream hyper accepted
    /// during that poll starts here. Never ready.
    pub fn poll_running(cx: &mut Context<'_>) -> Poll<()> {
        // Outside a connection's scope there is nothing to poll: the executor spawns.
        let _ = STREAMS.try_with(|streams| {
            let mut streams = streams.borrow_mut();
            if let Some(running) = streams.running.as_mut() {
                // Each ready item is a stream that finished; the set returns
                // `Pending` (having arranged a wake-up) when none can go on.
                while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {}
            }
        });
        Poll::Pending
    }
}

/// hyper's executor for client connections: a stream joins its connection's set;
/// anything handed over outside a connection's scope, or while that set is being
/// polled (an HTTP/2 upgrade's relay, started by its stream), becomes a tokio task.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnExecutor;

impl<F> hyper::rt::Executor<F> for ConnExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        let mut future = Some(future);
        let _ = STREAMS.try_with(|streams| {
            if let Ok(mut streams) = streams.try_borrow_mut()
                && let Some(future) = future.take()
            {
                streams
                    .running
                    .get_or_insert_with(FuturesUnordered::new)
                    .push(Box::pin(future));
            }
        });
        if let Some(future) = future {
            tokio::spawn(future);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper::rt::Executor;

    use super::*;

    /// How many streams of the current connection are running (0 outside one).
    fn running() -> usize {
        STREAMS
            .try_with(|streams| streams.borrow().running.as_ref().map_or(0, |r| r.len()))
            .unwrap_or(0)
    }

    /// Polls `ConnStreams` beside `connection` the way the listener does (inside the
    /// scope, as the listener's connection loop is).
    async fn drive<F: Future + Unpin>(mut connection: F) -> F::Output {
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = Pin::new(&mut connection).poll(cx) {
                return Poll::Ready(out);
            }
            let _ = ConnStreams::poll_running(cx);
            Poll::Pending
        })
        .await
    }

    #[tokio::test]
    async fn a_stream_runs_in_the_connection_task_and_ends_with_it() {
        let done = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let finished = Arc::clone(&done);
        let seen = Arc::clone(&done);
        let connection = Box::pin(async move {
            ConnExecutor.execute(async move {
                let _ = released.await;
                finished.fetch_add(1, Ordering::SeqCst);
            });
            assert_eq!(running(), 1, "queued, not spawned");
            // Let the stream start and wait, then release it.
            tokio::task::yield_now().await;
            assert_eq!(seen.load(Ordering::SeqCst), 0);
            let _ = release.send(());
            while running() > 0 {
                tokio::task::yield_now().await;
            }
        });
        ConnStreams::scope(drive(connection)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn streams_left_running_are_dropped_with_the_connection() {
        struct Guard(Arc<AtomicUsize>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        let guard = Guard(Arc::clone(&dropped));
        let connection = Box::pin(async move {
            ConnExecutor.execute(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            });
            tokio::task::yield_now().await;
        });
        ConnStreams::scope(drive(connection)).await;
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn outside_a_connection_a_future_becomes_a_task() {
        let (sent, received) = tokio::sync::oneshot::channel();
        ConnExecutor.execute(async move {
            let _ = sent.send(());
        });
        assert_eq!(running(), 0);
        received.await.expect("the spawned future ran");
    }
}

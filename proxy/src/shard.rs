//! Shards: client connections are served on a fixed set of threads, each running a
//! single-threaded runtime with its own event loop, as HAProxy runs its threads.
//!
//! A connection, its requests, its tunnels and the backend connections they take
//! stay on the thread that was handed the connection: no task moves between
//! threads, no wake-up crosses from one to another, and what a request touches
//! stays in that core's cache. On a shared work-stealing runtime a request cost
//! about a third more user time, most of it in moving tasks and waking threads.
//!
//! Everything else (accept loops, health checks, the admin API, reloads) runs on
//! the main runtime, which hands each accepted connection to the shard serving the
//! fewest. Code that keeps per-thread state for the request path (the backend
//! connection pools) keys it by [`current`].

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

/// Work for a shard: run on its thread, inside its runtime.
type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    /// The shard this thread runs, numbered from 1; 0 on any other thread.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
    /// How many shards were started with this thread's; 0 on any other thread.
    static SIBLINGS: Cell<usize> = const { Cell::new(0) };
}

/// Shard numbers handed out so far in this process, plus one for "no shard".
static SLOTS: AtomicUsize = AtomicUsize::new(1);

/// The shard running on this thread (1 to the number of shards), or 0 on a thread
/// that is not a shard's: the main runtime, or a proxy started without shards.
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// How many shards serve connections beside this thread's, this one included; 0
/// on a thread that is not a shard's. What "every worker thread" means on a shard.
pub fn siblings() -> usize {
    SIBLINGS.with(Cell::get)
}

/// How many values of [`current`] this process can see: one more than the shards
/// started so far. Per-shard state sized by it has a place for every shard.
pub fn slots() -> usize {
    SLOTS.load(Ordering::Acquire)
}

/// Why a connection could not be handed to a shard.
#[derive(Debug, thiserror::Error)]
pub enum HandOverError {
    /// The shard's thread has stopped (the proxy is shutting down).
    #[error("shard {0} has stopped")]
    Stopped(usize),
    /// The stream could not be taken out of the accepting runtime's event loop.
    #[error("cannot move the connection to a shard: {0}")]
    Move(#[source] io::Error),
}

/// The running shards. Dropping this stops them: each thread finishes the work
/// handed to it so far, then drops its runtime and with it every task still on it.
#[derive(Debug)]
pub struct Shards {
    shards: Box<[Shard]>,
}

#[derive(Debug)]
struct Shard {
    number: usize,
    jobs: mpsc::UnboundedSender<Job>,
    /// Connections this shard is serving: its [`Seat`]s alive.
    load: Arc<AtomicUsize>,
}

impl Shards {
    /// Starts `count` shards (at least one), each on a thread of its own.
    pub fn start(count: usize) -> io::Result<Shards> {
        let count = count.max(1);
        // Numbers are unique in the process, so a second proxy started in the same
        // process (tests) never shares per-shard state with the first one's shards.
        let first = SLOTS.fetch_add(count, Ordering::AcqRel);
        let mut shards = Vec::with_capacity(count);
        for number in first..first + count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
            std::thread::Builder::new()
                .name(format!("switchyard-shard-{}", number - first + 1))
                .spawn(move || {
                    CURRENT.with(|current| current.set(number));
                    SIBLINGS.with(|siblings| siblings.set(count));
                    runtime.block_on(async move {
                        while let Some(job) = queue.recv().await {
                            job();
                        }
                    });
                })?;
            shards.push(Shard {
                number,
                jobs,
                load: Arc::default(),
            });
        }
        Ok(Shards {
            shards: shards.into_boxed_slice(),
        })
    }

    /// Connections each shard serves right now, in shard order.
    pub fn loads(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| s.load.load(Ordering::Relaxed))
            .collect()
    }

    /// Hands `stream` to the shard serving the fewest connections: `serve` runs on
    /// that shard's thread with the stream registered in its event loop, and with
    /// a [`Seat`] that counts the connection there for as long as it is kept.
    pub fn hand_over<F>(&self, stream: tokio::net::TcpStream, serve: F) -> Result<(), HandOverError>
    where
        F: FnOnce(tokio::net::TcpStream, Seat) + Send + 'static,
    {
        let shard = self
            .shards
            .iter()
            .min_by_key(|s| s.load.load(Ordering::Relaxed))
            .unwrap_or_else(|| unreachable!("there is always one shard"));
        let seat = Seat::new(&shard.load);
        let stream = stream.into_std().map_err(HandOverError::Move)?;
        let job: Job = Box::new(move || match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => serve(stream, seat),
            Err(e) => tracing::warn!(error = %e, "a shard could not take a connection"),
        });
        shard
            .jobs
            .send(job)
            .map_err(|_| HandOverError::Stopped(shard.number))
    }
}

/// One connection counted on its shard, until dropped.
#[derive(Debug)]
pub struct Seat {
    load: Arc<AtomicUsize>,
}

impl Seat {
    fn new(load: &Arc<AtomicUsize>) -> Seat {
        load.fetch_add(1, Ordering::Relaxed);
        Seat {
            load: Arc::clone(load),
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.load.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Waits (bounded) until `condition` holds.
    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A connected pair: the client's end and the accepted one.
    async fn connection(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        (client, accepted)
    }

    #[tokio::test]
    async fn connections_go_to_the_least_busy_shard_and_are_served_on_its_thread() {
        let shards = Shards::start(2).unwrap();
        assert_eq!(current(), 0, "the test's thread is no shard's");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (served_tx, mut served) = mpsc::unbounded_channel();
        let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
        let mut clients = Vec::new();
        for order in 0..4 {
            let (client, accepted) = connection(&listener).await;
            clients.push(client);
            let served_tx = served_tx.clone();
            let mut stopped = stop.subscribe();
            shards
                .hand_over(accepted, move |stream, seat| {
                    let thread = std::thread::current().name().map(str::to_owned);
                    let _ = served_tx.send((order, current(), thread));
                    assert_eq!(siblings(), 2);
                    tokio::spawn(async move {
                        let _ = stopped.recv().await;
                        drop((stream, seat));
                    });
                })
                .unwrap();
        }
        // Shards run side by side: their reports come in any order.
        let mut on = Vec::new();
        for _ in 0..4 {
            on.push(served.recv().await.unwrap());
        }
        on.sort();
        let on: Vec<_> = on
            .into_iter()
            .map(|(_, shard, thread)| (shard, thread))
            .collect();
        let (one, two) = (on[0].0, on[1].0);
        assert!(one > 0 && two > 0 && one != two, "{on:?}");
        assert_eq!(
            on,
            [
                (one, Some("switchyard-shard-1".to_string())),
                (two, Some("switchyard-shard-2".to_string())),
                (one, Some("switchyard-shard-1".to_string())),
                (two, Some("switchyard-shard-2".to_string())),
            ],
            "each connection went to the shard serving the fewest"
        );
        assert!(slots() > two, "per-shard state has a place for every shard");
        assert_eq!(shards.loads(), [2, 2]);

        let _ = stop.send(());
        until("every seat given back", || shards.loads() == [0, 0]).await;
    }

    #[tokio::test]
    async fn stopping_the_shards_closes_the_connections_they_serve() {
        let shards = Shards::start(1).unwrap();
        let load = Arc::clone(&shards.shards[0].load);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mut client, accepted) = connection(&listener).await;
        shards
            .hand_over(accepted, |stream, seat| {
                tokio::spawn(async move {
                    std::future::pending::<()>().await;
                    drop((stream, seat));
                });
            })
            .unwrap();
        until("the connection is served", || {
            load.load(Ordering::Relaxed) == 1
        })
        .await;

        drop(shards);
        until("the seat is given back", || {
            load.load(Ordering::Relaxed) == 0
        })
        .await;
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the client sees its connection closed: {read:?}"
        );
    }
}

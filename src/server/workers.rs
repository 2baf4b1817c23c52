//! Thread-per-core serving: each worker thread runs its own single-threaded Tokio runtime, and
//! every connection lives on one worker from accept to close.
//!
//! Why not one multi-threaded runtime: there, a request, its upstream connection's task and
//! the response body hop between threads (work stealing, cross-thread wake-ups), and with two
//! workers the gateway did half the work per core of one. Here a request never leaves its
//! thread: the client connection, the upstream connection (pooled per worker, see
//! `upstream::client`) and the timers are all on it. What is shared across workers is read
//! lock-free (endpoint snapshots, metric atomics) or held for nanoseconds (breaker, budget).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Worker threads, each driving a current-thread runtime until stopped.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    threads: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Workers {
    /// Starts `n` (at least one) worker threads.
    pub fn start(n: usize) -> std::io::Result<Self> {
        let mut handles = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for index in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || {
                    crate::shard::set_current_index(index);
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                    // Dropping the runtime here cancels what is left on this worker.
                })?;
            threads.push((stop, thread));
        }
        Ok(Self {
            handles,
            next: AtomicUsize::new(0),
            threads,
        })
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The worker for the next connection, round-robin: with keep-alive clients a connection
    /// is the unit of work, and round-robin spreads them evenly without any shared state
    /// beyond one counter.
    pub fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }

    /// Stops every worker (cancelling what still runs on it) and waits for the threads.
    pub fn shutdown(self) {
        for (stop, thread) in self.threads {
            let _ = stop.send(());
            if thread.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::current_index;

    #[test]
    fn connections_rotate_over_workers_that_know_their_index() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.len(), 2);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = std::sync::mpsc::channel();
            workers.next().spawn(async move {
                tx.send((
                    current_index(),
                    std::thread::current().name().map(str::to_owned),
                ))
                .unwrap();
            });
            seen.push(rx.recv().unwrap());
        }
        assert_eq!(
            seen,
            [
                (0, Some("worker-0".to_owned())),
                (1, Some("worker-1".to_owned())),
                (0, Some("worker-0".to_owned())),
                (1, Some("worker-1".to_owned())),
            ]
        );
        assert_eq!(current_index(), 0);
        workers.shutdown();
    }
}

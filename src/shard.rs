//! Per-worker cells: state that every request writes, one copy per worker thread on cache
//! lines of its own, so that two workers never write the same line. The worker threads
//! themselves are `server::workers`; this is the part the layers below the server (upstream,
//! telemetry, proxy) use, so it sits at the bottom.

use std::cell::Cell;
use std::sync::Arc;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running the caller (0 outside worker threads).
pub fn current_index() -> usize {
    INDEX.with(Cell::get)
}

/// Marks the calling thread as worker `index` (`server::workers`, when it starts one).
pub fn set_current_index(index: usize) {
    INDEX.with(|i| i.set(index));
}

/// One `T` per worker, each on cache lines of its own: state that every request writes, kept
/// apart so that two workers never write the same line. A thread reaches its own by its worker
/// index; there is one per core (the default worker count), so with more workers than cores,
/// or from threads that are not workers, some share one, which their atomics keep correct.
#[derive(Debug)]
pub struct Sharded<T>(Box<[Padded<T>]>);

#[derive(Debug)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> Sharded<T> {
    pub fn new(mut make: impl FnMut() -> T) -> Self {
        let n = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 64);
        Self((0..n).map(|_| Padded(make())).collect())
    }

    /// The calling worker's own.
    pub fn own(&self) -> &T {
        &self.0[current_index() % self.0.len()].0
    }

    /// Every worker's, for whoever adds them up.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &p.0)
    }
}

/// One reference per worker to a shared value, for requests to hold while they live.
///
/// Why: a request that keeps a shared `Arc` alive (its response body outlives the handler)
/// clones it and drops it again, and with one `Arc` for all, every worker writes the same
/// reference count twice per request: a cache line the cores pass back and forth. Each worker
/// clones its own [`WorkerRef`] instead (on a line of its own), which holds the shared value.
#[derive(Debug)]
pub struct PerWorker<T>(Sharded<Arc<WorkerRef<T>>>);

#[derive(Debug)]
#[repr(align(128))]
pub struct WorkerRef<T>(Arc<T>);

impl<T> std::ops::Deref for WorkerRef<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> PerWorker<T> {
    pub fn new(shared: &Arc<T>) -> Self {
        Self(Sharded::new(|| Arc::new(WorkerRef(shared.clone()))))
    }

    /// The calling worker's reference.
    pub fn current(&self) -> Arc<WorkerRef<T>> {
        self.0.own().clone()
    }

    /// The shared value, borrowed (nothing counted).
    pub fn get(&self) -> &T {
        self.0.own()
    }
}

//! Worker threads: the proxy's connections are served by `N` single-threaded tokio runtimes, one
//! per thread, as nghttpx's `--workers` and Envoy's `--concurrency` do. The runtime that calls
//! [`crate::Proxy::serve`] is worker 0 (it also accepts, and runs the admin listener, health
//! checks, reloads and key-set refreshes); workers 1.. are threads of their own. Each accepted
//! connection is handed to the worker serving the fewest, and every call on it stays on that
//! thread: its connection, its handler and its backend connection (each worker has its own
//! backend pool, [`PerWorker`]). A call never wakes another thread, which tokio's work-stealing
//! scheduler did once or more per call (measured: README, "Performance").
//!
//! What stays shared, through `Arc`s and atomics: the route table, metrics, the connection
//! limits, the drain signal, the token and API-key caches.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;

use crate::ProxyError;

thread_local! {
    /// The worker this thread is; 0 for every thread that is not a worker of its own (the
    /// serving runtime's threads).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// One `T` per worker; dereferences to the calling thread's own. The backend pool is one: a
/// hyper client runs its connection's task on the runtime that opened it, so a call sent
/// through another worker's pool would cross threads twice.
pub(crate) struct PerWorker<T>(Box<[T]>);

impl<T> PerWorker<T> {
    pub(crate) fn new<E>(
        workers: usize,
        make: impl FnMut(usize) -> Result<T, E>,
    ) -> Result<Self, E> {
        let items = (0..workers.max(1))
            .map(make)
            .collect::<Result<Vec<_>, E>>()?;
        Ok(Self(items.into_boxed_slice()))
    }
}

impl<T> std::ops::Deref for PerWorker<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // `new` makes at least one; a thread of another proxy with more workers wraps around.
        &self.0[WORKER.with(Cell::get) % self.0.len()]
    }
}

/// The worker with the fewest open connections (the lowest index among equals).
pub(crate) fn least_loaded(open: &[usize]) -> usize {
    open.iter()
        .enumerate()
        .min_by_key(|&(i, n)| (*n, i))
        .map_or(0, |(i, _)| i)
}

/// The worker threads of one proxy and the connections each serves.
pub(crate) struct Workers {
    /// Workers 1.. (worker 0 is the serving runtime).
    threads: Vec<WorkerThread>,
    /// Open connections per worker, worker 0 first.
    open: Arc<[AtomicUsize]>,
}

struct WorkerThread {
    handle: tokio::runtime::Handle,
    /// Dropped (or sent) to end the thread's runtime.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        // Dropping the sender ends the runtime; `stop` joins, a dropped proxy does not wait.
        self.stop.take();
    }
}

impl Workers {
    /// Starts `count - 1` worker threads (at least one worker: the serving runtime).
    pub(crate) fn start(count: usize) -> Result<Self, ProxyError> {
        let count = count.max(1);
        let threads = (1..count)
            .map(start_thread)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ProxyError::Workers)?;
        let open = (0..count).map(|_| AtomicUsize::new(0)).collect();
        Ok(Self { threads, open })
    }

    /// Serves `stream` on the least loaded worker: `serve(stream)` runs there to its end.
    pub(crate) fn spawn<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let counts: Vec<usize> = self
            .open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        let worker = least_loaded(&counts);
        self.open[worker].fetch_add(1, Ordering::Relaxed);
        let open = Open {
            open: self.open.clone(),
            worker,
        };
        let Some(thread) = worker.checked_sub(1).and_then(|i| self.threads.get(i)) else {
            tokio::spawn(async move {
                let _open = open;
                serve(stream).await;
            });
            return;
        };
        // The socket leaves this runtime's reactor and joins the worker's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "handing a connection to a worker failed");
                return;
            }
        };
        thread.handle.spawn(async move {
            let _open = open;
            match TcpStream::from_std(stream) {
                Ok(stream) => serve(stream).await,
                Err(err) => tracing::warn!(error = %err, "handing a connection to a worker failed"),
            }
        });
    }

    /// Ends the worker threads (their connections have drained, or the drain gave up) and
    /// waits for them.
    pub(crate) async fn stop(mut self) {
        let threads: Vec<_> = self
            .threads
            .iter_mut()
            .filter_map(|worker| {
                if let Some(stop) = worker.stop.take() {
                    let _ = stop.send(());
                }
                worker.thread.take()
            })
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// Counts a connection as its worker's until it ends.
struct Open {
    open: Arc<[AtomicUsize]>,
    worker: usize,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.open[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

fn start_thread(worker: usize) -> std::io::Result<WorkerThread> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("esprit-worker-{worker}"))
        .spawn(move || {
            WORKER.with(|w| w.set(worker));
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
    Ok(WorkerThread {
        handle,
        stop: Some(stop),
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_least_loaded_worker_is_the_one_serving_fewest_the_first_among_equals() {
        assert_eq!(least_loaded(&[0, 0, 0]), 0);
        assert_eq!(least_loaded(&[1, 0, 0]), 1);
        assert_eq!(least_loaded(&[1, 1, 0]), 2);
        assert_eq!(least_loaded(&[3, 1, 2]), 1);
        assert_eq!(least_loaded(&[]), 0);
    }

    /// Connections spread over the workers, each served on its worker's thread, where
    /// `PerWorker` gives that worker's own item.
    #[tokio::test]
    async fn each_connection_is_served_on_its_own_workers_thread_with_its_own_items() {
        let workers = Workers::start(3).unwrap();
        let items = Arc::new(PerWorker::new(3, Ok::<_, ()>).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen, mut served) = tokio::sync::mpsc::unbounded_channel();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            let (stream, _) = listener.accept().await.unwrap();
            let (items, seen) = (items.clone(), seen.clone());
            workers.spawn(stream, move |stream| async move {
                let thread = std::thread::current().name().map(str::to_owned);
                seen.send((**items, thread)).unwrap();
                // Open until the client closes: the next connection goes elsewhere.
                let mut stream = stream;
                let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut [0u8; 1]).await;
            });
        }
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(served.recv().await.unwrap());
        }
        got.sort();
        assert_eq!(got[0].0, 0);
        assert_ne!(got[0].1.as_deref(), Some("esprit-worker-1"));
        assert_eq!(got[1], (1, Some("esprit-worker-1".to_owned())));
        assert_eq!(got[2], (2, Some("esprit-worker-2".to_owned())));
        drop(clients);
        workers.stop().await;
    }
}

//! The executor hyper spawns its per-stream tasks on.

use std::future::Future;

/// Spawns on tokio, boxed. hyper spawns a task per stream on both sides (the server's stream
/// with our handler future, the client's body pipe and response future inside an enum as large
/// as its connection task), and tokio moves a task's future by value several times between
/// `spawn` and completion: boxed, a pointer moves instead of the whole state.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BoxingExecutor;

impl<F> hyper::rt::Executor<F> for BoxingExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        #[cfg(test)]
        spawned::record::<F>();
        tokio::spawn(Box::pin(future));
    }
}

/// What the tests learn of the futures hyper spawns (its types cannot be named outside hyper).
#[cfg(test)]
pub(crate) mod spawned {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static LARGEST_CLIENT_TASK: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn record<F>() {
        if std::any::type_name::<F>().starts_with("hyper::proto::h2::client::") {
            LARGEST_CLIENT_TASK.fetch_max(std::mem::size_of::<F>(), Ordering::Relaxed);
        }
    }

    /// The size of the largest task hyper's HTTP/2 client has spawned in this process.
    pub(crate) fn largest_client_task() -> usize {
        LARGEST_CLIENT_TASK.load(Ordering::Relaxed)
    }
}

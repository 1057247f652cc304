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
        tokio::spawn(Box::pin(future));
    }
}

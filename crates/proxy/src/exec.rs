//! The executor hyper spawns its per-stream tasks on.

use std::future::Future;

/// Spawns on tokio, boxed. hyper's server spawns a task per stream (holding our handler's
/// future), and tokio moves a task's future by value several times between `spawn` and
/// completion: boxed, a pointer moves instead of the whole state.
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

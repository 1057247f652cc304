//! Process signals.

use std::future::Future;

/// Reloads the proxy's configuration on each SIGHUP, until the returned guard is dropped. The
/// handler is installed when this is called (before the proxy says it is listening), so a
/// SIGHUP sent after that announcement reloads rather than ending the process.
pub fn on_hangup(reloader: proxy::Reloader) -> Option<AbortOnDrop> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => Some(AbortOnDrop(tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP received: reloading the service config");
                    // `reload` logs and counts its outcome.
                    let _ = reloader.reload().await;
                }
            }))),
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGHUP: reload by signal is off");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
        None
    }
}

/// A task that ends when this is dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed when this is called, not
/// when the future is first polled: call it before announcing that the process is ready, so a
/// supervisor (or test) that stops the process right after the announcement gets a graceful stop
/// rather than the signal's default action.
pub fn terminated() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        match handlers {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

//! Reloading the service configuration without a restart (SIGHUP in the binary, and
//! `--watch-config`): the files are read again, a new route table is built beside the one in
//! force, keeping what the new configuration does not change (key caches of unchanged
//! providers, the API-key checker of the same service), and swapped in whole.
//!
//! A call holds the route it was routed with (and through it the authenticator and checker it
//! started with) until it ends, so calls in flight finish under the configuration they started
//! with while new calls see the new one at once. A configuration that cannot be loaded or
//! served is refused: one warning with its field-path errors, a failure counted, and the
//! configuration in force keeps serving.
//!
//! What it deliberately does not reload: anything given by a flag (listener, TLS, limits,
//! backend, key-server URL, cache sizes). Only the service config and descriptor files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use service_config::{ConfigErrors, ConfigId, LoadOptions, ServiceConfig};

use crate::ProxyError;
use crate::handler::State;
use crate::routes::RouteTable;
use crate::settings::ProxySettings;

/// The shortest and longest `--watch-config-interval`.
pub const WATCH_INTERVAL_MIN: Duration = Duration::from_millis(100);
pub const WATCH_INTERVAL_MAX: Duration = Duration::from_secs(3600);

/// Where the configuration is read from on a reload: the files it was first loaded from.
#[derive(Debug, Clone)]
pub struct ConfigFiles {
    pub service_config: PathBuf,
    pub descriptors: Vec<PathBuf>,
    pub options: LoadOptions,
}

impl ConfigFiles {
    pub fn new(service_config: PathBuf, descriptors: Vec<PathBuf>, options: LoadOptions) -> Self {
        Self {
            service_config,
            descriptors,
            options,
        }
    }

    /// Reads and validates the files ([`service_config::load_with`]).
    pub fn load(&self) -> Result<ServiceConfig, ConfigErrors> {
        service_config::load_with(&self.service_config, &self.descriptors, self.options)
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.service_config.as_path())
            .chain(self.descriptors.iter().map(|p| p.as_path()))
    }

    /// The files as `/config` lists them.
    pub fn sources(&self) -> Vec<String> {
        self.paths().map(|p| p.display().to_string()).collect()
    }
}

/// The content of each file (SHA-256; `None` when unreadable), so a watcher tells a change from
/// a touch. Read by path each time: an editor's or deployer's rename over the file is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<Option<[u8; 32]>>);

async fn fingerprint(files: &ConfigFiles) -> Fingerprint {
    let mut digests = Vec::new();
    for path in files.paths() {
        let digest = tokio::fs::read(path).await.ok().map(|bytes| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
            let mut out = [0u8; 32];
            out.copy_from_slice(digest.as_ref());
            out
        });
        digests.push(digest);
    }
    Fingerprint(digests)
}

/// Swaps in new configurations. Cheap to clone; get it from [`crate::Proxy::reloader`].
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<State>,
    settings: ProxySettings,
    /// What `/config` shows, with `--admin-listen`.
    active: Option<admin::ActiveConfig>,
    /// One reload at a time; holds the fingerprint of the files last read.
    last_read: tokio::sync::Mutex<Option<Fingerprint>>,
}

impl Reloader {
    pub(crate) fn new(
        state: Arc<State>,
        settings: ProxySettings,
        active: Option<admin::ActiveConfig>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                state,
                settings,
                active,
                last_read: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Reads the configuration files again (`ProxySettings::config_files`) and swaps the new
    /// configuration in. On failure the configuration in force keeps serving; the failure is
    /// logged (one warning with every field-path error) and counted, and returned.
    pub async fn reload(&self) -> Result<ConfigId, ProxyError> {
        let mut last_read = self.inner.last_read.lock().await;
        let result = match &self.inner.settings.config_files {
            None => Err(ProxyError::NoConfigFiles),
            Some(files) => {
                *last_read = Some(fingerprint(files).await);
                match load(files).await {
                    Ok(config) => self.swap(&config),
                    Err(err) => Err(err),
                }
            }
        };
        self.report(result)
    }

    /// Swaps `config` (loaded by the caller) in, as [`Reloader::reload`] does with the files.
    pub async fn apply(&self, config: &ServiceConfig) -> Result<ConfigId, ProxyError> {
        let _one_at_a_time = self.inner.last_read.lock().await;
        let result = self.swap(config);
        self.report(result)
    }

    /// `--watch-config`: every `interval`, reloads when the content of a file changed since it
    /// was last read (by this watcher or another reload). Runs until dropped.
    pub(crate) async fn watch(self, interval: Duration) {
        let Some(files) = self.inner.settings.config_files.clone() else {
            return;
        };
        {
            let mut last_read = self.inner.last_read.lock().await;
            if last_read.is_none() {
                *last_read = Some(fingerprint(&files).await);
            }
        }
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let now = fingerprint(&files).await;
            let changed = self.inner.last_read.lock().await.as_ref() != Some(&now);
            if changed {
                tracing::info!("service config files changed: reloading");
                // The outcome is logged and counted by `reload`; a file half written when read
                // fails here and is read again, complete, on a later tick.
                let _ = self.reload().await;
            }
        }
    }

    /// Builds the new route table beside the one in force, keeping what it can, and swaps it
    /// in. Calls already routed keep their `Arc<Route>` of the old table.
    fn swap(&self, config: &ServiceConfig) -> Result<ConfigId, ProxyError> {
        let state = &self.inner.state;
        let previous = state.routes.load_full();
        let table = RouteTable::from_config(
            config,
            &self.inner.settings,
            state.metrics.as_deref(),
            Some(&previous),
        )?;
        state.routes.store(Arc::new(table));
        for section in config.ignored_sections() {
            tracing::warn!(
                section = %section,
                "service config section ignored: esprit does not enforce it (--allow-unenforced-config)"
            );
        }
        if let Some(active) = &self.inner.active {
            let sources = active.get().sources.clone();
            active.set(admin::ConfigInfo {
                id: config.id().as_str().to_owned(),
                sources,
                loaded_at: self.inner.settings.clock.now(),
            });
        }
        Ok(config.id().clone())
    }

    fn report(&self, result: Result<ConfigId, ProxyError>) -> Result<ConfigId, ProxyError> {
        let metrics = self.inner.state.metrics.as_deref();
        match &result {
            Ok(id) => {
                let routes = self.inner.state.routes.load();
                tracing::info!(
                    config_id = %id,
                    methods = routes.len(),
                    "service config reloaded"
                );
                if let Some(metrics) = metrics {
                    metrics.config_reloaded(crate::metrics::ReloadOutcome::Success);
                }
            }
            Err(err) => {
                tracing::warn!(
                    error = %one_line(err),
                    "service config reload refused; the configuration in force keeps serving"
                );
                if let Some(metrics) = metrics {
                    metrics.config_reloaded(crate::metrics::ReloadOutcome::Failure);
                }
            }
        }
        result
    }
}

async fn load(files: &ConfigFiles) -> Result<ServiceConfig, ProxyError> {
    let files = files.clone();
    // Reading and compiling descriptors is blocking work.
    tokio::task::spawn_blocking(move || {
        files.load().map_err(|source| ProxyError::LoadConfig {
            path: files.service_config.clone(),
            source,
        })
    })
    .await
    .unwrap_or_else(|join| Err(ProxyError::ReloadTask(join.to_string())))
}

/// The error and its causes on one line, as the binary prints a failed start
/// (`loading the service config from X: problem; problem`).
fn one_line(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(source) = cause {
        text.push_str(": ");
        text.push_str(&source.to_string());
        cause = source.source();
    }
    text.lines().collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_causes_and_lines() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("a.b: bad\nc[1]: missing")]
        struct Inner;
        assert_eq!(one_line(&Outer(Inner)), "outer: a.b: bad; c[1]: missing");
    }
}

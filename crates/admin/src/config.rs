//! The active configuration as the admin pages show it: an id (a digest of what was loaded), the
//! files it came from and when. A reload replaces it with [`ActiveConfig::set`]; `/config` and
//! the `esprit_config_*` metrics read whatever is current.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// What was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigInfo {
    /// The configuration's id (`service_config::ServiceConfig::id`: a digest of the config
    /// and descriptor).
    pub id: String,
    /// The files the configuration was read from, as given on the command line.
    pub sources: Vec<String>,
    pub loaded_at: SystemTime,
}

impl ConfigInfo {
    /// The `/config` body.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "config_id": self.id,
            "sources": self.sources,
            "loaded_at_unix": unix_secs(self.loaded_at),
        })
    }
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The configuration in force; cheap to share. Also the collector of `esprit_config_info` and
/// `esprit_config_loaded_timestamp_seconds`.
#[derive(Debug, Clone)]
pub struct ActiveConfig {
    current: Arc<RwLock<Arc<ConfigInfo>>>,
}

impl ActiveConfig {
    pub fn new(info: ConfigInfo) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(info))),
        }
    }

    pub fn get(&self) -> Arc<ConfigInfo> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the configuration shown (a reload).
    pub fn set(&self, info: ConfigInfo) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Arc::new(info);
    }
}

impl Collector for ActiveConfig {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let info = self.get();
        let gauge = ConstGauge::new(1i64);
        let mut family = encoder.encode_descriptor(
            "esprit_config_info",
            "The configuration in force (value 1), by its id",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(family.encode_family(&[("config_id", info.id.as_str())])?)?;
        let loaded = ConstGauge::new(unix_secs(info.loaded_at) as i64);
        let metric = encoder.encode_descriptor(
            "esprit_config_loaded_timestamp_seconds",
            "When the configuration in force was loaded (Unix time)",
            None,
            loaded.metric_type(),
        )?;
        loaded.encode(metric)
    }
}

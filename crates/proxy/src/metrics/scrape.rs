//! What is read when `/metrics` is scraped rather than counted on the way.

use std::sync::Arc;

/// What is read at scrape time rather than counted on the way: connections open, each
/// provider's key-set fetches, and the key servers ejected now.
pub(crate) struct ScrapeCollector {
    pub admission: Arc<conn_guard::Admission>,
    /// The key sets are those of the route table in force (a reload replaces them).
    pub state: Arc<crate::handler::State>,
}

impl std::fmt::Debug for ScrapeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeCollector").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for ScrapeCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;

        let open = ConstGauge::new(i64::try_from(self.admission.open()).unwrap_or(i64::MAX));
        open.encode(encoder.encode_descriptor(
            "esprit_connections_open",
            "Client connections open on the data listener",
            None,
            open.metric_type(),
        )?)?;
        let routes = self.state.routes.load();
        if let Some(checker) = routes.api_key_checker() {
            // An ejection ends with time, not with an event: counted when scraped.
            let ejected = ConstGauge::new(i64::try_from(checker.ejected_replicas()).unwrap_or(0));
            ejected.encode(encoder.encode_descriptor(
                "esprit_api_key_servers_ejected",
                "Key servers (--service-control-url) ejected now after consecutive failed attempts",
                None,
                ejected.metric_type(),
            )?)?;
        }
        let Some(keys) = &routes.keys else {
            return Ok(());
        };
        let stats = keys.stats();
        type Reading = fn(&keysets::ProviderStats) -> Option<f64>;
        let series: [(&str, &str, bool, Reading); 4] = [
            (
                "esprit_jwks_fetches",
                "Key-set fetch attempts (background refreshes and refetches), by provider",
                true,
                |s| Some(s.fetches as f64),
            ),
            (
                "esprit_jwks_fetch_failures",
                "Key-set fetches that failed, by provider",
                true,
                |s| Some(s.failures as f64),
            ),
            (
                "esprit_jwks_last_success_timestamp_seconds",
                "When each provider's key set was last fetched successfully (Unix time; absent before the first)",
                false,
                |s| s.last_success_unix.map(|t| t as f64),
            ),
            (
                "esprit_jwks_keys",
                "Keys in each provider's last good key set",
                false,
                |s| Some(s.keys as f64),
            ),
        ];
        for (name, help, counter, read) in series {
            let metric_type = if counter {
                prometheus_client::metrics::MetricType::Counter
            } else {
                prometheus_client::metrics::MetricType::Gauge
            };
            let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
            for s in &stats {
                let Some(value) = read(s) else { continue };
                let labels = [("provider", s.provider.as_str())];
                let metric = family.encode_family(&labels)?;
                if counter {
                    ConstCounter::new(value as u64).encode(metric)?;
                } else {
                    ConstGauge::new(value).encode(metric)?;
                }
            }
        }
        Ok(())
    }
}

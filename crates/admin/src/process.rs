//! The standard `process_*` metrics of Prometheus client libraries (CPU time, memory, open file
//! descriptors, start time, threads), read from `/proc/self` with the `procfs` crate at scrape
//! time. `prometheus-client` has no process collector of its own; on systems other than Linux
//! this collector reports nothing.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Register with `Registry::register_collector(Box::new(ProcessCollector))`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessCollector;

/// One reading of the process; `None` where `/proc` could not tell.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reading {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<i64>,
    pub virtual_bytes: Option<i64>,
    pub open_fds: Option<i64>,
    pub max_fds: Option<i64>,
    pub start_time_unix: Option<f64>,
    pub threads: Option<i64>,
}

#[cfg(target_os = "linux")]
pub fn read() -> Reading {
    use procfs::process::{LimitValue, Process};
    let Ok(me) = Process::myself() else {
        return Reading::default();
    };
    let mut reading = Reading::default();
    if let Ok(stat) = me.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        if ticks > 0.0 {
            reading.cpu_seconds = Some((stat.utime + stat.stime) as f64 / ticks);
            reading.start_time_unix = procfs::boot_time_secs()
                .ok()
                .map(|boot| boot as f64 + stat.starttime as f64 / ticks);
        }
        reading.resident_bytes = i64::try_from(stat.rss.saturating_mul(procfs::page_size())).ok();
        reading.virtual_bytes = i64::try_from(stat.vsize).ok();
        reading.threads = Some(stat.num_threads);
    }
    reading.open_fds = me.fd_count().ok().and_then(|n| i64::try_from(n).ok());
    if let Ok(limits) = me.limits() {
        reading.max_fds = match limits.max_open_files.soft_limit {
            LimitValue::Value(n) => i64::try_from(n).ok(),
            LimitValue::Unlimited => None,
        };
    }
    reading
}

#[cfg(not(target_os = "linux"))]
pub fn read() -> Reading {
    Reading::default()
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<i64>,
) -> Result<(), std::fmt::Error> {
    let Some(value) = value else { return Ok(()) };
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = read();
        if let Some(cpu) = r.cpu_seconds {
            let metric = ConstCounter::new(cpu);
            metric.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                metric.metric_type(),
            )?)?;
        }
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            r.resident_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            r.virtual_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors",
            r.open_fds,
        )?;
        gauge(
            &mut encoder,
            "process_max_fds",
            "Maximum number of open file descriptors",
            r.max_fds,
        )?;
        gauge(
            &mut encoder,
            "process_threads",
            "Number of OS threads in the process",
            r.threads,
        )?;
        if let Some(start) = r.start_time_unix {
            let metric = ConstGauge::new(start);
            metric.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                None,
                metric.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn linux_reports_every_reading() {
        let r = read();
        assert!(r.cpu_seconds.is_some());
        assert!(r.resident_bytes.unwrap() > 0);
        assert!(r.open_fds.unwrap() > 0);
        assert!(r.threads.unwrap() >= 1);
        let start = r.start_time_unix.unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(start <= now + 1.0 && start > now - 24.0 * 3600.0 * 365.0);
    }
}

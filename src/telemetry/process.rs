//! The standard `process_*` series, read from the system at scrape time.
//!
//! Nothing here assumes a page size or a clock tick (16 KiB and 64 KiB pages exist on arm64
//! kernels; USER_HZ is configurable): CPU time comes from `getrusage`, memory from the kB
//! figures of /proc/self/status, the descriptor limit from `getrlimit`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage};

/// CPU, memory and file descriptors of this process, in the standard `process_*` names (what
/// the CPU < 70 % and memory < 80 % targets are written against).
pub(super) fn process_metrics(out: &mut String, started: SystemTime) {
    let mut series = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    if let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) {
        let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        series(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            seconds(usage.user_time()) + seconds(usage.system_time()),
        );
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(rss) = status_bytes(&status, "VmRSS") {
            series(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                rss as f64,
            );
        }
        if let Some(vms) = status_bytes(&status, "VmSize") {
            series(
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                vms as f64,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        series(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds.count() as f64,
        );
    }
    if let Ok((soft, _hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        series(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            soft as f64,
        );
    }
    series(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
    );
}

/// A `Key:   N kB` line of /proc/<pid>/status, in bytes (the kernel's kB are KiB).
fn status_bytes(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kb = rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
        Some(kb * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_figures_are_kib_whatever_the_page_size() {
        let status = "Name:\tstratix-gateway\nVmPeak:\t  123456 kB\nVmSize:\t  120000 kB\n\
                      VmRSS:\t    9876 kB\nThreads:\t3\n";
        assert_eq!(status_bytes(status, "VmRSS"), Some(9876 * 1024));
        assert_eq!(status_bytes(status, "VmSize"), Some(120_000 * 1024));
        assert_eq!(status_bytes(status, "VmSwap"), None);
        assert_eq!(status_bytes(status, "Threads"), None, "not a size");
    }

    #[test]
    fn the_live_process_is_measured() {
        let mut out = String::new();
        process_metrics(&mut out, UNIX_EPOCH);
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in\n{out}"))
                .parse()
                .unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
    }
}

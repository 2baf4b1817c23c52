//! The standard `process_*` series, read from /proc at scrape time.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// CPU, memory and file descriptors of this process from /proc, in the standard `process_*`
/// names (what the CPU < 70 % and memory < 80 % targets are written against).
pub(super) fn process_metrics(out: &mut String, started: SystemTime) {
    // Linux reports CPU times in clock ticks; USER_HZ is 100 on every platform Swarm runs on.
    const TICKS_PER_SECOND: f64 = 100.0;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((_, rest)) = stat.rsplit_once(") ")
    {
        // Fields after the command name, from field 3 (state): utime is 14, stime 15.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let cpu = (ticks(14) + ticks(15)) / TICKS_PER_SECOND;
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}"
        );
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(pages) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
    {
        // The kernel's page size is 4 KiB on x86_64 and arm64 as Debian builds them.
        let rss = pages * 4096;
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(
            out,
            "# HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\nprocess_open_fds {}",
            fds.count()
        );
    }
    let start = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let _ = writeln!(
        out,
        "# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.\n\
         # TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {start}"
    );
}

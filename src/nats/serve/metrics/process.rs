//! The process's own figures (CPU time, resident memory, descriptors, threads), read from `/proc` at
//! scrape time. Only Linux has them; elsewhere they are absent from the output.

/// What the kernel says about this process now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessFigures {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// OS threads.
    pub threads: u64,
}

/// Reads the figures; `None` where `/proc` is missing or unreadable.
pub fn read() -> Option<ProcessFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let (cpu_ticks, threads) = parse_stat(&stat)?;
    let resident_bytes = parse_status_kb(&status, "VmRSS:")? * 1024;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(ProcessFigures {
        cpu_seconds: cpu_ticks as f64 / clock_ticks_per_second(),
        resident_bytes,
        open_fds,
        threads,
    })
}

/// The CPU time (user + system, seconds) of process `pid` so far; `None` where `/proc` cannot tell (the
/// load tool measures its targets' CPU per tick with it).
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (ticks, _) = parse_stat(&stat)?;
    Some(ticks as f64 / clock_ticks_per_second())
}

/// utime + stime (clock ticks) and the thread count from `/proc/self/stat`. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so field k is at index k - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    let threads: u64 = fields.get(20 - 3)?.parse().ok()?;
    Some((utime + stime, threads))
}

/// A `Key:   123 kB` line of `/proc/self/status`, in kB.
fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the CPU times in `/proc`. Linux has reported 100 on every
/// architecture for user space since 2.6 (`USER_HZ`), which `getconf CLK_TCK` confirms; reading it through
/// libc would need `unsafe` for a constant.
fn clock_ticks_per_second() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces() {
        let line = "4242 (tokio (worker) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 12345 1000 200";
        assert_eq!(parse_stat(line), Some((300, 7)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_lines() {
        let s = "Name:\tcambio\nVmRSS:\t   12345 kB\nThreads:\t7\n";
        assert_eq!(parse_status_kb(s, "VmRSS:"), Some(12345));
        assert_eq!(parse_status_kb(s, "VmSwap:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_figures() {
        let f = read().expect("/proc/self is readable on Linux");
        assert!(f.resident_bytes > 0 && f.threads >= 1 && f.open_fds >= 3, "{f:?}");
        // The constant is the kernel's USER_HZ, as getconf reports it.
        if let Ok(out) = std::process::Command::new("getconf").arg("CLK_TCK").output() {
            let hz: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            assert_eq!(clock_ticks_per_second(), hz);
        }
    }
}

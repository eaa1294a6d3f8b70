//! Process facts from /proc/self/status and the file-descriptor limit.

/// One `kB` field of /proc/self/status (VmRSS, VmHWM, ...), in KiB; `Threads` as a count.
pub fn status_field(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(name) {
            if let Some(rest) = rest.strip_prefix(':') {
                return rest
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
            }
        }
    }
    0
}

pub fn rss_kib() -> u64 {
    status_field("VmRSS")
}

pub fn hwm_kib() -> u64 {
    status_field("VmHWM")
}

pub fn threads() -> u64 {
    status_field("Threads")
}

/// Raises the soft RLIMIT_NOFILE to `want` (or as far as the hard limit allows; the hard limit
/// itself is raised only if the process may). Returns the soft limit in force afterwards.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_max < want {
            let try_hard = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &try_hard) == 0 {
                return want;
            }
        }
        lim.rlim_cur = want.min(lim.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    }
}

/// Open file descriptors of this process.
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

//! Finding a running container's processes from the host, and signal names. The process that
//! supervises a container (a detached supervisor, or the `rbuild run` attached to it) is
//! recorded in its state; its child with the argument `__rbuild-sandbox` is the sandbox helper,
//! the helper's child is the PID-1 init of the container, and init's oldest child is the
//! command (later children of init are orphans it adopted). `stop` and `kill` signal the
//! command; init reports how it ended and takes the rest of the container down with it.

/// The default stop signal, and the one nothing can catch.
pub const SIGTERM: i32 = libc::SIGTERM;
pub const SIGKILL: i32 = libc::SIGKILL;

/// `(ppid, starttime)` of a process from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain anything, spaces and parentheses too: fields start after
    // the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is the state (field 3); ppid is field 4, starttime field 22.
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// The children of `parent`, oldest first.
fn children(parent: i32) -> Vec<i32> {
    let mut out: Vec<(u64, i32)> = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Some((ppid, start)) = stat(pid)
            && ppid == parent
        {
            out.push((start, pid));
        }
    }
    out.sort();
    out.into_iter().map(|(_, pid)| pid).collect()
}

fn is_helper(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|&b| b == 0).nth(1) == Some(crate::sandbox::HELPER_ARG.as_bytes()))
}

/// The host pids of a container's sandbox helper and its command, given its supervisor's pid.
/// `command` is `None` before the command was started (or after it ended).
pub fn container_pids(supervisor: i32) -> Option<(i32, Option<i32>)> {
    let helper = children(supervisor).into_iter().find(|p| is_helper(*p))?;
    let command = children(helper)
        .first()
        .and_then(|init| children(*init).first().copied());
    Some((helper, command))
}

/// The host pid of a container's PID-1 init, given its supervisor's pid.
pub fn init_pid(supervisor: i32) -> Option<i32> {
    let helper = children(supervisor).into_iter().find(|p| is_helper(*p))?;
    children(helper).first().copied()
}

/// Send signal `sig` to process `pid`.
pub fn send_signal(pid: i32, sig: i32) -> std::io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let sig = rustix::process::Signal::from_named_raw(sig)
        .ok_or_else(|| std::io::Error::other(format!("unknown signal {sig}")))?;
    rustix::process::kill_process(pid, sig).map_err(std::io::Error::from)
}

/// Signals by name, as docker's `--signal` and `STOPSIGNAL` take them.
const SIGNALS: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parse `SIGTERM`, `TERM`, `term` or `15` (1 to 64, the real-time signals included).
pub fn parse_signal(text: &str) -> Option<i32> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("term"), Some(15));
        assert_eq!(parse_signal("KILL"), Some(9));
        assert_eq!(parse_signal("sigusr1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("2"), Some(2));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("65"), None);
        assert_eq!(parse_signal("SIGNOPE"), None);
    }

    #[test]
    fn the_stat_parser_reads_ppid_and_start_time_past_odd_names() {
        let (ppid, start) = stat(std::process::id() as i32).unwrap();
        assert_eq!(ppid as u32, std::os::unix::process::parent_id());
        assert!(start > 0);
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(children(me).contains(&(child.id() as i32)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

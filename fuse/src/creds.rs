//! Who is asking: the FUSE request's uid/gid plus the caller's supplementary groups.

use ringfs_proto::pb;

/// The caller of one FUSE request, as the namenode needs it for permission checks.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) creds: pb::Credentials,
    pub(crate) pid: u32,
}

impl Caller {
    /// The caller of `req`. Supplementary groups come from `/proc/<pid>/status` ("Groups:"): the
    /// kernel does not send them. Root needs none (it passes every check), so root skips the read;
    /// a request without a pid (kernel-internal) or a process already gone gets no groups.
    pub(crate) fn of(uid: u32, gid: u32, pid: u32) -> Caller {
        let groups = if uid == 0 || pid == 0 {
            Vec::new()
        } else {
            groups_of(pid)
        };
        Caller {
            creds: pb::Credentials { uid, gid, groups },
            pid,
        }
    }
}

/// The supplementary groups of process `pid` (empty when unknown).
fn groups_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| parse_groups(&s))
        .unwrap_or_default()
}

fn parse_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether process `pid` has a signal pending that is not blocked, or no longer exists: a
/// blocking lock request of that process should give up with EINTR. (fuser 0.18 answers the
/// kernel's FUSE_INTERRUPT with ENOSYS, so this is how a waiting `fcntl(F_SETLKW)`/`flock` learns
/// that its caller was interrupted or killed.)
pub(crate) fn interrupted(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    pending_unblocked(&status)
}

fn pending_unblocked(status: &str) -> bool {
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let pending = field("SigPnd:") | field("ShdPnd:");
    let blocked = field("SigBlk:");
    let ignored = field("SigIgn:");
    pending & !blocked & !ignored != 0
        || status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("zombie"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_pending_signals_parse_from_proc_status() {
        let status = "Name:\tsh\nState:\tS (sleeping)\nGroups:\t4 24 27 \nSigPnd:\t0000000000000000\n\
                      ShdPnd:\t0000000000000100\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";
        assert_eq!(parse_groups(status), vec![4, 24, 27]);
        assert!(pending_unblocked(status), "SIGKILL (bit 8) pending");
        let blocked = status.replace("SigBlk:\t0000000000000000", "SigBlk:\t0000000000000100");
        assert!(!pending_unblocked(&blocked));
        assert_eq!(parse_groups("Groups:\n"), Vec::<u32>::new());
        // This test process exists and has nothing pending.
        assert!(!interrupted(std::process::id()));
        assert!(!Caller::of(1000, 1000, std::process::id())
            .creds
            .groups
            .contains(&u32::MAX));
    }
}

//! Mountpoint housekeeping: lazy/normal unmount and recovery of a stale mount left by a killed
//! mount process ("Transport endpoint is not connected").

use crate::error::FuseError;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> Result<CString, FuseError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| FuseError::BadMountpoint {
        path: path.to_path_buf(),
        reason: "path contains a NUL byte".into(),
    })
}

fn umount2(path: &CString, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(path.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unmounts `mountpoint` (`ringfs umount`): a normal unmount, or a lazy one (MNT_DETACH) when the
/// mount is busy. The mount process sees the unmount, commits what it still holds and exits.
pub fn unmount(mountpoint: &Path) -> Result<(), FuseError> {
    let c = c_path(mountpoint)?;
    // Only a ringfs mount: `ringfs umount /boot` as root must not unmount /boot.
    if let Some((fstype, source)) = mount_kind(mountpoint) {
        if !is_ringfs(&fstype, &source) {
            return Err(FuseError::NotRingfs {
                path: mountpoint.to_path_buf(),
                kind: format!("{fstype} {source}"),
            });
        }
    }
    match umount2(&c, 0) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            umount2(&c, libc::MNT_DETACH).map_err(|source| FuseError::Unmount {
                path: mountpoint.to_path_buf(),
                source,
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(FuseError::NotMounted {
            path: mountpoint.to_path_buf(),
        }),
        Err(source) => Err(FuseError::Unmount {
            path: mountpoint.to_path_buf(),
            source,
        }),
    }
}

/// If `mountpoint` is a dead FUSE mount (its process was killed: the kernel answers ENOTCONN),
/// detaches it and returns true. A healthy or unmounted directory is left alone (false).
/// `statfs` is the probe because it always reaches the file system's daemon, where `stat` may be
/// answered from the kernel's attribute cache.
pub fn clean_stale_mount(mountpoint: &Path) -> Result<bool, FuseError> {
    let c = c_path(mountpoint)?;
    // SAFETY: statfs writes into the zeroed struct we pass; `c` is NUL-terminated.
    let rc = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st)
    };
    if rc == 0 {
        return Ok(false);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOTCONN) | Some(libc::ECONNABORTED) => {
            umount2(&c, libc::MNT_DETACH).map_err(|source| FuseError::Unmount {
                path: mountpoint.to_path_buf(),
                source,
            })?;
            tracing::info!(mountpoint = %mountpoint.display(), "cleaned a stale mount");
            Ok(true)
        }
        _ => Err(FuseError::BadMountpoint {
            path: mountpoint.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// The `major:minor` device of the topmost mount at `path` (from /proc/self/mountinfo).
pub(crate) fn mounted_device(path: &Path) -> Option<(u32, u32)> {
    // A stale mount cannot be canonicalized (ENOTCONN): its absolute path is looked up instead.
    let canon = path
        .canonicalize()
        .or_else(|_| std::path::absolute(path))
        .ok()?;
    let want = canon.to_str()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let point = unescape_mountinfo(f.get(4)?);
        let (maj, min) = f.get(2)?.split_once(':')?;
        (point == want).then(|| Some((maj.parse().ok()?, min.parse().ok()?)))?
    })
}

/// The file system type and source of the topmost mount at `path` (from /proc/self/mountinfo).
/// A stale mount cannot be canonicalized (ENOTCONN): its absolute path is looked up instead.
fn mount_kind(path: &Path) -> Option<(String, String)> {
    let p = path
        .canonicalize()
        .or_else(|_| std::path::absolute(path))
        .ok()?;
    let want = p.to_str()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| mount_kind_of(l, want))
}

/// (type, source) of one mountinfo line when its mount point is `want`.
fn mount_kind_of(line: &str, want: &str) -> Option<(String, String)> {
    let (left, right) = line.split_once(" - ")?;
    if unescape_mountinfo(left.split(' ').nth(4)?) != want {
        return None;
    }
    let mut r = right.split(' ');
    Some((r.next()?.to_string(), unescape_mountinfo(r.next()?)))
}

/// Whether a mount's type and source are a ringfs mount's (FUSE, source "ringfs").
fn is_ringfs(fstype: &str, source: &str) -> bool {
    (fstype == "fuse" || fstype.starts_with("fuse.")) && source == "ringfs"
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Makes the kernel end a FUSE connection (`/sys/fs/fuse/connections/<minor>/abort`): the
/// session's threads then see the device close. Used when a lazily detached mount stays busy.
pub(crate) fn abort_connection(minor: u32) -> bool {
    std::fs::write(format!("/sys/fs/fuse/connections/{minor}/abort"), "1").is_ok()
}

/// Checks that `mountpoint` is a directory we can mount on (and not a live mount already).
pub(crate) fn check_mountpoint(mountpoint: &Path) -> Result<(), FuseError> {
    if mounted_device(mountpoint).is_some() {
        return Err(FuseError::BadMountpoint {
            path: mountpoint.to_path_buf(),
            reason: "already mounted (unmount it first)".into(),
        });
    }
    match std::fs::metadata(mountpoint) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(FuseError::BadMountpoint {
            path: mountpoint.to_path_buf(),
            reason: "not a directory".into(),
        }),
        Err(e) => Err(FuseError::BadMountpoint {
            path: mountpoint.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_directory_is_not_stale_and_not_mounted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!clean_stale_mount(dir.path()).unwrap());
        assert!(check_mountpoint(dir.path()).is_ok());
        match unmount(dir.path()) {
            Err(FuseError::NotMounted { .. }) | Err(FuseError::Unmount { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(clean_stale_mount(&dir.path().join("missing")).is_err());
        assert_eq!(mounted_device(dir.path()), None);
        assert!(
            mounted_device(Path::new("/")).is_some(),
            "/ is a mount point"
        );
        assert_eq!(unescape_mountinfo("/a\\040b\\134c"), "/a b\\c");
    }

    #[test]
    fn only_ringfs_mounts_are_unmounted() {
        let fuse = "36 25 0:38 / /mnt/r\\040x rw,relatime shared:1 - fuse ringfs rw,user_id=0";
        assert_eq!(
            mount_kind_of(fuse, "/mnt/r x"),
            Some(("fuse".to_string(), "ringfs".to_string()))
        );
        assert_eq!(mount_kind_of(fuse, "/mnt/r"), None);
        let boot = "30 25 8:1 / /boot rw,relatime - ext4 /dev/sda1 rw";
        assert_eq!(
            mount_kind_of(boot, "/boot"),
            Some(("ext4".to_string(), "/dev/sda1".to_string()))
        );
        assert!(is_ringfs("fuse", "ringfs"));
        assert!(!is_ringfs("ext4", "/dev/sda1"));
        assert!(!is_ringfs("fuse.sshfs", "host:/"));
    }
}

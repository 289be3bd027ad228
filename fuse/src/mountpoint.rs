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

/// If `mountpoint` is a dead FUSE mount (its process was killed: `stat` fails with ENOTCONN),
/// detaches it and returns true. A healthy or unmounted directory is left alone (false).
pub fn clean_stale_mount(mountpoint: &Path) -> Result<bool, FuseError> {
    match std::fs::metadata(mountpoint) {
        Ok(_) => Ok(false),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)
            ) =>
        {
            let c = c_path(mountpoint)?;
            umount2(&c, libc::MNT_DETACH).map_err(|source| FuseError::Unmount {
                path: mountpoint.to_path_buf(),
                source,
            })?;
            tracing::info!(mountpoint = %mountpoint.display(), "cleaned a stale mount");
            Ok(true)
        }
        Err(e) => Err(FuseError::BadMountpoint {
            path: mountpoint.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Checks that `mountpoint` is a directory we can mount on.
pub(crate) fn check_mountpoint(mountpoint: &Path) -> Result<(), FuseError> {
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
    }
}

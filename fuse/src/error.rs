//! Errors of the mount API ([`FuseError`]) and the one place where ringfs error kinds become errno.

use fuser::Errno;
use ringfs_client::ClientError;
use ringfs_proto::ErrorKind;
use std::path::PathBuf;

/// What `mount`, `unmount` and `clean_stale_mount` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum FuseError {
    /// The mountpoint is missing, not a directory, or mounted already.
    #[error("{path}: cannot mount here: {reason}")]
    BadMountpoint { path: PathBuf, reason: String },
    /// The kernel refused the mount (no /dev/fuse, no permission, ...).
    #[error("{path}: cannot mount: {source}")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
    /// umount2 failed.
    #[error("{path}: cannot unmount: {source}")]
    Unmount {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `unmount` of a path that is not a mountpoint.
    #[error("{path}: not mounted")]
    NotMounted { path: PathBuf },
    /// `unmount` of a mount of another file system (`kind` is its type and source).
    #[error("{path}: not a ringfs mount ({kind}): left alone")]
    NotRingfs { path: PathBuf, kind: String },
    /// The FUSE session ended with an error.
    #[error("{path}: FUSE session failed: {source}")]
    Session {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Dirty data could not be committed when the mount shut down.
    #[error("{path}: {files} file(s) could not be committed at unmount: {first}")]
    Commit {
        path: PathBuf,
        files: usize,
        first: String,
    },
}

/// The errno of a ringfs error kind: the only kind -> errno table of the mount.
pub fn errno_of(kind: ErrorKind) -> Errno {
    use ErrorKind::*;
    match kind {
        NotFound => Errno::ENOENT,
        AlreadyExists => Errno::EEXIST,
        NotADirectory => Errno::ENOTDIR,
        IsADirectory => Errno::EISDIR,
        DirectoryNotEmpty => Errno::ENOTEMPTY,
        PermissionDenied => Errno::EACCES,
        NotPermitted => Errno::EPERM,
        InvalidArgument => Errno::EINVAL,
        NameTooLong => Errno::ENAMETOOLONG,
        TooManyLinks => Errno::ELOOP,
        TooManyHardLinks => Errno::EMLINK,
        NotSupported => Errno::EOPNOTSUPP,
        NoSpace => Errno::ENOSPC,
        CrossDevice => Errno::EXDEV,
        FileTooBig => Errno::EFBIG,
        ReadOnly => Errno::EROFS,
        Busy => Errno::EBUSY,
        WouldBlock => Errno::EAGAIN,
        Io => Errno::EIO,
        Stale => Errno::ESTALE,
        NoData => Errno::ENODATA,
        Range => Errno::ERANGE,
        TooBig => Errno::E2BIG,
    }
}

/// A failed file system operation: the errno the caller gets and, for the log, why.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) errno: Errno,
    pub(crate) why: String,
}

impl Fail {
    pub(crate) fn new(errno: Errno, why: impl Into<String>) -> Fail {
        Fail {
            errno,
            why: why.into(),
        }
    }
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Fail {
        Fail {
            errno: errno_of(e.kind()),
            why: e.to_string(),
        }
    }
}

impl From<tonic::Status> for Fail {
    fn from(s: tonic::Status) -> Fail {
        Fail {
            errno: errno_of(ErrorKind::of(&s)),
            why: s.message().to_string(),
        }
    }
}

impl From<Errno> for Fail {
    fn from(errno: Errno) -> Fail {
        Fail {
            errno,
            why: String::new(),
        }
    }
}

pub(crate) type Res<T> = Result<T, Fail>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_posix_errnos() {
        let table = [
            (ErrorKind::NotFound, libc::ENOENT),
            (ErrorKind::DirectoryNotEmpty, libc::ENOTEMPTY),
            (ErrorKind::PermissionDenied, libc::EACCES),
            (ErrorKind::NotPermitted, libc::EPERM),
            (ErrorKind::TooManyLinks, libc::ELOOP),
            (ErrorKind::TooManyHardLinks, libc::EMLINK),
            (ErrorKind::WouldBlock, libc::EAGAIN),
            (ErrorKind::Stale, libc::ESTALE),
            (ErrorKind::NoData, libc::ENODATA),
            (ErrorKind::Range, libc::ERANGE),
            (ErrorKind::TooBig, libc::E2BIG),
            (ErrorKind::NotSupported, libc::EOPNOTSUPP),
        ];
        for (kind, errno) in table {
            assert_eq!(errno_of(kind).code(), errno, "{kind:?}");
        }
        let st = ringfs_proto::error_kind::status(ErrorKind::IsADirectory, "/d: is a directory");
        assert_eq!(Fail::from(st).errno, Errno::EISDIR);
    }
}

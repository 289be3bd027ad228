//! The error vocabulary shared across the wire: a `tonic::Code` is too coarse for POSIX (ENOTDIR vs
//! EISDIR vs ENOTEMPTY), so every ringfs error Status also carries an [`ErrorKind`] in the
//! `ringfs-error` metadata key. Servers build Statuses with [`status`]; clients read them back with
//! [`ErrorKind::of`]; the FUSE adapter maps kinds to errno in one place.

use tonic::{Code, Status};

const KEY: &str = "ringfs-error";

/// What went wrong, in POSIX terms where there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// ENOENT
    NotFound,
    /// EEXIST
    AlreadyExists,
    /// ENOTDIR
    NotADirectory,
    /// EISDIR
    IsADirectory,
    /// ENOTEMPTY
    DirectoryNotEmpty,
    /// EACCES: mode bits forbid it
    PermissionDenied,
    /// EPERM: only the owner/root may do it
    NotPermitted,
    /// EINVAL
    InvalidArgument,
    /// ENAMETOOLONG
    NameTooLong,
    /// ELOOP
    TooManyLinks,
    /// EMLINK
    TooManyHardLinks,
    /// ENOTSUP / EOPNOTSUPP
    NotSupported,
    /// ENOSPC: not enough datanodes or capacity to place a block
    NoSpace,
    /// EXDEV
    CrossDevice,
    /// EFBIG
    FileTooBig,
    /// EROFS
    ReadOnly,
    /// EBUSY: lease held by another writer, safe mode
    Busy,
    /// EAGAIN: a lock is held by someone else
    WouldBlock,
    /// EIO: data unavailable (all replicas missing/corrupt) or an internal failure
    Io,
    /// ESTALE: an inode id that no longer exists
    Stale,
    /// ENODATA: no such extended attribute
    NoData,
    /// ERANGE: an extended attribute name too long (or a buffer too small)
    Range,
    /// E2BIG: an extended attribute value too large
    TooBig,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 23] = {
        use ErrorKind::*;
        [
            NotFound,
            AlreadyExists,
            NotADirectory,
            IsADirectory,
            DirectoryNotEmpty,
            PermissionDenied,
            NotPermitted,
            InvalidArgument,
            NameTooLong,
            TooManyLinks,
            TooManyHardLinks,
            NotSupported,
            NoSpace,
            CrossDevice,
            FileTooBig,
            ReadOnly,
            Busy,
            WouldBlock,
            Io,
            Stale,
            NoData,
            Range,
            TooBig,
        ]
    };

    /// The kind's name on the wire (the `ringfs-error` metadata value).
    pub fn name(self) -> &'static str {
        use ErrorKind::*;
        match self {
            NotFound => "not_found",
            AlreadyExists => "already_exists",
            NotADirectory => "not_a_directory",
            IsADirectory => "is_a_directory",
            DirectoryNotEmpty => "directory_not_empty",
            PermissionDenied => "permission_denied",
            NotPermitted => "not_permitted",
            InvalidArgument => "invalid_argument",
            NameTooLong => "name_too_long",
            TooManyLinks => "too_many_symlinks",
            TooManyHardLinks => "too_many_links",
            NotSupported => "not_supported",
            NoSpace => "no_space",
            CrossDevice => "cross_device",
            FileTooBig => "file_too_big",
            ReadOnly => "read_only",
            Busy => "busy",
            WouldBlock => "would_block",
            Io => "io",
            Stale => "stale",
            NoData => "no_data",
            Range => "range",
            TooBig => "too_big",
        }
    }

    fn from_name(s: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The gRPC code that goes with the kind.
    pub fn code(self) -> Code {
        use ErrorKind::*;
        match self {
            NotFound | Stale | NoData => Code::NotFound,
            AlreadyExists => Code::AlreadyExists,
            NotADirectory | IsADirectory | DirectoryNotEmpty | CrossDevice => {
                Code::FailedPrecondition
            }
            PermissionDenied | NotPermitted | ReadOnly => Code::PermissionDenied,
            InvalidArgument | NameTooLong | TooManyLinks | TooManyHardLinks | FileTooBig => {
                Code::InvalidArgument
            }
            Range | TooBig => Code::OutOfRange,
            NotSupported => Code::Unimplemented,
            NoSpace => Code::ResourceExhausted,
            Busy | WouldBlock => Code::Unavailable,
            Io => Code::Internal,
        }
    }

    /// The kind of a Status: from its metadata when a ringfs server set it, else guessed from the code.
    pub fn of(status: &Status) -> ErrorKind {
        if let Some(k) = status
            .metadata()
            .get(KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(ErrorKind::from_name)
        {
            return k;
        }
        match status.code() {
            Code::NotFound => ErrorKind::NotFound,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::PermissionDenied | Code::Unauthenticated => ErrorKind::PermissionDenied,
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
            Code::Unimplemented => ErrorKind::NotSupported,
            Code::ResourceExhausted => ErrorKind::NoSpace,
            // A ringfs server says "busy" with the kind set; a bare Unavailable is a transport
            // failure (connection refused or reset), which callers see as an I/O error.
            _ => ErrorKind::Io,
        }
    }
}

/// Whether `status` is a transport failure (the connection was refused, reset or closed under
/// the call) rather than an answer of a ringfs server, which always carries its kind.
pub fn is_transport(status: &Status) -> bool {
    status.metadata().get(KEY).is_none()
        && matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        )
}

/// A Status of `kind` with a message that names what failed (path, block, node) and why.
pub fn status(kind: ErrorKind, message: impl Into<String>) -> Status {
    let mut s = Status::new(kind.code(), message);
    s.metadata_mut().insert(
        KEY,
        tonic::metadata::MetadataValue::from_static(kind.name()),
    );
    s
}

/// An error and its sources on one line. A `tonic::Status` contributes its message only: its
/// `Display` adds the code's description and a `Debug` dump of its source, which made a dead
/// datanode read as three lines of struct syntax.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut m = match e.downcast_ref::<tonic::Status>() {
        // A server that is not ringfs's answers a call it does not know with no message.
        Some(st) if st.message().is_empty() => st.code().description().to_string(),
        Some(st) => st.message().to_string(),
        None => e.to_string(),
    };
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !m.contains(&t) {
            m.push_str(": ");
            m.push_str(&t);
        }
        src = s.source();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_without_a_message_is_described_by_its_code() {
        let s = tonic::Status::unimplemented("");
        assert!(
            error_chain(&s).contains("not implemented"),
            "{}",
            error_chain(&s)
        );
        assert_eq!(error_chain(&tonic::Status::internal("why")), "why");
    }

    #[test]
    fn kinds_round_trip_through_status() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::of(&status(k, "x")), k);
        }
        assert_eq!(
            ErrorKind::of(&Status::not_found("plain")),
            ErrorKind::NotFound
        );
        assert_eq!(
            ErrorKind::of(&Status::unavailable("connection reset")),
            ErrorKind::Io
        );
    }
}

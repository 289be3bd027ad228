//! The namenode's error enum: variants name the outcome and the path, messages use the CLI's words,
//! and [`NamenodeError::kind`] / `From<NamenodeError> for tonic::Status` are the one mapping to the wire.

use ringfs_proto::ErrorKind;

/// Result with [`NamenodeError`] as the default error.
pub type Result<T, E = NamenodeError> = std::result::Result<T, E>;

/// Everything a namenode operation can refuse. Paths are absolute ("/a/b") or, for inode-addressed
/// requests whose path is unknown, "inode N". A failed operation changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NamenodeError {
    /// ENOENT: the path (or a directory on the way) does not exist.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// EEXIST: the entry to create is already there.
    #[error("{0}: already exists")]
    AlreadyExists(String),
    /// ENOTDIR: a component that must be a directory is not.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// EISDIR: a file operation on a directory.
    #[error("{0}: is a directory")]
    IsADirectory(String),
    /// ENOTEMPTY: rmdir / rename over a directory that has entries.
    #[error("{0}: directory not empty")]
    DirectoryNotEmpty(String),
    /// EACCES: the mode bits forbid it.
    #[error("{0}: permission denied")]
    PermissionDenied(String),
    /// EPERM: only the owner (or root) may do it.
    #[error("{0}: operation not permitted")]
    NotPermitted(String),
    /// EINVAL: a malformed path (empty component, ".", "..", NUL, relative, ...).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// EINVAL: any other bad argument; the string is the whole message and names what it is about.
    #[error("{0}")]
    InvalidArgument(String),
    /// EFBIG: a size past [`ringfs_proto::max_file_size`] of the file's block size.
    #[error(
        "{path}: file too large: {size} bytes (the most for a block size of {block_size} is {max})"
    )]
    FileTooBig {
        /// The file's path (or "inode N").
        path: String,
        /// The size asked for.
        size: u64,
        /// The file's block size.
        block_size: u64,
        /// The largest size allowed.
        max: u64,
    },
    /// ENAMETOOLONG: a component over 255 bytes or a path over 4096 bytes.
    #[error("{0}: file name too long")]
    NameTooLong(String),
    /// ELOOP: more than 40 symbolic links while resolving a path.
    #[error("{0}: too many levels of symbolic links")]
    SymlinkLoop(String),
    /// EMLINK: a file has the maximum number of hard links.
    #[error("{0}: too many links")]
    TooManyLinks(String),
    /// EINVAL for rename: e.g. a directory into its own subtree, or moving "/".
    #[error("cannot move {from} to {to}: {reason}")]
    InvalidMove {
        /// Source path.
        from: String,
        /// Destination path.
        to: String,
        /// Why not.
        reason: String,
    },
    /// ENOSPC: fewer live datanodes than the replication factor asks for.
    #[error("not enough live datanodes: need {needed}, have {live}{}{}{}", besides(.failed), out_of_space(.full), ringfs_proto::retiring_note(*.retiring))]
    NotEnoughDatanodes {
        /// Replicas wanted.
        needed: usize,
        /// Live datanodes available.
        live: usize,
        /// How many of those the last heartbeats called full (the real reason when nodes are up).
        full: usize,
        /// Live nodes left out because they are decommissioning or decommissioned.
        retiring: usize,
        /// Where a write just failed, left out of `live` (pipeline recovery).
        failed: Option<String>,
    },
    /// EBUSY: another client holds the write lease of the file.
    #[error("{path}: open for writing by another client ({holder})")]
    LeaseHeld {
        /// The file.
        path: String,
        /// The client id holding the lease.
        holder: String,
    },
    /// EIO for a writer: the client does not hold the file's lease (expired and recovered, or never taken).
    #[error("{path}: client {client} holds no write lease on it")]
    NoLease {
        /// The file.
        path: String,
        /// The client id that asked.
        client: String,
    },
    /// ENOTSUP: the string names the operation and what it was applied to.
    #[error("{0}: operation not supported")]
    NotSupported(String),
    /// EBUSY: the namenode is in safe mode (waiting for block reports); the string says what was refused.
    #[error("namenode is in safe mode: {0}")]
    SafeMode(String),
    /// ESTALE: an inode id that does not (or no longer) exist.
    #[error("inode {0}: stale file handle")]
    Stale(u64),
    /// EIO: the metadata store failed; the namenode refuses further mutations.
    #[error("metadata storage failed: {0}")]
    Storage(String),
    /// The request is well-formed but the state does not allow it (e.g. truncating inside a block, which
    /// needs the client's copy-on-write; a block list that does not fit the file). gRPC code
    /// FAILED_PRECONDITION with kind `Io`; the string is the whole message.
    #[error("{0}")]
    FailedPrecondition(String),
    /// ENOSPC: the namenode does not take this content inline (over the limit, or its budget for
    /// inline content is used up); the writer stores the file in blocks instead. The whole message.
    #[error("{0}")]
    InlineRefused(String),
    /// ENODATA: the inode has no extended attribute of that name (or the caller may not see it).
    #[error("{path}: no attribute {name}")]
    NoXattr {
        /// The inode's path (or "inode N").
        path: String,
        /// The attribute's name.
        name: String,
    },
    /// ERANGE: an extended attribute name that is empty or longer than 255 bytes; the whole message.
    #[error("{0}")]
    XattrNameRange(String),
    /// E2BIG: an extended attribute value over 64 KiB; the whole message.
    #[error("{0}")]
    XattrTooBig(String),
    /// ENOSPC: the extended attributes of one inode would pass 64 KiB; the whole message.
    #[error("{0}")]
    XattrSpace(String),
    /// The status web server cannot listen on its address (the namenode runs without it).
    #[error("status page: cannot listen on {addr}: {reason}")]
    HttpListen {
        /// The address asked for.
        addr: String,
        /// Why not (the OS's words).
        reason: String,
    },
}

impl NamenodeError {
    /// The wire error kind (which the FUSE adapter turns into an errno).
    pub fn kind(&self) -> ErrorKind {
        use NamenodeError::*;
        match self {
            NotFound(_) => ErrorKind::NotFound,
            AlreadyExists(_) => ErrorKind::AlreadyExists,
            NotADirectory(_) => ErrorKind::NotADirectory,
            IsADirectory(_) => ErrorKind::IsADirectory,
            DirectoryNotEmpty(_) => ErrorKind::DirectoryNotEmpty,
            PermissionDenied(_) => ErrorKind::PermissionDenied,
            NotPermitted(_) => ErrorKind::NotPermitted,
            InvalidPath { .. } | InvalidArgument(_) | InvalidMove { .. } => {
                ErrorKind::InvalidArgument
            }
            NameTooLong(_) => ErrorKind::NameTooLong,
            FileTooBig { .. } => ErrorKind::FileTooBig,
            SymlinkLoop(_) => ErrorKind::TooManyLinks,
            TooManyLinks(_) => ErrorKind::TooManyHardLinks,
            // Short of nodes with room while enough are up: the cluster is full (ENOSPC). Short of
            // nodes that are up: the storage is unreachable (EIO), and ENOSPC with `df` showing
            // free space sent users looking for space.
            NotEnoughDatanodes {
                needed, live, full, ..
            } if *full == 0 || live < needed => ErrorKind::Io,
            NotEnoughDatanodes { .. } | InlineRefused(_) | XattrSpace(_) => ErrorKind::NoSpace,
            NoXattr { .. } => ErrorKind::NoData,
            XattrNameRange(_) => ErrorKind::Range,
            XattrTooBig(_) => ErrorKind::TooBig,
            LeaseHeld { .. } | SafeMode(_) => ErrorKind::Busy,
            // The metadata disk is full (the journal keeps the OS error's text): ENOSPC, which
            // tells a program more than EIO.
            Storage(m) if m.contains(&format!("(os error {})", libc_enospc())) => {
                ErrorKind::NoSpace
            }
            NoLease { .. } | Storage(_) | FailedPrecondition(_) | HttpListen { .. } => {
                ErrorKind::Io
            }
            NotSupported(_) => ErrorKind::NotSupported,
            Stale(_) => ErrorKind::Stale,
        }
    }
}

/// ENOSPC on Linux (the namenode crate does not depend on libc for one number).
const fn libc_enospc() -> i32 {
    28
}

impl From<NamenodeError> for tonic::Status {
    fn from(e: NamenodeError) -> tonic::Status {
        let status = ringfs_proto::error_kind::status(e.kind(), e.to_string());
        match e {
            // The client recognises "needs copy-on-write" by this code; the kind stays Io (EIO) in case
            // it reaches an application.
            NamenodeError::FailedPrecondition(_) => tonic::Status::with_metadata(
                tonic::Code::FailedPrecondition,
                status.message().to_string(),
                status.metadata().clone(),
            ),
            _ => status,
        }
    }
}

/// The tail of [`NamenodeError::NotEnoughDatanodes`]: nodes that are up but full are why a
/// pipeline cannot be built, and "not enough live datanodes" alone sent users looking for dead ones.
fn out_of_space(full: &usize) -> String {
    match full {
        0 => String::new(),
        n => format!(" ({n} of them out of space)"),
    }
}

/// The node a pipeline recovery leaves out: it is up, but the write just failed there (often
/// because its disk is full, which the writer's own message says).
fn besides(failed: &Option<String>) -> String {
    match failed {
        Some(node) => format!(" besides {node}, where the write failed"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_metadata_disk_is_enospc() {
        let full = NamenodeError::Storage(
            "nn: appending to the log: No space left on device (os error 28)".into(),
        );
        assert_eq!(full.kind(), ErrorKind::NoSpace);
        let other = NamenodeError::Storage(
            "nn: appending to the log: Input/output error (os error 5)".into(),
        );
        assert_eq!(other.kind(), ErrorKind::Io);
    }

    #[test]
    fn too_few_datanodes_is_enospc_only_when_the_up_ones_are_full() {
        let short = |live, full| NamenodeError::NotEnoughDatanodes {
            needed: 2,
            live,
            full,
            retiring: 0,
            failed: None,
        };
        assert_eq!(short(0, 0).kind(), ErrorKind::Io);
        assert_eq!(short(1, 1).kind(), ErrorKind::Io);
        assert_eq!(short(3, 2).kind(), ErrorKind::NoSpace);
    }

    #[test]
    fn messages_use_the_cli_words() {
        assert_eq!(
            NamenodeError::NotFound("/a/b".into()).to_string(),
            "/a/b: no such file or directory"
        );
        assert_eq!(
            NamenodeError::AlreadyExists("/a".into()).to_string(),
            "/a: already exists"
        );
        assert_eq!(
            NamenodeError::NotADirectory("/a".into()).to_string(),
            "/a: not a directory"
        );
        assert_eq!(
            NamenodeError::IsADirectory("/a".into()).to_string(),
            "/a: is a directory"
        );
        assert_eq!(
            NamenodeError::DirectoryNotEmpty("/a".into()).to_string(),
            "/a: directory not empty"
        );
        assert_eq!(
            NamenodeError::PermissionDenied("/a".into()).to_string(),
            "/a: permission denied"
        );
        assert_eq!(
            NamenodeError::NotEnoughDatanodes {
                needed: 3,
                live: 2,
                full: 0,
                retiring: 0,
                failed: None,
            }
            .to_string(),
            "not enough live datanodes: need 3, have 2"
        );
        assert_eq!(
            NamenodeError::NotEnoughDatanodes {
                needed: 3,
                live: 2,
                full: 0,
                retiring: 4,
                failed: None,
            }
            .to_string(),
            "not enough live datanodes: need 3, have 2 (4 more decommissioning or \
             decommissioned, taking no new blocks)"
        );
        assert_eq!(
            NamenodeError::NotEnoughDatanodes {
                needed: 3,
                live: 2,
                full: 1,
                retiring: 0,
                failed: Some("127.0.0.1:9866".into()),
            }
            .to_string(),
            "not enough live datanodes: need 3, have 2 besides 127.0.0.1:9866, where the write \
             failed (1 of them out of space)"
        );
    }

    #[test]
    fn status_carries_the_kind() {
        let cases = [
            (NamenodeError::NotFound("/x".into()), ErrorKind::NotFound),
            (
                NamenodeError::SymlinkLoop("/x".into()),
                ErrorKind::TooManyLinks,
            ),
            (
                NamenodeError::TooManyLinks("/x".into()),
                ErrorKind::TooManyHardLinks,
            ),
            (NamenodeError::Stale(7), ErrorKind::Stale),
            (
                NamenodeError::LeaseHeld {
                    path: "/x".into(),
                    holder: "c".into(),
                },
                ErrorKind::Busy,
            ),
        ];
        for (e, kind) in cases {
            let msg = e.to_string();
            let s = tonic::Status::from(e);
            assert_eq!(ErrorKind::of(&s), kind);
            assert_eq!(s.message(), msg);
        }
        let s = tonic::Status::from(NamenodeError::FailedPrecondition(
            "/f: cut inside a block".into(),
        ));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(ErrorKind::of(&s), ErrorKind::Io);
    }
}

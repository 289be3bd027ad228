//! The datanode's error enum and its one mapping to `tonic::Status`.

use ringfs_proto::error_kind::{status, ErrorKind};
use ringfs_proto::token::TokenError;
use std::path::PathBuf;
use tonic::{Code, Status};

/// Everything that can go wrong on a datanode; each variant names the block, path or node involved.
#[derive(Debug, thiserror::Error)]
pub enum DatanodeError {
    #[error("invalid datanode config: {0}")]
    Config(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data dir {0} is in use by a running namenode or datanode (its lock is held)")]
    Locked(PathBuf),
    #[error("bad replica metadata {path}: {reason}")]
    BadMeta { path: PathBuf, reason: String },
    #[error("block {block} gen {generation}: checksum mismatch in chunk {chunk}")]
    ChecksumMismatch {
        block: u64,
        generation: u64,
        chunk: u64,
    },
    #[error("block {block} gen {generation}: no such replica on this datanode")]
    ReplicaNotFound { block: u64, generation: u64 },
    /// Listed as stored here, but its files are gone from disk (removed by hand, a disk swapped).
    #[error(
        "block {block} gen {generation}: the replica's files are gone from this datanode's disk"
    )]
    ReplicaLost { block: u64, generation: u64 },
    #[error("block {block} gen {generation}: this datanode already has gen {have}")]
    StaleGeneration {
        block: u64,
        generation: u64,
        have: u64,
    },
    #[error("block {block} gen {generation}: a write of this replica is in progress")]
    WriteInProgress { block: u64, generation: u64 },
    #[error("block {block}: no space left on datanode (capacity {capacity} bytes, {used} in use)")]
    NoSpace {
        block: u64,
        capacity: u64,
        used: u64,
    },
    #[error("block {block}: access token refused: {source}")]
    Token { block: u64, source: TokenError },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("block {block}: downstream datanode {node}: {message}")]
    Downstream {
        block: u64,
        node: String,
        message: String,
    },
    #[error("namenode {namenode}: {message}")]
    Namenode { namenode: String, message: String },
    #[error("serving on {addr}: {message}")]
    Serve { addr: String, message: String },
    #[error("datanode is shutting down")]
    ShuttingDown,
}

impl DatanodeError {
    /// Out of room: the `--capacity` limit or a full disk.
    pub fn is_no_space(&self) -> bool {
        match self {
            DatanodeError::NoSpace { .. } => true,
            DatanodeError::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            _ => false,
        }
    }

    /// Wraps an I/O error with the operation and path it happened on.
    pub fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> DatanodeError {
        let path = path.into();
        move |source| DatanodeError::Io { op, path, source }
    }
}

impl From<DatanodeError> for Status {
    fn from(e: DatanodeError) -> Status {
        use DatanodeError::*;
        let msg = e.to_string();
        match e {
            // A checksum mismatch is EIO for POSIX but DATA_LOSS on the wire, so readers can tell a
            // corrupt replica (report it, try another) from any other failure.
            ChecksumMismatch { .. } => {
                let s = status(ErrorKind::Io, msg);
                Status::with_metadata(Code::DataLoss, s.message(), s.metadata().clone())
            }
            ReplicaNotFound { .. } | ReplicaLost { .. } | StaleGeneration { .. } => {
                status(ErrorKind::NotFound, msg)
            }
            WriteInProgress { .. } | ShuttingDown => status(ErrorKind::Busy, msg),
            Token { .. } => status(ErrorKind::PermissionDenied, msg),
            InvalidRequest(_) => status(ErrorKind::InvalidArgument, msg),
            NoSpace { .. } => status(ErrorKind::NoSpace, msg),
            Io { ref source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                status(ErrorKind::NoSpace, msg)
            }
            Config(_)
            | Io { .. }
            | Locked(_)
            | BadMeta { .. }
            | Downstream { .. }
            | Namenode { .. }
            | Serve { .. } => status(ErrorKind::Io, msg),
        }
    }
}

//! ringfs-client: the library the CLI and the FUSE mount use to talk to a ringfs cluster.
//!
//! - [`client`]: `Client` (connection, credentials, lease renewer, namespace calls), `ClientConfig`
//! - [`write`]: `FileWriter` and the replica pipeline with recovery (design §4)
//! - [`read`]: `FileReader`, verified block streaming with replica failover (design §5)
//! - `local`: short-circuit reads of replicas on this host (descriptors from the datanode)
//! - [`error`]: `ClientError` and its POSIX [`ErrorKind`]
//! - `attrs`: chmod, chown and symlinks by path (`Client::chmod`, `chown`, `symlink`)
//! - `xattr`: extended attributes (`Client::set_xattr`, `get_xattr`, `list_xattr`, `remove_xattr`)
//!
//! ```no_run
//! # async fn demo() -> Result<(), ringfs_client::ClientError> {
//! use ringfs_client::{Client, ClientConfig, CreateOptions};
//! let client = Client::connect(ClientConfig { namenode: "127.0.0.1:8020".into(), ..Default::default() }).await?;
//! let mut w = client.create("/hello", CreateOptions::default()).await?;
//! w.write(b"hello, ring").await?;
//! w.finish().await?;
//! let r = client.open(ringfs_client::path_ref("/hello")).await?;
//! assert_eq!(&r.read_at(0, 5).await?[..], b"hello");
//! # Ok(()) }
//! ```

mod attrs;
pub mod client;
pub mod error;
mod local;
pub mod read;
mod suspects;
pub mod write;
mod xattr;

pub use attrs::normalize as normalize_path;
pub use client::{
    entry_path, inode_ref, path_ref, process_credentials, Client, ClientConfig, CreateOptions,
};
pub use error::ClientError;
pub use read::FileReader;
pub use ringfs_proto::{pb, ErrorKind};
pub use write::{CommittedFile, FileWriter};

pub use ringfs_proto::OPEN_FILE_HIDDEN_PREFIX;

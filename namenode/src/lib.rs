//! ringfs-namenode: the metadata server. `run(config, listener, shutdown)` serves the client-facing
//! `Namenode` and the datanode-facing `DatanodeProtocol` gRPC services on one listener.
//!
//! Layout:
//! - [`config`]: the documented `Config`
//! - [`namespace`], [`journal`], [`error`]: the inode tree, its durability, the error enum
//! - [`placement`]: the consistent-hash ring that says where replicas should be

pub mod block_map;
pub mod config;
pub mod datanodes;
pub mod error;
pub mod journal;
pub mod leases;
pub mod locks;
pub mod namespace;
pub mod path;
pub mod placement;
pub mod replication;

pub use config::Config;
pub use error::NamenodeError;

use std::future::Future;

/// Runs a namenode until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NamenodeError> {
    config
        .validate()
        .map_err(|e| NamenodeError::InvalidArgument(e.to_string()))?;
    tracing::warn!(addr = ?listener.local_addr().ok(), "namenode services are not implemented yet");
    shutdown.await;
    Ok(())
}

//! ringfs-datanode: stores block replicas and serves them.
//!
//! - [`config`]: the datanode's configuration
//! - [`error`]: `DatanodeError` and its mapping to `tonic::Status`

pub mod block_store;
pub mod config;
pub mod error;

pub use config::Config;
pub use error::DatanodeError;

use std::future::Future;
use tokio::net::TcpListener;

/// Runs a datanode on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DatanodeError> {
    config.validate().map_err(DatanodeError::Config)?;
    let _ = (listener, shutdown);
    Err(DatanodeError::Config("datanode not implemented yet".into()))
}

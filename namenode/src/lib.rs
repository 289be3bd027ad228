//! ringfs-namenode: the metadata server. `run(config, listener, shutdown)` serves the client-facing
//! `Namenode` and the datanode-facing `DatanodeProtocol` gRPC services on one listener, plus the
//! background loops (dead nodes, leases, replication).
//!
//! Layout:
//! - [`config`]: the documented `Config`
//! - [`namespace`], [`path`], [`journal`], [`error`]: the inode tree, path rules, durability, the error enum
//! - [`placement`]: the consistent-hash ring that says where replicas should be
//! - [`datanodes`]: registry, liveness, command queues; [`admin`]: decommission states kept across restarts
//! - [`block_map`]: where replicas are (rebuilt from block reports)
//! - [`replication`]: the planner (repair, trim, rebalance, decommission) and safe mode
//! - [`leases`], [`locks`]: client leases and the cluster lock table
//! - [`retry_cache`]: the non-idempotent calls applied lately, so a call sent again is not run twice
//! - [`service`]: the gRPC adapters, lease recovery and the background loops

pub mod admin;
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
pub mod retry_cache;
pub mod service;

pub use config::Config;
pub use error::NamenodeError;

use ringfs_proto::net::MAX_MESSAGE_SIZE;
use ringfs_proto::pb::datanode_protocol_server::DatanodeProtocolServer;
use ringfs_proto::pb::namenode_server::NamenodeServer;
use service::monitors::{DeadNodeMonitor, LeaseMonitor, ReplicationMonitor};
use std::future::Future;
use std::sync::Arc;

/// Runs a namenode on `listener` until `shutdown` resolves. Fails early on a bad config, a data
/// dir in use by another namenode or an unreadable metadata store.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NamenodeError> {
    run_with_ready(config, listener, shutdown, |_| {}).await
}

/// [`run`], calling `ready` with the listening address once the data dir is locked and the
/// metadata loaded, just before serving: a binary announces "listening" there, so a namenode that
/// cannot start never announced it.
pub async fn run_with_ready(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(Option<std::net::SocketAddr>) + Send,
) -> Result<(), NamenodeError> {
    config
        .validate()
        .map_err(|e| NamenodeError::InvalidArgument(e.to_string()))?;
    if config.secret.is_empty() {
        tracing::warn!("no cluster secret configured: using the built-in development secret");
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        NamenodeError::Storage(format!("cannot create {}: {e}", config.data_dir.display()))
    })?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let dir = config.data_dir.clone();
    let (journal, ns) = tokio::task::spawn_blocking(move || journal::Journal::open(&dir))
        .await
        .map_err(|e| NamenodeError::Storage(format!("opening the metadata store: {e}")))??;
    let addr = listener.local_addr().ok();
    let shared = Arc::new(service::Shared::new(config, journal, ns));
    tracing::info!(?addr, data_dir = %shared.config.data_dir.display(), inodes = shared.lock().ns.inode_count(),
        "namenode serving");
    ready(addr);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let loops = vec![
        tokio::spawn(
            DeadNodeMonitor {
                shared: shared.clone(),
            }
            .run(stop_rx.clone()),
        ),
        tokio::spawn(
            LeaseMonitor {
                shared: shared.clone(),
            }
            .run(stop_rx.clone()),
        ),
        tokio::spawn(
            ReplicationMonitor {
                shared: shared.clone(),
            }
            .run(stop_rx.clone()),
        ),
    ];

    let client = NamenodeServer::new(service::client::ClientService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_SIZE)
    .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let datanode = DatanodeProtocolServer::new(service::datanode::DatanodeService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_SIZE)
    .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let served = ringfs_proto::net::server()
        .add_service(client)
        .add_service(datanode)
        .serve_with_incoming_shutdown(ringfs_proto::net::incoming(listener), shutdown)
        .await;

    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    tracing::info!("namenode stopped");
    served.map_err(|e| NamenodeError::FailedPrecondition(format!("serving gRPC failed: {e}")))
}

/// Takes `<data_dir>/lock` (flock, released when the returned file is dropped or the process
/// dies), so a second namenode on the same dir fails at once with a message naming the dir.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, NamenodeError> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| NamenodeError::Storage(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(NamenodeError::FailedPrecondition(format!(
            "data dir {} is in use by another namenode (lock held)",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(NamenodeError::Storage(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

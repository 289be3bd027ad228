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
//! - [`http`], [`status`], [`rpc_metrics`]: the status web page, `/metrics` and `/status.json`,
//!   the snapshot they show, and the gRPC call counters

pub mod admin;
pub mod block_map;
pub mod config;
pub mod datanodes;
pub mod error;
pub mod http;
pub mod journal;
pub mod leases;
pub mod locks;
pub mod namespace;
pub mod path;
pub mod placement;
pub mod replication;
pub mod retry_cache;
pub mod rpc_metrics;
pub mod service;
pub mod status;

pub use config::Config;
pub use error::NamenodeError;

use ringfs_proto::net::MAX_MESSAGE_SIZE;
use ringfs_proto::pb::datanode_protocol_server::DatanodeProtocolServer;
use ringfs_proto::pb::namenode_server::NamenodeServer;
use service::monitors::{DeadNodeMonitor, LeaseMonitor, ReplicationMonitor, StorageMonitor};
use std::future::Future;
use std::sync::Arc;

/// Runs a namenode on `listener` until `shutdown` resolves. Fails early on a bad config, a data
/// dir in use by a running namenode or datanode, or an unreadable metadata store.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NamenodeError> {
    run_with_ready(config, listener, shutdown, |_| {}).await
}

/// Where a namenode that is about to serve listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// The gRPC listener.
    pub addr: Option<std::net::SocketAddr>,
    /// The status page, `None` when it is off or its address could not be bound.
    pub http: Option<std::net::SocketAddr>,
}

/// [`run`], calling `ready` with the listening addresses once the data dir is locked and the
/// metadata loaded, just before serving: a binary announces "listening" there, so a namenode that
/// cannot start never announced it.
pub async fn run_with_ready(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(Ready) + Send,
) -> Result<(), NamenodeError> {
    let started = std::time::Instant::now();
    config
        .validate()
        .map_err(|e| NamenodeError::InvalidArgument(e.to_string()))?;
    if config.secret.is_empty() {
        tracing::warn!("no cluster secret configured: using the built-in development secret");
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        NamenodeError::Storage(format!("cannot create {}: {e}", config.data_dir.display()))
    })?;
    // A datanode's dir given by mistake: a new namespace would be made in it.
    if config.data_dir.join("datanode_id").exists() {
        return Err(NamenodeError::Storage(format!(
            "{} is a datanode's data dir (it holds datanode_id), not a namenode's",
            config.data_dir.display()
        )));
    }
    let _lock = lock_data_dir(&config.data_dir)?;
    let dir = config.data_dir.clone();
    let (journal, ns) = tokio::task::spawn_blocking(move || journal::Journal::open(&dir))
        .await
        .map_err(|e| NamenodeError::Storage(format!("opening the metadata store: {e}")))??;
    let addr = listener.local_addr().ok();
    // A status page that cannot listen is no reason not to serve the file system (several
    // namenodes on one host, the port taken by something else): warn and go on without it.
    let http_listener = match config.http_address() {
        None => None,
        Some(a) => match http::bind(a).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "running without the status page");
                None
            }
        },
    };
    let http_addr = http_listener.as_ref().and_then(|l| l.local_addr().ok());
    let shared = Arc::new(service::Shared::new(config, journal, ns));
    tracing::info!(?addr, data_dir = %shared.config.data_dir.display(), inodes = shared.lock().ns.inode_count(),
        "namenode serving");
    if let Some(h) = http_addr {
        tracing::info!("status page at http://{h}/");
    }
    ready(Ready {
        addr,
        http: http_addr,
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let rpcs = rpc_metrics::RpcMetrics::new();
    let mut loops = vec![
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
            StorageMonitor {
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

    if let Some(l) = http_listener {
        let shown = addr.map_or_else(|| "?".to_string(), |a| a.to_string());
        let server = http::StatusServer::new(shared.clone(), rpcs.clone(), shown, started);
        loops.push(tokio::spawn(http::serve(server, l, stop_rx.clone())));
    }

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
    let served = match ringfs_proto::net::server() {
        Ok(server) => {
            server
                .layer(rpcs.layer())
                .add_service(client)
                .add_service(datanode)
                .serve_with_incoming_shutdown(ringfs_proto::net::incoming(listener), shutdown)
                .await
        }
        Err(e) => Err(e),
    };

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
            "data dir {} is in use by a running namenode or datanode (its lock is held)",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(NamenodeError::Storage(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

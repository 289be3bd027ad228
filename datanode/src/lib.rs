//! ringfs-datanode: stores block replicas (blake3-checksummed per 64 KiB chunk) and serves them.
//!
//! - [`config`]: the datanode's configuration
//! - [`error`]: `DatanodeError` and its one mapping to `tonic::Status`
//! - [`block_store`]: replica files (`blocks/`, `tmp/`), `.meta` format, startup scan, lock, id
//! - [`transfer`]: the DataTransfer service (pipelined WriteBlock, verified ReadBlock, RecoverReplica)
//! - [`framing`]: request data frames re-cut at gRPC message headers (one copy per packet in tonic)
//! - [`local_read`]: hands replica descriptors to readers on this host (short-circuit reads)
//! - [`heartbeat`]: register, heartbeats, block reports, re-register after a namenode restart
//! - [`commands`]: Replicate / Delete commands from the namenode (throttled)
//! - [`scrubber`]: throttled background re-verification of every replica
//! - [`namenode_link`]: the DatanodeProtocol client and the queue of undelivered reports
//! - [`throttle`]: a shared byte-rate limiter

pub mod block_store;
mod commands;
pub mod config;
pub mod error;
mod framing;
mod heartbeat;
mod local_read;
mod namenode_link;
mod scrubber;
mod throttle;
mod transfer;

pub use config::Config;
pub use error::DatanodeError;

use block_store::BlockStore;
use namenode_link::NamenodeLink;
use ringfs_proto::token::Secret;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long shutdown waits for open transfers before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// State shared by the services and background loops of one datanode.
pub(crate) struct Node {
    pub store: Arc<BlockStore>,
    pub secret: Secret,
    /// The DataTransfer address registered with the namenode (and reported in `stored`).
    pub address: String,
    pub rack: String,
    /// Configured capacity; `None` = the size of the data dir's filesystem.
    pub capacity: Option<u64>,
    pub namenode: NamenodeLink,
    /// Reads, writes and replications in progress (reported in heartbeats).
    active: AtomicU32,
}

/// Counts one transfer while alive.
pub(crate) struct ActiveTransfer(Arc<Node>);

impl Drop for ActiveTransfer {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Node {
    pub fn transfer_started(self: &Arc<Self>) -> ActiveTransfer {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveTransfer(self.clone())
    }

    pub fn active_transfers(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// (capacity, used, remaining) in bytes.
    pub fn space(&self) -> (u64, u64, u64) {
        let root = self.store.root();
        let capacity = self
            .capacity
            .unwrap_or_else(|| block_store::filesystem_size(root).unwrap_or(0));
        let used = self.store.used();
        let free = block_store::filesystem_free(root).unwrap_or(0);
        (capacity, used, capacity.saturating_sub(used).min(free))
    }

    /// After a failed open of replica `block` gen `generation`: one the index lists whose files
    /// are gone from disk, or whose `.meta` is unreadable (the hashes that vouch for the data are
    /// gone), is reported like a corrupt one, so the namenode copies it from another replica
    /// while one is left (block reports come from the index and would go on listing it).
    pub fn report_if_lost(self: &Arc<Self>, e: &DatanodeError, block: u64, generation: u64) {
        let lost = match e {
            DatanodeError::ReplicaLost { .. } => "replica files missing from disk",
            DatanodeError::BadMeta { .. } => "replica metadata unreadable",
            _ => return,
        };
        tracing::warn!(block, generation, error = %e, "{lost}: reported as corrupt");
        self.replica_is_corrupt(
            &tokio::runtime::Handle::current(),
            block,
            generation,
            e.to_string(),
        );
    }

    /// A full check found the replica good: a corrupt mark here goes, and the namenode hears of
    /// it (always when it `asked`) so that its own mark goes too: a replica restored by hand
    /// counts again at the next scrub instead of at the next full block report.
    pub fn replica_is_good(&self, block: u64, generation: u64, asked: bool) {
        let was_marked = self.store.clear_corrupt(block, generation);
        if was_marked {
            tracing::info!(
                block,
                generation,
                "replica found corrupt before checks good now"
            );
        }
        if was_marked || asked {
            self.namenode.verified(block, generation);
        }
    }

    /// Marks a replica corrupt locally and reports it to the namenode in the background.
    pub fn replica_is_corrupt(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        block: u64,
        generation: u64,
        reason: String,
    ) {
        self.store.mark_corrupt(block, generation);
        let node = self.clone();
        rt.spawn(async move {
            node.namenode
                .report_bad_replica(block, generation, &node.address, reason)
                .await
        });
    }
}

/// The address to register: `advertise`, else the listener's address with an unspecified IP
/// (0.0.0.0, ::) replaced by loopback.
fn advertised_address(config: &Config, local: SocketAddr) -> String {
    if let Some(a) = &config.advertise {
        return a.clone();
    }
    let mut addr = local;
    if addr.ip().is_unspecified() {
        tracing::warn!(%local, "listening on an unspecified address; registering 127.0.0.1 (set `advertise` for other hosts)");
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr.to_string()
}

/// Runs a datanode on `listener` until `shutdown` resolves: opens the store, serves DataTransfer,
/// registers and heartbeats with the namenode, scrubs in the background.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DatanodeError> {
    run_with_ready(config, listener, shutdown, |_| {}).await
}

/// [`run`], calling `ready` with the listening address once the data dir is locked and its
/// replicas indexed, just before serving: a binary announces "listening" there, so a datanode
/// that cannot start (its dir in use by another one) never announced it.
pub async fn run_with_ready(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr) + Send,
) -> Result<(), DatanodeError> {
    config.validate().map_err(DatanodeError::Config)?;
    let local = listener.local_addr().map_err(|e| DatanodeError::Serve {
        addr: "listener".into(),
        message: e.to_string(),
    })?;
    let data_dir = config.data_dir.clone();
    let capacity = config.capacity;
    let store = Arc::new(
        transfer::blocking(move || BlockStore::open_with_capacity(&data_dir, capacity)).await?,
    );
    let address = advertised_address(&config, local);
    let namenode =
        NamenodeLink::new(&config.namenode, store.id()).map_err(DatanodeError::Config)?;
    let node = Arc::new(Node {
        store,
        secret: config.secret(),
        address: address.clone(),
        rack: config.rack.clone(),
        capacity: config.capacity,
        namenode,
        active: AtomicU32::new(0),
    });
    tracing::info!(id = %node.store.id(), %address, data_dir = %config.data_dir.display(), namenode = %config.namenode,
        "datanode starting");
    ready(local);

    let (stop_tx, stop_rx) = watch::channel(false);
    let commands = commands::CommandRunner::new(
        node.clone(),
        config.replication_concurrency,
        config.replication_bandwidth,
    );
    let heartbeat =
        tokio::spawn(heartbeat::Heartbeat::new(node.clone(), commands).run(stop_rx.clone()));
    let scrubber = tokio::spawn(
        scrubber::Scrubber::new(node.clone(), config.scrub_interval, config.scrub_bandwidth)
            .run(stop_rx.clone()),
    );

    let local_reads = tokio::spawn(local_read::serve(node.clone(), stop_rx.clone()));

    let service = ringfs_proto::pb::data_transfer_server::DataTransferServer::new(
        transfer::TransferService::new(node.clone()),
    )
    .max_decoding_message_size(ringfs_proto::net::MAX_MESSAGE_SIZE)
    .max_encoding_message_size(ringfs_proto::net::MAX_MESSAGE_SIZE);
    let incoming = ringfs_proto::net::incoming(listener);
    let signal_tx = stop_tx.clone();
    let serve = async move {
        ringfs_proto::net::server()?
            .add_service(transfer::CancelAware(service))
            .serve_with_incoming_shutdown(incoming, async move {
                shutdown.await;
                let _ = signal_tx.send(true);
            })
            .await
    };
    tokio::pin!(serve);
    let mut grace_rx = stop_rx.clone();
    let served = tokio::select! {
        r = &mut serve => r.map_err(|e| DatanodeError::Serve { addr: local.to_string(), message: e.to_string() }),
        _ = async {
            let _ = grace_rx.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("open transfers did not finish within {SHUTDOWN_GRACE:?}; dropping them");
            Ok(())
        }
    };
    let _ = stop_tx.send(true);
    for task in [heartbeat, scrubber, local_reads] {
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            tracing::warn!("a background loop did not stop in time");
        }
    }
    tracing::info!(%address, "datanode stopped");
    served
}

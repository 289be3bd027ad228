//! Executes namenode commands from heartbeat and block-report replies: Delete removes a replica,
//! Replicate copies a verified local replica down a write pipeline, with bounded concurrency and a
//! bandwidth limit so foreground reads and writes keep their speed; Verify checks a replica the
//! namenode holds corrupt and says whether it is good after all.

use crate::block_store::ReadPath;
use crate::error::DatanodeError;
use crate::scrubber::{check_replica, Check};
use crate::throttle::Throttle;
use crate::transfer::{blocking, Downstream};
use crate::Node;
use ringfs_proto::chunk::{hashes_to_wire, CHUNKS_PER_PACKET};
use ringfs_proto::pb::datanode_command::Command;
use ringfs_proto::pb::write_block_message::Msg;
use ringfs_proto::pb::{
    DataPacket, DatanodeCommand, DeleteCommand, ReplicateCommand, VerifyCommand, WriteBlockHeader,
    WriteBlockMessage,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch, Semaphore};

pub struct CommandRunner {
    node: Arc<Node>,
    /// Limits concurrent Replicate and Verify commands (each holds a disk reader).
    slots: Arc<Semaphore>,
    /// Shared by all replications of this node.
    throttle: Arc<Throttle>,
    /// (block, generation, first target) of copies queued or running: the namenode repeats a
    /// command until it sees the result, and a repeat must not start a second copy.
    in_flight: Arc<Mutex<HashSet<(u64, u64, String)>>>,
}

impl CommandRunner {
    pub fn new(node: Arc<Node>, concurrency: usize, bandwidth: u64) -> CommandRunner {
        CommandRunner {
            node,
            slots: Arc::new(Semaphore::new(concurrency)),
            throttle: Arc::new(Throttle::new(bandwidth)),
            in_flight: Arc::default(),
        }
    }

    /// Starts the commands in the background; returns at once.
    pub fn execute(&self, commands: Vec<DatanodeCommand>) {
        for c in commands {
            match c.command {
                Some(Command::Delete(d)) => {
                    let node = self.node.clone();
                    tokio::spawn(async move { delete(&node, d).await });
                }
                Some(Command::Replicate(r)) => {
                    let first = r
                        .targets
                        .first()
                        .map(|t| t.address.clone())
                        .unwrap_or_default();
                    let key = (r.block_id, r.generation, first);
                    self.in_a_slot(key, move |node, throttle| {
                        replicate_logged(node, throttle, r)
                    });
                }
                // A node with many replicas held corrupt (a failing disk) gets as many checks:
                // they take turns with copies rather than read all at once.
                Some(Command::Verify(v)) => {
                    let key = (v.block_id, v.generation, String::new());
                    self.in_a_slot(key, move |node, throttle| verify(node, throttle, v));
                }
                None => tracing::warn!("ignoring an empty namenode command"),
            }
        }
    }

    /// Runs `work` in the background in one of the disk-reading slots, unless the same command
    /// (`key`: block, generation, first target) is queued or running already: the namenode
    /// repeats a command until it sees the result.
    fn in_a_slot<F, Fut>(&self, key: (u64, u64, String), work: F)
    where
        F: FnOnce(Arc<Node>, Arc<Throttle>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        if !lock(&self.in_flight).insert(key.clone()) {
            return;
        }
        let node = self.node.clone();
        let slots = self.slots.clone();
        let throttle = self.throttle.clone();
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let _done = InFlight(in_flight, key);
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            work(node, throttle).await
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes a copy from the in-flight set when its task ends.
struct InFlight(Arc<Mutex<HashSet<(u64, u64, String)>>>, (u64, u64, String));

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0).remove(&self.1);
    }
}

/// [`replicate`], with its outcome logged.
async fn replicate_logged(node: Arc<Node>, throttle: Arc<Throttle>, r: ReplicateCommand) {
    let (block, generation) = (r.block_id, r.generation);
    match replicate(&node, &throttle, r).await {
        Ok(stored) => tracing::info!(block, generation, ?stored, "replicated block"),
        Err(e) => tracing::warn!(block, generation, error = %e, "replication failed"),
    }
}

/// Checks a replica the namenode holds corrupt; a good one is reported back as verified (a bad
/// one was reported by the check itself).
async fn verify(node: Arc<Node>, throttle: Arc<Throttle>, v: VerifyCommand) {
    let (block, generation) = (v.block_id, v.generation);
    // Not stopped by shutdown: the check is one replica long and shutdown drops the task.
    let (_keep, mut never) = watch::channel(false);
    match check_replica(&node, block, generation, &throttle, &mut never).await {
        Check::Good { bytes } => {
            tracing::info!(block, generation, bytes, "replica held corrupt is good");
            node.replica_is_good(block, generation, true);
        }
        other => {
            tracing::info!(block, generation, result = ?other, "checked a replica held corrupt")
        }
    }
}

async fn delete(node: &Arc<Node>, d: DeleteCommand) {
    let (block, generation) = (d.block_id, d.generation);
    let store = node.store.clone();
    match blocking(move || store.delete(block, generation)).await {
        Ok(removed) => {
            tracing::debug!(block, generation, removed, "deleted replica");
            // Reported even when nothing was here, so the namenode stops expecting it.
            node.namenode.deleted(block, generation);
        }
        Err(e) => tracing::warn!(block, generation, error = %e, "delete failed"),
    }
}

/// Copies the local replica to `targets[0]`, which forwards to the rest. Returns the addresses
/// that stored it.
async fn replicate(
    node: &Arc<Node>,
    throttle: &Throttle,
    cmd: ReplicateCommand,
) -> Result<Vec<String>, DatanodeError> {
    let (block, generation) = (cmd.block_id, cmd.generation);
    let Some((first, rest)) = cmd.targets.split_first() else {
        return Err(DatanodeError::InvalidRequest(format!(
            "block {block}: replicate command without targets"
        )));
    };
    let store = node.store.clone();
    let reader = Arc::new(
        blocking(move || store.open_reader(block, generation, ReadPath::Disk))
            .await
            .inspect_err(|e| node.report_if_lost(e, block, generation))?,
    );
    let len = reader.info().len;
    if cmd.len != 0 && cmd.len != len {
        return Err(DatanodeError::InvalidRequest(format!(
            "block {block} gen {generation}: namenode says {} bytes, local replica has {len}",
            cmd.len
        )));
    }
    let _active = node.transfer_started();
    let mut ds = Downstream::open(
        &first.address,
        WriteBlockHeader {
            block_id: block,
            generation,
            downstream: rest.to_vec(),
            access_token: cmd.access_token.clone(),
            client: format!("replication from {}", node.address),
            datanode_id: first.id.clone(),
        },
    );
    // Disk reads (verified) run on a blocking thread, a few packets ahead of the network.
    let (tx, mut rx) = mpsc::channel(4);
    let r = reader.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = 0;
        while c < r.chunks() {
            let res = r.read_chunks(c, CHUNKS_PER_PACKET);
            let failed = res.is_err();
            if tx.blocking_send(res).is_err() || failed {
                return;
            }
            c += CHUNKS_PER_PACKET as u64;
        }
    });
    let mut sent = 0u64;
    let mut target_failed = false;
    while let Some(res) = rx.recv().await {
        let (data, hashes) = match res {
            Ok(p) => p,
            Err(e) => {
                if let DatanodeError::ChecksumMismatch { .. } = e {
                    node.replica_is_corrupt(
                        &tokio::runtime::Handle::current(),
                        block,
                        generation,
                        e.to_string(),
                    );
                }
                return Err(e); // dropping `ds` cancels the copy: the target never finalizes it
            }
        };
        throttle.consume(data.len() as u64).await;
        sent += data.len() as u64;
        let packet = DataPacket {
            data,
            chunk_hashes: hashes_to_wire(&hashes),
        };
        if !ds
            .send(WriteBlockMessage {
                msg: Some(Msg::Packet(packet)),
            })
            .await
        {
            target_failed = true; // finish() below returns the target's error
            break;
        }
    }
    if sent != len && !target_failed {
        // The reader stopped early (it cannot, short of a panic): never end the copy cleanly short.
        return Err(DatanodeError::InvalidRequest(format!(
            "block {block}: read {sent} of {len} bytes"
        )));
    }
    let resp = ds
        .finish(len)
        .await
        .map_err(|s| DatanodeError::Downstream {
            block,
            node: first.address.clone(),
            message: s.message().to_string(),
        })?;
    if !resp.failed.is_empty() {
        tracing::warn!(block, generation, failed = ?resp.failed, "some replication targets failed");
    }
    Ok(resp.stored)
}

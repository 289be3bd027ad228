//! Lease recovery: a file whose writer went away is fenced (its lease moves to the recovery holder),
//! the replicas of its last block report their verified lengths, the shortest is what every live
//! replica agrees on, they are finalized at that length under a new generation, and the file is
//! closed. Runs outside the state lock; each step that changes the namespace is journaled.

use super::{Shared, State};
use crate::error::{NamenodeError, Result};
use crate::leases::agreed_length;
use crate::namespace::{BlockRef, Caller, EntrySel, Namespace, RemoveMode, Timestamp};
use ringfs_proto::pb;
use ringfs_proto::token::AccessMode;
use ringfs_proto::{BlockId, DatanodeId, InodeId};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Timeout of one RecoverReplica call.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait before retrying a recovery that failed.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// A recovery running for longer than this is assumed lost and may start again.
const RUNNING: Duration = Duration::from_secs(300);

/// Starts recovering `inode` in the background unless a recovery of it is running.
pub fn spawn(shared: Arc<Shared>, inode: InodeId) {
    {
        let mut st = shared.lock();
        let now = Instant::now();
        if st.recovering.get(&inode).is_some_and(|t| *t > now) {
            return;
        }
        st.recovering.insert(inode, now + RUNNING);
    }
    tokio::spawn(async move {
        let r = recover(&shared, inode).await;
        let mut st = shared.lock();
        match r {
            Ok(()) => {
                st.recovering.remove(&inode);
            }
            Err(e) => {
                tracing::warn!(inode = inode.0, error = %e, "lease recovery failed; retrying later");
                st.recovering.insert(inode, Instant::now() + RETRY_AFTER);
            }
        }
    });
}

/// The (parent, name) of `inode` when it is the hidden temporary file of a `put` by `holder`:
/// `.NAME.ringfs-put-TAG` or `.ringfs-put-TAG` (for long names), TAG being the first 8 characters
/// of the writer's client id, with one link. The CLI writes there and renames it into place when
/// complete, so a writer that died before that left a partial copy nobody will use: lease
/// recovery deletes it instead of closing it (a killed `hdfs dfs -put` leaves its `._COPYING_`
/// file forever). A file renamed away from that name is recovered like any other.
fn abandoned_put_temp(ns: &Namespace, inode: InodeId, holder: &str) -> Option<(InodeId, String)> {
    let n = ns.get(inode)?;
    if n.nlink != 1 || n.file.is_none() {
        return None;
    }
    let (name, _) = ns
        .get(n.parent)?
        .children
        .as_ref()?
        .iter()
        .find(|(_, &c)| c == inode)?;
    is_put_temp_name(name, holder).then(|| (n.parent, name.clone()))
}

/// The outermost directory above `dir` (or `dir` itself) that is the temporary tree of a `put`
/// or `cp` of a directory by `holder` (same names as files, see [`is_put_temp_name`]), as
/// (parent, name). Such a copy keeps a temporary file open in it for as long as it runs, so when
/// that file's lease expires the copy is dead and its unfinished tree goes with the file.
fn abandoned_put_tree(ns: &Namespace, dir: InodeId, holder: &str) -> Option<(InodeId, String)> {
    let mut found = None;
    let mut cur = dir;
    while cur != crate::namespace::ROOT {
        let parent = ns.get(cur)?.parent;
        let (name, _) = ns
            .get(parent)?
            .children
            .as_ref()?
            .iter()
            .find(|(_, &c)| c == cur)?;
        if is_put_temp_name(name, holder) {
            found = Some((parent, name.clone()));
        }
        cur = parent;
    }
    found
}

/// Whether `name` is a temporary name `put` gives a file it writes as client `holder`.
fn is_put_temp_name(name: &str, holder: &str) -> bool {
    let Some(tag) = holder.get(..8) else {
        return false;
    };
    let suffix = format!(".ringfs-put-{tag}");
    name == suffix
        || (name.starts_with('.') && name.len() > suffix.len() + 1 && name.ends_with(&suffix))
}

/// What the fencing step found out about the last block.
enum Last {
    /// No last block, or it is complete: just close the file.
    Complete,
    /// Being written: ask these nodes (addresses) about it.
    Writing {
        block: BlockRef,
        current_generation: u64,
        new_generation: u64,
        candidates: Vec<(DatanodeId, String)>,
    },
}

fn candidates(st: &State, block: BlockId) -> Vec<(DatanodeId, String)> {
    let mut ids: Vec<DatanodeId> = Vec::new();
    if let Some(b) = st.blocks.get(block) {
        ids.extend(b.pipeline.iter().cloned());
        ids.extend(b.replicas.keys().cloned());
    }
    // Nothing known (the namenode restarted mid-write): ask everybody alive.
    if ids.is_empty() {
        ids.extend(st.nodes.all().filter(|n| n.alive).map(|n| n.id.clone()));
    }
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| {
            st.nodes
                .get(&id)
                .filter(|n| n.alive)
                .map(|n| (id.clone(), n.address.clone()))
        })
        .collect()
}

async fn recover(shared: &Arc<Shared>, inode: InodeId) -> Result<()> {
    let last = shared
        .mutate(|st, after| {
            let holder = st
                .ns
                .get(inode)
                .and_then(|i| i.file.as_ref())
                .and_then(|f| f.lease.clone());
            let Some(holder) = holder else {
                return Ok(None);
            };
            if let Some((parent, name)) = abandoned_put_temp(&st.ns, inode, &holder) {
                // What the interrupted `put` would have done itself: its hidden temporary file
                // goes, with its blocks (the target was never touched).
                after.free_uncommitted(&st.blocks, inode, &holder);
                let freed = st.ns.remove(
                    &Caller::root(),
                    EntrySel::Child(parent, &name),
                    RemoveMode::default(),
                    Timestamp::now(),
                )?;
                after.freed.extend(freed);
                tracing::info!(inode = inode.0, %name, holder = %holder,
                    "lease expired: removed the temporary file of an interrupted put");
                if let Some((tree_parent, tree)) = abandoned_put_tree(&st.ns, parent, &holder) {
                    let freed = st.ns.remove(
                        &Caller::root(),
                        EntrySel::Child(tree_parent, &tree),
                        RemoveMode {
                            recursive: true,
                            ..RemoveMode::default()
                        },
                        Timestamp::now(),
                    )?;
                    after.freed.extend(freed);
                    tracing::info!(%tree, holder = %holder,
                        "lease expired: removed the temporary tree of an interrupted put or cp");
                }
                return Ok(None);
            }
            let last = st.ns.recover_lease(inode)?;
            // Copy-on-write blocks the old holder never committed.
            after.free_uncommitted(&st.blocks, inode, &holder);
            let Some(last) = last else {
                return Ok(Some(Last::Complete));
            };
            let Some(info) = st.blocks.get(BlockId(last.id)) else {
                return Ok(Some(Last::Complete));
            };
            if !info.writing {
                return Ok(Some(Last::Complete));
            }
            let current_generation = info.generation.max(last.generation);
            let new_generation = st.ns.next_generation();
            let candidates = candidates(st, BlockId(last.id));
            Ok(Some(Last::Writing {
                block: last,
                current_generation,
                new_generation,
                candidates,
            }))
        })
        .await?;
    let last = match last {
        None => return Ok(()), // closed meanwhile
        Some(Last::Complete) => None,
        Some(Last::Writing {
            block,
            current_generation,
            new_generation,
            candidates,
        }) => Some(
            finalize(
                shared,
                block,
                current_generation,
                new_generation,
                candidates,
            )
            .await?,
        ),
    };
    let now = Timestamp::now();
    shared
        .mutate(|st, after| {
            let replication = st.ns.get(inode).and_then(|i| i.file.as_ref()).map_or(1, |f| f.replication);
            let (block, finalized) = match &last {
                Some((b, nodes)) => (Some(*b), nodes.clone()),
                None => (None, Vec::new()),
            };
            let freed = st.ns.finish_recovery(inode, block, now)?;
            if let Some(b) = block.filter(|b| b.len > 0) {
                let stale = st.blocks.commit(BlockId(b.id), b.generation, b.len, inode, replication);
                after.stale(BlockId(b.id), stale);
                for n in &finalized {
                    st.blocks.add_replica(n, BlockId(b.id), b.generation, b.len);
                }
            }
            after.freed.extend(freed);
            tracing::info!(inode = inode.0, last = ?block, replicas = finalized.len(), "lease recovered: file closed");
            Ok(())
        })
        .await
}

/// Asks every candidate for its verified length, finalizes the agreed (shortest) length at the new
/// generation, and returns the recovered block with the nodes that finalized it. A block nobody has
/// comes back with length 0 (the namespace drops it).
async fn finalize(
    shared: &Arc<Shared>,
    block: BlockRef,
    current: u64,
    new_generation: u64,
    candidates: Vec<(DatanodeId, String)>,
) -> Result<(BlockRef, Vec<DatanodeId>)> {
    let token = shared.token(block.id, current, AccessMode::Write);
    let ask = |addr: String, finalize_len: Option<u64>| {
        let token = token.clone();
        async move {
            let ch = ringfs_proto::net::connect_lazy(&addr).map_err(|e| format!("{addr}: {e}"))?;
            let mut client = ringfs_proto::net::data_transfer_client(ch);
            let mut req = tonic::Request::new(pb::RecoverReplicaRequest {
                block_id: block.id,
                generation: current,
                new_generation,
                finalize_len,
                access_token: token,
            });
            req.set_timeout(RPC_TIMEOUT);
            client
                .recover_replica(req)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| format!("{addr}: {}", s.message()))
        }
    };
    let answers =
        futures::future::join_all(candidates.iter().map(|(_, a)| ask(a.clone(), None))).await;
    let mut lens = Vec::new();
    let mut holders = Vec::new();
    for ((id, addr), a) in candidates.iter().zip(answers) {
        match a {
            Ok(r) => {
                lens.push(r.len);
                holders.push((id.clone(), addr.clone()));
            }
            Err(e) => {
                tracing::debug!(block = block.id, error = %e, "replica not recoverable there")
            }
        }
    }
    let Some(len) = agreed_length(&lens) else {
        tracing::warn!(
            block = block.id,
            "no replica of the last block found: dropping it"
        );
        return Ok((
            BlockRef {
                id: block.id,
                generation: new_generation,
                len: 0,
            },
            Vec::new(),
        ));
    };
    if len == 0 {
        return Ok((
            BlockRef {
                id: block.id,
                generation: new_generation,
                len: 0,
            },
            Vec::new(),
        ));
    }
    let answers =
        futures::future::join_all(holders.iter().map(|(_, a)| ask(a.clone(), Some(len)))).await;
    let mut finalized = Vec::new();
    for ((id, _), a) in holders.iter().zip(answers) {
        match a {
            Ok(r) if r.finalized && r.len == len => finalized.push(id.clone()),
            Ok(r) => {
                tracing::warn!(block = block.id, datanode = %id, len = r.len, "replica did not finalize at {len}")
            }
            Err(e) => tracing::warn!(block = block.id, error = %e, "finalizing a replica failed"),
        }
    }
    if finalized.is_empty() {
        return Err(NamenodeError::FailedPrecondition(format!(
            "block {}: no replica could be finalized at length {len}",
            block.id
        )));
    }
    Ok((
        BlockRef {
            id: block.id,
            generation: new_generation,
            len,
        },
        finalized,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_temporary_names_are_recognised_for_their_writer_only() {
        let holder = "1a2b3c4d-0000-4000-8000-000000000000";
        assert!(is_put_temp_name(".data.csv.ringfs-put-1a2b3c4d", holder));
        assert!(is_put_temp_name(".ringfs-put-1a2b3c4d", holder));
        for other in [
            "data.csv.ringfs-put-1a2b3c4d",    // not hidden: not a name put makes
            ".data.csv.ringfs-put-99999999",   // another writer's
            ".data.csv.ringfs-put-1a2b3c4d.x", // renamed
            "..ringfs-put-1a2b3c4d",
            ".data.csv",
        ] {
            assert!(!is_put_temp_name(other, holder), "{other}");
        }
        assert!(!is_put_temp_name(".ringfs-put-", "short"));
    }

    #[test]
    fn an_abandoned_put_temporary_file_is_found_by_inode() {
        let mut ns = Namespace::new();
        let holder = "1a2b3c4d-0000-4000-8000-000000000000";
        let create = |ns: &mut Namespace, path: &str| {
            ns.create_file(
                &Caller::root(),
                EntrySel::Path(path),
                crate::namespace::CreateFile {
                    mode: 0o644,
                    replication: 1,
                    block_size: 1 << 20,
                    exclusive: true,
                    overwrite: false,
                    lease: Some(holder.to_string()),
                },
                Timestamp::now(),
            )
            .unwrap()
            .0
        };
        let tmp = create(&mut ns, "/.f.ringfs-put-1a2b3c4d");
        let plain = create(&mut ns, "/f");
        let root = ns.get(tmp).unwrap().parent;
        assert_eq!(
            abandoned_put_temp(&ns, tmp, holder),
            Some((root, ".f.ringfs-put-1a2b3c4d".to_string()))
        );
        assert_eq!(abandoned_put_temp(&ns, tmp, "99999999-other"), None);
        assert_eq!(abandoned_put_temp(&ns, plain, holder), None);
        // A tree: the outermost temporary directory of this holder above the file.
        for d in [
            "/.t.ringfs-put-1a2b3c4d",
            "/.t.ringfs-put-1a2b3c4d/sub",
            "/.t.ringfs-put-1a2b3c4d/sub/.in.ringfs-put-1a2b3c4d",
        ] {
            ns.mkdir(
                &Caller::root(),
                EntrySel::Path(d),
                0o755,
                false,
                Timestamp::now(),
            )
            .unwrap();
        }
        let inner = create(
            &mut ns,
            "/.t.ringfs-put-1a2b3c4d/sub/.in.ringfs-put-1a2b3c4d/.ringfs-put-1a2b3c4d",
        );
        let dir = ns.get(inner).unwrap().parent;
        assert_eq!(
            abandoned_put_tree(&ns, dir, holder),
            Some((root, ".t.ringfs-put-1a2b3c4d".to_string()))
        );
        assert_eq!(abandoned_put_tree(&ns, dir, "99999999-other"), None);
        assert_eq!(abandoned_put_tree(&ns, root, holder), None);
    }
}

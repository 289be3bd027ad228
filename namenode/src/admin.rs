//! What the namenode knows about datanodes that must outlive its restart, each in a JSON file of
//! its data directory replaced atomically (temp file, fsync, rename, fsync of the dir) on every
//! change:
//! - `datanodes-admin.json`: operator decisions, which nodes are being decommissioned or are
//!   decommissioned. Without it a restart put a draining node back in service: it took new
//!   replicas again and `report` forgot it.
//! - `datanodes-known.json`: every registered node (id, address, rack, capacity), saved when one
//!   registers for the first time or at a new address. A restarted namenode lists those that do
//!   not come back as dead, as before the restart, instead of forgetting them (`report` then
//!   showed a cluster that had lost a node as a smaller healthy one).

use crate::datanodes::{AdminState, KnownDatanode};
use crate::error::{NamenodeError, Result};
use ringfs_proto::DatanodeId;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The operator states' file name inside the namenode data directory.
pub const FILE_NAME: &str = "datanodes-admin.json";
/// The registered nodes' file name inside the namenode data directory.
pub const KNOWN_FILE_NAME: &str = "datanodes-known.json";

fn storage(op: &str, path: &Path, e: impl std::fmt::Display) -> NamenodeError {
    NamenodeError::Storage(format!("{}: {op}: {e}", path.display()))
}

/// The saved states (every node not listed is in service). A missing file is an empty map.
pub fn load(dir: &Path) -> Result<BTreeMap<DatanodeId, AdminState>> {
    load_map(&dir.join(FILE_NAME))
}

/// Replaces the saved states with `states` (nodes in service need not be listed).
pub fn save(dir: &Path, states: &BTreeMap<DatanodeId, AdminState>) -> Result<()> {
    save_map(dir, FILE_NAME, states)
}

/// The saved registered nodes. A missing file (a data dir of an older version) is an empty map.
pub fn load_known(dir: &Path) -> Result<BTreeMap<DatanodeId, KnownDatanode>> {
    load_map(&dir.join(KNOWN_FILE_NAME))
}

/// Replaces the saved registered nodes with `known`.
pub fn save_known(dir: &Path, known: &BTreeMap<DatanodeId, KnownDatanode>) -> Result<()> {
    save_map(dir, KNOWN_FILE_NAME, known)
}

fn load_map<V: serde::de::DeserializeOwned>(path: &PathBuf) -> Result<BTreeMap<DatanodeId, V>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| storage("parse", path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(storage("read", path, e)),
    }
}

fn save_map<V: serde::Serialize>(
    dir: &Path,
    name: &str,
    map: &BTreeMap<DatanodeId, V>,
) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let json = serde_json::to_vec_pretty(map).map_err(|e| storage("encode", &path, e))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| storage("create", &tmp, e))?;
    f.write_all(&json)
        .and_then(|()| f.sync_all())
        .map_err(|e| storage("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| storage("rename", &path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| storage("fsync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let states = BTreeMap::from([
            (DatanodeId("a".into()), AdminState::Decommissioning),
            (DatanodeId("b".into()), AdminState::Decommissioned),
        ]);
        save(dir.path(), &states).unwrap();
        assert_eq!(load(dir.path()).unwrap(), states);
        save(dir.path(), &BTreeMap::new()).unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(FILE_NAME), "{err}");
    }

    #[test]
    fn known_nodes_round_trip_apart_from_the_states() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_known(dir.path()).unwrap().is_empty());
        let known = BTreeMap::from([(
            DatanodeId("a".into()),
            KnownDatanode {
                address: "127.0.0.1:9866".into(),
                rack: "r1".into(),
                capacity: 1 << 30,
            },
        )]);
        save_known(dir.path(), &known).unwrap();
        assert_eq!(load_known(dir.path()).unwrap(), known);
        assert!(load(dir.path()).unwrap().is_empty());
    }
}

//! Operator decisions about datanodes that must outlive a namenode restart: which nodes are being
//! decommissioned or are decommissioned. Kept in `<data dir>/datanodes-admin.json`, replaced
//! atomically (temp file, fsync, rename, fsync of the dir) on every change. Without it a restart
//! put a draining node back in service: it took new replicas again and `report` forgot it.

use crate::datanodes::AdminState;
use crate::error::{NamenodeError, Result};
use ringfs_proto::DatanodeId;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file's name inside the namenode data directory.
pub const FILE_NAME: &str = "datanodes-admin.json";

fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn storage(op: &str, path: &Path, e: impl std::fmt::Display) -> NamenodeError {
    NamenodeError::Storage(format!("{}: {op}: {e}", path.display()))
}

/// The saved states (every node not listed is in service). A missing file is an empty map.
pub fn load(dir: &Path) -> Result<BTreeMap<DatanodeId, AdminState>> {
    let path = path_in(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| storage("parse", &path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(storage("read", &path, e)),
    }
}

/// Replaces the saved states with `states` (nodes in service need not be listed).
pub fn save(dir: &Path, states: &BTreeMap<DatanodeId, AdminState>) -> Result<()> {
    let path = path_in(dir);
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let json = serde_json::to_vec_pretty(states).map_err(|e| storage("encode", &path, e))?;
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
}

//! Self-healing (issue 4): re-replication after a datanode dies, trimming when it returns, rebalancing onto
//! a new node, pipeline recovery during a put, lease recovery after a client dies, the scrubber,
//! re-replication priority, and decommissioning.

use crate::cluster::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `count` random files of `size` bytes under /data; returns (path, blake3).
fn put_files(c: &TestCluster, count: usize, size: u64, seed: u64) -> Vec<(String, blake3::Hash)> {
    c.ok(&["mkdir", "-p", "/data"]);
    (0..count)
        .map(|n| {
            let local = c.scratch_path("src");
            let hash = write_random_file(&local, size, seed + n as u64);
            let path = format!("/data/f{n}");
            c.put_file(&local, &path, &[]);
            let _ = std::fs::remove_file(&local);
            (path, hash)
        })
        .collect()
}

#[track_caller]
fn verify_files(cli: &Cli, files: &[(String, blake3::Hash)]) {
    for (path, hash) in files {
        assert_eq!(cli.get_hash(path), *hash, "{path} reads back other bytes");
    }
}

/// block id -> its locations, from `stat --json` of every file.
fn locations(cli: &Cli, files: &[(String, blake3::Hash)]) -> BTreeMap<u64, Vec<String>> {
    let mut out = BTreeMap::new();
    for (path, _) in files {
        for b in stat_blocks(&cli.stat_json(path)) {
            out.insert(field_u64(&b, "id"), block_locations(&b));
        }
    }
    out
}

/// The `state` of the datanode at `addr` in `report --json`.
fn datanode_state(cli: &Cli, addr: &str) -> String {
    let report = cli.report_json();
    report_datanodes(&report)
        .iter()
        .find(|d| field_str(d, "address") == addr)
        .map(|d| field_str(d, "state").to_string())
        .unwrap_or_else(|| "absent".into())
}

/// Waits until every block has exactly `r` distinct locations, none of them in `gone`, and fsck is clean.
fn wait_fully_replicated_without(
    cli: &Cli,
    files: &[(String, blake3::Hash)],
    r: usize,
    gone: &[&str],
    timeout: Duration,
) {
    wait_for(
        timeout,
        &format!("every block at {r} live replicas, none on {gone:?}"),
        || {
            let f = cli.fsck_json("/");
            if !fsck_is_healthy(&f, r as u64) {
                return Err(format!("fsck: {f}"));
            }
            for (id, locs) in locations(cli, files) {
                let distinct: BTreeSet<&String> = locs.iter().collect();
                if locs.len() != r
                    || distinct.len() != r
                    || locs.iter().any(|l| gone.contains(&l.as_str()))
                {
                    return Err(format!("block {id} at {locs:?}"));
                }
            }
            Ok(())
        },
    );
}

/// Replica files on every datanode's disk, per block id: how many nodes hold it.
fn disk_copies(c: &TestCluster) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for (_, r) in c.all_replicas() {
        *out.entry(r.block_id).or_insert(0) += 1;
    }
    out
}

#[test]
fn dead_datanode_blocks_are_re_replicated_to_three_live_replicas() {
    // Five datanodes, R=3, 200 MiB in 100 blocks: `kill -9` one; within a deadline every block is back at 3
    // live replicas, none on the dead node, and every file reads back identical.
    let mut c = TestCluster::builder()
        .datanodes(5)
        .replication(3)
        .block_size("2MiB")
        .heartbeat("100ms")
        .dead_after("1s")
        .start();
    let files = put_files(&c, 4, 50 * MIB as u64, 10);
    let before = locations(&c, &files);
    assert_eq!(before.len(), 100);
    let victim = c.datanode_addr(2).to_string();
    let held = before.values().filter(|l| l.contains(&victim)).count();
    assert!(held > 0, "the victim holds no block");
    c.kill_datanode(2);
    let start = Instant::now();
    wait_until(
        Duration::from_secs(20),
        "the killed datanode to be reported dead",
        || datanode_state(&c, &victim) == "dead",
    );
    wait_fully_replicated_without(&c, &files, 3, &[&victim], Duration::from_secs(120));
    eprintln!(
        "re-replicated {held} blocks ({} MiB) in {:?} after the kill",
        held * 2,
        start.elapsed()
    );
    // Untouched blocks kept their replicas; the repaired ones kept their two survivors.
    let after = locations(&c, &files);
    for (id, old) in &before {
        let survivors: Vec<&String> = old.iter().filter(|l| **l != victim).collect();
        assert!(
            survivors.iter().all(|s| after[id].contains(s)),
            "block {id}: {old:?} -> {:?}",
            after[id]
        );
    }
    // On disk: every block has at least 3 replica files on the live nodes.
    let live_copies: BTreeMap<u64, usize> = (0..5)
        .filter(|&i| i != 2)
        .flat_map(|i| c.replicas_on(i))
        .fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.block_id).or_insert(0) += 1;
            m
        });
    for id in before.keys() {
        assert!(
            live_copies.get(id).copied().unwrap_or(0) >= 3,
            "block {id} has {:?} replica files on live nodes",
            live_copies.get(id)
        );
    }
    verify_files(&c, &files);
}

#[test]
fn returning_datanode_has_excess_replicas_trimmed_to_three() {
    // After a dead node's blocks were re-replicated, it comes back on the same dir: the excess replicas are
    // deleted so every block has exactly 3, on its ring owners (the original locations), on disk too.
    let mut c = TestCluster::builder()
        .datanodes(5)
        .replication(3)
        .block_size("1MiB")
        .heartbeat("100ms")
        .dead_after("1s")
        .start();
    let files = put_files(&c, 4, 10 * MIB as u64, 20);
    let before = locations(&c, &files);
    let victim = c.datanode_addr(0).to_string();
    assert!(!c.replicas_on(0).is_empty());
    c.kill_datanode(0);
    wait_until(
        Duration::from_secs(20),
        "the killed datanode to be reported dead",
        || datanode_state(&c, &victim) == "dead",
    );
    wait_fully_replicated_without(&c, &files, 3, &[&victim], Duration::from_secs(60));
    c.restart_datanode(0);
    wait_until(
        Duration::from_secs(20),
        "the restarted datanode to be live",
        || datanode_state(&c, &victim) == "live",
    );
    wait_for(
        Duration::from_secs(60),
        "every block back at exactly 3 replicas, on disk too",
        || {
            let f = c.fsck_json("/");
            if !fsck_is_healthy(&f, 3) {
                return Err(format!("fsck: {f}"));
            }
            let disk = disk_copies(&c);
            match disk.iter().find(|(_, n)| **n != 3) {
                Some((id, n)) => Err(format!("block {id} has {n} replica files on disk")),
                None if disk.len() != before.len() => Err(format!(
                    "{} blocks on disk, want {}",
                    disk.len(),
                    before.len()
                )),
                None => Ok(()),
            }
        },
    );
    let after = locations(&c, &files);
    for (id, old) in &before {
        let (a, b): (BTreeSet<&String>, BTreeSet<&String>) =
            (old.iter().collect(), after[id].iter().collect());
        assert_eq!(a, b, "block {id} is not back on its ring owners");
    }
    verify_files(&c, &files);
}

#[test]
fn new_datanode_receives_about_its_share_of_replicas() {
    // A 6th datanode joins 5 (R=3, 400 blocks): replicas move to it until the ring is satisfied; the number
    // moved is at most 1.25 × the ideal (1/6 of all replicas) and every file stays readable during the move.
    let mut c = TestCluster::builder()
        .datanodes(5)
        .replication(3)
        .block_size("128KiB")
        .heartbeat("100ms")
        .dead_after("2s")
        .namenode_arg(&["--replication-interval", "200ms"])
        .start();
    let files = put_files(&c, 5, 10 * MIB as u64, 30);
    let before = locations(&c, &files);
    assert_eq!(before.len(), 400);
    let total_replicas: usize = before.values().map(Vec::len).sum();

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (cli, files, stop, reads) = (c.client(), files.clone(), stop.clone(), reads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for (path, hash) in &files {
                    let local = cli.scratch_path("during-move");
                    let out = cli.run(&["get", path, local.to_str().unwrap()]);
                    if !out.status.success() {
                        return Err(format!(
                            "get {path} during the move: {}",
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                    if hash_file(&local) != *hash {
                        return Err(format!("get {path} during the move returned other bytes"));
                    }
                    let _ = std::fs::remove_file(&local);
                    reads.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(())
        })
    };

    let new = c.add_datanode();
    let new_addr = c.datanode_addr(new).to_string();
    let after = wait_for(
        Duration::from_secs(120),
        "rebalancing onto the new datanode to finish",
        || {
            let f = c.fsck_json("/");
            if !fsck_is_healthy(&f, 3) {
                return Err(format!("fsck: {f}"));
            }
            let locs = locations(&c, &files);
            let on_new = locs.values().filter(|l| l.contains(&new_addr)).count();
            if on_new == 0 {
                return Err("no replica on the new datanode yet".into());
            }
            Ok(locs)
        },
    );
    let reads_during = reads.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap().unwrap_or_else(|e| panic!("{e}"));

    let moved: usize = before
        .iter()
        .map(|(id, old)| after[id].iter().filter(|l| !old.contains(l)).count())
        .sum();
    let on_new: usize = after.values().filter(|l| l.contains(&new_addr)).count();
    let ideal = total_replicas as f64 / 6.0;
    eprintln!("rebalance: moved {moved} of {total_replicas} replicas (ideal {ideal:.0}, {:.2}× ideal); {on_new} on the new node; {reads_during} reads during the move", moved as f64 / ideal);
    assert!(
        moved as f64 <= 1.25 * ideal,
        "moved {moved} replicas, more than 1.25 × the ideal {ideal:.0}"
    );
    assert!(
        on_new as f64 >= 0.5 * ideal,
        "the new node got only {on_new} replicas (ideal {ideal:.0})"
    );
    assert!(reads_during > 0, "no file was read during the move");
    // The moved-away replicas are deleted from disk.
    wait_until(
        Duration::from_secs(30),
        "exactly 3 replica files per block on disk",
        || disk_copies(&c).values().all(|&n| n == 3),
    );
    verify_files(&c, &files);
}

#[test]
fn pipeline_datanode_killed_during_a_500mib_put_does_not_fail_it() {
    // `kill -9` a datanode of the current write pipeline while a 500 MiB put runs: the put succeeds, the
    // file reads back identical, and every block ends with 3 good replicas.
    let mut c = TestCluster::builder()
        .datanodes(4)
        .replication(3)
        .block_size("32MiB")
        .heartbeat("100ms")
        .dead_after("1s")
        .start();
    let local = c.scratch_path("500mib");
    let hash = write_random_file(&local, 500 * MIB as u64, 40);
    let mut put = c.spawn(&["put", local.to_str().unwrap(), "/big"], Stdio::null());
    // Wait until the file is being written with a second block open, then kill a node of that block's
    // pipeline (the middle one, so the first node's forwarding fails).
    let victim = wait_for(
        Duration::from_secs(120),
        "the put to be writing its second block",
        || {
            if let Ok(Some(status)) = put.try_wait() {
                panic!("put ended ({status}) before a datanode could be killed");
            }
            let st = c
                .file_being_written("/")
                .ok_or("no file under construction in / yet")?;
            let blocks = stat_blocks(&st);
            match blocks.last() {
                Some(b) if blocks.len() >= 2 && !block_locations(b).is_empty() => {
                    let locs = block_locations(b);
                    Ok(locs[locs.len() / 2].clone())
                }
                _ => Err(st.to_string()),
            }
        },
    );
    let i = c.datanode_index(&victim);
    c.kill_datanode(i);
    assert!(
        matches!(put.try_wait(), Ok(None)),
        "the put finished before the kill: the test did not test anything"
    );
    let status = wait_for(CLI_WAIT, "the put to finish", || {
        put.try_wait().unwrap().ok_or_else(String::new)
    });
    assert!(
        status.success(),
        "put failed after a pipeline datanode died ({status})"
    );
    assert_eq!(c.get_hash("/big"), hash, "/big reads back other bytes");
    let files = vec![("/big".to_string(), hash)];
    wait_fully_replicated_without(&c, &files, 3, &[&victim], Duration::from_secs(120));
}

/// Long enough for a big put in a debug build.
const CLI_WAIT: Duration = Duration::from_secs(300);

#[test]
fn killed_writer_leaves_a_file_closed_at_a_consistent_length_after_the_lease_limit() {
    // `kill -9` a client in the middle of a put from stdin and rename its file away from the put's
    // temporary name (whose abandoned files are deleted): after the lease hard limit the namenode
    // closes the file at a length the replicas agree on; it reads back a prefix of what was written.
    let c = TestCluster::builder()
        .datanodes(3)
        .block_size("1MiB")
        .namenode_arg(&["--lease-soft-limit", "1s", "--lease-hard-limit", "4s"])
        .start();
    // The CLI reads its input in 4 MiB pieces: write more than two of them and keep stdin open.
    let written = random_bytes(9 * MIB + 300 * KIB, 50);
    let mut put = c.spawn(&["put", "-", "/partial"], Stdio::piped());
    let mut stdin = put.stdin.take().unwrap();
    {
        use std::io::Write;
        stdin.write_all(&written).unwrap();
        stdin.flush().unwrap();
    }
    // Wait until the namenode has seen a third block allocated. (put writes
    // under a temporary name in the same directory and renames at the end: find the file being written.)
    let (tmp_path, committed) = wait_for(
        Duration::from_secs(30),
        "the writer to reach its third block",
        || {
            let st = c
                .file_being_written("/")
                .ok_or("no file under construction in / yet")?;
            let blocks = stat_blocks(&st);
            if blocks.len() >= 3 {
                Ok((
                    field_str(&st, "path").to_string(),
                    ((blocks.len() - 1) * MIB) as u64,
                ))
            } else {
                Err(st.to_string())
            }
        },
    );
    put.kill().unwrap();
    put.wait().unwrap();
    drop(stdin);
    // A file being written can be renamed; the lease goes with it.
    c.ok(&["mv", &tmp_path, "/partial"]);
    assert!(under_construction(&c.stat_json("/partial")));
    let st = wait_for(
        Duration::from_secs(30),
        "lease recovery to close the file",
        || {
            let st = c.stat_json("/partial");
            if under_construction(&st) {
                Err(st.to_string())
            } else {
                Ok(st)
            }
        },
    );
    let got = c.get_bytes("/partial");
    assert_eq!(field_u64(&st, "size"), got.len() as u64);
    assert!(
        got.len() as u64 >= committed,
        "recovered length {} is shorter than the {committed} bytes in finished blocks",
        got.len()
    );
    assert!(got.len() <= written.len());
    assert_same_bytes(&got, &written[..got.len()], "/partial after lease recovery");
    c.wait_healthy("/", 3, Duration::from_secs(30));
    // The file is free again: another client can replace it.
    c.put_bytes_with("/partial", b"new owner", &["-f"]);
    assert_eq!(c.get_bytes("/partial"), b"new owner");
}

#[test]
fn killed_put_leaves_no_temporary_file_after_the_lease_limit() {
    // `kill -9` a put in the middle of its transfer: its hidden temporary file (under construction,
    // blocks committed) is deleted with its replicas when the lease hard limit passes, like the put
    // would have done itself; the target never appears and can be put again.
    let c = TestCluster::builder()
        .datanodes(3)
        .block_size("1MiB")
        .namenode_arg(&["--lease-soft-limit", "1s", "--lease-hard-limit", "2s"])
        .start();
    c.ok(&["mkdir", "/d"]);
    let written = random_bytes(9 * MIB, 51);
    let mut put = c.spawn(&["put", "-", "/d/f"], Stdio::piped());
    let mut stdin = put.stdin.take().unwrap();
    {
        use std::io::Write;
        stdin.write_all(&written).unwrap();
        stdin.flush().unwrap();
    }
    let tmp_path = wait_for(
        Duration::from_secs(30),
        "the writer to commit two blocks",
        || {
            let st = c
                .file_being_written("/d")
                .ok_or("no file under construction in /d yet")?;
            if stat_blocks(&st).len() >= 2 {
                Ok(field_str(&st, "path").to_string())
            } else {
                Err(st.to_string())
            }
        },
    );
    assert!(tmp_path.contains(".ringfs-put-"), "{tmp_path}");
    put.kill().unwrap();
    put.wait().unwrap();
    drop(stdin);
    wait_for(
        Duration::from_secs(30),
        "the abandoned temporary file to go",
        || {
            let names = c.ls_names("/d");
            if names.is_empty() {
                Ok(())
            } else {
                Err(format!("/d holds {names:?}"))
            }
        },
    );
    let f = c.fsck_json("/");
    assert_eq!(field_u64(&f, "files"), 0, "{f}");
    assert_eq!(field_u64(&f, "open_files"), 0, "{f}");
    assert_eq!(field_u64(&f, "blocks"), 0, "{f}");
    wait_for(
        Duration::from_secs(30),
        "the temporary file's replicas to be deleted",
        || match c.all_replicas().len() {
            0 => Ok(()),
            n => Err(format!("{n} replica files left")),
        },
    );
    c.put_bytes("/d/f", b"second try");
    assert_eq!(c.get_bytes("/d/f"), b"second try");
}

#[test]
fn puts_killed_at_any_moment_leave_the_complete_file_or_nothing() {
    // `kill -9` puts at moments spread over a whole put, densest in its last milliseconds (final
    // commit, rename into place, close). Once the lease limit passes, each target is either
    // absent or complete, and no temporary name is left. A put closed its file before renaming it:
    // killed in between, it left a complete hidden temporary file that nothing removed.
    let c = TestCluster::builder()
        .datanodes(3)
        .block_size("1MiB")
        .namenode_arg(&["--lease-soft-limit", "1s", "--lease-hard-limit", "2s"])
        .start();
    c.ok(&["mkdir", "/t"]);
    let mut cases = Vec::new();
    // A small file (committed inline: the end of the put is most of it) and a 2-block one.
    for (n, size) in [(0u64, 5_000u64), (1, 2 * MIB as u64 + 12_345)] {
        let local = c.scratch_path("src");
        write_random_file(&local, size, 77 + n);
        let local = local.to_str().unwrap().to_string();
        let t = Instant::now();
        c.ok(&["put", &local, &format!("/t/probe{n}")]);
        cases.push((local, t.elapsed()));
    }
    const PUTS: u32 = 30;
    let mut puts = Vec::new();
    for (n, (local, put_time)) in cases.iter().enumerate() {
        for i in 0..PUTS {
            let path = format!("/t/f{n}-{i}");
            let mut put = c.spawn(&["put", local, &path], Stdio::null());
            // From half the probe's duration to a little past it.
            std::thread::sleep(put_time.mul_f64(0.5 + 0.7 * i as f64 / PUTS as f64));
            let _ = put.kill();
            put.wait().unwrap();
            puts.push((path, local.clone()));
        }
    }
    wait_for(
        Duration::from_secs(30),
        "the temporary files of the killed puts to go",
        || {
            let names = c.ls_names("/t");
            let tmp: Vec<_> = names
                .iter()
                .filter(|n| n.contains(".ringfs-put-"))
                .collect();
            if tmp.is_empty() {
                Ok(())
            } else {
                Err(format!("left: {tmp:?}"))
            }
        },
    );
    for (path, local) in &puts {
        if c.exists(path) {
            assert!(
                c.get_bytes(path) == std::fs::read(local).unwrap(),
                "{path}: a killed put left a partial file"
            );
        }
    }
    // A put killed between its rename and its close leaves its file open until the lease expires.
    wait_fsck(&c, "open_files", 0, "no file left open");
}

#[test]
fn a_corrupt_replica_is_replaced_when_every_node_already_holds_the_block() {
    // 3 datanodes at R=3 (the `ringfs up` layout): the only node a good copy could go to is the
    // one with the corrupt replica, which waited to be replaced first: fsck said CORRUPT forever.
    // Now the corrupt replica is deleted first and a good copy takes its place.
    let c = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .block_size("1MiB")
        .heartbeat("100ms")
        .datanode_arg(&["--scrub-interval", "1s"])
        .start();
    let data = random_bytes(MIB, 72);
    c.put_bytes("/f", &data);
    let block = stat_blocks(&c.stat_json("/f"))[0].clone();
    let (id, gen) = (field_u64(&block, "id"), field_u64(&block, "generation"));
    let victim = c.datanode_index(&block_locations(&block)[0]);
    let replica = c
        .replicas_on(victim)
        .into_iter()
        .find(|r| r.block_id == id && r.generation == gen)
        .unwrap();
    let good = fs::read(&replica.path).unwrap();
    corrupt_file(&replica.path, replica.len / 2, 64);
    wait_for(
        Duration::from_secs(60),
        "a good copy in place of the corrupt replica",
        || {
            let f = c.fsck_json("/");
            let restored = fs::read(&replica.path).is_ok_and(|b| b == good);
            if fsck_is_healthy(&f, 3) && restored {
                Ok(())
            } else {
                Err(format!("replica restored: {restored}; fsck: {f}"))
            }
        },
    );
    assert_same_bytes(&c.get_bytes("/f"), &data, "/f");
}

#[test]
fn a_replica_held_corrupt_that_is_good_again_counts_again_and_heals_the_others() {
    // Every replica of a block damaged on disk: a read reports all three, the block is missing.
    // One is then restored by hand and its datanode restarted. Its corrupt mark used to stick
    // until a namenode restart: fsck said missing (exit 1) while the file read fine, and the
    // other two were never replaced. Now the node checks replicas held corrupt after its full
    // report, the good one counts again and the bad ones are replaced from it.
    let mut c = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .block_size("1MiB")
        .heartbeat("200ms")
        .dead_after("30s")
        .start();
    let data = random_bytes(500 * 1024, 73);
    c.put_bytes("/f", &data);
    let (id, gen, backup) = corrupt_every_replica_of_f(&c);
    assert!(
        !c.run(&["cat", "/f"]).status.success(),
        "cat of 3 bad replicas"
    );
    wait_missing(&c, "the block to be missing");
    // Restarted well within dead-after: the namenode keeps what it knew of the node.
    c.stop_datanode(0);
    fs::write(replica_of(&c, 0, id, gen).path, &backup).unwrap();
    c.restart_datanode(0);
    wait_f_healed(&c, id, gen, &backup, &data);
}

/// The replica file of block `id` generation `gen` on datanode `i`.
fn replica_of(c: &TestCluster, i: usize, id: u64, gen: u64) -> ReplicaFile {
    c.replicas_on(i)
        .into_iter()
        .find(|r| r.block_id == id && r.generation == gen)
        .unwrap_or_else(|| panic!("no replica of block {id} on datanode {i}"))
}

/// Damages every replica of the one block of `/f`; returns (block id, generation, good bytes).
fn corrupt_every_replica_of_f(c: &TestCluster) -> (u64, u64, Vec<u8>) {
    let block = stat_blocks(&c.stat_json("/f"))[0].clone();
    let (id, gen) = (field_u64(&block, "id"), field_u64(&block, "generation"));
    let good = fs::read(replica_of(c, 0, id, gen).path).unwrap();
    for i in 0..3 {
        let r = replica_of(c, i, id, gen);
        corrupt_file(&r.path, r.len / 2, 64);
    }
    (id, gen, good)
}

/// Waits until `/f` (one block) is healthy again, then checks that its 3 replica files hold
/// `good` and that it reads back as `data`.
fn wait_f_healed(c: &TestCluster, id: u64, gen: u64, good: &[u8], data: &[u8]) {
    wait_for(Duration::from_secs(60), "the block healthy again", || {
        let f = c.fsck_json("/");
        if fsck_is_healthy(&f, 3) {
            Ok(())
        } else {
            Err(f.to_string())
        }
    });
    for i in 0..3 {
        let r = replica_of(c, i, id, gen);
        assert_same_bytes(&fs::read(&r.path).unwrap(), good, "a replica file");
    }
    assert_same_bytes(&c.get_bytes("/f"), data, "/f");
}

/// Waits until `fsck --json /` shows `want` in `field`.
fn wait_fsck(c: &TestCluster, field: &str, want: u64, what: &str) {
    wait_for(Duration::from_secs(30), what, || {
        let f = c.fsck_json("/");
        if field_u64(&f, field) == want {
            Ok(())
        } else {
            Err(f.to_string())
        }
    });
}

fn wait_missing(c: &TestCluster, what: &str) {
    wait_fsck(c, "missing", 1, what);
}

#[test]
fn replicas_their_datanodes_found_corrupt_stay_corrupt_across_a_namenode_restart() {
    // Every replica of a block is bad and each datanode has checked its own. A restarted
    // namenode used to call the block healthy (fsck exit 0) until a reader or the scrubber (6 h)
    // hit it again: its marks were in memory only. The datanodes' full reports now say which
    // replicas they found corrupt.
    let mut c = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .block_size("1MiB")
        .heartbeat("200ms")
        .dead_after("30s")
        .start();
    c.put_bytes("/f", &random_bytes(500 * 1024, 74));
    corrupt_every_replica_of_f(&c);
    assert!(
        !c.run(&["cat", "/f"]).status.success(),
        "cat of 3 bad replicas"
    );
    wait_missing(&c, "the block to be missing");
    // The reader's report makes the namenode ask each datanode to check its replica.
    wait_until(
        Duration::from_secs(30),
        "every datanode to check its replica",
        || {
            (0..3).all(|i| {
                log_tail(c.datanode_log(i), 500).contains("checked a replica held corrupt")
            })
        },
    );
    c.kill_namenode();
    c.restart_namenode();
    c.wait_live_datanodes(3, Duration::from_secs(30));
    // Missing alone proves nothing: a namenode that has no report yet knows no replica at all.
    wait_for(
        Duration::from_secs(30),
        "the restarted namenode to hold the 3 reported replicas corrupt",
        || {
            let f = c.fsck_json("/");
            if field_u64(&f, "corrupt_replicas") == 3 && field_u64(&f, "missing") == 1 {
                Ok(())
            } else {
                Err(f.to_string())
            }
        },
    );
    // (A block without a good replica keeps the namenode in safe mode a while: don't wait.)
    assert!(
        !c.run(&["fsck", "--no-wait", "/"]).status.success(),
        "fsck of a block with no good replica exited 0"
    );
}

#[test]
fn a_replica_restored_by_hand_on_a_running_datanode_counts_again_at_its_next_scrub() {
    // The scrubbers find all three replicas of a block bad; one is then restored by hand while
    // its datanode runs. It read fine but stayed "corrupt" (block missing, fsck exit 1, the other
    // two never replaced) until the node's next full block report, minutes later. A clean scrub
    // of a replica the node had found corrupt now tells the namenode.
    let c = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .block_size("1MiB")
        .heartbeat("200ms")
        .datanode_arg(&["--scrub-interval", "1s"])
        .start();
    let data = random_bytes(500 * 1024, 75);
    c.put_bytes("/f", &data);
    let (id, gen, good) = corrupt_every_replica_of_f(&c);
    wait_missing(&c, "the scrubbers to find the block missing");
    // Written beside and renamed over, so a scrub never reads it half restored.
    let path = replica_of(&c, 0, id, gen).path;
    let tmp = path.with_extension("restoring");
    fs::write(&tmp, &good).unwrap();
    fs::rename(&tmp, &path).unwrap();
    wait_f_healed(&c, id, gen, &good, &data);
}

#[test]
fn replica_files_removed_from_a_running_datanode_are_found_and_copied_again() {
    // Replica files deleted under a running datanode (by hand, a disk swapped): its index and so
    // its block reports still listed them, the scrubber skipped them, and fsck said HEALTHY while
    // only two copies were left. The scrubber now reports them like corrupt replicas and the
    // namenode makes new copies.
    let c = TestCluster::builder()
        .datanodes(4)
        .replication(3)
        .block_size("256KiB")
        .heartbeat("100ms")
        .datanode_arg(&["--scrub-interval", "1s"])
        .start();
    let files = put_files(&c, 1, MIB as u64, 61);
    let by_block = replicas_by_block(&c);
    assert_eq!(by_block.len(), 4);
    let mut removed = Vec::new();
    for (id, dn, r, _) in spread_over_datanodes(&by_block, 3, 4) {
        std::fs::remove_file(&r.path).unwrap();
        std::fs::remove_file(r.path.with_extension("meta")).unwrap();
        removed.push((id, dn));
    }
    wait_for(
        Duration::from_secs(90),
        "the removed replicas to be copied again",
        || {
            let f = c.fsck_json("/");
            if !fsck_is_healthy(&f, 3) {
                return Err(format!("fsck: {f}"));
            }
            let disk = c.all_replicas();
            for (id, _) in &removed {
                let n = disk.iter().filter(|(_, r)| r.block_id == *id).count();
                if n != 3 {
                    return Err(format!("block {id} has {n} replica files"));
                }
            }
            Ok(())
        },
    );
    for (path, hash) in &files {
        assert_eq!(blake3::hash(&c.get_bytes(path)), *hash, "{path}");
    }
}

#[test]
fn a_replica_whose_meta_file_is_damaged_is_reported_by_the_read_that_finds_it() {
    // A truncated `.meta` file: a read over the network skipped that replica for another one but
    // did not report it, so only the scrubber (every 6 h by default) found it.
    let c = TestCluster::builder()
        .datanodes(4)
        .replication(3)
        .block_size("1MiB")
        .heartbeat("100ms")
        .start();
    c.put_bytes("/f", &random_bytes(MIB, 62));
    let replicas = c.all_replicas();
    assert_eq!(replicas.len(), 3);
    for (_, r) in &replicas {
        std::fs::write(r.path.with_extension("meta"), b"not a meta").unwrap();
    }
    // Every replica is bad now: the read (over the network) fails, and each datanode it asked
    // reports its own.
    let mut get = c.command(&["get", "/f", "-"]);
    get.env("RINGFS_SHORT_CIRCUIT", "0");
    let out = run_with_timeout(
        get,
        None,
        "ringfs get /f - (network only)",
        Duration::from_secs(120),
    );
    assert!(
        !out.status.success(),
        "read a file whose replicas are all damaged"
    );
    wait_for(
        Duration::from_secs(30),
        "the damaged replicas reported",
        || {
            let f = c.fsck_json("/");
            match f["corrupt_replicas"].as_u64() {
                Some(n) if n >= 1 => Ok(()),
                _ => Err(f.to_string()),
            }
        },
    );
}

#[test]
fn scrubber_finds_and_repairs_corrupted_replicas_without_any_read() {
    // Corrupt 5 replica files (5 blocks) on disk and read nothing: the scrubbers find them, the bad replicas
    // are replaced from good ones, and every block ends with 3 identical good replicas.
    let c = TestCluster::builder()
        .datanodes(4)
        .replication(3)
        .block_size("256KiB")
        .heartbeat("100ms")
        .datanode_arg(&["--scrub-interval", "1s"])
        .start();
    let files = put_files(&c, 1, 4 * MIB as u64, 60);
    let by_block = replicas_by_block(&c);
    assert_eq!(by_block.len(), 16);
    // 5 distinct blocks, spread over the datanodes.
    let mut corrupted = Vec::new();
    for (id, dn, r, other) in spread_over_datanodes(&by_block, 5, 4) {
        let good = std::fs::read(&other.path).unwrap();
        corrupt_file(&r.path, r.len / 3, 64);
        corrupted.push((id, dn, good));
    }
    wait_for(
        Duration::from_secs(90),
        "the 5 corrupted replicas to be replaced by good copies",
        || {
            let f = c.fsck_json("/");
            if !fsck_is_healthy(&f, 3) {
                return Err(format!("fsck: {f}"));
            }
            let disk = c.all_replicas();
            for (id, _, good) in &corrupted {
                let copies: Vec<&(usize, ReplicaFile)> =
                    disk.iter().filter(|(_, r)| r.block_id == *id).collect();
                if copies.len() != 3 {
                    return Err(format!("block {id} has {} replica files", copies.len()));
                }
                for (dn, r) in copies {
                    match std::fs::read(&r.path) {
                        Ok(bytes) if bytes == *good => {}
                        Ok(_) => {
                            return Err(format!("block {id} on datanode {dn} is still corrupt"))
                        }
                        Err(e) => return Err(format!("read {}: {e}", r.path.display())),
                    }
                }
            }
            Ok(())
        },
    );
    verify_files(&c, &files);
}

/// block id -> live replicas, from one `fsck --json` (blocks not in `problems` are at full replication).
fn live_replicas(f: &Value) -> BTreeMap<u64, u64> {
    f.get("problems")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("fsck --json has no problems list: {f}"))
        .iter()
        .filter(|p| {
            matches!(
                p.get("problem").and_then(Value::as_str),
                Some("under_replicated" | "missing")
            )
        })
        .map(|p| {
            (
                field_u64(p, "block_id"),
                p.get("live_replicas").and_then(Value::as_u64).unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn blocks_with_one_live_replica_are_re_replicated_before_blocks_with_two() {
    // R=3 on 5 datanodes, 2 killed at once: blocks that lost two replicas get back to two before more than a
    // small share of the blocks that lost one are repaired (the planner works fewest-live-replicas first).
    let mut c = TestCluster::builder()
        .datanodes(5)
        .replication(3)
        .block_size("64KiB")
        .heartbeat("100ms")
        .dead_after("1s")
        .namenode_arg(&[
            "--replication-max-streams",
            "4",
            "--replication-interval",
            "100ms",
        ])
        .start();
    let files = put_files(&c, 2, 10 * MIB as u64, 70);
    let before = locations(&c, &files);
    let (a, b) = (
        c.datanode_addr(0).to_string(),
        c.datanode_addr(1).to_string(),
    );
    let at_risk: BTreeSet<u64> = before
        .iter()
        .filter(|(_, l)| l.contains(&a) && l.contains(&b))
        .map(|(id, _)| *id)
        .collect();
    let others: BTreeSet<u64> = before
        .iter()
        .filter(|(_, l)| l.contains(&a) != l.contains(&b))
        .map(|(id, _)| *id)
        .collect();
    assert!(
        !at_risk.is_empty() && !others.is_empty(),
        "{} at risk, {} others",
        at_risk.len(),
        others.len()
    );
    c.kill_datanode(0);
    c.kill_datanode(1);
    wait_until(
        Duration::from_secs(20),
        "both killed datanodes reported dead",
        || datanode_state(&c, &a) == "dead" && datanode_state(&c, &b) == "dead",
    );
    // Small blocks are copied many to a round (each counts as a share of a stream), so a round
    // starts every at-risk copy and some others, which run side by side: a fifth of the others
    // may finish first (up to 30 of ~200 seen in runs here).
    let slack = (others.len() / 5).max(8);
    let mut samples = Vec::new();
    wait_for(
        Duration::from_secs(180),
        "every block back at 3 replicas",
        || {
            let f = c.fsck_json("/");
            let live = live_replicas(&f);
            let risky_left = at_risk
                .iter()
                .filter(|id| live.get(id).is_some_and(|&n| n <= 1))
                .count();
            let others_done = others.iter().filter(|id| !live.contains_key(id)).count();
            samples.push((risky_left, others_done));
            assert!(
            risky_left == 0 || others_done <= slack,
            "{others_done} of {} two-replica blocks repaired while {risky_left} of {} one-replica blocks still wait",
            others.len(),
            at_risk.len()
        );
            if fsck_is_healthy(&f, 3) {
                Ok(())
            } else {
                Err(format!(
                    "{risky_left} at-risk left, {others_done} others done"
                ))
            }
        },
    );
    eprintln!(
        "priority: {} samples; at-risk {} / others {}; others repaired when the last at-risk block got its 2nd replica: {:?}",
        samples.len(),
        at_risk.len(),
        others.len(),
        samples.iter().find(|(risky, _)| *risky == 0).map(|(_, done)| done)
    );
    verify_files(&c, &files);
}

#[test]
fn decommissioned_datanode_can_be_stopped_without_losing_anything() {
    // `admin decommission` drains a datanode holding data; once report says decommissioned, stopping it leaves
    // every block with 3 live replicas and every file readable.
    let mut c = TestCluster::builder()
        .datanodes(4)
        .replication(3)
        .block_size("256KiB")
        .heartbeat("100ms")
        .dead_after("1s")
        .start();
    let files = put_files(&c, 2, 4 * MIB as u64, 80);
    let addr = c.datanode_addr(0).to_string();
    assert!(!c.replicas_on(0).is_empty());
    c.ok(&["admin", "decommission", &addr]);
    wait_until(
        Duration::from_secs(60),
        "the datanode to be decommissioned",
        || datanode_state(&c, &addr) == "decommissioned",
    );
    // Before stopping it: every block has 3 replicas elsewhere.
    for (id, locs) in locations(&c, &files) {
        let elsewhere: BTreeSet<&String> = locs.iter().filter(|l| **l != addr).collect();
        assert!(
            elsewhere.len() >= 3,
            "block {id} has only {elsewhere:?} besides the decommissioned node"
        );
    }
    c.stop_datanode(0);
    verify_files(&c, &files);
    wait_fully_replicated_without(&c, &files, 3, &[&addr], Duration::from_secs(30));
    // Decommissioning an unknown address is a clear error.
    c.fails(&["admin", "decommission", "127.0.0.1:1"])
        .says(&["127.0.0.1:1", "no datanode registered at this address"]);
}

#[test]
fn a_decommission_can_be_undone() {
    // The wrong node decommissioned in a 3-node R=3 cluster: every put then fails (2 nodes in
    // service). `admin recommission` puts it back, and that survives a namenode restart.
    let mut c = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .block_size("256KiB")
        .heartbeat("100ms")
        .start();
    let addr = c.datanode_addr(2).to_string();
    // The cluster's free space, and the free space of the nodes in service, from one report (the
    // nodes' figures change with every heartbeat). A draining node takes no new blocks: its room
    // is not the cluster's (report, statfs, df).
    let free = |c: &TestCluster| {
        let r = c.report_json();
        let in_service: u64 = report_datanodes(&r)
            .iter()
            .filter(|d| field_str(d, "state") == "live")
            .map(|d| field_u64(d, "remaining"))
            .sum();
        (field_u64(&r, "remaining"), in_service)
    };
    // Blocks the draining node holds and cannot hand over (R=3 on 3 nodes) keep it draining: an
    // empty node is decommissioned at the next monitor tick, maybe before `report` runs.
    c.put_bytes("/held", &random_bytes(MIB, 97));
    c.ok(&["admin", "decommission", &addr]);
    assert_eq!(datanode_state(&c, &addr), "decommissioning");
    // The text report says how far the drain is.
    let text = c.ok(&["report"]);
    assert!(
        text.contains(&format!("{addr}: decommissioning, ")) && text.contains("still to copy"),
        "{text}"
    );
    let (total, in_service) = free(&c);
    assert_eq!(total, in_service, "the draining node's room is counted");
    let local = c.scratch_path("f");
    std::fs::write(&local, b"x").unwrap();
    c.fails(&["put", local.to_str().unwrap(), "/refused"])
        .says(&["need 3, have 2"]);
    c.ok(&["admin", "recommission", &addr]);
    assert_eq!(datanode_state(&c, &addr), "live");
    let r = c.report_json();
    assert_eq!(report_datanodes(&r).len(), 3);
    let (total, in_service) = free(&c);
    assert_eq!(total, in_service, "the node is not counted back in");
    assert!(total > 0);
    c.put_bytes("/accepted", &random_bytes(MIB, 96));
    c.kill_namenode();
    c.restart_namenode();
    wait_until(
        Duration::from_secs(30),
        "the datanode to re-register",
        || datanode_state(&c, &addr) == "live",
    );
    c.fails(&["admin", "recommission", "127.0.0.1:1"])
        .says(&["127.0.0.1:1", "no datanode registered"]);
}

#[test]
fn decommission_states_survive_a_namenode_kill() {
    // A decommissioned node and one still draining keep their states across kill -9 and a restart
    // of the namenode (before, both came back "live" and took new replicas again).
    let mut c = TestCluster::builder()
        .datanodes(5)
        .replication(3)
        .block_size("256KiB")
        .heartbeat("100ms")
        .dead_after("1s")
        .start();
    let files = put_files(&c, 2, 2 * MIB as u64, 90);
    let (done, draining) = (
        c.datanode_addr(0).to_string(),
        c.datanode_addr(1).to_string(),
    );
    c.ok(&["admin", "decommission", &done]);
    wait_until(
        Duration::from_secs(60),
        "the first datanode to be decommissioned",
        || datanode_state(&c, &done) == "decommissioned",
    );
    c.ok(&["admin", "decommission", &draining]);
    c.kill_namenode();
    c.restart_namenode();
    // Every datanode: the put below needs the three in service, and the namenode waits for
    // datanodes after a restart only for dead_after (1 s here).
    let addrs: Vec<String> = (0..5).map(|i| c.datanode_addr(i).to_string()).collect();
    wait_until(
        Duration::from_secs(30),
        "every datanode to re-register",
        || {
            addrs
                .iter()
                .all(|a| !matches!(datanode_state(&c, a).as_str(), "absent" | "dead"))
        },
    );
    assert_eq!(datanode_state(&c, &done), "decommissioned");
    let state = datanode_state(&c, &draining);
    assert!(
        state == "decommissioning" || state == "decommissioned",
        "the draining node came back {state}"
    );
    // New replicas go to the three nodes in service only.
    c.put_bytes("/after-restart", &random_bytes(MIB, 95));
    for b in stat_blocks(&c.stat_json("/after-restart")) {
        let locs = block_locations(&b);
        assert!(
            !locs.contains(&done) && !locs.contains(&draining),
            "a new block was placed on a decommissioned node: {locs:?}"
        );
    }
    wait_until(
        Duration::from_secs(60),
        "the draining node to finish after the restart",
        || datanode_state(&c, &draining) == "decommissioned",
    );
    verify_files(&c, &files);
}

#[test]
fn restarted_namenode_copies_nothing_until_enough_blocks_are_reported() {
    // The namenode restarts while one of four datanodes is down and holds the only replica of some R=1
    // blocks: it stays in safe mode and schedules no copy; once that datanode is back every block is
    // reported, safe mode ends and the R=3 blocks that missed the node are complete again. (The namenode
    // gives up waiting 2 × dead-after + extension after it started: 20.3 s here, far past the window
    // observed, however slowly the live nodes come back.)
    let mut c = TestCluster::builder()
        .datanodes(4)
        .block_size("64KiB")
        .heartbeat("100ms")
        .dead_after("10s")
        .namenode_arg(&[
            "--safe-mode-extension",
            "300ms",
            "--replication-interval",
            "100ms",
        ])
        .start();
    let r3 = random_bytes(20 * 64 * KIB, 1);
    let r1 = random_bytes(40 * 64 * KIB, 2);
    c.put_bytes("/r3", &r3);
    c.put_bytes_with("/r1", &r1, &["-r", "1"]);
    let down = c.datanode_addr(0).to_string();
    let only_there = stat_blocks(&c.stat_json("/r1"))
        .iter()
        .filter(|b| block_locations(b) == vec![down.clone()])
        .count();
    assert!(only_there > 0, "no R=1 block landed on {down}");
    c.kill_namenode();
    c.kill_datanode(0);
    c.restart_namenode();
    c.wait_live_datanodes(3, Duration::from_secs(30));
    let files_before = c.all_replicas().len();
    // A negative property needs a window: 2 s (20 replication intervals) in safe mode without a copy.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let f = c.fsck_json("/");
        assert_eq!(
            f.get("safe_mode").and_then(Value::as_bool),
            Some(true),
            "left safe mode with {only_there} blocks unreported: {f}"
        );
        assert_eq!(
            c.all_replicas().len(),
            files_before,
            "replicas were copied in safe mode"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.restart_datanode(0);
    wait_until(
        Duration::from_secs(30),
        "safe mode to end once every block is reported",
        || c.fsck_json("/").get("safe_mode").and_then(Value::as_bool) == Some(false),
    );
    wait_for(
        Duration::from_secs(30),
        "every block at its replication",
        || {
            let f = c.fsck_json("/");
            let n = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(u64::MAX);
            if n("healthy_blocks") == n("blocks")
                && n("replicas") == 20 * 3 + 40
                && n("missing") == 0
            {
                Ok(())
            } else {
                Err(f.to_string())
            }
        },
    );
    assert_same_bytes(&c.get_bytes("/r3"), &r3, "/r3");
    assert_same_bytes(&c.get_bytes("/r1"), &r1, "/r1");
}

/// Every replica file of the cluster, by block id, with the index of the datanode holding it.
fn replicas_by_block(c: &TestCluster) -> BTreeMap<u64, Vec<(usize, ReplicaFile)>> {
    let mut by_block: BTreeMap<u64, Vec<(usize, ReplicaFile)>> = BTreeMap::new();
    for (i, r) in c.all_replicas() {
        by_block.entry(r.block_id).or_default().push((i, r));
    }
    by_block
}

/// One replica of each of the first `n` blocks, the k-th on datanode k % `datanodes` when it holds
/// one (spread over the nodes): (block id, datanode, that replica, a replica on another datanode).
fn spread_over_datanodes(
    by_block: &BTreeMap<u64, Vec<(usize, ReplicaFile)>>,
    n: usize,
    datanodes: usize,
) -> Vec<(u64, usize, &ReplicaFile, &ReplicaFile)> {
    by_block
        .iter()
        .enumerate()
        .take(n)
        .map(|(k, (id, reps))| {
            let (dn, r) = reps
                .iter()
                .find(|(dn, _)| *dn == k % datanodes)
                .or(reps.first())
                .unwrap();
            let other = &reps.iter().find(|(d, _)| d != dn).unwrap().1;
            (*id, *dn, r, other)
        })
        .collect()
}

#[test]
fn fsck_counts_the_replicas_of_a_draining_node_as_it_counts_them_for_health() {
    // Three datanodes at replication 3: a decommission cannot finish (no node to copy to), and
    // meanwhile the blocks are not under-replicated. `replicas` left the draining node's replicas
    // out, so it disagreed with that (2 per block next to "under-replicated: 0").
    let c = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .block_size("256KiB")
        .heartbeat("100ms")
        .start();
    let files = put_files(&c, 1, MIB as u64, 7);
    let addr = c.datanode_addr(0).to_string();
    let out = c.cli(&["admin", "decommission", &addr]);
    assert!(out.status.success(), "{out:?}");
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.contains("2 datanodes stay in service, fewer than the default replication (3)"),
        "{warning}"
    );
    let out = c.cli(&["admin", "recommission", c.datanode_addr(1)]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("was in service already"),
        "{out:?}"
    );
    wait_until(Duration::from_secs(10), "decommissioning", || {
        datanode_state(&c, &addr) == "decommissioning"
    });
    let fsck = c.fsck_json("/");
    assert_eq!(field_u64(&fsck, "blocks"), 4, "{fsck}");
    assert_eq!(field_u64(&fsck, "replicas"), 12, "{fsck}");
    assert_eq!(field_u64(&fsck, "under_replicated"), 0, "{fsck}");
    verify_files(&c, &files);
    // A new file needs three nodes that take blocks: the refusal says why two are not enough.
    let big = c.scratch_path("big");
    std::fs::write(&big, vec![7u8; 300 << 10]).unwrap();
    c.fails(&["put", big.to_str().unwrap(), "/new"])
        .says(&["need 3, have 2", "1 more decommissioning or decommissioned"]);
}

#[test]
fn re_replication_keeps_to_its_bandwidth_limit_with_blocks_larger_than_a_seconds_worth() {
    // A copy larger than the allowance may start when nothing else runs; its excess was
    // forgiven instead of paid back, so 4 MiB blocks under a 1 MiB/s limit healed at several
    // times the limit (QA: 2.4x with 64 MiB blocks and 4 MiB/s).
    let mut c = TestCluster::builder()
        .datanodes(4)
        .replication(2)
        .block_size("4MiB")
        .heartbeat("100ms")
        .dead_after("1s")
        .namenode_arg(&["--replication-bandwidth", "1MiB"])
        .start();
    let files = put_files(&c, 1, 32 * MIB as u64, 40);
    let victim = c.datanode_addr(1).to_string();
    let held = locations(&c, &files)
        .values()
        .filter(|l| l.contains(&victim))
        .count() as u64;
    assert!(held >= 2, "the victim holds {held} blocks");
    c.kill_datanode(1);
    wait_until(
        Duration::from_secs(20),
        "the datanode to be reported dead",
        || datanode_state(&c, &victim) == "dead",
    );
    let start = Instant::now();
    wait_fully_replicated_without(&c, &files, 2, &[&victim], Duration::from_secs(180));
    let took = start.elapsed().as_secs_f64();
    // 4 MiB per block at 1 MiB/s, less the 2 s burst the limit allows at the start.
    let least = (held * 4) as f64 - 2.0 - 4.0;
    assert!(
        took >= least,
        "{held} blocks of 4 MiB re-replicated in {took:.1} s under a 1 MiB/s limit"
    );
    verify_files(&c, &files);
}

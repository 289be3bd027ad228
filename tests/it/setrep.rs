//! `ringfs setrep`: changing the replication factor of existing files; the namenode adds or
//! deletes replicas, `-w` waits for them, the new factor survives a namenode kill -9.

use crate::cluster::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// (block id, generation) of every block of `path`, from `stat --json`.
#[track_caller]
fn block_ids(c: &TestCluster, path: &str) -> Vec<(u64, u64)> {
    stat_blocks(&c.stat_json(path))
        .iter()
        .map(|b| (field_u64(b, "id"), field_u64(b, "generation")))
        .collect()
}

/// Replica files on the datanodes' disks per block of `blocks` (current generation only).
fn replicas_on_disk(c: &TestCluster, blocks: &[(u64, u64)]) -> BTreeMap<u64, usize> {
    let mut count: BTreeMap<u64, usize> = blocks.iter().map(|(id, _)| (*id, 0)).collect();
    for (_, r) in c.all_replicas() {
        if blocks.contains(&(r.block_id, r.generation)) {
            *count.entry(r.block_id).or_default() += 1;
        }
    }
    count
}

/// Waits until every block of `blocks` has exactly `n` replica files on disk (deletes and copies
/// happen through heartbeats, a moment after the namenode decided them).
#[track_caller]
fn wait_replicas_on_disk(c: &TestCluster, blocks: &[(u64, u64)], n: usize) {
    wait_for(WAIT, &format!("{n} replica files of every block"), || {
        let count = replicas_on_disk(c, blocks);
        if count.values().all(|&k| k == n) {
            Ok(())
        } else {
            Err(format!("{count:?}"))
        }
    });
}

/// `stat --json PATH`'s replication.
#[track_caller]
fn replication_of(c: &TestCluster, path: &str) -> u64 {
    field_u64(&c.stat_json(path), "replication")
}

#[test]
fn setrep_w_trims_and_adds_replicas_of_every_block() {
    // 4 datanodes, a 4-block file at replication 3: setrep -w 2 leaves exactly 2 replicas of each
    // block (namenode and disks), setrep -w 4 makes 4; fsck is healthy and the bytes read back.
    let c = TestCluster::builder().datanodes(4).start();
    let local = c.scratch_path("big");
    let hash = write_random_file(&local, (3 * MIB + MIB / 2) as u64, 7);
    c.ok(&["mkdir", "/d"]);
    c.put_file(&local, "/d/big", &["-r", "3"]);
    c.wait_healthy("/d/big", 3, WAIT);
    let blocks = block_ids(&c, "/d/big");
    assert_eq!(blocks.len(), 4, "1 MiB blocks of a 3.5 MiB file");
    wait_replicas_on_disk(&c, &blocks, 3);

    let out = c.ok(&["setrep", "-w", "2", "/d/big"]);
    assert!(
        out.contains("/d/big: replication 3 -> 2"),
        "setrep output: {out}"
    );
    // -w returned: the namenode already shows 2 locations per block.
    let stat = c.stat_json("/d/big");
    assert_eq!(field_u64(&stat, "replication"), 2, "{stat}");
    for b in stat_blocks(&stat) {
        assert_eq!(block_locations(&b).len(), 2, "block after setrep -w 2: {b}");
    }
    c.wait_healthy("/d/big", 2, WAIT);
    wait_replicas_on_disk(&c, &blocks, 2);

    let out = c.ok(&["setrep", "--wait", "--timeout", "2m", "4", "/d/big"]);
    assert!(
        out.contains("/d/big: replication 2 -> 4"),
        "setrep output: {out}"
    );
    let stat = c.stat_json("/d/big");
    assert_eq!(field_u64(&stat, "replication"), 4, "{stat}");
    for b in stat_blocks(&stat) {
        let mut locs = block_locations(&b);
        locs.sort();
        locs.dedup();
        assert_eq!(locs.len(), 4, "block after setrep -w 4: {b}");
    }
    c.wait_healthy("/d/big", 4, WAIT);
    wait_replicas_on_disk(&c, &blocks, 4);
    // The blocks were copied, not rewritten: same ids and generations.
    assert_eq!(block_ids(&c, "/d/big"), blocks);
    assert_eq!(c.get_hash("/d/big"), hash, "/d/big read back after setrep");
    // Every replica serves the same bytes: read over the network only, from each replica in
    // turn as the others go away is the job of the failure tests; here one full read suffices.
    assert_same_bytes(
        &c.get_bytes_over_network("/d/big"),
        &std::fs::read(&local).unwrap(),
        "/d/big over the network",
    );

    // Setting the same factor again changes nothing and says so.
    let out = c.ok(&["setrep", "-w", "4", "/d/big"]);
    assert!(out.contains("/d/big: replication 4 (unchanged)"), "{out}");
}

#[test]
fn setrep_of_a_directory_changes_every_file_under_it_and_survives_a_namenode_kill() {
    // setrep 1 of a directory changes its files at every depth (an inline small file too), prints
    // one line per file, the cluster trims to 1 replica each; after kill -9 + restart of the
    // namenode stat still shows 1 and fsck is healthy at 1 (no block over- or under-replicated).
    let mut c = TestCluster::builder().datanodes(3).start();
    c.ok(&["mkdir", "-p", "/t/sub/deeper"]);
    c.put_bytes("/t/a", &random_bytes(2 * MIB + 10, 1));
    c.put_bytes("/t/sub/b", &random_bytes(MIB / 2, 2));
    c.put_bytes("/t/sub/deeper/c", &random_bytes(MIB + 1, 3));
    c.put_bytes("/t/sub/tiny", b"a few bytes");
    c.put_bytes("/elsewhere", &random_bytes(1000, 4));
    c.wait_healthy("/", 3, WAIT);
    let files = ["/t/a", "/t/sub/b", "/t/sub/deeper/c", "/t/sub/tiny"];
    let blocks: Vec<(u64, u64)> = files.iter().flat_map(|f| block_ids(&c, f)).collect();
    assert_eq!(
        blocks.len(),
        3 + 1 + 2,
        "blocks of /t (the tiny file is inline: none)"
    );

    let out = c.ok(&["setrep", "1", "/t"]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    let want: Vec<String> = files
        .iter()
        .map(|f| format!("{f}: replication 3 -> 1"))
        .collect();
    let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(lines, want, "one line per file under /t");
    for f in files {
        assert_eq!(replication_of(&c, f), 1, "{f}");
    }
    assert_eq!(replication_of(&c, "/elsewhere"), 3, "a file outside /t");
    c.wait_healthy("/t", 1, WAIT);
    wait_replicas_on_disk(&c, &blocks, 1);

    c.kill_namenode();
    c.restart_namenode();
    for f in files {
        assert_eq!(replication_of(&c, f), 1, "{f} after the namenode restart");
    }
    assert_eq!(replication_of(&c, "/elsewhere"), 3);
    // The rebuilt block map expects 1 replica per block: healthy, nothing copied back.
    c.wait_healthy("/t", 1, WAIT);
    c.wait_healthy("/elsewhere", 3, WAIT);
    let settled = replicas_on_disk(&c, &blocks);
    assert!(settled.values().all(|&k| k == 1), "{settled:?}");
    assert_eq!(
        c.get_bytes("/t/sub/deeper/c"),
        random_bytes(MIB + 1, 3),
        "/t/sub/deeper/c after setrep 1 and the restart"
    );
}

#[test]
fn setrep_refusals_are_one_line_naming_the_path() {
    // A missing path, factor 0, a factor over the limit, a factor -w cannot reach with the live
    // datanodes, a symlink and another user's file: each fails with one line and changes nothing.
    // Without -w a factor above the live datanodes is recorded and fsck shows the blocks
    // under-replicated.
    let c = TestCluster::builder().datanodes(3).start();
    c.ok(&["mkdir", "/t"]);
    c.put_bytes("/t/a", &random_bytes(MIB + 5, 9));
    c.put_bytes("/t/b", &random_bytes(100, 10));
    c.wait_healthy("/t", 3, WAIT);

    c.fails(&["setrep", "2", "/nope"])
        .says(&["/nope", "no such file or directory"]);
    c.fails(&["setrep", "0", "/t/a"])
        .says(&["/t/a", "replication 0", "out of range"]);
    // A directory: refused once, not once per file.
    c.fails(&["setrep", "1000", "/t"])
        .says(&["replication 1000", "out of range"]);
    c.fails(&["setrep", "-w", "4", "/t/a"]).says(&[
        "/t/a",
        "cannot wait for 4 replicas",
        "3 datanodes are live",
    ]);
    assert_eq!(replication_of(&c, "/t/a"), 3, "refused setrep changed /t/a");
    assert_eq!(replication_of(&c, "/t/b"), 3, "refused setrep changed /t/b");
    // One bad path among good ones: the good ones change, the exit code says something failed.
    let out = c.run(&["setrep", "2", "/t/a", "/nope"]);
    assert!(
        !out.status.success(),
        "setrep with a missing path succeeded"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nope: no such file or directory"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/t/a: replication 3 -> 2"),
        "{out:?}"
    );
    assert_eq!(replication_of(&c, "/t/a"), 2);

    // A symlink is not a regular file: skipped under a directory, refused by name (not followed).
    let local = c.scratch_path("links");
    std::fs::create_dir(&local).unwrap();
    std::fs::write(local.join("x"), b"linked to").unwrap();
    std::os::unix::fs::symlink("x", local.join("l")).unwrap();
    c.put_file(&local, "/ln", &[]);
    assert_eq!(c.ls_names("/ln"), ["l", "x"]);
    let out = c.ok(&["setrep", "2", "/ln"]);
    assert_eq!(out.trim(), "/ln/x: replication 3 -> 2", "setrep of /ln");
    c.fails(&["setrep", "2", "/ln/l"])
        .says(&["/ln/l", "not a regular file"]);
    assert_eq!(replication_of(&c, "/ln/x"), 2);

    // Without -w a factor above the live datanodes is accepted, and fsck tells.
    c.ok(&["setrep", "5", "/t/a"]);
    assert_eq!(replication_of(&c, "/t/a"), 5);
    let f: Value = wait_for(WAIT, "fsck /t/a under-replicated at 3 of 5", || {
        let f = c.fsck_json("/t/a");
        if field_u64(&f, "under_replicated") == 2 && field_u64(&f, "replicas") == 6 {
            Ok(f)
        } else {
            Err(f.to_string())
        }
    });
    assert_eq!(field_str(&f, "status"), "UNDER-REPLICATED", "{f}");
    c.ok(&["setrep", "-w", "3", "/t/a"]);
    c.wait_healthy("/t", 3, WAIT);

    // Another user may not change root's file (owner or root only, like chmod).
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("non-owner check skipped: needs root and /usr/bin/setpriv");
        return;
    }
    let mut cmd = std::process::Command::new("/usr/bin/setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .args(["--namenode", c.namenode_addr(), "setrep", "1", "/t/a"]);
    let out = run_with_timeout(cmd, None, "(uid 65534) ringfs setrep 1 /t/a", WAIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "uid 65534 changed root's file");
    assert!(
        stderr.contains("/t/a") && stderr.contains("operation not permitted"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(replication_of(&c, "/t/a"), 3);
}

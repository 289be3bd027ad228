//! File data through the CLI: put/get/cat round trips, block layout and replica placement, stdin/stdout
//! piping, overwrite rules, and the errors a user meets when writing and reading.

use crate::cluster::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[test]
fn put_100mib_with_4mib_blocks_stores_25_blocks_on_3_distinct_datanodes() {
    // Three datanodes, R=3, 4 MiB blocks: a 100 MiB random file reads back identical, fsck shows 25 healthy
    // blocks and 75 replicas, each block on 3 distinct datanodes, and the replica files add up to 3 × 100 MiB.
    let c = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .block_size("4MiB")
        .start();
    let size = 100 * MIB as u64;
    let local = c.scratch_path("100mib");
    let want = write_random_file(&local, size, 1);
    c.put_file(&local, "/big", &[]);
    assert_eq!(c.get_hash("/big"), want, "get /big returned other bytes");

    let f = c.fsck_json("/");
    assert_eq!(field_u64(&f, "files"), 1, "{f}");
    assert_eq!(field_u64(&f, "blocks"), 25, "{f}");
    assert_eq!(field_u64(&f, "replicas"), 75, "{f}");
    assert_eq!(field_u64(&f, "healthy_blocks"), 25, "{f}");
    for k in ["under_replicated", "corrupt", "missing"] {
        assert_eq!(field_u64(&f, k), 0, "{k} in {f}");
    }

    let st = c.stat_json("/big");
    assert_eq!(field_str(&st, "kind"), "file");
    assert_eq!(field_u64(&st, "size"), size);
    assert_eq!(field_u64(&st, "replication"), 3);
    assert_eq!(field_u64(&st, "block_size"), 4 * MIB as u64);
    let datanodes: BTreeSet<String> = (0..3).map(|i| c.datanode_addr(i).to_string()).collect();
    let blocks = stat_blocks(&st);
    assert_eq!(blocks.len(), 25);
    let mut expected_on_disk: BTreeMap<(u64, u64), BTreeSet<String>> = BTreeMap::new();
    for b in &blocks {
        assert_eq!(field_u64(b, "len"), 4 * MIB as u64, "block {b}");
        let locs = block_locations(b);
        let distinct: BTreeSet<String> = locs.iter().cloned().collect();
        assert_eq!(locs.len(), 3, "block {b} does not have 3 locations");
        assert_eq!(distinct.len(), 3, "block {b} has a datanode twice");
        assert!(
            distinct.is_subset(&datanodes),
            "block {b} is on an unknown datanode (have {datanodes:?})"
        );
        expected_on_disk.insert((field_u64(b, "id"), field_u64(b, "generation")), distinct);
    }

    // On disk: each block's replica file on exactly its 3 datanodes, 3 × 100 MiB of data in total.
    let mut found: BTreeMap<(u64, u64), BTreeSet<String>> = BTreeMap::new();
    let mut total = 0u64;
    for (i, r) in c.all_replicas() {
        total += r.len;
        found
            .entry((r.block_id, r.generation))
            .or_default()
            .insert(c.datanode_addr(i).to_string());
    }
    assert_eq!(
        found, expected_on_disk,
        "replica files on disk do not match stat's locations"
    );
    assert_eq!(
        total,
        3 * size,
        "replica data files add up to {total} bytes"
    );
}

#[test]
fn piping_stdin_into_put_and_cat_into_sha256sum_round_trips() {
    // `head -c 10M /dev/urandom | ringfs put - /x` then `ringfs cat /x | sha256sum` gives the input's sum.
    let c = TestCluster::builder().block_size("1MiB").start();
    let copy = c.scratch_path("stdin-copy");
    let sh = |script: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("RINGFS_NAMENODE", c.namenode_addr())
            .env("RINGFS", bin())
            .env("COPY", &copy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sh -c {script:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    sh("set -e; head -c 10M /dev/urandom | tee \"$COPY\" | \"$RINGFS\" put - /x");
    let want = sh("sha256sum < \"$COPY\"");
    let got = sh("\"$RINGFS\" cat /x | sha256sum");
    assert_eq!(got, want, "cat /x | sha256sum differs from the piped input");
    assert_eq!(field_u64(&c.stat_json("/x"), "size"), 10 * MIB as u64);
    // `get REMOTE -` writes to stdout too.
    let got = sh("\"$RINGFS\" get /x - | sha256sum");
    assert_eq!(got, want, "get /x - | sha256sum differs");
}

#[test]
fn files_of_chunk_and_block_boundary_sizes_round_trip() {
    // Sizes around the 64 KiB chunk and the 256 KiB block boundaries read back identical, with the
    // expected number of blocks and block lengths (inline data off: every size gets blocks).
    let c = TestCluster::builder()
        .block_size("256KiB")
        .namenode_arg(&["--inline-max", "0"])
        .start();
    let bs = 256 * KIB;
    let sizes = [
        1,
        100,
        64 * KIB - 1,
        64 * KIB,
        64 * KIB + 1,
        bs - 1,
        bs,
        bs + 1,
        3 * bs + 12345,
    ];
    for (n, &len) in sizes.iter().enumerate() {
        let data = random_bytes(len, 100 + n as u64);
        let path = format!("/f{len}");
        c.put_bytes(&path, &data);
        assert_same_bytes(&c.get_bytes(&path), &data, &path);
        let st = c.stat_json(&path);
        assert_eq!(field_u64(&st, "size"), len as u64, "{path}");
        let lens: Vec<u64> = stat_blocks(&st)
            .iter()
            .map(|b| field_u64(b, "len"))
            .collect();
        let mut want = vec![bs as u64; len / bs];
        if len % bs != 0 {
            want.push((len % bs) as u64);
        }
        assert_eq!(lens, want, "block lengths of {path}");
    }
}

#[test]
fn empty_file_round_trips_with_no_blocks() {
    // Putting an empty file creates a zero-length file with no blocks that reads back empty.
    let c = TestCluster::builder().start();
    c.put_bytes("/empty", b"");
    let st = c.stat_json("/empty");
    assert_eq!(field_str(&st, "kind"), "file");
    assert_eq!(field_u64(&st, "size"), 0);
    assert!(stat_blocks(&st).is_empty(), "empty file has blocks: {st}");
    assert!(c.get_bytes("/empty").is_empty());
    assert!(c.ok(&["cat", "/empty"]).is_empty());
    let f = c.fsck_json("/");
    assert_eq!(field_u64(&f, "files"), 1);
    assert_eq!(field_u64(&f, "blocks"), 0);
}

#[test]
fn put_into_an_existing_directory_keeps_the_local_file_name() {
    // `put LOCAL /dir` with /dir a directory stores the file as /dir/<local name>.
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "/dir"]);
    let local = c.scratch_path("report.txt");
    fs::write(&local, b"hello ringfs\n").unwrap();
    let base = local.file_name().unwrap().to_str().unwrap().to_string();
    c.ok(&["put", local.to_str().unwrap(), "/dir"]);
    assert_eq!(c.ls_names("/dir"), vec![base.clone()]);
    assert_eq!(c.get_bytes(&format!("/dir/{base}")), b"hello ringfs\n");
    // A trailing slash means the same.
    fs::write(&local, b"second\n").unwrap();
    c.ok(&["put", "-f", local.to_str().unwrap(), "/dir/"]);
    assert_eq!(c.get_bytes(&format!("/dir/{base}")), b"second\n");
}

#[test]
fn put_refuses_to_replace_an_existing_file_unless_forced() {
    // A second put to the same path fails with "already exists" and leaves the old contents; -f replaces them.
    let c = TestCluster::builder().block_size("64KiB").start();
    let old = random_bytes(200 * KIB, 1);
    let new = random_bytes(70 * KIB, 2);
    c.put_bytes("/f", &old);
    let local = c.scratch_path("new");
    fs::write(&local, &new).unwrap();
    let before = c.tree("/");
    c.fails(&["put", local.to_str().unwrap(), "/f"])
        .says(&["/f", "already exists"]);
    assert_eq!(c.tree("/"), before);
    assert_same_bytes(&c.get_bytes("/f"), &old, "/f after a refused put");

    c.ok(&["put", "-f", local.to_str().unwrap(), "/f"]);
    assert_same_bytes(&c.get_bytes("/f"), &new, "/f after put -f");
    let st = c.stat_json("/f");
    assert_eq!(field_u64(&st, "size"), new.len() as u64);
    assert_eq!(stat_blocks(&st).len(), 2);
    // The old blocks are gone from the namenode's books.
    let f = c.fsck_json("/");
    assert_eq!(field_u64(&f, "blocks"), 2, "{f}");
}

#[test]
fn put_records_replication_and_block_size_flags() {
    // `put -r 2 --block-size 128KiB` and `put -r 1` store files with that layout; the defaults apply otherwise.
    let c = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .block_size("1MiB")
        .start();
    let data = random_bytes(300 * KIB, 7);
    c.put_bytes_with("/r2", &data, &["-r", "2", "--block-size", "128KiB"]);
    c.put_bytes_with("/r1", &data, &["-r", "1"]);
    c.put_bytes("/r3", &data);
    for (path, r, bs, nblocks) in [
        ("/r2", 2, 128 * KIB, 3),
        ("/r1", 1, MIB, 1),
        ("/r3", 3, MIB, 1),
    ] {
        assert_same_bytes(&c.get_bytes(path), &data, path);
        let st = c.stat_json(path);
        assert_eq!(field_u64(&st, "replication"), r, "{st}");
        assert_eq!(field_u64(&st, "block_size"), bs as u64, "{st}");
        let blocks = stat_blocks(&st);
        assert_eq!(blocks.len(), nblocks, "{st}");
        for b in &blocks {
            let locs: BTreeSet<String> = block_locations(b).into_iter().collect();
            assert_eq!(locs.len() as u64, r, "{path}: block {b}");
        }
    }
    let f = c.fsck_json("/");
    assert_eq!(field_u64(&f, "blocks"), 5, "{f}");
    assert_eq!(field_u64(&f, "replicas"), 3 * 2 + 1 + 3, "{f}");
    assert_eq!(field_u64(&f, "healthy_blocks"), 5, "{f}");
}

#[test]
fn put_with_fewer_live_datanodes_than_replication_fails_and_creates_nothing() {
    // Two datanodes and R=3: put fails with "not enough live datanodes: need 3, have 2" and leaves no file;
    // asking for -r 2 works.
    let c = TestCluster::builder().datanodes(2).replication(3).start();
    let local = c.scratch_path("data");
    fs::write(&local, random_bytes(10 * KIB, 3)).unwrap();
    let before = c.tree("/");
    c.fails(&["put", local.to_str().unwrap(), "/f"])
        .says(&["not enough live datanodes: need 3, have 2"]);
    assert_eq!(c.tree("/"), before, "a failed put left something behind");
    c.fails(&["put", "-r", "3", local.to_str().unwrap(), "/f"])
        .says(&["not enough live datanodes: need 3, have 2"]);
    assert!(!c.exists("/f"));
    c.ok(&["put", "-r", "2", local.to_str().unwrap(), "/f"]);
    assert_eq!(c.get_bytes("/f"), fs::read(&local).unwrap());
}

#[test]
fn get_and_cat_errors_name_the_path_and_create_no_local_file() {
    // get/cat of a missing path, cat of a directory fail with a clear message; get leaves no local file.
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "/d"]);
    let local = c.scratch_path("never");
    let local_s = local.to_str().unwrap();
    c.fails(&["get", "/missing", local_s])
        .says(&["/missing", "no such file or directory"]);
    assert!(!local.exists(), "get of a missing file created {local_s}");
    c.fails(&["cat", "/missing"])
        .says(&["/missing", "no such file or directory"]);
    // get of a directory copies the tree (see tree::); cat cannot.
    c.ok(&["get", "/d", local_s]);
    assert!(
        local.is_dir(),
        "get of an empty directory made no local directory"
    );
    fs::remove_dir(&local).unwrap();
    c.fails(&["cat", "/d"]).says(&["/d", "is a directory"]);
    c.fails(&["cat", "/d/missing/deeper"])
        .says(&["no such file or directory"]);
    // An empty local path is named as such (it read "ringfs: : no such file or directory").
    c.put_bytes("/f", b"f");
    c.fails(&["get", "/f", ""])
        .says(&["invalid local path \"\": empty path"]);
    c.fails(&["put", "", "/g"])
        .says(&["invalid local path \"\": empty path"]);
    assert!(!c.exists("/g"));
}

#[test]
fn put_of_a_missing_local_file_fails_and_creates_nothing() {
    // A put whose local source does not exist names the local path and creates no remote file.
    let c = TestCluster::builder().start();
    let missing = c.scratch_path("no-such-local-file");
    let missing_s = missing.to_str().unwrap();
    c.fails(&["put", missing_s, "/f"]).says(&[missing_s]);
    assert!(!c.exists("/f"));
    // Into a missing remote directory: the remote path is named.
    let local = c.scratch_path("x");
    fs::write(&local, b"x").unwrap();
    c.fails(&["put", local.to_str().unwrap(), "/nodir/f"])
        .says(&["/nodir", "no such file or directory"]);
    assert_eq!(c.tree("/"), BTreeMap::new());
}

#[test]
fn ls_long_and_json_show_names_kinds_and_sizes() {
    // `ls` lists names, `ls -l` adds sizes, `ls --json` gives name, kind and size for each entry.
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "/d"]);
    c.ok(&["mkdir", "/d/sub"]);
    c.put_bytes("/d/a.bin", &random_bytes(12345, 1));
    c.put_bytes("/d/b.txt", b"bee\n");
    let plain = c.ok(&["ls", "/d"]);
    for name in ["a.bin", "b.txt", "sub"] {
        assert!(plain.contains(name), "ls /d does not show {name}: {plain}");
    }
    let long = c.ok(&["ls", "-l", "/d"]);
    let a_line = long
        .lines()
        .find(|l| l.contains("a.bin"))
        .unwrap_or_else(|| panic!("ls -l: no a.bin line: {long}"));
    assert!(
        a_line.contains("12345"),
        "ls -l does not show a.bin's size: {a_line}"
    );
    assert!(long.lines().any(|l| l.contains("sub")), "{long}");

    let entries = c.ls_entries("/d");
    let by_name: BTreeMap<&str, &Value> =
        entries.iter().map(|e| (field_str(e, "name"), e)).collect();
    assert_eq!(
        by_name.keys().copied().collect::<Vec<_>>(),
        vec!["a.bin", "b.txt", "sub"]
    );
    assert_eq!(field_str(by_name["a.bin"], "kind"), "file");
    assert_eq!(field_u64(by_name["a.bin"], "size"), 12345);
    assert_eq!(field_u64(by_name["b.txt"], "size"), 4);
    assert_eq!(field_str(by_name["sub"], "kind"), "dir");
    // ls of an empty directory prints an empty list.
    assert!(c.ls_entries("/d/sub").is_empty());
}

#[test]
fn stat_json_describes_files_and_directories() {
    // `stat --json` gives path, kind, size, replication, block_size and blocks for a file, and kind dir for a directory.
    let c = TestCluster::builder().block_size("64KiB").start();
    c.ok(&["mkdir", "/d"]);
    c.put_bytes("/d/f", &random_bytes(100 * KIB, 5));
    let st = c.stat_json("/d/f");
    assert_eq!(field_str(&st, "path"), "/d/f");
    assert_eq!(field_str(&st, "kind"), "file");
    assert_eq!(field_u64(&st, "size"), 100 * KIB as u64);
    assert_eq!(field_u64(&st, "replication"), 3);
    assert_eq!(field_u64(&st, "block_size"), 64 * KIB as u64);
    let blocks = stat_blocks(&st);
    assert_eq!(blocks.len(), 2);
    let ids: BTreeSet<u64> = blocks.iter().map(|b| field_u64(b, "id")).collect();
    assert_eq!(ids.len(), 2, "block ids repeat: {st}");
    assert!(
        blocks
            .iter()
            .all(|b| field_u64(b, "id") != 0 && b.get("generation").is_some()),
        "{st}"
    );
    let d = c.stat_json("/d");
    assert_eq!(field_str(&d, "kind"), "dir");
    assert_eq!(field_str(&d, "path"), "/d");
    let root = c.stat_json("/");
    assert_eq!(field_str(&root, "kind"), "dir");
    // Plain stat prints something human about the file.
    let human = c.ok(&["stat", "/d/f"]);
    assert!(
        human.contains("102400"),
        "stat /d/f does not show the size: {human}"
    );
    c.fails(&["stat", "/d/nope"])
        .says(&["/d/nope", "no such file or directory"]);
}

#[test]
fn report_lists_every_datanode_with_capacity_and_usage() {
    // `report --json` lists each datanode's address, state live, capacity, used and block count.
    let c = TestCluster::builder()
        .datanodes(3)
        .block_size("64KiB")
        .start();
    c.put_bytes("/f", &random_bytes(256 * KIB, 9));
    let addrs: BTreeSet<String> = (0..3).map(|i| c.datanode_addr(i).to_string()).collect();
    // Block counts arrive with the next heartbeat or block report: poll.
    wait_for(
        std::time::Duration::from_secs(10),
        "report shows 4 blocks on every datanode",
        || {
            let report = c.report_json();
            let dns = report_datanodes(&report);
            let seen: BTreeSet<String> = dns
                .iter()
                .map(|d| field_str(d, "address").to_string())
                .collect();
            assert_eq!(seen, addrs, "{report}");
            for d in &dns {
                assert_eq!(field_str(d, "state"), "live", "{d}");
                assert!(field_u64(d, "capacity") > 0, "{d}");
                let _ = field_u64(d, "used");
                if field_u64(d, "blocks") != 4 {
                    return Err(report.to_string());
                }
            }
            Ok(())
        },
    );
    let human = c.ok(&["report"]);
    for a in &addrs {
        assert!(
            human.contains(a.as_str()),
            "report does not show {a}: {human}"
        );
    }
}

#[test]
fn client_finds_the_namenode_from_the_environment() {
    // Without --namenode the CLI uses RINGFS_NAMENODE; an unreachable namenode gives a clear error.
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "/via-flag"]);
    let out = Command::new(bin())
        .args(["ls", "/"])
        .env("RINGFS_NAMENODE", c.namenode_addr())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("via-flag"));
    // Nothing listens on port 1.
    let out = Command::new(bin())
        .args(["ls", "/"])
        .env("RINGFS_NAMENODE", "127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1:1"),
        "error does not name the namenode address: {err}"
    );
}

#[test]
fn get_into_an_existing_local_directory_keeps_the_remote_name() {
    // `get /d/report.txt LOCALDIR` writes LOCALDIR/report.txt; `put - DIR` (stdin into a directory) is refused.
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "/d"]);
    c.put_bytes("/d/report.txt", b"quarterly\n");
    let dir = c.scratch_path("downloads");
    fs::create_dir(&dir).unwrap();
    c.ok(&["get", "/d/report.txt", dir.to_str().unwrap()]);
    assert_eq!(fs::read(dir.join("report.txt")).unwrap(), b"quarterly\n");
    let before = c.tree("/");
    let out = c.run_stdin(&["put", "-", "/d"], b"from stdin");
    assert!(!out.status.success(), "put - /d succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/d") && err.contains("is a directory"),
        "{err}"
    );
    assert_eq!(c.tree("/"), before);
}

#[test]
fn up_runs_a_whole_cluster_in_one_command_and_keeps_data_across_restarts() {
    // `ringfs up --datanodes 3` prints the namenode address once 3 datanodes are live; put/get work; after
    // SIGTERM and another `up` on the same dir the file is still there and healthy.
    let mut up = UpCluster::start(3);
    assert_eq!(up.live_datanodes(), 3);
    // A second `up` on the same dir fails at once with one line naming the dir, printing nothing.
    let dir = up.data_dir().to_path_buf();
    let dir_s = dir.to_str().unwrap();
    let mut second = Command::new(bin());
    second
        .args([
            "up",
            "--data-dir",
            dir_s,
            "--namenode-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "error");
    let out = run_with_timeout(second, None, "a second up", Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(dir_s) && stderr.contains("in use by another `ringfs up`"),
        "{stderr}"
    );
    assert_eq!(up.live_datanodes(), 3);
    let data = random_bytes(3 * MIB + 17, 1);
    up.put_bytes("/hello.bin", &data);
    assert_same_bytes(&up.get_bytes("/hello.bin"), &data, "/hello.bin");
    assert_eq!(field_u64(&up.stat_json("/hello.bin"), "replication"), 3);
    let status = up.stop();
    assert!(
        status.success(),
        "ringfs up exited with {status} on SIGTERM"
    );
    up.restart();
    assert_eq!(up.live_datanodes(), 3);
    up.wait_healthy("/", 3, std::time::Duration::from_secs(30));
    assert_same_bytes(
        &up.get_bytes("/hello.bin"),
        &data,
        "/hello.bin after restart",
    );
}

#[test]
fn namenode_refuses_nonsense_settings_with_a_clear_message() {
    // A namenode with dead-after shorter than the heartbeat, a block size that is not a multiple of 64 KiB or
    // replication 0 exits at once, naming the setting, without listening.
    let base = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--heartbeat-interval", "2s", "--dead-after", "1s"],
            "dead",
        ),
        (&["--block-size", "1000"], "block"),
        (&["--replication", "0"], "replication"),
    ];
    for (extra, needle) in cases {
        let mut cmd = Command::new(bin());
        cmd.args([
            "namenode",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra);
        let out = run_with_timeout(
            cmd,
            None,
            &format!("ringfs namenode {extra:?}"),
            std::time::Duration::from_secs(30),
        );
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            !out.status.success(),
            "namenode {extra:?} started: {stdout}"
        );
        assert!(
            !stdout.contains("listening on"),
            "namenode {extra:?} listened: {stdout}"
        );
        assert!(
            stderr.contains(needle),
            "namenode {extra:?}: error does not name {needle:?}: {stderr}"
        );
    }
}

#[test]
fn replicas_are_spread_over_declared_racks() {
    // Six datanodes in three racks (two each), R=3: every block has one replica in each rack.
    let mut c = TestCluster::builder()
        .datanodes(0)
        .block_size("64KiB")
        .start();
    let mut rack_of = BTreeMap::new();
    for i in 0..6 {
        let rack = format!("rack{}", i % 3);
        let n = c.add_datanode_with(&["--rack", &rack]);
        rack_of.insert(c.datanode_addr(n).to_string(), rack);
    }
    c.wait_live_datanodes(6, std::time::Duration::from_secs(30));
    c.put_bytes("/f", &random_bytes(64 * 64 * KIB, 3));
    let blocks = stat_blocks(&c.stat_json("/f"));
    assert_eq!(blocks.len(), 64);
    for b in &blocks {
        let racks: BTreeSet<&String> = block_locations(b).iter().map(|a| &rack_of[a]).collect();
        assert_eq!(racks.len(), 3, "block {b} is not on 3 racks: {racks:?}");
    }
}

#[test]
fn datanode_capacity_weights_placement() {
    // Three datanodes declaring 40, 40 and 80 GiB, R=1, 400 blocks: the 80 GiB node gets about half of them.
    let mut c = TestCluster::builder()
        .datanodes(0)
        .replication(1)
        .block_size("64KiB")
        .start();
    for cap in ["40GiB", "40GiB", "80GiB"] {
        c.add_datanode_with(&["--capacity", cap]);
    }
    c.wait_live_datanodes(3, std::time::Duration::from_secs(30));
    c.put_bytes("/f", &random_bytes(400 * 64 * KIB, 4));
    let counts: Vec<usize> = (0..3).map(|i| c.replicas_on(i).len()).collect();
    assert_eq!(counts.iter().sum::<usize>(), 400, "{counts:?}");
    let big = counts[2] as f64 / 400.0;
    assert!(
        (0.40..=0.60).contains(&big),
        "the 80 GiB node holds {:.0}% of the blocks: {counts:?}",
        big * 100.0
    );
    let report = c.report_json();
    let caps: BTreeSet<u64> = report_datanodes(&report)
        .iter()
        .map(|d| field_u64(d, "capacity"))
        .collect();
    assert_eq!(caps, BTreeSet::from([40 << 30, 80 << 30]), "{report}");
}

#[test]
fn get_writes_into_devices_fifos_and_through_symlinks() {
    // `get` renames a temporary file into place, but a device or fifo target is written into and a
    // symlink's target file is replaced, like `cp` does: `/dev/null` stays a device.
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let c = TestCluster::builder().start();
    let data = random_bytes(300 * KIB, 91);
    c.put_bytes("/f", &data);
    c.ok(&["get", "/f", "/dev/null"]);
    let null = fs::metadata("/dev/null").unwrap();
    assert!(null.file_type().is_char_device(), "/dev/null was replaced");
    assert_eq!(null.rdev(), libc::makedev(1, 3));

    let fifo = c.scratch_path("fifo");
    let cpath = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    c.ok(&["get", "/f", fifo.to_str().unwrap()]);
    assert_same_bytes(&reader.join().unwrap(), &data, "bytes read from the fifo");
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());

    let real = c.scratch_path("real");
    fs::write(&real, b"old").unwrap();
    let link = c.scratch_path("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    c.ok(&["get", "/f", link.to_str().unwrap()]);
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_same_bytes(&fs::read(&real).unwrap(), &data, "the symlink's target");
}

#[test]
fn put_onto_full_datanodes_fails_with_no_space_and_leaves_nothing() {
    // Datanodes of 8 MiB `--capacity` (a full disk in miniature): a 40 MiB put fails quickly with a
    // one-line "no space left" error instead of storing more than the capacity, and the namespace
    // keeps nothing of it; a file that fits still goes in.
    let c = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .block_size("4MiB")
        .datanode_arg(&["--capacity", "8MiB"])
        .start();
    let cli = c.client();
    let local = c.scratch_path("40mib");
    write_random_file(&local, 40 * MIB as u64, 42);
    let failure = cli.fails(&["put", local.to_str().unwrap(), "/big"]);
    failure.says(&["/big", "no space left"]);
    // Every node is up: an error that says too few are live must say they are full.
    let text = &failure.stderr;
    assert!(
        !text.contains("not enough live datanodes")
            || text.contains("out of space")
            || text.contains("where the write failed"),
        "blames dead datanodes for full ones: {text}"
    );
    assert_eq!(cli.ls_names("/"), Vec::<String>::new());
    for i in 0..3 {
        let stored: u64 = c.replicas_on(i).iter().map(|r| r.len).sum();
        assert!(
            stored <= 8 * MIB as u64,
            "datanode {i} holds {stored} bytes of replicas, more than its capacity"
        );
    }
    // The failed put's replicas are deleted in the background; then a small file fits again.
    let small = random_bytes(2 * MIB, 43);
    let small_path = c.scratch_path("2mib");
    fs::write(&small_path, &small).unwrap();
    let small_str = small_path.to_str().unwrap();
    wait_until(
        std::time::Duration::from_secs(60),
        "a 2 MiB put to fit",
        || {
            cli.run(&["put", "-f", small_str, "/small"])
                .status
                .success()
        },
    );
    assert_same_bytes(&cli.get_bytes("/small"), &small, "/small");
}

#[test]
fn put_with_zero_replication_or_a_bad_block_size_is_a_usage_error() {
    // `-r 0` and `--block-size 0` used to mean "the cluster default" silently; they, and block
    // sizes that are not a multiple of 64 KiB, are usage errors (exit 2) that create nothing.
    let c = TestCluster::builder().datanodes(1).replication(1).start();
    let cli = c.client();
    let local = c.scratch_path("small");
    fs::write(&local, b"hello").unwrap();
    let l = local.to_str().unwrap();
    for (args, needle) in [
        (vec!["-r", "0"], "0"),
        (vec!["--block-size", "0"], "block size"),
        (vec!["--block-size", "100"], "multiple of 64 KiB"),
        (vec!["--block-size", "1x"], "1x"),
        (vec!["--block-size", "2TiB"], "at most 1 TiB"),
    ] {
        let mut all = vec!["put"];
        all.extend(&args);
        all.extend([l, "/f"]);
        let out = cli.run(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert_eq!(cli.ls_names("/"), Vec::<String>::new());
    cli.ok(&["put", "-r", "1", "--block-size", "3.5MiB", l, "/f"]);
    assert_eq!(
        field_u64(&cli.stat_json("/f"), "block_size"),
        3584 * KIB as u64
    );
}

#[test]
fn put_whose_file_is_removed_meanwhile_fails_naming_the_target() {
    // Another client removes the hidden file a put is writing: the put fails with a message that
    // names the target (it said only "inode N: stale file handle") and leaves nothing behind.
    let c = TestCluster::builder().block_size("1MiB").start();
    c.ok(&["mkdir", "/d"]);
    let mut put = c
        .command(&["put", "-", "/d/slow"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = put.stdin.take().unwrap();
    {
        use std::io::Write;
        stdin.write_all(&random_bytes(5 * MIB, 12)).unwrap();
        stdin.flush().unwrap();
    }
    let tmp = wait_for(Duration::from_secs(30), "the put to start writing", || {
        c.file_being_written("/d")
            .map(|st| field_str(&st, "path").to_string())
            .ok_or_else(|| "no file under construction in /d yet".to_string())
    });
    c.ok(&["rm", &tmp]);
    {
        use std::io::Write;
        let _ = stdin.write_all(&random_bytes(MIB, 13));
    }
    drop(stdin);
    let out = put.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "put succeeded: {stderr}");
    let line = stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.starts_with("ringfs: /d/slow: "), "{line}");
    assert!(c.ls_names("/d").is_empty(), "{:?}", c.ls_names("/d"));
}

#[test]
fn get_killed_mid_transfer_leaves_nothing_in_the_local_directory() {
    // `kill -9` of a get while it writes the local file: the directory holds no partial or
    // temporary file afterwards (the file has no name until it is complete).
    let c = TestCluster::builder().start();
    let src = c.scratch_path("big");
    write_random_file(&src, 256 << 20, 21);
    c.put_file(&src, "/big", &["-r", "1"]);
    let out = c.scratch_path("out");
    fs::create_dir(&out).unwrap();
    let mut get = c
        .command(&["get", "/big", out.to_str().unwrap()])
        .spawn()
        .unwrap();
    let fd_dir = format!("/proc/{}/fd", get.id());
    let writing = || {
        fs::read_dir(&fd_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| fs::read_link(e.path()).is_ok_and(|l| l.starts_with(&out)))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !writing() {
        assert!(
            std::time::Instant::now() < deadline && get.try_wait().unwrap().is_none(),
            "the get never held a file open in {}",
            out.display()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    get.kill().unwrap();
    get.wait().unwrap();
    let left: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    match left.as_slice() {
        [] => {}
        // The kill came after the rename: then the file is complete.
        [name] if name == "big" => assert_eq!(hash_file(&out.join("big")), hash_file(&src)),
        other => panic!("a killed get left {other:?} in {}", out.display()),
    }
}

/// Replica files (`<datanode dir>/blocks/..`) that process `pid` holds open, as `(block id,
/// generation)`: what a short-circuit reader keeps.
fn replica_files_held_by(pid: u32, c: &TestCluster, datanodes: usize) -> BTreeSet<(u64, u64)> {
    let dirs: Vec<_> = (0..datanodes)
        .map(|i| fs::canonicalize(c.datanode_dir(i)).unwrap().join("blocks"))
        .collect();
    let mut held = BTreeSet::new();
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let Ok(target) = fs::read_link(fd.path()) else {
            continue;
        };
        if !dirs.iter().any(|d| target.starts_with(d)) {
            continue;
        }
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        if let Some((id, gen)) = name
            .strip_suffix(".data")
            .and_then(|n| n.split_once('_'))
            .and_then(|(i, g)| Some((i.parse().ok()?, g.parse().ok()?)))
        {
            held.insert((id, gen));
        }
    }
    held
}

#[test]
fn readers_on_the_datanodes_host_read_the_replica_files_unless_told_not_to() {
    // Short-circuit reads: a mount on the datanodes' host reads every block from a replica file the
    // datanode handed it (it keeps the descriptors a while), and returns the same bytes as a mount
    // and a `get` told to read over the network.
    let c = TestCluster::builder()
        .datanodes(3)
        .block_size("1MiB")
        .start();
    let data = random_bytes(5 * MIB + 4321, 17);
    c.put_bytes("/f", &data);
    let blocks: BTreeSet<(u64, u64)> = stat_blocks(&c.stat_json("/f"))
        .iter()
        .map(|b| (field_u64(b, "id"), field_u64(b, "generation")))
        .collect();
    assert_eq!(blocks.len(), 6);

    let local = c.mount(&[]);
    assert_same_bytes(
        &fs::read(local.path("f")).unwrap(),
        &data,
        "/f (short-circuit mount)",
    );
    let held = replica_files_held_by(local.pid(), &c, 3);
    assert_eq!(
        held, blocks,
        "replica files held by the short-circuit mount"
    );

    let remote = c.mount(&["--no-short-circuit"]);
    assert_same_bytes(
        &fs::read(remote.path("f")).unwrap(),
        &data,
        "/f (network mount)",
    );
    assert_eq!(
        replica_files_held_by(remote.pid(), &c, 3),
        BTreeSet::new(),
        "a mount with --no-short-circuit holds replica files"
    );

    assert_same_bytes(
        &c.get_bytes_over_network("/f"),
        &data,
        "get /f over the network",
    );
}

#[test]
fn a_datanode_address_given_as_the_namenode_is_named_as_not_a_namenode() {
    // A datanode's port answers gRPC too (every namenode call Unimplemented, with no message):
    // the CLI said "namenode ADDR: " and a mount mounted and then failed every call.
    let c = TestCluster::builder().start();
    let dn = c.datanode_addr(0).to_string();
    let mnt = c.scratch_path("mnt");
    fs::create_dir(&mnt).unwrap();
    for args in [vec!["ls", "/"], vec!["mount", mnt.to_str().unwrap()]] {
        let mut cmd = Command::new(bin());
        cmd.arg("--namenode").arg(&dn).args(&args);
        let out = run_with_timeout(
            cmd,
            None,
            "ringfs with a datanode as namenode",
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(&dn) && stderr.contains("not a ringfs namenode"),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        fs::read_dir(&mnt).is_ok(),
        "the mountpoint was left mounted"
    );
    // A datanode pointed at it logged "cannot register ... error=" (empty), forever.
    let log = c.scratch_path("lost-datanode.log");
    let mut lost = Command::new(bin())
        .arg("datanode")
        .arg("--data-dir")
        .arg(c.scratch_path("lost-datanode"))
        .args(["--namenode", &dn, "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let said = wait_for(Duration::from_secs(30), "the datanode's reason", || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        match text.lines().find(|l| l.contains("cannot register")) {
            Some(l) => Ok(l.to_string()),
            None => Err(text),
        }
    });
    lost.kill().unwrap();
    lost.wait().unwrap();
    assert!(said.contains("not a ringfs namenode"), "{said}");
}

#[test]
fn a_write_refused_for_lack_of_space_leaves_no_partial_replica() {
    // The datanode that ran out of room kept the partial replica in tmp/ for a day, taking more
    // room and not counting against --capacity; the writer goes on without that node anyway.
    let c = TestCluster::builder()
        .datanodes(1)
        .replication(1)
        .block_size("4MiB")
        .datanode_arg(&["--capacity", "1MiB"])
        .start();
    let cli = c.client();
    let local = c.scratch_path("3mib");
    write_random_file(&local, 3 * MIB as u64, 44);
    cli.fails(&["put", local.to_str().unwrap(), "/big"])
        .says(&["/big", "no space left"]);
    let tmp = c.datanode_dir(0).join("tmp");
    wait_until(
        std::time::Duration::from_secs(10),
        "the partial replica to be removed",
        || fs::read_dir(&tmp).is_ok_and(|d| d.count() == 0),
    );
}

#[test]
fn a_failed_put_leaves_no_replica_on_the_nodes_that_took_its_blocks() {
    // A 3-node R=3 cluster whose third node has room for two blocks: the put's third block fails
    // there, the pipeline cannot be recovered (need 3, have 2) and the put removes its file. The
    // two other nodes kept their partial replica of that block in tmp/ for a day (nobody told
    // them), and a finished replica reported as its file was removed was held as unclaimed for
    // the lease hard limit, taking its room all that time. Both are deleted now.
    let mut c = TestCluster::builder()
        .datanodes(2)
        .replication(3)
        .block_size("1MiB")
        .no_wait()
        .start();
    c.add_datanode_with(&["--capacity", "2MiB"]);
    c.wait_live_datanodes(3, Duration::from_secs(30));
    let local = c.scratch_path("3mib");
    write_random_file(&local, 3 * MIB as u64 + 5, 45);
    let failure = c.fails(&["put", local.to_str().unwrap(), "/f"]);
    assert!(!c.exists("/f"), "{failure:?}");
    let data_files = |dir: PathBuf| -> usize {
        fs::read_dir(&dir).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".data"))
                .count()
        })
    };
    wait_for(
        Duration::from_secs(30),
        "no replica left on any datanode",
        || {
            let left: Vec<(usize, usize, usize)> = (0..3)
                .map(|i| {
                    let dir = c.datanode_dir(i);
                    let finalized = fs::read_dir(dir.join("blocks"))
                        .map_or(0, |d| d.flatten().map(|sub| data_files(sub.path())).sum());
                    (i, finalized, data_files(dir.join("tmp")))
                })
                .filter(|&(_, f, t)| f + t > 0)
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("(datanode, finalized, tmp): {left:?}"))
            }
        },
    );
}

#[test]
fn a_cat_of_a_file_replaced_meanwhile_says_so_rather_than_blame_the_replicas() {
    // `cat` is stalled (nobody reads its stdout) while `put -f` replaces the file and the old
    // blocks are deleted on the datanodes: it stops with a message saying the file was replaced
    // under it (as `hdfs dfs -cat` fails then too), not "no live replica", which reads as data
    // loss; and it never mixes in the new file's bytes.
    let c = TestCluster::builder()
        .datanodes(3)
        .block_size("256KiB")
        .heartbeat("1s")
        .start();
    let cli = c.client();
    let old = random_bytes(16 * MIB, 71);
    cli.put_bytes("/f", &old);
    let old_blocks: BTreeSet<u64> = stat_blocks(&cli.stat_json("/f"))
        .iter()
        .map(|b| field_u64(b, "id"))
        .collect();
    let mut cat = cli
        .command(&["cat", "/f"])
        .spawn()
        .expect("start ringfs cat");
    let mut stdout = cat.stdout.take().unwrap();
    // The first bytes prove it started; then it stalls on the full pipe.
    let mut first = vec![0u8; 4096];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    cli.put_bytes_with("/f", &random_bytes(16 * MIB, 72), &["-f"]);
    wait_until(
        Duration::from_secs(30),
        "the replaced file's blocks to be deleted on every datanode",
        || {
            (0..3).all(|i| {
                c.replicas_on(i)
                    .iter()
                    .all(|r| !old_blocks.contains(&r.block_id))
            })
        },
    );
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut rest).unwrap();
    let out = cat.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "cat of a replaced file: {stderr}"
    );
    assert!(
        stderr.contains("/f: deleted or replaced by another client while being read"),
        "unclear error: {stderr}"
    );
    first.extend_from_slice(&rest);
    assert!(first.len() < old.len(), "cat printed the whole old file");
    assert_same_bytes(
        &first,
        &old[..first.len()],
        "what cat printed before it stopped",
    );
}

#[test]
fn up_refuses_to_mount_over_its_own_data_dir() {
    // `up --data-dir X --mount X` started, said "mounted", and then hung for ever (the datanodes
    // stored their blocks inside the mount they served; Ctrl-C hung too). The data dir, a
    // directory above it and a node's directory in it are refused at once, before anything
    // starts.
    let base = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    let top = tempfile::tempdir_in(&base).unwrap();
    let data = top.path().join("data");
    fs::create_dir_all(data.join("datanode-0")).unwrap();
    let data_s = data.to_str().unwrap();
    for mount in [
        data.clone(),
        top.path().to_path_buf(),
        data.join("datanode-0"),
        data.join("namenode"),
    ] {
        let mut cmd = Command::new(bin());
        cmd.args([
            "up",
            "--data-dir",
            data_s,
            "--namenode-listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--mount",
            mount.to_str().unwrap(),
        ]);
        let out = run_with_timeout(
            cmd,
            None,
            "up --mount over its data",
            Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{mount:?}: {stderr}");
        assert!(
            stderr.contains("cannot mount over the data dir"),
            "{mount:?}: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("mounted at"),
            "{mount:?}"
        );
    }
}

#[test]
fn a_namenode_whose_disk_fills_up_says_what_it_kept_and_works_again_once_there_is_room() {
    // The namenode's disk fills up under a stream of mkdirs. The change that hits it either says
    // it failed and is not there, or says it was made (it is in the log, the store could not take
    // it): one said "failed" and existed after a restart. `report` shows the namenode refusing
    // changes. With room again it takes changes again by itself (it needed a restart before),
    // and every change that was acknowledged or said made is there, also after a restart.
    let mut c = TestCluster::builder().datanodes(1).replication(1).start();
    let cli = c.client();
    c.stop_namenode();
    let dir = c.namenode_dir().to_path_buf();
    let saved = tempfile::tempdir().unwrap();
    let cp = |from: &std::path::Path, to: &std::path::Path| {
        let out = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to)
            .output()
            .unwrap();
        assert!(out.status.success(), "cp: {out:?}");
    };
    cp(&dir, saved.path());
    let _tmpfs = Tmpfs::mount(&dir, "8m");
    cp(saved.path(), &dir);
    c.restart_namenode();
    // Leave 64 KiB free: the store's next growth fails before the log does (with a few
    // hundred KiB the log's append fails first, which this test accepts too).
    let free = free_bytes(&dir);
    let filler = dir.join("filler");
    fs::write(&filler, vec![0u8; (free.saturating_sub(64 << 10)) as usize]).unwrap();
    let mut made = Vec::new();
    let mut failure = None;
    for i in 0..5000 {
        let path = format!("/d{i}");
        let out = cli.run(&["mkdir", &path]);
        if out.status.success() {
            made.push(path);
        } else {
            failure = Some((path, String::from_utf8_lossy(&out.stderr).to_string()));
            break;
        }
    }
    let (failed, stderr) = failure.expect("5000 mkdirs fit in 300 KiB");
    eprintln!("the mkdir that hit the full disk: {failed}: {stderr}");
    let said_made = stderr.contains("the change is made");
    assert_eq!(
        cli.run(&["stat", &failed]).status.success(),
        said_made,
        "{failed}: {stderr}"
    );
    let report = cli.report_json();
    let why = report["storage_failure"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(why.contains("No space left"), "{report}");
    cli.fails(&["mkdir", "/after"])
        .says(&["no change is accepted until the namenode can write its metadata again"]);
    fs::remove_file(&filler).unwrap();
    wait_until(Duration::from_secs(30), "changes accepted again", || {
        cli.run(&["mkdir", "/after"]).status.success()
    });
    assert!(cli.report_json()["storage_failure"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
    if said_made {
        made.push(failed.clone());
    }
    made.push("/after".to_string());
    let check = |when: &str| {
        let names = cli.ls_names("/");
        for p in &made {
            assert!(
                names.contains(&p[1..].to_string()),
                "{when}: {p} lost: {names:?}"
            );
        }
        assert_eq!(
            names.contains(&failed[1..].to_string()),
            said_made,
            "{when}: {failed}"
        );
    };
    check("recovered");
    c.stop_namenode();
    c.restart_namenode();
    check("restarted");
    cli.ok(&["mkdir", "/after-restart"]);
}

/// Free bytes of the file system holding `dir`, for a non-root user (statvfs f_bavail).
fn free_bytes(dir: &std::path::Path) -> u64 {
    let out = Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    it.next().unwrap() * it.next().unwrap()
}

#[test]
fn get_onto_a_full_local_disk_names_the_local_file() {
    // "ringfs: No space left on device (os error 28)" named nothing; the target is kept as it was.
    let c = TestCluster::builder().datanodes(1).replication(1).start();
    c.put_bytes("/big", &random_bytes(3 * MIB, 8));
    let dir = tempfile::tempdir().unwrap();
    let _tmpfs = Tmpfs::mount(dir.path(), "1m");
    let target = dir.path().join("out");
    fs::write(&target, b"old").unwrap();
    let t = target.to_str().unwrap();
    c.fails(&["get", "/big", t]).says(&[t, "no space left"]);
    assert_eq!(fs::read(&target).unwrap(), b"old");
}

#[test]
fn a_put_past_the_largest_file_of_its_block_size_is_refused_before_it_writes() {
    // 2^18 blocks of 64 KiB make 16 GiB: a 17 GiB (sparse) local file was written for half an
    // hour before the namenode refused a block.
    let c = TestCluster::builder().datanodes(1).replication(1).start();
    let big = c.scratch_path("sparse17g");
    fs::File::create(&big).unwrap().set_len(17 << 30).unwrap();
    c.fails(&[
        "put",
        "--block-size",
        "64KiB",
        big.to_str().unwrap(),
        "/big",
    ])
    .says(&[
        "/big: file too large",
        "the most for a block size of 65536 is 17179869184",
    ]);
    assert_eq!(c.ls_names("/"), Vec::<String>::new());
    let out = c.cli(&["ls", "-a", "/"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "{out:?}"
    );
}

#[test]
fn get_replaces_a_file_the_caller_may_write_in_a_directory_it_may_not() {
    // A get writes a temporary next to its target and renames it over: in a directory the
    // caller may not write it failed, blaming the file, although `cp` writes such a file (QA).
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("note: setpriv not found; test skipped");
        return;
    }
    let c = TestCluster::builder().start();
    c.put_bytes("/f", b"new content");
    let dir = tempfile::Builder::new()
        .prefix("ringfs-get-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // The binary where uid 1000 may run it (the build dir may not be open to others).
    let ringfs = dir.path().join("ringfs");
    fs::copy(bin(), &ringfs).unwrap();
    let ro = dir.path().join("ro");
    fs::create_dir(&ro).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    let mine = ro.join("mine");
    fs::write(&mine, b"old, and longer than the new content").unwrap();
    std::os::unix::fs::chown(&mine, Some(1000), Some(1000)).unwrap();
    fs::set_permissions(&mine, fs::Permissions::from_mode(0o640)).unwrap();
    let theirs = ro.join("theirs");
    fs::write(&theirs, b"root's").unwrap();
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o644)).unwrap();
    let get_as_user = |target: &std::path::Path| {
        Command::new("setpriv")
            .args(["--reuid", "1000", "--regid", "1000", "--clear-groups"])
            .arg(&ringfs)
            .args(["--namenode", c.namenode(), "get", "/f"])
            .arg(target)
            .output()
            .unwrap()
    };
    let out = get_as_user(&mine);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read(&mine).unwrap(), b"new content");
    let m = fs::metadata(&mine).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (1000, 0o640));
    // A file the caller may not write stays refused, and unchanged.
    let out = get_as_user(&theirs);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{out:?}"
    );
    assert_eq!(fs::read(&theirs).unwrap(), b"root's");
}

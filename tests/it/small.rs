//! Small files stored inline in the namenode's metadata (no blocks): put/get/cat, growth past the
//! inline limit and truncation through the mount, links and renames, `kill -9` of the namenode, and
//! the limit turned off.

use crate::cluster::*;
use serde_json::Value;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Duration;

fn is_inline(st: &Value) -> bool {
    st.get("inline").and_then(Value::as_bool).unwrap_or(false)
}

#[track_caller]
fn assert_inline(cli: &Cli, path: &str, size: u64) {
    let st = cli.stat_json(path);
    assert!(is_inline(&st), "{path} is not inline: {st}");
    assert!(stat_blocks(&st).is_empty(), "{path} has blocks: {st}");
    assert_eq!(field_u64(&st, "size"), size, "{st}");
}

#[track_caller]
fn assert_blocks(cli: &Cli, path: &str, size: u64) {
    let st = cli.stat_json(path);
    assert!(!is_inline(&st), "{path} is inline: {st}");
    assert!(!stat_blocks(&st).is_empty(), "{path} has no blocks: {st}");
    assert_eq!(field_u64(&st, "size"), size, "{st}");
}

#[test]
fn small_puts_are_inline_read_back_and_counted_by_fsck() {
    // Files up to the inline limit (64 KiB) live in the namenode's metadata: no replica on any
    // datanode, `get`/`cat` read them back, fsck counts them as files without blocks; a bigger file
    // gets blocks as before.
    let c = TestCluster::builder().start();
    let small = random_bytes(4 * KIB, 1);
    let limit = random_bytes(64 * KIB, 2);
    let big = random_bytes(64 * KIB + 1, 3);
    c.put_bytes("/small", &small);
    c.put_bytes("/limit", &limit);
    c.put_bytes("/one-byte", b"x");
    c.put_bytes("/empty", b"");
    assert_inline(&c, "/small", small.len() as u64);
    assert_inline(&c, "/limit", limit.len() as u64);
    assert_inline(&c, "/one-byte", 1);
    let st = c.stat_json("/empty");
    assert!(!is_inline(&st) && stat_blocks(&st).is_empty(), "{st}");
    assert!(
        c.all_replicas().is_empty(),
        "inline files left replicas on the datanodes"
    );
    assert_eq!(c.get_bytes("/small"), small);
    assert_eq!(c.get_bytes("/limit"), limit);
    assert_eq!(c.get_bytes("/one-byte"), b"x");
    assert_eq!(c.get_bytes("/empty"), b"");
    assert_eq!(c.ok(&["cat", "/one-byte"]), "x");

    c.put_bytes("/big", &big);
    assert_blocks(&c, "/big", big.len() as u64);
    assert_eq!(c.get_bytes("/big"), big);

    let f = c.fsck_json("/");
    assert_eq!(field_u64(&f, "files"), 5, "{f}");
    assert_eq!(field_u64(&f, "blocks"), 1, "{f}");
    assert_eq!(field_u64(&f, "healthy_blocks"), 1, "{f}");
    assert_eq!(
        field_u64(&f, "total_bytes"),
        (small.len() + limit.len() + 1 + big.len()) as u64,
        "{f}"
    );
    assert!(fsck_is_healthy(&f, 3), "{f}");
    assert_eq!(field_u64(&f, "inline_files"), 3, "{f}");
    assert_eq!(
        field_u64(&f, "inline_bytes"),
        (small.len() + limit.len() + 1) as u64,
        "{f}"
    );
    assert!(c.ok(&["fsck", "/"]).contains("inline files"));

    // Overwriting an inline file with a big one and back.
    c.put_bytes_with("/small", &big, &["--force"]);
    assert_blocks(&c, "/small", big.len() as u64);
    assert_eq!(c.get_bytes("/small"), big);
    c.put_bytes_with("/big", &small, &["--force"]);
    assert_inline(&c, "/big", small.len() as u64);
    assert_eq!(c.get_bytes("/big"), small);
}

#[test]
fn inline_files_grow_shrink_link_and_rename_through_the_mount() {
    // Through the mount: a small file is inline; appending past the limit moves its content into a
    // block; truncating, writing in the middle, hard links, renames and unlinks keep the bytes right,
    // as the CLI sees them too.
    let c = TestCluster::builder().block_size("1MiB").start();
    let m = c.mount(&[]);
    let mut want = random_bytes(4 * KIB, 10);
    fs::write(m.path("f"), &want).unwrap();
    assert_inline(&c, "/f", want.len() as u64);
    assert_eq!(fs::read(m.path("f")).unwrap(), want);
    assert_eq!(c.get_bytes("/f"), want);

    // A write in the middle of an inline file.
    {
        let f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
        f.write_all_at(b"middle", 1000).unwrap();
        want[1000..1006].copy_from_slice(b"middle");
    }
    assert_inline(&c, "/f", want.len() as u64);
    assert_eq!(c.get_bytes("/f"), want);

    // Growth past the limit: the content moves into a block.
    let more = random_bytes(100 * KIB, 11);
    {
        let mut f = OpenOptions::new().append(true).open(m.path("f")).unwrap();
        f.write_all(&more).unwrap();
    }
    want.extend_from_slice(&more);
    assert_blocks(&c, "/f", want.len() as u64);
    assert_eq!(c.get_bytes("/f"), want);
    assert_eq!(fs::read(m.path("f")).unwrap(), want);

    // Cut below the limit inside its block, it is small again: inline, the block freed.
    let f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    f.set_len(3000).unwrap();
    drop(f);
    want.truncate(3000);
    assert_eq!(c.get_bytes("/f"), want);
    assert_eq!(fs::read(m.path("f")).unwrap(), want);
    assert_inline(&c, "/f", 3000);

    // Truncate an inline file down and up (the tail reads as zeros), by path.
    let g = m.path("g");
    fs::write(&g, random_bytes(10_000, 12)).unwrap();
    let mut want_g = fs::read(&g).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&g)
        .unwrap()
        .set_len(5001)
        .unwrap();
    want_g.truncate(5001);
    assert_eq!(c.get_bytes("/g"), want_g);
    OpenOptions::new()
        .write(true)
        .open(&g)
        .unwrap()
        .set_len(20_000)
        .unwrap();
    want_g.resize(20_000, 0);
    assert_eq!(c.get_bytes("/g"), want_g);
    assert_eq!(fs::read(&g).unwrap(), want_g);

    // Hard link, rename over it, unlink: the inode keeps its inline content.
    fs::hard_link(m.path("f"), m.path("link")).unwrap();
    fs::rename(m.path("link"), m.path("g")).unwrap();
    fs::remove_file(m.path("f")).unwrap();
    assert_eq!(fs::read(m.path("g")).unwrap(), want);
    assert_eq!(c.get_bytes("/g"), want);
    assert_inline(&c, "/g", 3000);

    // fsync of a small file commits it inline too (no datanode round), and the file stays open
    // for writing; a later timestamp change on the open file (`cp -p`, rsync) survives the close.
    {
        let mut h = fs::File::create(m.path("synced")).unwrap();
        h.write_all(b"abc").unwrap();
        h.sync_all().unwrap();
        assert_eq!(c.get_bytes("/synced"), b"abc");
        assert_inline(&c, "/synced", 3);
        h.write_all(b"def").unwrap();
        h.sync_all().unwrap();
        assert_inline(&c, "/synced", 6);
        let old = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        h.set_modified(old).unwrap();
        h.sync_all().unwrap();
        drop(h);
        assert_eq!(
            fs::metadata(m.path("synced")).unwrap().modified().unwrap(),
            old
        );
    }
    assert_eq!(c.get_bytes("/synced"), b"abcdef");
    assert_inline(&c, "/synced", 6);
    assert_eq!(fs::read(m.path("synced")).unwrap(), b"abcdef");
    fs::remove_file(m.path("synced")).unwrap();

    // O_TRUNC rewrite, then an empty file.
    fs::write(m.path("g"), b"short").unwrap();
    assert_eq!(c.get_bytes("/g"), b"short");
    fs::write(m.path("g"), b"").unwrap();
    assert_eq!(c.get_bytes("/g"), b"");
    fs::remove_file(m.path("g")).unwrap();

    // Files put by the CLI read through the mount.
    let put = random_bytes(20 * KIB, 13);
    c.put_bytes("/put", &put);
    assert_eq!(fs::read(m.path("put")).unwrap(), put);
    // The file replaced by the rename above keeps a hidden name for a moment (an open of it may
    // have been on its way): wait for it to go.
    let f = wait_for(Duration::from_secs(10), "only /put left", || {
        let f = c.fsck_json("/");
        match field_u64(&f, "files") {
            1 => Ok(f),
            _ => Err(f.to_string()),
        }
    });
    assert_eq!(field_u64(&f, "blocks"), 0, "{f}");
}

#[test]
fn inline_files_survive_a_namenode_kill_9() {
    // Small files written through the CLI and a mount, then `kill -9` of the namenode and a restart:
    // every acknowledged inline file reads back identical.
    let mut c = TestCluster::builder().start();
    let mut files = Vec::new();
    for i in 0..20 {
        let data = random_bytes(1 + i * 3001, 100 + i as u64);
        let path = format!("/cli{i}");
        c.put_bytes(&path, &data);
        files.push((path, data));
    }
    {
        let m = c.mount(&[]);
        fs::create_dir(m.path("d")).unwrap();
        for i in 0..20 {
            let data = random_bytes(1 + i * 2999, 200 + i as u64);
            fs::write(m.path(&format!("d/m{i}")), &data).unwrap();
            files.push((format!("/d/m{i}"), data));
        }
    }
    c.kill_namenode();
    c.restart_namenode();
    c.wait_live_datanodes(3, Duration::from_secs(30));
    for (path, data) in &files {
        assert_inline(&c, path, data.len() as u64);
        assert_eq!(&c.get_bytes(path), data, "{path} after the restart");
    }
    let m = c.mount(&[]);
    for (path, data) in &files {
        assert_eq!(
            &fs::read(m.path(path.trim_start_matches('/'))).unwrap(),
            data,
            "{path} through a new mount"
        );
    }
}

#[test]
fn inline_max_0_stores_small_files_in_blocks() {
    // `--inline-max 0` turns inline data off: a small file gets a replicated block as before.
    let c = TestCluster::builder()
        .namenode_arg(&["--inline-max", "0"])
        .start();
    c.put_bytes("/small", b"hello");
    assert_blocks(&c, "/small", 5);
    assert_eq!(c.get_bytes("/small"), b"hello");
    let m = c.mount(&[]);
    fs::write(m.path("m"), b"through the mount").unwrap();
    assert_blocks(&c, "/m", 17);
    assert_eq!(c.get_bytes("/m"), b"through the mount");
}

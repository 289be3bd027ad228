//! Extended attributes through real mounts: setxattr/getxattr/listxattr/removexattr with libc
//! (no `attr` tools needed), across mounts, users, a namenode kill -9 and `cp -a`.

use crate::cluster::*;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn cname(name: &str) -> CString {
    CString::new(name).unwrap()
}

/// The errno of a failed call, for assertions.
fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected a failure, got {v:?}"),
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

fn check(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// setxattr(2) (`no_follow`: lsetxattr).
fn set_with(p: &Path, name: &str, value: &[u8], flags: i32, no_follow: bool) -> io::Result<()> {
    let (p, n) = (cpath(p), cname(name));
    let v = value.as_ptr().cast();
    // SAFETY: valid NUL-terminated strings and a buffer of `value.len()` bytes.
    let r = unsafe {
        if no_follow {
            libc::lsetxattr(p.as_ptr(), n.as_ptr(), v, value.len(), flags)
        } else {
            libc::setxattr(p.as_ptr(), n.as_ptr(), v, value.len(), flags)
        }
    };
    check(r as isize).map(drop)
}

fn set(p: &Path, name: &str, value: &[u8], flags: i32) -> io::Result<()> {
    set_with(p, name, value, flags, false)
}

/// getxattr(2) into a buffer of `len` bytes (0: the size query, answered as a length).
fn get_len(p: &Path, name: &str, len: usize) -> io::Result<(usize, Vec<u8>)> {
    let (p, n) = (cpath(p), cname(name));
    let mut buf = vec![0u8; len];
    let ptr = if len == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    // SAFETY: valid strings; `ptr` is null with size 0 or a buffer of `len` bytes.
    let n = check(unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), ptr, len) })?;
    buf.truncate(n.min(len));
    Ok((n, buf))
}

/// The value of an attribute: its size first, then the bytes (as getfattr does).
fn get(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let (size, _) = get_len(p, name, 0)?;
    let (n, v) = get_len(p, name, size)?;
    assert_eq!(
        n, size,
        "{name}: the size query answered the value's length"
    );
    Ok(v)
}

/// listxattr(2) into a buffer of `len` bytes (0: the size query).
fn list_len(p: &Path, len: usize) -> io::Result<(usize, Vec<u8>)> {
    let p = cpath(p);
    let mut buf = vec![0u8; len];
    let ptr = if len == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    // SAFETY: as in `get_len`.
    let n = check(unsafe { libc::listxattr(p.as_ptr(), ptr, len) })?;
    buf.truncate(n.min(len));
    Ok((n, buf))
}

/// The names listxattr(2) gives, checking that each is NUL-terminated.
fn list(p: &Path) -> io::Result<Vec<String>> {
    let (size, _) = list_len(p, 0)?;
    let (n, raw) = list_len(p, size)?;
    assert_eq!(n, size);
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    assert_eq!(raw.last(), Some(&0), "names end with a NUL: {raw:?}");
    let mut names: Vec<String> = raw[..raw.len() - 1]
        .split(|&b| b == 0)
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    names.sort();
    Ok(names)
}

fn remove(p: &Path, name: &str) -> io::Result<()> {
    let (p, n) = (cpath(p), cname(name));
    // SAFETY: valid NUL-terminated strings.
    check(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) } as isize).map(drop)
}

/// Runs `f` on a thread whose file system uid and gid are 1000 (setfsuid is per thread), as a
/// user without privileges over files would.
fn as_uid_1000<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: setfsgid/setfsuid change only this thread's file system ids.
        unsafe {
            libc::setfsgid(1000);
            libc::setfsuid(1000);
        }
        let fs_uid = unsafe { libc::setfsuid(u32::MAX) };
        assert_eq!(fs_uid, 1000, "setfsuid took effect");
        f()
    })
    .join()
    .unwrap()
}

fn ctime(p: &Path) -> (i64, i64) {
    let md = fs::metadata(p).unwrap();
    (md.ctime(), md.ctime_nsec())
}

#[test]
fn user_attributes_behave_as_on_a_local_file_system() {
    // One mount: flags, missing attributes, size queries, ERANGE, lists, limits, kinds, ctime.
    let cluster = TestCluster::builder().start();
    let m = cluster.mount(&[]);
    let f = m.path("f");
    fs::write(&f, b"data").unwrap();

    assert_eq!(errno(get(&f, "user.k")), libc::ENODATA);
    assert_eq!(list(&f).unwrap(), Vec::<String>::new());
    let before = ctime(&f);
    set(&f, "user.k", b"v1", libc::XATTR_CREATE).unwrap();
    assert!(ctime(&f) > before, "setxattr changes ctime");
    assert_eq!(get(&f, "user.k").unwrap(), b"v1");
    assert_eq!(
        errno(set(&f, "user.k", b"v2", libc::XATTR_CREATE)),
        libc::EEXIST
    );
    assert_eq!(
        errno(set(&f, "user.other", b"x", libc::XATTR_REPLACE)),
        libc::ENODATA
    );
    set(&f, "user.k", b"value two", libc::XATTR_REPLACE).unwrap();
    set(&f, "user.empty", b"", 0).unwrap();
    assert_eq!(get(&f, "user.empty").unwrap(), b"");
    // Size query, a buffer too small, an exact one.
    assert_eq!(get_len(&f, "user.k", 0).unwrap().0, 9);
    assert_eq!(errno(get_len(&f, "user.k", 8)), libc::ERANGE);
    assert_eq!(get_len(&f, "user.k", 9).unwrap().1, b"value two");
    let (list_size, _) = list_len(&f, 0).unwrap();
    assert_eq!(list_size, "user.empty\0user.k\0".len());
    assert_eq!(errno(list_len(&f, list_size - 1)), libc::ERANGE);
    assert_eq!(list(&f).unwrap(), ["user.empty", "user.k"]);
    // Binary values, up to the 64 KiB of names and values an inode holds.
    let held = "user.empty".len() + "user.k".len() + "value two".len();
    let room = 65536 - held - "user.big".len();
    let big: Vec<u8> = (0..room as u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(
        errno(set(&f, "user.big", &[big.as_slice(), b"x"].concat(), 0)),
        libc::ENOSPC
    );
    set(&f, "user.big", &big, 0).unwrap();
    assert_eq!(get(&f, "user.big").unwrap(), big);
    assert_eq!(errno(set(&f, "user.more", b"x", 0)), libc::ENOSPC);
    remove(&f, "user.big").unwrap();
    let too_big = vec![0u8; 65537];
    assert_eq!(errno(set(&f, "user.big", &too_big, 0)), libc::E2BIG);
    assert_eq!(
        errno(set(&f, &format!("user.{}", "n".repeat(251)), b"", 0)),
        libc::ERANGE
    );
    set(&f, &format!("user.{}", "n".repeat(250)), b"", 0).unwrap();
    // Namespaces the mount does not keep.
    assert_eq!(
        errno(set(&f, "system.posix_acl_access", b"\x02\0\0\0", 0)),
        libc::EOPNOTSUPP
    );
    assert_eq!(errno(set(&f, "unknown.x", b"", 0)), libc::EOPNOTSUPP);
    // Remove.
    let before = ctime(&f);
    remove(&f, "user.k").unwrap();
    assert!(ctime(&f) > before, "removexattr changes ctime");
    assert_eq!(errno(remove(&f, "user.k")), libc::ENODATA);
    assert_eq!(errno(get(&f, "user.k")), libc::ENODATA);
    // A security.* attribute set through this mount is read back at once (the mount answers
    // those of inodes without any attribute itself, and learns from the change that this one has
    // some), and is gone once removed.
    let s = m.path("sec");
    fs::write(&s, b"s").unwrap();
    fs::metadata(&s).unwrap();
    assert_eq!(errno(get(&s, "security.test")), libc::ENODATA);
    set(&s, "security.test", b"label", 0).unwrap();
    assert_eq!(get(&s, "security.test").unwrap(), b"label");
    remove(&s, "security.test").unwrap();
    assert_eq!(errno(get(&s, "security.test")), libc::ENODATA);
    // Directories take user attributes; symlinks and FIFOs do not (EPERM), as on Linux.
    fs::create_dir(m.path("d")).unwrap();
    set(&m.path("d"), "user.dir", b"yes", 0).unwrap();
    assert_eq!(list(&m.path("d")).unwrap(), ["user.dir"]);
    std::os::unix::fs::symlink("f", m.path("l")).unwrap();
    assert_eq!(
        errno(set_with(&m.path("l"), "user.k", b"v", 0, true)),
        libc::EPERM
    );
    // Through the symlink: the target's attributes.
    set(&m.path("l"), "user.via", b"link", 0).unwrap();
    assert_eq!(get(&f, "user.via").unwrap(), b"link");
    // Hard links share them, a rename keeps them, and they go with the file.
    fs::hard_link(&f, m.path("hard")).unwrap();
    assert_eq!(get(&m.path("hard"), "user.via").unwrap(), b"link");
    fs::rename(m.path("hard"), m.path("moved")).unwrap();
    set(&m.path("moved"), "user.moved", b"1", 0).unwrap();
    assert_eq!(get(&f, "user.moved").unwrap(), b"1");
    fs::remove_file(&f).unwrap();
    fs::remove_file(m.path("moved")).unwrap();
    fs::write(&f, b"new").unwrap();
    assert_eq!(
        list(&f).unwrap(),
        Vec::<String>::new(),
        "a new file has none"
    );
}

#[test]
fn attributes_are_seen_by_other_mounts_and_survive_a_namenode_kill() {
    // Mount A sets, mount B sees them; kill -9 + restart of the namenode keeps every change.
    let mut cluster = TestCluster::builder().start();
    let a = cluster.mount(&[]);
    let b = cluster.mount(&[]);
    fs::write(a.path("f"), b"x").unwrap();
    fs::create_dir(a.path("d")).unwrap();
    set(&a.path("f"), "user.a", b"from a", 0).unwrap();
    set(&a.path("d"), "user.d", b"dir", 0).unwrap();
    set(&a.path("f"), "trusted.t", b"root's", 0).unwrap();
    set(&a.path("f"), "user.gone", b"-", 0).unwrap();
    remove(&a.path("f"), "user.gone").unwrap();
    assert_eq!(get(&b.path("f"), "user.a").unwrap(), b"from a");
    assert_eq!(list(&b.path("f")).unwrap(), ["trusted.t", "user.a"]);
    // B's change is seen by A (A asks the namenode: attribute values are not cached).
    set(&b.path("f"), "user.b", b"from b", 0).unwrap();
    assert_eq!(get(&a.path("f"), "user.b").unwrap(), b"from b");

    cluster.kill_namenode();
    cluster.restart_namenode();

    // The mounts wait for the namenode and see every acknowledged change.
    assert_eq!(get(&a.path("f"), "user.a").unwrap(), b"from a");
    assert_eq!(get(&b.path("f"), "user.b").unwrap(), b"from b");
    assert_eq!(get(&b.path("d"), "user.d").unwrap(), b"dir");
    assert_eq!(
        list(&a.path("f")).unwrap(),
        ["trusted.t", "user.a", "user.b"]
    );
    assert_eq!(errno(get(&a.path("f"), "user.gone")), libc::ENODATA);
    let c = cluster.mount(&[]);
    assert_eq!(get(&c.path("f"), "trusted.t").unwrap(), b"root's");
    // And changes go on after the restart.
    set(&c.path("f"), "user.after", b"1", libc::XATTR_CREATE).unwrap();
    assert_eq!(get(&a.path("f"), "user.after").unwrap(), b"1");
}

#[test]
fn a_user_is_refused_root_files_and_trusted_attributes() {
    // uid 1000 on a root-owned 0644 file: reads user attributes, cannot change them, sees no
    // trusted ones; on its own file it may.
    let cluster = TestCluster::builder().start();
    let m = cluster.mount(&["--allow-other"]);
    let f = m.path("rootfile");
    fs::write(&f, b"r").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    set(&f, "user.k", b"root", 0).unwrap();
    set(&f, "trusted.t", b"secret", 0).unwrap();
    let mine = m.path("userdir");
    fs::create_dir(&mine).unwrap();
    std::os::unix::fs::chown(&mine, Some(1000), Some(1000)).unwrap();

    let (f2, mine2) = (f.clone(), mine.clone());
    let (set_err, rm_err, got, listed, trusted_err, own) = as_uid_1000(move || {
        let own = (|| {
            let p = mine2.join("own");
            fs::write(&p, b"u")?;
            set(&p, "user.mine", b"ok", 0)?;
            get(&p, "user.mine")
        })();
        (
            errno(set(&f2, "user.k", b"user", 0)),
            errno(remove(&f2, "user.k")),
            get(&f2, "user.k").map_err(|e| e.to_string()),
            list(&f2).map_err(|e| e.to_string()),
            errno(get(&f2, "trusted.t")),
            own.map_err(|e| e.to_string()),
        )
    });
    assert_eq!(
        set_err,
        libc::EACCES,
        "setxattr by uid 1000 on root's 0644 file"
    );
    assert_eq!(
        rm_err,
        libc::EACCES,
        "removexattr by uid 1000 on root's 0644 file"
    );
    assert_eq!(got.unwrap(), b"root");
    assert_eq!(
        listed.unwrap(),
        ["user.k"],
        "trusted.* hidden from uid 1000"
    );
    assert_eq!(trusted_err, libc::ENODATA);
    assert_eq!(own.unwrap(), b"ok");
    assert_eq!(get(&f, "user.k").unwrap(), b"root", "unchanged");
    assert_eq!(fs::metadata(mine.join("own")).unwrap().uid(), 1000);
}

#[test]
fn a_read_only_mount_reads_attributes_and_refuses_changes() {
    // --read-only: get/list work, set/remove are EROFS.
    let cluster = TestCluster::builder().start();
    let rw = cluster.mount(&[]);
    fs::write(rw.path("f"), b"x").unwrap();
    set(&rw.path("f"), "user.k", b"v", 0).unwrap();
    let ro = cluster.mount(&["--read-only"]);
    assert_eq!(get(&ro.path("f"), "user.k").unwrap(), b"v");
    assert_eq!(list(&ro.path("f")).unwrap(), ["user.k"]);
    assert_eq!(errno(set(&ro.path("f"), "user.k", b"w", 0)), libc::EROFS);
    assert_eq!(errno(remove(&ro.path("f"), "user.k")), libc::EROFS);
    assert_eq!(get(&rw.path("f"), "user.k").unwrap(), b"v");
}

#[test]
fn cp_a_and_rsync_ax_keep_user_attributes() {
    // cp -a of a local tree with user attributes into the mount and back keeps them, and so does
    // rsync -aX, also when it updates a copy whose attributes changed.
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), b"alpha").unwrap();
    fs::write(src.join("ro"), b"read-only").unwrap();
    if let Err(e) = set(&src.join("a"), "user.probe", b"", 0) {
        eprintln!(
            "note: {} has no user xattrs ({e}); cp -a test skipped",
            local.path().display()
        );
        return;
    }
    set(&src.join("a"), "user.mime_type", b"text/plain", 0).unwrap();
    set(&src.join("ro"), "user.tag", b"\x00\x01binary", 0).unwrap();
    set(&src, "user.dir", b"top", 0).unwrap();
    fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o444)).unwrap();

    let cluster = TestCluster::builder().start();
    let m = cluster.mount(&[]);
    let out = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(m.path("copy"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cp -a into the mount: {out:?}");
    let copy = m.path("copy");
    assert_eq!(
        list(&copy.join("a")).unwrap(),
        ["user.mime_type", "user.probe"]
    );
    assert_eq!(
        get(&copy.join("a"), "user.mime_type").unwrap(),
        b"text/plain"
    );
    assert_eq!(
        get(&copy.join("ro"), "user.tag").unwrap(),
        b"\x00\x01binary"
    );
    assert_eq!(get(&copy, "user.dir").unwrap(), b"top");
    assert_eq!(fs::metadata(copy.join("ro")).unwrap().mode() & 0o777, 0o444);
    assert_eq!(fs::read(copy.join("a")).unwrap(), b"alpha");

    let back = local.path().join("back");
    let out = Command::new("cp")
        .arg("-a")
        .arg(&copy)
        .arg(&back)
        .output()
        .unwrap();
    assert!(out.status.success(), "cp -a out of the mount: {out:?}");
    assert_eq!(
        get(&back.join("a"), "user.mime_type").unwrap(),
        b"text/plain"
    );
    assert_eq!(
        get(&back.join("ro"), "user.tag").unwrap(),
        b"\x00\x01binary"
    );
    assert_eq!(get(&back, "user.dir").unwrap(), b"top");
    assert_eq!(fs::read(back.join("ro")).unwrap(), b"read-only");

    // rsync -aX too (it lists, reads and sets them itself), into a copy it then updates.
    let out = Command::new("rsync")
        .arg("-aX")
        .arg(format!("{}/", src.display()))
        .arg(m.path("rsynced"))
        .output();
    let Ok(out) = out else {
        eprintln!("note: rsync not found; rsync -aX part skipped");
        return;
    };
    assert!(out.status.success(), "rsync -aX into the mount: {out:?}");
    let synced = m.path("rsynced");
    assert_eq!(
        get(&synced.join("a"), "user.mime_type").unwrap(),
        b"text/plain"
    );
    assert_eq!(
        get(&synced.join("ro"), "user.tag").unwrap(),
        b"\x00\x01binary"
    );
    assert_eq!(get(&synced, "user.dir").unwrap(), b"top");
    set(&src.join("a"), "user.mime_type", b"text/markdown", 0).unwrap();
    remove(&src.join("a"), "user.probe").unwrap();
    let out = Command::new("rsync")
        .arg("-aX")
        .arg(format!("{}/", src.display()))
        .arg(&synced)
        .output()
        .unwrap();
    assert!(out.status.success(), "rsync -aX again: {out:?}");
    assert_eq!(list(&synced.join("a")).unwrap(), ["user.mime_type"]);
    assert_eq!(
        get(&synced.join("a"), "user.mime_type").unwrap(),
        b"text/markdown"
    );
}

#[test]
fn attribute_changes_do_not_fail_across_namenode_kills() {
    // Two loops of setxattr(XATTR_CREATE), getxattr, setxattr(XATTR_REPLACE) and removexattr on a
    // mount while the namenode is killed -9 and restarted four times. A create or a remove sent
    // again after it was applied would fail (EEXIST, ENODATA): each carries a call id, and the
    // namenode answers a repeat of an applied one from its retry cache.
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    let mut cluster = TestCluster::builder().start();
    let m = cluster.mount(&[]);
    const LOOPS: usize = 2;
    let stop = Arc::new(AtomicBool::new(false));
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let rounds: Arc<Vec<AtomicU64>> = Arc::new((0..LOOPS).map(|_| AtomicU64::new(0)).collect());
    let mut loopers = Vec::new();
    for j in 0..LOOPS {
        let f = m.path(&format!("f{j}"));
        fs::write(&f, b"x").unwrap();
        let (stop, failed, rounds) = (stop.clone(), failed.clone(), rounds.clone());
        loopers.push(std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let (v1, v2) = (format!("{round}"), format!("{round}+"));
                let step = || -> Result<(), String> {
                    let e = |what: &'static str| move |e: io::Error| format!("{what}: {e}");
                    set(&f, "user.n", v1.as_bytes(), libc::XATTR_CREATE).map_err(e("create"))?;
                    let got = get(&f, "user.n").map_err(e("get"))?;
                    if got != v1.as_bytes() {
                        return Err(format!("get: {got:?} instead of {v1}"));
                    }
                    set(&f, "user.n", v2.as_bytes(), libc::XATTR_REPLACE).map_err(e("replace"))?;
                    remove(&f, "user.n").map_err(e("remove"))
                };
                if let Err(e) = step() {
                    failed
                        .lock()
                        .unwrap()
                        .push(format!("f{j} round {round}: {e}"));
                    return;
                }
                round += 1;
                rounds[j].store(round, Ordering::SeqCst);
            }
        }));
    }
    let advance = |rounds: &[AtomicU64], failed: &Mutex<Vec<String>>| {
        let until: Vec<u64> = rounds
            .iter()
            .map(|r| r.load(Ordering::SeqCst) + 2)
            .collect();
        wait_until(
            Duration::from_secs(120),
            "every loop does two rounds more",
            || {
                !failed.lock().unwrap().is_empty()
                    || rounds
                        .iter()
                        .zip(&until)
                        .all(|(r, u)| r.load(Ordering::SeqCst) >= *u)
            },
        );
    };
    advance(&rounds, &failed);
    for n in 1..=4u64 {
        // At moments spread over a round, not in step with the loops.
        std::thread::sleep(Duration::from_micros(700 * n));
        cluster.kill_namenode();
        // Down for a moment, as a real restart is: calls meet a refused connection meanwhile.
        std::thread::sleep(Duration::from_millis(300));
        cluster.restart_namenode();
        advance(&rounds, &failed);
    }
    stop.store(true, Ordering::SeqCst);
    for l in loopers {
        l.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{failed:?}; mount log:\n{}",
        log_tail(m.log(), 40)
    );
    let done: Vec<u64> = rounds.iter().map(|r| r.load(Ordering::SeqCst)).collect();
    let log = fs::read_to_string(cluster.namenode_log()).unwrap_or_default();
    eprintln!(
        "rounds {done:?}, {} calls answered from the retry cache",
        log.matches("answered from the retry cache").count()
    );
    for j in 0..LOOPS {
        assert_eq!(
            errno(get(&m.path(&format!("f{j}")), "user.n")),
            libc::ENODATA,
            "the last round removed it"
        );
    }
}

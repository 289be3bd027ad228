//! Namespace semantics through the CLI: mkdir, ls, rm, mv, stat, names and path validation. Every error
//! case checks the exit code, the one-line message (path + reason) and that the tree did not change.

use crate::cluster::*;
use std::collections::BTreeMap;

/// A small tree used by several tests: /a/{f1, b/{f2, c/}}, /top.
fn small_tree(c: &TestCluster) {
    c.ok(&["mkdir", "-p", "/a/b/c"]);
    c.put_bytes("/a/f1", b"one");
    c.put_bytes("/a/b/f2", b"two");
    c.put_bytes("/top", b"top");
}

fn tree_paths(t: &BTreeMap<String, (String, u64)>) -> Vec<&str> {
    t.keys().map(String::as_str).collect()
}

#[test]
fn mkdir_creates_directories_and_p_creates_missing_parents() {
    // mkdir makes one directory; mkdir -p makes the whole chain and accepts an existing directory.
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "/x"]);
    c.ok(&["mkdir", "/x/y"]);
    c.ok(&["mkdir", "-p", "/p/q/r"]);
    c.ok(&["mkdir", "-p", "/p/q/r"]);
    c.ok(&["mkdir", "-p", "/x"]);
    assert_eq!(
        tree_paths(&c.tree("/")),
        vec!["/p", "/p/q", "/p/q/r", "/x", "/x/y"]
    );
    for d in ["/x", "/x/y", "/p/q/r"] {
        assert_eq!(field_str(&c.stat_json(d), "kind"), "dir", "{d}");
    }
}

#[test]
fn mkdir_errors_name_the_path_and_change_nothing() {
    // mkdir over an existing entry, under a missing parent or under a file fails clearly and changes nothing.
    let c = TestCluster::builder().start();
    small_tree(&c);
    c.fails_and_changes_nothing(&["mkdir", "/a"], &["/a", "already exists"]);
    c.fails_and_changes_nothing(&["mkdir", "/top"], &["/top", "already exists"]);
    c.fails_and_changes_nothing(
        &["mkdir", "/nope/x"],
        &["/nope", "no such file or directory"],
    );
    c.fails_and_changes_nothing(&["mkdir", "/top/x"], &["/top", "not a directory"]);
    c.fails_and_changes_nothing(&["mkdir", "-p", "/top/x/y"], &["/top", "not a directory"]);
    c.fails_and_changes_nothing(&["mkdir", "-p", "/a/f1"], &["/a/f1", "already exists"]);
    c.fails_and_changes_nothing(&["mkdir", "/"], &["/", "already exists"]);
}

#[test]
fn ls_lists_a_directory_sorted_and_a_file_as_itself() {
    // ls of a directory shows its children in name order; ls of a file shows that file; ls of a missing path fails.
    let c = TestCluster::builder().start();
    for name in ["zeta", "alpha", "Mid", "beta"] {
        c.put_bytes(&format!("/{name}"), name.as_bytes());
    }
    let names: Vec<String> = c
        .ls_entries("/")
        .iter()
        .map(|e| field_str(e, "name").to_string())
        .collect();
    assert_eq!(
        names,
        vec!["Mid", "alpha", "beta", "zeta"],
        "ls --json / is not in name order"
    );
    let plain = c.ok(&["ls", "/"]);
    let order: Vec<usize> = ["Mid", "alpha", "beta", "zeta"]
        .iter()
        .map(|n| plain.find(n).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "ls / is not in name order: {plain}"
    );
    let one = c.ok(&["ls", "/beta"]);
    assert!(
        one.contains("beta") && !one.contains("zeta"),
        "ls of a file: {one}"
    );
    c.fails(&["ls", "/missing"])
        .says(&["/missing", "no such file or directory"]);
}

#[test]
fn rm_removes_files_and_empty_directories_and_r_removes_whole_trees() {
    // rm deletes a file or an empty directory; rm -r deletes a directory with everything below it and frees its blocks.
    let c = TestCluster::builder().block_size("64KiB").start();
    small_tree(&c);
    c.put_bytes("/a/b/c/big", &random_bytes(200 * KIB, 1));
    c.ok(&["rm", "/top"]);
    assert!(!c.exists("/top"));
    c.ok(&["mkdir", "/empty"]);
    c.ok(&["rm", "/empty"]);
    assert!(!c.exists("/empty"));
    c.ok(&["rm", "-r", "/a"]);
    assert_eq!(c.tree("/"), BTreeMap::new());
    let f = c.fsck_json("/");
    assert_eq!(field_u64(&f, "files"), 0, "{f}");
    assert_eq!(field_u64(&f, "blocks"), 0, "{f}");
    // The replicas of deleted files are removed from the datanodes' disks.
    wait_until(
        std::time::Duration::from_secs(20),
        "replica files of deleted files to be removed",
        || c.all_replicas().is_empty(),
    );
    // The name can be reused.
    c.put_bytes("/a", b"again");
    assert_eq!(c.get_bytes("/a"), b"again");
}

#[test]
fn rm_errors_name_the_path_and_change_nothing() {
    // rm of a missing path, of a non-empty directory without -r, and of the root fail and change nothing.
    let c = TestCluster::builder().start();
    small_tree(&c);
    c.fails_and_changes_nothing(
        &["rm", "/missing"],
        &["/missing", "no such file or directory"],
    );
    c.fails_and_changes_nothing(&["rm", "/a/missing/x"], &["no such file or directory"]);
    c.fails_and_changes_nothing(&["rm", "/a"], &["/a", "directory not empty"]);
    c.fails_and_changes_nothing(&["rm", "/a/b"], &["/a/b", "directory not empty"]);
    c.fails_and_changes_nothing(&["rm", "/top/x"], &["/top", "not a directory"]);
    let before = c.tree("/");
    let f = c.fails(&["rm", "-r", "/"]);
    assert!(
        f.stderr.contains('/'),
        "rm -r / error does not name the path: {}",
        f.stderr
    );
    assert_eq!(c.tree("/"), before, "rm -r / removed something");
}

#[test]
fn mv_renames_files_and_moves_directories_with_their_contents() {
    // mv renames a file, moves a file to another directory, and moves a whole directory tree.
    let c = TestCluster::builder().start();
    small_tree(&c);
    c.ok(&["mv", "/top", "/top2"]);
    assert_eq!(c.get_bytes("/top2"), b"top");
    assert!(!c.exists("/top"));
    c.ok(&["mv", "/top2", "/a/b/c/moved"]);
    assert_eq!(c.get_bytes("/a/b/c/moved"), b"top");
    c.ok(&["mkdir", "/dest"]);
    c.ok(&["mv", "/a/b", "/dest/bb"]);
    assert_eq!(
        tree_paths(&c.tree("/")),
        vec![
            "/a",
            "/a/f1",
            "/dest",
            "/dest/bb",
            "/dest/bb/c",
            "/dest/bb/c/moved",
            "/dest/bb/f2"
        ]
    );
    assert_eq!(c.get_bytes("/dest/bb/f2"), b"two");
    assert_eq!(c.get_bytes("/dest/bb/c/moved"), b"top");
    // Renaming to the same name is a no-op that succeeds.
    c.ok(&["mv", "/a/f1", "/a/f1"]);
    assert_eq!(c.get_bytes("/a/f1"), b"one");
}

#[test]
fn mv_over_an_existing_file_replaces_it() {
    // mv onto an existing file atomically replaces it: the target has the source's bytes, the source is gone.
    let c = TestCluster::builder().block_size("64KiB").start();
    let src = random_bytes(150 * KIB, 1);
    c.put_bytes("/src", &src);
    c.put_bytes("/dst", &random_bytes(300 * KIB, 2));
    c.ok(&["mv", "/src", "/dst"]);
    assert!(!c.exists("/src"));
    assert_same_bytes(&c.get_bytes("/dst"), &src, "/dst after mv");
    let f = c.fsck_json("/");
    assert_eq!(field_u64(&f, "files"), 1, "{f}");
    assert_eq!(
        field_u64(&f, "blocks"),
        3,
        "the replaced file's blocks are still counted: {f}"
    );
    // Like mv(1) and `hdfs dfs -mv`, an existing directory receives the source by name.
    c.ok(&["mkdir", "-p", "/d1/inner"]);
    c.ok(&["mkdir", "/d2"]);
    c.ok(&["mv", "/d1", "/d2"]);
    assert_eq!(
        tree_paths(&c.tree("/")),
        vec!["/d2", "/d2/d1", "/d2/d1/inner", "/dst"]
    );
    c.ok(&["mv", "/dst", "/d2/"]);
    assert_eq!(
        tree_paths(&c.tree("/")),
        vec!["/d2", "/d2/d1", "/d2/d1/inner", "/d2/dst"]
    );
}

#[test]
fn mv_errors_name_the_paths_and_change_nothing() {
    // mv refuses a directory into itself, missing sources or parents, and kind mismatches; nothing changes.
    let c = TestCluster::builder().start();
    small_tree(&c);
    c.ok(&["mkdir", "-p", "/full/b"]);
    c.put_bytes("/full/b/x", b"x");
    c.fails_and_changes_nothing(&["mv", "/a", "/a/b/inside"], &["/a"]);
    c.fails_and_changes_nothing(&["mv", "/a", "/a/inside"], &["/a"]);
    c.fails_and_changes_nothing(
        &["mv", "/missing", "/x"],
        &["/missing", "no such file or directory"],
    );
    c.fails_and_changes_nothing(
        &["mv", "/top", "/nodir/top"],
        &["/nodir", "no such file or directory"],
    );
    c.fails_and_changes_nothing(&["mv", "/top", "/top/x"], &["/top", "not a directory"]);
    c.fails_and_changes_nothing(
        &["mv", "/a/b", "/full"],
        &["/full/b", "directory not empty"],
    );
    c.fails_and_changes_nothing(&["mv", "/a/b", "/top"], &["/top", "not a directory"]);
    c.fails_and_changes_nothing(&["mv", "/", "/root2"], &["/"]);
}

#[test]
fn mv_into_a_descendant_is_refused_even_deep_down() {
    // Moving a directory under its own grandchild would detach a cycle: it is refused and nothing changes.
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "-p", "/r/s/t/u"]);
    let before = c.tree("/");
    let f = c.fails(&["mv", "/r/s", "/r/s/t/u/s"]);
    f.says(&["/r/s"]);
    assert_eq!(c.tree("/"), before);
}

#[test]
fn names_with_spaces_and_unicode_work_everywhere() {
    // Paths with spaces, quotes and non-ASCII characters work for mkdir, put, ls, get, mv, stat and rm.
    let c = TestCluster::builder().start();
    let dir = "/my documents/café ☕ 日本語";
    let file = format!("{dir}/rapport final (v2) 'draft'.txt");
    c.ok(&["mkdir", "-p", dir]);
    c.put_bytes(&file, "ünïcödé contents\n".as_bytes());
    assert_eq!(
        c.ls_names(dir),
        vec!["rapport final (v2) 'draft'.txt".to_string()]
    );
    assert_eq!(c.get_bytes(&file), "ünïcödé contents\n".as_bytes());
    assert_eq!(field_str(&c.stat_json(&file), "path"), file);
    let renamed = format!("{dir}/ファイル name.txt");
    c.ok(&["mv", &file, &renamed]);
    assert_eq!(c.get_bytes(&renamed), "ünïcödé contents\n".as_bytes());
    assert!(c.ok(&["ls", dir]).contains("ファイル name.txt"));
    c.ok(&["rm", "-r", "/my documents"]);
    assert_eq!(c.tree("/"), BTreeMap::new());
}

#[test]
fn invalid_paths_are_rejected_with_clear_errors() {
    // Relative paths and names over 255 bytes are refused with a message; nothing is created.
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "/d"]);
    let long = format!("/d/{}", "n".repeat(256));
    c.fails_and_changes_nothing(&["mkdir", &long], &["/d/nnnn"]);
    let local = c.scratch_path("small");
    std::fs::write(&local, b"x").unwrap();
    c.fails_and_changes_nothing(&["put", local.to_str().unwrap(), &long], &["/d/nnnn"]);
    c.fails_and_changes_nothing(&["mkdir", "relative/dir"], &["relative/dir"]);
    c.fails_and_changes_nothing(&["mkdir", ""], &[]);
    // A 255-byte name is fine, and so is a 255-byte name made of 3-byte characters (85 × "語").
    let max = format!("/d/{}", "m".repeat(255));
    c.ok(&["mkdir", &max]);
    let max_utf8 = format!("/d/{}", "語".repeat(85));
    c.put_bytes(&max_utf8, b"x");
    let too_long_utf8 = format!("/d/{}", "語".repeat(86));
    c.fails_and_changes_nothing(&["mkdir", &too_long_utf8], &["/d/"]);
    assert_eq!(c.ls_names("/d").len(), 2);
    // Paths up to the 4096-byte limit take a put and a copy (their temporaries fit too: a put
    // to a path within ~25 bytes of the limit failed with "file name too long").
    let deep = format!("/p/{}", vec!["q".repeat(250); 16].join("/"));
    c.ok(&["mkdir", "-p", &deep]);
    let at_limit = format!("{deep}/{}", "r".repeat(4096 - deep.len() - 1));
    assert_eq!(at_limit.len(), 4096);
    c.put_bytes(&at_limit, b"at the limit");
    assert_eq!(c.get_bytes(&at_limit), b"at the limit");
    let over = format!("{at_limit}x");
    c.fails_and_changes_nothing(
        &["put", local.to_str().unwrap(), &over],
        &["file name too long"],
    );
}

#[test]
fn trailing_and_repeated_slashes_name_the_same_entry() {
    // "/a/b/", "//a//b" and "/a/b" name one directory.
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "-p", "/a/b/"]);
    c.put_bytes("//a//b//f", b"slashes");
    assert_eq!(c.get_bytes("/a/b/f"), b"slashes");
    assert_eq!(c.ls_names("/a/b/"), vec!["f".to_string()]);
    assert_eq!(tree_paths(&c.tree("/")), vec!["/a", "/a/b", "/a/b/f"]);
}

#[test]
fn dot_and_dot_dot_components_resolve_as_in_hdfs() {
    // `hdfs dfs` and a shell resolve `/a/../b`; the CLI refused it as an invalid path.
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "-p", "/d/../e/./f"]);
    assert_eq!(tree_paths(&c.tree("/")), vec!["/e", "/e/f"]);
    c.put_bytes("/e/f/../g", b"dots");
    assert_eq!(c.get_bytes("/e/./g"), b"dots");
    assert_eq!(
        c.ls_names("/e/f/.."),
        vec!["f".to_string(), "g".to_string()]
    );
    // `..` of the root is the root, as in POSIX.
    assert_eq!(c.ls_names("/../.."), vec!["e".to_string()]);
    c.ok(&["mv", "/e/g", "/e/f/."]);
    assert_eq!(c.get_bytes("/e/f/g"), b"dots");
    // A path ending in `..` names a directory: a file there is "not a directory".
    c.fails_and_changes_nothing(&["cat", "/e/f/g/.."], &["/e/f", "is a directory"]);
    c.fails_and_changes_nothing(&["mkdir", "/e/f/.."], &["/e", "already exists"]);
    c.ok(&["rm", "-r", "/e/f/../f"]);
    assert_eq!(tree_paths(&c.tree("/")), vec!["/e"]);
}

#[test]
fn stat_takes_several_paths_and_reports_each_failure() {
    // Like stat(1): every path is shown, one that fails is reported, and the exit code says so.
    let c = TestCluster::builder().start();
    c.put_bytes("/a", b"1");
    c.ok(&["mkdir", "/d"]);
    let out = c.ok(&["stat", "/a", "/d"]);
    assert!(
        out.contains("path: /a\n") && out.contains("path: /d\n"),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&c.ok(&["stat", "--json", "/a", "/d"])).unwrap();
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| field_str(e, "kind"))
        .collect();
    assert_eq!(kinds, ["file", "dir"]);
    // One path keeps the single object of issue 2's contract.
    assert_eq!(field_str(&c.stat_json("/a"), "path"), "/a");
    let out = c.run(&["stat", "/a", "/nope", "/d"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("path: /a") && stdout.contains("path: /d"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nope: no such file or directory"),
        "{stderr}"
    );
}

#[test]
fn mkdir_and_rm_accept_several_paths() {
    // `mkdir A B` and `rm -r A B` act on every path given.
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "/one", "/two", "/three"]);
    c.put_bytes("/two/f", b"f");
    assert_eq!(
        tree_paths(&c.tree("/")),
        vec!["/one", "/three", "/two", "/two/f"]
    );
    c.ok(&["rm", "-r", "/one", "/two"]);
    assert_eq!(tree_paths(&c.tree("/")), vec!["/three"]);
}

#[test]
fn another_user_may_read_but_not_change_a_root_owned_directory() {
    // As uid/gid 65534 (via setpriv) the CLI lists and reads root's 0755 directory and 0644 file, but mkdir,
    // put, rm and mv there fail with "permission denied" and change nothing.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!(
            "skipped: needs root and /usr/bin/setpriv (util-linux) to run the CLI as another user"
        );
        return;
    }
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "/shared"]);
    c.put_bytes("/shared/f", b"root data");
    assert_eq!(
        field_u64(&c.stat_json("/shared"), "mode") & 0o777,
        0o755,
        "test assumes umask 022"
    );
    let as_nobody = |args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = std::process::Command::new("/usr/bin/setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin())
            .args(["--namenode", c.namenode_addr()])
            .args(args);
        run_with_timeout(
            cmd,
            stdin.map(<[u8]>::to_vec),
            &format!("(uid 65534) ringfs {}", args.join(" ")),
            std::time::Duration::from_secs(60),
        )
    };
    let ls = as_nobody(&["ls", "/shared"], None);
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let cat = as_nobody(&["cat", "/shared/f"], None);
    assert!(
        cat.status.success(),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    assert_eq!(cat.stdout, b"root data");
    let before = c.tree("/");
    let refused: [(&[&str], Option<&[u8]>); 5] = [
        (&["mkdir", "/shared/x"], None),
        (&["put", "-", "/shared/new"], Some(b"x")),
        (&["rm", "/shared/f"], None),
        (&["mv", "/shared/f", "/shared/g"], None),
        (&["mkdir", "/mine"], None),
    ];
    for (args, stdin) in refused {
        let out = as_nobody(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "uid 65534 could run ringfs {args:?}");
        assert!(
            err.contains("permission denied") && (err.contains("/shared") || err.contains("/mine")),
            "ringfs {args:?} as uid 65534: {err}"
        );
        assert_eq!(
            c.tree("/"),
            before,
            "refused ringfs {args:?} changed the tree"
        );
    }
}

#[test]
fn a_trailing_slash_on_a_file_is_not_a_directory() {
    // `ls /top/`, `cat`, `stat`, `get`, `rm`, `mv` and `put` with "file/" fail with "not a directory"
    // (ENOTDIR, as on a local file system) and change nothing; `rm /top/` used to remove the file.
    let c = TestCluster::builder().start();
    small_tree(&c);
    let local = c.scratch_path("local");
    std::fs::write(&local, b"local").unwrap();
    let local = local.to_str().unwrap();
    let out = c.scratch_path("out");
    let out = out.to_str().unwrap();
    for args in [
        vec!["ls", "/top/"],
        vec!["ls", "-l", "/a/f1/"],
        vec!["stat", "/top/"],
        vec!["cat", "/top/"],
        vec!["get", "/top/", out],
        vec!["rm", "/top/"],
        vec!["rm", "-r", "/a/f1/"],
        vec!["mv", "/top/", "/moved"],
        vec!["mv", "/top", "/a/f1/"],
        vec!["put", "-f", local, "/top/"],
    ] {
        let shown = args.iter().rev().find(|a| a.ends_with('/')).unwrap();
        c.fails_and_changes_nothing(&args, &[shown, "not a directory"]);
    }
    // A new name with a trailing slash names a directory too: a file is not created there.
    c.fails_and_changes_nothing(&["mv", "/top", "/new/"], &["/new/", "not a directory"]);
    c.fails_and_changes_nothing(&["put", local, "/new/"], &["/new/", "not a directory"]);
    assert!(!std::path::Path::new(out).exists(), "get created {out}");
    // Directories still take one.
    assert_eq!(c.ls_names("/a/b/"), vec!["c".to_string(), "f2".to_string()]);
    c.ok(&["mv", "/a/b/", "/b2/"]);
    c.ok(&["rm", "-r", "/b2/"]);
    assert_eq!(tree_paths(&c.tree("/")), vec!["/a", "/a/f1", "/top"]);
}

fn mode_of(c: &TestCluster, path: &str) -> u64 {
    field_u64(&c.stat_json(path), "mode") & 0o7777
}

#[test]
fn chmod_and_chown_change_attributes_like_their_namesakes() {
    let c = TestCluster::builder().start();
    small_tree(&c);
    // Octal and symbolic modes, one path or a whole tree.
    c.ok(&["chmod", "600", "/top"]);
    assert_eq!(mode_of(&c, "/top"), 0o600);
    c.ok(&["chmod", "u+x,g=u", "/top"]);
    assert_eq!(mode_of(&c, "/top"), 0o770);
    c.ok(&["chmod", "-R", "go-rwx", "/a"]);
    for p in ["/a", "/a/f1", "/a/b", "/a/b/f2", "/a/b/c"] {
        assert_eq!(mode_of(&c, p) & 0o077, 0, "{p} still open to group/others");
    }
    // X: execute for directories only (the files here are not executable by anyone).
    c.ok(&["chmod", "-R", "a+rX", "/a"]);
    assert_eq!(mode_of(&c, "/a/b"), 0o755);
    assert_eq!(mode_of(&c, "/a/b/f2"), 0o644);
    // Errors: a bad mode changes nothing; a missing path is named, the other paths still done.
    let before = c.stat_json("/top");
    c.fails(&["chmod", "u+q", "/top"])
        .says(&["invalid mode", "u+q"]);
    assert_eq!(c.stat_json("/top"), before);
    c.fails(&["chmod", "700", "/nope", "/top"])
        .says(&["/nope", "no such file or directory"]);
    assert_eq!(mode_of(&c, "/top"), 0o700);

    // chown: numbers, OWNER:GROUP, :GROUP, recursive.
    c.ok(&["chown", "1000:1001", "/top"]);
    let st = c.stat_json("/top");
    assert_eq!((field_u64(&st, "uid"), field_u64(&st, "gid")), (1000, 1001));
    c.ok(&["chown", "-R", ":50", "/a"]);
    for p in ["/a", "/a/f1", "/a/b/f2"] {
        let st = c.stat_json(p);
        assert_eq!(
            (field_u64(&st, "uid"), field_u64(&st, "gid")),
            (0, 50),
            "{p}"
        );
    }
    c.fails(&["chown", "no-such-user-here", "/top"])
        .says(&["no-such-user-here", "no such user"]);

    // Only root gives files away: the owner (uid 1000 now) may chmod but not chown.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped the non-root part: needs root and /usr/bin/setpriv");
        return;
    }
    let as_1000 = |args: &[&str]| {
        let mut cmd = std::process::Command::new("/usr/bin/setpriv");
        cmd.args(["--reuid=1000", "--regid=1001", "--clear-groups"])
            .arg(bin())
            .args(["--namenode", c.namenode_addr()])
            .args(args);
        run_with_timeout(
            cmd,
            None,
            "(uid 1000) ringfs",
            std::time::Duration::from_secs(60),
        )
    };
    assert!(as_1000(&["chmod", "640", "/top"]).status.success());
    assert_eq!(mode_of(&c, "/top"), 0o640);
    let out = as_1000(&["chown", "0", "/top"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not permitted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(field_u64(&c.stat_json("/top"), "uid"), 1000);
    let out = as_1000(&["chmod", "777", "/a/f1"]);
    assert!(!out.status.success(), "uid 1000 changed root's file");
    assert_eq!(mode_of(&c, "/a/f1"), 0o644);
    // put -f replaces a file only for whoever may write it (the rename alone needs only the
    // directory's permission, and /open is 0777).
    c.ok(&["mkdir", "/open"]);
    c.ok(&["chmod", "777", "/open"]);
    c.put_bytes("/open/ro", b"read only");
    c.ok(&["chmod", "444", "/open/ro"]);
    let local = c.scratch_path("hacked");
    std::fs::write(&local, b"hacked").unwrap();
    let out = as_1000(&["put", "-f", local.to_str().unwrap(), "/open/ro"]);
    assert!(
        !out.status.success(),
        "uid 1000 replaced root's read-only file"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.get_bytes("/open/ro"), b"read only");
}

#[test]
fn du_sums_sizes_and_replica_space_per_entry_or_in_total() {
    let c = TestCluster::builder().start();
    c.ok(&["mkdir", "-p", "/d/sub/deeper"]);
    c.put_bytes("/d/one", &random_bytes(3 * 1024 * 1024, 1));
    c.put_bytes_with(
        "/d/sub/two",
        &random_bytes(1024 * 1024 + 5, 2),
        &["-r", "1"],
    );
    c.put_bytes("/d/sub/deeper/three", &random_bytes(10, 3));
    let rows = c.json(&["du", "--json", "/d"]);
    let rows = rows.as_array().unwrap();
    let row = |p: &str| {
        rows.iter()
            .find(|r| field_str(r, "path") == p)
            .unwrap_or_else(|| panic!("no row for {p}: {rows:?}"))
    };
    assert_eq!(rows.len(), 2, "one row per entry of /d: {rows:?}");
    assert_eq!(field_u64(row("/d/one"), "size"), 3 * 1024 * 1024);
    assert_eq!(field_u64(row("/d/one"), "consumed"), 9 * 1024 * 1024);
    let sub = row("/d/sub");
    assert_eq!(field_u64(sub, "size"), 1024 * 1024 + 5 + 10);
    // The 10-byte file is inline: its content is stored once, in the namenode, not 3 times.
    assert_eq!(field_u64(sub, "consumed"), 1024 * 1024 + 5 + 10);
    assert_eq!((field_u64(sub, "files"), field_u64(sub, "dirs")), (2, 2));
    let total = c.json(&["du", "-s", "--json", "/d"]);
    let total = &total.as_array().unwrap()[0];
    assert_eq!(field_u64(total, "size"), 4 * 1024 * 1024 + 15);
    assert_eq!(field_u64(total, "files"), 3);
    // The plain form: size, consumed, path.
    let line = c.ok(&["du", "-s", "/d/sub"]);
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols, vec!["1048591", "1048591", "/d/sub"]);
    c.fails(&["du", "/nope"])
        .says(&["/nope", "no such file or directory"]);
}

#[test]
fn ls_takes_several_paths_and_lists_recursively_or_directories_themselves() {
    let c = TestCluster::builder().start();
    small_tree(&c);
    // Files first, then each directory under a header, like ls(1).
    assert_eq!(c.ok(&["ls", "/a/b", "/top"]), "/top\n\n/a/b:\nc\nf2\n");
    assert_eq!(
        c.ok(&["ls", "-R", "/a"]),
        "/a:\nb\nf1\n\n/a/b:\nc\nf2\n\n/a/b/c:\n"
    );
    assert_eq!(c.ok(&["ls", "-d", "/a", "/a/b"]), "/a\n/a/b\n");
    let all: Vec<String> = c
        .json(&["ls", "--json", "-R", "/"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| field_str(e, "path").to_string())
        .collect();
    assert_eq!(
        all,
        vec!["/a", "/top", "/a/b", "/a/f1", "/a/b/c", "/a/b/f2"],
        "every entry once, parents before children"
    );
    // A missing path is reported; the others are still listed; the exit code says it failed.
    let out = c.run(&["ls", "/nope", "/a/b"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/a/b:\nc\nf2\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nope: no such file or directory"));
}

#[test]
fn touch_cat_and_df_work_like_their_namesakes() {
    let c = TestCluster::builder().start();
    // touch: creates empty files, then only moves the times of existing ones.
    c.ok(&["mkdir", "/t"]);
    c.ok(&["touch", "/t/a", "/t/b"]);
    assert_eq!(field_u64(&c.stat_json("/t/a"), "size"), 0);
    assert_eq!(field_str(&c.stat_json("/t/a"), "kind"), "file");
    c.put_bytes("/t/full", b"content");
    let before = c.stat_json("/t/full");
    wait_until(
        std::time::Duration::from_secs(5),
        "the clock to move a second",
        || {
            c.ok(&["touch", "/t/full"]);
            c.stat_json("/t/full")["mtime"] != before["mtime"]
        },
    );
    assert_eq!(c.get_bytes("/t/full"), b"content", "touch kept the content");
    c.fails(&["touch", "/missing/x"])
        .says(&["/missing/x", "no such file or directory"]);
    // A directory named with a trailing slash or `.` is a directory, as for coreutils (QA: "is a
    // directory"); a missing one named so is missing, not a directory.
    for d in ["/t/", "/t/.", "/"] {
        c.ok(&["touch", d]);
    }
    c.fails(&["touch", "/missing/"])
        .says(&["/missing", "no such file or directory"]);
    let out = c.run(&["touch", "/t/c", "/missing/y"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        field_u64(&c.stat_json("/t/c"), "size"),
        0,
        "the good one is done"
    );

    // cat: several files in order; a missing one is reported, the rest still printed.
    c.put_bytes("/t/one", b"1\n");
    c.put_bytes("/t/two", b"2\n");
    assert_eq!(c.ok(&["cat", "/t/one", "/t/two"]), "1\n2\n");
    let out = c.run(&["cat", "/t/one", "/t/nope", "/t/two"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, b"1\n2\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/t/nope"));

    // df: the cluster's figures, as statfs gives them to the mount.
    let df = c.json(&["df", "--json"]);
    let (cap, used, left) = (
        field_u64(&df, "capacity"),
        field_u64(&df, "used"),
        field_u64(&df, "remaining"),
    );
    assert!(cap > 0 && left > 0 && used + left <= cap, "{df}");
    let text = c.ok(&["df", "-h"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("Filesystem") && lines[1].starts_with("ringfs://"),
        "{text}"
    );
}

#[test]
fn get_over_an_existing_local_file_acts_like_cp() {
    // `get` onto an existing local file replaced it even when the caller could not write it,
    // and gave the replacement its own mode and owner; cp refuses the first and keeps both.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and /usr/bin/setpriv to run the CLI as another user");
        return;
    }
    let c = TestCluster::builder().start();
    c.put_bytes("/f", b"from ringfs");
    let dir = c.scratch_path("local");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let ro = dir.join("ro");
    std::fs::write(&ro, b"keep me").unwrap();
    std::os::unix::fs::chown(&ro, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o444)).unwrap();
    let mut cmd = std::process::Command::new("/usr/bin/setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .args(["--namenode", c.namenode_addr(), "get", "/f"])
        .arg(&ro);
    let out = run_with_timeout(
        cmd,
        None,
        "(uid 65534) ringfs get",
        std::time::Duration::from_secs(60),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&ro).unwrap(), b"keep me");
    // Root may replace it (as cp may): the content changes, the mode and owner stay.
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o640)).unwrap();
    c.ok(&["get", "/f", ro.to_str().unwrap()]);
    let md = std::fs::metadata(&ro).unwrap();
    assert_eq!(std::fs::read(&ro).unwrap(), b"from ringfs");
    assert_eq!(
        (md.mode() & 0o777, md.uid(), md.gid()),
        (0o640, 65534, 65534)
    );
}

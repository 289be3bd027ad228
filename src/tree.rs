//! Whole directory trees for `put` and `get`, like `hdfs dfs -put/-get` and `cp -r`: a local
//! directory is copied into ringfs with everything under it, a ringfs directory out of it.
//! Directories, regular files and symlinks are copied (small files 16 at a time, big ones 4),
//! with their permission bits less the umask; other kinds (fifos, sockets, devices) are skipped
//! with a warning, as rsync does.
//!
//! A new tree is put under a hidden temporary name next to the target and renamed into place at
//! the end, so a failed or interrupted `put` of a directory leaves nothing behind (the temporary
//! tree is removed), like the `put` of a file. `put -f` onto an existing directory merges into it
//! instead, replacing files one by one. `get` writes each file completely or not at all, but
//! like `cp -r` it leaves what it copied before an error.

use crate::commands::{
    change_error, get_file, io_reason, is_not_found, open_local, put_file, put_temp_name,
    spawn_reader, stat_target, PutFile, TempEntry,
};
use crate::format::{self, basename, is_dir, join};
use crate::PutArgs;
use anyhow::{anyhow, bail};
use futures::stream::{self, StreamExt, TryStreamExt};
use ringfs_client::{inode_ref, path_ref, pb, Client, ClientError, CreateOptions, ErrorKind};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Small files copied at the same time: enough to hide the namenode round trips (and to share
/// its durable commits) of small files.
const FILES_AT_ONCE: usize = 16;
/// Big files copied at the same time: each writer holds up to two blocks in memory.
const BIG_FILES_AT_ONCE: usize = 4;
/// Files at least this big count as big.
const BIG_FILE: u64 = 1 << 20;

/// Copies `files` with `copy`, several at a time: the small ones `FILES_AT_ONCE` at a time, then
/// the big ones (`size` at least `BIG_FILE`) `BIG_FILES_AT_ONCE` at a time. Stops at the first
/// error. For every copy of a tree: `put`, `get` and `cp`.
pub(crate) async fn copy_files<T, F, Fut>(
    files: Vec<T>,
    size: impl Fn(&T) -> u64,
    copy: F,
) -> anyhow::Result<()>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let (big, small): (Vec<T>, Vec<T>) = files.into_iter().partition(|f| size(f) >= BIG_FILE);
    for (files, at_once) in [(small, FILES_AT_ONCE), (big, BIG_FILES_AT_ONCE)] {
        stream::iter(files)
            .map(&copy)
            .buffer_unordered(at_once)
            .try_collect::<()>()
            .await?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------ put

/// `put LOCALDIR REMOTE`: REMOTE/name(LOCALDIR) when REMOTE is a directory, else REMOTE itself.
pub async fn put_tree(client: &Client, a: &PutArgs, local_dir: &str) -> anyhow::Result<ExitCode> {
    let local = Path::new(local_dir);
    let name = local_name(local)?;
    let target = match stat_target(client, &a.remote).await {
        Ok((dir, attr)) if is_dir(&attr) => join(&dir, &name),
        Ok(_) if !a.force => bail!("{}: already exists", a.remote),
        Ok(_) => bail!(
            "{}: cannot replace a file with the directory {local_dir}",
            a.remote
        ),
        Err(e) if is_not_found(&e) => a.remote.clone(),
        Err(e) => return Err(e.into()),
    };
    let replication = a.replication.unwrap_or(0);
    let put = TreePut {
        client,
        replication,
        block_size: a.block_size.unwrap_or(0),
        force: a.force,
        skipped: AtomicUsize::new(0),
    };
    client
        .check_live_datanodes(replication)
        .await
        .map_err(|e| anyhow!("{target}: {e}"))?;
    match client.stat(&target).await {
        Ok(attr) if is_dir(&attr) && a.force => {
            put.dir(local, &target, true).await?;
            return Ok(put.outcome());
        }
        Ok(attr) if is_dir(&attr) => bail!("{target}: already exists (-f merges into it)"),
        Ok(_) if !a.force => bail!("{target}: already exists"),
        Ok(_) => bail!("{target}: cannot replace a file with the directory {local_dir}"),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let meta =
        std::fs::metadata(local).map_err(|e| anyhow!("{}: {}", local.display(), io_reason(&e)))?;
    let mode = meta.mode() & DIR_MODE_BITS & !format::umask();
    let put = &put;
    build_in_place(client, &target, mode, |tmp| async move {
        put.dir(local, &tmp, true).await
    })
    .await?;
    Ok(put.outcome())
}

/// Permission bits a copied directory keeps (set-id bits are dropped, as `cp -r` does without
/// `-p`: they belong with an owner the copy does not keep).
pub(crate) const DIR_MODE_BITS: u32 = 0o1777;
/// Permission bits a copied file keeps.
pub(crate) const FILE_MODE_BITS: u32 = 0o777;

/// Builds a new tree at `target` the way `put` and `cp` of a directory do: `build` fills a hidden
/// temporary directory next to the target (created here, given `mode` at the end), which is then
/// renamed into place; after a failure or an interruption it is removed, so a failed copy leaves
/// nothing. A temporary file is kept open in it meanwhile: if this process is killed, that file's
/// lease expires and the namenode removes the whole temporary tree with it.
pub(crate) async fn build_in_place<F, Fut>(
    client: &Client,
    target: &str,
    mode: u32,
    build: F,
) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let tmp = put_temp_name(client, target);
    let shown = |e: anyhow::Error| anyhow!("{}", e.to_string().replace(&tmp, target));
    client
        .mkdir_mode(&tmp, false, mode | 0o700)
        .await
        .map_err(|e| anyhow!("{}", change_error(&tmp, &e)))
        .map_err(shown)?;
    let tmp_entry = TempEntry::of(client, &tmp).await;
    let marker = join(&tmp, &format!(".ringfs-put-{}", &client.client_id()[..8]));
    let built = async {
        let opts = CreateOptions {
            mode: 0o600,
            replication: 1,
            ..CreateOptions::default()
        };
        let alive = client.create(&marker, opts).await?;
        let r = build(tmp.clone()).await;
        alive.abort().await;
        r?;
        client.remove(&marker, false).await?;
        if mode | 0o700 != mode {
            client.chmod(path_ref(&tmp), mode).await?;
        }
        client
            .rename_with(&tmp, target, true, false)
            .await
            .map_err(|e| anyhow!("{}", change_error(target, &e)))
    };
    let r = tokio::select! {
        r = built => r,
        _ = crate::server::terminated() => Err(anyhow!("{target}: interrupted")),
    };
    if let Err(e) = r {
        if let Err(re) = tmp_entry.remove(client, true).await {
            eprintln!("ringfs: removing the partial copy {tmp} failed: {re}");
        }
        return Err(shown(e));
    }
    Ok(())
}

/// The name a local directory is copied under: its last component (`.` and `..` resolved).
fn local_name(local: &Path) -> anyhow::Result<String> {
    let named = match local.file_name() {
        Some(n) if !local.ends_with("..") => Some(n.to_os_string()),
        _ => None,
    };
    let name = match named {
        Some(n) => n,
        None => std::fs::canonicalize(local)
            .map_err(|e| anyhow!("{}: {}", local.display(), io_reason(&e)))?
            .file_name()
            .map(|n| n.to_os_string())
            .ok_or_else(|| anyhow!("{}: name the target directory", local.display()))?,
    };
    name.into_string()
        .map_err(|n| anyhow!("{}: not valid UTF-8", n.to_string_lossy()))
}

struct TreePut<'a> {
    client: &'a Client,
    replication: u32,
    block_size: u64,
    force: bool,
    /// Entries left out: names ringfs cannot hold (not UTF-8), fifos, sockets, devices.
    skipped: AtomicUsize,
}

impl TreePut<'_> {
    /// The exit code: a copy that had to leave out entries is not a success (like rsync's
    /// "partial transfer", and as README promises), though what could be copied is in place.
    fn outcome(&self) -> ExitCode {
        match self.skipped.load(Ordering::Relaxed) {
            0 => ExitCode::SUCCESS,
            n => {
                match n {
                    1 => eprintln!("ringfs: 1 entry was not copied (see above)"),
                    _ => eprintln!("ringfs: {n} entries were not copied (see above)"),
                }
                ExitCode::FAILURE
            }
        }
    }

    /// Copies the local directory `local` to `remote` (created unless `exists`), then everything
    /// in it. The directory gets its own mode last, so a read-only directory is filled first.
    async fn dir(&self, local: &Path, remote: &str, exists: bool) -> anyhow::Result<()> {
        let meta = std::fs::metadata(local)
            .map_err(|e| anyhow!("{}: {}", local.display(), io_reason(&e)))?;
        let mode = meta.mode() & DIR_MODE_BITS & !format::umask();
        if !exists {
            self.client
                .mkdir_mode(remote, false, mode | 0o700)
                .await
                .map_err(|e| anyhow!("{}", change_error(remote, &e)))?;
        }
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for entry in read_dir_sorted(local)? {
            let path = local.join(&entry);
            let Some(name) = entry.to_str() else {
                eprintln!(
                    "ringfs: {}: skipped (the name is not valid UTF-8)",
                    path.display()
                );
                self.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let target = join(remote, name);
            let m = std::fs::symlink_metadata(&path)
                .map_err(|e| anyhow!("{}: {}", path.display(), io_reason(&e)))?;
            let kind = m.file_type();
            if kind.is_dir() {
                dirs.push((path, target));
            } else if kind.is_file() {
                files.push((path, target, m));
            } else if kind.is_symlink() {
                self.symlink(&path, &target).await?;
            } else {
                eprintln!(
                    "ringfs: {}: skipped (not a regular file, directory or symlink)",
                    path.display()
                );
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
        copy_files(
            files,
            |f| f.2.len(),
            |(path, target, m)| async move { self.file(&path, &target, &m).await },
        )
        .await?;
        for (path, target) in dirs {
            let exists = self.force && self.existing_dir(&target).await?;
            Box::pin(self.dir(&path, &target, exists)).await?;
        }
        if !exists && mode != mode | 0o700 {
            self.client
                .chmod(path_ref(remote), mode)
                .await
                .map_err(|e| anyhow!("{}", change_error(remote, &e)))?;
        }
        Ok(())
    }

    /// When merging: whether `remote` is a directory already (a file there is an error).
    async fn existing_dir(&self, remote: &str) -> anyhow::Result<bool> {
        match self.client.stat(remote).await {
            Ok(attr) if is_dir(&attr) => Ok(true),
            Ok(_) => bail!("{remote}: already exists and is not a directory"),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn file(&self, local: &Path, remote: &str, m: &std::fs::Metadata) -> anyhow::Result<()> {
        let shown = local.display().to_string();
        if self.force {
            if let Ok(attr) = self.client.stat(remote).await {
                if is_dir(&attr) {
                    bail!("{remote}: is a directory");
                }
            }
        }
        let how = PutFile {
            mode: m.mode() & FILE_MODE_BITS & !format::umask(),
            replication: self.replication,
            block_size: self.block_size,
            force: self.force,
            progress: false,
        };
        let source = spawn_reader(open_local(&shown, m.len())?, shown);
        put_file(self.client, source, Some(m.len()), remote, &how).await
    }

    async fn symlink(&self, local: &Path, remote: &str) -> anyhow::Result<()> {
        let target = std::fs::read_link(local)
            .map_err(|e| anyhow!("{}: {}", local.display(), io_reason(&e)))?;
        let Some(target) = target.to_str() else {
            eprintln!(
                "ringfs: {}: skipped (the symlink's target is not valid UTF-8)",
                local.display()
            );
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        if self.force {
            match self.client.stat(remote).await {
                Ok(attr) if is_dir(&attr) => bail!("{remote}: is a directory"),
                Ok(_) => self
                    .client
                    .remove(remote, false)
                    .await
                    .map_err(|e| anyhow!("{}", change_error(remote, &e)))?,
                Err(_) => {}
            }
        }
        self.client
            .symlink(target, remote)
            .await
            .map_err(|e| anyhow!("{}", change_error(remote, &e)))?;
        Ok(())
    }
}

/// The names in a local directory, sorted (a stable order for output and errors).
fn read_dir_sorted(dir: &Path) -> anyhow::Result<Vec<std::ffi::OsString>> {
    let shown = |e: std::io::Error| anyhow!("{}: {}", dir.display(), io_reason(&e));
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(shown)? {
        names.push(e.map_err(shown)?.file_name());
    }
    names.sort();
    Ok(names)
}

// ------------------------------------------------------------------------------------------ get

/// `get REMOTEDIR LOCAL`: LOCAL/name(REMOTEDIR) when LOCAL is a directory, else LOCAL itself.
pub async fn get_tree(client: &Client, remote: &str, local: &str) -> anyhow::Result<ExitCode> {
    let local = Path::new(local);
    let name = basename(remote);
    let target = if local.is_dir() && name != "/" {
        local.join(name)
    } else {
        local.to_path_buf()
    };
    // A symlink to a directory is copied as that directory, as cp -r copies a link it is given.
    let (resolved, attr) = client.resolve(remote).await?;
    let get = TreeGet {
        client,
        skipped: AtomicUsize::new(0),
    };
    tokio::select! {
        r = get.dir(&resolved, &attr, &target) => r?,
        _ = crate::server::terminated() => bail!("{remote}: interrupted"),
    }
    Ok(match get.skipped.load(Ordering::Relaxed) {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

struct TreeGet<'a> {
    client: &'a Client,
    /// Entries left out: files and directories the caller may not read, fifos, sockets,
    /// devices. Each is reported and the rest is copied (exit 1), as `cp -r` does.
    skipped: AtomicUsize,
}

impl TreeGet<'_> {
    /// `Ok(None)` after reporting a permission error on `remote` (see `skipped`).
    fn skip_denied<T>(&self, remote: &str, r: Result<T, ClientError>) -> anyhow::Result<Option<T>> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                eprintln!("ringfs: {}", named(&e.to_string(), remote));
                self.skipped.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(anyhow!("{}", named(&e.to_string(), remote))),
        }
    }
}

impl TreeGet<'_> {
    /// Copies the ringfs directory `remote` to the local directory `local` (created if missing,
    /// merged into if it exists), then everything in it.
    async fn dir(&self, remote: &str, attr: &pb::Attr, local: &Path) -> anyhow::Result<()> {
        let shown = |e: std::io::Error| anyhow!("{}: {}", local.display(), io_reason(&e));
        let mode = attr.mode & DIR_MODE_BITS & !format::umask();
        match std::fs::symlink_metadata(local) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("{}: already exists and is not a directory", local.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(local).map_err(shown)?;
                set_mode(local, mode | 0o700)?;
            }
            Err(e) => return Err(shown(e)),
        }
        let listed = self.client.list_node(inode_ref(attr.inode)).await;
        let Some(entries) = self.skip_denied(remote, listed)? else {
            return set_mode(local, mode);
        };
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for e in entries {
            let Some(at) = e.attr else { continue };
            let path = join(remote, &e.name);
            if crate::commands::leave_out_of_copy(&path, &e.name, &at) {
                continue;
            }
            let target = local.join(&e.name);
            match pb::FileKind::try_from(at.kind) {
                Ok(pb::FileKind::Directory) => dirs.push((path, at, target)),
                Ok(pb::FileKind::File) => files.push((path, at, target)),
                Ok(pb::FileKind::Symlink) => self.symlink(&path, &at, &target).await?,
                _ => {
                    eprintln!("ringfs: {path}: skipped (not a regular file, directory or symlink)");
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        copy_files(
            files,
            |f| f.1.size,
            |(path, at, target)| async move { self.file(&path, &at, target).await },
        )
        .await?;
        for (path, at, target) in dirs {
            Box::pin(self.dir(&path, &at, &target)).await?;
        }
        set_mode(local, mode)
    }

    async fn file(&self, remote: &str, attr: &pb::Attr, local: PathBuf) -> anyhow::Result<()> {
        if local.is_dir() {
            bail!("{}: is a directory", local.display());
        }
        let mut reader = match self.client.open(inode_ref(attr.inode)).await {
            // Removed since the listing: like cp -r, what is gone is not copied.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Stale) => return Ok(()),
            r => match self.skip_denied(remote, r)? {
                Some(r) => r,
                None => return Ok(()),
            },
        };
        get_file(&mut reader, remote, local, false).await
    }

    async fn symlink(&self, remote: &str, attr: &pb::Attr, local: &Path) -> anyhow::Result<()> {
        let target = self
            .client
            .readlink(inode_ref(attr.inode))
            .await
            .map_err(|e| anyhow!("{remote}: {e}"))?;
        let shown = |e: std::io::Error| anyhow!("{}: {}", local.display(), io_reason(&e));
        match std::fs::symlink_metadata(local) {
            Ok(m) if m.is_dir() => bail!("{}: is a directory", local.display()),
            Ok(_) => std::fs::remove_file(local).map_err(shown)?,
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&target, local).map_err(shown)
    }
}

/// `msg`, with `path` in front unless it names it already (the namenode's own refusals do).
pub(crate) fn named(msg: &str, path: &str) -> String {
    if msg.contains(path) {
        msg.to_string()
    } else {
        format!("{path}: {msg}")
    }
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| anyhow!("{}: {}", path.display(), io_reason(&e)))
}

// ------------------------------------------------------------------------------------------ walk

/// `path` and every node under it, parents before children, each with its attributes (for
/// `cp` and `chmod -R`-like walks). Directories are listed before anything is changed, so a mode
/// that shuts out the caller does not stop the walk halfway. A directory that cannot be listed
/// fails the walk (`cp` copies all or nothing).
pub async fn collect(client: &Client, path: &str) -> anyhow::Result<Vec<(String, pb::Attr)>> {
    walk(client, path, true, Err).await
}

/// [`collect`] that goes on past a directory it cannot list (its entries are left out), as
/// `chmod -R`, `chown -R` and `du` do: the error is printed and `failed` set (exit 1). Unlike
/// `collect` it takes every entry (these walks change or count what is there).
pub async fn collect_reporting(
    client: &Client,
    path: &str,
    failed: &mut bool,
) -> anyhow::Result<Vec<(String, pb::Attr)>> {
    walk(client, path, false, |e| {
        eprintln!("ringfs: {e}");
        *failed = true;
        Ok(())
    })
    .await
}

/// `copying`: leave out what copies leave out ([`crate::commands::leave_out_of_copy`]).
async fn walk(
    client: &Client,
    path: &str,
    copying: bool,
    mut unlisted: impl FnMut(anyhow::Error) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<(String, pb::Attr)>> {
    let root = client.stat(path).await?;
    let mut out = vec![(path.to_string(), root)];
    let mut next = 0;
    while next < out.len() {
        let (dir, attr) = out[next].clone();
        next += 1;
        if !is_dir(&attr) {
            continue;
        }
        let entries = match client.list_node(inode_ref(attr.inode)).await {
            Ok(entries) => entries,
            Err(e) if next == 1 => bail!("{}", named(&e.to_string(), &dir)),
            Err(e) => {
                unlisted(anyhow!("{}", named(&e.to_string(), &dir)))?;
                continue;
            }
        };
        for e in entries {
            if let Some(at) = e.attr {
                let path = join(&dir, &e.name);
                if !(copying && crate::commands::leave_out_of_copy(&path, &e.name, &at)) {
                    out.push((path, at));
                }
            }
        }
    }
    Ok(out)
}

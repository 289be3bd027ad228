//! The client commands: each connects a `ringfs_client::Client`, does one thing, prints the result
//! (human or JSON) and returns an exit code. Errors bubble up as one line naming path and reason.

use crate::format::{self, attr_json, basename, is_dir, join};
use crate::{
    DfArgs, FsckArgs, GetArgs, JsonArg, LsArgs, MkdirArgs, MountArgs, MvArgs, PathsArg, PutArgs,
    RmArgs, StatArgs, UmountArgs,
};
use anyhow::{anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringfs_client::write::{Bytes, BytesMut};
use ringfs_client::{
    inode_ref, path_ref, pb, Client, ClientConfig, ClientError, CreateOptions, ErrorKind,
    FileReader,
};
use serde_json::{json, Value};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Local reads for `put` are this big (a reader thread keeps a few of them ahead of the network).
const READ_BUFFER: usize = 4 << 20;
/// Transfers smaller than this get no progress bar.
const PROGRESS_MIN: u64 = 16 << 20;

pub(crate) async fn connect(namenode: Option<String>) -> anyhow::Result<Client> {
    connect_with(namenode, ClientConfig::default()).await
}

/// [`connect`] with other settings than the defaults (the namenode address is filled in).
async fn connect_with(namenode: Option<String>, cfg: ClientConfig) -> anyhow::Result<Client> {
    let addr = namenode.unwrap_or_else(|| ringfs_proto::DEFAULT_NAMENODE.to_string());
    Ok(Client::connect(ClientConfig {
        namenode: addr,
        ..cfg
    })
    .await?)
}

/// Exit 1 when something failed (each failure was reported on stderr), else 0.
pub(crate) fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// "no such file or directory" from an io::Error (no "(os error 2)", lower case like the server's).
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

/// The one-line error of a namespace change of `path`: the namenode's own refusals name the path
/// already; a broken connection does not, and leaves the outcome unknown (the namenode may have
/// applied the change just before it went away), which the user has to be told.
pub(crate) fn change_error(path: &str, e: &ClientError) -> String {
    let msg = e.to_string();
    if e.kind() != ErrorKind::Io || !msg.contains("transport error") || msg.contains(path) {
        return msg;
    }
    format!("{path}: {msg} (the connection broke during the call: the change may or may not have been made)")
}

/// Entries `ls` leaves out (shown by `ls -a`): the names a mount keeps for unlinked open files.
pub(crate) fn is_hidden(name: &str, attr: &pb::Attr) -> bool {
    ringfs_proto::is_open_file_hidden_entry(name, attr.inode)
}

/// Entries that copies of a tree (`get`, `cp`) leave out: the hidden names a mount keeps for
/// files unlinked while open, and the temporary file or tree of a `put` or `cp` in progress (or
/// killed), which `ls` shows like HDFS shows its `._COPYING_` files but which no copy should take
/// along half-written. A file with such a name that is not being written is an ordinary file (a
/// put renames its temporary before closing it) and is copied. Walks that change a tree in place
/// (`chmod -R`, `chown -R`, `setrep`) and `du`'s totals leave nothing out.
pub(crate) fn left_out_of_copies(name: &str, attr: &pb::Attr) -> bool {
    is_hidden(name, attr) || (is_put_temporary(name) && (is_dir(attr) || attr.under_construction))
}

/// [`left_out_of_copies`] for the entry `name` at `path`, saying so on stderr when it leaves out a
/// file or tree a put or cp in progress writes (a mount's hidden names go unmentioned).
pub(crate) fn leave_out_of_copy(path: &str, name: &str, attr: &pb::Attr) -> bool {
    if !left_out_of_copies(name, attr) {
        return false;
    }
    if is_put_temporary(name) {
        // Named as the file it will be (`.big.ringfs-put-1a2b3c4d` is `big`).
        let shown = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".ringfs-put-"))
            .map(|(stem, _)| stem)
            .filter(|stem| !stem.is_empty())
            .map(|stem| format!("{}{stem}", &path[..path.len() - name.len()]))
            .unwrap_or_else(|| path.to_string());
        eprintln!("ringfs: {shown}: skipped (a put or cp in progress is writing it)");
    }
    true
}

/// Whether `name` has the form of a put's or cp's temporary name (see [`put_temp_name`]).
pub(crate) fn is_put_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".ringfs-put-")
}

/// `stat` of a target, except that a symlink to a directory counts as that directory, as cp and mv
/// take it: the path to put things under, and its attributes.
pub(crate) async fn stat_target(
    client: &Client,
    path: &str,
) -> Result<(String, pb::Attr), ClientError> {
    let attr = client.stat(path).await?;
    if attr.kind == pb::FileKind::Symlink as i32 {
        if let Ok((dir, a)) = client.resolve(path).await {
            if is_dir(&a) {
                return Ok((dir, a));
            }
        }
    }
    Ok((path.to_string(), attr))
}

pub(crate) fn is_not_found(e: &ClientError) -> bool {
    e.kind() == ErrorKind::NotFound
}

/// A progress bar on stderr when it is a terminal and the transfer is long enough.
fn progress(total: Option<u64>, what: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() || total.is_some_and(|t| t < PROGRESS_MIN) {
        return None;
    }
    let pb = match total {
        Some(t) => {
            let pb = ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            ) {
                pb.set_style(style.progress_chars("=> "));
            }
            pb
        }
        None => {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} {spinner} {binary_bytes} {binary_bytes_per_sec}",
            ) {
                pb.set_style(style);
            }
            pb
        }
    };
    pb.set_message(what.to_string());
    Some(pb)
}

// ------------------------------------------------------------------------------------------ put

/// Buffers the `put` reader keeps track of for reuse (each `READ_BUFFER`): the writer holds up to
/// two blocks of packets (slices of these buffers) until every replica acknowledged them.
const READ_BUFFERS: usize = 64;
/// Memory and file-offset alignment of direct reads.
const DIRECT_ALIGN: usize = 4096;
/// Local files at least this big are read around the page cache (see [`LocalFile`]).
const DIRECT_MIN: u64 = 64 << 20;

/// A local file that `put` reads with `O_DIRECT` when it is big and the filesystem allows it.
/// A file being uploaded is read once: through the page cache every byte costs a copy plus the
/// page cache's own work (on this project's VMs, more CPU than the copy: about a second per GiB,
/// a third of the client's whole CPU for a `put`), and the file's pages would evict more useful
/// ones. Direct reads land in the reader's reused, aligned buffers. A read the filesystem refuses
/// (`EINVAL`: other alignment rules, or an unaligned offset after a short read) switches the file
/// to buffered reads for good.
struct LocalFile {
    file: std::fs::File,
    direct: bool,
}

impl LocalFile {
    fn open(path: &str, size: u64) -> std::io::Result<LocalFile> {
        use std::os::unix::fs::OpenOptionsExt;
        if size >= DIRECT_MIN {
            let direct = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(path);
            if let Ok(file) = direct {
                return Ok(LocalFile { file, direct: true });
            }
        }
        Ok(LocalFile {
            file: std::fs::File::open(path)?,
            direct: false,
        })
    }
}

impl Read for LocalFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.direct {
            match self.file.read(buf) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    use std::os::unix::io::AsRawFd;
                    let fd = self.file.as_raw_fd();
                    // SAFETY: fcntl on a descriptor we own; no memory is passed.
                    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
                    if flags < 0
                        || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0
                    {
                        return Err(e);
                    }
                    self.direct = false;
                }
                r => return r,
            }
        }
        self.file.read(buf)
    }
}

/// A zeroed `READ_BUFFER` whose first byte is `DIRECT_ALIGN`-aligned.
fn aligned_buffer() -> BytesMut {
    let mut b = BytesMut::zeroed(READ_BUFFER + DIRECT_ALIGN);
    let skip = b.as_ptr().align_offset(DIRECT_ALIGN);
    let _ = b.split_to(skip);
    b.truncate(READ_BUFFER);
    b
}

/// Reads `r` on a thread in `READ_BUFFER` pieces (the disk reads ahead while the network writes).
/// The pieces go to `FileWriter::write_bytes`, which sends them as packets without copying; a
/// buffer is read into again once the writer dropped every slice of it, so the hot loop neither
/// zeroes nor faults in fresh memory.
pub(crate) fn spawn_reader(
    mut r: Box<dyn Read + Send>,
    name: String,
) -> mpsc::Receiver<anyhow::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        // Buffers handed out, oldest first; one is free again when this is its only reference.
        let mut lent: std::collections::VecDeque<Bytes> = Default::default();
        loop {
            let reusable = lent.front().is_some_and(Bytes::is_unique);
            let mut buf = match lent.pop_front() {
                Some(b) if reusable => b.try_into_mut().unwrap_or_else(|_| aligned_buffer()),
                Some(b) => {
                    if lent.len() + 1 < READ_BUFFERS {
                        lent.push_front(b);
                    }
                    aligned_buffer()
                }
                None => aligned_buffer(),
            };
            let mut n = 0;
            while n < buf.len() {
                match r.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(anyhow!("{name}: {}", io_reason(&e))));
                        return;
                    }
                }
            }
            if n == 0 {
                return;
            }
            buf.truncate(n);
            let buf = buf.freeze();
            if n == READ_BUFFER {
                lent.push_back(buf.clone());
            }
            if tx.blocking_send(Ok(buf)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Replaces the temporary name in an error message with the name the user gave, and names the
/// target when the message names no path (the namenode names a file it finds by inode by its
/// number: "inode 102: stale file handle" when another client removed the file being written).
fn retarget(e: ClientError, tmp: &str, target: &str) -> anyhow::Error {
    let msg = e.to_string().replace(tmp, target);
    if msg.contains(target) {
        return anyhow!("{msg}");
    }
    if e.kind() == ErrorKind::Stale {
        return anyhow!("{target}: {msg} (the file being written was removed by another client)");
    }
    anyhow!("{target}: {msg}")
}

/// An empty local path names nothing (and would read as "ringfs: : no such file or directory").
fn check_local(path: &str) -> anyhow::Result<()> {
    if path.is_empty() {
        bail!("invalid local path \"\": empty path");
    }
    Ok(())
}

pub async fn put(namenode: Option<String>, a: PutArgs) -> anyhow::Result<ExitCode> {
    for local in &a.sources {
        check_local(local)?;
    }
    if a.sources.len() > 1 && a.sources.iter().any(|s| s == "-") {
        bail!("-: stdin can only be the one source of a put");
    }
    let client = connect(namenode).await?;
    if a.sources.len() > 1 {
        require_remote_dir(&client, &a.remote).await?;
    }
    each_source(&a.sources, |local| put_one(&client, &a, local)).await
}

/// `put` of one source (a file, stdin or a directory) to `a.remote`.
async fn put_one(client: &Client, a: &PutArgs, local: &str) -> anyhow::Result<ExitCode> {
    // The new file's mode: the local file's (as cp gives it), or 0666, less the umask.
    let mut mode = 0o666;
    let (source, size): (Box<dyn Read + Send>, Option<u64>) = if local == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let meta = std::fs::metadata(local).map_err(|e| anyhow!("{local}: {}", io_reason(&e)))?;
        if meta.is_dir() {
            return crate::tree::put_tree(client, a, local).await;
        }
        let f = LocalFile::open(local, meta.len())
            .map_err(|e| anyhow!("{local}: {}", io_reason(&e)))?;
        {
            use std::os::unix::fs::MetadataExt;
            mode = meta.mode() & crate::tree::FILE_MODE_BITS;
        }
        (Box::new(f), Some(meta.len()))
    };

    // The target: REMOTE, or REMOTE/basename(LOCAL) when REMOTE is a directory.
    let mut target = a.remote.clone();
    match stat_target(client, &a.remote).await {
        Ok((dir, attr)) if is_dir(&attr) => {
            if local == "-" {
                bail!(
                    "{}: is a directory (name the target file when reading stdin)",
                    a.remote
                );
            }
            target = join(&dir, basename(local));
            match client.stat(&target).await {
                Ok(attr) if is_dir(&attr) => bail!("{target}: is a directory"),
                Ok(_) if !a.force => bail!("{target}: already exists"),
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(_) if !a.force => bail!("{}: already exists", a.remote),
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let file = PutFile {
        mode: mode & !format::umask(),
        replication: a.replication.unwrap_or(0),
        block_size: a.block_size.unwrap_or(0),
        force: a.force,
        progress: true,
    };
    client
        .check_live_datanodes(file.replication)
        .await
        .map_err(|e| anyhow!("{target}: {e}"))?;
    let rx = spawn_reader(source, local.to_string());
    put_file(client, rx, size, &target, &file)
        .await
        .map_err(|e| naming(e, &target))?;
    Ok(ExitCode::SUCCESS)
}

/// `e`, said to be about `path` unless its text names it already (a namenode whose metadata disk
/// is full says which store failed, not which file).
pub(crate) fn naming(e: anyhow::Error, path: &str) -> anyhow::Error {
    match crate::chain_text(&e).contains(path) {
        true => e,
        false => e.context(path.to_string()),
    }
}

/// Runs `one` for each source of a `SOURCE... TARGET` command (put, get, cp, mv). With several
/// sources, one that fails is reported and the others still go, and the exit code is 1, as with
/// cp(1) and `hdfs dfs -put`; Ctrl-C stops after the source being copied.
pub(crate) async fn each_source<'a, F, Fut>(
    sources: &'a [String],
    mut one: F,
) -> anyhow::Result<ExitCode>
where
    F: FnMut(&'a str) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    if let [only] = sources {
        return one(only).await;
    }
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            crate::server::terminated().await;
            interrupted.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let mut code = ExitCode::SUCCESS;
    for source in sources {
        match one(source).await {
            Ok(c) if c == ExitCode::SUCCESS => {}
            Ok(c) => code = c,
            Err(e) => {
                eprintln!("ringfs: {}", crate::chain_text(&e));
                code = ExitCode::FAILURE;
            }
        }
        if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
            code = ExitCode::FAILURE;
            break;
        }
    }
    watcher.abort();
    Ok(code)
}

/// With several sources the ringfs target must be an existing directory (or a symlink to one).
pub(crate) async fn require_remote_dir(client: &Client, target: &str) -> anyhow::Result<()> {
    match stat_target(client, target).await {
        Ok((_, attr)) if is_dir(&attr) => Ok(()),
        Ok(_) => bail!("{target}: not a directory (several sources go into a directory)"),
        Err(e) if is_not_found(&e) => {
            bail!("{target}: no such file or directory (several sources go into an existing directory)")
        }
        Err(e) => Err(e.into()),
    }
}

/// How `put_file` writes a file.
pub(crate) struct PutFile {
    /// Permission bits of the new file.
    pub mode: u32,
    /// 0: the cluster's default.
    pub replication: u32,
    /// 0: the cluster's default.
    pub block_size: u64,
    /// Replace an existing file at the target.
    pub force: bool,
    /// Show a progress bar (on a terminal, for big files).
    pub progress: bool,
}

/// Length of a temporary name's stem made from the hash of a name too long to keep.
const HASH_STEM: usize = 16;

/// `name` as the stem of a temporary name that adds `extra` bytes, or, when that would pass the
/// 255-byte limit of a name, 16 hex digits of its hash: distinct names keep distinct temporaries.
pub(crate) fn temp_stem(name: &str, extra: usize) -> std::borrow::Cow<'_, str> {
    if name.len().saturating_add(extra) <= 255 {
        name.into()
    } else {
        blake3::hash(name.as_bytes()).to_hex()[..HASH_STEM]
            .to_string()
            .into()
    }
}

/// Opens a local regular file for `put_file` (direct reads for big files, see [`LocalFile`]).
pub(crate) fn open_local(path: &str, size: u64) -> anyhow::Result<Box<dyn Read + Send>> {
    let f = LocalFile::open(path, size).map_err(|e| anyhow!("{path}: {}", io_reason(&e)))?;
    Ok(Box::new(f))
}

/// The hidden sibling of `target` that `put` writes (a file) or builds (a tree) before renaming it
/// into place: `.NAME.ringfs-put-TAG`, TAG from this client's id (the namenode's lease recovery
/// knows the pattern).
pub(crate) fn put_temp_name(client: &Client, target: &str) -> String {
    put_temp_path(target, &client.client_id()[..8])
}

/// [`put_temp_name`] for the client tag `tag`.
fn put_temp_path(target: &str, tag: &str) -> String {
    let dir = format::dirname(target);
    // The temporary's path must fit the namenode's path limit too: a target near it (a deep
    // tree) got "file name too long" for the temporary, not for anything the user named.
    let extra = 1 + ".ringfs-put-".len() + tag.len();
    let room = ringfs_namenode::path::PATH_MAX.saturating_sub(dir.len() + 1);
    let name = basename(target);
    let tmp_name = if name.len() + extra <= room.min(255) {
        format!(".{name}.ringfs-put-{tag}")
    } else if HASH_STEM + extra <= room {
        format!(".{}.ringfs-put-{tag}", temp_stem(name, usize::MAX))
    } else {
        // The shortest form lease recovery knows.
        format!(".ringfs-put-{tag}")
    };
    match dir {
        "" => tmp_name,
        d => join(d, &tmp_name),
    }
}

/// Writes the bytes from `rx` (`size` of them if known; an error ends the write and fails it) to
/// the ringfs file `target`, whose parent exists and which is not a directory.
pub(crate) async fn put_file(
    client: &Client,
    mut rx: mpsc::Receiver<anyhow::Result<Bytes>>,
    size: Option<u64>,
    target: &str,
    how: &PutFile,
) -> anyhow::Result<()> {
    // Replacing a file is writing it: the rename below needs only the directory's permission, so
    // ask for the file's as `cp` and `hdfs dfs -put -f` would (a file that is gone is fine).
    if how.force {
        match client.access(path_ref(target), 2).await {
            Err(e) if !is_not_found(&e) => bail!("{}", change_error(target, &e)),
            _ => {}
        }
    }
    // A size past the largest file of its block size is refused before anything is written
    // (the namenode would refuse it only once that much was written). Blocks are at least
    // 64 KiB, so sizes up to the largest file of 64 KiB blocks need no look at the default.
    if let Some(size) = size.filter(|&s| s > ringfs_proto::max_file_size(64 << 10)) {
        let block_size = match how.block_size {
            0 => client.report().await?.default_block_size,
            n => n,
        };
        let max = ringfs_proto::max_file_size(block_size);
        if size > max {
            bail!(
                "{target}: file too large: {size} bytes (the most for a block size of \
                 {block_size} is {max})"
            );
        }
    }
    // Write under a hidden temporary name next to the target, then rename it into place: a failed
    // put leaves nothing behind and `-f` replaces the old file atomically.
    let tmp = put_temp_name(client, target);
    let opts = CreateOptions {
        mode: how.mode,
        replication: how.replication,
        block_size: how.block_size,
        overwrite: false,
        exclusive: true,
    };
    // The directory's inode is looked up alongside the create (no extra wait): see TempEntry.
    let (created, tmp_entry) = tokio::join!(client.create(&tmp, opts), TempEntry::of(client, &tmp));
    let mut w = created.map_err(|e| retarget(e, &tmp, target))?;
    let pb = if how.progress {
        progress(size, &format!("put {target}"))
    } else {
        None
    };
    let copy = async {
        while let Some(buf) = rx.recv().await {
            let buf = buf?;
            let len = buf.len() as u64;
            w.write_bytes(buf)
                .await
                .map_err(|e| retarget(e, &tmp, target))?;
            if let Some(pb) = &pb {
                pb.inc(len);
            }
        }
        Ok::<(), anyhow::Error>(())
    };
    let copied = tokio::select! {
        r = copy => r,
        _ = crate::server::terminated() => Err(anyhow!("{target}: interrupted")),
    };
    // Renamed while still open, then closed: a put killed in between leaves the complete file
    // under its target name (lease recovery closes it), never a complete temporary file, which
    // nothing would remove (recovery deletes only temporary files still being written).
    let result = match copied {
        Ok(()) => match w.commit_all().await {
            Ok(file) => match client.rename_with(&tmp, target, !how.force, false).await {
                Ok(()) => match file.close().await {
                    Ok(()) => Ok(()),
                    // In place and complete: only the close is missing, which lease recovery does.
                    Err(e) => Err(anyhow!(
                        "{target}: written, but closing it failed ({e}); the namenode closes it \
                         when this client's lease expires"
                    )),
                },
                Err(e) => Err(anyhow!(
                    "{}",
                    change_error(target, &e).replace(&tmp, target)
                )),
            },
            Err(e) => Err(retarget(e, &tmp, target)),
        },
        Err(e) => {
            w.abort().await;
            Err(e)
        }
    };
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if let Err(e) = result {
        if let Err(re) = tmp_entry.remove(client, false).await {
            tracing::warn!("cleaning up {tmp} failed: {re}");
        }
        return Err(e);
    }
    Ok(())
}

/// A temporary entry of a put or copy, held by its directory's inode as well as its path: when
/// the directory is renamed while the copy runs, the copy fails (its target is gone) and its
/// cleanup still finds the temporary to remove. By path alone a complete temporary was left
/// behind for good (lease recovery removes only temporaries still being written).
pub(crate) struct TempEntry {
    path: String,
    parent: Option<u64>,
}

impl TempEntry {
    /// `path`'s entry; its directory looked up now (None if that fails: then by path).
    pub(crate) async fn of(client: &Client, path: &str) -> Self {
        let dir = match format::dirname(path) {
            "" => "/",
            d => d,
        };
        let parent = client.stat(dir).await.ok().map(|a| a.inode);
        TempEntry {
            path: path.to_string(),
            parent,
        }
    }

    /// Removes the entry wherever its directory is now. "Not found" and "stale" (the directory
    /// is gone too) leave nothing to remove and count as done.
    pub(crate) async fn remove(&self, client: &Client, recursive: bool) -> Result<(), ClientError> {
        let r = match self.parent {
            Some(p) => {
                client
                    .remove_child(p, basename(&self.path), recursive)
                    .await
            }
            None => client.remove(&self.path, recursive).await,
        };
        match r {
            Err(e) if is_not_found(&e) || e.kind() == ErrorKind::Stale => Ok(()),
            r => r,
        }
    }
}

// ------------------------------------------------------------------------------------------ get / cat

/// Writes the whole file of `reader` to `out` from a blocking thread, as the verified packets
/// arrive: no copy into an async writer's buffer (tokio's stdout and file writers copy every byte
/// once more). Counts the bytes into `pb`.
async fn write_out(
    reader: &mut FileReader,
    out: Box<dyn Write + Send>,
    pb: Option<ProgressBar>,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = out;
        while let Some(data) = rx.blocking_recv() {
            out.write_all(&data)?;
            if let Some(pb) = &pb {
                pb.inc(data.len() as u64);
            }
        }
        out.flush()
    });
    let sent = reader.send_to(&tx).await;
    drop(tx);
    let written = writer.await.map_err(|e| anyhow!("writer thread: {e}"))?;
    // A failed write stops the reader too (broken pipe): the write error is the one to report.
    written?;
    sent?;
    Ok(())
}

pub async fn get(namenode: Option<String>, a: GetArgs) -> anyhow::Result<ExitCode> {
    check_local(&a.local)?;
    if a.sources.len() > 1 && !Path::new(&a.local).is_dir() {
        // `-` too: several files on stdout would run together (`ringfs cat` concatenates).
        bail!(
            "{}: not a directory (several sources go into an existing directory)",
            a.local
        );
    }
    let client = connect(namenode).await?;
    each_source(&a.sources, |remote| get_one(&client, remote, &a.local)).await
}

/// `get` of one ringfs file or directory to `local`.
async fn get_one(client: &Client, remote: &str, local: &str) -> anyhow::Result<ExitCode> {
    let mut reader = match client.open(path_ref(remote)).await {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::IsADirectory && local != "-" => {
            return crate::tree::get_tree(client, remote, local).await;
        }
        Err(e) => return Err(e.into()),
    };
    if local == "-" {
        write_out(&mut reader, Box::new(std::io::stdout()), None).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let local = Path::new(local);
    let target: PathBuf = if local.is_dir() {
        local.join(basename(remote))
    } else {
        local.to_path_buf()
    };
    get_file(&mut reader, remote, target, true).await?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the ringfs file of `reader` (`remote` in messages) to the local file `target`: complete
/// or not at all (a temporary file renamed over the target), with the file's permission bits.
pub(crate) async fn get_file(
    reader: &mut FileReader,
    remote: &str,
    mut target: PathBuf,
    show_progress: bool,
) -> anyhow::Result<()> {
    let meta = std::fs::metadata(&target);
    match &meta {
        // A device, fifo or socket (`/dev/null`, a named pipe) is written into, like `cp` does:
        // renaming a temporary file over it would replace the device with a regular file.
        Ok(m) if !m.is_file() && !m.is_dir() => {
            return write_in_place(reader, &target, false).await;
        }
        // A symlink to a file: replace the file it points to, not the link.
        Ok(_) if target.is_symlink() => {
            target = std::fs::canonicalize(&target)
                .map_err(|e| anyhow!("{}: {}", target.display(), io_reason(&e)))?;
        }
        _ => {}
    }
    // An existing file is replaced as `cp` overwrites it: only if the caller may write it, and
    // keeping its permission bits and owner (the replacement is a new file, renamed over it).
    let existing = meta.ok().filter(|m| m.is_file());
    if existing.is_some() && !writable(&target) {
        bail!("{}: permission denied", target.display());
    }
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if existing.is_some() && !writable(&dir) {
        // A file the caller may write in a directory it may not: no temporary can be made
        // there, so the file is written in place, as `cp` does (it failed, blaming the file;
        // QA). A get that fails then leaves it partial, as a failed `cp` does.
        return write_in_place(reader, &target, true).await;
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Write a temporary file next to the target and rename it into place: a failed get leaves no
    // partial file. The file has no name while it is written (O_TMPFILE), so even a get killed
    // with `kill -9` leaves nothing; where the file system cannot do that, a hidden temporary
    // name (deleted when dropped, left behind only by a kill).
    let shown = |e: std::io::Error| anyhow!("{}: {}", target.display(), io_reason(&e));
    let tmp = LocalTemp::create(&dir, &name).map_err(shown)?;
    let file = tmp.file().map_err(shown)?;
    if let Some(m) = &existing {
        use std::os::unix::fs::MetadataExt;
        // Not ours to give (root replacing a user's file): failing leaves the caller's.
        let _ = std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()));
    }
    let pb = if show_progress {
        progress(Some(reader.attr().size), &format!("get {remote}"))
    } else {
        None
    };
    let copied = tokio::select! {
        r = write_out(reader, Box::new(file), pb.clone()) => r,
        _ = crate::server::terminated() => Err(anyhow!("{remote}: interrupted")),
    };
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    copied.map_err(|e| local_error(e, &target))?;
    let mode = match &existing {
        Some(m) => std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
        None => reader.attr().mode & 0o777 & !format::umask(),
    };
    tmp.persist(&dir, &name, &target, mode).map_err(shown)?;
    Ok(())
}

/// Writes the ringfs file of `reader` into the existing local `target` (a device or fifo; with
/// `truncate`, a regular file cut to the new content).
async fn write_in_place(
    reader: &mut FileReader,
    target: &Path,
    truncate: bool,
) -> anyhow::Result<()> {
    let shown = |e: std::io::Error| anyhow!("{}: {}", target.display(), io_reason(&e));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(truncate)
        .open(target)
        .map_err(shown)?;
    write_out(reader, Box::new(file), None)
        .await
        .map_err(|e| local_error(e, target))
}

/// A local write error (a full disk) named by the local file, as the other errors of a get are.
fn local_error(e: anyhow::Error, target: &Path) -> anyhow::Error {
    match e.downcast::<std::io::Error>() {
        Ok(io) => anyhow!("{}: {}", target.display(), io_reason(&io)),
        Err(e) => e,
    }
}

/// access(2) W_OK: whether the caller may write the local file (or directory) `path`.
fn writable(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: access with a NUL-terminated path that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Bytes a local temporary name of `get` adds to the file's name (`.` `.ringfs-get-` and up to
/// 24 more).
const GET_TEMP_EXTRA: usize = 1 + ".ringfs-get-".len() + 24;

/// The local file a `get` writes before it becomes the target.
enum LocalTemp {
    /// Unnamed (O_TMPFILE in the target's directory): linked under a name only when complete.
    Unnamed(std::fs::File),
    /// A hidden temporary name, for file systems without O_TMPFILE.
    Named(tempfile::NamedTempFile),
}

impl LocalTemp {
    fn create(dir: &Path, name: &str) -> std::io::Result<LocalTemp> {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(dir)
        {
            Ok(f) => return Ok(LocalTemp::Unnamed(f)),
            // Not supported here (old kernel, or a file system such as a FUSE mount without it).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOSYS)
                ) => {}
            Err(e) => return Err(e),
        }
        tempfile::Builder::new()
            .prefix(&format!(".{}.ringfs-get-", temp_stem(name, GET_TEMP_EXTRA)))
            .tempfile_in(dir)
            .map(LocalTemp::Named)
    }

    fn file(&self) -> std::io::Result<std::fs::File> {
        match self {
            LocalTemp::Unnamed(f) => f.try_clone(),
            LocalTemp::Named(t) => t.reopen(),
        }
    }

    /// Gives the complete file its permissions and the target's name (replacing what is there).
    fn persist(self, dir: &Path, name: &str, target: &Path, mode: u32) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let perms = std::fs::Permissions::from_mode(mode);
        match self {
            LocalTemp::Named(t) => {
                let _ = t.as_file().set_permissions(perms);
                t.persist(target).map(drop).map_err(|e| e.error)
            }
            LocalTemp::Unnamed(f) => {
                use std::os::unix::io::AsRawFd;
                let _ = f.set_permissions(perms);
                // linkat cannot replace a file: link under a fresh hidden name, then rename it
                // over the target (a kill between the two is the only way to leave that name).
                let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
                    .map_err(std::io::Error::other)?;
                for attempt in 0..16u32 {
                    let tmp = dir.join(format!(
                        ".{}.ringfs-get-{}-{attempt}",
                        temp_stem(name, GET_TEMP_EXTRA),
                        std::process::id()
                    ));
                    let c_tmp = std::ffi::CString::new(tmp.as_os_str().as_encoded_bytes())
                        .map_err(std::io::Error::other)?;
                    // SAFETY: linkat with two NUL-terminated paths that outlive the call.
                    let r = unsafe {
                        libc::linkat(
                            libc::AT_FDCWD,
                            proc_path.as_ptr(),
                            libc::AT_FDCWD,
                            c_tmp.as_ptr(),
                            libc::AT_SYMLINK_FOLLOW,
                        )
                    };
                    if r != 0 {
                        let e = std::io::Error::last_os_error();
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            continue;
                        }
                        return Err(e);
                    }
                    return std::fs::rename(&tmp, target).inspect_err(|_| {
                        let _ = std::fs::remove_file(&tmp);
                    });
                }
                Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists))
            }
        }
    }
}

pub async fn cat(namenode: Option<String>, a: PathsArg) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    // Like cat(1): a file that cannot be read is reported and the next one still goes.
    let mut failed = false;
    for p in &a.paths {
        let result = async {
            let mut reader = client.open(path_ref(p)).await?;
            write_out(&mut reader, Box::new(std::io::stdout()), None).await
        }
        .await;
        if let Err(e) = result {
            // A closed stdout (`| head`) ends the whole cat.
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return Err(e);
            }
            eprintln!("ringfs: {}", crate::chain_text(&e));
            failed = true;
        }
    }
    Ok(exit_code(failed))
}

/// `touch PATH...`: an empty file where there is none (mode 0666 less the umask), else the access
/// and modification times set to now, as touch(1) and `hdfs dfs -touch` do.
pub async fn touch(namenode: Option<String>, a: PathsArg) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    let mut failed = false;
    for p in &a.paths {
        if let Err(e) = touch_one(&client, p).await {
            eprintln!("ringfs: {}", crate::chain_text(&e));
            failed = true;
        }
    }
    Ok(exit_code(failed))
}

async fn touch_one(client: &Client, path: &str) -> anyhow::Result<()> {
    let opts = CreateOptions {
        mode: 0o666 & !format::umask(),
        replication: 0,
        block_size: 0,
        overwrite: false,
        exclusive: true,
    };
    match client.create(path, opts).await {
        Ok(w) => {
            let file = w.commit_all().await.map_err(|e| anyhow!("{path}: {e}"))?;
            file.close().await.map_err(|e| anyhow!("{path}: {e}"))?;
            Ok(())
        }
        // There already: only the times change (a directory's too; `DIR/`, `DIR/.` and `/`
        // name a directory, which a create refuses as one).
        Err(e) if matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::IsADirectory) => client
            .touch_times(path_ref(path))
            .await
            .map(drop)
            .map_err(|e| anyhow!("{}", change_error(path, &e))),
        Err(e) => Err(anyhow!("{}", change_error(path, &e))),
    }
}

/// `df`: the cluster's capacity, used and remaining space, as the datanodes report them.
pub async fn df(namenode: Option<String>, a: DfArgs) -> anyhow::Result<ExitCode> {
    let addr = namenode
        .clone()
        .unwrap_or_else(|| ringfs_proto::DEFAULT_NAMENODE.to_string());
    let client = connect(namenode).await?;
    let s = client.statfs().await?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = json!({
            "namenode": addr,
            "capacity": s.capacity,
            "used": s.used,
            "remaining": s.remaining,
            "files": s.inodes,
        });
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let size = |n: u64| {
        if a.human {
            ringfs_proto::units::format_size(n)
        } else {
            n.to_string()
        }
    };
    let pct = if s.capacity == 0 {
        "-".to_string()
    } else {
        format!("{}%", (s.used * 100).div_ceil(s.capacity))
    };
    let rows = [
        ["Filesystem", "Size", "Used", "Available", "Use%"].map(str::to_string),
        [
            format!("ringfs://{addr}"),
            size(s.capacity),
            size(s.used),
            size(s.remaining),
            pct,
        ],
    ];
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
    for r in &rows {
        // The name left-aligned, the figures right-aligned, as df(1) prints them.
        let mut line = format!("{:<w$}", r[0], w = width(0));
        for (i, cell) in r.iter().enumerate().skip(1) {
            line.push_str(&format!("  {cell:>w$}", w = width(i)));
        }
        writeln!(out, "{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------------------------ namespace

pub async fn ls(namenode: Option<String>, a: LsArgs) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    let mut failed = false;
    // Like ls(1): the files named go first, then each directory's entries (`-d`: the
    // directories themselves), under a "PATH:" header when there are several or with -R.
    let mut files = Vec::new();
    // (path, inode): a directory is listed by inode, so that one renamed while `ls -R` walks
    // the tree is still listed (under the path it had), as ls(1) does through descriptors.
    let mut dirs = Vec::new();
    for p in &a.paths {
        match client.stat(p).await {
            Ok(attr) if is_dir(&attr) && !a.directory => dirs.push((p.clone(), attr.inode)),
            Ok(attr) => files.push((basename(p).to_string(), p.clone(), attr)),
            Err(e) => {
                eprintln!("ringfs: {e}");
                failed = true;
            }
        }
    }
    let headers = a.recursive || a.paths.len() > 1;
    let mut out = LsOutput::new(&a);
    if !files.is_empty() {
        out.group(&client, None, files, true).await?;
    }
    // Depth first, in name order, as ls -R lists.
    dirs.reverse();
    while let Some((dir, inode)) = dirs.pop() {
        let listed = match client.list_node(inode_ref(inode)).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => {
                // Removed since its parent was listed.
                eprintln!("ringfs: {dir}: no such file or directory");
                failed = true;
                continue;
            }
            Err(e) => {
                eprintln!("ringfs: {}", crate::tree::named(&e.to_string(), &dir));
                failed = true;
                continue;
            }
        };
        let entries: Vec<(String, String, pb::Attr)> = listed
            .into_iter()
            .filter(|e| a.all || !ringfs_proto::is_hidden_dir_entry(e))
            .filter_map(|e| {
                let path = join(&dir, &e.name);
                e.attr.map(|at| (e.name, path, at))
            })
            .collect();
        if a.recursive {
            let subdirs = entries
                .iter()
                .filter(|(_, _, at)| is_dir(at))
                .map(|(_, p, at)| (p.clone(), at.inode));
            let at = dirs.len();
            dirs.splice(at..at, subdirs.rev());
        }
        out.group(&client, headers.then_some(dir.as_str()), entries, false)
            .await?;
    }
    out.finish()?;
    Ok(exit_code(failed))
}

/// Where `ls` writes: human lines, groups apart, or one JSON array of every entry listed
/// (written as the groups come, so `ls -R --json` of a big tree does not wait for all of it).
struct LsOutput<'a> {
    a: &'a LsArgs,
    out: std::io::StdoutLock<'static>,
    groups: usize,
    entries: usize,
    tty: bool,
}

impl<'a> LsOutput<'a> {
    fn new(a: &'a LsArgs) -> Self {
        LsOutput {
            a,
            out: std::io::stdout().lock(),
            groups: 0,
            entries: 0,
            tty: std::io::stdout().is_terminal(),
        }
    }

    /// One group of entries (name, path, attributes). `given`: paths named on the command line,
    /// shown as given (ls(1), `hdfs dfs -ls`); a directory's entries are shown by name.
    async fn group(
        &mut self,
        client: &Client,
        header: Option<&str>,
        entries: Vec<(String, String, pb::Attr)>,
        given: bool,
    ) -> anyhow::Result<()> {
        let mut targets = Vec::with_capacity(entries.len());
        for (_, _, at) in &entries {
            targets.push(if self.a.long || self.a.json {
                symlink_target(client, at).await?
            } else {
                None
            });
        }
        let out = &mut self.out;
        if self.a.json {
            self.groups += 1;
            for ((name, path, at), target) in entries.iter().zip(&targets) {
                let mut v = attr_json(name, path, at);
                if let Some(t) = target {
                    v["target"] = json!(t);
                }
                out.write_all(if self.entries == 0 { b"[\n" } else { b",\n" })?;
                serde_json::to_writer_pretty(&mut *out, &v)?;
                self.entries += 1;
            }
            return Ok(());
        }
        if self.groups > 0 {
            writeln!(out)?;
        }
        self.groups += 1;
        if let Some(h) = header {
            writeln!(out, "{h}:")?;
        }
        for ((name, path, at), target) in entries.iter().zip(&targets) {
            let name = if given { path } else { name };
            // On a terminal a newline or escape in a name would forge lines or colours: shown
            // as `?`, as ls(1) does there (piped output stays exact).
            let name = if self.tty {
                format::printable(name)
            } else {
                name.into()
            };
            match target {
                Some(t) if self.a.long => {
                    writeln!(out, "{} -> {t}", format::long_line(&name, at, self.a.human))?
                }
                _ if self.a.long => {
                    writeln!(out, "{}", format::long_line(&name, at, self.a.human))?
                }
                _ => writeln!(out, "{name}")?,
            }
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        // Nothing at all when every path failed (the errors say why), as before.
        if self.a.json && (self.entries > 0 || self.groups > 0) {
            let end: &[u8] = if self.entries == 0 { b"[]\n" } else { b"\n]\n" };
            self.out.write_all(end)?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// The target of `attr` when it is a symlink. A link removed since it was listed has none.
async fn symlink_target(client: &Client, attr: &pb::Attr) -> anyhow::Result<Option<String>> {
    if attr.kind != pb::FileKind::Symlink as i32 {
        return Ok(None);
    }
    match client.readlink(inode_ref(attr.inode)).await {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn mkdir(namenode: Option<String>, a: MkdirArgs) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    let mode = 0o777 & !format::umask();
    let mut failed = false;
    for p in &a.paths {
        if let Err(e) = client.mkdir_mode(p, a.parents, mode).await {
            eprintln!("ringfs: {}", change_error(p, &e));
            failed = true;
        }
    }
    Ok(exit_code(failed))
}

pub async fn rm(namenode: Option<String>, a: RmArgs) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    let mut failed = false;
    for p in &a.paths {
        match client.remove(p, a.recursive).await {
            Err(e) if a.force && is_not_found(&e) => {}
            Err(e) => {
                eprintln!("ringfs: {}", change_error(p, &e));
                failed = true;
            }
            Ok(()) => {}
        }
    }
    Ok(exit_code(failed))
}

pub async fn mv(namenode: Option<String>, a: MvArgs) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    if a.sources.len() > 1 {
        require_remote_dir(&client, &a.to).await?;
    }
    each_source(&a.sources, |from| mv_one(&client, from, &a.to)).await
}

async fn mv_one(client: &Client, from: &str, to: &str) -> anyhow::Result<ExitCode> {
    // Like `mv` and `hdfs dfs -mv`: an existing directory as the target receives the source by name;
    // otherwise rename(2) rules (atomic, replaces an existing file).
    let to = match stat_target(client, to).await {
        Ok((dir, attr)) if is_dir(&attr) && basename(from) != "/" => join(&dir, basename(from)),
        _ => to.to_string(),
    };
    client
        .rename(from, &to)
        .await
        .map_err(|e| anyhow!("{}", change_error(from, &e)))?;
    Ok(ExitCode::SUCCESS)
}

fn block_json(b: &pb::LocatedBlock) -> Value {
    json!({
        "id": b.id,
        "generation": b.generation,
        "offset": b.offset,
        "len": b.len,
        "locations": b.locations.iter().map(|l| l.address.clone()).collect::<Vec<_>>(),
        "corrupt": b.corrupt,
    })
}

pub async fn stat(namenode: Option<String>, a: StatArgs) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    // Like stat(1): a path that fails is reported and the next one still goes.
    let mut failed = false;
    let mut values = Vec::new();
    let mut out = std::io::stdout().lock();
    for (i, path) in a.paths.iter().enumerate() {
        match stat_one(&client, path).await {
            Ok(shown) if a.json => values.push(shown.json(path)),
            Ok(shown) => {
                if i > 0 {
                    writeln!(out)?;
                }
                shown.write_text(&mut out, path)?;
            }
            Err(e) => {
                out.flush()?;
                eprintln!("ringfs: {}", crate::chain_text(&e));
                failed = true;
            }
        }
    }
    if a.json {
        match values.as_slice() {
            [] => {}
            [one] if a.paths.len() == 1 => serde_json::to_writer_pretty(&mut out, one)?,
            _ => serde_json::to_writer_pretty(&mut out, &values)?,
        }
        if !values.is_empty() {
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(exit_code(failed))
}

/// What `stat` shows of one path.
struct Shown {
    attr: pb::Attr,
    blocks: Vec<pb::LocatedBlock>,
    target: Option<String>,
}

async fn stat_one(client: &Client, path: &str) -> anyhow::Result<Shown> {
    let attr = client.stat(path).await?;
    let blocks = if attr.kind == pb::FileKind::File as i32 {
        client.block_locations(path_ref(path), 0, 0).await?.blocks
    } else {
        Vec::new()
    };
    let target = symlink_target(client, &attr).await?;
    Ok(Shown {
        attr,
        blocks,
        target,
    })
}

impl Shown {
    fn json(&self, path: &str) -> Value {
        let mut v = attr_json(basename(path), path, &self.attr);
        v["blocks"] = Value::Array(self.blocks.iter().map(block_json).collect());
        if let Some(t) = &self.target {
            v["target"] = json!(t);
        }
        v
    }

    fn write_text(&self, out: &mut impl Write, path: &str) -> std::io::Result<()> {
        let (attr, blocks) = (&self.attr, &self.blocks);
        let kind = format::kind_name(attr.kind);
        match &self.target {
            Some(t) => writeln!(out, "  path: {path} -> {t}")?,
            None => writeln!(out, "  path: {path}")?,
        }
        writeln!(
            out,
            "  kind: {kind}   inode: {}   links: {}",
            attr.inode, attr.nlink
        )?;
        writeln!(
            out,
            "  size: {} ({})",
            attr.size,
            ringfs_proto::units::format_size(attr.size)
        )?;
        writeln!(
            out,
            "  mode: {} ({:04o})   owner: {} ({})   group: {} ({})",
            format::mode_string(attr.kind, attr.mode),
            attr.mode,
            format::user_name(attr.uid),
            attr.uid,
            format::group_name(attr.gid),
            attr.gid
        )?;
        writeln!(out, "  modified: {}", format::time_rfc3339(&attr.mtime))?;
        writeln!(out, "  changed:  {}", format::time_rfc3339(&attr.ctime))?;
        writeln!(out, "  accessed: {}", format::time_rfc3339(&attr.atime))?;
        if attr.kind == pb::FileKind::File as i32 {
            writeln!(
                out,
                "  replication: {}   block size: {}{}",
                attr.replication,
                ringfs_proto::units::format_size(attr.block_size),
                if attr.under_construction {
                    "   (being written)"
                } else {
                    ""
                }
            )?;
            writeln!(out, "  blocks: {}", blocks.len())?;
            for (i, b) in blocks.iter().enumerate() {
                if b.id == 0 {
                    // A hole (a sparse file): no block stores it, it reads as zeros.
                    writeln!(out, "    #{i}: hole offset {} len {}", b.offset, b.len)?;
                    continue;
                }
                let locs: Vec<&str> = b.locations.iter().map(|l| l.address.as_str()).collect();
                writeln!(
                    out,
                    "    #{i}: id {} gen {} offset {} len {} on [{}]{}",
                    b.id,
                    b.generation,
                    b.offset,
                    b.len,
                    locs.join(", "),
                    if b.corrupt { " CORRUPT" } else { "" }
                )?;
            }
        }
        Ok(())
    }
}

/// How long `fsck` waits for a namenode in safe mode to leave it.
const FSCK_SAFE_MODE_WAIT: Duration = Duration::from_secs(60);

/// The one-word verdict, in step with the exit code: CORRUPT only when data is lost (a block
/// with no good replica). A bad replica next to good ones leaves fewer good copies than asked
/// for, which is what UNDER-REPLICATED says; it is repaired like one.
fn fsck_status(f: &pb::FsckResponse) -> &'static str {
    if f.missing > 0 {
        "CORRUPT"
    } else if f.under_replicated > 0 || f.corrupt > 0 {
        "UNDER-REPLICATED"
    } else {
        "HEALTHY"
    }
}

pub async fn fsck(namenode: Option<String>, a: FsckArgs) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    // Right after a namenode restart the blocks not reported yet have no known replica: they
    // would show as missing (CORRUPT, exit 1) until the datanodes' reports arrive. Wait for
    // safe mode to end, a while, before answering.
    let deadline = std::time::Instant::now() + FSCK_SAFE_MODE_WAIT;
    let mut f = client.fsck(&a.path, a.blocks).await?;
    if a.no_wait {
        return fsck_print(&a, &f);
    }
    if f.safe_mode {
        eprintln!(
            "ringfs: the namenode is in safe mode (waiting for block reports); fsck waits for it"
        );
    }
    while f.safe_mode && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        f = client.fsck(&a.path, a.blocks).await?;
    }
    fsck_print(&a, &f)
}

/// Prints an fsck answer; exit 1 when a block is missing.
fn fsck_print(a: &FsckArgs, f: &pb::FsckResponse) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if a.json {
        let problems: Vec<Value> = f
            .problems
            .iter()
            .map(|p| {
                json!({
                    "path": p.path, "block_id": p.block_id, "problem": p.problem,
                    "live_replicas": p.live_replicas, "expected": p.expected,
                })
            })
            .collect();
        let mut v = json!({
            "path": a.path,
            "status": fsck_status(f),
            "files": f.files,
            "directories": f.directories,
            "total_bytes": f.total_bytes,
            "blocks": f.blocks,
            "replicas": f.replicas,
            "healthy_blocks": f.healthy_blocks,
            "under_replicated": f.under_replicated,
            "over_replicated": f.over_replicated,
            "misplaced": f.misplaced,
            "corrupt": f.corrupt,
            "missing": f.missing,
            "corrupt_replicas": f.corrupt_replicas,
            "open_files": f.open_files,
            "inline_files": f.inline_files,
            "inline_bytes": f.inline_bytes,
            "safe_mode": f.safe_mode,
            "problems": problems,
        });
        if a.blocks {
            v["file_blocks"] = Value::Array(
                f.file_blocks
                    .iter()
                    .map(|fb| json!({"path": fb.path, "size": fb.size, "blocks": fb.blocks.iter().map(block_json).collect::<Vec<_>>()}))
                    .collect(),
            );
        }
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        writeln!(out, "fsck {}: {}", a.path, fsck_status(f))?;
        writeln!(
            out,
            "  files: {}   directories: {}   total size: {} ({})",
            f.files,
            f.directories,
            f.total_bytes,
            ringfs_proto::units::format_size(f.total_bytes)
        )?;
        writeln!(
            out,
            "  blocks: {}   replicas: {}   healthy blocks: {}",
            f.blocks, f.replicas, f.healthy_blocks
        )?;
        if f.inline_files > 0 {
            writeln!(
                out,
                "  inline files (content in the namenode metadata, no blocks): {} ({})",
                f.inline_files,
                ringfs_proto::units::format_size(f.inline_bytes)
            )?;
        }
        writeln!(
            out,
            "  under-replicated: {}   over-replicated: {}   misplaced: {}",
            f.under_replicated, f.over_replicated, f.misplaced
        )?;
        writeln!(
            out,
            "  corrupt blocks: {}   missing blocks: {}   corrupt replicas: {}",
            f.corrupt, f.missing, f.corrupt_replicas
        )?;
        writeln!(
            out,
            "  open files: {}{}",
            f.open_files,
            if f.safe_mode {
                "   namenode in SAFE MODE"
            } else {
                ""
            }
        )?;
        for p in &f.problems {
            writeln!(
                out,
                "  {}: block {}: {} ({} of {} replicas live)",
                p.path, p.block_id, p.problem, p.live_replicas, p.expected
            )?;
        }
        for fb in &f.file_blocks {
            writeln!(out, "  {} ({} bytes)", fb.path, fb.size)?;
            for b in &fb.blocks {
                let locs: Vec<&str> = b.locations.iter().map(|l| l.address.as_str()).collect();
                writeln!(
                    out,
                    "    block {} gen {} len {} on [{}]",
                    b.id,
                    b.generation,
                    b.len,
                    locs.join(", ")
                )?;
            }
        }
    }
    out.flush()?;
    // Like `hdfs fsck`'s CORRUPT: a script's `fsck / && ...` must not go on when a block has no
    // good replica left. A block with a bad replica and good ones is repaired, not lost.
    Ok(if f.missing > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn report(namenode: Option<String>, a: JsonArg) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    let r = client.report().await?;
    let live = r.datanodes.iter().filter(|d| d.state == "live").count();
    let dead = r.datanodes.iter().filter(|d| d.state == "dead").count();
    let mut out = std::io::stdout().lock();
    if a.json {
        let nodes: Vec<Value> = r
            .datanodes
            .iter()
            .map(|d| {
                json!({
                    "id": d.id, "address": d.address, "rack": d.rack, "state": d.state,
                    "capacity": d.capacity, "used": d.used, "remaining": d.remaining, "blocks": d.blocks,
                    "last_heartbeat_ms": d.last_heartbeat_ms, "pending_commands": d.pending_commands,
                    "decommission_remaining": d.decommission_remaining,
                })
            })
            .collect();
        let v = json!({
            "datanodes": nodes,
            "live": live,
            "dead": dead,
            "safe_mode": r.safe_mode,
            "storage_failure": (!r.storage_failure.is_empty()).then_some(&r.storage_failure),
            "blocks": r.blocks,
            "under_replicated": r.under_replicated,
            "over_replicated": r.over_replicated,
            "misplaced": r.misplaced,
            "corrupt": r.corrupt,
            "missing": r.missing,
            "pending_replications": r.pending_replications,
            "capacity": r.capacity,
            "used": r.used,
            "remaining": r.remaining,
            "default_replication": r.default_replication,
            "default_block_size": r.default_block_size,
        });
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        let fs = ringfs_proto::units::format_size;
        writeln!(
            out,
            "namenode {}{}",
            client.namenode_addr(),
            if r.safe_mode { "   SAFE MODE" } else { "" }
        )?;
        if !r.storage_failure.is_empty() {
            writeln!(
                out,
                "READ-ONLY: metadata storage failed (retried every 2 s), no change is accepted until it works: {}",
                r.storage_failure
            )?;
        }
        writeln!(
            out,
            "capacity: {}   used: {}   remaining: {}",
            fs(r.capacity),
            fs(r.used),
            fs(r.remaining)
        )?;
        writeln!(
            out,
            "blocks: {}   under-replicated: {}   over-replicated: {}   misplaced: {}   corrupt: {}   missing: {}   pending copies: {}",
            r.blocks, r.under_replicated, r.over_replicated, r.misplaced, r.corrupt, r.missing, r.pending_replications
        )?;
        writeln!(
            out,
            "default replication: {}   default block size: {}",
            r.default_replication,
            fs(r.default_block_size)
        )?;
        writeln!(
            out,
            "datanodes: {} live, {} dead, {} total",
            live,
            dead,
            r.datanodes.len()
        )?;
        writeln!(
            out,
            "  {:<22} {:<16} {:<10} {:>11} {:>11} {:>8} {:>9}",
            "ADDRESS", "STATE", "RACK", "CAPACITY", "USED", "BLOCKS", "HEARTBEAT"
        )?;
        for d in &r.datanodes {
            writeln!(
                out,
                "  {:<22} {:<16} {:<10} {:>11} {:>11} {:>8} {:>7}ms",
                d.address,
                d.state,
                if d.rack.is_empty() { "-" } else { &d.rack },
                fs(d.capacity),
                fs(d.used),
                d.blocks,
                d.last_heartbeat_ms
            )?;
        }
        for d in r.datanodes.iter().filter(|d| d.state == "decommissioning") {
            writeln!(
                out,
                "  {}: decommissioning, {} block(s) still to copy to other nodes",
                d.address, d.decommission_remaining
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The `report` state of the datanode at `address` ("" if the namenode does not know it).
fn state_of(r: &pb::ReportResponse, address: &str) -> String {
    r.datanodes
        .iter()
        .find(|d| d.address == address)
        .map(|d| d.state.clone())
        .unwrap_or_default()
}

pub async fn decommission(namenode: Option<String>, address: &str) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    client.decommission(address).await?;
    let r = client.report().await?;
    match state_of(&r, address).as_str() {
        "dead" => println!(
            "{address} is dead: it is decommissioned if it comes back; its blocks are copied \
             from their other replicas meanwhile (see `ringfs report`)"
        ),
        "decommissioned" => println!("{address} is decommissioned: no block needs it"),
        _ => println!(
            "decommissioning {address}: its blocks are being copied elsewhere (see `ringfs report`)"
        ),
    }
    let in_service = r.datanodes.iter().filter(|d| d.state == "live").count();
    if in_service < r.default_replication as usize {
        eprintln!(
            "ringfs: warning: {in_service} datanodes stay in service, fewer than the default \
             replication ({}): blocks with a replica on {address} cannot all be copied elsewhere \
             until more datanodes join",
            r.default_replication
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn recommission(namenode: Option<String>, address: &str) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    let was = state_of(&client.report().await?, address);
    client.recommission(address).await?;
    match was.as_str() {
        "live" => println!("{address} was in service already"),
        "dead" => println!("{address} is dead: back in service if it comes back"),
        _ => println!("{address} is back in service (takes new blocks again)"),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn forget(namenode: Option<String>, address: &str) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    client.forget_datanode(address).await?;
    println!("{address} is forgotten: `report` no longer lists it");
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------------------------ mount

/// Makes sure `m` can be a mountpoint: an existing directory (created when missing).
pub fn check_mountpoint(m: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(m) {
        // A live mount, checked before anything else, or `mounted at` would be announced for the
        // mount that is already there. A stale one (its process killed) may still answer stat
        // from the kernel's cache, never statfs (ENOTCONN): `mount` cleans it.
        Ok(_) if is_mounted(m) && statfs_answers(m) => bail!(
            "{}: already mounted (unmount it first: ringfs umount {})",
            m.display(),
            m.display()
        ),
        Ok(meta) if meta.is_dir() => {
            // Allowed, as by libfuse and sshfs, but a first-time user may take the hidden files
            // for lost ones.
            if std::fs::read_dir(m).is_ok_and(|mut d| d.next().is_some()) {
                eprintln!(
                    "ringfs: warning: {} is not empty: its files are hidden while ringfs is mounted there",
                    m.display()
                );
            }
            Ok(())
        }
        Ok(_) => bail!("{}: not a directory", m.display()),
        // A stale mount of a killed process: `mount` cleans it.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(m).map_err(|e| {
                anyhow!(
                    "{}: cannot create mountpoint: {}",
                    m.display(),
                    io_reason(&e)
                )
            })
        }
        Err(e) => bail!("{}: {}", m.display(), io_reason(&e)),
    }
}

fn mount_options(allow_other: bool, read_only: bool, ttl: Duration) -> ringfs_fuse::MountOptions {
    ringfs_fuse::MountOptions {
        allow_other,
        read_only,
        attr_ttl: ttl,
        entry_ttl: ttl,
        ..Default::default()
    }
}

/// Whether `m` is listed as a mountpoint in /proc/self/mountinfo.
fn is_mounted(m: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(m) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// The file system type of `m` when statfs answers (a stale FUSE mount fails with ENOTCONN:
/// statfs always reaches the file system's daemon, where stat may be answered from a cache).
fn statfs_type(m: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(m.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we pass; `c` is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut st) == 0).then_some(st.f_type as i64)
    }
}

fn statfs_answers(m: &Path) -> bool {
    statfs_type(m).is_some()
}

/// Whether `m` is the root of a FUSE file system that answers.
fn is_live_fuse(m: &Path) -> bool {
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    statfs_type(m) == Some(FUSE_SUPER_MAGIC)
}

/// Prints `mounted at PATH` on stdout once the kernel lists the mount (scripts wait for it).
/// Only once the mount answers: a stale mount of a killed process (cleaned just before this
/// one mounts) is listed too, and announcing it let a script read the empty directory under it.
fn announce_when_mounted(m: &Path) -> tokio::task::JoinHandle<()> {
    let m = m.to_path_buf();
    tokio::spawn(async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let probe = m.clone();
            // statfs reaches this process's own FUSE session: not on a runtime worker.
            let live =
                tokio::task::spawn_blocking(move || is_mounted(&probe) && is_live_fuse(&probe))
                    .await
                    .unwrap_or(false);
            if live {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "mounted at {}", m.display());
                let _ = out.flush();
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
}

/// How a mount talks to the cluster: like every client, except that its writes go on with the
/// live datanodes when fewer than a file's replication are up (a mount that fails every write
/// while one datanode of three is down is no file system); `put` stays strict.
fn mount_client_config() -> ClientConfig {
    ClientConfig {
        min_replicas: 1,
        ..ClientConfig::default()
    }
}

/// Mounts the cluster at `m` in the background until `stop` turns true (for `up --mount`).
pub async fn spawn_mount(
    nn_addr: &str,
    m: &Path,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    check_mountpoint(m)?;
    let client = connect_with(Some(nn_addr.to_string()), mount_client_config()).await?;
    let mut stop = stop.clone();
    let m = m.to_path_buf();
    let announce = announce_when_mounted(&m);
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let r = ringfs_fuse::mount(
            client,
            &m,
            mount_options(false, false, std::time::Duration::from_secs(1)),
            shutdown,
        )
        .await;
        announce.abort();
        r.map_err(anyhow::Error::from)
    }))
}

pub async fn mount(namenode: Option<String>, a: MountArgs) -> anyhow::Result<ExitCode> {
    check_mountpoint(&a.mountpoint)?;
    let mut cfg = mount_client_config();
    cfg.short_circuit &= !a.no_short_circuit;
    cfg.replication = a.replication.unwrap_or(cfg.replication);
    cfg.block_size = a.block_size.unwrap_or(cfg.block_size);
    let client = connect_with(namenode, cfg).await?;
    let announce = announce_when_mounted(&a.mountpoint);
    let opts = mount_options(a.allow_other, a.read_only, a.ttl);
    let r = ringfs_fuse::mount(client, &a.mountpoint, opts, crate::server::terminated()).await;
    announce.abort();
    r?;
    Ok(ExitCode::SUCCESS)
}

pub fn umount(a: UmountArgs) -> anyhow::Result<ExitCode> {
    ringfs_fuse::unmount(&a.mountpoint)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_errors_name_the_target_once() {
        let unnamed = anyhow::anyhow!("metadata storage failed: /nn: appending to the log: full");
        assert_eq!(
            crate::chain_text(&naming(unnamed, "/d/f")),
            "/d/f: metadata storage failed: /nn: appending to the log: full"
        );
        let named = anyhow::anyhow!("/d/f: already exists");
        assert_eq!(
            crate::chain_text(&naming(named, "/d/f")),
            "/d/f: already exists"
        );
    }

    #[test]
    fn put_temporaries_fit_the_name_and_path_limits_of_any_target() {
        use ringfs_namenode::path::{NAME_MAX, PATH_MAX};
        let tag = "1a2b3c4d";
        assert_eq!(put_temp_path("/d/f", tag), "/d/.f.ringfs-put-1a2b3c4d");
        assert_eq!(put_temp_path("/f", tag), "/.f.ringfs-put-1a2b3c4d");
        let deep = format!("/{}", vec!["d".repeat(200); 20].join("/"));
        for name_len in [1, 10, 19, 20, 40, 70, 200, 255] {
            for pad in 0..60 {
                let dir = format!("{deep}/{}", "p".repeat(pad + 1));
                let target = format!("{dir}/{}", "n".repeat(name_len));
                if target.len() > PATH_MAX {
                    continue;
                }
                let tmp = put_temp_path(&target, tag);
                let name = tmp.rsplit('/').next().unwrap();
                assert!(tmp.starts_with(&format!("{dir}/.")), "{tmp}");
                assert!(name.ends_with(".ringfs-put-1a2b3c4d"), "{name}");
                assert!(name.len() <= NAME_MAX, "{name_len}/{pad}: {}", name.len());
                // Only a target within a few bytes of the limit with a short name cannot have
                // a temporary that fits (put then fails with "file name too long").
                if target.len() + 20 <= PATH_MAX || name_len >= 20 {
                    assert!(tmp.len() <= PATH_MAX, "{name_len}/{pad}: {}", tmp.len());
                }
            }
        }
        // Distinct long names keep distinct temporaries.
        let (a, b) = ("a".repeat(250), "b".repeat(250));
        assert_ne!(
            put_temp_path(&format!("/{a}"), tag),
            put_temp_path(&format!("/{b}"), tag)
        );
    }

    #[test]
    fn a_change_cut_off_by_a_broken_connection_names_the_path_and_the_unknown_outcome() {
        // `rm -r /tree` while the namenode is killed: its transport error named neither.
        let broken = ClientError::Status {
            kind: ErrorKind::Io,
            message: "namenode 127.0.0.1:1: transport error: connection error: broken pipe".into(),
        };
        let m = change_error("/tree", &broken);
        assert!(
            m.starts_with("/tree: namenode 127.0.0.1:1: transport error"),
            "{m}"
        );
        assert!(m.contains("may or may not have been made"), "{m}");
        let refused = ClientError::Status {
            kind: ErrorKind::NotFound,
            message: "/tree: no such file or directory".into(),
        };
        assert_eq!(
            change_error("/tree", &refused),
            "/tree: no such file or directory"
        );
    }

    #[test]
    fn io_reasons_read_like_the_servers() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_reason(&e), "no such file or directory");
    }
}

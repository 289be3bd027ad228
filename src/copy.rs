//! `ringfs cp`: copies inside ringfs, like `hdfs dfs -cp` and `cp -r`. The bytes go through this
//! client (read and verified like `get`, written through a new pipeline like `put`), so a copy
//! is an ordinary file with its own blocks. A file keeps its replication and block size; modes
//! come along less the umask. A file is written under a hidden temporary name and renamed into
//! place; a directory is built under one and renamed at the end, so a failed copy leaves nothing.

use crate::commands::{
    change_error, connect, each_source, is_not_found, put_file, require_remote_dir, stat_target,
    PutFile,
};
use crate::format::{self, basename, is_dir, join};
use crate::tree::{build_in_place, copy_files, DIR_MODE_BITS, FILE_MODE_BITS};
use crate::CpArgs;
use anyhow::{anyhow, bail};
use ringfs_client::write::Bytes;
use ringfs_client::{inode_ref, path_ref, pb, Client};
use std::process::ExitCode;
use tokio::sync::mpsc;

pub async fn cp(namenode: Option<String>, a: CpArgs) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    if a.sources.len() > 1 {
        require_remote_dir(&client, &a.dst).await?;
    }
    each_source(&a.sources, |src| cp_one(&client, &a, src)).await
}

/// `cp` of one file or directory to `a.dst`.
async fn cp_one(client: &Client, a: &CpArgs, src: &str) -> anyhow::Result<ExitCode> {
    let src = src.trim_end_matches('/');
    let src = if src.is_empty() { "/" } else { src };
    // A symlink named as the source is copied as what it points to, as cp does.
    let (src, src_attr) = client.resolve(src).await?;
    let src = src.as_str();
    let mut target = a.dst.clone();
    match stat_target(client, &a.dst).await {
        Ok((dir, attr)) if is_dir(&attr) => target = join(&dir, basename(src)),
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let existing = stat_if_exists(client, &target).await?;
    if !is_dir(&src_attr) {
        match existing {
            Some(attr) if attr.inode == src_attr.inode => {
                bail!("{src} and {target} are the same file")
            }
            Some(attr) if is_dir(&attr) => bail!("{target}: is a directory"),
            Some(_) if !a.force => bail!("{target}: already exists"),
            _ => {}
        }
        client
            .check_live_datanodes(src_attr.replication)
            .await
            .map_err(|e| anyhow!("{target}: {e}"))?;
        copy_file(client, src, &src_attr, &target, a.force, true).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if target == src || target.starts_with(&format!("{}/", src.trim_end_matches('/'))) {
        bail!("{target}: cannot copy the directory {src} into itself");
    }
    if existing.is_some() {
        bail!("{target}: already exists");
    }
    let mode = src_attr.mode & DIR_MODE_BITS & !format::umask();
    build_in_place(client, &target, mode, |tmp| {
        let client = &client;
        async move { copy_tree(client, src, &tmp).await }
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn stat_if_exists(client: &Client, path: &str) -> anyhow::Result<Option<pb::Attr>> {
    match client.stat(path).await {
        Ok(attr) => Ok(Some(attr)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Copies the directory `src` and everything under it to the new directory `dst`: directories
/// first (parents before children), then files, then symlinks; directory modes last, so a
/// read-only directory is filled before it gets its mode.
async fn copy_tree(client: &Client, src: &str, dst: &str) -> anyhow::Result<()> {
    let nodes = crate::tree::collect(client, src).await?;
    let umask = format::umask();
    let at = |path: &str| format!("{dst}{}", &path[src.len()..]);
    let (mut files, mut links, mut dirs, mut specials) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (path, attr) in nodes {
        match pb::FileKind::try_from(attr.kind) {
            Ok(pb::FileKind::Directory) => dirs.push((path, attr)),
            Ok(pb::FileKind::File) => files.push((path, attr)),
            Ok(pb::FileKind::Symlink) => links.push((path, attr)),
            // Fifos, sockets and devices (made through a mount) are copied as such, as `cp -r`
            // does: ringfs stores them as it stores any inode.
            Ok(kind) => specials.push((path, attr, kind)),
            Err(_) => bail!("{path}: unknown file kind {}", attr.kind),
        }
    }
    let replication = files.iter().map(|(_, a)| a.replication).max().unwrap_or(0);
    if replication > 0 {
        client
            .check_live_datanodes(replication)
            .await
            .map_err(|e| anyhow!("{dst}: {e}"))?;
    }
    // The root exists already (`build_in_place` made it and gives it its mode).
    dirs.retain(|(path, _)| path != src);
    for (path, attr) in &dirs {
        client
            .mkdir_mode(
                &at(path),
                false,
                (attr.mode & DIR_MODE_BITS & !umask) | 0o700,
            )
            .await
            .map_err(|e| anyhow!("{}", change_error(&at(path), &e)))?;
    }
    copy_files(
        files,
        |(_, attr)| attr.size,
        |(path, attr)| {
            let dest = at(&path);
            async move { copy_file(client, &path, &attr, &dest, false, false).await }
        },
    )
    .await?;
    for (path, attr, kind) in &specials {
        client
            .mknod(&at(path), *kind, attr.mode & 0o7777 & !umask, attr.rdev)
            .await
            .map_err(|e| anyhow!("{}", change_error(&at(path), &e)))?;
    }
    for (path, attr) in &links {
        let link = client
            .readlink(inode_ref(attr.inode))
            .await
            .map_err(|e| anyhow!("{path}: {e}"))?;
        client
            .symlink(&link, &at(path))
            .await
            .map_err(|e| anyhow!("{}", change_error(&at(path), &e)))?;
    }
    for (path, attr) in dirs.iter().rev() {
        let mode = attr.mode & DIR_MODE_BITS & !umask;
        if mode | 0o700 != mode {
            client
                .chmod(path_ref(&at(path)), mode)
                .await
                .map_err(|e| anyhow!("{}", change_error(&at(path), &e)))?;
        }
    }
    Ok(())
}

/// Copies the file `src` (attributes `attr`) to `dst` through this client.
async fn copy_file(
    client: &Client,
    src: &str,
    attr: &pb::Attr,
    dst: &str,
    force: bool,
    progress: bool,
) -> anyhow::Result<()> {
    let mut reader = client
        .open(inode_ref(attr.inode))
        .await
        .map_err(|e| match e.kind() {
            // Gone between the lookup of its name and the open.
            ringfs_proto::ErrorKind::Stale => {
                anyhow!("{src}: deleted or replaced by another client while being copied")
            }
            _ => crate::commands::naming(e.into(), src),
        })?;
    let (tx, rx) = mpsc::channel::<anyhow::Result<Bytes>>(4);
    let src_shown = src.to_string();
    tokio::spawn(async move {
        let (bytes_tx, mut bytes_rx) = mpsc::channel::<Bytes>(4);
        let read = async move { reader.send_to(&bytes_tx).await };
        let forward = async {
            while let Some(b) = bytes_rx.recv().await {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
        };
        let (read, ()) = tokio::join!(read, forward);
        if let Err(e) = read {
            let _ = tx.send(Err(anyhow!("{src_shown}: {e}"))).await;
        }
    });
    let how = PutFile {
        mode: attr.mode & FILE_MODE_BITS & !format::umask(),
        replication: attr.replication,
        block_size: attr.block_size,
        force,
        progress,
    };
    put_file(client, rx, Some(attr.size), dst, &how).await
}

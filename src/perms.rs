//! `chmod` and `chown` by path, like chmod(1)/chown(1) and `hdfs dfs -chmod/-chown`, recursive
//! with `-R`. Owners and groups are numbers on ringfs (the mount shows them as they are); names
//! are looked up in this host's user and group databases.

use crate::commands::exit_code;
use crate::commands::{change_error, connect};
use crate::format::is_dir;
use crate::mode::ModeChange;
use crate::{ChmodArgs, ChownArgs};
use anyhow::{anyhow, bail};
use ringfs_client::{inode_ref, pb, Client, ClientError};
use std::ffi::CString;
use std::process::ExitCode;

pub async fn chmod(namenode: Option<String>, a: ChmodArgs) -> anyhow::Result<ExitCode> {
    let change = ModeChange::parse(&a.mode)?;
    let client = connect(namenode).await?;
    let umask = crate::format::umask();
    each_node(&client, &a.paths, a.recursive, |client, node| {
        let change = change.clone();
        async move {
            // A symlink's own mode means nothing: one named on the command line is followed, as
            // chmod(1) does; one met in a tree is left alone (chmod -R does not follow them).
            let (path, attr) = if is_symlink(&node.attr) {
                if !node.named {
                    return Ok(());
                }
                client.resolve(&node.path).await?
            } else {
                (node.path.clone(), node.attr)
            };
            let mode = change.apply(attr.mode, is_dir(&attr), umask);
            if mode != attr.mode & 0o7777 {
                by_inode(
                    client.chmod(inode_ref(attr.inode), mode).await,
                    &attr,
                    &path,
                )?;
            }
            Ok(())
        }
    })
    .await
}

pub async fn chown(namenode: Option<String>, a: ChownArgs) -> anyhow::Result<ExitCode> {
    let (uid, gid) = parse_owner(&a.owner)?;
    let client = connect(namenode).await?;
    // A symlink itself changes, never what it points to (chown -h; and -R does not follow them):
    // following links met in a tree would let whoever planted one hand a chown -R any file.
    each_node(&client, &a.paths, a.recursive, |client, node| async move {
        let attr = node.attr;
        if uid.is_none_or(|u| u == attr.uid) && gid.is_none_or(|g| g == attr.gid) {
            return Ok(());
        }
        by_inode(
            client.chown(inode_ref(attr.inode), uid, gid).await,
            &attr,
            &node.path,
        )?;
        Ok(())
    })
    .await
}

fn is_symlink(attr: &pb::Attr) -> bool {
    attr.kind == pb::FileKind::Symlink as i32
}

/// The result of a call made by inode, with the path in its error where the namenode could only
/// name the inode.
fn by_inode<T>(r: Result<T, ClientError>, attr: &pb::Attr, path: &str) -> Result<T, ClientError> {
    r.map_err(|e| ClientError::Status {
        kind: e.kind(),
        message: e
            .to_string()
            .replace(&format!("inode {}", attr.inode), path),
    })
}

/// A node `each_node` hands over.
struct Node {
    path: String,
    attr: pb::Attr,
    /// Named on the command line (not met inside a tree).
    named: bool,
}

/// Runs `f` on every path (and, with `recursive`, everything under it); an error is printed
/// and the rest still done, like chmod(1); the exit code says whether anything failed.
async fn each_node<F, Fut>(
    client: &Client,
    paths: &[String],
    recursive: bool,
    f: F,
) -> anyhow::Result<ExitCode>
where
    F: Fn(Client, Node) -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let mut failed = false;
    for p in paths {
        let nodes = if recursive {
            crate::tree::collect_reporting(client, p, &mut failed).await
        } else {
            client
                .stat(p)
                .await
                .map(|attr| vec![(p.clone(), attr)])
                .map_err(Into::into)
        };
        let nodes = match nodes {
            Ok(n) => n,
            Err(e) => {
                eprintln!("ringfs: {e}");
                failed = true;
                continue;
            }
        };
        for (i, (path, attr)) in nodes.into_iter().enumerate() {
            let node = Node {
                path: path.clone(),
                attr,
                named: i == 0,
            };
            if let Err(e) = f(client.clone(), node).await {
                eprintln!("ringfs: {}", change_error(&path, &e));
                failed = true;
            }
        }
    }
    Ok(exit_code(failed))
}

/// `OWNER`, `OWNER:GROUP`, `OWNER:` (chown(1): the owner's login group) or `:GROUP`; each a
/// number or a name known to this host.
fn parse_owner(s: &str) -> anyhow::Result<(Option<u32>, Option<u32>)> {
    if s.matches(':').count() > 1 {
        bail!("invalid owner {s:?}: give OWNER, OWNER:GROUP or :GROUP");
    }
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    if user.is_empty() && group.is_none_or(str::is_empty) {
        bail!("invalid owner {s:?}: give OWNER, OWNER:GROUP or :GROUP");
    }
    let mut uid = None;
    let mut login_gid = None;
    if !user.is_empty() {
        let (u, g) = lookup_user(user)?;
        uid = Some(u);
        login_gid = g;
    }
    let gid = match group {
        Some("") if !user.is_empty() => Some(
            login_gid.ok_or_else(|| anyhow!("{user}: no login group known for a numeric owner"))?,
        ),
        Some(g) => Some(lookup_group(g)?),
        None => None,
    };
    Ok((uid, gid))
}

/// A user's uid and login gid (`None` for a number that names no local user).
fn lookup_user(name: &str) -> anyhow::Result<(u32, Option<u32>)> {
    let c = CString::new(name).map_err(|_| anyhow!("invalid user name {name:?}"))?;
    // SAFETY: getpwnam with a NUL-terminated name; the result is read before any other call
    // that could reuse its static buffer (the CLI makes no other such call concurrently).
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if !pw.is_null() {
        // SAFETY: non-null pointer returned by getpwnam, valid until the next getpw* call.
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        return Ok((uid, Some(gid)));
    }
    match name.parse::<u32>() {
        // -1 means "leave as it is" to chown(2): not an owner.
        Ok(u32::MAX) => bail!("invalid user {name:?}"),
        Ok(uid) => {
            // SAFETY: getpwuid with a plain number; the result is read at once, as above.
            let pw = unsafe { libc::getpwuid(uid) };
            // SAFETY: non-null pointer returned by getpwuid.
            let gid = (!pw.is_null()).then(|| unsafe { (*pw).pw_gid });
            Ok((uid, gid))
        }
        Err(_) => bail!("{name}: no such user"),
    }
}

fn lookup_group(name: &str) -> anyhow::Result<u32> {
    let c = CString::new(name).map_err(|_| anyhow!("invalid group name {name:?}"))?;
    // SAFETY: as in lookup_user, for getgrnam.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if !gr.is_null() {
        // SAFETY: non-null pointer returned by getgrnam.
        return Ok(unsafe { (*gr).gr_gid });
    }
    match name.parse::<u32>() {
        Ok(u32::MAX) => bail!("invalid group {name:?}"),
        Ok(gid) => Ok(gid),
        Err(_) => bail!("{name}: no such group"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_parse_like_chown() {
        assert_eq!(parse_owner("1000").unwrap(), (Some(1000), None));
        assert_eq!(parse_owner("1000:50").unwrap(), (Some(1000), Some(50)));
        assert_eq!(parse_owner(":50").unwrap(), (None, Some(50)));
        assert_eq!(parse_owner("root").unwrap(), (Some(0), None));
        assert_eq!(parse_owner("root:").unwrap(), (Some(0), Some(0)));
        assert_eq!(parse_owner("root:root").unwrap(), (Some(0), Some(0)));
        assert!(parse_owner("").is_err());
        assert!(parse_owner(":").is_err());
        assert!(parse_owner("no-such-user-here").is_err());
        assert!(parse_owner("4294967295").is_err());
        assert!(parse_owner(":4294967295").is_err());
        assert!(parse_owner("a:b:c").is_err());
        // A number that names no local user has no login group to take.
        assert!(parse_owner("4000000000:").is_err());
    }
}

//! Output formatting shared by the client commands: kinds, mode strings, times, owner names, JSON.

use ringfs_client::pb;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

static UMASK: OnceLock<u32> = OnceLock::new();

/// Reads the process umask once, before any thread exists (umask(2) can only be read by setting it).
pub fn init_umask() {
    // SAFETY: umask(2) cannot fail; it is set straight back. Called at the start of main (one thread).
    let m = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    let _ = UMASK.set(m as u32);
}

/// The process umask (022 if unknown).
pub fn umask() -> u32 {
    *UMASK.get().unwrap_or(&0o022)
}

/// "file", "dir", "symlink", ... (the `kind` of JSON output).
pub fn kind_name(kind: i32) -> &'static str {
    match pb::FileKind::try_from(kind) {
        Ok(pb::FileKind::File) => "file",
        Ok(pb::FileKind::Directory) => "dir",
        Ok(pb::FileKind::Symlink) => "symlink",
        Ok(pb::FileKind::Fifo) => "fifo",
        Ok(pb::FileKind::Socket) => "socket",
        Ok(pb::FileKind::CharDevice) => "char_device",
        Ok(pb::FileKind::BlockDevice) => "block_device",
        _ => "unknown",
    }
}

pub fn is_dir(a: &pb::Attr) -> bool {
    a.kind == pb::FileKind::Directory as i32
}

/// `-rw-r--r--`, with setuid/setgid/sticky shown the way ls(1) does.
pub fn mode_string(kind: i32, mode: u32) -> String {
    let t = match pb::FileKind::try_from(kind) {
        Ok(pb::FileKind::Directory) => 'd',
        Ok(pb::FileKind::Symlink) => 'l',
        Ok(pb::FileKind::Fifo) => 'p',
        Ok(pb::FileKind::Socket) => 's',
        Ok(pb::FileKind::CharDevice) => 'c',
        Ok(pb::FileKind::BlockDevice) => 'b',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    let bit = |b: u32, c: char| if mode & b != 0 { c } else { '-' };
    let exec =
        |x: u32, special: u32, on: char, off: char| match (mode & x != 0, mode & special != 0) {
            (true, true) => on,
            (false, true) => off,
            (true, false) => 'x',
            (false, false) => '-',
        };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(exec(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(exec(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(exec(0o001, 0o1000, 't', 'T'));
    s
}

/// Year, month, day, hour, minute and second (UTC) of `secs` since the epoch, for any `secs`:
/// times before 1970 and after 9999 are file times too (`touch -d 1960-01-01`), which the
/// formatting crates refuse. Days to a civil date as in H. Hinnant's `civil_from_days`.
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let rem = rem as u32;
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60)
}

/// "YYYY-MM-DD HH:MM" and the seconds, of a time (UTC).
fn date_time(t: &pb::Time) -> (String, u32) {
    let (y, mo, d, h, mi, s) = civil(t.secs);
    (format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}"), s)
}

/// RFC 3339 in UTC with nanoseconds ("" when absent).
pub fn time_rfc3339(t: &Option<pb::Time>) -> String {
    match t {
        Some(t) => {
            let (date, secs) = date_time(t);
            format!(
                "{}:{secs:02}.{:09}Z",
                date.replace(' ', "T"),
                t.nanos.min(999_999_999)
            )
        }
        None => String::new(),
    }
}

/// "2026-11-27 21:04" (UTC), for `ls -l`.
pub fn time_short(t: &Option<pb::Time>) -> String {
    match t {
        Some(t) => date_time(t).0,
        None => "-".to_string(),
    }
}

fn lookup_name(cache: &Mutex<HashMap<u32, String>>, id: u32, user: bool) -> String {
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = cache.get(&id) {
        return n.clone();
    }
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwuid_r/getgrgid_r write into `buf` (its real length is passed) and into the
    // zeroed struct; the name pointer is read only when the call succeeded and found an entry.
    let name = unsafe {
        if user {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut res: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(id, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut res);
            (rc == 0 && !res.is_null()).then(|| {
                std::ffi::CStr::from_ptr(pw.pw_name)
                    .to_string_lossy()
                    .into_owned()
            })
        } else {
            let mut gr: libc::group = std::mem::zeroed();
            let mut res: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrgid_r(id, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut res);
            (rc == 0 && !res.is_null()).then(|| {
                std::ffi::CStr::from_ptr(gr.gr_name)
                    .to_string_lossy()
                    .into_owned()
            })
        }
    };
    let name = name.unwrap_or_else(|| id.to_string());
    cache.insert(id, name.clone());
    name
}

/// A user name for `uid` (the number when unknown here).
pub fn user_name(uid: u32) -> String {
    static CACHE: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    lookup_name(CACHE.get_or_init(Default::default), uid, true)
}

/// A group name for `gid` (the number when unknown here).
pub fn group_name(gid: u32) -> String {
    static CACHE: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    lookup_name(CACHE.get_or_init(Default::default), gid, false)
}

/// The JSON fields every entry shows (`ls --json`, `stat --json`).
pub fn attr_json(name: &str, path: &str, a: &pb::Attr) -> Value {
    let mut v = json!({
        "name": name,
        "path": path,
        "kind": kind_name(a.kind),
        "inode": a.inode,
        "size": a.size,
        "mode": a.mode,
        "mode_string": mode_string(a.kind, a.mode),
        "nlink": a.nlink,
        "uid": a.uid,
        "gid": a.gid,
        "owner": user_name(a.uid),
        "group": group_name(a.gid),
        "mtime": time_rfc3339(&a.mtime),
        "mtime_secs": a.mtime.as_ref().map(|t| t.secs).unwrap_or(0),
        "ctime": time_rfc3339(&a.ctime),
        "atime": time_rfc3339(&a.atime),
    });
    if a.kind == pb::FileKind::File as i32 {
        v["replication"] = json!(a.replication);
        v["block_size"] = json!(a.block_size);
        v["under_construction"] = json!(a.under_construction);
        v["generation"] = json!(a.generation);
        v["inline"] = json!(a.inline);
    }
    v
}

/// One `ls -l` line.
pub fn long_line(name: &str, a: &pb::Attr, human: bool) -> String {
    let size = if human {
        ringfs_proto::units::format_size(a.size)
    } else {
        a.size.to_string()
    };
    format!(
        "{} {:>3} {:<8} {:<8} {:>12} {} {}",
        mode_string(a.kind, a.mode),
        a.nlink,
        user_name(a.uid),
        group_name(a.gid),
        size,
        time_short(&a.mtime),
        name
    )
}

/// `name` with control characters (newline, escape, ...) shown as `?`, as ls(1) shows names on a
/// terminal.
pub fn printable(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        name.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        name.into()
    }
}

/// The last component of a path ("/" for the root).
pub fn basename(path: &str) -> &str {
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        return "/";
    }
    t.rsplit('/').next().unwrap_or(t)
}

/// The directory part of a path: "/" for an entry of the root, "" for a bare name.
pub fn dirname(path: &str) -> &str {
    match path.trim_end_matches('/').rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "",
    }
}

/// `dir/name` without doubled slashes.
pub fn join(dir: &str, name: &str) -> String {
    let d = dir.trim_end_matches('/');
    format!("{d}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings_match_ls() {
        let f = pb::FileKind::File as i32;
        let d = pb::FileKind::Directory as i32;
        assert_eq!(mode_string(f, 0o644), "-rw-r--r--");
        assert_eq!(mode_string(d, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(d, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(f, 0o4754), "-rwsr-xr--");
        assert_eq!(mode_string(f, 0o2640), "-rw-r-S---");
    }

    #[test]
    fn control_characters_print_as_question_marks() {
        assert_eq!(printable("a\nb\x1b[31mc"), "a?b?[31mc");
        assert_eq!(printable("plain é"), "plain é");
    }

    #[test]
    fn paths_split_and_join() {
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(basename("/a/b/"), "b");
        assert_eq!(basename("/"), "/");
        assert_eq!(basename("file.txt"), "file.txt");
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("/a/", "x"), "/a/x");
        assert_eq!(join("/a", "x"), "/a/x");
    }

    #[test]
    fn times_format_in_utc() {
        let t = Some(pb::Time { secs: 0, nanos: 5 });
        assert_eq!(time_rfc3339(&t), "1970-01-01T00:00:00.000000005Z");
        assert_eq!(time_short(&t), "1970-01-01 00:00");
        // Half a second before the epoch: seconds -1, then 0.5 s on.
        let t = Some(pb::Time {
            secs: -1,
            nanos: 500_000_000,
        });
        assert_eq!(time_rfc3339(&t), "1969-12-31T23:59:59.500000000Z");
        let t = Some(pb::Time {
            secs: -315_619_200,
            nanos: 0,
        });
        assert_eq!(time_short(&t), "1960-01-01 00:00");
        let t = Some(pb::Time {
            secs: 1_795_807_440,
            nanos: 0,
        });
        assert_eq!(time_short(&t), "2026-11-27 19:24");
        let t = Some(pb::Time {
            secs: 253_402_300_800,
            nanos: 1,
        });
        assert_eq!(time_rfc3339(&t), "10000-01-01T00:00:00.000000001Z");
        let t = Some(pb::Time {
            secs: -62_135_596_800,
            nanos: 0,
        });
        assert_eq!(time_short(&t), "0001-01-01 00:00");
    }
}

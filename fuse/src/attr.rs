//! Conversions between ringfs attributes/times and what the kernel wants (`FileAttr`, `SystemTime`).

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};
use ringfs_proto::pb;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `st_blksize`: large, so `cp` and stdio move data in 1 MiB pieces (= the largest FUSE write).
pub(crate) const BLKSIZE: u32 = 1 << 20;

/// A ringfs time as a `SystemTime` (times before 1970 included).
pub(crate) fn system_time(t: Option<&pb::Time>) -> SystemTime {
    let Some(t) = t else { return UNIX_EPOCH };
    let nanos = Duration::from_nanos(u64::from(t.nanos.min(999_999_999)));
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.secs as u64) + nanos
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(t.secs.unsigned_abs()))
            .map(|s| s + nanos)
            .unwrap_or(UNIX_EPOCH)
    }
}

/// A `SystemTime` as a ringfs time.
pub(crate) fn pb_time(t: SystemTime) -> pb::Time {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => pb::Time {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let (mut secs, mut nanos) = (-(d.as_secs() as i64), d.subsec_nanos());
            if nanos > 0 {
                secs -= 1;
                nanos = 1_000_000_000 - nanos;
            }
            pb::Time { secs, nanos }
        }
    }
}

/// A `utimens` argument as a SetAttr time.
pub(crate) fn time_set(t: Option<TimeOrNow>) -> Option<pb::TimeSet> {
    use pb::time_set::Value;
    t.map(|t| pb::TimeSet {
        value: Some(match t {
            TimeOrNow::Now => Value::Now(true),
            TimeOrNow::SpecificTime(t) => Value::At(kernel_time(t)),
        }),
    })
}

/// The time the kernel sent, from the `SystemTime` fuser made of it. fuser 0.18 turns a time
/// before 1970 (`secs` < 0 plus `nsecs` ≥ 0, as in a timespec) into EPOCH - (-secs + nsecs), one
/// second and twice the fraction too early; this takes its two parts back.
fn kernel_time(t: SystemTime) -> pb::Time {
    match UNIX_EPOCH.duration_since(t) {
        Ok(d) if !d.is_zero() => pb::Time {
            secs: -(d.as_secs() as i64),
            nanos: d.subsec_nanos(),
        },
        _ => pb_time(t),
    }
}

/// The FUSE file type of a ringfs kind (unknown kinds show as regular files).
pub(crate) fn file_type(kind: i32) -> FileType {
    match pb::FileKind::try_from(kind).unwrap_or(pb::FileKind::File) {
        pb::FileKind::Directory => FileType::Directory,
        pb::FileKind::Symlink => FileType::Symlink,
        pb::FileKind::Fifo => FileType::NamedPipe,
        pb::FileKind::Socket => FileType::Socket,
        pb::FileKind::CharDevice => FileType::CharDevice,
        pb::FileKind::BlockDevice => FileType::BlockDevice,
        pb::FileKind::File | pb::FileKind::Unspecified => FileType::RegularFile,
    }
}

/// The ringfs kind of the type bits of a `mknod` mode, if ringfs stores that kind.
pub(crate) fn kind_of_mode(mode: u32) -> Option<pb::FileKind> {
    match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => Some(pb::FileKind::File),
        libc::S_IFIFO => Some(pb::FileKind::Fifo),
        libc::S_IFSOCK => Some(pb::FileKind::Socket),
        libc::S_IFCHR => Some(pb::FileKind::CharDevice),
        libc::S_IFBLK => Some(pb::FileKind::BlockDevice),
        _ => None,
    }
}

/// The kernel's view of a ringfs inode. `st_blocks` counts the 512-byte units a file stores
/// (`allocated`: holes are free, so `du` and `cp --sparse` see a sparse file as one), replicas
/// are not the file's business. A file being written elsewhere counts its size: what it stores
/// is known only once committed (the mount writing it counts its own uncommitted blocks, see
/// `OpenFile::adjust`). Other kinds count their size.
pub(crate) fn file_attr(a: &pb::Attr) -> FileAttr {
    let stored = if a.kind == pb::FileKind::File as i32 && !a.under_construction {
        a.allocated.min(a.size)
    } else {
        a.size
    };
    FileAttr {
        ino: INodeNo(a.inode),
        size: a.size,
        blocks: stored.div_ceil(512),
        atime: system_time(a.atime.as_ref()),
        mtime: system_time(a.mtime.as_ref()),
        ctime: system_time(a.ctime.as_ref()),
        crtime: system_time(a.crtime.as_ref().or(a.ctime.as_ref())),
        kind: file_type(a.kind),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// Whether `a` is a regular file.
pub(crate) fn is_file(a: &pb::Attr) -> bool {
    a.kind == pb::FileKind::File as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_including_before_1970() {
        for (secs, nanos) in [
            (0, 0),
            (1_700_000_000, 123_456_789),
            (-1, 500_000_000),
            (-86_400, 0),
            (-5, 1),
        ] {
            let t = pb::Time { secs, nanos };
            assert_eq!(pb_time(system_time(Some(&t))), t, "{secs}.{nanos}");
        }
    }

    #[test]
    fn utimens_before_1970_keeps_the_kernels_seconds_and_fraction() {
        // What fuser 0.18 makes of the kernel's (secs, nsecs): EPOCH - (-secs + nsecs).
        let fuser = |secs: i64, nsecs: u32| UNIX_EPOCH - Duration::new((-secs) as u64, nsecs);
        for (secs, nanos) in [(-1, 500_000_000), (-315_619_200, 250_000_000), (-7, 0)] {
            assert_eq!(kernel_time(fuser(secs, nanos)), pb::Time { secs, nanos });
        }
        let after = UNIX_EPOCH + Duration::new(5, 7);
        assert_eq!(kernel_time(after), pb::Time { secs: 5, nanos: 7 });
        assert_eq!(kernel_time(UNIX_EPOCH), pb::Time { secs: 0, nanos: 0 });
    }

    #[test]
    fn attr_reports_512_byte_blocks_and_permission_bits() {
        let a = pb::Attr {
            inode: 7,
            kind: pb::FileKind::File as i32,
            mode: 0o104755,
            size: 1025,
            allocated: 1025,
            nlink: 2,
            ..Default::default()
        };
        let fa = file_attr(&a);
        assert_eq!(fa.blocks, 3);
        // A sparse file counts what it stores; one being written, its size.
        let sparse = pb::Attr {
            size: 10 << 30,
            allocated: 4096,
            ..a
        };
        assert_eq!(file_attr(&sparse).blocks, 8);
        let writing = pb::Attr {
            under_construction: true,
            ..sparse
        };
        assert_eq!(file_attr(&writing).blocks, (10 << 30) / 512);
        assert_eq!(fa.perm, 0o4755);
        assert_eq!(fa.kind, FileType::RegularFile);
        assert_eq!(fa.ino, INodeNo(7));
        assert_eq!(
            kind_of_mode(libc::S_IFIFO | 0o644),
            Some(pb::FileKind::Fifo)
        );
        assert_eq!(kind_of_mode(libc::S_IFDIR | 0o755), None);
    }
}

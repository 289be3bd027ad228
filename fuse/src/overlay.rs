//! The dirty overlay of one file on this mount: whole-block copy-on-write contents written but not
//! yet committed, over the file's committed block list (the "base"). Pure data structure, no I/O:
//! the caller loads base bytes, writes blocks and commits as the plans here say.
//!
//! Model: the file's logical content is, block by block (block `i` = bytes `[i*bs, (i+1)*bs)`),
//! the dirty copy of block `i` when there is one, else the base content below `content_end()`,
//! else zeros; all cut at `size`. A dirty copy holds the block from its first byte; bytes past
//! its length read as zeros.

use bytes::Bytes;
use ringfs_proto::pb::CommittedBlock;
use std::collections::BTreeMap;

/// A dirty block growing past this many bytes gets room for the whole block at once: a sequential
/// writer then fills it without the copies of repeated doubling.
const GROW_WHOLE_FROM: usize = 1 << 20;
/// Buffers of committed blocks kept for the next blocks of this file: fresh memory costs a page
/// fault per 4 KiB, a sizeable part of a sequential writer's CPU time.
const SPARE_BLOCKS: usize = 2;

/// A dirty block's bytes: mutable, or frozen while an upload of exactly these bytes runs
/// (a later write copies it back into a `Vec`).
#[derive(Debug)]
enum Buf {
    Mut(Vec<u8>),
    Frozen(Bytes),
}

impl Buf {
    fn as_slice(&self) -> &[u8] {
        match self {
            Buf::Mut(v) => v,
            Buf::Frozen(b) => b,
        }
    }

    fn make_mut(&mut self) -> &mut Vec<u8> {
        if let Buf::Frozen(b) = self {
            *self = Buf::Mut(b.to_vec());
        }
        match self {
            Buf::Mut(v) => v,
            Buf::Frozen(_) => unreachable!("thawed above"),
        }
    }

    fn freeze(&mut self) -> Bytes {
        match self {
            Buf::Frozen(b) => b.clone(),
            Buf::Mut(v) => {
                let b = Bytes::from(std::mem::take(v));
                *self = Buf::Frozen(b.clone());
                b
            }
        }
    }
}

#[derive(Debug)]
struct Dirty {
    buf: Buf,
    /// Bumped on every change, so an upload started earlier can tell whether it is still current.
    version: u64,
}

/// One piece of a read: bytes from memory, a range to read from the committed file, or zeros.
#[derive(Debug, PartialEq)]
pub(crate) enum Piece {
    Mem(Bytes),
    Base { offset: u64, len: u64 },
    Zeros(u64),
}

/// One block of the list a full commit will send.
#[derive(Debug)]
pub(crate) enum Planned {
    /// An unchanged base block (or a hole, id 0) kept as it is.
    Keep(CommittedBlock),
    /// Write these bytes as a new block.
    Write { data: Bytes },
    /// Read `[offset, offset+base_len)` of the committed file, pad with zeros to `len`, write it
    /// as a new block (a base block cut by a truncate, or one that no longer lines up).
    Copy {
        offset: u64,
        base_len: u64,
        len: u64,
    },
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Overlay {
    bs: u64,
    base: Vec<CommittedBlock>,
    /// Offset of each base block (prefix sums of `base[..].len`).
    base_offsets: Vec<u64>,
    /// Committed size (may exceed the sum of block lengths: the tail reads as zeros).
    base_size: u64,
    /// Base bytes at or past this offset are no longer part of the file (a local truncate cut them).
    base_valid: u64,
    size: u64,
    dirty: BTreeMap<u64, Dirty>,
    next_version: u64,
    bytes: u64,
    /// Whole-block buffers of committed blocks, for reuse (see `SPARE_BLOCKS`).
    spare: Vec<Vec<u8>>,
    /// Set after an inline commit that kept the overlay (see [`Overlay::committed_inline`]): the
    /// version of dirty block 0 that is exactly the committed inline content, i.e. not dirty.
    inline_version: Option<u64>,
    /// The committed content is inline in the namenode's metadata (no base blocks): a block commit
    /// drops it, so only a commit that carries block 0 may go first (see `can_commit_alone`).
    inline_base: bool,
}

impl Overlay {
    /// An overlay over a committed file with block size `bs`, block list `base` and `size`.
    pub(crate) fn new(bs: u64, base: Vec<CommittedBlock>, size: u64) -> Overlay {
        let mut o = Overlay {
            bs: bs.max(1),
            base: Vec::new(),
            base_offsets: Vec::new(),
            base_size: 0,
            base_valid: 0,
            size: 0,
            dirty: BTreeMap::new(),
            next_version: 1,
            bytes: 0,
            spare: Vec::new(),
            inline_version: None,
            inline_base: false,
        };
        o.set_base(base, size);
        o
    }

    fn set_base(&mut self, base: Vec<CommittedBlock>, size: u64) {
        let mut off = 0;
        self.base_offsets = base
            .iter()
            .map(|b| {
                let o = off;
                off += b.len;
                o
            })
            .collect();
        self.base = base;
        self.base_size = size;
        self.base_valid = size;
        self.size = self.size.max(size);
        self.inline_version = None;
        self.inline_base = false;
    }

    /// The committed content is inline (its bytes were given to `insert_loaded` as block 0).
    pub(crate) fn set_inline_base(&mut self) {
        self.inline_base = true;
    }

    pub(crate) fn block_size(&self) -> u64 {
        self.bs
    }

    /// Logical size (what `stat` on this mount reports).
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Bytes held in dirty blocks.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The committed block list.
    pub(crate) fn base(&self) -> &[CommittedBlock] {
        &self.base
    }

    /// Whether anything differs from the committed file.
    pub(crate) fn is_dirty(&self) -> bool {
        (!self.dirty.is_empty() && self.clean_inline().is_none())
            || self.size != self.base_size
            || self.base_valid != self.base_size
    }

    /// Whether the file is being appended to and nothing but its last block, short of a whole
    /// block, waits for a commit: every other dirty block is whole (uploaded in the background).
    /// Committing such a tail early only makes the next append read it back and rewrite it.
    pub(crate) fn only_a_growing_tail(&self) -> bool {
        if self.size.is_multiple_of(self.bs) || self.base_valid != self.base_size {
            return false;
        }
        let last = self.size / self.bs;
        self.dirty
            .iter()
            .all(|(&i, d)| i == last || (i < last && d.buf.as_slice().len() as u64 == self.bs))
            && self.dirty.contains_key(&last)
    }

    /// The committed inline content, when the overlay holds exactly that and nothing else
    /// (after [`Overlay::committed_inline`] and no change since).
    pub(crate) fn clean_inline(&self) -> Option<&[u8]> {
        let v = self.inline_version?;
        match self.dirty.iter().next() {
            Some((0, d))
                if self.dirty.len() == 1 && d.version == v && self.size == self.base_size =>
            {
                Some(d.buf.as_slice())
            }
            _ => None,
        }
    }

    /// After an inline commit of `data` (the whole content, `size` bytes with the zeros past its
    /// end) that keeps the overlay (fsync, or a commit before a timestamp change): the file has no
    /// blocks, and its content lives here as block 0, clean until the next change. A later
    /// commit of blocks or a change makes block 0 dirty again, so it is never lost.
    pub(crate) fn committed_inline(&mut self, data: Vec<u8>) {
        for (_, d) in std::mem::take(&mut self.dirty) {
            self.recycle(d.buf);
        }
        let size = self.size;
        self.set_base(Vec::new(), size);
        let version = self.bump();
        self.bytes = data.len() as u64;
        self.dirty.insert(
            0,
            Dirty {
                buf: Buf::Mut(data),
                version,
            },
        );
        self.inline_version = Some(version);
        self.inline_base = true;
    }

    /// End of the base bytes that are still file content (data past the last block is zeros).
    fn content_end(&self) -> u64 {
        let data_end = self.base.iter().map(|b| b.len).sum::<u64>();
        self.base_valid.min(data_end).min(self.base_size)
    }

    fn bump(&mut self) -> u64 {
        self.next_version += 1;
        self.next_version
    }

    /// Before writing `[offset, offset+len)`: the base range of each touched block that must be
    /// loaded first (the block is not dirty yet, has base content, and the write does not cover
    /// all of that content). Pass each loaded range to [`Overlay::insert_loaded`].
    pub(crate) fn loads_for_write(&self, offset: u64, len: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if len == 0 {
            return out;
        }
        let end = offset + len;
        let content_end = self.content_end();
        for i in offset / self.bs..end.div_ceil(self.bs) {
            if self.dirty.contains_key(&i) {
                continue;
            }
            let s = i * self.bs;
            let be = content_end.min(s + self.bs).saturating_sub(s);
            if be == 0 {
                continue;
            }
            let (from, to) = (offset.max(s) - s, end.min(s + self.bs) - s);
            if from == 0 && to >= be {
                continue;
            }
            out.push((s, be));
        }
        out
    }

    /// Makes `data` (the base bytes from offset `offset`, a block start) the dirty copy of that
    /// block. No-op when the block is dirty already.
    pub(crate) fn insert_loaded(&mut self, offset: u64, data: Vec<u8>) {
        let i = offset / self.bs;
        if self.dirty.contains_key(&i) {
            return;
        }
        let version = self.bump();
        self.bytes += data.len() as u64;
        self.dirty.insert(
            i,
            Dirty {
                buf: Buf::Mut(data),
                version,
            },
        );
    }

    /// Writes `data` at `offset` (after the loads [`Overlay::loads_for_write`] asked for).
    /// Returns the blocks this write filled up to their last byte (candidates for an early upload).
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) -> Vec<u64> {
        let mut full = Vec::new();
        if data.is_empty() {
            return full;
        }
        let end = offset + data.len() as u64;
        for i in offset / self.bs..end.div_ceil(self.bs) {
            let s = i * self.bs;
            let (from, to) = (
                (offset.max(s) - s) as usize,
                (end.min(s + self.bs) - s) as usize,
            );
            let version = self.bump();
            let d = self.dirty.entry(i).or_insert(Dirty {
                buf: Buf::Mut(Vec::new()),
                version,
            });
            d.version = version;
            let was = d.buf.as_slice().len();
            let v = d.buf.make_mut();
            let src = &data[(s + from as u64 - offset) as usize..][..to - from];
            if to > v.capacity() && to > GROW_WHOLE_FROM {
                match self.spare.pop() {
                    Some(mut b) => {
                        b.extend_from_slice(v);
                        *v = b;
                    }
                    None => v.reserve_exact(self.bs as usize - v.len()),
                }
            }
            if v.len() < from {
                v.resize(from, 0); // a gap inside the block reads as zeros
            }
            // Overwrite what exists, append the rest (no zero-fill pass over appended bytes).
            let overlap = to.min(v.len());
            if overlap > from {
                v[from..overlap].copy_from_slice(&src[..overlap - from]);
            }
            if to > v.len() {
                let start = v.len() - from;
                v.extend_from_slice(&src[start..]);
            }
            self.bytes += (v.len() - was) as u64;
            if to as u64 == self.bs {
                full.push(i);
            }
        }
        self.size = self.size.max(end);
        full
    }

    /// Cuts or extends the file to `size`.
    pub(crate) fn truncate(&mut self, size: u64) {
        if size < self.size {
            let first_gone = size.div_ceil(self.bs);
            let gone: Vec<u64> = self.dirty.range(first_gone..).map(|(i, _)| *i).collect();
            for i in gone {
                if let Some(d) = self.dirty.remove(&i) {
                    self.bytes -= d.buf.as_slice().len() as u64;
                }
            }
            if !size.is_multiple_of(self.bs) {
                let i = size / self.bs;
                let keep = (size - i * self.bs) as usize;
                let version = self.bump();
                if let Some(d) = self.dirty.get_mut(&i) {
                    let was = d.buf.as_slice().len();
                    if was > keep {
                        d.buf.make_mut().truncate(keep);
                        self.bytes -= (was - keep) as u64;
                    }
                    d.version = version;
                }
            }
            self.base_valid = self.base_valid.min(size);
        }
        self.size = size;
    }

    /// How to read `[offset, offset+len)` (cut at the logical size).
    pub(crate) fn read_plan(&self, offset: u64, len: u64) -> Vec<Piece> {
        let mut out: Vec<Piece> = Vec::new();
        let end = offset.saturating_add(len).min(self.size);
        let content_end = self.content_end();
        let mut push = |p: Piece| {
            match (out.last_mut(), &p) {
                (Some(Piece::Zeros(n)), Piece::Zeros(m)) => *n += m,
                (
                    Some(Piece::Base { offset: o, len: l }),
                    Piece::Base {
                        offset: o2,
                        len: l2,
                    },
                ) if *o + *l == *o2 => *l += l2,
                _ => out.push(p),
            };
        };
        let mut pos = offset;
        while pos < end {
            let i = pos / self.bs;
            let s = i * self.bs;
            let bend = end.min(s + self.bs);
            match self.dirty.get(&i) {
                Some(d) => {
                    let data = d.buf.as_slice();
                    let (from, to) = ((pos - s) as usize, (bend - s) as usize);
                    let have = to.min(data.len());
                    if have > from {
                        let bytes = match &d.buf {
                            Buf::Frozen(b) => b.slice(from..have),
                            Buf::Mut(v) => Bytes::copy_from_slice(&v[from..have]),
                        };
                        push(Piece::Mem(bytes));
                    }
                    let zeros = (to - have.max(from)) as u64;
                    if zeros > 0 {
                        push(Piece::Zeros(zeros));
                    }
                }
                None => {
                    let base_to = bend.min(content_end.max(pos));
                    if base_to > pos {
                        push(Piece::Base {
                            offset: pos,
                            len: base_to - pos,
                        });
                    }
                    if bend > base_to {
                        push(Piece::Zeros(bend - base_to));
                    }
                }
            }
            pos = bend;
        }
        out
    }

    /// The base block starting exactly at `offset`, if any.
    fn base_block_at(&self, offset: u64) -> Option<&CommittedBlock> {
        let k = self.base_offsets.binary_search(&offset).ok()?;
        self.base.get(k)
    }

    /// The full block list of a commit of the logical content: dirty blocks are frozen and
    /// returned for writing, untouched base blocks are kept, cut or misaligned ones are copied.
    pub(crate) fn commit_plan(&mut self) -> Vec<Planned> {
        let content_end = self.content_end();
        let n = self.size.div_ceil(self.bs);
        let mut plan = Vec::with_capacity(n as usize);
        for i in 0..n {
            let s = i * self.bs;
            let len = self.bs.min(self.size - s);
            if let Some(d) = self.dirty.get_mut(&i) {
                let was = d.buf.as_slice().len() as u64;
                if was != len {
                    d.buf.make_mut().resize(len as usize, 0);
                    self.bytes = self.bytes - was + len;
                }
                plan.push(Planned::Write {
                    data: d.buf.freeze(),
                });
                continue;
            }
            match self.base_block_at(s) {
                Some(b) if b.len == len && (b.id == 0 || s + len <= content_end) => {
                    plan.push(Planned::Keep(*b))
                }
                _ if s >= content_end => plan.push(Planned::Keep(CommittedBlock {
                    id: 0,
                    generation: 0,
                    len,
                })),
                _ => plan.push(Planned::Copy {
                    offset: s,
                    base_len: content_end.min(s + len) - s,
                    len,
                }),
            }
        }
        plan
    }

    /// After a full commit of `blocks` (made from [`Overlay::commit_plan`] with no change since):
    /// they are the new base and nothing is dirty.
    pub(crate) fn committed(&mut self, blocks: Vec<CommittedBlock>) {
        for (_, d) in std::mem::take(&mut self.dirty) {
            self.recycle(d.buf);
        }
        self.bytes = 0;
        let size = self.size;
        self.set_base(blocks, size);
    }

    /// Whether block `i` alone can be committed over the base (the fast path of a sequential
    /// writer): the base is block-aligned up to it and nothing of the base is cut. Over inline
    /// content only block 0 can: a later block first would commit a hole in place of content
    /// that lives only in the namenode's metadata, lost if this mount died before its close.
    pub(crate) fn can_commit_alone(&self, i: u64) -> bool {
        if self.inline_base && i > 0 {
            return false;
        }
        let n = self.base.len() as u64;
        let aligned = |upto: u64| self.base[..upto as usize].iter().all(|b| b.len == self.bs);
        self.base_valid == self.base_size && if i < n { aligned(i) } else { aligned(n) }
    }

    /// Freezes the full dirty block `i` for an early upload: its bytes and version.
    pub(crate) fn seal(&mut self, i: u64) -> Option<(Bytes, u64)> {
        let d = self.dirty.get_mut(&i)?;
        if d.buf.as_slice().len() as u64 != self.bs {
            return None;
        }
        Some((d.buf.freeze(), d.version))
    }

    /// The block list and size that commit the uploaded copy of block `i` alone, if block `i` is
    /// still at `version` and can be committed alone.
    pub(crate) fn commit_alone_plan(
        &self,
        i: u64,
        version: u64,
        block: &CommittedBlock,
    ) -> Option<(Vec<CommittedBlock>, u64)> {
        if self.dirty.get(&i).map(|d| d.version) != Some(version) || !self.can_commit_alone(i) {
            return None;
        }
        let n = self.base.len() as u64;
        // Blocks between the committed ones and `i` go in as holes: only if they are holes here
        // too. One still dirty (its upload failed, or is behind) would read as zeros at the
        // new size, and stay so if the file's last commit then fails (a full cluster did that).
        if i > n && self.dirty.range(n..i).next().is_some() {
            return None;
        }
        let mut list: Vec<CommittedBlock> = self.base[..i.min(n) as usize].to_vec();
        for _ in n..i {
            list.push(CommittedBlock {
                id: 0,
                generation: 0,
                len: self.bs,
            });
        }
        list.push(*block);
        if i + 1 < n {
            list.extend_from_slice(&self.base[i as usize + 1..]);
        }
        let size = self.base_size.max((i + 1) * self.bs);
        Some((list, size))
    }

    /// After committing `list`/`size` from [`Overlay::commit_alone_plan`] for block `i`.
    pub(crate) fn committed_alone(&mut self, i: u64, list: Vec<CommittedBlock>, size: u64) {
        if let Some(d) = self.dirty.remove(&i) {
            self.bytes -= d.buf.as_slice().len() as u64;
            self.recycle(d.buf);
        }
        self.set_base(list, size);
    }

    /// Keeps the buffer of a block that is no longer dirty for a later block, when it is a whole
    /// block's buffer nobody else holds (an upload that finished dropped its copy of the handle).
    fn recycle(&mut self, buf: Buf) {
        if self.spare.len() >= SPARE_BLOCKS {
            return;
        }
        let v = match buf {
            Buf::Mut(v) => v,
            Buf::Frozen(b) => match b.try_into_mut() {
                Ok(m) => Vec::from(m),
                Err(_) => return,
            },
        };
        if v.capacity() as u64 == self.bs {
            let mut v = v;
            v.clear();
            self.spare.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A model cluster: committed blocks by id, and a reference file to compare with.
    struct Model {
        store: HashMap<u64, Vec<u8>>,
        next_id: u64,
        committed: Vec<CommittedBlock>,
        committed_size: u64,
    }

    impl Model {
        fn new() -> Model {
            Model {
                store: HashMap::new(),
                next_id: 1,
                committed: Vec::new(),
                committed_size: 0,
            }
        }
        fn put(&mut self, data: &[u8]) -> CommittedBlock {
            let id = self.next_id;
            self.next_id += 1;
            self.store.insert(id, data.to_vec());
            CommittedBlock {
                id,
                generation: 1,
                len: data.len() as u64,
            }
        }
        /// The committed file's bytes (what read_range returns).
        fn file(&self) -> Vec<u8> {
            let mut out = Vec::new();
            for b in &self.committed {
                match b.id {
                    0 => out.resize(out.len() + b.len as usize, 0),
                    id => out.extend_from_slice(&self.store[&id][..b.len as usize]),
                }
            }
            out.resize(self.committed_size as usize, 0);
            out
        }
        fn read(&self, o: &Overlay, offset: u64, len: u64) -> Vec<u8> {
            let file = self.file();
            let mut out = Vec::new();
            for p in o.read_plan(offset, len) {
                match p {
                    Piece::Mem(b) => out.extend_from_slice(&b),
                    Piece::Zeros(n) => out.resize(out.len() + n as usize, 0),
                    Piece::Base { offset, len } => {
                        out.extend_from_slice(&file[offset as usize..(offset + len) as usize])
                    }
                }
            }
            out
        }
        fn write(&mut self, o: &mut Overlay, offset: u64, data: &[u8]) -> Vec<u64> {
            let file = self.file();
            for (off, len) in o.loads_for_write(offset, data.len() as u64) {
                o.insert_loaded(off, file[off as usize..(off + len) as usize].to_vec());
            }
            o.write(offset, data)
        }
        fn commit(&mut self, o: &mut Overlay) {
            let file = self.file();
            let list: Vec<CommittedBlock> = o
                .commit_plan()
                .into_iter()
                .map(|p| match p {
                    Planned::Keep(b) => b,
                    Planned::Write { data } => self.put(&data),
                    Planned::Copy {
                        offset,
                        base_len,
                        len,
                    } => {
                        let mut d = file[offset as usize..(offset + base_len) as usize].to_vec();
                        d.resize(len as usize, 0);
                        self.put(&d)
                    }
                })
                .collect();
            self.committed = list.clone();
            self.committed_size = o.size();
            o.committed(list);
        }
    }

    fn pattern(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn random_writes_and_truncates_match_a_flat_reference() {
        let bs = 16u64;
        let mut m = Model::new();
        let mut o = Overlay::new(bs, Vec::new(), 0);
        let mut reference: Vec<u8> = Vec::new();
        // Deterministic pseudo-random ops (xorshift).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for step in 0..3000 {
            match rnd(10) {
                0..=5 => {
                    let off = rnd(120);
                    let len = 1 + rnd(40) as usize;
                    let data = pattern(step as u8, len);
                    m.write(&mut o, off, &data);
                    if reference.len() < off as usize + len {
                        reference.resize(off as usize + len, 0);
                    }
                    reference[off as usize..off as usize + len].copy_from_slice(&data);
                }
                6 | 7 => {
                    let size = rnd(150);
                    o.truncate(size);
                    reference.resize(size as usize, 0);
                }
                _ => m.commit(&mut o),
            }
            assert_eq!(o.size(), reference.len() as u64, "step {step}");
            let off = rnd(160);
            let len = rnd(80);
            let want: Vec<u8> = reference
                .iter()
                .skip(off as usize)
                .take(len as usize)
                .copied()
                .collect();
            assert_eq!(m.read(&o, off, len), want, "step {step} read {off}+{len}");
        }
        m.commit(&mut o);
        assert_eq!(m.file(), reference);
        assert!(!o.is_dirty());
        assert_eq!(o.bytes(), 0);
    }

    #[test]
    fn overwrite_inside_a_block_loads_it_and_commit_keeps_other_blocks() {
        let bs = 8u64;
        let mut m = Model::new();
        let mut o = Overlay::new(bs, Vec::new(), 0);
        m.write(&mut o, 0, &pattern(1, 20));
        m.commit(&mut o);
        let before = m.committed.clone();
        assert_eq!(before.len(), 3);
        // A 2-byte write in block 1 must load that block only.
        assert_eq!(o.loads_for_write(9, 2), vec![(8, 8)]);
        // A write that covers a block's whole content needs no load.
        assert!(o.loads_for_write(16, 4).is_empty());
        m.write(&mut o, 9, b"XY");
        m.commit(&mut o);
        assert_eq!(m.committed[0], before[0]);
        assert_ne!(m.committed[1], before[1]);
        assert_eq!(m.committed[2], before[2]);
        let mut want = pattern(1, 20);
        want[9..11].copy_from_slice(b"XY");
        assert_eq!(m.file(), want);
    }

    #[test]
    fn truncate_down_copies_the_cut_block_and_extension_reads_zeros() {
        let bs = 8u64;
        let mut m = Model::new();
        let mut o = Overlay::new(bs, Vec::new(), 0);
        m.write(&mut o, 0, &pattern(2, 24));
        m.commit(&mut o);
        o.truncate(11);
        o.truncate(30);
        let plan = o.commit_plan();
        assert!(matches!(plan[0], Planned::Keep(_)));
        assert!(matches!(
            plan[1],
            Planned::Copy {
                offset: 8,
                base_len: 3,
                len: 8
            }
        ));
        assert!(matches!(
            plan[2],
            Planned::Keep(CommittedBlock { id: 0, .. })
        ));
        let mut m2 = Model {
            store: m.store.clone(),
            next_id: m.next_id,
            committed: m.committed.clone(),
            committed_size: 24,
        };
        let mut o2 = Overlay::new(bs, m.committed.clone(), 24);
        o2.truncate(11);
        o2.truncate(30);
        m2.commit(&mut o2);
        let mut want = pattern(2, 11);
        want.resize(30, 0);
        assert_eq!(m2.file(), want);
    }

    #[test]
    fn sequential_writer_commits_full_blocks_alone() {
        let bs = 8u64;
        let mut m = Model::new();
        let mut o = Overlay::new(bs, Vec::new(), 0);
        let data = pattern(3, 29);
        for (k, chunk) in data.chunks(4).enumerate() {
            let full = m.write(&mut o, k as u64 * 4, chunk);
            for i in full {
                assert!(o.can_commit_alone(i));
                let (bytes, version) = o.seal(i).unwrap();
                let block = m.put(&bytes);
                let (list, size) = o.commit_alone_plan(i, version, &block).unwrap();
                m.committed = list.clone();
                m.committed_size = size;
                o.committed_alone(i, list, size);
                assert_eq!(m.read(&o, 0, 100), data[..(k * 4 + chunk.len())]);
            }
        }
        assert_eq!(m.committed.len(), 3);
        assert!(
            o.bytes() <= 8,
            "only the partial last block stays in memory"
        );
        m.commit(&mut o);
        assert_eq!(m.file(), data);
    }

    #[test]
    fn a_growing_tail_is_told_from_other_uncommitted_data() {
        let bs = 8u64;
        let mut m = Model::new();
        let mut o = Overlay::new(bs, Vec::new(), 0);
        assert!(!o.only_a_growing_tail(), "nothing written");
        m.write(&mut o, 0, &pattern(1, 5));
        assert!(o.only_a_growing_tail());
        // A whole block waiting for its upload next to the tail: still only a tail to commit.
        m.write(&mut o, 5, &pattern(2, 6));
        assert!(o.only_a_growing_tail());
        m.write(&mut o, 11, &pattern(3, 5));
        assert!(!o.only_a_growing_tail(), "ends on a block boundary");
        m.commit(&mut o);
        m.write(&mut o, 16, &pattern(4, 3));
        assert!(o.only_a_growing_tail());
        // A whole block rewritten in the middle goes by upload too; a cut is not an append.
        m.write(&mut o, 2, b"x");
        assert!(o.only_a_growing_tail());
        m.commit(&mut o);
        assert_eq!(m.file().len(), 19);
        o.truncate(13);
        assert!(!o.only_a_growing_tail());
        m.commit(&mut o);
        m.write(&mut o, 13, b"yz");
        assert!(o.only_a_growing_tail());
    }

    #[test]
    fn committed_block_buffers_are_reused_by_the_next_blocks() {
        let (bs, mib) = (4u64 << 20, 1usize << 20);
        let mut m = Model::new();
        let mut o = Overlay::new(bs, Vec::new(), 0);
        let data = pattern(5, 3 * bs as usize);
        let mut reused = 0;
        for (k, chunk) in data.chunks(mib).enumerate() {
            let spare_before = o.spare.len();
            let full = m.write(&mut o, (k * mib) as u64, chunk);
            if o.spare.len() < spare_before {
                reused += 1;
            }
            for i in full {
                let (bytes, version) = o.seal(i).unwrap();
                let block = m.put(&bytes);
                let (list, size) = o.commit_alone_plan(i, version, &block).unwrap();
                m.committed = list.clone();
                m.committed_size = size;
                if i == 0 {
                    // Still held by someone (an upload that has not finished): not reusable.
                    o.committed_alone(i, list, size);
                    assert!(o.spare.is_empty());
                    drop(bytes);
                } else {
                    drop(bytes);
                    o.committed_alone(i, list, size);
                    assert_eq!(o.spare.len(), 1, "block {i}'s buffer is kept");
                }
            }
        }
        assert_eq!(reused, 1, "block 2 fills block 1's buffer");
        assert_eq!(m.read(&o, 0, 3 * bs), data);
        assert_eq!(m.file(), data);
    }

    #[test]
    fn a_block_past_an_uncommitted_one_is_not_committed_alone() {
        // Block 0's upload failed (or is behind): committing block 1 alone would make block 0 a
        // hole at the new size, which a failed last commit then left as the file (zeros).
        let bs = 8u64;
        let mut m = Model::new();
        let mut o = Overlay::new(bs, Vec::new(), 0);
        m.write(&mut o, 0, &pattern(6, 16));
        let (b0, v0) = o.seal(0).unwrap();
        let (b1, v1) = o.seal(1).unwrap();
        let block1 = m.put(&b1);
        assert!(o.commit_alone_plan(1, v1, &block1).is_none());
        let block0 = m.put(&b0);
        let (list, size) = o.commit_alone_plan(0, v0, &block0).unwrap();
        o.committed_alone(0, list, size);
        let (list, size) = o.commit_alone_plan(1, v1, &block1).unwrap();
        assert_eq!((list.len(), size), (2, 16));
        // Blocks never written stay holes: a block past them is committed alone.
        m.committed = list.clone();
        m.committed_size = size;
        o.committed_alone(1, list, size);
        m.write(&mut o, 40, &pattern(7, 8));
        let (b5, v5) = o.seal(5).unwrap();
        let block5 = m.put(&b5);
        let (list, size) = o.commit_alone_plan(5, v5, &block5).unwrap();
        assert_eq!((list.len(), size), (6, 48));
        assert!(list[2..5].iter().all(|b| b.id == 0));
    }

    #[test]
    fn a_rewritten_sealed_block_is_not_committed_alone() {
        let bs = 8u64;
        let mut m = Model::new();
        let mut o = Overlay::new(bs, Vec::new(), 0);
        m.write(&mut o, 0, &pattern(4, 8));
        let (bytes, version) = o.seal(0).unwrap();
        m.write(&mut o, 2, b"zz");
        let block = m.put(&bytes);
        assert!(o.commit_alone_plan(0, version, &block).is_none());
        assert_eq!(&m.read(&o, 0, 8)[2..4], b"zz");
    }

    #[test]
    fn sparse_committed_tail_is_not_copied() {
        // A file grown by a namenode-side truncate: size 40, no blocks.
        let mut o = Overlay::new(8, Vec::new(), 40);
        assert!(o.loads_for_write(35, 1).is_empty());
        o.write(35, b"x");
        let plan = o.commit_plan();
        assert_eq!(plan.len(), 5);
        assert!(plan[..4]
            .iter()
            .all(|p| matches!(p, Planned::Keep(CommittedBlock { id: 0, .. }))));
        assert!(matches!(plan[4], Planned::Write { .. }));
    }

    #[test]
    fn an_inline_commit_that_keeps_the_overlay_is_clean_until_the_next_change() {
        let mut o = Overlay::new(16, Vec::new(), 0);
        o.write(0, b"hello");
        assert!(o.is_dirty() && o.clean_inline().is_none());
        o.committed_inline(b"hello".to_vec());
        assert!(!o.is_dirty());
        assert_eq!(o.clean_inline(), Some(&b"hello"[..]));
        assert_eq!(o.size(), 5);
        assert_eq!(
            o.read_plan(0, 5),
            vec![Piece::Mem(Bytes::from_static(b"hello"))]
        );
        // Any change makes the content dirty again, so the next commit carries all of it.
        o.write(5, b"!");
        assert!(o.is_dirty() && o.clean_inline().is_none());
        let mut o2 = Overlay::new(16, Vec::new(), 0);
        o2.write(0, b"hello");
        o2.committed_inline(b"hello".to_vec());
        o2.truncate(2);
        assert!(o2.is_dirty());
        let mut o3 = Overlay::new(16, Vec::new(), 0);
        o3.write(0, b"hello");
        o3.committed_inline(b"hello".to_vec());
        o3.truncate(40);
        assert!(o3.is_dirty());
        // Growth into a second block: the full commit writes block 0 with it.
        let mut o4 = Overlay::new(4, Vec::new(), 0);
        o4.write(0, b"abc");
        o4.committed_inline(b"abc".to_vec());
        o4.write(4, b"defg");
        assert!(o4.is_dirty() && o4.clean_inline().is_none());
        assert!(matches!(o4.commit_plan()[0], Planned::Write { .. }));
    }

    #[test]
    fn over_inline_content_only_block_0_is_committed_alone() {
        // An inline file (content only in the namenode's metadata) written far past its end: an
        // early commit of the far block alone would put a hole where the inline bytes are.
        let mut o = Overlay::new(4, Vec::new(), 3);
        o.insert_loaded(0, b"abc".to_vec());
        o.set_inline_base();
        o.write(8, b"wxyz");
        assert!(!o.can_commit_alone(2));
        o.write(0, b"ABCD");
        assert!(o.can_commit_alone(0));
        let version = o.seal(0).unwrap().1;
        let b0 = CommittedBlock {
            id: 7,
            generation: 1,
            len: 4,
        };
        let (list, size) = o.commit_alone_plan(0, version, &b0).unwrap();
        o.committed_alone(0, list, size);
        assert!(o.can_commit_alone(1) && o.can_commit_alone(2));
        // The same after an inline commit that kept the overlay.
        let mut o = Overlay::new(4, Vec::new(), 0);
        o.write(0, b"ab");
        o.committed_inline(b"ab".to_vec());
        o.write(8, b"wxyz");
        assert!(!o.can_commit_alone(2));
    }
}

//! ringfs-fuse (being built).

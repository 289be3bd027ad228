//! ringfs-client (being built).

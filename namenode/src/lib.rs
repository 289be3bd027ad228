//! ringfs-namenode (being built).
pub mod error;
pub mod journal;
pub mod namespace;

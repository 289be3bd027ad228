//! ringfs-namenode (being built).

//! ringfs-datanode (being built).

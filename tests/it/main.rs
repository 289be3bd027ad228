//! Integration tests: real `ringfs` processes on 127.0.0.1 with ephemeral ports and temp dirs.
//! One binary, organised by feature.

mod cluster;
mod failures;
mod fuse;
mod healing;
mod hung;
mod io;
mod namespace;
mod setrep;
mod small;
mod status;
mod tls;
mod tree;
mod xattr;

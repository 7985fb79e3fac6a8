//! Creating the container's processes: the parent side (spawn, exec), the first child of the
//! two-stage paths (stage1), the container's init (init), and the sync protocol between them.
pub mod exec;
pub mod init;
pub mod protocol;
pub mod spawn;
pub mod stage1;

//! Creating the container's processes: the parent side (spawn), the child side (init), and the
//! sync protocol between them.
pub mod exec;
pub mod init;
pub mod protocol;
pub mod spawn;

//! The only atoll crate with `unsafe`: one function per raw syscall that no crate wraps well.
//! A wrapper is safe where it can check its own rules; where soundness depends on the caller
//! (clone3, clone, close_range: a single-threaded process, fds owned elsewhere) it is an
//! `unsafe fn`, and the safe way in, [`process::spawn`], takes a [`process::SingleThreaded`] proof:
//! the compiler carries the rule.
//!
//! Each wrapper keeps the syscall's name (for grep) and says, in a SAFETY note, which invariant makes
//! the call sound: pointer lifetimes, fd ownership, or the single-threaded state it relies on.
//! Beside them, two small safe helpers every crate shares: `time` and `pseudofs`.

pub mod bpf;
pub mod inject;
pub mod mount;
pub mod namespace;
pub mod netlink;
pub mod nsfs;
pub mod process;
pub mod pseudofs;
pub mod seccomp;
pub mod socket;
pub mod systemd;
pub mod time;

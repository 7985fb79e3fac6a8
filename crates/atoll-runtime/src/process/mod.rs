//! Creating the container's processes: the parent side (spawn, exec), the first child of the
//! two-stage paths (stage1), the container's init (init), and the sync protocol between them.
pub mod exec;
pub mod init;
pub mod protocol;
pub mod scheduler;
pub mod spawn;
pub mod stage1;

use rustix::process::{Pid, Signal};

/// kill(2) one process. A pid below 1 would signal a process group or every process we may
/// signal (kill(2)), never meant here: refused with ESRCH before the call.
pub(crate) fn kill(pid: i32, sig: Signal) -> rustix::io::Result<()> {
    let pid = match pid {
        1.. => Pid::from_raw(pid).ok_or(rustix::io::Errno::SRCH)?,
        _ => return Err(rustix::io::Errno::SRCH),
    };
    rustix::process::kill_process(pid, sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kill(2) with pid 0 signals the caller's whole process group: the wrapper never lets it.
    #[test]
    fn kill_refuses_a_process_group() {
        assert_eq!(kill(0, Signal::CONT), Err(rustix::io::Errno::SRCH));
        assert_eq!(kill(-7, Signal::CONT), Err(rustix::io::Errno::SRCH));
    }
}

//! OOM notifications for `events`: cgroup v1 signals an eventfd registered through
//! cgroup.event_control on memory.oom_control (Documentation/admin-guide/cgroup-v1/memory.rst
//! §9); cgroup v2 has no such fd, so memory.events is watched with inotify and its `oom_kill`
//! count compared (Documentation/admin-guide/cgroup-v2.rst: "a value change in this file
//! generates a file modified event").

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::fs::inotify;

use crate::error::{CgroupError, Errno};
use crate::fs::read_opt;

/// What a wait saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oom {
    /// Nothing within the timeout.
    Quiet,
    /// This many OOM events since the last wait.
    Fired(u64),
    /// The cgroup is gone (v1 signals its eventfd on removal too; v2's watch is dropped).
    Gone,
}

/// An armed OOM notification on one cgroup.
pub struct OomWatch {
    how: How,
}

enum How {
    V1 {
        efd: OwnedFd,
        /// Held open: the registration lives as long as the eventfd and this fd.
        _oom_control: OwnedFd,
        event_control: PathBuf,
    },
    V2 {
        inotify: OwnedFd,
        events: PathBuf,
        kills: u64,
    },
}

fn errno(e: rustix::io::Errno) -> Errno {
    Errno(e.raw_os_error())
}

impl OomWatch {
    /// Arm on the cgroup directory `dir` of the memory controller; `v2` says which interface
    /// its files are.
    pub fn new(dir: &Path, v2: bool) -> Result<OomWatch, CgroupError> {
        if v2 {
            let events = dir.join("memory.events");
            let inotify =
                inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
                    .map_err(|e| CgroupError::Open {
                        path: events.clone(),
                        errno: errno(e),
                    })?;
            inotify::add_watch(&inotify, &events, inotify::WatchFlags::MODIFY).map_err(|e| {
                CgroupError::Open {
                    path: events.clone(),
                    errno: errno(e),
                }
            })?;
            // Read after the watch exists: a kill between the two is counted, not lost.
            let kills = oom_kills(&events).ok_or_else(|| CgroupError::Read {
                path: events.clone(),
                errno: Errno(libc::ENOENT),
            })?;
            return Ok(OomWatch {
                how: How::V2 {
                    inotify,
                    events,
                    kills,
                },
            });
        }
        let control = dir.join("memory.oom_control");
        let event_control = dir.join("cgroup.event_control");
        let oom_control = rustix::fs::open(
            &control,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| CgroupError::Open {
            path: control.clone(),
            errno: errno(e),
        })?;
        let efd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(|e| {
            CgroupError::Open {
                path: event_control.clone(),
                errno: errno(e),
            }
        })?;
        // "<event_fd> <fd of memory.oom_control>" (memory.rst §9), fds of this process.
        let line = format!("{} {}", efd.as_raw_fd(), oom_control.as_raw_fd());
        std::fs::write(&event_control, &line).map_err(|e| CgroupError::Write {
            path: event_control.clone(),
            value: line,
            errno: Errno::of(&e),
        })?;
        Ok(OomWatch {
            how: How::V1 {
                efd,
                _oom_control: oom_control,
                event_control,
            },
        })
    }

    /// Wait up to `timeout` for OOM events.
    pub fn wait(&mut self, timeout: Duration) -> Result<Oom, CgroupError> {
        let fd = match &self.how {
            How::V1 { efd, .. } => efd.as_fd(),
            How::V2 { inotify, .. } => inotify.as_fd(),
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let ts = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => return Ok(Oom::Quiet),
            Ok(_) => {}
            Err(e) => {
                return Err(CgroupError::Read {
                    path: self.path().to_path_buf(),
                    errno: errno(e),
                })
            }
        }
        match &mut self.how {
            How::V1 {
                efd, event_control, ..
            } => {
                let mut count = [0u8; 8];
                match rustix::io::read(&*efd, &mut count) {
                    Ok(8) => {}
                    Ok(_) | Err(rustix::io::Errno::AGAIN) => return Ok(Oom::Quiet),
                    Err(e) => {
                        return Err(CgroupError::Read {
                            path: event_control.clone(),
                            errno: errno(e),
                        })
                    }
                }
                // The kernel signals the eventfd when the cgroup is removed too.
                if !event_control.exists() {
                    return Ok(Oom::Gone);
                }
                Ok(Oom::Fired(u64::from_ne_bytes(count)))
            }
            How::V2 {
                inotify,
                events,
                kills,
            } => {
                let mut buf = [0u8; 1024];
                // Drain the queue; the count, not the events, says what happened.
                while let Ok(n) = rustix::io::read(&*inotify, &mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                let Some(now) = oom_kills(events) else {
                    return Ok(Oom::Gone);
                };
                let new = now.saturating_sub(*kills);
                *kills = now;
                Ok(if new > 0 { Oom::Fired(new) } else { Oom::Quiet })
            }
        }
    }

    fn path(&self) -> &Path {
        match &self.how {
            How::V1 { event_control, .. } => event_control,
            How::V2 { events, .. } => events,
        }
    }
}

/// memory.events `oom_kill`; None once the file is gone.
fn oom_kills(events: &Path) -> Option<u64> {
    let text = read_opt(events)?;
    Some(
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v2 logic on a plain file: inotify sees memory.events rewritten, and only a rise
    /// of `oom_kill` is an event.
    #[test]
    fn v2_counts_oom_kills_from_memory_events() {
        let dir = std::env::temp_dir().join(format!("atoll-cg-oom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("memory.events");
        std::fs::write(&f, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        let mut w = OomWatch::new(&dir, true).unwrap();
        let short = Duration::from_millis(50);
        assert_eq!(w.wait(short).unwrap(), Oom::Quiet);
        std::fs::write(&f, "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n").unwrap();
        assert_eq!(w.wait(short).unwrap(), Oom::Quiet, "oom without a kill");
        std::fs::write(&f, "low 0\nhigh 0\nmax 9\noom 4\noom_kill 3\n").unwrap();
        assert_eq!(w.wait(short).unwrap(), Oom::Fired(2));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(w.wait(short).unwrap(), Oom::Gone);
    }
}

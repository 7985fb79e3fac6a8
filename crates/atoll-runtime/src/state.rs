//! The state store: one directory per container under `--root`, holding `state.json` (written
//! atomically: temp file + rename) and the `exec.fifo` that `start` writes to; an flock on the
//! directory itself serialises commands on one container.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;
use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

use crate::error::{errno, sys, Result, RuntimeError};

/// What atoll remembers about one container between commands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Host pid of the container's init; 0 while `create` has not got that far.
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat when we started it: tells our init from a recycled pid.
    pub pid_start: u64,
    pub created: String,
    /// `start` has released the init to exec the user's process.
    pub started: bool,
    pub owner: String,
    /// The cgroup as `atoll_cgroups::Cgroup::path` saved it.
    pub cgroup: Option<String>,
    pub annotations: HashMap<String, String>,
    /// Namespaces the container owns (CLONE_NEW* bits), for `exec` and `delete`.
    pub ns_flags: u64,
    pub config: Spec,
}

/// Runtime-spec status values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

pub struct Store {
    root: PathBuf,
}

/// An exclusive flock on a container's `lock` file; released on drop.
pub struct Lock {
    _file: File,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Make the container's directory; fails with `Exists` if it is there. Returns the lock.
    pub fn create_dir(&self, id: &str) -> Result<Lock> {
        check_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .map_err(sys(format!("mkdir {}", self.root.display())))?;
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::Exists(id.to_string()))
            }
            Err(e) => return Err(sys(format!("mkdir {}", dir.display()))(e)),
        }
        self.lock(id)
    }

    /// Take the container's lock (blocking until any other atoll command on it is done).
    pub fn lock(&self, id: &str) -> Result<Lock> {
        let (file, path) = self.open_lock(id)?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(errno(format!("flock {}", path.display())))?;
        Ok(Lock { _file: file })
    }

    /// Take the container's lock, waiting at most `wait` for whoever holds it: for `delete`,
    /// which must not hang behind a command that never finishes.
    pub fn lock_within(&self, id: &str, wait: Duration) -> Result<Lock> {
        let (file, path) = self.open_lock(id)?;
        let deadline = Instant::now() + wait;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(RuntimeError::Locked {
                        id: id.to_string(),
                        path,
                        secs: wait.as_secs(),
                    })
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(errno(format!("flock {}", path.display()))(e)),
            }
        }
    }

    /// The container's directory, opened to flock it (no lock file to create and pay an inode
    /// for).
    fn open_lock(&self, id: &str) -> Result<(File, PathBuf)> {
        check_id(id)?;
        let path = self.dir(id);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => RuntimeError::NotFound(id.to_string()),
                _ => sys(format!("open {}", path.display()))(e),
            })?;
        Ok((file, path))
    }

    pub fn exists(&self, id: &str) -> bool {
        self.dir(id).is_dir()
    }

    pub fn load(&self, id: &str) -> Result<Saved> {
        check_id(id)?;
        let path = self.dir(id).join("state.json");
        let data = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => RuntimeError::NotFound(id.to_string()),
            _ => sys(format!("read {}", path.display()))(e),
        })?;
        serde_json::from_slice(&data).map_err(|source| RuntimeError::State { path, source })
    }

    /// Write state.json atomically (a reader sees the old or the new file, never half of one).
    pub fn save(&self, saved: &Saved) -> Result<()> {
        let dir = self.dir(&saved.id);
        let tmp = dir.join(".state.json.tmp");
        let path = dir.join("state.json");
        let data = serde_json::to_vec(saved).map_err(|source| RuntimeError::State {
            path: path.clone(),
            source,
        })?;
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(sys(format!("open {}", tmp.display())))?;
        f.write_all(&data)
            .map_err(sys(format!("write {}", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(sys(format!(
            "rename {} to {}",
            tmp.display(),
            path.display()
        )))
    }

    /// Remove the container's directory and everything in it.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(sys(format!("remove {}", dir.display()))(e)),
        }
    }

    /// The compiled seccomp filters of this root's containers (atoll_seccomp's cache).
    pub fn seccomp_cache(&self) -> PathBuf {
        self.root.join(".cache/seccomp")
    }

    /// Remove the seccomp cache once no container is left under this root and its guard
    /// supervisor has left: it serves the creates of a working host, and nothing of atoll's
    /// should outlive its last container (the supervisor leaves a short idle time after it).
    /// A create racing with this already holds its filter, or compiles it again.
    pub fn drop_cache_if_unused(&self) {
        // While this root's guard supervisor is up (its socket is there until it leaves, idle),
        // the cache serves the next `run`; the supervisor drops it when it leaves.
        let guard_socket = self.root.join(crate::guard::GUARD_DIR).join("guard.sock");
        if fs::symlink_metadata(guard_socket).is_ok() {
            return;
        }
        let Ok(rd) = fs::read_dir(&self.root) else {
            return;
        };
        let mut cache = false;
        for entry in rd.flatten() {
            let name = entry.file_name();
            if name == ".cache" {
                cache = true;
            } else if !name.to_string_lossy().starts_with('.') {
                return; // a container (ids never start with '.'; .guard is the guard's)
            }
        }
        if cache {
            let _gone_or_racing_is_fine = fs::remove_dir_all(self.root.join(".cache"));
        }
    }

    /// Ids of every container directory, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(sys(format!("read {}", self.root.display()))(e)),
        };
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.path().is_dir() {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// Container ids become path components: refuse anything that could walk out of `--root`.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::BadId(id.to_string()))
    }
}

/// Field 22 (starttime) of /proc/<pid>/stat, or None if the process is gone.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = atoll_sys::pseudofs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The process state letter (field 3) of /proc/<pid>/stat.
pub fn pid_state(pid: i32) -> Option<char> {
    let stat = atoll_sys::pseudofs::read(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

impl Saved {
    /// Is our init still alive (same pid, same start time, not a zombie)?
    pub fn init_alive(&self) -> bool {
        self.pid > 0
            && pid_start_time(self.pid) == Some(self.pid_start)
            && !matches!(pid_state(self.pid), Some('Z') | Some('X') | None)
    }

    /// A pidfd for our init, opened *before* checking its start time, so it can never refer to
    /// a process that recycled the pid. None when the init is gone (or was never started).
    pub fn init_pidfd(&self) -> Result<Option<std::os::fd::OwnedFd>> {
        let Some(pid) = rustix::process::Pid::from_raw(self.pid) else {
            return Ok(None);
        };
        let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::SRCH) => return Ok(None),
            Err(e) => return Err(errno(format!("pidfd_open {}", self.pid))(e)),
        };
        if pid_start_time(self.pid) != Some(self.pid_start) {
            return Ok(None);
        }
        Ok(Some(pidfd))
    }

    pub fn status(&self) -> Status {
        if self.pid == 0 {
            return Status::Creating;
        }
        if !self.init_alive() {
            return Status::Stopped;
        }
        if let Some(cg) = &self.cgroup {
            if let Ok(cg) = atoll_cgroups::Cgroup::from_saved(cg) {
                if cg.is_frozen().unwrap_or(false) {
                    return Status::Paused;
                }
            }
        }
        if self.started {
            Status::Running
        } else {
            Status::Created
        }
    }

    /// The runtime-spec state object, as `atoll state` prints it (runc's field names).
    pub fn state_json(&self, status: Status) -> serde_json::Value {
        let pid = if matches!(status, Status::Stopped) {
            0
        } else {
            self.pid
        };
        serde_json::json!({
            "ociVersion": "1.2.0",
            "id": self.id,
            "pid": pid,
            "status": status.as_str(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "annotations": self.annotations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(check_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a b"] {
            assert!(check_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn own_start_time() {
        let me = std::process::id() as i32;
        assert!(pid_start_time(me).is_some());
        assert!(matches!(pid_state(me), Some('R' | 'S')));
    }
}

//! /dev: the device nodes (runtime-spec "Default Devices" plus linux.devices), the standard
//! symlinks, and the console.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use oci_spec::runtime::LinuxDeviceType;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawMode};
use rustix::io::Errno;
use rustix::mount::{open_tree, OpenTreeFlags};

use super::plan::{Device, DevicePlan};
use super::{MountError, Rootfs};
use crate::error::{field, Result};

impl Rootfs {
    /// Make the planned device nodes: mknod, or in a user namespace (or for a node the
    /// device cgroup gives no mknod access) a bind of the host's node.
    pub fn devices(&self, plan: &DevicePlan<'_>) -> Result<()> {
        for d in &plan.nodes {
            if plan.bind_host_nodes {
                self.bind_host_node(d.path, "open_tree the host's node", None)?;
            } else if d.bind_from_host {
                self.bind_host_node(
                    d.path,
                    "open_tree the host's node (its rule in linux.resources.devices gives no mknod access, so it is bound, not made)",
                    Some(d),
                )?;
            } else {
                self.mknod(d)?;
            }
        }
        Ok(())
    }

    /// Bind the host's node at `path`; with `check`, only if it is that device.
    fn bind_host_node(
        &self,
        path: &Path,
        call: &'static str,
        check: Option<&Device<'_>>,
    ) -> Result<()> {
        let fail = |call| move |errno| device_err(path, call, errno);
        let target = self.target(path, true)?;
        let mnt = open_tree(
            rustix::fs::CWD,
            path,
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .map_err(fail(call))?;
        if let Some(d) = check {
            is_the_device(mnt.as_fd(), d)?;
        }
        self.attach(mnt.as_fd(), target.as_fd())
            .map_err(fail("move_mount"))?;
        Ok(())
    }

    fn mknod(&self, d: &Device<'_>) -> Result<()> {
        let path = d.path;
        let fail = |call| move |errno| device_err(path, call, errno);
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => {
                return Err(field(
                    "linux.devices[].path",
                    format!("{path:?} has no file name"),
                ))
            }
        };
        let dirfd = match self.lookup(parent, true)? {
            Some(fd) => fd,
            None => self.make_dirs(parent)?,
        };
        let kind = match d.typ {
            LinuxDeviceType::C | LinuxDeviceType::U => FileType::CharacterDevice,
            LinuxDeviceType::B => FileType::BlockDevice,
            LinuxDeviceType::P => FileType::Fifo,
            LinuxDeviceType::A => {
                return Err(field(
                    "linux.devices[].type",
                    "\"a\" is for cgroup rules only",
                ))
            }
        };
        let mode = Mode::from_raw_mode(d.mode as RawMode);
        let dev = rustix::fs::makedev(d.major as u32, d.minor as u32);
        match rustix::fs::mknodat(&dirfd, name, kind, mode, dev) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(fail("mknod")(e).into()),
        }
        let node = rustix::fs::openat(
            &dirfd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(fail("open"))?;
        // The name may have been in the image already (EEXIST above), as runc allows; but never
        // as a symlink, which chmod would follow out of the rootfs.
        let st = rustix::fs::fstat(&node).map_err(fail("fstat"))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            return Err(MountError::DeviceIsSymlink {
                path: path.to_path_buf(),
            }
            .into());
        }
        // fchmod does not work on O_PATH fds: chmod the name through the dir fd (the check above
        // ruled a symlink out; nothing inside the container runs yet to swap it).
        rustix::fs::chmodat(&dirfd, name, mode, AtFlags::empty()).map_err(fail("chmod"))?;
        let uid = d.uid.map(rustix::fs::Uid::from_raw);
        let gid = d.gid.map(rustix::fs::Gid::from_raw);
        if uid.is_some() || gid.is_some() {
            rustix::fs::chownat(&node, "", uid, gid, AtFlags::EMPTY_PATH).map_err(fail("chown"))?;
        }
        Ok(())
    }

    /// The standard /dev symlinks (runtime-spec "Default Devices" and runc's extras), made with
    /// symlinkat relative to /dev's fd: each name has no slash, so it stays in that directory,
    /// and symlinkat never follows an existing name (EEXIST: the image's own stays).
    pub fn dev_symlinks(&self) -> Result<(), MountError> {
        const LINKS: [(&str, &str); 5] = [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ];
        let Some(dev) = self.lookup(Path::new("/dev"), true)? else {
            return Ok(());
        };
        for (name, to) in LINKS {
            if name == "ptmx" && self.lookup(Path::new("/dev/pts/ptmx"), true)?.is_none() {
                continue;
            }
            match rustix::fs::symlinkat(to, &dev, name) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(errno) => {
                    return Err(MountError::InRootfs {
                        call: "symlink",
                        path: Path::new("/dev").join(name),
                        errno,
                    })
                }
            }
        }
        Ok(())
    }

    /// Bind the terminal's slave over /dev/console (runtime-spec: "/dev/console" when terminal).
    pub fn console(&self, slave: BorrowedFd<'_>) -> Result<(), MountError> {
        let fail = |call| move |errno| MountError::Console { call, errno };
        // Never follow a /dev/console the image planted as a symlink: it would aim the bind at
        // whatever it names inside the rootfs, /proc/sys/... included (CVE-2025-52565).
        if let Some(fd) = self.lookup(Path::new("/dev/console"), false)? {
            let st = rustix::fs::fstat(&fd).map_err(fail("fstat"))?;
            let kind = FileType::from_raw_mode(st.st_mode);
            if !matches!(kind, FileType::RegularFile | FileType::CharacterDevice) {
                return Err(MountError::ConsoleNotAFile {
                    kind: file_type_name(kind),
                });
            }
        }
        let target = self.target(Path::new("/dev/console"), true)?;
        let mnt = open_tree(
            slave,
            "",
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_EMPTY_PATH,
        )
        .map_err(fail("open_tree the pty slave"))?;
        self.attach(mnt.as_fd(), target.as_fd())
            .map_err(fail("move_mount"))
    }
}

/// The host node about to be bound must be the configured device: the config asked for a
/// number, not for whatever the host keeps at that path.
fn is_the_device(node: BorrowedFd<'_>, d: &Device<'_>) -> Result<()> {
    let st = rustix::fs::fstat(node).map_err(|e| device_err(d.path, "fstat the host's node", e))?;
    let want = if d.typ == LinuxDeviceType::B {
        FileType::BlockDevice
    } else {
        FileType::CharacterDevice
    };
    let rdev = rustix::fs::makedev(d.major as u32, d.minor as u32);
    if FileType::from_raw_mode(st.st_mode) != want || st.st_rdev != rdev {
        let call = "the host's node there is another device";
        return Err(device_err(d.path, call, Errno::NODEV).into());
    }
    Ok(())
}

fn device_err(path: &Path, call: &'static str, errno: Errno) -> MountError {
    MountError::Device {
        path: path.to_path_buf(),
        call,
        errno,
    }
}

fn file_type_name(t: FileType) -> &'static str {
    match t {
        FileType::Symlink => "symlink",
        FileType::Directory => "directory",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::BlockDevice => "block device",
        FileType::CharacterDevice => "character device",
        FileType::RegularFile => "regular file",
        _ => "file of unknown type",
    }
}

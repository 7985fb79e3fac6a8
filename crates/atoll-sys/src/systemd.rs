//! The two systemd protocols a service speaks without libsystemd: the fds it is started with
//! (sd_listen_fds(3), named by sd_listen_fds_with_names) and messages to the manager
//! (sd_notify(3): READY=1, and the fd store: FDSTORE=1 with FDNAME=, FDSTOREREMOVE=1).

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

/// The first fd systemd passes (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: i32 = 3;

/// The fds one message may carry: the kernel passes at most 253 (SCM_MAX_FD; systemd reads up
/// to 768).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Take the fds systemd passed us (socket activation and the fd store): `LISTEN_FDS` fds from
/// 3 up, if `LISTEN_PID` is our pid, each with its name from `LISTEN_FDNAMES` ("unknown" where
/// none is given, as sd_listen_fds_with_names does). The variables are removed so that the fds
/// are claimed once and no child takes them for its own. Empty when started otherwise.
pub fn take_listen_fds() -> Vec<(String, OwnedFd)> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    if !ours || n <= 0 || TAKEN.swap(true, Ordering::SeqCst) {
        return Vec::new();
    }
    // Removing variables races with threads reading the environment: this runs at the start of
    // `guard serve`, before it starts any.
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let mut names = names.split(':');
    (LISTEN_FDS_START..LISTEN_FDS_START + n)
        .map(|fd| (fd, names.next().filter(|s| !s.is_empty())))
        .filter(|(fd, _)| {
            rustix::io::fcntl_getfd(
                // SAFETY: only probes whether the number is open; no ownership is claimed here.
                unsafe { BorrowedFd::borrow_raw(*fd) },
            )
            .is_ok()
        })
        .map(|(fd, name)| {
            // systemd passes them without close-on-exec: ours alone from now on.
            // SAFETY: systemd opened these fds for this process (LISTEN_PID is ours) and nothing
            // in this process has claimed them: TAKEN makes this the only owner, once.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
            (name.unwrap_or("unknown").to_string(), fd)
        })
        .collect()
}

/// A connection to the service manager's notification socket (`$NOTIFY_SOCKET`).
#[derive(Debug)]
pub struct Notifier {
    sock: OwnedFd,
    addr: SocketAddrUnix,
}

impl Notifier {
    /// The manager's socket, if we run under one; `NOTIFY_SOCKET` is removed from our
    /// environment so that no child speaks for us (run before any thread starts). Errors: the
    /// variable names no usable address, or no datagram socket could be made.
    pub fn take_from_env() -> Option<io::Result<Notifier>> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        std::env::remove_var("NOTIFY_SOCKET");
        Some(Self::connect(&path))
    }

    /// A notifier for the socket `path` names (a path, or `@` and an abstract name).
    pub fn connect(path: &std::ffi::OsStr) -> io::Result<Notifier> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_bytes();
        let addr = match bytes.split_first() {
            Some((b'@', name)) => SocketAddrUnix::new_abstract_name(name)?,
            Some((b'/', _)) => SocketAddrUnix::new(bytes)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "NOTIFY_SOCKET={}: neither a path nor an abstract name",
                        path.to_string_lossy()
                    ),
                ))
            }
        };
        let sock = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok(Notifier { sock, addr })
    }

    /// Send `state` (newline-separated `KEY=value` assignments), with `fds` riding along in
    /// SCM_RIGHTS (at most [`MAX_FDS_PER_MESSAGE`]).
    pub fn send(&self, state: &str, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        if fds.len() > MAX_FDS_PER_MESSAGE {
            return Err(io::Error::from(rustix::io::Errno::TOOMANYREFS));
        }
        let mut space =
            vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::from(rustix::io::Errno::NOBUFS));
        }
        let sent = rustix::net::sendmsg_addr(
            &self.sock,
            &self.addr,
            &[IoSlice::new(state.as_bytes())],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        if sent != state.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short datagram to NOTIFY_SOCKET",
            ));
        }
        Ok(())
    }
}

/// Is `name` one systemd takes as an FDNAME (fdname_is_valid: printable ASCII but ':', at most
/// 255 bytes)?
pub fn fdname_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn a_notification_carries_its_state_and_fds() {
        let dir = std::env::temp_dir().join(format!("atoll-sd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let manager = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(path.as_os_str()).unwrap();
        let (a, _b) = UnixDatagram::pair().unwrap();
        n.send("FDSTORE=1\nFDNAME=x", &[a.as_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let (len, fd) = crate::socket::recv_with_fd(manager.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..len], b"FDSTORE=1\nFDNAME=x");
        assert!(fd.is_some(), "the fd rode along");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_notify_addresses_are_named() {
        let e = Notifier::connect(std::ffi::OsStr::new("relative")).unwrap_err();
        assert!(e.to_string().contains("NOTIFY_SOCKET=relative"), "{e}");
    }

    #[test]
    fn fd_names_follow_systemds_rule() {
        assert!(fdname_is_valid("guard-t12"));
        assert!(!fdname_is_valid("a:b"));
        assert!(!fdname_is_valid(""));
        assert!(!fdname_is_valid(&"x".repeat(256)));
        assert!(!fdname_is_valid("tab\there"));
    }
}

//! The console-socket protocol (runc's): connect to the UNIX socket the caller named and send the
//! pty master in SCM_RIGHTS, with the terminal's name as the payload.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::error::{sys, Result};

pub fn send_console(socket: &Path, master: BorrowedFd<'_>) -> Result<()> {
    let stream = UnixStream::connect(socket).map_err(sys(format!(
        "connect --console-socket {}",
        socket.display()
    )))?;
    atoll_sys::socket::send_with_fd(stream.as_fd(), b"/dev/ptmx", Some(master))
        .map_err(sys(format!("send the pty master to {}", socket.display())))?;
    Ok(())
}

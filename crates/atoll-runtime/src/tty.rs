//! The console-socket protocol (runc's): connect to the UNIX socket the caller named and send the
//! pty master in SCM_RIGHTS, with the terminal's name as the payload.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::error::{errno, in_root, sys, Result};

pub fn send_console(socket: &Path, master: BorrowedFd<'_>) -> Result<()> {
    let stream = UnixStream::connect(socket).map_err(sys(format!(
        "connect --console-socket {}",
        socket.display()
    )))?;
    atoll_sys::socket::send_with_fd(stream.as_fd(), b"/dev/ptmx", Some(master))
        .map_err(sys(format!("send the pty master to {}", socket.display())))?;
    Ok(())
}

/// Foreground `run` with a terminal and no console socket (what runc does itself): put our own
/// terminal in raw mode, give the pty our window size, and copy bytes both ways until the
/// container's side closes. Raw mode is undone when the returned guard drops.
pub struct Proxy {
    saved: Option<rustix::termios::Termios>,
    /// A second handle on the master, to pass on window-size changes.
    pub master: OwnedFd,
    output: Option<std::thread::JoinHandle<()>>,
}

pub fn proxy(master: OwnedFd) -> Result<Proxy> {
    use rustix::termios::{isatty, tcgetattr, tcsetattr, OptionalActions};
    let stdin = std::io::stdin();
    let mut saved = None;
    if isatty(&stdin) {
        copy_winsize(master.as_fd());
        let orig = tcgetattr(&stdin).map_err(errno("tcgetattr stdin"))?;
        let mut raw = orig.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw).map_err(errno("tcsetattr stdin raw"))?;
        saved = Some(orig);
    }
    let input = master.try_clone().map_err(sys("dup pty master"))?;
    let resize = master.try_clone().map_err(sys("dup pty master"))?;
    std::thread::spawn(move || {
        let mut r = std::io::stdin();
        let mut w = std::fs::File::from(input);
        let _stdin_closed_or_container_gone = std::io::copy(&mut r, &mut w);
    });
    let output = std::thread::spawn(move || {
        let mut r = std::fs::File::from(master);
        let mut w = std::io::stdout();
        // Ends with EIO once every slave fd in the container is closed.
        let _container_side_closed = std::io::copy(&mut r, &mut w);
        let _ = std::io::Write::flush(&mut w);
    });
    Ok(Proxy {
        saved,
        master: resize,
        output: Some(output),
    })
}

/// Give the pty the size of our own terminal (at start and on SIGWINCH).
pub fn copy_winsize(master: BorrowedFd<'_>) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdin()) {
        let _not_fatal = rustix::termios::tcsetwinsize(master, ws);
    }
}

impl Proxy {
    /// Wait for the container's output to drain, then restore the terminal.
    pub fn finish(mut self) {
        if let Some(h) = self.output.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                t,
            );
        }
    }
}

/// A new pty from the devpts at `root`/dev/pts (the container's own instance): the master
/// and, through TIOCGPTPEER (no path lookup), its slave.
pub fn open_pty(root: &pathrs::Root) -> Result<(OwnedFd, OwnedFd)> {
    let master: OwnedFd = root
        .resolve("/dev/pts/ptmx")
        .and_then(|h| {
            h.reopen(
                pathrs::flags::OpenFlags::O_RDWR
                    | pathrs::flags::OpenFlags::O_NOCTTY
                    | pathrs::flags::OpenFlags::O_CLOEXEC,
            )
        })
        .map_err(in_root("open /dev/pts/ptmx in the container"))?
        .into();
    rustix::pty::unlockpt(&master).map_err(errno("unlockpt"))?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY,
    )
    .map_err(errno("ioctl(TIOCGPTPEER)"))?;
    Ok((master, slave))
}

/// `process.consoleSize`: the pty's first window size, set on the slave before the process
/// starts (TIOCSWINSZ, ioctl_tty(2)).
pub fn set_console_size(
    pty: Option<&OwnedFd>,
    size: Option<&oci_spec::runtime::Box>,
) -> Result<()> {
    let (Some(pty), Some(size)) = (pty, size) else {
        return Ok(());
    };
    let dim = |v: u64, f: &str| {
        u16::try_from(v).map_err(|_| {
            crate::error::field(
                format!("process.consoleSize.{f}"),
                format!("{v} is above 65535"),
            )
        })
    };
    let ws = rustix::termios::Winsize {
        ws_row: dim(size.height(), "height")?,
        ws_col: dim(size.width(), "width")?,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(pty, ws).map_err(crate::error::errno(
        "ioctl(TIOCSWINSZ) for process.consoleSize",
    ))
}

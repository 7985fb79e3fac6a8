//! runtime-spec "The Container Process State" (config-linux.md): hand the notify fd to the seccomp
//! agent listening at `listenerPath`, with a JSON description of the container, in one
//! SCM_RIGHTS message on a UNIX stream socket.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde::Serialize;

use crate::SeccompError;

/// The runtime-spec version whose protocol this speaks (`ociVersion` in the message).
pub const OCI_VERSION: &str = "1.2.0";

/// The message, field for field as the spec names them.
#[derive(Serialize)]
struct ContainerProcessState<'a> {
    #[serde(rename = "ociVersion")]
    oci_version: &'a str,
    /// Names of the fds in SCM_RIGHTS, in order.
    fds: [&'a str; 1],
    pid: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a str>,
    state: &'a serde_json::Value,
}

/// Connect to `listener_path`, send the state JSON with `notify_fd` attached, and close.
/// `state` is the container's state (as `atoll state` prints it), `pid` the container process.
pub fn send_to_listener(
    listener_path: &Path,
    notify_fd: BorrowedFd<'_>,
    pid: i32,
    metadata: Option<&str>,
    state: &serde_json::Value,
) -> Result<(), SeccompError> {
    let err = |op: &'static str| {
        let path = listener_path.to_path_buf();
        move |source| SeccompError::Listener { path, op, source }
    };
    let msg = ContainerProcessState {
        oci_version: OCI_VERSION,
        fds: ["seccompFd"],
        pid,
        metadata,
        state,
    };
    let body = serde_json::to_vec(&msg).expect("the state serializes: it is a serde_json::Value");
    let mut stream = UnixStream::connect(listener_path).map_err(err("connect"))?;
    // The fd rides with the first bytes; a stream socket may take fewer than all of them.
    let sent = atoll_sys::socket::send_with_fd(stream.as_fd(), &body, Some(notify_fd))
        .map_err(err("sendmsg"))?;
    stream.write_all(&body[sent..]).map_err(err("write"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixListener;

    fn receive(listener: &UnixListener) -> (serde_json::Value, std::os::fd::OwnedFd) {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let (n, fd) = atoll_sys::socket::recv_with_fd(conn.as_fd(), &mut buf).unwrap();
        (
            serde_json::from_slice(&buf[..n]).unwrap(),
            fd.expect("the fd came in SCM_RIGHTS"),
        )
    }

    #[test]
    fn the_agent_gets_the_state_and_the_fd() {
        let tmp = TempDir::new();
        let path = tmp.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // Any fd will do to check the transfer: a file we can recognise by inode.
        let marker = std::fs::File::create(tmp.path().join("marker")).unwrap();
        let state = serde_json::json!({"ociVersion":"1.2.0","id":"c1","status":"creating","pid":42,"bundle":"/b"});

        send_to_listener(&path, marker.as_fd(), 42, Some("meta data"), &state).unwrap();
        let (msg, fd) = receive(&listener);
        assert_eq!(
            msg,
            serde_json::json!({"ociVersion": OCI_VERSION, "fds": ["seccompFd"], "pid": 42, "metadata": "meta data", "state": state})
        );
        let got = std::fs::File::from(fd).metadata().unwrap();
        assert_eq!(
            (got.dev(), got.ino()),
            (
                marker.metadata().unwrap().dev(),
                marker.metadata().unwrap().ino()
            )
        );

        send_to_listener(&path, marker.as_fd(), 7, None, &state).unwrap();
        let (msg, _fd) = receive(&listener);
        assert!(
            msg.get("metadata").is_none(),
            "no listenerMetadata, no field: {msg}"
        );
    }

    #[test]
    fn a_missing_agent_names_the_path() {
        let tmp = TempDir::new();
        let path = tmp.path().join("nobody.sock");
        let marker = std::fs::File::open("/dev/null").unwrap();
        let e =
            send_to_listener(&path, marker.as_fd(), 1, None, &serde_json::Value::Null).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert!(e.to_string().contains("nobody.sock: connect"), "{e}");
    }
}

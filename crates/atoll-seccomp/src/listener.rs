//! runtime-spec "The Container Process State": hand the notify fd to the listener named by
//! `listenerPath`, with a JSON description of the container, in one SCM_RIGHTS message.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::SeccompError;

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
    let msg = serde_json::json!({
        "ociVersion": "1.2.0",
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": metadata.unwrap_or(""),
        "state": state,
    });
    let stream = UnixStream::connect(listener_path).map_err(err("connect"))?;
    let body = serde_json::to_vec(&msg).expect("json values serialize");
    atoll_sys::socket::send_with_fd(stream.as_fd(), &body, Some(notify_fd)).map_err(err("sendmsg"))?;
    Ok(())
}

//! A new guard supervisor takes back the tenants a killed one lost. Kept apart from `guard`
//! (which `state` uses for the guard's directory name), since it walks the state under --root.

use std::path::Path;
use std::time::Duration;

use crate::error::{Result, RuntimeError};
use crate::guard::{layer_threads, notify_layer, GuardNode, Reattached};

/// Give the guard back to the running containers under `node.root` whose listeners died with
/// a supervisor (its keeper killed): run by a new supervisor as it starts, once it listens at
/// `socket`. Without it their trapped calls would fail with ENOSYS, unreported, until they
/// were restarted. A container whose threads still have a live listener is left as it is (the
/// kernel answers EBUSY), so this is safe to run on every start; paused containers are passed
/// over (a frozen task cannot be interrupted). Passes over each container until one finds no
/// new thread, for the processes forked meanwhile. `registering`: the container whose `create`
/// started this supervisor, which registers its only tenant itself (left alone: nothing of it
/// can have been lost). Returns (container id, what was done).
pub fn adopt(
    node: &GuardNode,
    socket: &Path,
    registering: Option<&str>,
) -> Vec<(String, Result<Reattached>)> {
    let store = crate::state::Store::new(&node.root);
    let mut out = Vec::new();
    for id in store.list().unwrap_or_default() {
        if registering == Some(id.as_str()) {
            continue;
        }
        // Whoever holds the lock (a `create` not done yet, whose init may still be setting up
        // its filter) registers its own tenant: wait for it, then read the state.
        let Ok(_lock) = store.lock_within(&id, Duration::from_secs(5)) else {
            continue;
        };
        let Ok(saved) = store.load(&id) else {
            continue;
        };
        let status = saved.status();
        if !matches!(
            status,
            crate::state::Status::Running | crate::state::Status::Created
        ) {
            continue;
        }
        let adopted = (|| -> Result<Option<Reattached>> {
            let Some(layer) = notify_layer(&saved.config, &store.seccomp_cache())? else {
                return Ok(None);
            };
            if layer.listener_path() != Some(socket) {
                return Ok(None); // another agent's tenant
            }
            let Some(cg) = &saved.cgroup else {
                return Ok(None);
            };
            let cg = atoll_cgroups::Cgroup::from_saved(cg).map_err(RuntimeError::from)?;
            let state = saved.state_json(status);
            let meta = layer.listener_metadata();
            let mut done = Reattached::default();
            for _ in 0..5 {
                let before = done.seen.len();
                let pids = cg.pids().map_err(RuntimeError::from)?;
                layer_threads(&layer, &pids, &mut done, &mut |fd| {
                    Ok(atoll_seccomp::send_to_listener(
                        socket, fd, saved.pid, meta, &state,
                    )?)
                })?;
                if done.seen.len() == before {
                    break;
                }
            }
            Ok(Some(done))
        })();
        match adopted {
            Ok(None) => {}
            Ok(Some(d)) => out.push((id, Ok(d))),
            Err(e) => out.push((id, Err(e))),
        }
    }
    out
}

//! `atoll guard serve` (the seccomp agent: a keeper process and the supervisor it starts),
//! `guard status` (the effective policy and the supervisor of --root) and `guard events` (the
//! alert log). `create` runs `guard serve --daemon` when no supervisor answers.

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use atoll_guard::fdstore::FdStore;
use atoll_guard::{Mode, Policy, Sinks, Supervisor, SupervisorOpts};
use atoll_runtime::guard::GuardNode;

use crate::cli::{Cli, GuardVerb};

pub fn guard(cli: &Cli, v: &GuardVerb) -> Result<i32> {
    let node = || GuardNode::load(&cli.root);
    match v {
        GuardVerb::Serve {
            socket,
            alerts,
            mode,
            idle_exit_ms,
            daemon,
            log_file,
            notify_ready,
            registering,
        } => {
            let node = node()?;
            let socket = socket.clone().unwrap_or_else(|| node.socket.clone());
            let alerts = alerts.clone().unwrap_or_else(|| node.alert_log.clone());
            for p in [&socket, &alerts] {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("mkdir {}", dir.display()))?;
                }
            }
            let mut args: Vec<std::ffi::OsString> = vec![
                "--socket".into(),
                socket.clone().into(),
                "--alerts".into(),
                alerts.into(),
            ];
            if let Some(m) = mode {
                args.extend(["--mode".into(), m.into()]);
            }
            if let Some(ms) = idle_exit_ms {
                args.extend(["--idle-exit-ms".into(), ms.to_string().into()]);
            }
            if *daemon {
                let log = log_file.clone().unwrap_or_else(|| log_beside(&socket));
                return daemonize(cli, &args, registering.as_deref(), &log);
            }
            keep(cli, &socket, &args, *notify_ready, registering.clone())
        }
        GuardVerb::Worker {
            socket,
            alerts,
            mode,
            idle_exit_ms,
            keeper_pid,
        } => worker(
            cli,
            socket,
            alerts,
            mode.as_deref(),
            *idle_exit_ms,
            *keeper_pid,
        ),
        GuardVerb::Status => {
            let node = node()?;
            println!("{}", serde_json::to_string_pretty(&status(&node))?);
            Ok(0)
        }
        GuardVerb::Events { follow, alerts } => {
            let path = match alerts {
                Some(p) => p.clone(),
                None => node()?.alert_log,
            };
            events(&path, *follow)?;
            Ok(0)
        }
    }
}

fn log_beside(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".log");
    PathBuf::from(p)
}

fn status_file(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".status");
    PathBuf::from(p)
}

/// `guard status`: the policy containers get, and who serves the socket.
fn status(node: &GuardNode) -> serde_json::Value {
    let answers = std::os::unix::net::UnixStream::connect(&node.socket).is_ok();
    let sup: serde_json::Value = std::fs::read(status_file(&node.socket))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|_| answers)
        .unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "policy": node.to_json(),
        "supervisor": {"answers": answers, "running": sup},
    })
}

/// `--daemon`: leave the caller's session and cgroups, start the keeper with its stdio on `log`,
/// and return once it listens (it writes "ready"), so that `create` can send at once.
fn daemonize(
    cli: &Cli,
    args: &[std::ffi::OsString],
    registering: Option<&str>,
    log: &Path,
) -> Result<i32> {
    // Our own session: no terminal signal of the caller's reaches the supervisor.
    rustix::process::setsid().context("setsid")?;
    // Fds the caller left open without close-on-exec (a --preserve-fds range, a harness's
    // pipe) must not be held open for the supervisor's whole life.
    atoll_sys::process::close_range_cloexec(3).context("close_range(3, ~0, CLOEXEC)")?;
    leave_cgroups();
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let (mut ready_r, ready_w) = std::io::pipe().context("pipe")?;
    let child = Command::new("/proc/self/exe")
        .arg("--root")
        .arg(&cli.root)
        .args(["guard", "serve", "--notify-ready"])
        .args(args)
        .args(
            registering
                .map(|id| ["--registering", id])
                .into_iter()
                .flatten(),
        )
        // Never a service manager's: this keeper runs for `create`, outside any unit.
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(ready_w)
        .stderr(log_file)
        .spawn()
        .context("spawn /proc/self/exe guard serve")?;
    // One line: the keeper keeps its stdout open, so no EOF comes while it serves.
    let mut word = String::new();
    let _ = std::io::BufReader::new(&mut ready_r).read_line(&mut word); // EOF: failed, below
    if word.trim() != "ready" {
        bail!(
            "the guard supervisor (pid {}) did not start; see {}",
            child.id(),
            log.display()
        );
    }
    Ok(0)
}

/// Move ourselves (and so the supervisor we start) to the root of every cgroup hierarchy: out
/// of the cgroup of whoever ran `create`, which may be a container's or a shim's, whose end
/// must not end the supervisor of every other container. Best effort: logged.
fn leave_cgroups() {
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
        return;
    };
    let v2_root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/unified"
    };
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        if path == "/" {
            continue;
        }
        let dir = if ctrls.is_empty() {
            PathBuf::from(v2_root)
        } else {
            Path::new("/sys/fs/cgroup").join(ctrls.trim_start_matches("name="))
        };
        let procs = dir.join("cgroup.procs");
        if let Err(e) = std::fs::write(&procs, "0") {
            tracing::warn!("guard: leave cgroup {path}: write {}: {e}", procs.display());
        }
    }
}

/// The keeper: bind the socket (or take systemd's), start the worker, keep its tenants.
fn keep(
    cli: &Cli,
    socket: &Path,
    args: &[std::ffi::OsString],
    notify_ready: bool,
    registering: Option<String>,
) -> Result<i32> {
    // systemd hands us the socket unit's listener and, after a restart, what we left in its
    // fd store (named guard-…).
    let (stored, activated): (Vec<_>, Vec<_>) = atoll_sys::systemd::take_listen_fds()
        .into_iter()
        .partition(|(name, _)| name.starts_with("guard-"));
    let listener = match activated.into_iter().next() {
        Some((_, fd)) => UnixListener::from(fd),
        None => atoll_guard::bind_socket(socket)?,
    };
    let store = match atoll_sys::systemd::Notifier::take_from_env() {
        Some(Ok(n)) => Some(FdStore::open(n, stored)?),
        Some(Err(e)) => {
            tracing::warn!("guard: NOTIFY_SOCKET: {e}; systemd's fd store is not used");
            None
        }
        None => None,
    };
    raise_nofile();
    let me = std::process::id();
    let root = cli.root.clone();
    let worker = || {
        let mut c = Command::new("/proc/self/exe");
        c.arg("--root")
            .arg(&root)
            .args(["guard", "worker", "--keeper-pid", &me.to_string()])
            .args(args);
        c
    };
    if notify_ready {
        let mut out = std::io::stdout();
        out.write_all(b"ready\n")
            .and_then(|_| out.flush())
            .context("tell the caller we listen")?;
    }
    if let Some((store, restored)) = &store {
        store.ready()?;
        if !restored.tenants.is_empty() {
            tracing::warn!(
                "guard: {} tenants back from systemd's fd store (the keeper was restarted)",
                restored.tenants.len()
            );
        }
    }
    tracing::info!(socket = %socket.display(), "guard: keeper serving");
    let adoption = adopt_in_background(cli, socket, registering);
    atoll_guard::keeper::run(listener, worker, store)?;
    // Leaving while a tenant is held would detach it with our registers in place.
    if let Some(t) = adoption {
        let _ = t.join();
    }
    Ok(0)
}

/// Tenants whose listeners died with an earlier supervisor (its keeper killed) get the guard
/// back (atoll_runtime::adopt::adopt), in a thread of the keeper, once the socket listens: the
/// registrations wait in its backlog until the worker serves. Its ptrace waits are for the
/// tenants' threads only; the keeper waits for its worker by pid.
fn adopt_in_background(
    cli: &Cli,
    socket: &Path,
    registering: Option<String>,
) -> Option<std::thread::JoinHandle<()>> {
    let Ok(node) = GuardNode::load(&cli.root) else {
        return None;
    };
    let socket = socket.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("adopt".into())
        .spawn(move || {
            for (id, r) in atoll_runtime::adopt::adopt(&node, &socket, registering.as_deref()) {
                match r {
                    Ok(d) if d.guarded > 0 => tracing::warn!(
                        "guard: container {id} had lost its listeners (an earlier supervisor \
                         was killed): {} threads guarded again, {} still guarded",
                        d.guarded,
                        d.alive
                    ),
                    Ok(d) if !d.unguarded.is_empty() => tracing::info!(
                        "guard: container {id}: threads {:?} have neither no_new_privs nor \
                         CAP_SYS_ADMIN, so whether their listener lives cannot be checked, and \
                         a lost one cannot be given back (their trapped calls fail with ENOSYS)",
                        d.unguarded
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        "guard: give container {id} its guard back: {}",
                        atoll_runtime::error::report(&e)
                    ),
                }
            }
        });
    spawned
        .inspect_err(|e| tracing::warn!("guard: start the adoption thread: {e}"))
        .ok()
}

/// The keeper holds one fd per tenant: as many as the hard limit allows.
fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l); // the soft limit stays: fewer tenants fit
    }
}

fn worker(
    cli: &Cli,
    socket: &Path,
    alerts: &Path,
    mode: Option<&str>,
    idle_exit_ms: Option<u64>,
    keeper_pid: i32,
) -> Result<i32> {
    // Die with the keeper (it holds the listener): a keeper stopped by `down` or systemd must
    // not leave us serving. Checked after: it may have died before the prctl.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .context("prctl(PR_SET_PDEATHSIG)")?;
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(keeper_pid) {
        bail!("the keeper (pid {keeper_pid}) is gone");
    }
    let node = GuardNode::load(&cli.root)?;
    let listener: OwnedFd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("dup the listener (stdin)")?;
    let chan: OwnedFd = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("dup the keeper channel (stdout)")?;
    let policy = Policy {
        mode: match mode {
            Some(m) => m.parse()?,
            None => Mode::Enforce,
        },
        allow_userns: node.allow_userns,
        ..Policy::default()
    };
    let opts = SupervisorOpts {
        socket: socket.to_path_buf(),
        alerts: alerts.to_path_buf(),
        policy,
        idle_exit: idle_exit_ms.map(Duration::from_millis),
        sinks: Sinks {
            syslog: node.syslog.clone(),
            collector: node.collector.clone(),
        },
    };
    let mut sup = Supervisor::inherit(UnixListener::from(listener), chan, &opts)?;
    let status = status_file(socket);
    let write_status = |sup: &Supervisor| {
        let s = serde_json::json!({"keeper": keeper_pid, "worker": std::process::id(),
            "socket": socket, "tenants": sup.tenant_ids()});
        let _ = std::fs::write(&status, s.to_string()); // for `guard status` only
    };
    write_status(&sup);
    tracing::info!(socket = %socket.display(), alerts = %alerts.display(), "guard: serving");
    sup.run_with(|s| write_status(s))?;
    let _ = std::fs::remove_file(&status);
    // Idle, socket removed: the seccomp cache kept for the next `run` goes now, as it would
    // have with the last container (Store::drop_cache_if_unused).
    atoll_runtime::Store::new(&cli.root).drop_cache_if_unused();
    // And atoll's guard directory, if the supervisor's files were all it held (what has content,
    // an alert log with alerts or a log with warnings, stays: Supervisor::leave_if_idle).
    if let Some(dir) = socket
        .parent()
        .filter(|d| d.ends_with(atoll_runtime::guard::GUARD_DIR))
    {
        let _not_empty_is_fine = std::fs::remove_dir(dir);
    }
    Ok(0)
}

/// `events --alerts ID`: follow the guard's alerts about one container (an alert's `tenant` is
/// the container id) in `path`, which may not exist yet (or again) when there is no alert.
pub fn follow_alerts(path: &Path, container_id: &str) -> Result<i32> {
    let needle = format!(
        "\"tenant\":{}",
        serde_json::Value::String(container_id.to_string())
    );
    events_matching(path, true, Some(&needle))?;
    Ok(0)
}

/// Print the file's lines; with `follow`, keep reading what is appended (like tail -f, polling:
/// the log is small and inotify would be one more moving part).
fn events(path: &Path, follow: bool) -> Result<()> {
    events_matching(path, follow, None)
}

fn events_matching(path: &Path, follow: bool, needle: Option<&str>) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // The log may not be there: a supervisor that leaves for idleness removes an empty one
    // (atoll_guard::Supervisor::leave_if_idle) and the next one makes it again. So no file is
    // no alert, and following is by path, as `tail -F` does: a new file is read from its start
    // (nothing is lost: only an empty file is ever removed).
    let open = || -> Result<Option<(std::io::BufReader<std::fs::File>, u64)>> {
        match std::fs::File::open(path) {
            Ok(f) => {
                let ino = f.metadata()?.ino();
                Ok(Some((std::io::BufReader::new(f), ino)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("open {}", path.display())),
        }
    };
    let mut current = open()?;
    let out = std::io::stdout();
    let mut line = String::new();
    loop {
        let n = match current.as_mut() {
            Some((reader, _)) => {
                line.clear();
                reader.read_line(&mut line)?
            }
            None => 0,
        };
        if n > 0 && line.ends_with('\n') {
            if needle.is_some_and(|w| !line.contains(w)) {
                continue;
            }
            let mut o = out.lock();
            o.write_all(line.as_bytes())?;
            o.flush()?;
            continue;
        }
        if !follow {
            if n > 0 {
                print!("{line}");
            }
            return Ok(());
        }
        if let Some((reader, ino)) = current.as_mut() {
            // A partial line: go back and wait for the rest of it.
            reader.seek_relative(-(n as i64))?;
            let replaced = std::fs::metadata(path).is_ok_and(|m| m.ino() != *ino);
            if n == 0 && replaced {
                current = open()?;
                continue;
            }
        } else {
            current = open()?;
            if current.is_some() {
                continue;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

//! Islands whose root is a container image (`image = "TRANSPORT:REFERENCE"`): the atoll-image
//! helper (a binary of its own, next to `atoll`, so that its async stack never maps into
//! `atoll run`) pulls it into the shared layer store; `up` takes the config's defaults and
//! mounts the island's root: an overlayfs of the layers, each an idmapped clone so that the
//! image's root-owned files belong to the island's root, over the island's own upper dir.

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{io, IslandsError, Result};
use crate::file::File;
use crate::plan::IslandPlan;

/// Where pulled images live: layers unpacked once, shared by every island of every project.
pub const IMAGE_STORE: &str = "/var/lib/atoll/images";
/// The helper's name, looked up next to the running `atoll`.
pub const HELPER: &str = "atoll-image";

/// The store: ATOLL_IMAGE_STORE where set (tests, a bigger disk), else [`IMAGE_STORE`].
pub fn store_root() -> PathBuf {
    std::env::var_os("ATOLL_IMAGE_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(IMAGE_STORE))
}

pub use crate::file::image::{ImageRoot, ImageSpec, Pulled};

/// The helper next to `atoll`.
pub fn helper(atoll: &Path) -> Result<PathBuf> {
    let dir = std::fs::canonicalize(atoll)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let h = dir.join(HELPER);
    if h.is_file() {
        Ok(h)
    } else {
        Err(IslandsError::Other(format!(
            "{} is missing: islands with an `image` need atoll's image helper next to atoll (cargo build -p atoll-image)",
            h.display()
        )))
    }
}

/// Run the helper; its stdout on success, its one-line error otherwise.
pub fn run_helper(atoll: &Path, args: &[&str]) -> std::result::Result<Vec<u8>, String> {
    let h = helper(atoll).map_err(|e| e.to_string())?;
    let out = Command::new(&h)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("run {}: {e}", h.display()))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err.trim().lines().last().unwrap_or("failed").to_string())
    }
}

/// The file with each image island's image pulled and its config's defaults in place: the
/// command (Entrypoint + Cmd) unless the file gives one, the user (resolved in the image's
/// /etc/passwd) unless it gives `user`, the working dir unless it gives `cwd`.
pub fn pull_all(file: &File, atoll: &Path) -> Result<File> {
    let mut file = file.clone();
    let store = store_root();
    // One pull per reference, however many islands name it.
    let mut pulled_by_ref: std::collections::BTreeMap<String, Pulled> = Default::default();
    for island in file.islands.iter_mut() {
        let Some(spec) = island.image.as_mut() else {
            continue;
        };
        let fail = |msg: String| IslandsError::Island {
            island: island.name.clone(),
            msg: format!("image {:?}: {msg}", spec.reference),
        };
        let pulled = match pulled_by_ref.get(&spec.reference) {
            Some(p) => p.clone(),
            None => {
                let p = match cached(&store, &spec.reference) {
                    Some(p) => p,
                    None => {
                        let store_arg = store.to_string_lossy();
                        let mut args = vec!["pull"];
                        if !spec.tls_verify {
                            args.push("--tls-verify=false");
                        }
                        args.extend([&*store_arg, &spec.reference]);
                        let out = run_helper(atoll, &args).map_err(&fail)?;
                        let p: Pulled = serde_json::from_slice(&out)
                            .map_err(|e| fail(format!("the image helper's answer: {e}")))?;
                        remember(&store, &spec.reference, &p);
                        p
                    }
                };
                pulled_by_ref.insert(spec.reference.clone(), p.clone());
                p
            }
        };
        if !spec.command_set {
            if pulled.command.is_empty() {
                return Err(fail(
                    "its config has no Entrypoint or Cmd: give the island a `command`".into(),
                ));
            }
            island.command = pulled.command.clone();
        }
        if !spec.user_set {
            (island.uid, island.gid) = (pulled.uid, pulled.gid);
        }
        if !spec.cwd_set {
            island.cwd = pulled.cwd.clone().unwrap_or_else(|| "/".into());
        }
        spec.pulled = Some(pulled);
    }
    Ok(file)
}

/// A reference to a file or directory on this host (an archive, an OCI layout) pulled before
/// and unchanged since (the same inode, size and mtime) is not read again: starting a second
/// island from it then costs no skopeo run (docs/images.md, "Cost"). Other transports (podman's
/// storage, registries: a tag can move) are asked every time.
#[derive(Serialize, Deserialize)]
struct Remembered {
    reference: String,
    key: String,
    pulled: Pulled,
}

fn file_key(reference: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let (transport, rest) = reference.split_once(':')?;
    let (path, inside) = match transport {
        "oci-archive" | "docker-archive" => (rest, None),
        "oci" => (rest, Some("index.json")),
        "dir" => (rest, Some("manifest.json")),
        _ => return None,
    };
    // PATH[:TAG]: the longest prefix that exists is the path.
    let mut candidates = vec![path];
    if let Some((p, _)) = path.rsplit_once(':') {
        candidates.push(p);
    }
    candidates.into_iter().find_map(|p| {
        let p = Path::new(p);
        let p = match inside {
            Some(f) => p.join(f),
            None => p.to_path_buf(),
        };
        let m = std::fs::metadata(&p).ok()?;
        m.is_file().then(|| {
            format!(
                "{}:{}:{}:{}.{}",
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec()
            )
        })
    })
}

fn remembered_path(store: &Path, reference: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    // Only a file name: the reference itself is kept inside and compared.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    reference.hash(&mut h);
    store.join("refs").join(format!("{:016x}.json", h.finish()))
}

fn cached(store: &Path, reference: &str) -> Option<Pulled> {
    let key = file_key(reference)?;
    let r: Remembered =
        serde_json::from_slice(&std::fs::read(remembered_path(store, reference)).ok()?).ok()?;
    let whole = r.reference == reference
        && r.key == key
        && store
            .join("images")
            .join(format!("{}.json", r.pulled.id))
            .is_file()
        && r.pulled.layers.iter().all(|l| l.is_dir());
    whole.then_some(r.pulled)
}

/// Best effort: without it the next `up` asks skopeo again.
fn remember(store: &Path, reference: &str, pulled: &Pulled) {
    let Some(key) = file_key(reference) else {
        return;
    };
    let r = Remembered {
        reference: reference.to_string(),
        key,
        pulled: pulled.clone(),
    };
    let p = remembered_path(store, reference);
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::create_dir_all(store.join("refs"));
    if serde_json::to_vec(&r)
        .ok()
        .and_then(|data| std::fs::write(&tmp, data).ok())
        .is_some()
    {
        let _ = std::fs::rename(&tmp, &p);
    }
}

/// Where an image island's root is mounted, in its bundle dir.
pub fn root_dir(island: &IslandPlan) -> PathBuf {
    island.dir.join("image-root")
}

/// The island's own upper and work dirs: kept beside its data dir for `overlay` (so they
/// outlive `down`), in its state dir (a tmpfs, gone at `down`) for `read-only`.
pub fn upper_dirs(island: &IslandPlan, root: ImageRoot) -> (PathBuf, PathBuf) {
    let base = match root {
        ImageRoot::Overlay => island
            .data_dir
            .with_file_name(format!("{}.root", island.spec.name)),
        ImageRoot::ReadOnly => island.dir.join("overlay"),
    };
    (base.join("upper"), base.join("work"))
}

/// The first half of the island's root: each layer cloned (open_tree(2)) and idmapped with the
/// island's own id maps (mount_setattr(2) MOUNT_ATTR_IDMAP: the image's uid 0 is the island's
/// root, as every other island sees its own copy of the same layers), attached under
/// `<dir>/layers/N`, and the island's upper dir made; [`mount_overlay`] then joins them.
/// overlayfs takes idmapped lower layers (Documentation/filesystems/overlayfs.rst), but an
/// overlayfs mount cannot itself be idmapped (EINVAL, measured on 6.18), hence per layer. The
/// id-map user namespace is a CLONE_VM child: this process must be single-threaded here.
pub fn clone_layers(island: &IslandPlan, spec: &ImageSpec, pulled: &Pulled) -> Result<()> {
    use atoll_sys::mount::{self as sysm, MountAttr};
    use rustix::mount::{move_mount, open_tree, MoveMountFlags, OpenTreeFlags};
    let name = &island.spec.name;
    let fail = |op: String, e: rustix::io::Errno| IslandsError::Island {
        island: name.clone(),
        msg: format!("image {:?}: {op}: {e}", spec.reference),
    };
    let (uid_map, gid_map) = crate::share::island_maps(island);
    let mount: oci_spec::runtime::Mount = serde_json::from_value(serde_json::json!({
        "destination": "/", "type": "bind", "source": "/",
        "uidMappings": uid_map, "gidMappings": gid_map,
    }))
    .map_err(|e| IslandsError::Other(format!("island {name}: id maps: {e}")))?;
    let proof = atoll_sys::process::SingleThreaded::check()
        .map_err(|e| io(format!("island {name}: count this process's threads"))(e))?;
    let userns =
        atoll_runtime::process::init::make_idmap_userns(&proof, &mount).map_err(|source| {
            IslandsError::Runtime {
                island: name.clone(),
                source,
            }
        })?;
    let layers_dir = island.dir.join("layers");
    for (n, layer) in pulled.layers.iter().enumerate() {
        let at = layers_dir.join(n.to_string());
        std::fs::create_dir_all(&at).map_err(io(format!("mkdir {}", at.display())))?;
        let tree = open_tree(
            rustix::fs::CWD,
            layer,
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .map_err(|e| fail(format!("open_tree {}", layer.display()), e))?;
        let attr = MountAttr {
            set: sysm::MOUNT_ATTR_IDMAP
                | sysm::MOUNT_ATTR_RDONLY
                | sysm::MOUNT_ATTR_NOSUID
                | sysm::MOUNT_ATTR_NODEV,
            userns: Some(userns.as_fd()),
            ..Default::default()
        };
        sysm::mount_setattr(tree.as_fd(), false, &attr).map_err(|e| {
            fail(
                format!("mount_setattr MOUNT_ATTR_IDMAP {}", layer.display()),
                rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::INVAL),
            )
        })?;
        move_mount(
            tree.as_fd(),
            "",
            rustix::fs::CWD,
            &at,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| fail(format!("move_mount to {}", at.display()), e))?;
    }
    let (upper, work) = upper_dirs(island, spec.root);
    let base = upper.parent().expect("upper has a parent");
    std::fs::create_dir_all(base).map_err(io(format!("mkdir {}", base.display())))?;
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", base.display())))?;
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(io(format!("mkdir {}", d.display())))?;
    }
    // The overlay's root directory is the upper dir's: the island's root owns its "/".
    let root_uid = island.host_base;
    std::os::unix::fs::chown(&upper, Some(root_uid), Some(root_uid))
        .map_err(io(format!("chown {}", upper.display())))?;
    std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o755))
        .map_err(io(format!("chmod {}", upper.display())))
}

/// Mount the overlayfs of an island's layers (attached by [`clone_layers`]) and its upper dir
/// at [`root_dir`]; its mount path. Needs no single thread: `up` runs it beside the guard's
/// start (on ext4 the mount itself takes about 0.4 ms: overlayfs tests its work dir).
pub fn mount_overlay(island: &IslandPlan, spec: &ImageSpec, pulled: &Pulled) -> Result<PathBuf> {
    let name = &island.spec.name;
    let (upper, work) = upper_dirs(island, spec.root);
    let layers_dir = island.dir.join("layers");
    // overlayfs lists lower layers uppermost first.
    let lowerdir: Vec<String> = (0..pulled.layers.len())
        .rev()
        .map(|n| {
            layers_dir
                .join(n.to_string())
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        upper.display(),
        work.display()
    );
    let target = root_dir(island);
    std::fs::create_dir_all(&target).map_err(io(format!("mkdir {}", target.display())))?;
    let data = std::ffi::CString::new(data)
        .map_err(|_| IslandsError::Other(format!("island {name}: a layer path holds NUL")))?;
    rustix::mount::mount(
        "overlay",
        &target,
        "overlay",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        data.as_c_str(),
    )
    .map_err(|e| IslandsError::Island {
        island: name.clone(),
        msg: format!(
            "image {:?}: mount overlay on {}: {e}",
            spec.reference,
            target.display()
        ),
    })?;
    Ok(target)
}

/// Unmount what [`clone_layers`] and [`mount_overlay`] made under a bundle dir `dir` (by name, so a crashed `up` is
/// undone too). Returns false, with the reasons in `errs`, if anything stays mounted: the
/// caller must then not remove `dir`, whose layers would be the shared store's.
pub fn unmount_root(dir: &Path, errs: &mut Vec<String>) -> bool {
    let before = errs.len();
    let detach = |p: &Path, errs: &mut Vec<String>| match rustix::mount::unmount(
        p,
        rustix::mount::UnmountFlags::DETACH,
    ) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => errs.push(format!("umount {}: {e}", p.display())),
    };
    detach(&dir.join("image-root"), errs);
    if let Ok(rd) = std::fs::read_dir(dir.join("layers")) {
        for e in rd.flatten() {
            detach(&e.path(), errs);
            // Empty once unmounted: rmdir(2) fails on anything still there.
            if let Err(e) = std::fs::remove_dir(e.path()) {
                errs.push(format!("rmdir {}: {e}", e));
            }
        }
    }
    errs.len() == before
}

/// A mount point (directory, or with `file` an empty file) at `at` inside the mounted image
/// root, made through pathrs: the upper dir is the tenant's, and a symlink it left there
/// resolves inside the root (RESOLVE_IN_ROOT), never on the host.
pub fn mount_point(root: &pathrs::Root, at: &str, file: bool) -> Result<()> {
    let at = Path::new(at.trim_start_matches('/'));
    let perm = std::fs::Permissions::from_mode(0o755);
    let fail = |e: pathrs::error::Error| {
        IslandsError::Other(format!(
            "image root: make the mount point /{}: {e}",
            at.display()
        ))
    };
    if exists_in_root(root, at, !file) {
        return Ok(());
    }
    if !file {
        return root.mkdir_all(at, &perm).map(|_| ()).map_err(fail);
    }
    if let Some(parent) = at.parent().filter(|p| !p.as_os_str().is_empty()) {
        root.mkdir_all(parent, &perm).map_err(fail)?;
    }
    root.create_file(
        at,
        pathrs::flags::OpenFlags::O_WRONLY | pathrs::flags::OpenFlags::O_CREAT,
        &std::fs::Permissions::from_mode(0o644),
    )
    .map(|_| ())
    .map_err(fail)
}

/// Whether `at` is already there (a directory where `dir`): one openat2(2) with
/// RESOLVE_IN_ROOT on the root's fd, the resolution pathrs itself uses, so an image's or a
/// tenant's symlink still resolves inside the root. A later island of an image finds every
/// mount point its upper dir kept, and pathrs's checked walk (its own procfs handle, a
/// verification per component: ~100 syscalls per path) is paid only for one to be made.
fn exists_in_root(root: &pathrs::Root, at: &Path, dir: bool) -> bool {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    let mut flags = OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    if dir {
        flags |= OFlags::DIRECTORY;
    }
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    openat2(root.as_fd(), at, flags, Mode::empty(), how).is_ok()
}

/// How long `down` waits for an image island to exit on its StopSignal before it is killed
/// (podman's and docker's default stop timeout).
pub const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Send each image island whose config names a StopSignal that signal, and wait (at most
/// [`STOP_TIMEOUT`]) until every one has exited: the service shuts down as its image says,
/// before `down` kills what is left. Islands without one are killed as before.
pub fn stop_gracefully(plan: &crate::plan::Plan) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let store = atoll_runtime::Store::new(&plan.runtime_root);
    let mut waiting = Vec::new();
    for i in &plan.islands {
        let Some(sig) = i
            .spec
            .image
            .as_ref()
            .and_then(|m| m.pulled.as_ref())
            .and_then(|p| p.stop_signal.as_deref())
        else {
            continue;
        };
        let sig = match sig.parse::<i32>() {
            Ok(n) => Signal::try_from(n).ok(),
            Err(_) => {
                let up = sig.to_ascii_uppercase();
                let full = if up.starts_with("SIG") {
                    up
                } else {
                    format!("SIG{up}")
                };
                full.parse::<Signal>().ok()
            }
        };
        let (Some(sig), Ok(saved)) = (sig, store.load(&i.container_id)) else {
            continue;
        };
        if kill(Pid::from_raw(saved.pid), sig).is_ok() {
            waiting.push(saved.pid);
        }
    }
    let deadline = std::time::Instant::now() + STOP_TIMEOUT;
    while !waiting.is_empty() && std::time::Instant::now() < deadline {
        // A dead init stays a zombie until its parent reaps it: it has exited all the same.
        waiting.retain(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
                .unwrap_or(false)
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

//! podman with its own storage, run root, tmp dir and configuration under a scratch dir, running
//! containers with atoll (`--runtime`), and a busybox image imported into it. Dropping it
//! removes the containers, the image, the mounts under the dir and the cgroup parent podman was
//! given, in every hierarchy.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{busybox_image, decode, ATOLL};

pub struct Podman {
    pub dir: PathBuf,
    /// The cgroup parent for `--cgroup-parent` (relative to every hierarchy's root).
    pub cgroup: String,
    pub image: String,
}

impl Podman {
    /// `tag` names the scratch dir, the image and the cgroup parent (with the pid); the image
    /// holds busybox, `applets` linked to it and `files` (path inside, content).
    pub fn new(tag: &str, applets: &[&str], files: &[(&str, &str)]) -> Podman {
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/atoll-tests/{tag}-podman-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["storage", "run", "tmp"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let tar = dir.join("rootfs.tar");
        busybox_image(&dir.join("rootfs"), &tar, applets, files);
        // Only this file is read when CONTAINERS_CONF is set; the limits stay below the host's
        // (see tests/clients.rs for why the ulimits).
        std::fs::write(
            dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("registries.conf"), "").unwrap();
        let p = Podman {
            image: format!("localhost/atoll-{tag}-{pid}:busybox"),
            cgroup: format!("atoll-{tag}-podman-{pid}"),
            dir,
        };
        let (code, _, err) = p.podman(&["import", tar.to_str().unwrap(), &p.image]);
        assert_eq!(code, 0, "podman import: {err}");
        p
    }

    pub fn podman(&self, args: &[&str]) -> (i32, String, String) {
        let d = &self.dir;
        decode(
            Command::new("podman")
                .env("CONTAINERS_CONF", d.join("containers.conf"))
                .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
                .arg("--root")
                .arg(d.join("storage"))
                .arg("--runroot")
                .arg(d.join("run"))
                .arg("--tmpdir")
                .arg(d.join("tmp"))
                .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
                .args(["--events-backend", "file", "--runtime", ATOLL])
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--force", "--all", "--time", "0"]);
        let _ = self.podman(&["rmi", "--force", "--all"]);
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        points.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in points {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // What podman made below the parent (conmon's cgroup, the container's).
        super::remove_cgroup_tree(&self.cgroup);
    }
}

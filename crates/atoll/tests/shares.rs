//! Shares and identities on real islands: two islands with private host uid ranges meet in one
//! host directory through idmapped mounts (ownership checked on the host with stat), a FUSE
//! filesystem that takes no idmap is refused by name, a passthrough island writes as its host
//! uid there, a share is backed up from the host side, and bad shares leave nothing behind.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::project::{state_dir, Project, BB};
use common::{can_run, can_run_also, ATOLL};

/// A host directory for one test, owned by `uid`, removed at the end (a FUSE mount on it too).
struct HostDir {
    path: PathBuf,
    fuse: Option<PathBuf>,
}

impl HostDir {
    fn new(tag: &str, uid: u32) -> HostDir {
        let path = PathBuf::from(format!(
            "/tmp/atoll-tests/share-{}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
        HostDir { path, fuse: None }
    }

    /// `bindfs` of a fresh directory onto `self.path`: a FUSE filesystem whose server does not
    /// opt in to idmapped mounts (FUSE_ALLOW_IDMAP), so the kernel refuses MOUNT_ATTR_IDMAP.
    fn fuse(tag: &str, uid: u32) -> HostDir {
        let mut d = HostDir::new(tag, uid);
        let under = d.path.with_extension("under");
        let _ = std::fs::remove_dir_all(&under);
        std::fs::create_dir_all(&under).unwrap();
        std::os::unix::fs::chown(&under, Some(uid), Some(uid)).unwrap();
        let st = Command::new("bindfs")
            .arg(&under)
            .arg(&d.path)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "bindfs {} {}",
            under.display(),
            d.path.display()
        );
        d.fuse = Some(under);
        d
    }

    fn at(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        if let Some(under) = &self.fuse {
            let _ = Command::new("fusermount")
                .arg("-u")
                .arg(&self.path)
                .status();
            let _ = Command::new("umount").arg(&self.path).output();
            let _ = std::fs::remove_dir_all(under);
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid())
}

fn exec_as(p: &Project, uid: &str, island: &str, script: &str) -> (i32, String) {
    let target = format!("{}/{island}", p.name);
    let (c, o, e) = p.atoll(&[
        "island", "exec", "--cwd", "/", "-u", uid, &target, "--", BB, "sh", "-c", script,
    ]);
    (c, format!("{o}{e}"))
}

const SLEEPER: &str = "command = [\"/bin/busybox\", \"sleep\", \"1000\"]";

#[test]
fn two_islands_share_a_directory_through_idmapped_mounts() {
    if !can_run() {
        return;
    }
    let ex = HostDir::new("ex", 1001);
    std::fs::write(ex.at("by-2000"), "host").unwrap();
    std::os::unix::fs::chown(ex.at("by-2000"), Some(2000), Some(2000)).unwrap();
    let mut p = Project::new(
        "sh",
        &format!(
            "[[island]]\nname = \"a\"\n{SLEEPER}\n[[island]]\nname = \"b\"\n{SLEEPER}\n[[island]]\nname = \"c\"\n{SLEEPER}\n\
             [[share]]\nname = \"ex\"\nhost = \"{}\"\nowner = 1001\nislands = [\"a\", \"b:/in\", \"c:/look:ro\"]\n",
            ex.path.display()
        ),
    );
    let (c, out, err) = p.up();
    assert_eq!(c, 0, "{out}{err}");
    // a writes as its user 1000; on the host the file is the share's owner's.
    let (c, out) = exec_as(
        &p,
        "1000:1000",
        "a",
        "echo from-a > /shared/ex/a.txt && id -u",
    );
    assert_eq!((c, out.trim()), (0, "1000"), "{out}");
    assert_eq!(
        owner(&ex.at("a.txt")),
        (1001, 1001),
        "on the host: the owner"
    );
    // b, another private range, reads it as its own user's and writes back.
    let (c, out) = exec_as(
        &p,
        "1000:1000",
        "b",
        "stat -c '%u:%g' /in/a.txt && cat /in/a.txt && echo from-b >> /in/a.txt && echo b > /in/b.txt",
    );
    assert_eq!(c, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1000:1000", "from-a"],
        "{out}"
    );
    assert_eq!(owner(&ex.at("b.txt")), (1001, 1001));
    let (c, out) = exec_as(
        &p,
        "1000:1000",
        "a",
        "stat -c '%u:%g' /shared/ex/b.txt; cat /shared/ex/a.txt",
    );
    assert_eq!(c, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1000:1000", "from-a", "from-b"]
    );
    // Any other id is unmapped: a file of host uid 2000 reads as nobody, and the island's root
    // (not the mapped user) cannot create a file there: the kernel has no id to store.
    let (_, out) = exec_as(&p, "1000:1000", "a", "stat -c '%u:%g' /shared/ex/by-2000");
    assert_eq!(out.trim(), "65534:65534", "{out}");
    let (c, out) = exec_as(&p, "0:0", "a", "echo x > /shared/ex/root.txt");
    assert_ne!(c, 0, "{out}");
    assert!(out.contains("Value too large"), "EOVERFLOW: {out}");
    assert!(!ex.at("root.txt").exists());
    // c mounts it read-only.
    let (c, out) = exec_as(
        &p,
        "1000:1000",
        "c",
        "cat /look/b.txt && echo x > /look/c.txt",
    );
    assert_ne!(c, 0, "{out}");
    assert!(
        out.starts_with("b\n") && out.contains("Read-only file system"),
        "{out}"
    );
    // status says how each island mounts it.
    let (_, out, _) = p.atoll(&["status", &p.name]);
    assert!(
        out.contains(&format!(
            "ex {} (owner 1001:1001): a:/shared/ex (rw, idmapped), b:/in (rw, idmapped), c:/look (ro, idmapped)",
            ex.path.display()
        )),
        "{out}"
    );
    // Backup reads the host side: both islands' files, as they are on disk.
    let dest = p.dir.join("backup");
    let (c, out, err) = p.atoll(&[
        "backup",
        "--share",
        &format!("{}/ex", p.name),
        dest.to_str().unwrap(),
    ]);
    assert_eq!(c, 0, "{out}{err}");
    assert!(out.contains("3 files"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dest.join("a.txt")).unwrap(),
        "from-a\nfrom-b\n"
    );
    assert_eq!(std::fs::read_to_string(dest.join("b.txt")).unwrap(), "b\n");
}

#[test]
fn a_filesystem_without_idmaps_is_refused_and_passthrough_works_there() {
    let bindfs = Command::new("bindfs").arg("--version").output().is_ok();
    if !can_run_also(
        (!bindfs || !Path::new("/dev/fuse").exists())
            .then(|| "needs bindfs and /dev/fuse (scripts/setup.sh installs bindfs)".into()),
    ) {
        return;
    }
    let fz = HostDir::fuse("fuse", 1001);
    let share = |who: &str| {
        format!(
            "[[share]]\nname = \"nfsish\"\nhost = \"{}\"\nowner = 1001\nislands = [\"{who}\"]\n",
            fz.path.display()
        )
    };
    let mut p = Project::new(
        "sf",
        &format!("[[island]]\nname = \"a\"\n{SLEEPER}\n{}", share("a")),
    );
    let (c, out, err) = p.up();
    assert_ne!(c, 0, "{out}");
    assert!(
        err.contains("share[0] (nfsish).host: share \"nfsish\"")
            && err.contains("is on a FUSE filesystem")
            && err.contains("Islands a need an idmap")
            && err.contains("identity = \"passthrough\"")
            && err.contains("sec=krb5"),
        "{err}"
    );
    assert!(!state_dir(&p.name).exists(), "nothing half-created");
    assert!(!p.dir.join("data").exists(), "nothing half-created");
    // The way out: the island's user 1001 is host uid 1001, and writes as it.
    let mut q = Project::new(
        "sp",
        &format!(
            "[[island]]\nname = \"a\"\n{SLEEPER}\nuser = 1001\nidentity = \"passthrough\"\n{}",
            share("a")
        ),
    );
    let (c, out, err) = q.up();
    assert_eq!(c, 0, "{out}{err}");
    let (c, out) = exec_as(
        &q,
        "1001:1001",
        "a",
        "echo hi > /shared/nfsish/p.txt && cat /proc/self/uid_map",
    );
    assert_eq!(c, 0, "{out}");
    assert!(
        out.split_whitespace()
            .collect::<Vec<_>>()
            .windows(3)
            .any(|w| w == ["1001", "1001", "1"]),
        "a one-id extent: {out}"
    );
    assert_eq!(
        owner(&fz.at("p.txt")),
        (1001, 1001),
        "the host sees uid 1001"
    );
    let (_, out, _) = q.atoll(&["status", &q.name]);
    assert!(
        out.contains("a is host uid 1001 (passthrough): weaker isolation"),
        "{out}"
    );
    // A second island (of another project) passing the same host uid through is refused.
    let mut r = Project::new(
        "s2",
        &format!("[[island]]\nname = \"z\"\n{SLEEPER}\nuser = 1001\nidentity = \"passthrough\"\n"),
    );
    let (c, _, err) = r.up();
    assert_ne!(c, 0);
    assert!(
        err.contains(&format!(
            "island[0] (z).identity: host uid 1001 is already passed through by island {}/a",
            q.name
        )),
        "{err}"
    );
    assert!(!state_dir(&r.name).exists());
}

#[test]
fn bad_shares_are_refused_before_anything_exists() {
    if !can_run() {
        return;
    }
    let ex = HostDir::new("bad", 1001);
    std::fs::create_dir_all(ex.at("real")).unwrap();
    std::os::unix::fs::symlink(ex.at("real"), ex.at("link")).unwrap();
    let island = format!("[[island]]\nname = \"a\"\n{SLEEPER}\n");
    let share = |host: &Path, extra: &str| {
        format!(
            "[[share]]\nname = \"ex\"\nhost = \"{}\"\nowner = 1001\n{extra}",
            host.display()
        )
    };
    // An island of a project that is up: its data dir cannot be shared into another project.
    let mut up = Project::new("sd", &island);
    let (c, out, err) = up.up();
    assert_eq!(c, 0, "{out}{err}");
    let their_data = up.dir.join("data").join("a");
    let cases = [
        (
            format!("{island}{}", share(&ex.at("link"), "islands = [\"a\"]\n")),
            ":8:8: share[0] (ex).host: ",
            "is a symlink",
        ),
        (
            format!("{island}{}", share(&their_data, "islands = [\"a\"]\n")),
            ": share[0] (ex).host: ",
            "overlaps the data dir",
        ),
        (
            format!(
                "[[island]]\nname = \"a\"\n{SLEEPER}\nuser = 70000\nidentity = \"passthrough\"\n"
            ),
            ":6:8: island[0] (a).user: ",
            "passthrough uid",
        ),
        (
            format!(
                "{island}{}",
                share(&ex.at("real"), "islands = [\"a:/data/in\"]\n")
            ),
            ":10:12: share[0] (ex).islands: ",
            "meets a's data dir /data",
        ),
    ];
    for (body, at, why) in cases {
        let mut p = Project::new("sb", &body);
        let (c, out, err) = p.up();
        assert_ne!(c, 0, "{body}: {out}");
        let file = p.file.display().to_string();
        assert!(
            err.contains(&format!("{file}{at}")) && err.contains(why),
            "{body}\n--> {err}"
        );
        assert!(!state_dir(&p.name).exists(), "nothing half-created: {body}");
        assert!(!p.dir.join("data").exists(), "nothing half-created: {body}");
    }
    let _ = Command::new(ATOLL).args(["down", &up.name]).output();
}

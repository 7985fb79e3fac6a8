//! Devices in islands and containers, without a GPU: NVIDIA-shaped nodes (char major 195) made
//! with mknod, where an open the device cgroup allows fails with ENXIO (no driver on this host)
//! and one it denies with EPERM; CDI specs written for a test vendor, one of them MIG-shaped.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::project::{state_dir, Project, BB};
use common::{can_run, decode, Bundle, ATOLL};

const ENXIO: &str = "No such device or address";
const EPERM: &str = "Operation not permitted";
const ENOENT: &str = "No such file or directory";
const GPU_NOTE: &str = "VRAM and SMs are not limited by cgroups: shared GPUs are shared; give a tenant a MIG instance for a hard partition";

/// Test nodes and CDI specs, removed on drop.
struct Fixture {
    dir: PathBuf,
    specs: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        // atoll resolves CDI names with the helper beside it: built and fresh, or a panic
        // saying what to build.
        atoll_testkit::probe::cdi_helper();
        let dir = PathBuf::from(format!(
            "/tmp/atoll-tests/devh-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // No driver has major 195 (nvidia) or 238 here: an open that the cgroup allows ends in
        // ENXIO (chrdev_open finds no driver), one it denies in EPERM before that.
        for (name, major, minor) in [
            ("nv0", 195, 0),
            ("nv1", 195, 1),
            ("cap11", 238, 11),
            ("cap12", 238, 12),
            ("cap21", 238, 21),
            ("cap22", 238, 22),
        ] {
            mknod(&dir.join(name), major, minor, 0o666, 0);
        }
        // A copy of /dev/zero owned by a host group (video, 44), mode 0660: the island's user
        // is in no host group, and must still be able to use its grant.
        mknod(&dir.join("zero-video"), 1, 5, 0o660, 44);
        std::fs::write(dir.join("plain"), b"not a device").unwrap();
        let specs = dir.join("cdi");
        std::fs::create_dir_all(&specs).unwrap();
        let d = dir.display();
        // Device 0 and 1 give no major/minor: the crate reads them from hostPath.
        std::fs::write(
            specs.join("gpu.json"),
            format!(
                r#"{{"cdiVersion": "0.6.0", "kind": "test.atoll.dev/gpu",
  "containerEdits": {{"env": ["ATOLL_TEST_GPU=yes"]}},
  "devices": [
    {{"name": "0", "containerEdits": {{"deviceNodes": [{{"path": "/dev/tgpu0", "hostPath": "{d}/nv0"}}]}}}},
    {{"name": "1", "containerEdits": {{"deviceNodes": [{{"path": "/dev/tgpu1", "hostPath": "{d}/nv1"}}]}}}}
  ]}}"#
            ),
        )
        .unwrap();
        let mig = |n: &str, a: &str, b: &str| {
            format!(
                r#"{{"name": "{n}", "containerEdits": {{"deviceNodes": [
      {{"path": "/dev/tgpu0", "hostPath": "{d}/nv0"}},
      {{"path": "/dev/nvidia-caps/nvidia-{a}", "hostPath": "{d}/{a}"}},
      {{"path": "/dev/nvidia-caps/nvidia-{b}", "hostPath": "{d}/{b}"}}]}}}}"#
            )
        };
        std::fs::write(
            specs.join("mig.yaml"),
            format!(
                "{{\"cdiVersion\": \"0.6.0\", \"kind\": \"test.atoll.dev/mig\", \"devices\": [{}, {}]}}",
                mig("0:1", "cap11", "cap12"),
                mig("0:2", "cap21", "cap22")
            ),
        )
        .unwrap();
        Fixture { dir, specs }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `atoll up` with this fixture's CDI spec dir.
    fn up(&self, p: &Project) -> (i32, String, String) {
        self.up_with(p, &self.specs)
    }

    fn up_with(&self, p: &Project, specs: &Path) -> (i32, String, String) {
        decode(
            Command::new(ATOLL)
                .args(["up", p.file.to_str().unwrap()])
                .env("ATOLL_CDI_SPEC_DIRS", specs)
                .output()
                .unwrap(),
        )
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mknod(path: &Path, major: u32, minor: u32, mode: u32, gid: u32) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(mode),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(path, Some(0), Some(gid)).unwrap();
}

/// Open `path` read-write in the island, as its user: "OPENED" or the shell's error.
fn open_in(p: &Project, island: &str, path: &str) -> String {
    let script = format!("exec 3<{path} && echo OPENED");
    p.exec(island, &[BB, "sh", "-c", &script]).1
}

/// The island's devices cgroup (v1) or cgroup (v2) directory on the host.
fn cgroup_dir(p: &Project, island: &str) -> PathBuf {
    let rel = format!("atoll/islands/{}/{island}", p.name);
    let v1 = Path::new("/sys/fs/cgroup/devices").join(&rel);
    if v1.is_dir() {
        v1
    } else {
        Path::new("/sys/fs/cgroup").join(rel)
    }
}

/// Open a host node from a host root process moved into the island's device cgroup: root, with
/// CAP_MKNOD and the node made outside, so only the device cgroup can say no.
fn open_from_cgroup(p: &Project, island: &str, node: &str) -> String {
    let procs = cgroup_dir(p, island).join("cgroup.procs");
    let script = format!(
        "echo $$ > {} && exec 3<{node} && echo OPENED",
        procs.display()
    );
    let (_, out, err) = decode(
        Command::new(BB)
            .args(["sh", "-c", &script])
            .output()
            .unwrap(),
    );
    format!("{out}{err}")
}

const SLEEP: &str = r#"command = ["/bin/busybox", "sleep", "1000"]"#;

/// A granted island opens exactly its nodes (ENXIO: the cgroup let the open reach the missing
/// driver), sees its CDI env and none of /dev it was not given; an ungranted island cannot
/// make the node (EPERM), and its device cgroup refuses the numbers even to a host root
/// process inside it; `=all` grants every node of the vendor; status names the devices and
/// what cgroups cannot do for a GPU.
#[test]
fn islands_get_exactly_their_device_grants() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new("grant");
    let body = format!(
        r#"
[[island]]
name = "a"
{SLEEP}
devices = ["test.atoll.dev/gpu=0", "{zero}", "/dev/fuse"]
shared = true
[[island]]
name = "b"
{SLEEP}
caps = ["mknod"]
[[island]]
name = "c"
{SLEEP}
devices = ["test.atoll.dev/gpu=all"]
shared = true
"#,
        zero = fx.path("zero-video")
    );
    let p = Project::new("dev", &body);
    let (code, out, err) = fx.up(&p);
    assert_eq!(code, 0, "up: {out}{err}");

    // a: its GPU node reaches the (absent) driver; gpu 1 is not there.
    assert!(
        open_in(&p, "a", "/dev/tgpu0").contains(ENXIO),
        "{}",
        open_in(&p, "a", "/dev/tgpu0")
    );
    let out = open_in(&p, "a", "/dev/tgpu1");
    assert!(out.to_lowercase().contains("no such file"), "{out}");
    assert!(
        open_in(&p, "a", "/dev/fuse").contains("OPENED"),
        "{}",
        open_in(&p, "a", "/dev/fuse")
    );
    // The host node is root:video 0660; the island's own node is its user's.
    let (code, out) = p.exec(
        "a",
        &[BB, "sh", "-c", "id -u; head -c 4 /dev/zero-video | wc -c"],
    );
    assert_eq!(
        (code, out.split_whitespace().collect::<Vec<_>>()),
        (0, vec!["1000", "4"]),
        "{out}"
    );
    let (_, env) = p.exec("a", &[BB, "env"]);
    assert!(env.contains("ATOLL_TEST_GPU=yes"), "CDI env applied: {env}");

    // b: nothing granted, nothing to see, and mknod is refused.
    let out = open_in(&p, "b", "/dev/tgpu0");
    assert!(out.to_lowercase().contains("no such file"), "{out}");
    let (_, out) = p.exec("b", &[BB, "mknod", "/tmp/tgpu0", "c", "195", "0"]);
    assert!(out.contains(EPERM), "mknod in the island: {out}");

    // The device cgroups decide by number: a allows 195:0 only; b allows neither.
    let (nv0, nv1) = (fx.path("nv0"), fx.path("nv1"));
    assert!(
        open_from_cgroup(&p, "a", &nv0).contains(ENXIO),
        "{}",
        open_from_cgroup(&p, "a", &nv0)
    );
    assert!(
        open_from_cgroup(&p, "a", &nv1).contains(EPERM),
        "{}",
        open_from_cgroup(&p, "a", &nv1)
    );
    assert!(
        open_from_cgroup(&p, "b", &nv0).contains(EPERM),
        "{}",
        open_from_cgroup(&p, "b", &nv0)
    );

    // c: "all" is every device of the kind.
    for dev in ["/dev/tgpu0", "/dev/tgpu1"] {
        assert!(
            open_in(&p, "c", dev).contains(ENXIO),
            "c {dev}: {}",
            open_in(&p, "c", dev)
        );
    }
    assert!(open_from_cgroup(&p, "c", &nv1).contains(ENXIO));

    // status, text and JSON: which devices, and the GPU note.
    let (_, text, _) = p.atoll(&["status", &p.name]);
    assert!(
        text.contains("devices of a: test.atoll.dev/gpu=0 -> /dev/tgpu0 c 195:0 rwm"),
        "{text}"
    );
    assert!(text.contains(GPU_NOTE), "{text}");
    assert!(!text.contains("devices of b"), "{text}");
    let (_, json, _) = p.atoll(&["status", "--json", &p.name]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let a = &v[0]["islands"][0];
    assert_eq!(a["devices"]["gpu"], GPU_NOTE, "{a:#}");
    assert_eq!(
        a["devices"]["grants"][2][1][0], "/dev/fuse c 10:229 rwm",
        "{a:#}"
    );
    assert!(v[0]["islands"][1]["devices"].is_null());
    // doctor's process layer carries the same.
    let who = format!("{}/a", p.name);
    let (_, doc, _) = p.atoll(&["doctor", &who, "--json"]);
    assert!(
        doc.contains("devices: test.atoll.dev/gpu=0 (/dev/tgpu0 c 195:0 rwm)")
            && doc.contains(GPU_NOTE),
        "{doc}"
    );

    // The island's nodes are removed with it.
    let nodes = p.dir.join("data/.devices/a");
    assert!(nodes.is_dir());
    assert_eq!(
        std::fs::metadata(nodes.join("1-0")).unwrap().uid(),
        p.plan().unwrap()["islands"][0]["host_base"]
            .as_u64()
            .unwrap() as u32
            + 1000
    );
    let (code, _, err) = p.atoll(&["down", &p.name]);
    assert_eq!(code, 0, "{err}");
    assert!(!nodes.exists(), "down removes the island's nodes");
}

/// A MIG instance is its GPU node and its own capability nodes: each island sees its
/// instance's caps and not its neighbour's, and the two need no `shared`.
#[test]
fn mig_instances_are_granted_apart() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new("mig");
    let body = format!(
        "[[island]]\nname = \"m1\"\n{SLEEP}\ndevices = [\"test.atoll.dev/mig=0:1\"]\n[[island]]\nname = \"m2\"\n{SLEEP}\ndevices = [\"test.atoll.dev/mig=0:2\"]\n"
    );
    let p = Project::new("mig", &body);
    let (code, out, err) = fx.up(&p);
    assert_eq!(code, 0, "up: {out}{err}");
    let (_, ls) = p.exec("m1", &[BB, "ls", "/dev/nvidia-caps"]);
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        ["nvidia-cap11", "nvidia-cap12"]
    );
    let (_, ls) = p.exec("m2", &[BB, "ls", "/dev/nvidia-caps"]);
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        ["nvidia-cap21", "nvidia-cap22"]
    );
    assert!(open_in(&p, "m1", "/dev/nvidia-caps/nvidia-cap11").contains(ENXIO));
    assert!(open_in(&p, "m1", "/dev/tgpu0").contains(ENXIO));
    // The neighbour's caps are refused by number too.
    assert!(open_from_cgroup(&p, "m1", &fx.path("cap21")).contains(EPERM));
    assert!(open_from_cgroup(&p, "m2", &fx.path("cap21")).contains(ENXIO));
}

/// An island's CDI nodes keep their spec's `permissions`: "r" opens for reading only, and
/// "none" puts the node there with no device-cgroup allow at all (an empty access in a rule
/// would read as all access).
#[test]
fn cdi_permissions_are_kept_in_islands() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new("perm");
    let specs = fx.dir.join("perm");
    std::fs::create_dir_all(&specs).unwrap();
    let d = fx.dir.display();
    std::fs::write(
        specs.join("perm.json"),
        format!(
            r#"{{"cdiVersion": "0.6.0", "kind": "test.atoll.dev/perm", "devices": [
  {{"name": "none", "containerEdits": {{"deviceNodes": [{{"path": "/dev/tnone", "hostPath": "{d}/nv0", "permissions": "none"}}]}}}},
  {{"name": "r", "containerEdits": {{"deviceNodes": [{{"path": "/dev/tro", "hostPath": "{d}/nv1", "permissions": "r"}}]}}}}]}}"#
        ),
    )
    .unwrap();
    let p = Project::new(
        "devpm",
        &format!("[[island]]\nname = \"a\"\n{SLEEP}\ndevices = [\"test.atoll.dev/perm=none\", \"test.atoll.dev/perm=r\"]\n"),
    );
    let (code, out, err) = fx.up_with(&p, &specs);
    assert_eq!(code, 0, "up: {out}{err}");
    let none = open_in(&p, "a", "/dev/tnone");
    assert!(none.contains(EPERM), "permissions none: {none}");
    let read = open_in(&p, "a", "/dev/tro");
    assert!(read.contains(ENXIO), "permissions r, read: {read}");
    let (_, write) = p.exec("a", &[BB, "sh", "-c", "exec 3>/dev/tro && echo OPENED"]);
    assert!(write.contains(EPERM), "permissions r, write: {write}");
    let (_, text, _) = p.atoll(&["status", &p.name]);
    assert!(text.contains("/dev/tnone c 195:0 none"), "{text}");
}

/// A whole GPU is one tenant's across projects as within one: with a project up whose island
/// holds GPU 0 (a CDI name of the test vendor), another project naming the same GPU (here by
/// the path of a major-195 node) is refused with what cgroups cannot do, and nothing of it is
/// created; both saying `shared = true` allows it; another GPU needs nothing.
#[test]
fn a_gpu_is_shared_across_projects_only_when_both_say_so() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new("gpux");
    let island = |name: &str, device: &str, shared: bool| {
        format!(
            "[[island]]\nname = \"{name}\"\n{SLEEP}\ndevices = [\"{device}\"]\nshared = {shared}\n"
        )
    };
    let first = Project::new("devg1", &island("a", "test.atoll.dev/gpu=0", false));
    let (code, out, err) = fx.up(&first);
    assert_eq!(code, 0, "up: {out}{err}");
    let second = Project::new("devg2", &island("b", &fx.path("nv0"), true));
    let (code, out, err) = fx.up(&second);
    let msg = format!("{out}{err}");
    assert_ne!(code, 0, "the same GPU in two projects: {msg}");
    assert!(
        msg.contains("island[0] (b).devices[0]")
            && msg.contains(&format!("island \"a\" of project \"{}\"", first.name))
            && msg.contains("shared = true")
            && msg.contains(GPU_NOTE),
        "{msg}"
    );
    assert!(!state_dir(&second.name).exists(), "nothing created: {msg}");
    // Another GPU is no conflict.
    let other = Project::new("devg3", &island("c", &fx.path("nv1"), false));
    let (code, out, err) = fx.up(&other);
    assert_eq!(code, 0, "another GPU: {out}{err}");
    // Both shared: allowed.
    let (code, _, err) = first.atoll(&["down", &first.name]);
    assert_eq!(code, 0, "{err}");
    let first = Project::new("devg4", &island("a", "test.atoll.dev/gpu=0", true));
    let (code, out, err) = fx.up(&first);
    assert_eq!(code, 0, "up: {out}{err}");
    let (code, out, err) = fx.up(&second);
    assert_eq!(code, 0, "both shared: {out}{err}");
}

/// Bad `devices` entries: each error names the file, line and field, and nothing is created.
#[test]
fn bad_device_entries_are_refused_by_line_and_field() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new("bad");
    let broken = fx.dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("b.json"),
        r#"{"cdiVersion": "0.6.0", "kind": "test.atoll.dev/gpu", "devices": [{"name": "0", "containerEdits": {"deviceNodes": [{"pth": "/dev/x"}]}}]}"#,
    )
    .unwrap();
    let one = |devices: &str| format!("[[island]]\nname = \"a\"\n{SLEEP}\ndevices = [{devices}]\n");
    let cases: Vec<(String, &Path, &str)> = vec![
        (one("\"/dev/atoll-no-such-node\""), &fx.specs, ENOENT),
        (
            one(&format!("\"{}\"", fx.path("plain"))),
            &fx.specs,
            "is not a device node",
        ),
        (
            one("\"test.atoll.dev/gpu=7\""),
            &fx.specs,
            "known names: test.atoll.dev/gpu=0, test.atoll.dev/gpu=1",
        ),
        (one("\"test.atoll.dev/gpu=0\""), &broken, "b.json"),
        (
            format!(
                "{}[[island]]\nname = \"z\"\n{SLEEP}\ndevices = [\"test.atoll.dev/gpu=all\"]\n",
                one("\"test.atoll.dev/gpu=0\"")
            ),
            &fx.specs,
            "uses the same GPU as island \"a\"",
        ),
    ];
    for (body, specs, want) in cases {
        let p = Project::new("bad", &body);
        let (code, out, err) = fx.up_with(&p, specs);
        let msg = format!("{out}{err}");
        assert_ne!(code, 0, "{body}: {msg}");
        assert!(msg.contains(want), "{body}: want {want:?}: {msg}");
        if want.contains("same GPU") {
            assert!(
                msg.contains("island[1] (z).devices[0]")
                    && msg.contains("shared = true")
                    && msg.contains(GPU_NOTE),
                "{msg}"
            );
            assert!(msg.contains("islands.toml:10:"), "{msg}");
        } else {
            assert!(
                msg.contains("islands.toml:6:") && msg.contains("island[0] (a).devices[0]"),
                "{msg}"
            );
        }
        if specs == broken.as_path() {
            assert!(msg.contains("pth"), "the spec's field: {msg}");
        }
        assert!(!state_dir(&p.name).exists(), "nothing created: {msg}");
        assert!(!p.dir.join("data").exists(), "no data dir: {msg}");
    }
}

/// A config as an engine hands it over after CDI injection (linux.devices,
/// linux.resources.devices, env) runs with exactly that device on cgroup v1 and on v2 (cgroup2
/// alone on /sys/fs/cgroup in a private mount namespace, where the rule is an eBPF program);
/// a node the container makes itself (CAP_MKNOD, no user namespace) gets EPERM on open.
#[test]
fn engine_injected_cdi_edits_are_enforced_on_v1_and_v2() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("devcdi");
    b.add_caps(&["CAP_MKNOD"]);
    b.config["linux"]["devices"] = serde_json::json!([
        {"path": "/dev/tgpu0", "type": "c", "major": 195, "minor": 0, "fileMode": 438}
    ]);
    b.config["linux"]["resources"]["devices"] = serde_json::json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 195, "minor": 0, "access": "rwm"},
        // mknod (only) of 195:1: the container makes that node itself, and its open shows the
        // read/write rule deciding; 195:2 it cannot even make.
        {"allow": true, "type": "c", "major": 195, "minor": 1, "access": "m"}
    ]);
    b.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("ATOLL_TEST_GPU=yes".into());
    // A failed redirection on `exec` ends a shell: each open is in a subshell.
    let script = "echo env=$ATOLL_TEST_GPU; (exec 3</dev/tgpu0); mknod /dev/tgpu1 c 195 1 && (exec 4</dev/tgpu1); mknod /dev/tgpu2 c 195 2; echo done";
    b.set_args(&["sh", "-c", script]);
    let check = |out: &str, mode: &str| {
        assert!(out.contains("env=yes"), "{mode}: {out}");
        assert!(
            out.contains(&format!("/dev/tgpu0: {ENXIO}")),
            "{mode}: granted: {out}"
        );
        assert!(
            out.contains(&format!("/dev/tgpu1: {EPERM}")),
            "{mode}: made inside: {out}"
        );
        assert!(
            !out.contains("mknod: /dev/tgpu1"),
            "{mode}: mknod 195:1 allowed: {out}"
        );
        assert!(
            out.contains(&format!("mknod: /dev/tgpu2: {EPERM}")),
            "{mode}: {out}"
        );
        assert!(out.contains("done"), "{mode}: {out}");
    };
    let (code, out, err) = b.run("v1");
    assert_eq!(code, 0, "{out}{err}");
    check(&format!("{out}{err}"), "v1");

    let id = b.id("v2");
    let v2 = format!(
        "umount -R /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && {ATOLL} --root {} run --bundle {} {id} 2>&1",
        b.root.display(),
        b.dir.display()
    );
    let (code, out, err) = decode(
        Command::new("unshare")
            .args(["-m", "sh", "-c", &v2])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{out}{err}");
    check(&out, "v2");
}

/// A device node that CDI injected with `permissions: "rw"` keeps exactly that access in a
/// container (the runtime's own allow for linux.devices, rwm, is not appended over the config's
/// rule for the same number): it opens (ENXIO: the cgroup let it reach the missing driver), but
/// the container, holding CAP_MKNOD without a user namespace, cannot make another node of it.
/// Without mknod access the init cannot make the node either, so the host's node at that path
/// is bound; a node listed without a rule of its own is made and gets rwm. On cgroup v1 and v2.
#[test]
fn cdi_node_permissions_are_kept_in_containers() {
    if !can_run() {
        return;
    }
    struct HostNode(PathBuf);
    impl Drop for HostNode {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let host = HostNode(PathBuf::from(format!(
        "/dev/atoll-test-dev{}-gpu0",
        std::process::id()
    )));
    let _ = std::fs::remove_file(&host.0);
    mknod(&host.0, 195, 0, 0o666, 0);
    let node = host.0.display().to_string();
    let mut b = Bundle::new("devperm");
    b.add_caps(&["CAP_MKNOD"]);
    b.config["linux"]["devices"] = serde_json::json!([
        {"path": node, "type": "c", "major": 195, "minor": 0, "fileMode": 438},
        {"path": "/dev/tgpu3", "type": "c", "major": 195, "minor": 3, "fileMode": 438}
    ]);
    // As the CDI crate (and Go CDI) writes them for deviceNodes with permissions "rw"; 195:3
    // has no rule of its own.
    b.config["linux"]["resources"]["devices"] = serde_json::json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 195, "minor": 0, "access": "rw"}
    ]);
    let script = format!(
        "rm -f /tmp/again0 /tmp/again3; (exec 3<{node}); mknod /tmp/again0 c 195 0; mknod /tmp/again3 c 195 3 && echo made3; echo done"
    );
    b.set_args(&["sh", "-c", &script]);
    let check = |out: &str, mode: &str| {
        assert!(
            out.contains(&format!("{node}: {ENXIO}")),
            "{mode}: granted rw: {out}"
        );
        assert!(
            out.contains(&format!("mknod: /tmp/again0: {EPERM}")),
            "{mode}: rw must not allow mknod: {out}"
        );
        assert!(
            out.contains("made3"),
            "{mode}: no rule of its own: rwm: {out}"
        );
        assert!(out.contains("done"), "{mode}: {out}");
    };
    let (code, out, err) = b.run("v1");
    assert_eq!(code, 0, "{out}{err}");
    check(&format!("{out}{err}"), "v1");

    let id = b.id("v2");
    let v2 = format!(
        "umount -R /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && {ATOLL} --root {} run --bundle {} {id} 2>&1",
        b.root.display(),
        b.dir.display()
    );
    let (code, out, err) = decode(
        Command::new("unshare")
            .args(["-m", "sh", "-c", &v2])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{out}{err}");
    check(&out, "v2");

    // No host node to bind: a clear error naming the device, not a widened rule.
    b.config["linux"]["devices"][0]["path"] = "/dev/atoll-test-no-such-node".into();
    b.set_args(&["true"]);
    let (code, out, err) = b.run("none");
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("/dev/atoll-test-no-such-node") && err.contains("mknod access"),
        "{err}"
    );
}

/// A CDI request left as an annotation is refused by name, never ignored.
#[test]
fn cdi_annotations_are_refused_by_name() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("devann");
    b.config["annotations"] = serde_json::json!({"cdi.k8s.io/test": "test.atoll.dev/gpu=0"});
    b.set_args(&["true"]);
    let (code, out, err) = b.run("ann");
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("annotations.\"cdi.k8s.io/test\"") && err.contains("CDI"),
        "{err}"
    );
    let (_, features, _) = b.cmd(&["features"]);
    assert!(
        features.contains("io.github.atoll.cdi.annotations"),
        "{features}"
    );
}

/// CDI names are resolved by the atoll-cdi helper beside atoll, and atoll itself does not link
/// the CDI crate (its HTTP and TLS stack would be mapped by every `run`): `features` names CDI
/// where the helper answers; an atoll without its helper says so, and its `up` of a file naming a
/// CDI device fails naming the helper, creating nothing.
#[test]
fn cdi_names_are_resolved_by_the_helper_beside_atoll() {
    if !can_run() {
        return;
    }
    let helper = atoll_testkit::probe::cdi_helper();
    let devices_line = |atoll: &Path| {
        let out = Command::new(atoll).arg("features").output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["annotations"]["io.github.atoll.islands.devices"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let with = devices_line(Path::new(ATOLL));
    assert!(
        with.contains("CDI names (") && with.contains(&helper.display().to_string()),
        "{with}"
    );
    let bin = std::fs::read(ATOLL).unwrap();
    assert!(
        !bin.windows(26).any(|w| w == b"container_device_interface"),
        "{ATOLL} links the CDI crate"
    );

    let fx = Fixture::new("helper");
    let lone = fx.dir.join("bin/atoll");
    std::fs::create_dir_all(lone.parent().unwrap()).unwrap();
    std::fs::copy(ATOLL, &lone).unwrap();
    let without = devices_line(&lone);
    assert!(
        without.starts_with("paths (CDI names need the helper")
            && without.contains(&fx.dir.join("bin/atoll-cdi").display().to_string()),
        "{without}"
    );
    let p = Project::new(
        "devhl",
        &format!("[[island]]\nname = \"a\"\n{SLEEP}\ndevices = [\"test.atoll.dev/gpu=0\"]\n"),
    );
    let (code, out, err) = decode(
        Command::new(&lone)
            .args(["up", p.file.to_str().unwrap()])
            .env("ATOLL_CDI_SPEC_DIRS", &fx.specs)
            .output()
            .unwrap(),
    );
    let msg = format!("{out}{err}");
    assert_ne!(code, 0, "{msg}");
    assert!(
        msg.contains("island[0] (a).devices[0]") && msg.contains("atoll-cdi"),
        "{msg}"
    );
    assert!(!state_dir(&p.name).exists(), "nothing created: {msg}");
    // The same file comes up with the helper there.
    let (code, out, err) = fx.up(&p);
    assert_eq!(code, 0, "{out}{err}");
}

//! Islands from container images (`image = "TRANSPORT:REFERENCE"`, docs/images.md), on real
//! islands: images built here from busybox-static (podman import/save, and OCI layouts written
//! byte by byte for the whiteout and hostile-layer cases), nothing downloaded. Each test has its
//! own image store (ATOLL_IMAGE_STORE), removed after its project is down.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::project::Project;
use common::{decode, ATOLL};
use serde_json::{json, Value};

static N: AtomicUsize = AtomicUsize::new(0);

/// A scratch dir and image store for one test; removed on drop (declare it before the Project,
/// so the project is down, its mounts gone, before the store goes).
struct Scratch {
    dir: PathBuf,
    store: PathBuf,
    podman_images: Vec<String>,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!(
            "/tmp/atoll-tests/img-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch {
            store: dir.join("store"),
            dir,
            podman_images: Vec::new(),
        }
    }

    fn atoll(&self, args: &[&str]) -> (i32, String, String) {
        decode(
            Command::new(ATOLL)
                .env("ATOLL_IMAGE_STORE", &self.store)
                .args(args)
                .output()
                .unwrap(),
        )
    }

    fn up(&self, p: &Project) -> (i32, String, String) {
        self.atoll(&["up", p.file.to_str().unwrap()])
    }

    fn started(&self, p: &Project) {
        let (c, o, e) = self.up(p);
        assert_eq!(c, 0, "atoll up {}: {o}{e}", p.file.display());
    }

    /// A busybox image in the host's podman storage (a unique name, removed on drop), saved as
    /// an oci-archive and a docker-archive: the three references to it.
    fn podman_image(&mut self, cmd: &str, extra: &[&str]) -> [String; 3] {
        let rootfs = self.dir.join("rootfs");
        let tar = self.dir.join("rootfs.tar");
        common::busybox_image(
            &rootfs,
            &tar,
            &["sh", "echo", "cat", "id", "sleep", "test", "stat", "ls"],
            &[],
        );
        let name = format!(
            "localhost/atoll-img-{}-{}:t",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut args = vec![
            "import".to_string(),
            "-q".into(),
            "--change".into(),
            format!("CMD {cmd}"),
        ];
        for e in extra {
            args.extend(["--change".to_string(), e.to_string()]);
        }
        args.extend([tar.to_string_lossy().into_owned(), name.clone()]);
        let out = Command::new("podman").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "podman import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.podman_images.push(name.clone());
        let oci = self.dir.join("img.oci.tar");
        let docker = self.dir.join("img.docker.tar");
        for (fmt, path) in [("oci-archive", &oci), ("docker-archive", &docker)] {
            let out = Command::new("podman")
                .args(["save", "-q", "--format", fmt, "-o"])
                .arg(path)
                .arg(&name)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "podman save {fmt}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        [
            format!("oci-archive:{}", oci.display()),
            format!("docker-archive:{}", docker.display()),
            format!("containers-storage:{name}"),
        ]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for i in &self.podman_images {
            let _ = Command::new("podman").args(["rmi", "-f", i]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn can_run() -> bool {
    can_run_with(&[])
}

/// As [`can_run`], with more tools the test needs.
fn can_run_with(tools: &[&str]) -> bool {
    let missing = ["podman", "skopeo"]
        .iter()
        .chain(tools)
        .find(|t| Command::new(t).arg("--version").output().is_err())
        .map(|t| format!("{t} is not installed (scripts/setup.sh installs it)"))
        .or_else(helper_missing);
    common::can_run_also(missing)
}

/// atoll up runs atoll-image from atoll's own dir: a package of its own, which `cargo test -p
/// atoll` does not build (`cargo test --workspace` does). Missing or older than its sources,
/// it would test something else.
fn helper_missing() -> Option<String> {
    let helper = Path::new(ATOLL).with_file_name("atoll-image");
    let built = std::fs::metadata(&helper).and_then(|m| m.modified()).ok();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../atoll-image/src");
    let newest = std::fs::read_dir(&src)
        .ok()?
        .flatten()
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
        .max()?;
    match built {
        Some(b) if b >= newest => None,
        _ => Some(format!(
            "{} is missing or older than its sources: cargo build -p atoll-image",
            helper.display()
        )),
    }
}

/// A tar built entry by entry (ustar headers written here: the hostile entries are ones no
/// archiver would write).
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn entry(mut self, path: &str, kind: u8, link: &str, data: &[u8]) -> Tar {
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        let octal = |h: &mut [u8], at: usize, len: usize, v: u64| {
            let s = format!("{v:0w$o}\0", w = len - 1);
            h[at..at + len].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, 0o755);
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, data.len() as u64);
        octal(&mut h, 136, 12, 1_700_000_000);
        h[148..156].copy_from_slice(b"        ");
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }

    fn file(self, path: &str, data: &[u8]) -> Tar {
        self.entry(path, b'0', "", data)
    }

    fn busybox(self) -> Tar {
        let bb = std::fs::read(atoll_testkit::gate::busybox().unwrap()).unwrap();
        self.entry("bin/", b'5', "", &[])
            .file("bin/busybox", &bb)
            .entry("bin/sh", b'2', "busybox", &[])
    }

    fn done(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        self.0
    }
}

fn sha256(data: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// An OCI image layout at `dir` with `layers` (uncompressed tars) and `config` (the image
/// config's "config" object), tagged `tag`: the reference `oci:DIR:TAG`.
fn oci_layout(dir: &Path, layers: Vec<Vec<u8>>, config: Value, tag: &str) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let h = sha256(data);
        std::fs::write(blobs.join(&h), data).unwrap();
        (format!("sha256:{h}"), data.len())
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in &layers {
        let (d, size) = put(l);
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size}));
        diff_ids.push(d);
    }
    let cfg = serde_json::to_vec(
        &json!({"architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids}}),
    )
    .unwrap();
    let (cd, cs) = put(&cfg);
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs}))
    .unwrap();
    let (md, ms) = put(&manifest);
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    format!("oci:{}:{tag}", dir.display())
}

fn wait_for(path: &Path) -> String {
    for _ in 0..100 {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.is_empty() {
                return s;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{} never appeared", path.display());
}

fn data(p: &Project, island: &str) -> PathBuf {
    p.dir.join("data").join(island)
}

#[test]
fn an_image_island_runs_its_cmd_from_each_transport_and_keeps_what_it_wrote() {
    if !can_run() {
        return;
    }
    let mut s = Scratch::new("cmd");
    let refs = s.podman_image(
        r#"["/bin/sh", "-c", "id -u > /data/who; test -e /etc/kept && cat /etc/kept > /data/kept; echo kept > /etc/kept; echo ran > /data/out; exec sleep 1000"]"#,
        &["EXPOSE 8080", "ENV GREETING=from-image", "WORKDIR /bin"],
    );
    let body: String = ["oa", "da", "cs"]
        .iter()
        .zip(&refs)
        .map(|(n, r)| format!("[[island]]\nname = \"{n}\"\nimage = \"{r}\"\n"))
        .collect();
    let p = Project::new("img", &body);
    s.started(&p);
    for n in ["oa", "da", "cs"] {
        assert_eq!(
            wait_for(&data(&p, n).join("out")),
            "ran\n",
            "island {n} ran its image's Cmd"
        );
        // No User in the config: the image's root, which is the island's own root.
        assert_eq!(wait_for(&data(&p, n).join("who")), "0\n", "island {n}");
    }
    let (c, out) = p.exec(
        "oa",
        &[
            "/bin/sh",
            "-c",
            "echo $GREETING; pwd; stat -c %u /bin/busybox",
        ],
    );
    assert_eq!(c, 0, "{out}");
    assert_eq!(
        out, "from-image\n/bin\n0\n",
        "Env and WorkingDir from the config; the layer's root-owned files are the island root's"
    );
    let (_, st, _) = s.atoll(&["status", "--json", &p.name]);
    let st: Value = serde_json::from_str(&st).unwrap();
    assert_eq!(
        st[0]["islands"][0]["image"]["exposed_ports"],
        json!(["8080/tcp"]),
        "{st}"
    );
    let (c, list, e) = s.atoll(&["images", "--json"]);
    assert_eq!(c, 0, "{e}");
    let list: Value = serde_json::from_str(&list).unwrap();
    let all: Vec<&Value> = list.as_array().unwrap().iter().collect();
    assert!(
        all.iter()
            .all(|i| !i["islands"].as_array().unwrap().is_empty()),
        "every image is used by an island: {list}"
    );
    // What the island wrote outside its data dir is kept across down and up (its upper dir),
    // and `backup` copies it beside the data.
    assert!(!data(&p, "oa").join("kept").exists());
    let dest = s.dir.join("backup-oa");
    let (c, o, e) = s.atoll(&["backup", &format!("{}/oa", p.name), dest.to_str().unwrap()]);
    assert_eq!(c, 0, "{o}{e}");
    assert_eq!(std::fs::read_to_string(dest.join("out")).unwrap(), "ran\n");
    assert_eq!(
        std::fs::read_to_string(s.dir.join("backup-oa.root/etc/kept")).unwrap(),
        "kept\n",
        "{o}"
    );
    let (c, o, e) = s.atoll(&["down", &p.name]);
    assert_eq!(c, 0, "{o}{e}");
    for n in ["oa", "da", "cs"] {
        std::fs::remove_file(data(&p, n).join("out")).unwrap();
    }
    s.started(&p);
    assert_eq!(wait_for(&data(&p, "oa").join("out")), "ran\n");
    assert_eq!(
        wait_for(&data(&p, "oa").join("kept")),
        "kept\n",
        "/etc/kept survived down/up"
    );
}

/// A zstd-compressed image (skopeo's --dest-compress-format zstd, as podman pushes with
/// --compression-format zstd) is unpacked like a gzip one: the island runs from it.
#[test]
fn a_zstd_compressed_image_runs() {
    if !can_run() {
        return;
    }
    let s = Scratch::new("zstd");
    let plain = oci_layout(
        &s.dir.join("plain"),
        vec![Tar::default()
            .busybox()
            .file("etc/marker", b"from-zstd")
            .done()],
        json!({"Cmd": ["/bin/sh", "-c", "cat /etc/marker > /data/seen; exec /bin/busybox sleep 1000"]}),
        "z",
    );
    let zstd = format!("oci:{}:z", s.dir.join("zstd").display());
    let out = Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--dest-compress-format",
            "zstd",
            &plain,
            &zstd,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The copy must really be zstd, or this test would prove nothing.
    let blobs = s.dir.join("zstd/blobs/sha256");
    let zstd_layers = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path())
                .unwrap()
                .starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        })
        .count();
    assert_eq!(zstd_layers, 1, "one zstd layer blob in {}", blobs.display());
    let p = Project::new(
        "img",
        &format!("[[island]]\nname = \"z\"\nimage = \"{zstd}\"\n"),
    );
    s.started(&p);
    assert_eq!(wait_for(&data(&p, "z").join("seen")), "from-zstd");
}

#[test]
fn a_whiteout_hides_a_file_and_an_opaque_dir_hides_a_lower_dir() {
    if !can_run() {
        return;
    }
    let s = Scratch::new("wh");
    let base = Tar::default()
        .busybox()
        .file("etc/gone", b"x")
        .file("etc/kept", b"y")
        .file("opq/a", b"a")
        .done();
    let top = Tar::default()
        .file("etc/.wh.gone", b"")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/b", b"b")
        .done();
    let r = oci_layout(
        &s.dir.join("layout"),
        vec![base, top],
        json!({"Cmd": ["/bin/sh", "-c", "exec /bin/busybox sleep 1000"]}),
        "wh",
    );
    let p = Project::new(
        "img",
        &format!("[[island]]\nname = \"w\"\nimage = \"{r}\"\n"),
    );
    s.started(&p);
    let (c, out) = p.exec(
        "w",
        &["/bin/sh", "-c", "cd /etc; for f in gone kept; do /bin/busybox test -e $f && echo $f; done; /bin/busybox ls /opq"],
    );
    assert_eq!(c, 0, "{out}");
    assert_eq!(
        out, "kept\nb\n",
        "etc/gone and opq/a are hidden by the upper layer"
    );
}

#[test]
fn two_islands_from_one_image_share_its_unpacked_layers() {
    if !can_run() {
        return;
    }
    let mut s = Scratch::new("share");
    let [oci, _, _] = s.podman_image(r#"["/bin/sleep", "1000"]"#, &[]);
    let body = format!(
        "[[island]]\nname = \"a\"\nimage = \"{oci}\"\n[[island]]\nname = \"b\"\nimage = \"{oci}\"\nimage_root = \"read-only\"\n"
    );
    let p = Project::new("img", &body);
    s.started(&p);
    let layers: Vec<PathBuf> = std::fs::read_dir(s.store.join("layers"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(layers.len(), 1, "one layer unpacked once: {layers:?}");
    let host = std::fs::metadata(layers[0].join("bin/busybox")).unwrap();
    use std::os::unix::fs::MetadataExt;
    for n in ["a", "b"] {
        let (c, out) = p.exec(n, &["/bin/stat", "-c", "%i", "/bin/busybox"]);
        assert_eq!(c, 0, "{out}");
        assert_eq!(
            out.trim(),
            host.ino().to_string(),
            "island {n} reads the store's own inode, not a copy"
        );
    }
    // `read-only`: the image's root cannot be written; the overlay one can.
    let (c, out) = p.exec("b", &["/bin/sh", "-c", "echo x > /etc/new"]);
    assert_ne!(c, 0, "{out}");
    assert!(out.contains("Read-only"), "{out}");
    let (c, out) = p.exec("a", &["/bin/sh", "-c", "echo x > /etc/new"]);
    assert_eq!(c, 0, "{out}");
    // prune keeps what is in use, and removes it once nothing is.
    let (c, out, e) = s.atoll(&["images", "prune"]);
    assert_eq!((c, out.as_str()), (0, "removed 0 image(s)\n"), "{e}");
    let (c, o, e) = s.atoll(&["down", &p.name]);
    assert_eq!(c, 0, "{o}{e}");
    assert!(
        layers[0].join("bin/busybox").exists(),
        "down leaves the store alone"
    );
    let (c, out, e) = s.atoll(&["images", "prune"]);
    assert_eq!(c, 0, "{e}");
    assert!(out.starts_with("removed 1 image(s)"), "{out}");
    assert!(!layers[0].exists(), "its layer is gone");
}

#[test]
fn hostile_layers_are_refused_without_writing_outside_the_store() {
    if !can_run() {
        return;
    }
    let s = Scratch::new("evil");
    let outside = s.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let depth = s.store.join("layers/tmp").components().count();
    let up = "../".repeat(depth);
    let cases = [
        (
            "dotdot",
            Tar::default().file(
                &format!("{up}{}/dotdot", &outside.to_str().unwrap()[1..]),
                b"x",
            ),
        ),
        ("dotdot2", Tar::default().file("a/../../escaped", b"x")),
        (
            "symlink",
            Tar::default()
                .entry("evil", b'2', outside.to_str().unwrap(), &[])
                .file("evil/planted", b"x"),
        ),
    ];
    for (name, tar) in cases {
        let r = oci_layout(
            &s.dir.join(format!("layout-{name}")),
            vec![tar.done()],
            json!({"Cmd": ["/bin/sh"]}),
            name,
        );
        let p = Project::new(
            "img",
            &format!("[[island]]\nname = \"e\"\nimage = \"{r}\"\n"),
        );
        let (c, o, e) = s.up(&p);
        assert_ne!(c, 0, "{name}: {o}");
        assert!(
            e.contains("island e") && e.contains(&r),
            "{name}: names the island and reference: {e}"
        );
        assert!(e.contains("refused"), "{name}: {e}");
        assert!(
            !common::project::state_dir(&p.name).exists(),
            "{name}: nothing of the project left"
        );
        let left: Vec<_> = std::fs::read_dir(&outside).unwrap().flatten().collect();
        assert!(left.is_empty(), "{name}: wrote outside: {left:?}");
        assert!(!s.dir.join("escaped").exists() && !s.store.join("escaped").exists());
        let layers: Vec<_> = std::fs::read_dir(s.store.join("layers"))
            .unwrap()
            .flatten()
            .collect();
        assert!(layers.is_empty(), "{name}: no layer half-made: {layers:?}");
    }
}

#[test]
fn bad_references_name_the_island_and_the_reference() {
    if !can_run() {
        return;
    }
    let s = Scratch::new("bad");
    let corrupt = s.dir.join("corrupt.tar");
    std::fs::write(&corrupt, b"this is not a tar archive at all").unwrap();
    let missing = s.dir.join("missing.tar");
    for (r, says) in [
        (format!("oci-archive:{}", missing.display()), "no such file"),
        (format!("oci-archive:{}", corrupt.display()), ""),
        (format!("docker-archive:{}", corrupt.display()), ""),
        (
            "containers-storage:localhost/atoll-img-none:nothere".to_string(),
            "",
        ),
        (
            "nosuchtransport:foo".to_string(),
            "unknown transport \"nosuchtransport\"",
        ),
    ] {
        let p = Project::new(
            "img",
            &format!("[[island]]\nname = \"bad\"\nimage = \"{r}\"\n"),
        );
        let (c, o, e) = s.up(&p);
        assert_ne!(c, 0, "{r}: {o}");
        assert!(
            e.contains("bad") && e.contains(&r),
            "{r}: names the island and the reference: {e}"
        );
        assert!(e.to_lowercase().contains(says), "{r}: {e}");
        assert!(
            !common::project::state_dir(&p.name).exists(),
            "{r}: nothing of the project left"
        );
    }
}

#[test]
fn the_config_user_is_resolved_in_the_image_and_down_stops_with_its_stop_signal() {
    if !can_run() {
        return;
    }
    let s = Scratch::new("stop");
    let layer = Tar::default()
        .busybox()
        .file(
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\nsvc:x:4321:4322::/:/bin/sh\n",
        )
        .file("etc/group", b"root:x:0:\nsvcgrp:x:4322:\n")
        .done();
    let cmd = "trap '/bin/busybox echo stopped > /data/stop; exit 0' USR1; \
               /bin/busybox id -u > /data/who.tmp; /bin/busybox id -g >> /data/who.tmp; \
               /bin/busybox mv /data/who.tmp /data/who; \
               while :; do /bin/busybox sleep 0.1; done";
    let r = oci_layout(
        &s.dir.join("layout"),
        vec![layer],
        json!({"Cmd": ["/bin/sh", "-c", cmd], "User": "svc", "StopSignal": "SIGUSR1"}),
        "stop",
    );
    let p = Project::new(
        "img",
        &format!("[[island]]\nname = \"s\"\nimage = \"{r}\"\n"),
    );
    s.started(&p);
    assert_eq!(
        wait_for(&data(&p, "s").join("who")),
        "4321\n4322\n",
        "User svc from the image's /etc/passwd"
    );
    let (c, o, e) = s.atoll(&["down", &p.name]);
    assert_eq!(c, 0, "{o}{e}");
    assert_eq!(
        std::fs::read_to_string(data(&p, "s").join("stop")).unwrap_or_default(),
        "stopped\n",
        "down sent the image's StopSignal before killing the island"
    );
}

/// A registry of the test's own on loopback, over plain HTTP: Debian's docker-registry (the
/// CNCF distribution registry), its storage in the scratch dir. Killed on drop.
struct Registry {
    child: std::process::Child,
    addr: String,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        // A port the kernel gave us a moment ago, on 127.0.0.1 only.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\nlog:\n  level: error\n",
                dir.join("registry").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let r = Registry { child, addr };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&r.addr).is_ok() {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("docker-registry did not listen on {} in 5 s", r.addr);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_docker_reference_is_pulled_from_a_registry_and_tls_is_verified_unless_the_file_says_not() {
    if !can_run_with(&["docker-registry"]) {
        return;
    }
    let mut s = Scratch::new("reg");
    let refs = s.podman_image(
        r#"["/bin/sh", "-c", "echo ran > /data/out; exec sleep 1000"]"#,
        &[],
    );
    let reg = Registry::start(&s.dir);
    let reference = format!("docker://{}/atoll-test:t", reg.addr);
    let out = Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &refs[0],
            &reference,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy to the test's registry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Verified by default: this registry speaks plain HTTP, so the pull fails, saying why,
    // naming the island and the reference, and leaves nothing of the project.
    let strict = Project::new(
        "img",
        &format!("[[island]]\nname = \"strict\"\nimage = \"{reference}\"\n"),
    );
    let (c, o, e) = s.up(&strict);
    assert_ne!(c, 0, "{o}");
    assert!(
        e.contains("strict") && e.contains(&reference) && e.contains("HTTPS"),
        "{e}"
    );
    assert!(!common::project::state_dir(&strict.name).exists());
    let p = Project::new(
        "img",
        &format!("[[island]]\nname = \"reg\"\nimage = \"{reference}\"\nimage_tls_verify = false\n"),
    );
    s.started(&p);
    assert_eq!(
        wait_for(&data(&p, "reg").join("out")),
        "ran\n",
        "the island runs the Cmd of the image it pulled from the registry"
    );
    let (c, list, e) = s.atoll(&["images", "--json"]);
    assert_eq!(c, 0, "{e}");
    assert!(list.contains(&reference), "{list}");
    let (c, o, e) = s.atoll(&["down", &p.name]);
    assert_eq!(c, 0, "{o}{e}");
}

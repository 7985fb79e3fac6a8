//! The Debian package (scripts/deb.sh) installs like a system tool: built from the workspace,
//! installed with dpkg, `atoll --version`, `man atoll` and the bash completion work from the
//! installed files, and `dpkg --purge` leaves nothing behind. The test refuses to run where the
//! package or any of its files is already on the host, so it never clobbers an installed atoll,
//! and it purges what it installed also when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The release build inside deb.sh takes minutes on a loaded 2-core machine (it is the build
/// the conformance step of scripts/test.sh reuses).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (exit code, stdout, stderr) of `cmd`, killed (with its process group) after `timeout`.
fn call(mut cmd: Command, timeout: Duration, scratch: &Path) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (out, err) = (
        scratch.join(format!("{n}.out")),
        scratch.join(format!("{n}.err")),
    );
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > timeout {
            let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
            let _gone_already_is_fine = nix::sys::signal::kill(group, nix::sys::signal::SIGKILL);
            let _ = child.wait();
            panic!("timed out after {timeout:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (code, read(&out), read(&err))
}

/// Purges the package on drop if this test installed it, then removes the scratch dir.
struct Installed {
    scratch: PathBuf,
    installed: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.installed {
            let _ = Command::new("dpkg")
                .args(["--purge", "atoll"])
                .stdout(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Why the package cannot be installed here without clobbering something, if it cannot.
fn clobber(deb: &Path) -> Option<String> {
    let status = Command::new("dpkg")
        .args(["--status", "atoll"])
        .output()
        .unwrap();
    if status.status.success() {
        return Some("a package named atoll is already installed".into());
    }
    let listing = Command::new("dpkg-deb")
        .arg("--contents")
        .arg(deb)
        .output()
        .unwrap();
    assert!(
        listing.status.success(),
        "dpkg-deb --contents {}",
        deb.display()
    );
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| Path::new("/").join(p.trim_start_matches("./")))
        .find(|p| p.exists())
        .map(|p| format!("{} exists already", p.display()))
}

#[test]
fn debian_package_installs_runs_and_purges() {
    let test = "debian_package_installs_runs_and_purges";
    let tools = [
        "/usr/bin/dpkg",
        "/usr/bin/dpkg-deb",
        "/usr/bin/man",
        "/usr/bin/readelf",
    ];
    let missing_tool = tools
        .iter()
        .find(|t| !Path::new(t).exists())
        .map(|t| format!("{t} is not installed (scripts/setup.sh installs it)"));
    let missing =
        atoll_testkit::gate::first_missing([atoll_testkit::gate::missing_root(), missing_tool]);
    if !atoll_testkit::gate::gate(test, missing) {
        return;
    }
    let started = Instant::now();
    let scratch = PathBuf::from(format!("/tmp/atoll-tests/package-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(scratch.join("out")).unwrap();
    let mut guard = Installed {
        scratch: scratch.clone(),
        installed: false,
    };

    let mut deb_sh = Command::new(repo().join("scripts/deb.sh"));
    deb_sh
        .arg("--out")
        .arg(scratch.join("out"))
        .current_dir(repo());
    let (code, out, err) = call(deb_sh, BUILD_TIMEOUT, &scratch);
    assert_eq!(code, 0, "scripts/deb.sh failed:\n{err}");
    let deb = PathBuf::from(out.trim());
    assert!(deb.is_file(), "deb.sh printed {out:?}, not a package");
    let built = started.elapsed();
    if let Some(why) = clobber(&deb) {
        panic!("{test}: refusing to install {}: {why}", deb.display());
    }

    let run = |args: &[&str]| {
        let mut c = Command::new(args[0]);
        c.args(&args[1..])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80");
        call(c, CALL_TIMEOUT, &scratch)
    };
    guard.installed = true;
    let (code, _, err) = run(&["dpkg", "--install", deb.to_str().unwrap()]);
    assert_eq!(code, 0, "dpkg --install: {err}");

    let (code, version, err) = run(&["/usr/bin/atoll", "--version"]);
    assert_eq!(
        (code, version.trim()),
        (0, concat!("atoll ", env!("CARGO_PKG_VERSION"))),
        "{err}"
    );

    // The CDI helper is installed beside atoll, where `up` and `features` look for it.
    let (code, features, err) = run(&["/usr/bin/atoll", "features"]);
    assert_eq!(code, 0, "atoll features: {err}");
    assert!(
        features.contains("paths and CDI names (/usr/bin/atoll-cdi"),
        "atoll features: {features}"
    );

    // man-db finds the pages by the installed paths (no mandb run needed).
    let (code, page, err) = run(&["man", "atoll"]);
    assert_eq!(code, 0, "man atoll: {err}");
    assert!(
        page.contains("runc-compatible OCI runtime") && page.contains("--root"),
        "man atoll:\n{page}"
    );
    let (code, page, err) = run(&["man", "atoll-run"]);
    assert_eq!(code, 0, "man atoll-run: {err}");
    assert!(page.contains("--detach"), "man atoll-run:\n{page}");
    let (code, path, _) = run(&["man", "--where", "atoll"]);
    assert_eq!((code, path.trim()), (0, "/usr/share/man/man1/atoll.1.gz"));

    // The bash completion loads and registers for atoll; zsh and fish find theirs by path.
    let (code, spec, err) = run(&[
        "bash",
        "-c",
        "source /usr/share/bash-completion/completions/atoll && complete -p atoll",
    ]);
    assert_eq!(code, 0, "bash completion: {err}");
    assert!(spec.contains("atoll"), "complete -p atoll: {spec}");
    for p in [
        "/usr/share/zsh/vendor-completions/_atoll",
        "/usr/share/fish/vendor_completions.d/atoll.fish",
    ] {
        assert!(Path::new(p).is_file(), "{p} not installed");
    }
    assert!(Path::new("/usr/share/doc/atoll/copyright").is_file());

    let (code, _, err) = run(&["dpkg", "--purge", "atoll"]);
    assert_eq!(code, 0, "dpkg --purge: {err}");
    guard.installed = false;
    assert_eq!(clobber(&deb), None, "files left after dpkg --purge");
    eprintln!(
        "package: built in {built:.1?}, installed, checked and purged in {:.1?}",
        started.elapsed() - built
    );
}

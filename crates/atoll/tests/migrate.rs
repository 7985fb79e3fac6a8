//! `atoll migrate` with real CRIU on real islands: a peer island's TCP conversation (a numbered
//! line every 50 ms, each echo checked) survives ten migrations in a row; a migration whose
//! target cannot own a bound address is refused before anything is frozen; bad input changes
//! nothing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::project::{Project, BB};

fn missing_criu() -> Option<String> {
    let criu = if Path::new("/usr/local/sbin/criu").exists() {
        "/usr/local/sbin/criu"
    } else {
        "criu"
    };
    match Command::new(criu)
        .arg("check")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        _ => Some(format!(
            "`{criu} check` fails (scripts/criu.sh installs CRIU)"
        )),
    }
}

fn can_run() -> bool {
    common::can_run_also(missing_criu())
}

/// srv echoes every line on port 7000 (busybox nc, one `cat` per connection); cli idles; cli may
/// open TCP to srv:7000. The escape guard is on (the default): its layer is put back on the
/// restored tasks (docs/migrate.md).
fn echo_body(srv_command: &str) -> String {
    format!(
        "[[island]]\nname = \"srv\"\ncommand = {srv_command}\n\
         [[island]]\nname = \"cli\"\ncommand = [\"{BB}\", \"sleep\", \"1000000\"]\n\
         [[link]]\nbetween = [\"srv\", \"cli\"]\n\
         [[allow]]\nfrom = \"cli\"\nto = \"srv\"\nproto = \"tcp\"\nports = [7000]\n"
    )
}

fn nc_echo() -> String {
    format!("[\"{BB}\", \"nc\", \"-ll\", \"-p\", \"7000\", \"-e\", \"{BB}\", \"cat\"]")
}

/// A TCP connection made from inside `netns` (this thread enters it; the socket stays there).
fn connect_from(netns: &str, to: &str) -> TcpStream {
    let f = std::fs::File::open(netns).unwrap();
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let mut last = None;
    for _ in 0..50 {
        match TcpStream::connect(to) {
            Ok(s) => return s,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("connect to {to} from {netns}: {last:?}");
}

/// The peer: a numbered line every 50 ms, each echo read back and compared. Returns how many
/// lines made the round trip, or the first thing that went wrong.
fn peer(
    netns: String,
    to: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Result<u64, String> {
    let s = connect_from(&netns, &to);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let line = format!("{n}\n");
        w.write_all(line.as_bytes())
            .map_err(|e| format!("send line {n}: {e}"))?;
        let mut got = String::new();
        r.read_line(&mut got)
            .map_err(|e| format!("echo of line {n}: {e}"))?;
        if got != line {
            return Err(format!("line {n}: sent {line:?}, echoed {got:?}"));
        }
        n += 1;
        done.store(n, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(n)
}

/// Waits (30 s at most: TCP's retransmission backs off while an island is locked, so the first
/// round trip after a move may wait a few seconds) until the peer has made `more` round trips
/// beyond what it had; fails the test naming `when` otherwise.
fn await_rounds(
    done: &AtomicU64,
    client: &std::thread::JoinHandle<Result<u64, String>>,
    more: u64,
    when: &str,
) {
    let want = done.load(Ordering::SeqCst) + more;
    for _ in 0..300 {
        if done.load(Ordering::SeqCst) >= want || client.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        done.load(Ordering::SeqCst) >= want,
        "the peer made no progress {when}"
    );
}

fn migrate(p: &Project, island: &str) -> (i32, String, String) {
    p.atoll(&["migrate", "--json", &format!("{}/{island}", p.name)])
}

/// Host links of the project's group (both generations of names).
fn host_links(p: &Project) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "group", &p.group.unwrap().to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap().to_string())
        })
        .collect()
}

fn pins(p: &Project) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(common::project::state_dir(&p.name).join("netns"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn srv_pid(p: &Project) -> u64 {
    let s = p.status();
    let i = s[0]["islands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "srv")
        .unwrap()
        .clone();
    assert_eq!(i["status"], "running", "{i}");
    i["pid"].as_u64().unwrap()
}

#[test]
fn a_tcp_peer_survives_ten_migrations() {
    if !can_run() {
        return;
    }
    let p = Project::started("mig", &echo_body(&nc_echo()));
    let to = format!("{}:7000", p.addr("srv", "cli"));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let client = {
        let (ns, to, stop, done) = (p.netns("cli"), to.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || peer(ns, to, stop, done))
    };
    await_rounds(&done, &client, 5, "before the first migration");
    let mut pid = srv_pid(&p);
    let mut held = 0;
    for round in 0..10 {
        let (code, out, err) = migrate(&p, "srv");
        assert_eq!(code, 0, "migration {round}: {out}{err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            r["connections"].as_array().unwrap().len(),
            1,
            "migration {round} carried the peer's connection: {r}"
        );
        held += r["held_packets"].as_u64().unwrap();
        let names: Vec<&str> = r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ph| ph["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "preflight",
                "freeze+dump",
                "transfer",
                "restore",
                "verify",
                "cleanup"
            ]
        );
        let now = srv_pid(&p);
        assert_ne!(now, pid, "migration {round}: a new process tree");
        pid = now;
        // Exactly one generation of host ends and one netns pin per island are left.
        assert_eq!(host_links(&p).len(), 2, "{:?}", host_links(&p));
        assert_eq!(pins(&p).len(), 2, "{:?}", pins(&p));
        await_rounds(&done, &client, 3, &format!("after migration {round}"));
    }
    stop.store(true, Ordering::SeqCst);
    let lines = client
        .join()
        .unwrap()
        .expect("no reset, no lost or duplicated line");
    assert!(lines >= 35, "{lines} lines made the round trip");
    // The peer's lines sent in the outages waited on the host and were delivered at the
    // unlocks (a line every 50 ms, outages of some 170 ms each); no hold is left.
    assert!(held > 0, "no packet was held in 10 outages");
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("atollhold_"));
    // A new connection crosses the guard's rule, which now names the new host ends.
    let before = p.counter("allow:cli->srv:tcp/7000");
    let cmd = format!("echo again | {BB} nc -w 2 {} 7000", p.addr("srv", "cli"));
    let (code, out) = p.exec("cli", &[BB, "sh", "-c", &cmd]);
    assert_eq!((code, out.trim()), (0, "again"));
    assert!(p.counter("allow:cli->srv:tcp/7000") > before);
}

/// The guard's listener stays with the supervisor; CRIU restores the filter without it, which
/// alone would leave the moved island's trapped calls failing with ENOSYS and unreported. After
/// each migration the island's own shell (restored, not exec'd) asks for a user namespace: the
/// supervisor still denies it with EPERM and raises an alert naming the island.
#[test]
fn a_migrated_island_is_still_judged_by_the_guard() {
    if !can_run() {
        return;
    }
    let loop_ = format!(
        "[\"{BB}\", \"sh\", \"-c\", \"while :; do if [ -f /data/go ]; then {BB} unshare -U {BB} \
         true 2>/data/out; {BB} rm /data/go; fi; {BB} sleep 0.05; done\"]"
    );
    let p = Project::started("migg", &echo_body(&loop_));
    let data = p.dir.join("data/srv");
    let alerts = common::project::state_dir(&p.name).join("alerts.jsonl");
    let tenant = format!("\"tenant\":\"{}.srv\"", p.name);
    let trap = || {
        let _ = std::fs::remove_file(data.join("out"));
        std::fs::write(data.join("go"), "").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while data.join("go").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "srv did not run unshare"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        let n = std::fs::read_to_string(&alerts)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("atoll.userns.create") && l.contains(&tenant))
            .count();
        (
            std::fs::read_to_string(data.join("out")).unwrap_or_default(),
            n,
        )
    };
    let (msg, n) = trap();
    assert!(msg.contains("Operation not permitted"), "before: {msg}");
    assert_eq!(n, 1);
    for round in 1..=2 {
        let (code, out, err) = migrate(&p, "srv");
        assert_eq!(code, 0, "migration {round}: {out}{err}");
        let (msg, n) = trap();
        assert!(
            msg.contains("Operation not permitted"),
            "after migration {round} the guard judged nothing: {msg}"
        );
        assert_eq!(n, 1 + round, "an alert after migration {round}");
    }
}

/// CRIU probes the kernel on every start unless /run/criu.kdat holds its cache, which CRIU
/// itself keeps only on a tmpfs /run; atoll keeps it where /run is not one (docs/migrate.md,
/// "Cost"). Both CRIU runs of a migration, dump and restore, start from the cache.
#[test]
fn both_criu_runs_of_a_migration_start_from_the_kernel_probe_cache() {
    if !can_run() {
        return;
    }
    // No cache of an earlier run (CRIU would only read it, never write it, on this /run).
    for f in ["/run/criu.kdat", "/run/criu.kdat.atoll"] {
        let _ = std::fs::remove_file(f);
    }
    let p = Project::started("mg2k", &echo_body(&nc_echo()));
    let images = p.dir.join("images");
    let what = format!("{}/srv", p.name);
    let (code, out, err) = p.atoll(&[
        "migrate",
        "--keep-images",
        "--images",
        images.to_str().unwrap(),
        &what,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for log in ["dump.log", "restore.log"] {
        let text = std::fs::read_to_string(images.join(log)).unwrap();
        assert!(
            text.contains("Loaded kdat cache from /run/criu.kdat"),
            "{log} probed the kernel instead of loading the cache:\n{}",
            text.lines().take(12).collect::<Vec<_>>().join("\n")
        );
    }
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    // f_type's width differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let on_tmpfs = rustix::fs::statfs("/run").unwrap().f_type as i64 == 0x0102_1994;
    if !on_tmpfs {
        let tag = std::fs::read_to_string("/run/criu.kdat.atoll").unwrap();
        assert!(
            tag.contains(boot.trim()),
            "the cache names this boot: {tag}"
        );
    }
}

/// A PATH with every program of the usual one but iptables: a host with nftables alone.
fn path_without_iptables(dir: &Path) -> String {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let n = name.to_string_lossy();
            if n.starts_with("iptables") || n.starts_with("ip6tables") || dir.join(&name).exists() {
                continue;
            }
            std::os::unix::fs::symlink(e.path(), dir.join(&name)).unwrap();
        }
    }
    dir.display().to_string()
}

/// CRIU's own network lock (its default: iptables rules per connection, added and removed by
/// iptables-restore runs inside the outage) is not used: atoll locks both namespaces itself
/// with nftables. So a migration works on a host without iptables, with the connection.
#[test]
fn a_migration_with_its_connection_needs_no_iptables() {
    if !can_run() {
        return;
    }
    let p = Project::started("mg2n", &echo_body(&nc_echo()));
    let to = format!("{}:7000", p.addr("srv", "cli"));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let client = {
        let (ns, to, stop, done) = (p.netns("cli"), to.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || peer(ns, to, stop, done))
    };
    await_rounds(&done, &client, 3, "before the migration");
    let path = path_without_iptables(&p.dir.join("bin"));
    let out = Command::new(common::ATOLL)
        .args(["migrate", "--json", &format!("{}/srv", p.name)])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "migrate without iptables: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["connections"].as_array().unwrap().len(), 1, "{rep}");
    await_rounds(&done, &client, 3, "after the migration");
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap().expect("no reset, no lost line");
}

/// srv also listens on 10.99.0.1 (IP_FREEBIND: an address no netns of the project owns).
fn freebind_body() -> String {
    let py = "import socket\\n\
              x = socket.socket()\\n\
              x.setsockopt(socket.SOL_IP, 15, 1)\\n\
              x.bind(('10.99.0.1', 7001))\\n\
              x.listen()\\n\
              l = socket.socket()\\n\
              l.bind(('0.0.0.0', 7000))\\n\
              l.listen()\\n\
              while True:\\n    c, _ = l.accept(); c.sendall(b'up\\\\n'); c.close()\\n";
    echo_body(&format!("[\"/usr/bin/python3\", \"-c\", \"{py}\"]"))
}

#[test]
fn an_address_the_target_cannot_own_is_refused_before_freezing() {
    if !can_run() {
        return;
    }
    let p = Project::started("mig", &freebind_body());
    let ip = p.addr("srv", "cli");
    let wait_up = || {
        for _ in 0..50 {
            if p.nc("cli", &ip, 7000).1.contains("up") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("srv does not answer");
    };
    wait_up();
    let pid = srv_pid(&p);
    let links = host_links(&p);
    let (code, out, err) = migrate(&p, "srv");
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("10.99.0.1:7001")
            && err.contains("target will not own")
            && err.contains("would die")
            && err.contains("refused before freezing"),
        "{err}"
    );
    // Nothing was frozen or made: same process, still serving, same links and pins, no images.
    assert_eq!(srv_pid(&p), pid);
    wait_up();
    assert_eq!(host_links(&p), links);
    assert_eq!(pins(&p), ["cli", "srv"]);
    assert!(!common::project::state_dir(&p.name).join("images").exists());
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    if !can_run() {
        return;
    }
    let p = Project::started("mig", &echo_body(&nc_echo()));
    let pid = srv_pid(&p);
    let (code, _, err) = p.atoll(&["migrate", &format!("{}/nosuch", p.name)]);
    assert_ne!(code, 0);
    assert!(err.contains("no island") && err.contains("nosuch"), "{err}");
    let (code, _, err) = p.atoll(&["migrate", "nosuchproj/srv"]);
    assert_ne!(code, 0);
    assert!(err.contains("no island"), "{err}");
    // --images naming a directory of something else: refused, its files kept.
    let other = p.dir.join("precious");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes"), "keep me").unwrap();
    let (code, _, err) = p.atoll(&[
        "migrate",
        "--images",
        other.to_str().unwrap(),
        &format!("{}/srv", p.name),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("holds no CRIU images"), "{err}");
    assert_eq!(
        std::fs::read_to_string(other.join("notes")).unwrap(),
        "keep me"
    );
    assert_eq!(srv_pid(&p), pid);
    assert_eq!(pins(&p), ["cli", "srv"]);
}

/// Whether the netns pinned at `pin` owns `ip` and lets packets through (no migration lock).
fn owns_unlocked(pin: &Path, ip: &str) -> bool {
    let run = |args: &[&str]| {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", pin.display()))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let owns = run(&["ip", "-4", "-o", "addr", "show"]).contains(&format!("inet {ip}/"));
    let locked = run(&["nft", "list", "tables"]).contains("table inet atoll_lock");
    owns && !locked
}

/// Processes in the project's cgroups, as /proc/PID/cgroup says.
fn tasks_in_cgroups_of(project: &str) -> Vec<String> {
    let needle = format!("/atoll/islands/{project}/");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            // A zombie's cgroup reads "(deleted)" once its cgroup is gone: it is dead.
            std::fs::read_to_string(e.path().join("cgroup"))
                .is_ok_and(|c| c.contains(&needle) && !c.contains("(deleted)"))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn killing_migrate_at_any_phase_then_down_leaves_one_owner_and_nothing_behind() {
    if !can_run() {
        return;
    }
    // The line `migrate` prints when a phase ends: killing right after it lands in the next.
    let phases = ["migrate", "preflight", "freeze+dump", "restore", "verify"];
    for (after, migrate_again) in phases.iter().flat_map(|ph| [(*ph, false), (*ph, true)]) {
        let p = Project::started("mig", &echo_body(&nc_echo()));
        let ip = p.addr("srv", "cli");
        let group = p.group.unwrap();
        let mut child = Command::new(common::ATOLL)
            .args(["migrate", &format!("{}/srv", p.name)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = false;
        for l in lines.by_ref() {
            let l = l.unwrap();
            if l.split_whitespace().next() == Some(after) {
                seen = true;
                break;
            }
        }
        assert!(seen, "migrate never printed {after:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever CRIU still had in hand, let it end.
        std::thread::sleep(Duration::from_secs(2));
        let netns_dir = common::project::state_dir(&p.name).join("netns");
        let owners: Vec<String> = ["srv", "srv.m"]
            .iter()
            .map(|n| netns_dir.join(n))
            .filter(|pin| pin.exists() && owns_unlocked(pin, &ip))
            .map(|pin| pin.display().to_string())
            .collect();
        assert!(
            owners.len() <= 1,
            "killed after {after:?}: {owners:?} all own {ip} unlocked"
        );
        if migrate_again {
            // The next migrate finishes or undoes the killed one, then moves the island: it
            // serves, from one netns.
            let (code, out, err) = migrate(&p, "srv");
            assert_eq!(
                code, 0,
                "migrate after one killed after {after:?}: {out}{err}"
            );
            let cmd = format!("echo back | {BB} nc -w 2 {ip} 7000");
            let (code, out) = p.exec("cli", &[BB, "sh", "-c", &cmd]);
            assert_eq!((code, out.trim()), (0, "back"), "killed after {after:?}");
            let pins = pins(&p);
            assert_eq!(pins.len(), 2, "killed after {after:?}: {pins:?}");
        }
        let (code, out, err) = p.atoll(&["down", &p.name]);
        assert_eq!(
            code, 0,
            "down after a migrate killed after {after:?}: {out}{err}"
        );
        assert!(!common::project::state_dir(&p.name).exists());
        let links = Command::new("ip")
            .args(["-o", "link", "show", "group", &group.to_string()])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&links.stdout).trim().is_empty(),
            "killed after {after:?}: links left: {}",
            String::from_utf8_lossy(&links.stdout)
        );
        for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let d = Path::new(root).join("atoll/islands").join(&p.name);
            assert!(!d.exists(), "killed after {after:?}: {} left", d.display());
        }
        let left = tasks_in_cgroups_of(&p.name);
        assert!(
            left.is_empty(),
            "killed after {after:?}: tasks left: {:?}",
            left.iter()
                .map(|t| (
                    std::fs::read_to_string(format!("/proc/{t}/cgroup")).unwrap_or_default(),
                    std::fs::read_to_string(format!("/proc/{t}/cmdline")).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
        );
        let tables = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        let tables = String::from_utf8_lossy(&tables.stdout);
        // The guard's table, and the hold a killed migrate leaves (its packets dropped, as
        // the locked namespaces would).
        let p_ = p.name.replace('-', "_");
        for t in [format!("atoll_{p_}"), format!("atollhold_{p_}")] {
            assert!(!tables.contains(&t), "killed after {after:?}: {t} left");
        }
    }
}

/// A copy of the archive `from` at `to`, changed by `spoil`.
fn spoiled(from: &Path, to: &Path, spoil: impl FnOnce(&Path)) -> String {
    let _ = std::fs::remove_dir_all(to);
    assert!(Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success());
    spoil(to);
    to.display().to_string()
}

#[test]
fn an_island_archive_restores_with_its_connection_and_bad_archives_change_nothing() {
    if !can_run() {
        return;
    }
    let p = Project::started("mig", &echo_body(&nc_echo()));
    let to = format!("{}:7000", p.addr("srv", "cli"));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let client = {
        let (ns, to, stop, done) = (p.netns("cli"), to.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || peer(ns, to, stop, done))
    };
    while done.load(Ordering::SeqCst) < 5 {
        assert!(!client.is_finished());
        std::thread::sleep(Duration::from_millis(50));
    }
    let archive = p.dir.join("archive");
    let a = archive.to_str().unwrap();
    // A wrong island name: refused, no archive.
    let (code, _, err) = p.atoll(&["checkpoint", "--to", a, &format!("{}/nosuch", p.name)]);
    assert_ne!(code, 0);
    assert!(err.contains("no island"), "{err}");
    assert!(!archive.exists());
    let (code, out, err) = p.atoll(&["checkpoint", "--to", a, &format!("{}/srv", p.name)]);
    assert_eq!(code, 0, "{out}{err}");
    for f in [
        "manifest.json",
        "plan.json",
        "images/atoll-descriptors.json",
    ] {
        assert!(archive.join(f).is_file(), "{f} is in the archive");
    }
    let links = host_links(&p);
    let bad = |path: &str, want: &[&str]| {
        let (code, out, err) = p.atoll(&["restore", path]);
        assert_ne!(code, 0, "restore {path}: {out}");
        for w in want {
            assert!(err.contains(w), "restore {path}: {err} lacks {w:?}");
        }
        assert_eq!(pins(&p), ["cli", "srv"], "after restore {path}");
        assert_eq!(host_links(&p), links, "after restore {path}");
        let s = p.status();
        assert_ne!(s[0]["islands"][0]["status"], "running");
    };
    bad(
        p.dir.join("nothing-here").to_str().unwrap(),
        &["no such directory"],
    );
    let d = p.dir.join("spoiled");
    let no_manifest = spoiled(&archive, &d, |d| {
        std::fs::remove_file(d.join("manifest.json")).unwrap()
    });
    bad(&no_manifest, &["manifest.json", "not an island archive"]);
    let garbled = spoiled(&archive, &d, |d| {
        std::fs::write(d.join("manifest.json"), "{\"format\": 3").unwrap()
    });
    bad(&garbled, &["manifest.json"]);
    let newer_criu = spoiled(&archive, &d, |d| {
        let p = d.join("manifest.json");
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        m["criu_version"] = serde_json::json!(50000);
        std::fs::write(&p, m.to_string()).unwrap();
    });
    bad(&newer_criu, &["written by CRIU 5.0.0"]);
    let elsewhere = spoiled(&archive, &d, |d| {
        let p = d.join("manifest.json");
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        m["addresses"] = serde_json::json!(["10.99.0.1"]);
        std::fs::write(&p, m.to_string()).unwrap();
    });
    bad(
        &elsewhere,
        &["bound to 10.99.0.1", "does not own here", "would die"],
    );
    let broken_images = spoiled(&archive, &d, |d| {
        for e in std::fs::read_dir(d.join("images")).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("core-") || n.starts_with("pstree") {
                std::fs::write(e.path(), b"not a CRIU image").unwrap();
            }
        }
    });
    bad(&broken_images, &["restore failed"]);
    // The good archive: the peer's connection carries on.
    let before = done.load(Ordering::SeqCst);
    let (code, out, err) = p.atoll(&["restore", "--json", a]);
    assert_eq!(code, 0, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["connections"].as_array().unwrap().len(), 1, "{r}");
    for _ in 0..300 {
        if done.load(Ordering::SeqCst) >= before + 5 || client.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let lines = client
        .join()
        .unwrap()
        .expect("no reset, no lost or duplicated line");
    assert!(lines >= before + 5, "{lines} lines");
    // Restoring again while the island runs would make two owners of its address.
    let (code, _, err) = p.atoll(&["restore", a]);
    assert_ne!(code, 0);
    assert!(err.contains("is running here"), "{err}");
}

/// `echo_body`, with the link's subnet pinned (both hosts plan the same addresses), and srv
/// also dials cli: a numbered line every 50 ms to cli's port 7001, which cli appends to its
/// /tmp/in. That connection is the moving island's own, so the first segment of it that the
/// target's conntrack sees may be srv's (no allow names that direction for cli's replies).
/// A reconnect would start again at 0.
fn two_way_body() -> String {
    let dial = "while true; do i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done \
                | /bin/busybox nc 10.77.250.2 7001; sleep 0.2; done & \
                exec /bin/busybox nc -ll -p 7000 -e /bin/busybox cat";
    format!(
        "[[island]]\nname = \"srv\"\ncommand = [\"{BB}\", \"sh\", \"-c\", \"{dial}\"]\n\
         [[island]]\nname = \"cli\"\ncommand = [\"{BB}\", \"nc\", \"-ll\", \"-p\", \"7001\", \
         \"-e\", \"{BB}\", \"sh\", \"-c\", \"cat >> /tmp/in\"]\n\
         [[link]]\nbetween = [\"srv\", \"cli\"]\nsubnet = \"10.77.250.0/30\"\n\
         [[allow]]\nfrom = \"cli\"\nto = \"srv\"\nproto = \"tcp\"\nports = [7000]\n\
         [[allow]]\nfrom = \"srv\"\nto = \"cli\"\nproto = \"tcp\"\nports = [7001]\n"
    )
}

/// The lines cli received from srv (`two_way_body`): they must be 0, 1, 2, ... with no gap,
/// repeat or restart. Returns how many.
fn srv_lines_at_cli(h: &Host, project: &str) -> usize {
    let (code, out, err) = h.atoll(&[
        "island",
        "exec",
        &format!("{project}/cli"),
        BB,
        "cat",
        "/tmp/in",
    ]);
    if err.contains("can't open") {
        return 0; // no line yet
    }
    assert_eq!(code, 0, "read cli's /tmp/in: {err}");
    // Whole lines only: the last one may be on its way.
    let whole = &out[..out.rfind('\n').map_or(0, |i| i + 1)];
    let got: Vec<u64> = whole.lines().map(|l| l.trim().parse().unwrap()).collect();
    let want: Vec<u64> = (0..got.len() as u64).collect();
    assert_eq!(got, want, "srv's lines at cli: no gap, repeat or restart");
    got.len()
}

/// Waits (30 s at most, TCP's backoff included) until cli has more than `n` of srv's lines;
/// returns how many it has.
fn srv_lines_beyond(h: &Host, project: &str, n: usize) -> usize {
    let mut got = 0;
    for _ in 0..300 {
        got = srv_lines_at_cli(h, project);
        if got > n {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    got
}

/// One "host" of the cross-host test: a network namespace (the host's own, where its border
/// guard and its islands' host ends live) and a mount namespace with its own /run/atoll,
/// /var/lib/atoll and /var/log/atoll (state root, runtime root, data, logs), held by a sleeping
/// process; its node file puts its islands' cgroups apart from the other host's (one kernel,
/// one cgroup tree).
struct Host {
    holder: std::process::Child,
    node: std::path::PathBuf,
    cgroup: String,
}

impl Host {
    fn new(dir: &Path, name: &str) -> Host {
        let cgroup = format!("atoll-xhost-{}-{name}", std::process::id());
        let node = dir.join(format!("node-{name}.toml"));
        std::fs::write(
            &node,
            format!("[islands]\ncgroup_parent = \"{cgroup}/islands\"\n"),
        )
        .unwrap();
        let script = "set -e; for d in /run/atoll /var/lib/atoll /var/log/atoll; do \
                      mkdir -p $d; mount -t tmpfs -o mode=0711 tmpfs $d; done; \
                      ip link set lo up; echo ready; exec sleep 1000000";
        let mut holder = Command::new("unshare")
            .args([
                "--net",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready, "ready\n", "host {name}'s namespaces");
        Host {
            holder,
            node,
            cgroup,
        }
    }

    fn pid(&self) -> String {
        self.holder.id().to_string()
    }

    /// A command in the host's namespaces.
    fn cmd(&self, prog: &str, args: &[&str]) -> (i32, String, String) {
        common::decode(
            Command::new("nsenter")
                .args(["-t", &self.pid(), "-n", "-m", "--", prog])
                .args(args)
                .env("ATOLL_CONFIG", &self.node)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    }

    fn atoll(&self, args: &[&str]) -> (i32, String, String) {
        self.cmd(common::ATOLL, args)
    }

    fn sh(&self, script: &str) {
        let (code, out, err) = self.cmd("sh", &["-ec", script]);
        assert_eq!(code, 0, "{script}: {out}{err}");
    }

    /// A path of the host's own mount namespace, as this process can open it.
    fn path(&self, p: &str) -> String {
        format!("/proc/{}/root{p}", self.pid())
    }

    fn status(&self, project: &str) -> serde_json::Value {
        let (code, out, err) = self.atoll(&["status", "--json", project]);
        assert_eq!(code, 0, "status: {out}{err}");
        serde_json::from_str(&out).unwrap()
    }

    fn island_status(&self, project: &str, island: &str) -> String {
        let s = self.status(project);
        s[0]["islands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == island)
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn counter(&self, project: &str, rule: &str) -> u64 {
        common::project::rule_packets(&self.status(project), rule)
    }

    /// Packets the interface sent.
    fn tx_packets(&self, dev: &str) -> u64 {
        let (code, out, err) = self.cmd("ip", &["-s", "-j", "link", "show", dev]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["stats64"]["tx"]["packets"].as_u64().unwrap()
    }

    /// The host's cgroup dirs, in every hierarchy that has one.
    fn cgroup_dirs(&self) -> Vec<String> {
        let mut v = Vec::new();
        for root in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let d = root.path().join(&self.cgroup);
            if d.exists() {
                v.push(d.display().to_string());
            }
        }
        if Path::new("/sys/fs/cgroup").join(&self.cgroup).exists() {
            v.push(self.cgroup.clone());
        }
        v
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        for root in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            for d in [root.path(), Path::new("/sys/fs/cgroup").to_path_buf()] {
                let top = d.join(&self.cgroup);
                let _ = std::fs::remove_dir(top.join("islands"));
                let _ = std::fs::remove_dir(&top);
            }
        }
    }
}

/// Issue 12, item 5, on one machine: two hosts, each with its own atoll state, border guard and
/// cgroups, joined by a veth wire. A client island on host A talks to an island that moves from
/// A to B (`checkpoint --to ARCHIVE --via B`, the archive copied, `restore ARCHIVE` on B, whose
/// project is up with `--arriving srv --via A`); the client's connection carries on, its
/// traffic now crosses the wire and both hosts' guards, and a new connection passes both
/// guards' allow rules. Then both hosts go down and nothing of either is left.
#[test]
fn an_island_moves_to_another_host_with_its_connection() {
    if !can_run() {
        return;
    }
    let (name, dir, file) = two_way_project("xh");
    let file = file.as_str();
    let (a, b, wa, wb) = two_hosts(&dir, "move");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (code, out, err) = a.atoll(&["up", file]);
        assert_eq!(code, 0, "up on A: {out}{err}");
        // Refused before anything is made: an island the file lacks, a host with no route to
        // the other, a wire that does not forward.
        b.sh(&format!("sysctl -qw net.ipv4.conf.{wb}.forwarding=0"));
        for (island, via, want) in [
            ("nosuch", "10.254.250.1", "has no such island"),
            ("srv", "10.254.251.1", "no route to it"),
            ("srv", "10.254.250.1", "does not forward IPv4"),
        ] {
            let (code, out, err) = b.atoll(&["up", file, "--arriving", island, "--via", via]);
            assert_ne!(code, 0, "up --arriving {island} --via {via}: {out}");
            assert!(
                err.contains(want),
                "up --arriving {island} --via {via}: {err}"
            );
            assert!(
                !Path::new(&b.path(&format!("/run/atoll/islands/{name}"))).exists(),
                "nothing of the project is left on B"
            );
        }
        b.sh(&format!("sysctl -qw net.ipv4.conf.{wb}.forwarding=1"));
        // B's side first (outside the outage): srv's netns, locked, linked; cli lives at A.
        let (code, out, err) = b.atoll(&["up", file, "--arriving", "srv", "--via", "10.254.250.1"]);
        assert_eq!(code, 0, "up --arriving on B: {out}{err}");
        assert_eq!(b.island_status(&name, "srv"), "absent");
        assert!(b
            .island_status(&name, "cli")
            .starts_with("elsewhere (via 10.254.250.1"));
        // srv's data, to be carried in the archive.
        std::fs::write(
            a.path(&format!("/var/lib/atoll/islands/{name}/srv/marker")),
            "from A",
        )
        .unwrap();

        let plan: serde_json::Value = serde_json::from_slice(
            &std::fs::read(a.path(&format!("/run/atoll/islands/{name}/plan.json"))).unwrap(),
        )
        .unwrap();
        let srv_addr = plan["links"][0]["addr_a"].as_str().unwrap().to_string();
        let to = format!("{srv_addr}:7000");
        let cli_ns = a.path(&format!("/run/atoll/islands/{name}/netns/cli"));
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let client = {
            let (to, stop, done) = (to.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || peer(cli_ns, to, stop, done))
        };
        await_rounds(&done, &client, 5, "before the move");
        // srv's own connection to cli carries lines too.
        let srv_lines = srv_lines_beyond(&a, &name, 4);
        assert!(srv_lines >= 5, "srv's connection to cli carries lines");
        let wire_before = a.tx_packets(&wa);

        let archive_a = dir.join("srv.arc");
        let (code, out, err) = a.atoll(&[
            "checkpoint",
            "--json",
            "--with-data",
            "--via",
            "10.254.250.2",
            "--to",
            archive_a.to_str().unwrap(),
            &format!("{name}/srv"),
        ]);
        assert_eq!(code, 0, "checkpoint on A: {out}{err}");
        assert!(a
            .island_status(&name, "srv")
            .starts_with("elsewhere (via 10.254.250.2"));
        // The transport: here a copy; between machines scp (docs/migrate.md).
        let archive_b = dir.join("srv.arc.at-b");
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&archive_a)
            .arg(&archive_b)
            .status()
            .unwrap()
            .success());
        let (code, out, err) = b.atoll(&["restore", "--json", archive_b.to_str().unwrap()]);
        assert_eq!(code, 0, "restore on B: {out}{err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["connections"].as_array().unwrap().len(), 2, "{r}");
        assert_eq!(b.island_status(&name, "srv"), "running");
        assert_eq!(
            std::fs::read_to_string(b.path(&format!("/var/lib/atoll/islands/{name}/srv/marker")))
                .unwrap(),
            "from A",
            "the data dir moved with the island"
        );
        // On A, where srv now lives elsewhere, a bad archive is refused before srv is taken
        // back in: A still routes srv's address over the wire.
        let wrong = spoiled(&archive_a, &dir.join("srv.wrong"), |d| {
            let p = d.join("manifest.json");
            let mut m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            m["addresses"] = serde_json::json!(["10.99.0.1"]);
            std::fs::write(&p, m.to_string()).unwrap();
        });
        let (code, _, err) = a.atoll(&["restore", &wrong]);
        assert_ne!(code, 0);
        assert!(err.contains("does not own here"), "{err}");
        assert!(a
            .island_status(&name, "srv")
            .starts_with("elsewhere (via 10.254.250.2"));
        let (_, route, _) = a.cmd("ip", &["-4", "route", "show", &srv_addr]);
        assert!(route.contains("via 10.254.250.2"), "{route}");

        await_rounds(&done, &client, 10, "after the move");
        // The connection srv opened carries on from B: B's conntrack picked it up whichever
        // side's segment came first.
        let at_b = srv_lines_beyond(&a, &name, srv_lines + 10);
        assert!(
            at_b > srv_lines + 10,
            "srv's lines from B: {srv_lines} -> {at_b}"
        );
        assert!(
            a.tx_packets(&wa) > wire_before + 10,
            "the client's traffic crosses the wire"
        );
        // B's guard picked the moved connection up mid-stream (conntrack had never seen it):
        // its allow rule judged it.
        let rule = "allow:cli->srv:tcp/7000";
        assert!(
            b.counter(&name, rule) > 0,
            "B's guard judged the moved flow"
        );
        // A new connection crosses A's guard (out by the wire) and B's (in by the wire).
        let (a0, b0) = (a.counter(&name, rule), b.counter(&name, rule));
        let cmd = format!("echo again | {BB} nc -w 2 {srv_addr} 7000");
        let (code, out, err) = a.atoll(&[
            "island",
            "exec",
            &format!("{name}/cli"),
            BB,
            "sh",
            "-c",
            &cmd,
        ]);
        assert_eq!((code, out.trim()), (0, "again"), "{err}");
        assert!(
            a.counter(&name, rule) > a0,
            "A's guard allowed the new connection"
        );
        assert!(
            b.counter(&name, rule) > b0,
            "B's guard allowed the new connection"
        );
        // doctor on each host: A asks about cli's way to srv (across the wire: its probe gets
        // through both guards); each host sends a question about the island it does not have
        // to the other host.
        let (code, out, err) = a.atoll(&[
            "doctor",
            &format!("{name}/cli"),
            "--to",
            &format!("{srv_addr}:7000/tcp"),
            "--json",
        ]);
        assert_eq!(code, 0, "doctor cli on A: {out}{err}");
        let (code, out, err) = a.atoll(&["doctor", &format!("{name}/srv"), "--json"]);
        assert!(
            out.contains("lives on another host (via 10.254.250.2"),
            "doctor srv on A ({code}): {out}{err}"
        );
        let (code, out, err) = b.atoll(&["doctor", &format!("{name}/srv"), "--json"]);
        assert_eq!(code, 0, "doctor srv on B: {out}{err}");
        // A migration on B, where its peer lives elsewhere: the same steps, the guard still
        // naming the wire for cli.
        let (code, out, err) = b.atoll(&["migrate", "--json", &format!("{name}/srv")]);
        assert_eq!(code, 0, "migrate on B: {out}{err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["connections"].as_array().unwrap().len(), 2, "{r}");
        await_rounds(&done, &client, 5, "after a migration on B");

        // And back: B checkpoints it for A; A, where it lives elsewhere now, takes it in again
        // (a fresh locked netns and its host ends, as `up --arriving` makes them).
        let back_b = dir.join("srv.back");
        let (code, out, err) = b.atoll(&[
            "checkpoint",
            "--with-data",
            "--via",
            "10.254.250.1",
            "--to",
            back_b.to_str().unwrap(),
            &format!("{name}/srv"),
        ]);
        assert_eq!(code, 0, "checkpoint on B: {out}{err}");
        let back_a = dir.join("srv.back.at-a");
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&back_b)
            .arg(&back_a)
            .status()
            .unwrap()
            .success());
        let (code, out, err) = a.atoll(&["restore", "--json", back_a.to_str().unwrap()]);
        assert_eq!(code, 0, "restore on A: {out}{err}");
        assert_eq!(a.island_status(&name, "srv"), "running");
        assert!(b
            .island_status(&name, "srv")
            .starts_with("elsewhere (via 10.254.250.1"));
        await_rounds(&done, &client, 10, "after the move back");
        let back = srv_lines_beyond(&a, &name, at_b + 10);
        assert!(
            back > at_b + 10,
            "srv's lines after the move back: {at_b} -> {back}"
        );
        let wire_now = a.tx_packets(&wa);
        await_rounds(&done, &client, 5, "with both islands on A");
        assert!(
            a.tx_packets(&wa) < wire_now + 3,
            "the client's traffic stays on A"
        );

        stop.store(true, Ordering::SeqCst);
        let lines = client
            .join()
            .unwrap()
            .expect("no reset, no lost or duplicated line");
        assert!(lines >= 30, "{lines} lines");
    }));
    down_both_leaves_nothing(a, b, &name, &dir, result);
}

/// A project named `prefix` + this process's pid, of `two_way_body`, in a fresh temp dir:
/// (name, dir, islands file).
fn two_way_project(prefix: &str) -> (String, std::path::PathBuf, String) {
    let name = format!("{prefix}{}", std::process::id() % 100000);
    let dir = std::env::temp_dir().join(format!("atoll-test-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("islands.toml");
    std::fs::write(&file, format!("name = \"{name}\"\n{}", two_way_body())).unwrap();
    let file = file.to_str().unwrap().to_string();
    (name, dir, file)
}

/// Hosts A and B (`Host`; `tag` keeps tests apart) joined by a veth wire, 10.254.250.1 (A) - 10.254.250.2 (B), on which
/// both forward; returns them and the wire's two ends.
fn two_hosts(dir: &Path, tag: &str) -> (Host, Host, String, String) {
    let a = Host::new(dir, &format!("{tag}a"));
    let b = Host::new(dir, &format!("{tag}b"));
    // The wire: 10.254.250.1 (A) - 10.254.250.2 (B); the hosts forward on it.
    let (wa, wb) = (
        format!("xwa{}", std::process::id() % 100000),
        format!("xwb{}", std::process::id() % 100000),
    );
    let (code, _, err) = common::decode(
        Command::new("ip")
            .args([
                "link",
                "add",
                &wa,
                "netns",
                &a.pid(),
                "type",
                "veth",
                "peer",
                "name",
                &wb,
                "netns",
                &b.pid(),
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "the wire: {err}");
    for (h, dev, addr) in [(&a, &wa, "10.254.250.1/30"), (&b, &wb, "10.254.250.2/30")] {
        h.sh(&format!(
            "ip addr add {addr} dev {dev}; ip link set {dev} up; \
             sysctl -qw net.ipv4.conf.{dev}.forwarding=1"
        ));
    }
    (a, b, wa, wb)
}

/// `down` of `project` on both hosts, then the hosts go; re-raises `result`'s panic, else checks
/// that the downs passed and left no static route, nft table or cgroup on either host.
fn down_both_leaves_nothing(
    a: Host,
    b: Host,
    project: &str,
    dir: &Path,
    result: std::thread::Result<()>,
) {
    let down = |h: &Host| {
        let (code, out, err) = h.atoll(&["down", project]);
        (code, format!("{out}{err}"))
    };
    let (down_b, down_a) = (down(&b), down(&a));
    let left: Vec<String> = a.cgroup_dirs().into_iter().chain(b.cgroup_dirs()).collect();
    let routes: Vec<String> = [&a, &b]
        .iter()
        .map(|h| h.cmd("ip", &["-4", "route", "show", "proto", "static"]).1)
        .collect();
    let tables: Vec<String> = [&a, &b]
        .iter()
        .map(|h| h.cmd("nft", &["list", "tables"]).1)
        .collect();
    drop((a, b));
    let _ = std::fs::remove_dir_all(dir);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert_eq!(down_a.0, 0, "down on A: {}", down_a.1);
    assert_eq!(down_b.0, 0, "down on B: {}", down_b.1);
    assert!(
        routes.iter().all(|r| r.trim().is_empty()),
        "routes left: {routes:?}"
    );
    assert!(
        tables.iter().all(|t| t.trim().is_empty()),
        "nft tables left: {tables:?}"
    );
    // The runtime and `down` remove the islands' cgroups and the dirs above them that the
    // node file's `cgroup_parent` named (atoll-xhost-PID-X/islands), once empty.
    assert!(left.is_empty(), "cgroups left: {left:?}");
}

/// `checkpoint --via` killed (SIGKILL) once its archive is written (after its "transfer" line):
/// whether the kill came before the leave began or in it (both were seen), the same command on
/// A finishes the leave (srv's address routed over the wire, srv's host end and netns gone, the
/// guard naming the wire) and says the island lives elsewhere; the archive restores on B with its connection; cli on A reaches srv
/// on B; `down` on both leaves nothing.
#[test]
fn a_checkpoint_killed_while_the_island_leaves_is_finished_by_the_same_command() {
    if !can_run() {
        return;
    }
    let (name, dir, file) = two_way_project("xk");
    let file = file.as_str();
    let (a, b, _wa, _wb) = two_hosts(&dir, "kill");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (code, out, err) = a.atoll(&["up", file]);
        assert_eq!(code, 0, "up on A: {out}{err}");
        let (code, out, err) = b.atoll(&["up", file, "--arriving", "srv", "--via", "10.254.250.1"]);
        assert_eq!(code, 0, "up --arriving on B: {out}{err}");
        let plan: serde_json::Value = serde_json::from_slice(
            &std::fs::read(a.path(&format!("/run/atoll/islands/{name}/plan.json"))).unwrap(),
        )
        .unwrap();
        let srv_addr = plan["links"][0]["addr_a"].as_str().unwrap().to_string();
        let srv_end = plan["links"][0]["host_a"].as_str().unwrap().to_string();
        let srv_lines = srv_lines_beyond(&a, &name, 4);
        assert!(srv_lines >= 5, "srv's connection to cli carries lines");

        let archive = dir.join("srv.arc");
        let archive_s = archive.to_str().unwrap();
        let args = [
            "--via",
            "10.254.250.2",
            "--to",
            archive_s,
            &format!("{name}/srv"),
        ];
        let mut child = Command::new("nsenter")
            .args([
                "-t",
                &a.pid(),
                "-n",
                "-m",
                "--",
                common::ATOLL,
                "checkpoint",
            ])
            .args(args)
            .env("ATOLL_CONFIG", &a.node)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The phase line that ends with the archive written: the leave comes next.
        assert!(
            lines
                .by_ref()
                .any(|l| l.unwrap().split_whitespace().next() == Some("transfer")),
            "checkpoint never printed its transfer line"
        );
        child.kill().unwrap();
        child.wait().unwrap();

        let (code, _, err) = a.atoll(&["checkpoint"].into_iter().chain(args).collect::<Vec<_>>());
        assert_ne!(code, 0);
        assert!(err.contains("its leave is complete"), "{err}");
        let (_, route, _) = a.cmd("ip", &["-4", "route", "show", &srv_addr]);
        assert!(route.contains("via 10.254.250.2"), "{route}");
        let (_, link, _) = a.cmd("ip", &["link", "show", &srv_end]);
        assert!(link.trim().is_empty(), "srv's host end is left: {link}");
        assert!(!Path::new(&a.path(&format!("/run/atoll/islands/{name}/netns/srv"))).exists());
        assert!(a
            .island_status(&name, "srv")
            .starts_with("elsewhere (via 10.254.250.2"));

        let at_b = dir.join("srv.arc.at-b");
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&archive)
            .arg(&at_b)
            .status()
            .unwrap()
            .success());
        let (code, out, err) = b.atoll(&["restore", "--json", at_b.to_str().unwrap()]);
        assert_eq!(code, 0, "restore on B: {out}{err}");
        // srv's connection to cli carries on from B, through A's guard (which names the wire).
        let after = srv_lines_beyond(&a, &name, srv_lines + 10);
        assert!(
            after > srv_lines + 10,
            "srv's lines from B: {srv_lines} -> {after}"
        );
        let cmd = format!("echo again | {BB} nc -w 2 {srv_addr} 7000");
        let (code, out, err) = a.atoll(&[
            "island",
            "exec",
            &format!("{name}/cli"),
            BB,
            "sh",
            "-c",
            &cmd,
        ]);
        assert_eq!(
            (code, out.trim()),
            (0, "again"),
            "cli on A to srv on B: {err}"
        );
    }));
    down_both_leaves_nothing(a, b, &name, &dir, result);
}

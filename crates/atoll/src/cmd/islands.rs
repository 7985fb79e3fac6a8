//! The islands verbs: up, down, status (ps), logs, backup, demo. The work is in atoll-islands;
//! this file reads arguments and prints.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use atoll_islands::apply::{self, UpOpts};
use atoll_islands::plan::{self, Plan, STATE_ROOT};
use atoll_islands::{backup as bk, file, status as st};
use atoll_runtime::{container, Store};

use crate::cli::{Cli, UpArgs};

fn state_root() -> PathBuf {
    PathBuf::from(STATE_ROOT)
}

/// If `what` names an island that is up (and not a container of `store`), its store and id.
pub fn container_of(store: &Store, what: &str) -> Option<(Store, String)> {
    if store.exists(what) {
        return None;
    }
    let (plan, name) = atoll_islands::resolve(&state_root(), what).ok()?;
    let id = plan.island(&name)?.container_id.clone();
    Some((Store::new(&plan.runtime_root), id))
}

fn up_opts(cli: &Cli, state: &Path, net_only: bool, parallel: usize) -> Result<UpOpts> {
    Ok(UpOpts {
        state_root: state.to_path_buf(),
        runtime_root: cli.root.clone(),
        atoll: std::env::current_exe().context("find the atoll binary (/proc/self/exe)")?,
        parallel,
        net_only,
    })
}

pub fn up(cli: &Cli, a: &UpArgs) -> Result<i32> {
    let f = file::load(&a.file)?;
    let plan = apply::up(&f, &up_opts(cli, &a.state_dir, a.net_only, a.parallel)?)?;
    let s = st::status_after_up(&plan);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{s}");
    }
    Ok(0)
}

/// `down NAME`, `down FILE` (its project), or `down` (every project).
pub fn down(cli: &Cli, what: Option<&str>) -> Result<i32> {
    let names: Vec<String> = match what {
        Some(w) if w.ends_with(".toml") || Path::new(w).is_file() => {
            vec![file::load(Path::new(w))?.name]
        }
        Some(w) => vec![w.to_string()],
        None => {
            let mut v: Vec<String> = std::fs::read_dir(state_root())
                .map(|rd| {
                    rd.flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        }
    };
    let mut failed = false;
    for n in names {
        match apply::down(&state_root(), &cli.root, &n) {
            Ok(true) => println!("{n}: down"),
            Ok(false) => println!("{n}: was not up"),
            Err(e) => {
                eprintln!("{n}: {}", atoll_runtime::error::report(&e));
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

pub fn status(project: Option<&str>, json: bool) -> Result<i32> {
    let plans: Vec<Plan> = plan::existing(&state_root())
        .into_iter()
        .filter(|p| project.is_none_or(|n| n == p.name))
        .collect();
    let all: Vec<st::Status> = plans.iter().map(st::status).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else if all.is_empty() {
        println!("no islands are up");
    } else {
        for s in &all {
            print!("{s}");
        }
    }
    Ok(0)
}

pub fn logs(island: &str, follow: bool) -> Result<i32> {
    let (plan, name) = atoll_islands::resolve(&state_root(), island)?;
    let i = plan.island(&name).expect("resolved");
    let path = i.log.clone();
    let mut f = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    let mut out = std::io::stdout();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        f.read_to_end(&mut buf)?;
        out.write_all(&buf)?;
        out.flush()?;
        if !follow || !path.exists() {
            return Ok(0);
        }
        // read_to_end stops at the current end; the next read goes on from there.
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn backup(island: &str, dest: &Path, freeze: bool, json: bool) -> Result<i32> {
    let (plan, name) = atoll_islands::resolve(&state_root(), island)?;
    let i = plan.island(&name).expect("resolved");
    let store = Store::new(&plan.runtime_root);
    if freeze {
        container::pause(&store, &i.container_id).context("freeze the island")?;
    }
    let r = bk::copy_tree(&i.data_dir, dest);
    if freeze {
        container::resume(&store, &i.container_id).context("thaw the island")?;
    }
    let r = r?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(0);
    }
    println!(
        "backup of {}/{}: {} files, {} dirs, {} bytes to {}{}",
        plan.name,
        name,
        r.files,
        r.dirs,
        r.bytes,
        dest.display(),
        if freeze {
            " (island frozen while copying)"
        } else {
            ""
        }
    );
    for (p, t) in &r.symlinks {
        println!(
            "  symlink {} -> {} kept as a link, not followed",
            p.display(),
            t.display()
        );
    }
    for p in &r.skipped {
        println!("  skipped {} (not a file, dir or symlink)", p.display());
    }
    Ok(0)
}

// ---- demo ---------------------------------------------------------------------------------

struct Proof {
    passed: usize,
    failed: usize,
}

impl Proof {
    fn check(&mut self, claim: &str, ok: bool, evidence: &str) {
        let mark = if ok { "PASS" } else { "FAIL" };
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        println!("  [{mark}] {claim}");
        for l in evidence.lines().filter(|l| !l.trim().is_empty()).take(4) {
            println!("         | {}", l.trim_end());
        }
    }
}

/// Run a command inside an island through `atoll exec`, with a deadline; (exit code, output).
fn run_in(cli: &Cli, plan: &Plan, island: &str, args: &[&str]) -> (i32, String) {
    let cid = &plan.island(island).expect("demo island").container_id;
    let exe = std::env::current_exe().expect("/proc/self/exe");
    let mut child = match Command::new(exe)
        .arg("--root")
        .arg(&cli.root)
        .arg("exec")
        .arg(cid)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return (-1, format!("spawn atoll exec: {e}")),
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s.code().unwrap_or(-1),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break -2;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break -1,
        }
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut out);
    }
    (code, out)
}

fn addr_of(plan: &Plan, island: &str, toward: &str) -> String {
    let a = plan
        .islands
        .iter()
        .position(|i| i.spec.name == island)
        .expect("island");
    let b = plan
        .islands
        .iter()
        .position(|i| i.spec.name == toward)
        .expect("island");
    for l in &plan.links {
        if (l.a, l.b) == (a, b) {
            return l.addr_a.to_string();
        }
        if (l.a, l.b) == (b, a) {
            return l.addr_b.to_string();
        }
    }
    panic!("demo: no link between {island} and {toward}");
}

fn status_line(s: &str, key: &str) -> String {
    s.lines()
        .find(|l| l.starts_with(key))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn demo(cli: &Cli, keep: bool) -> Result<i32> {
    let state = state_root();
    if state.join("demo").exists() {
        println!("a demo is already up: taking it down first");
        apply::down(&state, &cli.root, "demo")?;
    }
    let f = file::parse(Path::new("demo.toml (built in)"), atoll_islands::DEMO)?;
    println!(
        "== atoll demo: bringing up {} islands from the host's own /usr",
        f.islands.len()
    );
    let t0 = Instant::now();
    let plan = apply::up(&f, &up_opts(cli, &state, false, 8)?)?;
    println!("   up in {} ms\n", t0.elapsed().as_millis());
    print!("{}", st::status(&plan));
    println!();
    let mut p = Proof {
        passed: 0,
        failed: 0,
    };
    let result = prove(cli, &plan, &mut p);
    println!(
        "\n== {} of {} claims shown true",
        p.passed,
        p.passed + p.failed
    );
    if keep {
        println!("the demo is still up: `atoll status`, `atoll exec db -- busybox ps`, then `atoll down demo`");
    } else {
        apply::teardown(&plan)?;
        // `down` keeps tenants' data and logs; the demo's own are of no use afterwards.
        for i in &plan.islands {
            let _ = std::fs::remove_dir_all(&i.data_dir);
            let _ = std::fs::remove_file(&i.log);
        }
        for i in plan.islands.iter().take(1) {
            for dir in [i.data_dir.parent(), i.log.parent()].into_iter().flatten() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        let gone = !plan.state_dir.exists()
            && !plan.islands.iter().any(|i| i.netns.exists())
            && atoll_net::firewall::counters(&plan.table).is_err();
        println!(
            "== torn down: netns, links, nft table {}, containers, guard, state, data and logs {}",
            plan.table,
            if gone { "removed" } else { "NOT all removed" }
        );
        if !gone {
            bail!("the demo left something behind");
        }
    }
    result?;
    Ok(i32::from(p.failed > 0))
}

fn prove(cli: &Cli, plan: &Plan, p: &mut Proof) -> Result<()> {
    let db_for_backup = addr_of(plan, "db", "backup");
    let db_for_intruder = addr_of(plan, "db", "intruder");
    let backup_for_db = addr_of(plan, "backup", "db");
    let web_for_backup = addr_of(plan, "web", "backup");

    println!("-- 1. islands: own loopback, addresses, process tree, ports");
    let (_, db_ip) = run_in(cli, plan, "db", &["/bin/busybox", "ip", "-o", "-4", "addr"]);
    let (_, in_ip) = run_in(
        cli,
        plan,
        "intruder",
        &["/bin/busybox", "ip", "-o", "-4", "addr"],
    );
    let (db_local, in_local) = (local_addrs(&db_ip), local_addrs(&in_ip));
    p.check(
        "db and intruder each have their own loopback and only their own link addresses",
        db_local
            == [
                "127.0.0.1",
                db_for_backup.as_str(),
                db_for_intruder.as_str(),
            ]
            && in_local == ["127.0.0.1".to_string(), addr_of(plan, "intruder", "db")],
        &format!(
            "db: {}\nintruder: {}",
            db_local.join(" "),
            in_local.join(" ")
        ),
    );
    let mut listening = Vec::new();
    for isl in ["db", "backup", "intruder"] {
        let (_, out) = run_in(cli, plan, isl, &["/bin/busybox", "netstat", "-ltn"]);
        if out.contains(":5432") {
            listening.push(isl);
        }
    }
    p.check(
        "three islands bind tcp/5432 at once without conflict",
        listening.len() == 3,
        &format!("listening on :5432 in: {}", listening.join(", ")),
    );
    let (_, ps) = run_in(
        cli,
        plan,
        "db",
        &["/bin/busybox", "ps", "-o", "pid,user,args"],
    );
    let procs = ps.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
    p.check(
        "db sees only its own processes (pid 1 is its server)",
        procs <= 3
            && ps
                .lines()
                .nth(1)
                .is_some_and(|l| l.trim_start().starts_with("1 ")),
        &ps,
    );

    println!("-- 2-3. links and the border guard (nftables on the host)");
    let nc = |from: &str, ip: &str, port: &str| {
        run_in(
            cli,
            plan,
            from,
            &["/bin/busybox", "nc", "-w", "2", ip, port],
        )
    };
    let (c, out) = nc("backup", &db_for_backup, "5432");
    p.check(
        &format!("backup -> db {db_for_backup}:5432 passes (allowed)"),
        c == 0 && out.contains("42 rows"),
        &out,
    );
    let (c, out) = nc("backup", &db_for_backup, "5433");
    p.check(
        "backup -> db:5433 is dropped (port not allowed)",
        c != 0 && !out.contains("refused"),
        &out,
    );
    let (c, out) = nc("db", &backup_for_db, "5432");
    p.check(
        &format!("db -> backup {backup_for_db}:5432 is dropped (reverse direction)"),
        c != 0 && !out.contains("backup-listener"),
        &out,
    );
    let (c, out) = nc("intruder", &db_for_intruder, "5432");
    p.check(
        &format!("intruder -> db {db_for_intruder}:5432 is dropped (linked, no rule)"),
        c != 0 && !out.contains("42 rows"),
        &out,
    );
    let (c, out) = nc("intruder", &db_for_backup, "5432");
    p.check(
        "intruder cannot reach the db-backup link at all (no route to it)",
        c != 0 && !out.contains("42 rows"),
        &out,
    );

    println!("-- 4. no vsock in islands");
    if Path::new("/usr/bin/python3").exists() {
        let (c, out) = run_in(
            cli,
            plan,
            "db",
            &[
                "/usr/bin/python3",
                "-c",
                "import socket\ntry:\n socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM); print('vsock socket opened')\nexcept OSError as e:\n print('socket(AF_VSOCK):', e); raise SystemExit(3)",
            ],
        );
        p.check(
            "socket(AF_VSOCK) fails inside an island (seccomp: EPERM)",
            c == 3 && out.contains("Operation not permitted"),
            &out,
        );
    } else {
        p.check(
            "socket(AF_VSOCK) fails inside an island (needs /usr/bin/python3 to show; not installed)",
            false,
            "install python3 to run this proof",
        );
    }

    println!("-- 5. least privilege: the web island");
    let (_, s) = run_in(cli, plan, "web", &["/bin/busybox", "cat", "/proc/1/status"]);
    let capeff = status_line(&s, "CapEff:");
    let uid = status_line(&s, "Uid:");
    p.check(
        "web runs as uid 1000 with CapEff = CAP_NET_BIND_SERVICE only (0x400)",
        capeff == "0000000000000400" && uid.starts_with("1000 "),
        &format!("Uid: {uid}\nCapEff: {capeff}"),
    );
    let (c, out) = run_in(
        cli,
        plan,
        "backup",
        &[
            "/bin/busybox",
            "sh",
            "-c",
            &format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2 {web_for_backup} 80"
            ),
        ],
    );
    p.check(
        &format!("backup -> web {web_for_backup}:80 gets the page (allowed)"),
        c == 0 && out.contains("hello from web"),
        &out,
    );
    let (c, out) = run_in(
        cli,
        plan,
        "intruder",
        &[
            "/bin/busybox",
            "timeout",
            "2",
            "/bin/busybox",
            "nc",
            "-l",
            "-p",
            "80",
        ],
    );
    p.check(
        "intruder (uid 1000, no capabilities) cannot bind port 80",
        c == 1 && out.to_lowercase().contains("permission denied"),
        &out,
    );

    println!("-- 6. root inside is nobody outside");
    let (_, map) = run_in(
        cli,
        plan,
        "db",
        &["/bin/busybox", "cat", "/proc/self/uid_map"],
    );
    let (_, s) = run_in(
        cli,
        plan,
        "db",
        &["/bin/busybox", "cat", "/proc/self/status"],
    );
    let db = plan.island("db").expect("db");
    let host_uid = host_uid_of(&plan.runtime_root, &db.container_id);
    p.check(
        "db's uid 1000 is an unprivileged host uid; no_new_privs and seccomp are on",
        map.split_whitespace().nth(1) == Some(&db.host_base.to_string())
            && host_uid == Some(db.host_base + 1000)
            && status_line(&s, "NoNewPrivs:") == "1"
            && status_line(&s, "Seccomp:") == "2",
        &format!(
            "uid_map: {}\nhost sees db's init as uid {}\nNoNewPrivs: {}  Seccomp: {}",
            one_line(&map),
            host_uid.map(|u| u.to_string()).unwrap_or("?".into()),
            status_line(&s, "NoNewPrivs:"),
            status_line(&s, "Seccomp:")
        ),
    );

    println!("-- escape guard: setns on a namespace fd from outside");
    if Path::new("/usr/bin/python3").exists() {
        // A host process "tricked" into handing the tenant its own netns fd: the shell opens
        // /proc/self/ns/net (the host's) as fd 3 and `atoll exec --preserve-fds 1` passes it in.
        let exe = std::env::current_exe()?;
        let cid = &plan.island("backup").expect("backup").container_id;
        let script = format!(
            "exec 3</proc/self/ns/net; exec '{}' --root '{}' exec --preserve-fds 1 {cid} /usr/bin/python3 -c \"{SETNS_PY}\"",
            exe.display(),
            cli.root.display()
        );
        let out = Command::new("/bin/sh").args(["-c", &script]).output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
        let alerts =
            std::fs::read_to_string(atoll_islands::guard::alerts(plan)).unwrap_or_default();
        let alert = alerts
            .lines()
            .find(|l| {
                l.contains("atoll.setns.foreign-namespace")
                    && l.contains(&format!("\"tenant\":\"{cid}\""))
            })
            .unwrap_or("")
            .to_string();
        p.check(
            "backup's setns() into the host's netns (fd passed in from outside) is denied and alerted",
            text.contains("Operation not permitted")
                && alert.contains("\"owner\":\"host\"")
                && alert.contains("\"decision\":\"deny\""),
            &format!("{}\nalert: {alert}", one_line(&text)),
        );
    } else {
        p.check(
            "setns escape denied (needs /usr/bin/python3 to show)",
            false,
            "",
        );
    }

    println!("-- 7. host-side backup");
    let dest = std::env::temp_dir().join(format!("atoll-demo-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dest);
    let r = bk::copy_tree(&db.data_dir, &dest);
    match r {
        Ok(r) => {
            let rows = std::fs::read_to_string(dest.join("rows")).unwrap_or_default();
            let link_kept = std::fs::symlink_metadata(dest.join("secret"))
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            p.check(
                "backup copies db's data while it runs, and keeps its planted symlink to /etc/shadow as a link",
                rows.contains("42 rows") && link_kept && r.symlinks.len() == 1,
                &format!(
                    "{} files, {} bytes; symlinks not followed: {:?}",
                    r.files, r.bytes, r.symlinks
                ),
            );
        }
        Err(e) => p.check(
            "backup copies db's data while it runs",
            false,
            &atoll_runtime::error::report(&e),
        ),
    }
    let _ = std::fs::remove_dir_all(&dest);

    println!("-- 3. counters");
    let s = st::status(plan);
    let count = |rule: &str| {
        s.rules
            .iter()
            .find(|r| r.rule == rule)
            .map(|r| r.packets)
            .unwrap_or(0)
    };
    let allowed = count("allow:backup->db:tcp/5432");
    let dropped = count("drop");
    p.check(
        "the border guard's counters show the allowed flow and the drops",
        allowed > 0 && dropped > 0,
        &s.rules
            .iter()
            .map(|r| format!("{:>6} pkts  {}", r.packets, r.rule))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    Ok(())
}

/// The local IPv4 addresses in `ip -o -4 addr` output ("inet A[/n]" or "inet A peer B/32").
fn local_addrs(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip_while(|w| *w != "inet");
            w.next()?;
            Some(w.next()?.split('/').next()?.to_string())
        })
        .collect()
}

/// setns(3, CLONE_NEWNET) from inside an island, through libc (python 3.11 has no os.setns).
const SETNS_PY: &str = "import ctypes, os; c = ctypes.CDLL(None, use_errno=True); r = c.setns(3, 0x40000000); print('setns:', r, os.strerror(ctypes.get_errno()) if r else 'joined')";

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The host uid of a container's init, read from the host's /proc.
fn host_uid_of(runtime_root: &Path, id: &str) -> Option<u32> {
    let saved = Store::new(runtime_root).load(id).ok()?;
    let s = std::fs::read_to_string(format!("/proc/{}/status", saved.pid)).ok()?;
    status_line(&s, "Uid:")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

//! The demo's claims, in the order it prints them: each is checked live, inside the islands or
//! on the host, and printed with its evidence. A claim that cannot be shown counts as failed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use atoll_islands::{backup as bk, status as st};

use super::probe::{host_uid_of, local_addrs, one_line, status_line, Demo};
use super::Tally;

const BB: &str = "/bin/busybox";
const PYTHON: &str = "/usr/bin/python3";
const VSOCK_PY: &str = include_str!("programs/vsock.py");
const SETNS_PY: &str = include_str!("programs/setns.py");
const SETNS_FROM_HOST_SH: &str = include_str!("programs/setns-from-host.sh");
const HTTP_GET_SH: &str = include_str!("programs/http-get.sh");

pub(crate) fn prove(d: &Demo, p: &mut Tally) -> Result<()> {
    islands_are_separate(d, p)?;
    border_guard(d, p)?;
    no_vsock(d, p);
    least_privilege(d, p)?;
    root_is_nobody_outside(d, p)?;
    escape_guard(d, p)?;
    host_side_backup(d, p)?;
    doctor(d, p)?;
    counters(d, p);
    Ok(())
}

fn islands_are_separate(d: &Demo, p: &mut Tally) -> Result<()> {
    println!("-- 1. islands: own loopback, addresses, process tree, ports");
    let (db_for_backup, db_for_intruder) = (d.addr("db", "backup")?, d.addr("db", "intruder")?);
    let intruder_for_db = d.addr("intruder", "db")?;
    let (_, db_ip) = d.run_in("db", &[BB, "ip", "-o", "-4", "addr"]);
    let (_, in_ip) = d.run_in("intruder", &[BB, "ip", "-o", "-4", "addr"]);
    let (db_local, in_local) = (local_addrs(&db_ip), local_addrs(&in_ip));
    p.check(
        "db and intruder each have their own loopback and only their own link addresses",
        db_local
            == [
                "127.0.0.1",
                db_for_backup.as_str(),
                db_for_intruder.as_str(),
            ]
            && in_local == ["127.0.0.1".to_string(), intruder_for_db],
        &format!(
            "db: {}\nintruder: {}",
            db_local.join(" "),
            in_local.join(" ")
        ),
    );
    let mut listening = Vec::new();
    for isl in ["db", "backup", "intruder"] {
        let (_, out) = d.run_in(isl, &[BB, "netstat", "-ltn"]);
        if out.contains(":5432") {
            listening.push(isl);
        }
    }
    p.check(
        "three islands bind tcp/5432 at once without conflict",
        listening.len() == 3,
        &format!("listening on :5432 in: {}", listening.join(", ")),
    );
    let (_, ps) = d.run_in("db", &[BB, "ps", "-o", "pid,user,args"]);
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
    Ok(())
}

fn border_guard(d: &Demo, p: &mut Tally) -> Result<()> {
    println!("-- 2-3. links and the border guard (nftables on the host)");
    let db_for_backup = d.addr("db", "backup")?;
    let db_for_intruder = d.addr("db", "intruder")?;
    let backup_for_db = d.addr("backup", "db")?;
    let nc = |from: &str, ip: &str, port: &str| d.run_in(from, &[BB, "nc", "-w", "2", ip, port]);
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
    Ok(())
}

fn no_vsock(d: &Demo, p: &mut Tally) {
    println!("-- 4. no vsock in islands");
    if !Path::new(PYTHON).exists() {
        p.check(
            "socket(AF_VSOCK) fails inside an island (needs /usr/bin/python3 to show; not installed)",
            false,
            "install python3 to run this proof",
        );
        return;
    }
    let (c, out) = d.run_in("db", &[PYTHON, "-c", VSOCK_PY]);
    p.check(
        "socket(AF_VSOCK) fails inside an island (seccomp: EPERM)",
        c == 3 && out.contains("Operation not permitted"),
        &out,
    );
}

fn least_privilege(d: &Demo, p: &mut Tally) -> Result<()> {
    println!("-- 5. least privilege: the web island");
    let web_for_backup = d.addr("web", "backup")?;
    let (_, s) = d.run_in("web", &[BB, "cat", "/proc/1/status"]);
    let capeff = status_line(&s, "CapEff:");
    let uid = status_line(&s, "Uid:");
    p.check(
        "web runs as uid 1000 with CapEff = CAP_NET_BIND_SERVICE only (0x400)",
        capeff == "0000000000000400" && uid.starts_with("1000 "),
        &format!("Uid: {uid}\nCapEff: {capeff}"),
    );
    let (c, out) = d.run_in(
        "backup",
        &[BB, "sh", "-c", HTTP_GET_SH, "sh", &web_for_backup],
    );
    p.check(
        &format!("backup -> web {web_for_backup}:80 gets the page (allowed)"),
        c == 0 && out.contains("hello from web"),
        &out,
    );
    let (c, out) = d.run_in(
        "intruder",
        &[BB, "timeout", "2", BB, "nc", "-l", "-p", "80"],
    );
    p.check(
        "intruder (uid 1000, no capabilities) cannot bind port 80",
        c == 1 && out.to_lowercase().contains("permission denied"),
        &out,
    );
    Ok(())
}

fn root_is_nobody_outside(d: &Demo, p: &mut Tally) -> Result<()> {
    println!("-- 6. root inside is nobody outside");
    let (_, map) = d.run_in("db", &[BB, "cat", "/proc/self/uid_map"]);
    let (_, s) = d.run_in("db", &[BB, "cat", "/proc/self/status"]);
    let db = d.island("db")?;
    let host_uid = host_uid_of(&d.plan.runtime_root, &db.container_id);
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
    Ok(())
}

fn escape_guard(d: &Demo, p: &mut Tally) -> Result<()> {
    println!("-- escape guard: setns on a namespace fd from outside");
    if !Path::new(PYTHON).exists() {
        p.check(
            "setns escape denied (needs /usr/bin/python3 to show)",
            false,
            "",
        );
        return Ok(());
    }
    let cid = &d.island("backup")?.container_id;
    let out = Command::new("/bin/sh")
        .args(["-c", SETNS_FROM_HOST_SH, "sh"])
        .arg(&d.exe)
        .arg(&d.plan.runtime_root)
        .args([cid, SETNS_PY])
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // the guard appends the alert after it has answered the call
    std::thread::sleep(Duration::from_millis(100));
    let alerts = std::fs::read_to_string(atoll_islands::guard::alerts(d.plan)).unwrap_or_default();
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
    Ok(())
}

fn host_side_backup(d: &Demo, p: &mut Tally) -> Result<()> {
    println!("-- 7. host-side backup");
    let db = d.island("db")?;
    let dest = std::env::temp_dir().join(format!("atoll-demo-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dest);
    match bk::copy_tree(&db.data_dir, &dest, bk::Owners::Root) {
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
    Ok(())
}

/// The demo's one broken flow (intruder is linked to db, but no `[[allow]]` lets it open a
/// connection): doctor walks the layers and names the border guard, with the entry to add; the
/// allowed flow next to it is ok at every layer.
fn doctor(d: &Demo, p: &mut Tally) -> Result<()> {
    println!("-- 8. atoll doctor: which layer stops intruder -> db tcp/5432?");
    let ask = |from: &str| -> Result<atoll_doctor::Report> {
        let idx = d
            .plan
            .islands
            .iter()
            .position(|i| i.spec.name == from)
            .with_context(|| format!("the demo has no island {from:?}"))?;
        let subject = atoll_doctor::Subject::island(d.plan, idx);
        let target = atoll_doctor::Target::parse("db:5432")?;
        Ok(atoll_doctor::diagnose(&subject, Some(&target), None)?)
    };
    let broken = ask("intruder")?;
    for l in broken.render().lines() {
        println!("         : {l}");
    }
    let healthy = ask("backup")?;
    let named = broken.fault().is_some_and(|f| {
        f.layer == atoll_doctor::Layer::Guard
            && f.fix.as_deref().is_some_and(|x| x.contains("[[allow]]"))
    });
    p.check(
        "doctor names the border guard for intruder -> db, with the [[allow]] to add; backup -> db is ok at all five layers",
        named && healthy.exit_code() == 0,
        &format!(
            "intruder -> db: {}\nbackup -> db: {}",
            broken.one_line().unwrap_or_else(|| "no fault found".into()),
            healthy.one_line().unwrap_or_else(|| "no fault found".into())
        ),
    );
    Ok(())
}

fn counters(d: &Demo, p: &mut Tally) {
    println!("-- 3. counters");
    let s = st::status(d.plan);
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
}

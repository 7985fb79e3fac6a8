//! `atoll events` reports OOM kills as runc does (`{"type":"oom","id":...}`), next to its stats
//! lines: a container under a small memory limit allocates until the kernel's OOM killer kills
//! its allocator, and the event arrives while `events` follows the container.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{can_run, Bundle};

#[test]
fn events_report_oom_kills() {
    if !can_run() {
        return;
    }
    let mut b = Bundle::new("devoom");
    // No swap beyond the limit, so the allocation ends in the OOM killer, not in swap.
    b.config["linux"]["resources"]["memory"] =
        serde_json::json!({"limit": 16 << 20, "swap": 16 << 20});
    // tail keeps the last line of /dev/zero, which has no newline: it grows until killed. The
    // shell stays, so the container outlives the kill.
    b.set_args(&[
        "sh",
        "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; tail /dev/zero; echo tail=$?; exec sleep 100",
    ]);
    let _ = std::fs::remove_file(b.rootfs().join("tmp/go"));
    let id = b.id("oom");
    let (code, err) = b.run_detached(&id);
    assert_eq!(code, 0, "run -d: {err}");

    // Under `timeout`: a failed test aborts (panic = "abort") without dropping the child.
    let mut events = Command::new("timeout")
        .args(["120", common::ATOLL])
        .arg("--root")
        .arg(&b.root)
        .args(["events", "--interval", "1s", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = events.stdout.take().unwrap();
    let _events = Kill(events);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The first stats line: the OOM watch is armed before it.
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a stats line");
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["id"].as_str()),
        (Some("stats"), Some(id.as_str()))
    );
    std::fs::write(b.rootfs().join("tmp/go"), "").unwrap();

    let mut seen = Vec::new();
    let oom = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if v["type"] == "oom" {
                    break v;
                }
                assert_eq!(v["type"], "stats", "{line}");
                seen.push(line);
            }
            Err(e) => panic!("no oom event ({e}); lines: {seen:#?}"),
        }
    };
    assert_eq!(oom, serde_json::json!({"type": "oom", "id": id}));
    // The kernel counted it too, and --stats is one stats line as before.
    let (code, out, err) = b.cmd(&["events", "--stats", &id]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["type"], "stats", "{out}");
}

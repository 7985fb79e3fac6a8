//! An islands project brought up from a file for one test, and taken down (with its data and
//! logs) when the test ends, also when it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{decode, ATOLL};

pub const BB: &str = "/bin/busybox";

static N: AtomicUsize = AtomicUsize::new(0);

/// A project brought up from a file; dropping it runs `atoll down` and removes its files.
pub struct Project {
    pub name: String,
    pub dir: PathBuf,
    pub file: PathBuf,
    pub group: Option<u32>,
}

impl Project {
    /// `body` is the file without `name` and `data_root`, which are made unique here.
    pub fn new(tag: &str, body: &str) -> Project {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}{}{n}", std::process::id() % 10000, tag);
        let dir = PathBuf::from(format!("/tmp/atoll-tests/islands-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("islands.toml");
        std::fs::write(
            &file,
            format!(
                "name = \"{name}\"\ndata_root = \"{}\"\n{body}",
                dir.join("data").display()
            ),
        )
        .unwrap();
        Project {
            name,
            dir,
            file,
            group: None,
        }
    }

    /// `new`, then `up`, which must succeed.
    pub fn started(tag: &str, body: &str) -> Project {
        let mut p = Project::new(tag, body);
        let (code, out, err) = p.up();
        assert_eq!(code, 0, "atoll up {}: {out}{err}", p.file.display());
        p
    }

    pub fn atoll(&self, args: &[&str]) -> (i32, String, String) {
        decode(Command::new(ATOLL).args(args).output().unwrap())
    }

    pub fn up(&mut self) -> (i32, String, String) {
        let r = self.atoll(&["up", self.file.to_str().unwrap()]);
        self.group = self
            .plan()
            .and_then(|p| p["group"].as_u64())
            .map(|g| g as u32);
        r
    }

    pub fn plan(&self) -> Option<serde_json::Value> {
        let p = state_dir(&self.name).join("plan.json");
        serde_json::from_slice(&std::fs::read(p).ok()?).ok()
    }

    /// Run a command in an island (`atoll island exec PROJECT/ISLAND -- ...`).
    pub fn exec(&self, island: &str, args: &[&str]) -> (i32, String) {
        let target = format!("{}/{island}", self.name);
        let mut a = vec!["island", "exec", target.as_str(), "--"];
        a.extend_from_slice(args);
        let (c, o, e) = self.atoll(&a);
        (c, format!("{o}{e}"))
    }

    pub fn nc(&self, from: &str, ip: &str, port: u16) -> (i32, String) {
        self.exec(
            from,
            &["/bin/busybox", "nc", "-w", "2", ip, &port.to_string()],
        )
    }

    /// The address of `island` on its link with `peer`.
    pub fn addr(&self, island: &str, peer: &str) -> String {
        let plan = self.plan().expect("plan");
        let idx = |n: &str| {
            plan["islands"]
                .as_array()
                .unwrap()
                .iter()
                .position(|i| i["name"] == n)
                .unwrap() as u64
        };
        let (a, b) = (idx(island), idx(peer));
        for l in plan["links"].as_array().unwrap() {
            if l["a"] == a && l["b"] == b {
                return l["addr_a"].as_str().unwrap().to_string();
            }
            if l["a"] == b && l["b"] == a {
                return l["addr_b"].as_str().unwrap().to_string();
            }
        }
        panic!("no link {island}-{peer}");
    }

    pub fn counter(&self, rule: &str) -> u64 {
        let (_, out, _) = self.atoll(&["status", "--json", &self.name]);
        rule_packets(&serde_json::from_str(&out).unwrap(), rule)
    }
}

/// The packets the guard rule `rule` counted, from `atoll status --json PROJECT` (0 when the
/// rule is not there).
pub fn rule_packets(status: &serde_json::Value, rule: &str) -> u64 {
    status[0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == rule)
        .map(|r| r["packets"].as_u64().unwrap())
        .unwrap_or(0)
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new(ATOLL).args(["down", &self.name]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
        // `down` keeps logs (like data) for the tenant; a test's are removed.
        let _ = std::fs::remove_dir_all(Path::new("/var/log/atoll/islands").join(&self.name));
    }
}

pub fn state_dir(name: &str) -> PathBuf {
    Path::new("/run/atoll/islands").join(name)
}

pub fn listener(port: u16, reply: &str) -> String {
    format!(
        "[\"{BB}\", \"nc\", \"-ll\", \"-p\", \"{port}\", \"-e\", \"{BB}\", \"echo\", \"{reply}\"]"
    )
}

impl Project {
    /// plan.json's entry for `island`.
    pub fn island_plan(&self, island: &str) -> serde_json::Value {
        let plan = self.plan().expect("the project has a plan");
        plan["islands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == island)
            .cloned()
            .unwrap_or_else(|| panic!("no island {island} in the plan"))
    }

    /// The pinned netns of `island`, as plan.json records it.
    pub fn netns(&self, island: &str) -> String {
        self.island_plan(island)["netns"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `atoll --root R VERB ID` on the island's container, as the plan records them.
    pub fn runtime(&self, verb: &str, island: &str) -> (i32, String) {
        let plan = self.plan().expect("the project has a plan");
        let i = self.island_plan(island);
        let (c, o, e) = self.atoll(&[
            "--root",
            plan["runtime_root"].as_str().unwrap(),
            verb,
            i["container_id"].as_str().unwrap(),
        ]);
        (c, format!("{o}{e}"))
    }

    /// `atoll status --json PROJECT`, which must succeed.
    pub fn status(&self) -> serde_json::Value {
        let (code, out, err) = self.atoll(&["status", "--json", &self.name]);
        assert_eq!(code, 0, "status: {out}{err}");
        serde_json::from_str(&out).unwrap()
    }

    /// `atoll doctor PROJECT/ISLAND ARGS --json`: the exit code, the report, and the output for
    /// messages.
    pub fn doctor(&self, island: &str, args: &[&str]) -> (i32, serde_json::Value, String) {
        let who = format!("{}/{island}", self.name);
        let mut a = vec![who.as_str()];
        a.extend_from_slice(args);
        doctor(&a, None)
    }
}

/// `atoll [--root ROOT] doctor ARGS --json`: the exit code, the report, and the output for
/// messages. Output that is not JSON fails the test (doctor answers in JSON even for a fault).
pub fn doctor(args: &[&str], root: Option<&Path>) -> (i32, serde_json::Value, String) {
    let mut c = Command::new(ATOLL);
    if let Some(r) = root {
        c.arg("--root").arg(r);
    }
    let (code, out, err) = decode(c.arg("doctor").args(args).arg("--json").output().unwrap());
    let v = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("doctor {args:?}: exit {code}, not JSON ({e}): {out}{err}"));
    (code, v, format!("{out}{err}"))
}

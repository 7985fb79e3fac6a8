//! `atoll graph` looked at as a person would: the SVG is drawn by headless Chromium, a script in
//! the page measures every island box, label and line (getBoundingClientRect, computed style)
//! and writes its findings into the DOM, and the test asserts on them: every island, link
//! address and rule is there and visible, no two boxes overlap, no label covers another label
//! or a box, and text stays legible. Both layouts (Graphviz, built-in), for a live project of
//! four islands like the demo and for a 50-island file previewed without `up`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::project::Project;
use common::{can_run_also, decode, ATOLL};

const CHROMIUM: &str = "/usr/bin/chromium";
const GRAPHVIZ: &str = "/usr/bin/dot";

fn missing(path: &str, package: &str) -> Option<String> {
    (!Path::new(path).exists()).then(|| format!("{path} is missing (apt-get install {package})"))
}

fn missing_tools() -> Option<String> {
    missing(CHROMIUM, "chromium").or_else(|| missing(GRAPHVIZ, "graphviz"))
}

/// A scratch dir removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = PathBuf::from(format!(
            "/tmp/atoll-tests/graph-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a reader must find in the picture.
struct Expect {
    islands: Vec<String>,
    /// Per link: both ends' addresses.
    links: Vec<(String, String)>,
    /// Per flow: its rule text ("tcp/5432").
    rules: Vec<String>,
}

impl Expect {
    fn from_plan(plan: &serde_json::Value) -> Expect {
        let s = |v: &serde_json::Value| v.as_str().unwrap().to_string();
        Expect {
            islands: plan["islands"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| s(&i["name"]))
                .collect(),
            links: plan["links"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (s(&l["addr_a"]), s(&l["addr_b"])))
                .collect(),
            rules: plan["allows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    let ports: Vec<String> = a["ports"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| {
                            let (lo, hi) = (p[0].as_u64().unwrap(), p[1].as_u64().unwrap());
                            if lo == hi {
                                lo.to_string()
                            } else {
                                format!("{lo}-{hi}")
                            }
                        })
                        .collect();
                    format!("{}/{}", s(&a["proto"]), ports.join(","))
                })
                .collect(),
        }
    }
}

/// The page's measuring script: every island's box, every label (the union of its texts'
/// boxes), every link and flow line, with whether each is shown; written into <pre id=findings>.
const MEASURE: &str = r#"
(function () {
  const svg = document.querySelector('svg');
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const shown = e => {
    const cs = getComputedStyle(e), r = e.getBoundingClientRect();
    return cs.display !== 'none' && cs.visibility !== 'hidden' && parseFloat(cs.opacity) > 0
      && cs.fill !== 'none' && r.width > 0 && r.height > 0;
  };
  const union = rs => [Math.min(...rs.map(r => r[0])), Math.min(...rs.map(r => r[1])),
                       Math.max(...rs.map(r => r[2])), Math.max(...rs.map(r => r[3]))];
  const label = (cls, ts) => ({ cls, text: ts.map(t => t.textContent).join('\n'),
    box: union(ts.map(box)), shown: ts.every(shown),
    min_h: Math.min(...ts.map(t => t.getBoundingClientRect().height)) });
  const out = { svg: box(svg), islands: [], labels: [], lines: [] };
  for (const g of svg.querySelectorAll('g.island')) {
    const ts = [...g.querySelectorAll('text')];
    out.islands.push({ cls: g.getAttribute('class'), box: box(g.querySelector('rect, path, polygon')),
      lines: ts.map(t => t.textContent), shown: ts.every(shown),
      min_h: Math.min(...ts.map(t => t.getBoundingClientRect().height)) });
  }
  for (const g of svg.querySelectorAll('g.link, g.flow, g.link-label, g.flow-label')) {
    const ts = [...g.querySelectorAll('text')];
    if (ts.length) out.labels.push(label(g.getAttribute('class'), ts));
  }
  for (const t of svg.querySelectorAll('g.listed-label text')) out.labels.push(label('listed', [t]));
  for (const g of svg.querySelectorAll('g.link, g.flow')) {
    const l = g.querySelector('path, line'), cs = getComputedStyle(l);
    out.lines.push({ cls: g.getAttribute('class'), len: l.getTotalLength(),
      shown: cs.display !== 'none' && cs.visibility !== 'hidden' && cs.stroke !== 'none' });
  }
  const pre = document.createElement('pre');
  pre.id = 'findings';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"#;

/// Draw `svg_file` in headless Chromium and return what the page measured.
fn measure(svg_file: &Path, scratch: &Path) -> serde_json::Value {
    let svg = std::fs::read_to_string(svg_file).unwrap();
    let svg = &svg[svg.find("<svg").expect("an <svg> element")..];
    let html = scratch.join(format!(
        "{}.html",
        svg_file.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::write(
        &html,
        format!("<!DOCTYPE html><html><body style=\"margin:0\">{svg}<script>{MEASURE}</script></body></html>"),
    )
    .unwrap();
    let out = Command::new("timeout")
        .args([
            "60",
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.join("chromium").display()
        ))
        .args(["--window-size=1600,1200", "--dump-dom"])
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom.find("<pre id=\"findings\">").unwrap_or_else(|| {
        panic!(
            "chromium drew no findings: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    }) + "<pre id=\"findings\">".len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let json = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("findings: {e}: {json}"))
}

type R = [f64; 4];

fn rect(v: &serde_json::Value) -> R {
    let a = v.as_array().unwrap();
    [0, 1, 2, 3].map(|i| a[i].as_f64().unwrap())
}

/// Overlap by more than a pixel either way (text boxes of neighbours may touch).
fn overlap(a: &R, b: &R) -> bool {
    a[0] < b[2] - 1.0 && b[0] < a[2] - 1.0 && a[1] < b[3] - 1.0 && b[1] < a[3] - 1.0
}

/// Whether `text` shows the address `addr` itself (not 10.0.0.1 inside 10.0.0.13).
fn mentions(text: &str, addr: &str) -> bool {
    text.match_indices(addr).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + addr.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_digit() || c == '.')
    })
}

/// Everything a reader must see is there, shown, legible, and nothing covers anything.
fn assert_readable(f: &serde_json::Value, e: &Expect, what: &str) {
    let islands = f["islands"].as_array().unwrap();
    let labels = f["labels"].as_array().unwrap();
    let lines = f["lines"].as_array().unwrap();
    let page = rect(&f["svg"]);
    let inside = |r: &R| {
        r[0] >= page[0] - 1.0
            && r[1] >= page[1] - 1.0
            && r[2] <= page[2] + 1.0
            && r[3] <= page[3] + 1.0
    };
    assert_eq!(islands.len(), e.islands.len(), "{what}: island boxes");
    for name in &e.islands {
        let i = islands
            .iter()
            .find(|i| i["lines"][0] == name.as_str())
            .unwrap_or_else(|| panic!("{what}: no box names island {name}"));
        assert_eq!(i["shown"], true, "{what}: {name}'s text is hidden");
        assert!(inside(&rect(&i["box"])), "{what}: {name} is off the page");
        assert!(
            i["min_h"].as_f64().unwrap() >= 9.0,
            "{what}: {name}'s text is too small: {i}"
        );
    }
    for (n, a) in islands.iter().enumerate() {
        for b in &islands[n + 1..] {
            assert!(
                !overlap(&rect(&a["box"]), &rect(&b["box"])),
                "{what}: boxes overlap: {a} {b}"
            );
        }
    }
    for (x, y) in &e.links {
        let has = |l: &&serde_json::Value| {
            let t = l["text"].as_str().unwrap();
            mentions(t, x) && mentions(t, y)
        };
        assert!(
            labels.iter().any(|l| has(&l)),
            "{what}: no label shows the link {x} - {y}"
        );
    }
    let link_lines = lines
        .iter()
        .filter(|l| l["cls"].as_str().unwrap().contains("link"))
        .count();
    assert_eq!(link_lines, e.links.len(), "{what}: link lines");
    let flow_lines = lines
        .iter()
        .filter(|l| l["cls"].as_str().unwrap().contains("flow"))
        .count();
    assert_eq!(flow_lines, e.rules.len(), "{what}: flow arrows");
    for l in lines {
        assert!(
            l["shown"] == true && l["len"].as_f64().unwrap() > 5.0,
            "{what}: a line is not drawn: {l}"
        );
    }
    for rule in &e.rules {
        let n = labels
            .iter()
            .filter(|l| {
                l["text"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{rule} · "))
            })
            .count();
        let want = e.rules.iter().filter(|r| *r == rule).count();
        assert_eq!(n, want, "{what}: labels of rule {rule}");
    }
    for (n, l) in labels.iter().enumerate() {
        let r = rect(&l["box"]);
        assert_eq!(l["shown"], true, "{what}: label hidden: {l}");
        assert!(inside(&r), "{what}: label off the page: {l}");
        assert!(
            l["min_h"].as_f64().unwrap() >= 9.0,
            "{what}: label too small: {l}"
        );
        for i in islands {
            assert!(
                !overlap(&r, &rect(&i["box"])),
                "{what}: label {} covers island {}",
                l["text"],
                i["lines"][0]
            );
        }
        for o in &labels[n + 1..] {
            assert!(
                !overlap(&r, &rect(&o["box"])),
                "{what}: labels overlap: {} / {}",
                l["text"],
                o["text"]
            );
        }
    }
}

/// `atoll graph ARGS --layout LAYOUT --svg FILE`; returns FILE.
fn graph(args: &[&str], layout: &str, dir: &Path) -> PathBuf {
    let file = dir.join(format!("{layout}.svg"));
    let out = Command::new(ATOLL)
        .arg("graph")
        .args(args)
        .args(["--layout", layout, "--svg"])
        .arg(&file)
        .output()
        .unwrap();
    let (code, o, e) = decode(out);
    assert_eq!(code, 0, "atoll graph {args:?} --layout {layout}: {o}{e}");
    file
}

const BB: &str = "/bin/busybox";

/// The demo's four islands, up for real, with traffic: one allowed connection (its counter
/// shows), one dropped (the drop shows) and one guard alert (the island is marked).
#[test]
fn a_live_project_of_four_islands_reads_at_a_glance_in_both_layouts() {
    let py = "/usr/bin/python3";
    if !can_run_also(missing_tools().or_else(|| missing(py, "python3"))) {
        return;
    }
    let demo = include_str!("../../atoll-islands/src/demo.toml");
    let body: String = demo
        .lines()
        .filter(|l| !l.starts_with("name = \"demo\"") && !l.starts_with("log_drops"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut p = Project::new("demo", &body);
    let (code, o, e) = p.up();
    assert_eq!(code, 0, "up: {o}{e}");
    let plan = p.plan().expect("plan");
    let expect = Expect::from_plan(&plan);
    assert_eq!(expect.islands, ["db", "backup", "web", "intruder"]);
    let addr = |link: usize, end: &str| plan["links"][link][end].as_str().unwrap().to_string();
    // backup -> db on 5432 is allowed; intruder -> db is not.
    let (c, out) = p.exec("backup", &[BB, "nc", "-w", "2", &addr(0, "addr_a"), "5432"]);
    assert!(out.contains("db: 42 rows"), "{c}: {out}");
    let (c, out) = p.exec(
        "intruder",
        &[BB, "nc", "-w", "1", &addr(1, "addr_a"), "5432"],
    );
    assert!(
        !out.contains("rows"),
        "the border guard let intruder through: {c}: {out}"
    );
    // A host netns fd handed in and entered: the guard denies it and logs an alert.
    let setns = "import ctypes; c = ctypes.CDLL(None); print('setns', c.setns(3, 0x40000000))";
    let script = format!(
        "exec 3</proc/self/ns/net; exec {ATOLL} island exec --preserve-fds 1 {}/intruder {py} -c \"{setns}\"",
        p.name
    );
    let (_, o, e) = decode(
        Command::new("/bin/sh")
            .args(["-c", &script])
            .output()
            .unwrap(),
    );
    assert!(o.contains("setns -1"), "{o}{e}");

    for layout in ["graphviz", "builtin"] {
        let file = graph(&[&p.name], layout, &p.dir);
        let f = measure(&file, &p.dir);
        assert_readable(&f, &expect, layout);
        let labels: Vec<&str> = f["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["text"].as_str().unwrap())
            .collect();
        assert!(
            labels
                .iter()
                .any(|l| l.starts_with("tcp/5432 · ") && !l.starts_with("tcp/5432 · 0 ")),
            "{layout}: the allowed connection is not counted: {labels:?}"
        );
        assert!(labels.contains(&"tcp/80 · 0 pkts"), "{layout}: {labels:?}");
        // The refused packets show: on their link where the border guard counts per link, else
        // in the title's count of other drops.
        let svg = std::fs::read_to_string(&file).unwrap();
        let shown_drops: u64 = labels
            .iter()
            .flat_map(|l| l.lines())
            .chain(svg.split(['>', '<']).filter(|t| t.contains("other drops ")))
            .filter_map(|l| {
                l.rsplit_once("drops ")
                    .and_then(|(_, n)| n.trim().parse::<u64>().ok())
            })
            .sum();
        assert!(
            shown_drops >= 1,
            "{layout}: the dropped connection is not shown"
        );
        let marked: Vec<&serde_json::Value> = f["islands"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["cls"].as_str().unwrap().contains("alert"))
            .collect();
        assert_eq!(marked.len(), 1, "{layout}: one island has alerts");
        assert_eq!(marked[0]["lines"][0], "intruder");
        assert!(
            marked[0]["lines"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l.as_str().unwrap().contains("1 guard alert")),
            "{layout}: {}",
            marked[0]
        );
        let web = f["islands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["lines"][0] == "web")
            .unwrap();
        let web_lines: Vec<&str> = web["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert!(
            web_lines.iter().any(|l| l.starts_with("running · uid ")),
            "{web_lines:?}"
        );
        assert!(
            web_lines.contains(&"caps: CAP_NET_BIND_SERVICE"),
            "{web_lines:?}"
        );
        assert!(web_lines.contains(&"guard: enforce"), "{web_lines:?}");
        assert!(web_lines.contains(&"devices: none"), "{web_lines:?}");
    }
}

/// Fifty islands (a chain and cross links, one allow each), drawn from the file without `up`:
/// the graph's model is built from the plan alone, with no live counters.
#[test]
fn fifty_islands_stay_legible_in_both_layouts() {
    if !can_run_also(missing_tools()) {
        return;
    }
    let dir = Scratch::new("fifty");
    let n = 50;
    let mut t = String::from("name = \"graphfifty\"\nsubnet = \"10.100.0.0/16\"\n");
    for i in 0..n {
        t += &format!("[[island]]\nname = \"island{i}\"\ncommand = [\"{BB}\", \"sleep\", \"9\"]\n");
    }
    let mut pairs: Vec<(usize, usize)> = (1..n).map(|i| (i - 1, i)).collect();
    pairs.extend((0..n - 7).step_by(7).map(|i| (i, i + 7)));
    let mut expect = Expect {
        islands: (0..n).map(|i| format!("island{i}")).collect(),
        links: Vec::new(),
        rules: Vec::new(),
    };
    for (k, (a, b)) in pairs.iter().enumerate() {
        let (hi, lo) = (k * 4 / 256, k * 4 % 256);
        t += &format!(
            "[[link]]\nbetween = [\"island{a}\", \"island{b}\"]\nsubnet = \"10.100.{hi}.{lo}/30\"\n"
        );
        t += &format!(
            "[[allow]]\nfrom = \"island{a}\"\nto = \"island{b}\"\nproto = \"udp\"\nports = [{}]\n",
            6000 + k
        );
        expect.links.push((
            format!("10.100.{hi}.{}", lo + 1),
            format!("10.100.{hi}.{}", lo + 2),
        ));
        expect.rules.push(format!("udp/{}", 6000 + k));
    }
    let file = dir.0.join("fifty.toml");
    std::fs::write(&file, t).unwrap();
    for layout in ["graphviz", "builtin"] {
        let svg = graph(&[file.to_str().unwrap()], layout, &dir.0);
        let f = measure(&svg, &dir.0);
        assert_readable(&f, &expect, &format!("50 islands, {layout}"));
    }
}

/// The verb refuses what it cannot draw, by name; `--dot` prints the Graphviz source.
#[test]
fn graph_names_what_it_cannot_draw() {
    let (code, _, err) = decode(
        Command::new(ATOLL)
            .args(["graph", "graph-no-such-project"])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("project \"graph-no-such-project\" is not up"),
        "{err}"
    );
    let demo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../atoll-islands/src/demo.toml"
    );
    let (code, _, err) = decode(
        Command::new(ATOLL)
            .args(["graph", demo])
            .env("ATOLL_GRAPH_LAYOUT", "nope")
            .output()
            .unwrap(),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("ATOLL_GRAPH_LAYOUT=\"nope\": expected auto, graphviz or builtin"),
        "{err}"
    );
    let (code, dot, err) = decode(
        Command::new(ATOLL)
            .args(["graph", demo, "--dot"])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        dot.starts_with("digraph \"demo\" {") && dot.contains("class=\"flow-label\""),
        "{dot}"
    );
}

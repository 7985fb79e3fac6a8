//! The graph as Graphviz DOT, and its SVG from Graphviz's `dot` (layered layout, which places
//! edge labels as nodes of their own, so labels do not overlap each other or the boxes).
//! Elements carry `id`/`class` (island, link, flow) so the SVG can be checked and styled.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{xml_escape, Graph};
use crate::error::{IslandsError, Result};

/// The font both layouts name; Graphviz measures labels with it, so the browser must draw the
/// same one (Debian: fonts-dejavu-core, which Graphviz depends on).
pub const FONT: &str = "DejaVu Sans";

pub const LINK_COLOR: &str = "#4a5568";
pub const FLOW_COLOR: &str = "#2f855a";
pub const ISLAND_FILL: &str = "#ebf4ff";
pub const ISLAND_LINE: &str = "#2b6cb0";
pub const ALERT_FILL: &str = "#fde8e8";
pub const ALERT_LINE: &str = "#c53030";

const LABEL_NODE: &str =
    "shape=plaintext, style=filled, fillcolor=white, fontsize=10, margin=\"0.04,0.02\", width=0, height=0";
const LINK_EDGE: &str = "dir=none, color=\"#4a5568\", penwidth=2";
const FLOW_EDGE: &str = "color=\"#2f855a\", style=dashed";

/// Projects of up to this many islands are drawn left to right, larger ones top to bottom.
const WIDE_MAX: usize = 8;

/// Graphviz's `dot`, if installed: /usr/bin/dot, else the first `dot` on PATH.
pub fn graphviz() -> Option<PathBuf> {
    let fixed = Path::new("/usr/bin/dot");
    if fixed.is_file() {
        return Some(fixed.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("dot"))
        .find(|p| p.is_file())
}

/// A DOT string literal's content (inside double quotes).
fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// HTML-like label lines: `<B>first</B><BR/>rest...`.
fn html_lines(lines: &[String], bold_first: bool, alert_last: bool) -> String {
    let mut out = String::new();
    for (n, l) in lines.iter().enumerate() {
        if n > 0 {
            out.push_str("<BR/>");
        }
        let t = xml_escape(l);
        if n == 0 && bold_first {
            let _ = write!(out, "<B>{t}</B>");
        } else if n + 1 == lines.len() && alert_last {
            let _ = write!(out, "<FONT COLOR=\"{ALERT_LINE}\"><B>{t}</B></FONT>");
        } else {
            out.push_str(&t);
        }
    }
    out
}

/// Title lines: the project, and what could not be observed.
pub(crate) fn title_lines(g: &Graph) -> Vec<String> {
    let mut t = vec![format!("atoll project {}", g.project)];
    if let Some(n) = g.other_drops {
        t[0].push_str(&format!(" · other drops {n}"));
    }
    t.extend(g.notes.iter().cloned());
    t
}

/// The graph in DOT: islands as boxes, each link an undirected line labelled with both ends'
/// addresses and its drops, each allowed flow an arrow labelled with its rule and counter.
pub fn render(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph \"{}\" {{", quoted(&g.project));
    let title = html_lines(&title_lines(g), true, false);
    // Left to right reads best for a few islands; a long chain of many would make a page
    // metres wide, so larger projects grow downwards, the way a page scrolls.
    let rankdir = if g.islands.len() > WIDE_MAX {
        "TB"
    } else {
        "LR"
    };
    let _ = writeln!(
        s,
        "  graph [rankdir={rankdir}, fontname=\"{FONT}\", fontsize=12, labelloc=t, labeljust=l, \
         nodesep=0.35, ranksep=0.6, pad=0.3, id=\"atoll-graph\", class=\"atoll-graph\", \
         label=<{title}>];"
    );
    let _ = writeln!(
        s,
        "  node [shape=box, style=\"rounded,filled\", fontname=\"{FONT}\", fontsize=11, \
         margin=\"0.15,0.08\", penwidth=1.5];"
    );
    let _ = writeln!(s, "  edge [fontname=\"{FONT}\", fontsize=10];");
    for (n, i) in g.islands.iter().enumerate() {
        let mut lines = vec![i.name.clone()];
        lines.extend(i.detail_lines());
        let alert = i.alerts > 0;
        let (fill, line) = if alert {
            (ALERT_FILL, ALERT_LINE)
        } else {
            (ISLAND_FILL, ISLAND_LINE)
        };
        let class = if alert { "island alert" } else { "island" };
        let _ = writeln!(
            s,
            "  i{n} [id=\"island-{n}\", class=\"{class}\", fillcolor=\"{fill}\", \
             color=\"{line}\", label=<{}>];",
            html_lines(&lines, true, alert)
        );
    }
    // Each label is a node of its own on its line (island - label - island): dot never lets
    // nodes overlap, whereas its own edge labels may collide on parallel edges (a link and the
    // flows across it).
    for (n, l) in g.links.iter().enumerate() {
        let _ = writeln!(
            s,
            "  l{n} [id=\"link-label-{n}\", class=\"link-label\", {LABEL_NODE}, \
             fontcolor=\"{LINK_COLOR}\", label=<{}>];",
            html_lines(&l.label_lines(g), false, false)
        );
        let _ = writeln!(
            s,
            "  i{} -> l{n} [id=\"link-{n}\", class=\"link\", {LINK_EDGE}];\n  \
             l{n} -> i{} [id=\"link-{n}-end\", class=\"link-end\", {LINK_EDGE}];",
            l.a, l.b
        );
    }
    for (n, f) in g.flows.iter().enumerate() {
        let _ = writeln!(
            s,
            "  f{n} [id=\"flow-label-{n}\", class=\"flow-label\", {LABEL_NODE}, \
             fontcolor=\"{FLOW_COLOR}\", label=\"{}\", tooltip=\"{}\"];",
            quoted(&f.label()),
            quoted(&f.id)
        );
        // Both segments run the link's way (a to b), so that dot ranks the label beside the
        // link's own; the arrowhead sits at the flow's target end.
        let l = &g.links[f.link];
        let (dir_a, dir_b) = if f.to == l.a {
            ("back", "none")
        } else {
            ("none", "forward")
        };
        let _ = writeln!(
            s,
            "  i{} -> f{n} [id=\"flow-{n}\", class=\"flow\", dir={dir_a}, arrowsize=0.8, {FLOW_EDGE}];\n  \
             f{n} -> i{} [id=\"flow-{n}-end\", class=\"flow-end\", dir={dir_b}, arrowsize=0.8, {FLOW_EDGE}];",
            l.a, l.b
        );
    }
    s.push_str("}\n");
    s
}

/// Lay `dot_text` out with Graphviz (`dot -Tsvg`) and return the SVG document.
pub fn to_svg(dot_bin: &Path, dot_text: &str) -> Result<String> {
    let err = |what: String| IslandsError::Other(format!("{} -Tsvg: {what}", dot_bin.display()));
    let mut child = Command::new(dot_bin)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("spawn: {e}")))?;
    // A writer thread: dot may fill its stdout pipe before it has read all of stdin.
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let input = dot_text.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("wait: {e}")))?;
    writer
        .join()
        .map_err(|_| err("the writer thread panicked".into()))?
        .map_err(|e| err(format!("write the graph: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    String::from_utf8(out.stdout).map_err(|e| err(format!("output is not UTF-8: {e}")))
}

#[cfg(test)]
mod tests {
    use super::super::tests::demo_plan;
    use super::super::{build, Live};
    use super::*;

    #[test]
    fn dot_has_every_island_link_and_flow_with_ids() {
        let mut g = build(&demo_plan(), &Live::default());
        g.islands[3].alerts = 2;
        g.islands[0].name = "d<b>&\"".into();
        let d = render(&g);
        for n in 0..4 {
            assert!(d.contains(&format!("i{n} [id=\"island-{n}\"")), "{d}");
        }
        assert!(d.contains("class=\"island alert\""));
        assert!(
            d.contains("<B>d&lt;b&gt;&amp;&quot;</B>"),
            "names are escaped: {d}"
        );
        assert!(d.contains("i0 -> l0 [id=\"link-0\", class=\"link\", dir=none"));
        assert!(d.contains("l0 -> i1 [id=\"link-0-end\""));
        // backup -> db runs along link db-backup (a = db): the arrowhead is at db, the tail end.
        assert!(d.contains("i0 -> f0 [id=\"flow-0\", class=\"flow\", dir=back"));
        assert!(d.contains("f0 -> i1 [id=\"flow-0-end\", class=\"flow-end\", dir=none"));
        assert!(d.contains("i1 -> f1 [id=\"flow-1\", class=\"flow\", dir=none"));
        assert!(d.contains("f1 -> i2 [id=\"flow-1-end\", class=\"flow-end\", dir=forward"));
        assert!(d.contains("label=\"tcp/5432 · ? pkts\""));
        assert!(d.contains("tooltip=\"allow:backup->db:tcp/5432\""));
        assert_eq!(d.matches("class=\"link\"").count(), 3);
        assert_eq!(d.matches("class=\"flow\"").count(), 2);
    }
}

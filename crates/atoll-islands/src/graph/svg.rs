//! The built-in layout, for hosts without Graphviz: islands on a grid in breadth-first order
//! (linked islands end up near each other), every box in a cell of its own so no two overlap,
//! straight lines between box borders (flows as arrows beside their link), and each label put
//! at the first spot along its line that touches no box and no label placed before it; a label
//! that finds none is listed under the picture instead. Text widths are estimated from the
//! font's advance widths (DejaVu Sans), on the generous side.

use std::collections::VecDeque;
use std::fmt::Write as _;

use super::dot::{
    title_lines, ALERT_FILL, ALERT_LINE, FLOW_COLOR, FONT, ISLAND_FILL, ISLAND_LINE, LINK_COLOR,
};
use super::{xml_escape, Graph};

const PAD: f64 = 20.0;
const GAP_X: f64 = 230.0;
const GAP_Y: f64 = 120.0;
const BOX_FONT: f64 = 11.0;
const NAME_FONT: f64 = 13.0;
const LABEL_FONT: f64 = 10.0;
const LINE_H: f64 = 15.0;
const LABEL_LINE_H: f64 = 13.0;
/// Distance between a link's line and its flows' arrows, and between arrows.
const FLOW_SPACING: f64 = 9.0;

/// A rectangle by its corners.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Rect {
    fn centered(cx: f64, cy: f64, w: f64, h: f64) -> Rect {
        Rect {
            x0: cx - w / 2.0,
            y0: cy - h / 2.0,
            x1: cx + w / 2.0,
            y1: cy + h / 2.0,
        }
    }

    fn grown(&self, m: f64) -> Rect {
        Rect {
            x0: self.x0 - m,
            y0: self.y0 - m,
            x1: self.x1 + m,
            y1: self.y1 + m,
        }
    }

    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }

    fn center(&self) -> (f64, f64) {
        ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)
    }

    fn w(&self) -> f64 {
        self.x1 - self.x0
    }

    fn h(&self) -> f64 {
        self.y1 - self.y0
    }
}

/// Estimated width of `s` in DejaVu Sans at `size` px (advance widths in em, rounded up).
pub fn text_width(s: &str, size: f64, bold: bool) -> f64 {
    let em: f64 = s
        .chars()
        .map(|c| match c {
            'i' | 'l' | 'j' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' => 0.30,
            ' ' | '(' | ')' | '[' | ']' | 'f' | 't' | 'r' | '-' | '/' => 0.42,
            'm' | 'w' | 'M' | 'W' => 0.98,
            'A'..='Z' => 0.78,
            '0'..='9' => 0.64,
            c if c.is_ascii() => 0.64,
            _ => 1.0,
        })
        .sum();
    em * size * if bold { 1.12 } else { 1.0 }
}

/// Where everything goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub width: f64,
    pub height: f64,
    pub boxes: Vec<Rect>,
    /// Per link: its line's two ends.
    pub links: Vec<((f64, f64), (f64, f64))>,
    /// Per flow: its arrow's tail and head.
    pub flows: Vec<((f64, f64), (f64, f64))>,
    /// Per link, then per flow: the label's box, or None when it went to the list below.
    pub link_labels: Vec<Option<Rect>>,
    pub flow_labels: Vec<Option<Rect>>,
    /// Top of the list of labels that found no spot.
    pub list_top: f64,
}

fn box_lines(g: &Graph, n: usize) -> Vec<String> {
    let mut v = vec![g.islands[n].name.clone()];
    v.extend(g.islands[n].detail_lines());
    v
}

fn box_size(lines: &[String]) -> (f64, f64) {
    let w = lines
        .iter()
        .enumerate()
        .map(|(k, l)| {
            if k == 0 {
                text_width(l, NAME_FONT, true)
            } else {
                text_width(l, BOX_FONT, false)
            }
        })
        .fold(0.0, f64::max);
    (w + 24.0, lines.len() as f64 * LINE_H + 14.0)
}

fn label_size(lines: &[String]) -> (f64, f64) {
    let w = lines
        .iter()
        .map(|l| text_width(l, LABEL_FONT, false))
        .fold(0.0, f64::max);
    (w + 8.0, lines.len() as f64 * LABEL_LINE_H + 4.0)
}

/// Breadth-first distances from `start` (usize::MAX: not reached).
fn distances(adj: &[Vec<usize>], start: usize) -> Vec<usize> {
    let mut d = vec![usize::MAX; adj.len()];
    d[start] = 0;
    let mut q = VecDeque::from([start]);
    while let Some(i) = q.pop_front() {
        for &j in &adj[i] {
            if d[j] == usize::MAX {
                d[j] = d[i] + 1;
                q.push_back(j);
            }
        }
    }
    d
}

/// Islands in breadth-first order, component after component, each started from an island at
/// the far end of its component (Cuthill-McKee's idea: linked islands get near positions in the
/// order, and the grid is filled in that order, row by row, every other row reversed, so
/// neighbours in the order are neighbours on the grid).
fn order(g: &Graph) -> Vec<usize> {
    let n = g.islands.len();
    let mut adj = vec![Vec::new(); n];
    for l in &g.links {
        adj[l.a].push(l.b);
        adj[l.b].push(l.a);
    }
    let mut seen = vec![false; n];
    let mut out = Vec::with_capacity(n);
    for first in 0..n {
        if seen[first] {
            continue;
        }
        let from_first = distances(&adj, first);
        let far = (0..n)
            .filter(|&i| from_first[i] != usize::MAX)
            .max_by_key(|&i| (from_first[i], std::cmp::Reverse(i)))
            .unwrap_or(first);
        seen[far] = true;
        let mut q = VecDeque::from([far]);
        while let Some(i) = q.pop_front() {
            out.push(i);
            for &j in &adj[i] {
                if !seen[j] {
                    seen[j] = true;
                    q.push_back(j);
                }
            }
        }
    }
    out
}

/// Where the segment from `p` (inside `r`) towards `q` leaves `r`.
fn exit(r: &Rect, p: (f64, f64), q: (f64, f64)) -> (f64, f64) {
    let (dx, dy) = (q.0 - p.0, q.1 - p.1);
    let mut t = 1.0f64;
    if dx > 0.0 {
        t = t.min((r.x1 - p.0) / dx);
    } else if dx < 0.0 {
        t = t.min((r.x0 - p.0) / dx);
    }
    if dy > 0.0 {
        t = t.min((r.y1 - p.1) / dy);
    } else if dy < 0.0 {
        t = t.min((r.y0 - p.1) / dy);
    }
    let t = t.max(0.0);
    (p.0 + dx * t, p.1 + dy * t)
}

/// The part of the line between the centers of `a` and `b`, shifted by `off` to its left,
/// that lies outside both boxes.
fn between(a: &Rect, b: &Rect, off: f64) -> ((f64, f64), (f64, f64)) {
    let (ca, cb) = (a.center(), b.center());
    let (dx, dy) = (cb.0 - ca.0, cb.1 - ca.1);
    let len = (dx * dx + dy * dy).sqrt().max(1e-9);
    let (nx, ny) = (-dy / len * off, dx / len * off);
    let (pa, pb) = ((ca.0 + nx, ca.1 + ny), (cb.0 + nx, cb.1 + ny));
    (exit(a, pa, pb), exit(b, pb, pa))
}

/// The first spot along `seg` for a `w`×`h` label that stays inside `area` and overlaps no
/// rect of `taken`.
fn place(
    seg: ((f64, f64), (f64, f64)),
    w: f64,
    h: f64,
    area: &Rect,
    taken: &[Rect],
) -> Option<Rect> {
    let ((x0, y0), (x1, y1)) = seg;
    let (dx, dy) = (x1 - x0, y1 - y0);
    let len = (dx * dx + dy * dy).sqrt().max(1e-9);
    let (nx, ny) = (-dy / len, dx / len);
    let step = h / 2.0 + 2.0;
    for s in [0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 4.0, -4.0, 6.0, -6.0] {
        for t in [0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8, 0.1, 0.9] {
            let (cx, cy) = (x0 + dx * t + nx * s * step, y0 + dy * t + ny * s * step);
            let r = Rect::centered(cx, cy, w, h);
            let inside = r.x0 >= area.x0 && r.y0 >= area.y0 && r.x1 <= area.x1 && r.y1 <= area.y1;
            if inside && !taken.iter().any(|o| o.overlaps(&r.grown(3.0))) {
                return Some(r);
            }
        }
    }
    None
}

/// Lay `g` out.
pub fn layout(g: &Graph) -> Layout {
    let n = g.islands.len();
    let sizes: Vec<(f64, f64)> = (0..n).map(|i| box_size(&box_lines(g, i))).collect();
    let cell_w = sizes.iter().map(|s| s.0).fold(0.0, f64::max) + GAP_X;
    let cell_h = sizes.iter().map(|s| s.1).fold(0.0, f64::max) + GAP_Y;
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let rows = n.div_ceil(cols).max(1);
    let top = PAD + title_lines(g).len() as f64 * LINE_H + 10.0;
    let mut boxes = vec![Rect::centered(0.0, 0.0, 0.0, 0.0); n];
    for (slot, &i) in order(g).iter().enumerate() {
        let (r, c) = (slot / cols, slot % cols);
        let c = if r % 2 == 1 { cols - 1 - c } else { c };
        let cx = PAD + cell_w * (c as f64 + 0.5);
        let cy = top + cell_h * (r as f64 + 0.5);
        boxes[i] = Rect::centered(cx, cy, sizes[i].0, sizes[i].1);
    }
    let area = Rect {
        x0: PAD / 2.0,
        y0: top - GAP_Y / 2.0 + 4.0,
        x1: PAD * 1.5 + cell_w * cols as f64,
        y1: top + cell_h * rows as f64,
    };
    let links: Vec<_> = g
        .links
        .iter()
        .map(|l| between(&boxes[l.a], &boxes[l.b], 0.0))
        .collect();
    // The k-th flow of a link runs beside it, alternately on either side.
    let mut per_link = vec![0usize; g.links.len()];
    let flows: Vec<_> = g
        .flows
        .iter()
        .map(|f| {
            let k = per_link[f.link];
            per_link[f.link] += 1;
            let side = if k.is_multiple_of(2) { 1.0 } else { -1.0 };
            let off = side * FLOW_SPACING * (k / 2 + 1) as f64;
            // Offsets are to the left of the link's a→b direction, whichever way the flow goes.
            let l = &g.links[f.link];
            let (pa, pb) = between(&boxes[l.a], &boxes[l.b], off);
            if f.from == l.a {
                (pa, pb)
            } else {
                (pb, pa)
            }
        })
        .collect();
    let mut taken: Vec<Rect> = boxes.clone();
    let mut link_labels = Vec::new();
    for (l, seg) in g.links.iter().zip(&links) {
        let (w, h) = label_size(&l.label_lines(g));
        let r = place(*seg, w, h, &area, &taken);
        taken.extend(r);
        link_labels.push(r);
    }
    let mut flow_labels = Vec::new();
    for (f, seg) in g.flows.iter().zip(&flows) {
        let (w, h) = label_size(&[f.label()]);
        let r = place(*seg, w, h, &area, &taken);
        taken.extend(r);
        flow_labels.push(r);
    }
    let listed = link_labels.iter().filter(|r| r.is_none()).count()
        + flow_labels.iter().filter(|r| r.is_none()).count();
    let list_top = area.y1 + 10.0;
    let list_w = listed_lines(g, &link_labels, &flow_labels)
        .iter()
        .map(|l| text_width(l, LABEL_FONT, false))
        .fold(0.0, f64::max);
    let title_w = title_lines(g)
        .iter()
        .map(|l| text_width(l, 12.0, true))
        .fold(0.0, f64::max);
    Layout {
        width: (area.x1 + PAD / 2.0).max(PAD * 2.0 + list_w.max(title_w)),
        height: list_top + listed as f64 * LABEL_LINE_H + PAD,
        boxes,
        links,
        flows,
        link_labels,
        flow_labels,
        list_top,
    }
}

/// The labels that found no spot, as lines of the list under the picture.
fn listed_lines(g: &Graph, links: &[Option<Rect>], flows: &[Option<Rect>]) -> Vec<String> {
    let mut out = Vec::new();
    for (l, r) in g.links.iter().zip(links) {
        if r.is_none() {
            out.push(format!("link {}", l.label_lines(g).join(", ")));
        }
    }
    for (f, r) in g.flows.iter().zip(flows) {
        if r.is_none() {
            out.push(format!(
                "flow {} → {}: {}",
                g.islands[f.from].name,
                g.islands[f.to].name,
                f.label()
            ));
        }
    }
    out
}

fn text_block(s: &mut String, r: &Rect, lines: &[String], size: f64, line_h: f64, color: &str) {
    let (cx, _) = r.center();
    let first = r.y0 + (r.h() - lines.len() as f64 * line_h) / 2.0 + line_h * 0.78;
    for (k, l) in lines.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"{size}\" fill=\"{color}\" text-anchor=\"middle\">{}</text>",
            first + k as f64 * line_h,
            xml_escape(l)
        );
    }
}

/// The SVG document of `g` in the built-in layout.
pub fn render(g: &Graph) -> String {
    let lay = layout(g);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"{FONT}, sans-serif\" id=\"atoll-graph\" class=\"atoll-graph\">",
        w = lay.width,
        h = lay.height
    );
    let _ = writeln!(
        s,
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{FLOW_COLOR}\"/></marker></defs>"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(s, "<title>atoll project {}</title>", xml_escape(&g.project));
    for (k, l) in title_lines(g).iter().enumerate() {
        let weight = if k == 0 { "bold" } else { "normal" };
        let _ = writeln!(
            s,
            "<text class=\"title\" x=\"{PAD}\" y=\"{:.1}\" font-size=\"12\" font-weight=\"{weight}\">{}</text>",
            PAD + LINE_H * (k as f64 + 0.8),
            xml_escape(l)
        );
    }
    for (n, ((a, b), l)) in lay.links.iter().zip(&g.links).enumerate() {
        let _ = writeln!(
            s,
            "<g id=\"link-{n}\" class=\"link\"><title>{} ↔ {} ({})</title><line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{LINK_COLOR}\" stroke-width=\"2\"/></g>",
            xml_escape(&g.islands[l.a].name),
            xml_escape(&g.islands[l.b].name),
            l.subnet,
            a.0,
            a.1,
            b.0,
            b.1
        );
    }
    for (n, ((a, b), f)) in lay.flows.iter().zip(&g.flows).enumerate() {
        let _ = writeln!(
            s,
            "<g id=\"flow-{n}\" class=\"flow\"><title>{}</title><line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{FLOW_COLOR}\" stroke-width=\"1.5\" stroke-dasharray=\"5,3\" marker-end=\"url(#arrow)\"/></g>",
            xml_escape(&f.id),
            a.0,
            a.1,
            b.0,
            b.1
        );
    }
    for (n, (r, i)) in lay.boxes.iter().zip(&g.islands).enumerate() {
        let alert = i.alerts > 0;
        let (fill, line, class) = if alert {
            (ALERT_FILL, ALERT_LINE, "island alert")
        } else {
            (ISLAND_FILL, ISLAND_LINE, "island")
        };
        let _ = writeln!(
            s,
            "<g id=\"island-{n}\" class=\"{class}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"6\" fill=\"{fill}\" stroke=\"{line}\" stroke-width=\"1.5\"/>",
            r.x0,
            r.y0,
            r.w(),
            r.h()
        );
        let lines = box_lines(g, n);
        let (cx, _) = r.center();
        for (k, l) in lines.iter().enumerate() {
            let y = r.y0 + 7.0 + LINE_H * (k as f64 + 0.8);
            let (size, weight, color) = if k == 0 {
                (NAME_FONT, "bold", "#1a202c")
            } else if alert && k + 1 == lines.len() {
                (BOX_FONT, "bold", ALERT_LINE)
            } else {
                (BOX_FONT, "normal", "#1a202c")
            };
            let _ = writeln!(
                s,
                "<text x=\"{cx:.1}\" y=\"{y:.1}\" font-size=\"{size}\" font-weight=\"{weight}\" fill=\"{color}\" text-anchor=\"middle\">{}</text>",
                xml_escape(l)
            );
        }
        s.push_str("</g>\n");
    }
    // Labels last, over every line.
    for (n, (r, l)) in lay.link_labels.iter().zip(&g.links).enumerate() {
        if let Some(r) = r {
            label(&mut s, "link-label", n, r, &l.label_lines(g), LINK_COLOR);
        }
    }
    for (n, (r, f)) in lay.flow_labels.iter().zip(&g.flows).enumerate() {
        if let Some(r) = r {
            label(&mut s, "flow-label", n, r, &[f.label()], FLOW_COLOR);
        }
    }
    let listed = listed_lines(g, &lay.link_labels, &lay.flow_labels);
    if !listed.is_empty() {
        s.push_str("<g class=\"listed-label\">\n");
        for (k, l) in listed.iter().enumerate() {
            let _ = writeln!(
                s,
                "<text x=\"{PAD}\" y=\"{:.1}\" font-size=\"{LABEL_FONT}\" fill=\"{LINK_COLOR}\">{}</text>",
                lay.list_top + LABEL_LINE_H * (k as f64 + 0.8),
                xml_escape(l)
            );
        }
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}

fn label(s: &mut String, class: &str, n: usize, r: &Rect, lines: &[String], color: &str) {
    let _ = writeln!(
        s,
        "<g class=\"{class}\" data-for=\"{n}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"white\" fill-opacity=\"0.9\"/>",
        r.x0,
        r.y0,
        r.w(),
        r.h()
    );
    text_block(s, r, lines, LABEL_FONT, LABEL_LINE_H, color);
    s.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::super::tests::{demo_plan, generated_plan};
    use super::super::{build, Live};
    use super::*;

    fn check(g: &Graph) -> Layout {
        let lay = layout(g);
        for (i, a) in lay.boxes.iter().enumerate() {
            for (j, b) in lay.boxes.iter().enumerate().skip(i + 1) {
                assert!(!a.overlaps(b), "boxes {i} and {j} overlap: {a:?} {b:?}");
            }
        }
        let labels: Vec<Rect> = lay
            .link_labels
            .iter()
            .chain(&lay.flow_labels)
            .flatten()
            .copied()
            .collect();
        for (i, a) in labels.iter().enumerate() {
            for b in lay.boxes.iter().chain(&labels[i + 1..]) {
                assert!(!a.overlaps(b), "label {a:?} overlaps {b:?}");
            }
            assert!(a.x0 >= 0.0 && a.y0 >= 0.0 && a.x1 <= lay.width && a.y1 <= lay.height);
        }
        lay
    }

    #[test]
    fn demo_boxes_and_labels_do_not_overlap_and_every_label_has_a_spot() {
        let g = build(&demo_plan(), &Live::default());
        let lay = check(&g);
        assert!(lay
            .link_labels
            .iter()
            .chain(&lay.flow_labels)
            .all(Option::is_some));
        let svg = render(&g);
        assert_eq!(svg.matches("class=\"island\"").count(), 4);
        assert_eq!(svg.matches("class=\"link\"").count(), 3);
        assert_eq!(svg.matches("class=\"flow\"").count(), 2);
        assert!(svg.contains(">tcp/5432 · ? pkts</text>"));
        assert!(!svg.contains("listed-label"));
    }

    #[test]
    fn fifty_islands_stay_apart() {
        let g = build(&generated_plan(50), &Live::default());
        let lay = check(&g);
        let placed = lay
            .link_labels
            .iter()
            .chain(&lay.flow_labels)
            .flatten()
            .count();
        assert!(
            placed * 10 >= (g.links.len() + g.flows.len()) * 9,
            "most labels sit on their line"
        );
    }

    #[test]
    fn arrows_point_from_the_client_to_the_server() {
        let g = build(&demo_plan(), &Live::default());
        let lay = layout(&g);
        let f = &g.flows[0];
        let ((tx, ty), (hx, hy)) = lay.flows[0];
        let from = lay.boxes[f.from].center();
        let to = lay.boxes[f.to].center();
        let d = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).hypot(a.1 - b.1);
        assert!(d((tx, ty), from) < d((tx, ty), to));
        assert!(d((hx, hy), to) < d((hx, hy), from));
    }

    #[test]
    fn the_exit_point_is_on_the_border() {
        let r = Rect::centered(0.0, 0.0, 20.0, 10.0);
        assert_eq!(exit(&r, (0.0, 0.0), (100.0, 0.0)), (10.0, 0.0));
        assert_eq!(exit(&r, (0.0, 0.0), (0.0, -100.0)), (0.0, -5.0));
    }
}

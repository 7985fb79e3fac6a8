//! `atoll graph [PROJECT|FILE] [--svg FILE | --dot] [--layout ..]`: the project as a picture.
//! SVG on stdout by default (pipe it or give --svg); laid out by Graphviz when it is installed,
//! else by the built-in grid (atoll_islands::graph).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use atoll_islands::file;
use atoll_islands::graph::{self, dot, svg};
use atoll_islands::plan::{self, Plan, STATE_ROOT};

use crate::cli::{Cli, GraphArgs, GraphLayout};

pub fn graph(cli: &Cli, a: &GraphArgs) -> Result<i32> {
    let g = match a.project.as_deref() {
        Some(w) if w.ends_with(".toml") || Path::new(w).is_file() => {
            let f = file::load(Path::new(w))?;
            let others = plan::existing(Path::new(STATE_ROOT));
            let p = plan::build(&f, Path::new(STATE_ROOT), &cli.root, &others)?;
            graph::offline(&p)
        }
        w => {
            let p = project(w)?;
            graph::build(&p, &graph::observe(&p))
        }
    };
    let dot_text = graph::dot::render(&g);
    let out = if a.dot {
        dot_text
    } else {
        match layout(a.layout)? {
            Some(bin) => dot::to_svg(&bin, &dot_text)?,
            None => svg::render(&g),
        }
    };
    match &a.svg {
        Some(path) => {
            std::fs::write(path, out).with_context(|| format!("write {}", path.display()))?
        }
        None => print!("{out}"),
    }
    Ok(0)
}

/// The plan of project `name`, or of the only project that is up.
fn project(name: Option<&str>) -> Result<Plan> {
    let mut up = plan::existing(Path::new(STATE_ROOT));
    if let Some(n) = name {
        return up
            .into_iter()
            .find(|p| p.name == n)
            .with_context(|| format!("project {n:?} is not up (see `atoll status`)"));
    }
    match up.len() {
        0 => bail!("no project is up: name an islands file to preview it"),
        1 => Ok(up.pop().expect("one plan")),
        _ => bail!(
            "several projects are up ({}): name one",
            up.iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Graphviz's `dot` to lay out with, or None for the built-in layout. The flag wins; without
/// it, ATOLL_GRAPH_LAYOUT; auto takes Graphviz when it is installed.
fn layout(flag: GraphLayout) -> Result<Option<PathBuf>> {
    let choice = match (flag, std::env::var("ATOLL_GRAPH_LAYOUT").ok().as_deref()) {
        (GraphLayout::Auto, Some("graphviz")) => GraphLayout::Graphviz,
        (GraphLayout::Auto, Some("builtin")) => GraphLayout::Builtin,
        (GraphLayout::Auto, None | Some("auto" | "")) => GraphLayout::Auto,
        (GraphLayout::Auto, Some(other)) => {
            bail!("ATOLL_GRAPH_LAYOUT={other:?}: expected auto, graphviz or builtin")
        }
        (f, _) => f,
    };
    match choice {
        GraphLayout::Builtin => Ok(None),
        GraphLayout::Auto => Ok(dot::graphviz()),
        GraphLayout::Graphviz => dot::graphviz().map(Some).context(
            "--layout graphviz: Graphviz's `dot` is not installed (apt-get install graphviz)",
        ),
    }
}

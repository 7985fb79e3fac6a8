//! The islands file as TOML: the raw shape serde reads (unknown fields refused), and where an
//! error is, as file, line, column and the dotted path of its field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::FileError;

/// The file's text as TOML, or the first syntax or type error.
pub(super) fn read(cx: &Cx<'_>) -> Result<RawFile, FileError> {
    toml::from_str(cx.text).map_err(|e| cx.toml_error(&e))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) name: Option<Spanned<String>>,
    pub(super) subnet: Option<Spanned<String>>,
    pub(super) data_root: Option<Spanned<PathBuf>>,
    pub(super) log_drops: Option<bool>,
    pub(super) guard: Option<Spanned<String>>,
    pub(super) memory: Option<Spanned<toml::Value>>,
    pub(super) pids: Option<Spanned<toml::Value>>,
    pub(super) cpu: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) island: Vec<RawIsland>,
    #[serde(default)]
    pub(super) link: Vec<RawLink>,
    #[serde(default)]
    pub(super) allow: Vec<RawAllow>,
    #[serde(default)]
    pub(super) share: Vec<RawShare>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIsland {
    pub(super) name: Spanned<String>,
    /// Optional where `image` gives one (its Entrypoint and Cmd).
    pub(super) command: Option<Spanned<Vec<String>>>,
    pub(super) image: Option<Spanned<String>>,
    pub(super) image_root: Option<Spanned<String>>,
    pub(super) image_tls_verify: Option<Spanned<bool>>,
    pub(super) user: Option<Spanned<u32>>,
    pub(super) group: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) caps: Vec<Spanned<String>>,
    pub(super) hostname: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) data: Option<Spanned<String>>,
    pub(super) cwd: Option<Spanned<String>>,
    pub(super) memory: Option<Spanned<toml::Value>>,
    pub(super) pids: Option<Spanned<toml::Value>>,
    pub(super) cpu: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) binds: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) tmpfs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) writable: Vec<Spanned<String>>,
    pub(super) guard: Option<Spanned<String>>,
    pub(super) identity: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) devices: Vec<Spanned<String>>,
    pub(super) shared: Option<Spanned<bool>>,
}

/// `[[share]]`: a host directory mounted into several islands (file/share.rs checks it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShare {
    pub(super) name: Spanned<String>,
    pub(super) host: Spanned<String>,
    pub(super) owner: Spanned<i64>,
    pub(super) group: Option<Spanned<i64>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) islands: Spanned<Vec<Spanned<String>>>,
    pub(super) identity: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLink {
    pub(super) between: Spanned<Vec<Spanned<String>>>,
    pub(super) subnet: Option<Spanned<String>>,
    pub(super) addresses: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAllow {
    pub(super) from: Spanned<String>,
    pub(super) to: Spanned<String>,
    pub(super) proto: Spanned<String>,
    #[serde(default)]
    pub(super) ports: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) both: bool,
}

pub(super) struct Cx<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Cx<'_> {
    pub(super) fn err(
        &self,
        span: std::ops::Range<usize>,
        field: impl Into<String>,
        msg: String,
    ) -> FileError {
        let (line, col) = if span.is_empty() && span.start == 0 {
            (0, 0)
        } else {
            line_col(self.text, span.start)
        };
        FileError {
            path: self.path.to_path_buf(),
            line,
            col,
            field: field.into(),
            msg,
        }
    }
}

impl Cx<'_> {
    /// A TOML syntax or type error, on one line, with the field it is about when the text
    /// parses far enough to tell (a type error such as `user = -1` or `env = { A = 1 }`).
    pub(super) fn toml_error(&self, e: &toml::de::Error) -> FileError {
        let span = e.span().unwrap_or(0..0);
        let field = e
            .span()
            .and_then(|s| field_at(self.text, s.start))
            .unwrap_or_default();
        let msg = e.message().trim().replace('\n', "; ");
        let msg = if !msg.is_empty() {
            msg
        } else if span.start >= self.text.trim_end().len() {
            "the file ends where a value or a closing bracket is expected (cut short?)".into()
        } else {
            "a value or a closing bracket is expected here".into()
        };
        let mut err = self.err(span, field, msg);
        if e.span().is_some() && err.line == 0 {
            (err.line, err.col) = (1, 1);
        }
        err
    }
}

/// The dotted path of the key whose value holds byte `offset` (`island[0].env.A`), found by
/// parsing the text again with spans. None where the text does not parse as TOML.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    table_field(doc.as_table(), offset, "")
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn table_field(t: &toml_edit::Table, offset: usize, prefix: &str) -> Option<String> {
    t.iter()
        .find_map(|(k, item)| item_field(item, offset, &join(prefix, k)))
}

fn item_field(item: &toml_edit::Item, offset: usize, path: &str) -> Option<String> {
    match item {
        toml_edit::Item::Value(v) => value_field(v, offset, path),
        toml_edit::Item::Table(t) => table_field(t, offset, path),
        toml_edit::Item::ArrayOfTables(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, t)| table_field(t, offset, &format!("{path}[{i}]"))),
        toml_edit::Item::None => None,
    }
}

fn value_field(v: &toml_edit::Value, offset: usize, path: &str) -> Option<String> {
    let span = v.span()?;
    if !(span.start <= offset && offset < span.end.max(span.start + 1)) {
        return None;
    }
    let inner = match v {
        toml_edit::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| value_field(x, offset, &format!("{path}[{i}]"))),
        toml_edit::Value::InlineTable(t) => t
            .iter()
            .find_map(|(k, x)| value_field(x, offset, &join(path, k))),
        _ => None,
    };
    Some(inner.unwrap_or_else(|| path.to_string()))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

pub(super) type RawLimit = Option<Spanned<toml::Value>>;

//! Logging setup and the error line: text on stderr, and with --log the same line in the file,
//! as JSON with --log-format json ({"level","msg","time"}: what containerd's shim reads back).

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::cli::{Cli, LogFormat};
use crate::flags::LogPath;

/// Where the error line goes besides stderr: the `--log` file, opened once by [`init`].
pub struct Sink {
    file: Option<Arc<Mutex<File>>>,
    format: LogFormat,
}

/// Install the tracing subscriber. A `--log` file that cannot be opened is an error, as in runc:
/// a client that asked for one reads its errors from there and would otherwise see nothing.
pub fn init(cli: &Cli) -> Result<Sink> {
    // The guard's daemons log their life (tenants taken back, restarts) to their own log.
    let daemon = matches!(
        cli.verb,
        crate::cli::Verb::Guard(
            crate::cli::GuardVerb::Serve { .. } | crate::cli::GuardVerb::Worker { .. }
        )
    );
    let level = if cli.debug {
        tracing::Level::DEBUG
    } else if daemon {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    let Some(LogPath::File(path)) = &cli.log else {
        builder.with_writer(std::io::stderr).init();
        return Ok(Sink {
            file: None,
            format: cli.log_format,
        });
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("--log: open {}", path.display()))?;
    let file = Arc::new(Mutex::new(file));
    let writer = SharedFile(file.clone());
    if cli.log_format == LogFormat::Json {
        builder.json().with_writer(writer).init();
    } else {
        builder.with_writer(writer).init();
    }
    Ok(Sink {
        file: Some(file),
        format: cli.log_format,
    })
}

/// The log file shared by the subscriber and the error line.
#[derive(Clone)]
struct SharedFile(Arc<Mutex<File>>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SharedFile {
    type Writer = SharedWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        SharedWriter(&self.0)
    }
}

struct SharedWriter<'a>(&'a Mutex<File>);

impl Write for SharedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A poisoned lock only means another thread panicked mid-line: keep logging.
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The error line: always on stderr, and in the `--log` file when there is one.
pub fn error(sink: &Sink, e: &anyhow::Error) {
    let msg = format!("{e:#}");
    eprintln!("atoll: {msg}");
    let Some(file) = &sink.file else {
        return;
    };
    let time = atoll_runtime::time::now_rfc3339();
    let line = match sink.format {
        LogFormat::Json => {
            serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
        }
        LogFormat::Text => format!("time=\"{time}\" level=error msg={msg:?}"),
    };
    let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
    // Already said on stderr; a full disk under the log file cannot be reported anywhere else.
    let _already_on_stderr = writeln!(f, "{line}");
}

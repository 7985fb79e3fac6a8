//! Logging setup and the error line: text on stderr, and with --log the same line in the file,
//! as JSON with --log-format json ({"level","msg","time"}: what containerd's shim reads back).

use std::io::Write;

use crate::cli::{Cli, LogFormat};

pub fn init(cli: &Cli) {
    let level = if cli.debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    if let Some(path) = &cli.log {
        if let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let file = std::sync::Mutex::new(file);
            if cli.log_format == LogFormat::Json {
                builder.json().with_writer(file).init();
            } else {
                builder.with_writer(file).init();
            }
            return;
        }
    }
    builder.with_writer(std::io::stderr).init();
}

pub fn error(cli: &Cli, e: &anyhow::Error) {
    let msg = format!("{e:#}");
    eprintln!("atoll: {msg}");
    if let Some(path) = &cli.log {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let line = match cli.log_format {
                LogFormat::Json => serde_json::json!({"level": "error", "msg": msg, "time": atoll_runtime::time::now_rfc3339()}).to_string(),
                LogFormat::Text => format!("time=\"{}\" level=error msg={msg:?}", atoll_runtime::time::now_rfc3339()),
            };
            let _ = writeln!(f, "{line}");
        }
    }
}

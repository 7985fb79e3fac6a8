//! `atoll images` and `atoll images prune`: the image store as the atoll-image helper reads
//! it, with the islands of the projects that are up that use each image.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};
use atoll_islands::image::{run_helper, store_root, Pulled};
use atoll_islands::plan::{self, STATE_ROOT};

pub fn images(prune: bool, json: bool) -> Result<i32> {
    let atoll = std::env::current_exe().context("find the atoll binary (/proc/self/exe)")?;
    let store = store_root();
    let store = store.to_string_lossy();
    // image id -> "project/island" of every island that is up on it
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in plan::existing(std::path::Path::new(STATE_ROOT)) {
        for i in &p.islands {
            if let Some(id) = i.spec.image.as_ref().and_then(|m| m.pulled.as_ref()) {
                users
                    .entry(id.id.clone())
                    .or_default()
                    .push(format!("{}/{}", p.name, i.spec.name));
            }
        }
    }
    if prune {
        let mut args = vec!["prune", &*store];
        args.extend(users.keys().map(String::as_str));
        let out = run_helper(&atoll, &args).map_err(|e| anyhow!("images prune: {e}"))?;
        let removed: Vec<String> = serde_json::from_slice(&out).context("the helper's answer")?;
        if json {
            println!("{}", serde_json::json!({ "removed": removed }));
        } else {
            println!("removed {} image(s)", removed.len());
            for id in removed {
                println!("  {}", &id[..id.len().min(12)]);
            }
        }
        return Ok(0);
    }
    let out = run_helper(&atoll, &["list", &store]).map_err(|e| anyhow!("images: {e}"))?;
    let list: Vec<Pulled> = serde_json::from_slice(&out).context("the helper's answer")?;
    if json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|i| {
                serde_json::json!({
                    "id": i.id, "references": i.references, "size": i.size,
                    "layers": i.layers, "islands": users.get(&i.id).cloned().unwrap_or_default(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!("{:<12}  {:>9}  {:<40}  ISLANDS", "ID", "SIZE", "REFERENCE");
    for i in &list {
        let who = users.get(&i.id).map(|v| v.join(" ")).unwrap_or_default();
        println!(
            "{:<12}  {:>9}  {:<40}  {}",
            &i.id[..i.id.len().min(12)],
            human(i.size),
            i.references.join(" "),
            if who.is_empty() { "-".into() } else { who }
        );
    }
    Ok(0)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

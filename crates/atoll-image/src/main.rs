//! atoll-image: the image half of `atoll up`, `atoll images` and `atoll images prune`, in a
//! binary of its own: its async stack (tokio, skopeo's proxy) never maps into `atoll run`.
//! Answers are JSON on stdout; errors are one line on stderr and exit status 1.
//!
//!     atoll-image pull STORE REFERENCE       -> the image (store::Image)
//!     atoll-image list STORE                 -> every image in the store
//!     atoll-image prune STORE [KEEP_ID...]   -> ids removed

mod pull;
mod store;
mod unpack;
mod user;

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Result};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<()> {
    let out = match args {
        [verb, flags @ .., store, reference] if verb == "pull" => {
            let tls_verify = match flags {
                [] => true,
                [f] if f == "--tls-verify=false" => false,
                _ => bail!("pull takes one flag, --tls-verify=false; got {flags:?}"),
            };
            let s = store::Store::open(Path::new(store))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let img = rt.block_on(pull::pull(&s, reference, tls_verify))?;
            s.save(&img)?;
            serde_json::to_string(&img)?
        }
        [verb, store] if verb == "list" => {
            serde_json::to_string(&store::Store::open(Path::new(store))?.images()?)?
        }
        [verb, store, keep @ ..] if verb == "prune" => {
            let keep: BTreeSet<String> = keep.iter().cloned().collect();
            serde_json::to_string(&store::Store::open(Path::new(store))?.prune(&keep)?)?
        }
        _ => {
            bail!("usage: atoll-image pull [--tls-verify=false] STORE REFERENCE | list STORE | prune STORE [KEEP_ID...]")
        }
    };
    println!("{out}");
    Ok(())
}

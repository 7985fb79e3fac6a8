//! The image store: layers unpacked once, named by their diff_id (the sha256 of the layer's
//! uncompressed tar, the same whichever transport or compression brought it), and one record
//! per image naming its layers and the config defaults islands take from it.
//!
//!     <store>/lock                    flock(2): one pull or prune at a time
//!     <store>/layers/<hex>/           a layer, in overlayfs' lower-layer form
//!     <store>/layers/<hex>.size       its unpacked bytes
//!     <store>/images/<hex>.json       an image (by its config digest): an [`Image`]
//!     <store>/tmp/                    unpacks in progress; a layer appears by rename(2) only
//!     <store>/refs/                   atoll's cache: an unchanged archive's image, unread

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What an island takes from an image: its layers and the config's defaults. This is the
/// helper's answer to `pull` (JSON on stdout) and the record kept in the store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Image {
    /// The config's digest, hex: the image's identity.
    pub id: String,
    /// References it was pulled by.
    pub references: Vec<String>,
    /// Layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    /// Unpacked bytes of all its layers.
    pub size: u64,
    /// Entrypoint followed by Cmd.
    pub command: Vec<String>,
    pub env: Vec<String>,
    /// The config's User, resolved in the image's own /etc/passwd and /etc/group.
    pub user: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub cwd: Option<String>,
    pub stop_signal: Option<String>,
    pub exposed_ports: Vec<String>,
}

pub struct Store {
    pub root: PathBuf,
    _lock: File,
}

impl Store {
    /// Open (making it where missing) and lock the store.
    pub fn open(root: &Path) -> Result<Store> {
        for d in ["layers", "images", "tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).with_context(|| format!("mkdir {}", p.display()))?;
        }
        let lock = root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .with_context(|| format!("open {}", lock.display()))?;
        rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("flock {}", lock.display()))?;
        let store = Store {
            root: root.to_path_buf(),
            _lock: f,
        };
        // Whatever an interrupted pull left half-made.
        let tmp = store.root.join("tmp");
        for e in std::fs::read_dir(&tmp)?.flatten() {
            remove_tree(&e.path())?;
        }
        Ok(store)
    }

    pub fn layer_dir(&self, hex: &str) -> PathBuf {
        self.root.join("layers").join(hex)
    }

    pub fn layer_size(&self, hex: &str) -> u64 {
        std::fs::read_to_string(self.root.join("layers").join(format!("{hex}.size")))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn tmp_dir(&self, what: &str) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{what}-{}", std::process::id()))
    }

    /// Make a finished unpack the layer `hex`, by one rename: a layer dir is whole or absent.
    pub fn commit_layer(&self, tmp: &Path, hex: &str, size: u64) -> Result<PathBuf> {
        let size_file = self.root.join("layers").join(format!("{hex}.size"));
        std::fs::write(&size_file, size.to_string())
            .with_context(|| format!("write {}", size_file.display()))?;
        let dir = self.layer_dir(hex);
        std::fs::rename(tmp, &dir)
            .with_context(|| format!("rename {} to {}", tmp.display(), dir.display()))?;
        Ok(dir)
    }

    pub fn save(&self, image: &Image) -> Result<()> {
        let p = self.root.join("images").join(format!("{}.json", image.id));
        let mut img = image.clone();
        if let Ok(old) = self.load(&image.id) {
            for r in old.references {
                if !img.references.contains(&r) {
                    img.references.push(r);
                }
            }
        }
        let tmp = self.root.join("tmp").join(format!("{}.json", image.id));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&img)?)
            .with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("rename to {}", p.display()))
    }

    pub fn load(&self, id: &str) -> Result<Image> {
        let p = self.root.join("images").join(format!("{id}.json"));
        let data = std::fs::read(&p).with_context(|| format!("read {}", p.display()))?;
        serde_json::from_slice(&data)
            .with_context(|| format!("{}: not an image record", p.display()))
    }

    pub fn images(&self) -> Result<Vec<Image>> {
        let mut v = Vec::new();
        let dir = self.root.join("images");
        for e in std::fs::read_dir(&dir)
            .with_context(|| format!("read {}", dir.display()))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                v.push(self.load(id)?);
            }
        }
        v.sort_by(|a, b| a.references.cmp(&b.references));
        Ok(v)
    }

    /// Remove every image whose id is not in `keep`, then every layer no image left names.
    /// Returns the ids removed.
    pub fn prune(&self, keep: &BTreeSet<String>) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let mut used = BTreeSet::new();
        for img in self.images()? {
            if keep.contains(&img.id) {
                used.extend(img.layers.iter().cloned());
                continue;
            }
            let p = self.root.join("images").join(format!("{}.json", img.id));
            std::fs::remove_file(&p).with_context(|| format!("remove {}", p.display()))?;
            removed.push(img.id);
        }
        // atoll's cache of which file-based reference is which image (crates/atoll-islands,
        // image.rs): a cache, dropped whole.
        remove_tree(&self.root.join("refs"))?;
        let layers = self.root.join("layers");
        for e in std::fs::read_dir(&layers)?.flatten() {
            let p = e.path();
            if p.extension().is_some() || used.contains(&p) {
                continue;
            }
            remove_tree(&p)?;
            let _ = std::fs::remove_file(p.with_extension("size"));
        }
        Ok(removed)
    }
}

/// remove_dir_all(3): it does not follow symlinks, and the store's layers are never mounted
/// here (islands mount idmapped clones of them elsewhere).
fn remove_tree(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(p).with_context(|| format!("remove {}", p.display()))
        }
        Ok(_) => std::fs::remove_file(p).with_context(|| format!("remove {}", p.display())),
        Err(_) => Ok(()),
    }
}

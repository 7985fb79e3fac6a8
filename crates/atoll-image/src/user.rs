//! The config's User (`name`, `uid`, `name:group`, `uid:gid`) as numbers, looked up in the
//! image's own /etc/passwd and /etc/group: the topmost layer that has the file, or hides it
//! (an overlay whiteout, or an opaque /etc), decides, as the island will see it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

pub fn resolve(user: &str, layers: &[PathBuf]) -> Result<(u32, u32)> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_etc(layers, "passwd");
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => {
            let gid = entries(&passwd)
                .find(|f| f.get(2).and_then(|s| s.parse::<u32>().ok()) == Some(n))
                .and_then(|f| f.get(3).and_then(|s| s.parse().ok()));
            (n, gid.unwrap_or(0))
        }
        Err(_) => match entries(&passwd).find(|f| f[0] == u) {
            Some(f) => match (
                f.get(2).and_then(|s| s.parse().ok()),
                f.get(3).and_then(|s| s.parse().ok()),
            ) {
                (Some(uid), Some(gid)) => (uid, gid),
                _ => bail!("{user:?}: its /etc/passwd line is malformed"),
            },
            None => bail!("{user:?}: no such user in the image's /etc/passwd"),
        },
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = read_etc(layers, "group");
                let found = entries(&group)
                    .find(|f| f[0] == g)
                    .and_then(|f| f.get(2).and_then(|s| s.parse().ok()));
                match found {
                    Some(gid) => gid,
                    None => bail!("{user:?}: no group {g:?} in the image's /etc/group"),
                }
            }
        },
    };
    if uid > 65535 || gid > 65535 {
        bail!("{user:?} is {uid}:{gid}, outside an island's 65536 mapped ids");
    }
    Ok((uid, gid))
}

fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
}

/// /etc/`name` as the merged image shows it, opened beneath each layer without following a
/// symlink (a layer's content is the tenant's).
fn read_etc(layers: &[PathBuf], name: &str) -> String {
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    for layer in layers.iter().rev() {
        let Ok(root) = rustix::fs::open(
            layer.as_path(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let rel = Path::new("etc").join(name);
        if let Ok(fd) = rustix::fs::openat2(
            &root,
            &rel,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            how,
        ) {
            let st = rustix::fs::fstat(&fd).ok();
            if st.is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::RegularFile) {
                let mut s = String::new();
                let _ = std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut s);
                return s;
            }
            return String::new(); // a whiteout (a character device) or anything else hides it
        }
        let etc_opaque = rustix::fs::openat2(
            &root,
            "etc",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            how,
        )
        .ok()
        .and_then(|fd| {
            rustix::fs::getxattr(
                format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)).as_str(),
                "trusted.overlay.opaque",
                &mut [0u8; 1],
            )
            .ok()
        })
        .is_some();
        if etc_opaque {
            return String::new();
        }
    }
    String::new()
}

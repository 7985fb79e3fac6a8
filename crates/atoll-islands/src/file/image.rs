//! An island's `image` and `image_root` keys: the reference's transport is one skopeo reads
//! from this host (checked here, before anything is pulled), and how the root is writable.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::syntax::{Cx, RawIsland};
use crate::error::FileError;

/// How an image island's root is writable (`image_root`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageRoot {
    /// Writable: what the island writes outside its data dir lands in its own upper dir,
    /// `<data_root>/<island>.root/upper`, and survives `down`/`up`.
    Overlay,
    /// The image as shipped; only the data dir (and tmpfs /tmp, /run) are writable.
    ReadOnly,
}

/// What the file says of an island's image, and once pulled, what the image gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub reference: String,
    pub root: ImageRoot,
    /// Whether the file set these itself (else the image's config does).
    pub command_set: bool,
    pub user_set: bool,
    pub cwd_set: bool,
    /// `image_tls_verify = false`: a `docker://` registry reached over plain HTTP or a
    /// certificate this host does not trust (skopeo's `--tls-verify=false`). Layers are still
    /// checked against the manifest's digests; the manifest itself is then unauthenticated.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub tls_verify: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled: Option<Pulled>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The helper's answer to `pull` (crates/atoll-image/src/store.rs, `Image`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pulled {
    pub id: String,
    pub layers: Vec<PathBuf>,
    pub size: u64,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    #[serde(default)]
    pub references: Vec<String>,
}

/// The transports an island may name (containers-transports(5)); `docker://` needs a registry
/// this host reaches.
pub const TRANSPORTS: &[&str] = &[
    "oci",
    "oci-archive",
    "docker-archive",
    "containers-storage",
    "docker",
    "dir",
];

pub(super) fn read(
    cx: &Cx<'_>,
    ri: &RawIsland,
    f: &dyn Fn(&str) -> String,
) -> Result<Option<ImageSpec>, FileError> {
    let Some(r) = &ri.image else {
        if let Some(v) = &ri.image_tls_verify {
            return Err(cx.err(
                v.span(),
                f("image_tls_verify"),
                "image_tls_verify is for an image's registry: set `image` too".into(),
            ));
        }
        if let Some(root) = &ri.image_root {
            return Err(cx.err(
                root.span(),
                f("image_root"),
                "image_root says how an image's root is writable: set `image` too".into(),
            ));
        }
        return Ok(None);
    };
    let reference = r.get_ref().clone();
    let transport = reference.split_once(':').map(|(t, _)| t);
    match transport {
        Some(t) if TRANSPORTS.contains(&t) => {}
        _ => {
            return Err(cx.err(
                r.span(),
                f("image"),
                format!(
                    "{reference:?}: unknown transport {:?} (one of {}, as `TRANSPORT:REFERENCE`)",
                    transport.unwrap_or(&reference),
                    TRANSPORTS.join(", ")
                ),
            ))
        }
    }
    let tls_verify = match &ri.image_tls_verify {
        Some(v) if !*v.get_ref() && transport != Some("docker") => {
            return Err(cx.err(
                v.span(),
                f("image_tls_verify"),
                format!(
                    "{reference:?} is read from this host, not from a registry: image_tls_verify applies to docker:// only"
                ),
            ))
        }
        Some(v) => *v.get_ref(),
        None => true,
    };
    let root = match ri.image_root.as_ref().map(Spanned::get_ref) {
        None => ImageRoot::Overlay,
        Some(s) if s == "overlay" => ImageRoot::Overlay,
        Some(s) if s == "read-only" => ImageRoot::ReadOnly,
        Some(s) => {
            return Err(cx.err(
                ri.image_root.as_ref().map(|x| x.span()).unwrap_or(0..0),
                f("image_root"),
                format!("{s:?} is not an image root (overlay or read-only)"),
            ))
        }
    };
    Ok(Some(ImageSpec {
        reference,
        root,
        command_set: ri.command.is_some(),
        user_set: ri.user.is_some(),
        cwd_set: ri.cwd.is_some(),
        tls_verify,
        pulled: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::ImageRoot;
    use std::path::Path;

    fn parse(island: &str) -> Result<crate::file::File, String> {
        crate::file::parse(
            Path::new("t.toml"),
            &format!("name = \"p\"\n[[island]]\nname = \"a\"\n{island}"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn an_image_makes_command_optional_and_its_transport_is_checked() {
        let f = parse("image = \"oci-archive:/x.tar\"\n").unwrap();
        let spec = f.islands[0].image.as_ref().unwrap();
        assert_eq!(spec.root, ImageRoot::Overlay);
        assert!(!spec.command_set && !spec.user_set && !spec.cwd_set);
        // A command in an image is a path in the image, not on this host.
        let f = parse("image = \"oci:/l:t\"\ncommand = [\"/no/such/host/file\"]\nimage_root = \"read-only\"\n").unwrap();
        assert_eq!(
            f.islands[0].image.as_ref().unwrap().root,
            ImageRoot::ReadOnly
        );
        let e = parse("image = \"ftp:/x\"\n").unwrap_err();
        assert!(
            e.contains("t.toml:4:9: island[0] (a).image")
                && e.contains("unknown transport \"ftp\""),
            "{e}"
        );
        let e = parse("command = [\"/bin/sh\"]\nimage_root = \"overlay\"\n").unwrap_err();
        assert!(
            e.contains("image_root") && e.contains("set `image` too"),
            "{e}"
        );
        let f =
            parse("image = \"docker://127.0.0.1:5000/a:b\"\nimage_tls_verify = false\n").unwrap();
        assert!(!f.islands[0].image.as_ref().unwrap().tls_verify);
        let f = parse("image = \"docker://127.0.0.1:5000/a:b\"\n").unwrap();
        assert!(
            f.islands[0].image.as_ref().unwrap().tls_verify,
            "verified unless said"
        );
        let e = parse("image = \"oci:/l\"\nimage_tls_verify = false\n").unwrap_err();
        assert!(
            e.contains("image_tls_verify") && e.contains("docker:// only"),
            "{e}"
        );
        let e = parse("command = [\"/bin/sh\"]\nimage_tls_verify = false\n").unwrap_err();
        assert!(e.contains("set `image` too"), "{e}");
        let e = parse("image = \"oci:/l\"\nimage_root = \"rw\"\n").unwrap_err();
        assert!(e.contains("not an image root"), "{e}");
    }
}

//! Pulling an image: skopeo (through containers-image-proxy) reads any transport it knows and
//! hands us the manifest, the config and each layer blob, checked against its digest; each
//! layer not yet in the store is decompressed, hashed (its diff_id must match the config's)
//! and unpacked as it streams in.

use std::io::Read;
use std::sync::mpsc;

use anyhow::{anyhow, bail, Context, Result};
use containers_image_proxy::ImageProxy;
use oci_spec::image::{ImageConfiguration, MediaType};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;

use crate::store::{Image, Store};
use crate::unpack;

/// Pull `reference` into `store`. `tls_verify` false: skopeo's `--tls-verify=false`, for a
/// `docker://` registry over plain HTTP or with a certificate this host does not trust.
pub async fn pull(store: &Store, reference: &str, tls_verify: bool) -> Result<Image> {
    let mut config = containers_image_proxy::ImageProxyConfig::default();
    config.insecure_skip_tls_verification = (!tls_verify).then_some(true);
    let proxy = ImageProxy::new_with_config(config)
        .await
        .context("start skopeo's image proxy (is skopeo installed?)")?;
    let img = proxy
        .open_image(reference)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let (_digest, manifest) = proxy
        .fetch_manifest(&img)
        .await
        .map_err(|e| anyhow!("read its manifest: {e}"))?;
    let config_raw = proxy
        .fetch_config_raw(&img)
        .await
        .map_err(|e| anyhow!("read its config: {e}"))?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config_raw).context("its config is not an OCI image config")?;
    let id = hex::encode(Sha256::digest(&config_raw));
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        bail!(
            "its manifest has {} layers and its config {} diff_ids",
            manifest.layers().len(),
            diff_ids.len()
        );
    }
    let mut layers = Vec::new();
    let mut size = 0;
    for (n, (desc, diff_id)) in manifest.layers().iter().zip(diff_ids).enumerate() {
        let hex = diff_id
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| anyhow!("layer {n}: diff_id {diff_id:?} is not a sha256 digest"))?
            .to_string();
        let dir = store.layer_dir(&hex);
        if !dir.is_dir() {
            let gzip = match desc.media_type() {
                MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Some(false),
                MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => Some(true),
                // Docker's schema 2 types come converted to OCI's by the proxy; anything
                // else is sniffed from its first bytes.
                _ => None,
            };
            let (reader, driver) = proxy
                .get_blob(&img, desc.digest(), desc.size())
                .await
                .map_err(|e| anyhow!("layer {n} ({}): {e}", desc.digest()))?;
            let tmp = store.tmp_dir(&hex);
            std::fs::create_dir(&tmp).with_context(|| format!("mkdir {}", tmp.display()))?;
            let unpacked = match stream_into(reader, driver, gzip, &hex, tmp.clone()).await {
                Ok(b) => b,
                Err(e) => {
                    // Nothing half-made stays (Store::open empties tmp/ too, after a crash).
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(e.context(format!("layer {n} ({})", desc.digest())));
                }
            };
            store.commit_layer(&tmp, &hex, unpacked)?;
        }
        size += store.layer_size(&hex);
        layers.push(dir);
    }
    let _ = proxy.close_image(&img).await;
    let _ = proxy.finalize().await;
    let c = config.config().clone().unwrap_or_default();
    let mut command = c.entrypoint().clone().unwrap_or_default();
    command.extend(c.cmd().clone().unwrap_or_default());
    let user = c.user().clone().filter(|u| !u.is_empty());
    let (uid, gid) = match &user {
        Some(u) => crate::user::resolve(u, &layers).context("its config's User")?,
        None => (0, 0),
    };
    Ok(Image {
        id,
        references: vec![reference.to_string()],
        layers,
        size,
        command,
        env: c.env().clone().unwrap_or_default(),
        user,
        uid,
        gid,
        cwd: c.working_dir().clone().filter(|w| !w.is_empty()),
        stop_signal: c.stop_signal().clone(),
        exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
    })
}

/// Copy the blob from the proxy's pipe into a thread that decompresses, hashes and unpacks it,
/// while `driver` (the proxy's check of the blob's digest and size) runs alongside, as
/// containers-image-proxy requires. Returns the unpacked bytes.
async fn stream_into(
    mut reader: impl tokio::io::AsyncBufRead + Unpin,
    driver: impl std::future::Future<Output = Result<(), containers_image_proxy::Error>> + Unpin,
    gzip: Option<bool>,
    hex: &str,
    dir: std::path::PathBuf,
) -> Result<u64> {
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(16);
    let want = hex.to_string();
    let worker = std::thread::spawn(move || -> Result<u64> {
        let mut input = ChannelReader {
            rx,
            buf: Vec::new(),
            at: 0,
        };
        let mut head = [0u8; 4];
        let n = read_full(&mut input, &mut head)?;
        let gz = gzip.unwrap_or(n >= 2 && head[..2] == [0x1f, 0x8b]);
        if n == 4 && head == [0x28, 0xb5, 0x2f, 0xfd] {
            bail!("zstd-compressed layers are not supported (convert with skopeo copy --dest-compress-format gzip)");
        }
        let whole = Read::chain(std::io::Cursor::new(head[..n].to_vec()), input);
        let plain: Box<dyn Read> = if gz {
            Box::new(flate2::read::GzDecoder::new(whole))
        } else {
            Box::new(whole)
        };
        let mut hashed = Hashing {
            inner: plain,
            hash: Sha256::new(),
        };
        let done = unpack::unpack(&mut hashed, &dir)?;
        // The tar's end-of-archive blocks and padding count in the diff_id too.
        std::io::copy(&mut hashed, &mut std::io::sink()).context("read the layer to its end")?;
        let got = hex::encode(hashed.hash.finalize());
        if got != want {
            bail!("its content's sha256 is {got}, not the config's diff_id {want}: corrupt");
        }
        Ok(done.bytes)
    });
    let copy = async {
        let mut buf = vec![0u8; 256 << 10];
        let mut tx = Some(tx);
        // Read to the end even after the unpacker gave up: skopeo finishes (and the driver
        // returns) only once its pipe is drained.
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if tx
                .as_ref()
                .is_some_and(|t| t.send(buf[..n].to_vec()).is_err())
            {
                tx = None;
            }
        }
        drop(tx);
        Ok::<(), std::io::Error>(())
    };
    let (copied, checked) = tokio::join!(copy, driver);
    let unpacked = tokio::task::spawn_blocking(move || worker.join())
        .await
        .map_err(|e| anyhow!("the unpack thread: {e}"))?
        .map_err(|_| anyhow!("the unpack thread panicked"))?;
    // The unpacker's own error says most (an unsafe entry, a bad tar); then the proxy's.
    let bytes = unpacked?;
    copied.context("read the blob from skopeo")?;
    checked.map_err(|e| anyhow!("skopeo: {e}"))?;
    Ok(bytes)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.hash.update(&out[..n]);
        Ok(n)
    }
}

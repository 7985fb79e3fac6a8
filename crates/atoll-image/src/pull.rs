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
            let packed = match desc.media_type() {
                MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Some(Packed::Tar),
                MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
                    Some(Packed::Gzip)
                }
                MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
                    Some(Packed::Zstd)
                }
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
            let unpacked = match stream_into(reader, driver, packed, &hex, tmp.clone()).await {
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
    packed: Option<Packed>,
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
        let packed = packed.unwrap_or(if n >= 2 && head[..2] == [0x1f, 0x8b] {
            Packed::Gzip
        } else if n == 4 && head == ZSTD_MAGIC {
            Packed::Zstd
        } else {
            Packed::Tar
        });
        let whole = Read::chain(std::io::Cursor::new(head[..n].to_vec()), input);
        let plain: Box<dyn Read> = match packed {
            Packed::Tar => Box::new(whole),
            Packed::Gzip => Box::new(flate2::read::GzDecoder::new(whole)),
            Packed::Zstd => Box::new(Zstd::new(whole)),
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

/// How a layer blob is packed.
#[derive(Clone, Copy, Debug)]
enum Packed {
    Tar,
    Gzip,
    Zstd,
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A zstd stream of one or more frames (zstd:chunked layers are many, with skippable frames
/// between), decoded as it is read: ruzstd's FrameDecoder one frame at a time, its window of
/// memory at most.
struct Zstd<R: Read> {
    src: std::io::BufReader<R>,
    frame: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: Read> Zstd<R> {
    fn new(src: R) -> Zstd<R> {
        Zstd {
            src: std::io::BufReader::with_capacity(256 << 10, src),
            frame: ruzstd::decoding::FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: Read> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        use ruzstd::decoding::BlockDecodingStrategy;
        use std::io::BufRead;
        let bad = |e: FrameDecoderError| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("zstd: {e}"))
        };
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                if self.frame.can_collect() > 0 {
                    return self.frame.read(buf);
                }
                if !self.frame.is_finished() {
                    self.frame
                        .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBytes(buf.len()))
                        .map_err(bad)?;
                    continue;
                }
                self.in_frame = false;
            }
            if self.src.fill_buf()?.is_empty() {
                return Ok(0); // the end, between frames
            }
            match self.frame.reset(&mut self.src) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = std::io::copy(
                        &mut (&mut self.src).take(length.into()),
                        &mut std::io::sink(),
                    )?;
                    if skipped != u64::from(length) {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(bad(e)),
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames from ruzstd's encoder, one after another with a skippable frame between, read
    /// back as one stream.
    #[test]
    fn zstd_streams_of_many_frames_decode_whole() {
        let a: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let b = b"second frame".to_vec();
        let mut blob =
            ruzstd::encoding::compress_to_vec(&a[..], ruzstd::encoding::CompressionLevel::Fastest);
        // A skippable frame: magic 0x184D2A50..5F, then its length, then that many bytes.
        blob.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        blob.extend_from_slice(&3u32.to_le_bytes());
        blob.extend_from_slice(b"xyz");
        blob.extend(ruzstd::encoding::compress_to_vec(
            &b[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        ));
        let mut out = Vec::new();
        Zstd::new(&blob[..]).read_to_end(&mut out).unwrap();
        let mut want = a.clone();
        want.extend_from_slice(&b);
        assert_eq!(out.len(), want.len());
        assert!(out == want);
    }

    /// A stream cut short is an error, not a short layer.
    #[test]
    fn a_truncated_zstd_stream_is_an_error() {
        let a: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let blob =
            ruzstd::encoding::compress_to_vec(&a[..], ruzstd::encoding::CompressionLevel::Fastest);
        let mut out = Vec::new();
        assert!(Zstd::new(&blob[..blob.len() / 2])
            .read_to_end(&mut out)
            .is_err());
    }
}

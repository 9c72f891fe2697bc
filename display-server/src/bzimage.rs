//! The kernel inside a bzImage: the boot header says where its compressed payload is,
//! and the payload is decompressed here, in Rust (xz, gzip, zstd, or the kernel's legacy
//! lz4 framing). The result is vmlinux (ELF), possibly with relocations appended.

use std::io::Read;

use anyhow::{bail, Context};

/// Largest kernel accepted after decompression (a generous distribution vmlinux).
const MAX_KERNEL: u64 = 512 << 20;
/// The legacy lz4 frame the kernel's build uses: this magic, then blocks of a `u32`
/// compressed length and the block, each of at most 8 MiB decompressed.
const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

/// Unpacks the kernel of a bzImage.
pub(crate) fn unpack_bzimage(image: &[u8]) -> anyhow::Result<Vec<u8>> {
    let payload = payload(image)?;
    let kernel = match payload {
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
            // A single stream: the padding after it is not read.
            read_bounded(liblzma::read::XzDecoder::new(payload)).context("xz payload")?
        }
        [0x1f, 0x8b, ..] => {
            read_bounded(flate2::read::GzDecoder::new(payload)).context("gzip payload")?
        }
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            let mut decoder = zstd::stream::read::Decoder::new(payload)?.single_frame();
            read_bounded(&mut decoder).context("zstd payload")?
        }
        [0x02, 0x21, 0x4c, 0x18, ..] => lz4_legacy(payload).context("lz4 payload")?,
        _ => bail!("unknown kernel compression"),
    };
    if !kernel.starts_with(b"\x7fELF") {
        bail!("the bzImage payload is not an ELF kernel");
    }
    Ok(kernel)
}

/// The compressed payload the boot header points at.
fn payload(image: &[u8]) -> anyhow::Result<&[u8]> {
    let u32_at = |at: usize| -> anyhow::Result<usize> {
        let bytes: [u8; 4] = image
            .get(at..at + 4)
            .context("truncated header")?
            .try_into()?;
        Ok(usize::try_from(u32::from_le_bytes(bytes))?)
    };
    if image.get(0x202..0x206) != Some(b"HdrS") {
        bail!("no Linux boot header");
    }
    let setup_sects = match *image.get(0x1f1).context("truncated header")? {
        0 => 4,
        n => usize::from(n),
    };
    let offset = (setup_sects + 1) * 512 + u32_at(0x248)?;
    let length = u32_at(0x24c)?;
    image
        .get(offset..offset.saturating_add(length))
        .context("payload outside the image")
}

fn read_bounded(reader: impl Read) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.take(MAX_KERNEL + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_KERNEL {
        return Err(std::io::Error::other("kernel larger than 512 MiB"));
    }
    Ok(out)
}

/// Decompresses the kernel's legacy lz4 framing; it ends at the payload's end or at a
/// block length that cannot be one (the build appends the uncompressed size).
fn lz4_legacy(payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut rest = payload
        .strip_prefix(&LZ4_LEGACY_MAGIC)
        .context("no lz4 legacy magic")?;
    let mut out = Vec::new();
    while let Some(len_bytes) = rest.get(..4) {
        let len = usize::try_from(u32::from_le_bytes(len_bytes.try_into()?))?;
        if len == 0 || len > lz4_flex::block::get_maximum_output_size(LZ4_LEGACY_BLOCK) {
            break;
        }
        let Some(block) = rest.get(4..4 + len) else {
            break; // the trailing size word, or padding
        };
        let start = out.len();
        out.resize(start + LZ4_LEGACY_BLOCK, 0);
        let n = lz4_flex::block::decompress_into(block, &mut out[start..])
            .map_err(|e| anyhow::anyhow!("lz4 block: {e}"))?;
        out.truncate(start + n);
        if out.len() as u64 > MAX_KERNEL {
            bail!("kernel larger than 512 MiB");
        }
        rest = &rest[4 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A bzImage around `payload`, as the boot header lays it out.
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; 1024];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x1f1] = 1; // the protected-mode code starts at 1024
        image[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
        image.extend_from_slice(&[0; 16]);
        image.extend_from_slice(payload);
        image.extend_from_slice(&[0xaa; 64]); // what follows the payload
        image
    }

    fn kernel() -> Vec<u8> {
        let mut k = b"\x7fELF".to_vec();
        k.extend((0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()));
        k
    }

    #[test]
    fn every_kernel_compression_unpacks() {
        let k = kernel();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&k).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&k).unwrap();
        let zst = zstd::encode_all(&k[..], 3).unwrap();
        let mut lz4 = LZ4_LEGACY_MAGIC.to_vec();
        for chunk in k.chunks(LZ4_LEGACY_BLOCK) {
            let block = lz4_flex::block::compress(chunk);
            lz4.extend(u32::try_from(block.len()).unwrap().to_le_bytes());
            lz4.extend(block);
        }
        lz4.extend(u32::try_from(k.len()).unwrap().to_le_bytes()); // the build's trailing size
        for (name, payload) in [
            ("xz", xz.finish().unwrap()),
            ("gzip", gz.finish().unwrap()),
            ("zstd", zst),
            ("lz4", lz4),
        ] {
            assert_eq!(unpack_bzimage(&bzimage(&payload)).unwrap(), k, "{name}");
        }
    }

    #[test]
    fn bzimage_headers_and_payloads_are_checked() {
        assert!(unpack_bzimage(b"not a kernel").is_err());
        let mut fake = vec![0u8; 4096];
        fake[0x202..0x206].copy_from_slice(b"HdrS");
        fake[0x1f1] = 1;
        fake[0x248..0x24c].copy_from_slice(&100u32.to_le_bytes());
        fake[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack_bzimage(&fake).is_err(), "payload past the end");
        fake[0x24c..0x250].copy_from_slice(&16u32.to_le_bytes());
        assert!(unpack_bzimage(&fake).is_err(), "unknown compression");
        let garbage = [&[0xfd, b'7', b'z', b'X', b'Z', 0][..], &[1, 2, 3, 4]].concat();
        assert!(unpack_bzimage(&bzimage(&garbage)).is_err(), "broken xz");
        let not_elf = zstd::encode_all(&b"MZ not a kernel"[..], 3).unwrap();
        assert!(unpack_bzimage(&bzimage(&not_elf)).is_err(), "not ELF");
    }
}

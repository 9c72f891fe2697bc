//! Guest images: a directory per image under the host's image store, holding a kernel,
//! an optional initramfs and `image.toml`, which says how to boot them:
//!
//! ```toml
//! kernel = "vmlinux"          # ELF vmlinux or bzImage, relative to the image directory
//! initramfs = "initramfs.cpio"
//! cmdline = "console=ttyS0 console=tty1 reboot=k"
//! memory-mib = 512            # defaults a pool may override
//! vcpus = 1
//! ```
//!
//! The name `tiny` is the built-in tiny test guest.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::boot::{Boot, LinuxBoot};

/// The image manifest's file name.
pub const MANIFEST: &str = "image.toml";
/// The built-in tiny test guest's image name.
pub const TINY: &str = "tiny";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    pub kernel: String,
    pub initramfs: Option<String>,
    #[serde(default)]
    pub cmdline: String,
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u8>,
    /// What the image was built from, for people.
    pub description: Option<String>,
}

/// A bootable image, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub boot: Boot,
    pub memory_mib: u64,
    pub vcpus: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "image name '{0}' is not valid (letters, digits, '-', '_' and '.', not starting with '.')"
    )]
    BadName(String),
    #[error("no image '{name}' in {dir} (build one with `oriel-display-server image build --name {name}`)")]
    Missing { name: String, dir: PathBuf },
    #[error("image '{name}': {reason}")]
    Invalid { name: String, reason: String },
}

/// Whether `name` can name an image (it becomes a directory name).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Image {
    /// The tiny test guest.
    pub fn tiny() -> Self {
        Self {
            name: TINY.into(),
            boot: Boot::Tiny,
            memory_mib: 16,
            vcpus: 1,
        }
    }

    /// Finds image `name` in the store `dir`.
    pub fn open(dir: &Path, name: &str) -> Result<Self, ImageError> {
        if name == TINY {
            return Ok(Self::tiny());
        }
        if !valid_name(name) {
            return Err(ImageError::BadName(name.into()));
        }
        let root = dir.join(name);
        let manifest_path = root.join(MANIFEST);
        let invalid = |reason: String| ImageError::Invalid {
            name: name.into(),
            reason,
        };
        let text = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::Missing {
                    name: name.into(),
                    dir: dir.into(),
                })
            }
            Err(e) => {
                return Err(invalid(format!(
                    "cannot read {}: {e}",
                    manifest_path.display()
                )))
            }
        };
        let manifest: Manifest = toml::from_str(&text)
            .map_err(|e| invalid(format!("{}: {e}", manifest_path.display())))?;
        let inside = |file: &str| -> Result<PathBuf, ImageError> {
            let path = Path::new(file);
            if path.is_absolute() || path.components().any(|c| c.as_os_str() == "..") {
                return Err(invalid(format!("'{file}' must be a file inside the image")));
            }
            let path = root.join(path);
            if !path.is_file() {
                return Err(invalid(format!("{} is missing", path.display())));
            }
            Ok(path)
        };
        Ok(Self {
            name: name.into(),
            boot: Boot::Linux(LinuxBoot {
                kernel: inside(&manifest.kernel)?,
                initramfs: manifest.initramfs.as_deref().map(inside).transpose()?,
                cmdline: manifest.cmdline,
            }),
            memory_mib: manifest.memory_mib.unwrap_or(512),
            vcpus: manifest.vcpus.unwrap_or(1),
        })
    }

    /// Names of the images in the store (not counting `tiny`).
    pub fn list(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(MANIFEST).is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_name(n))
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_valid_images_and_refuses_the_rest() {
        let dir = std::env::temp_dir().join(format!("oriel-image-test-{}", std::process::id()));
        let image = dir.join("deb");
        std::fs::create_dir_all(&image).unwrap();
        std::fs::write(image.join("vmlinux"), b"\x7fELF").unwrap();
        std::fs::write(
            image.join(MANIFEST),
            "kernel = \"vmlinux\"\ncmdline = \"console=ttyS0\"\nmemory-mib = 256\n",
        )
        .unwrap();
        let opened = Image::open(&dir, "deb").unwrap();
        assert_eq!(opened.memory_mib, 256);
        assert!(
            matches!(&opened.boot, Boot::Linux(l) if l.cmdline == "console=ttyS0" && l.initramfs.is_none())
        );
        assert_eq!(Image::list(&dir), ["deb"]);
        assert_eq!(Image::open(&dir, "tiny").unwrap().boot, Boot::Tiny);
        assert!(matches!(
            Image::open(&dir, "../etc"),
            Err(ImageError::BadName(_))
        ));
        assert!(matches!(
            Image::open(&dir, "nope"),
            Err(ImageError::Missing { .. })
        ));
        std::fs::write(image.join(MANIFEST), "kernel = \"../../etc/passwd\"\n").unwrap();
        assert!(matches!(
            Image::open(&dir, "deb"),
            Err(ImageError::Invalid { .. })
        ));
        std::fs::write(image.join(MANIFEST), "kernel = 5\n").unwrap();
        assert!(matches!(
            Image::open(&dir, "deb"),
            Err(ImageError::Invalid { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

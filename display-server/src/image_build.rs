//! `oriel-display-server image build`: a bootable guest image from Debian packages —
//! `linux-image-amd64`'s kernel, unpacked to an ELF vmlinux (the VMM loads it directly,
//! skipping the in-guest decompressor), and an initramfs around `busybox-static` whose
//! init runs shells on the framebuffer console (tty1) and the serial console.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use oriel_vmm::image::{self, Manifest};

/// Kernel arguments of a built image: consoles on the framebuffer and COM1, reboot
/// through the i8042 (what the VMM turns into a reset), no PCI bus to probe, the i8042
/// probed directly (there is no ACPI/PnP to announce it).
pub const DEFAULT_CMDLINE: &str =
    "console=ttyS0,115200 console=tty1 reboot=k panic=-1 pci=off i8042.nopnp rdinit=/init";

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub images: PathBuf,
    pub name: String,
    /// Use this kernel (vmlinuz/bzImage or vmlinux) instead of downloading one.
    pub kernel: Option<PathBuf>,
    /// Use this static busybox instead of downloading busybox-static.
    pub busybox: Option<PathBuf>,
    /// Appended to [`DEFAULT_CMDLINE`].
    pub append: Option<String>,
    pub memory_mib: u64,
}

/// Builds the image and returns its directory. Progress goes to stderr.
pub fn build(options: &BuildOptions) -> anyhow::Result<PathBuf> {
    if !image::valid_name(&options.name) || options.name == image::TINY {
        bail!("'{}' cannot name an image", options.name);
    }
    std::fs::create_dir_all(&options.images)
        .with_context(|| format!("cannot create {}", options.images.display()))?;
    let work = options.images.join(format!(".{}.building", options.name));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = build_in(options, &work);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn build_in(options: &BuildOptions, work: &Path) -> anyhow::Result<PathBuf> {
    let step = |n: u32, what: &str| eprintln!("[{n}/4] {what}");
    step(1, "getting the kernel and busybox");
    let downloads = work.join("packages");
    let (kernel, kernel_package) = match &options.kernel {
        Some(path) => (path.clone(), format!("kernel {}", path.display())),
        None => {
            let package = kernel_package()?;
            let root = download_and_unpack(&package, &downloads)?;
            let boot = root.join("boot");
            let vmlinuz = std::fs::read_dir(&boot)
                .with_context(|| format!("{package} has no /boot"))?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
                })
                .with_context(|| format!("{package} has no vmlinuz"))?;
            (vmlinuz, package)
        }
    };
    let busybox = match &options.busybox {
        Some(path) => path.clone(),
        None => download_and_unpack("busybox-static", &downloads)?.join("bin/busybox"),
    };

    step(2, "unpacking the kernel to an ELF vmlinux");
    let raw =
        std::fs::read(&kernel).with_context(|| format!("cannot read {}", kernel.display()))?;
    let vmlinux = if raw.starts_with(b"\x7fELF") {
        raw
    } else {
        crate::bzimage::unpack_bzimage(&raw)
            .with_context(|| format!("{} is not a usable bzImage", kernel.display()))?
    };
    std::fs::write(work.join("vmlinux"), &vmlinux)?;

    step(3, "making the initramfs");
    let busybox_bytes =
        std::fs::read(&busybox).with_context(|| format!("cannot read {}", busybox.display()))?;
    let applets = busybox_applets(&busybox);
    std::fs::write(
        work.join("initramfs.cpio"),
        initramfs(&busybox_bytes, &applets)?,
    )?;

    step(4, "writing the manifest");
    let mut cmdline = DEFAULT_CMDLINE.to_string();
    if let Some(extra) = &options.append {
        cmdline.push(' ');
        cmdline.push_str(extra);
    }
    let manifest = Manifest {
        kernel: "vmlinux".into(),
        initramfs: Some("initramfs.cpio".into()),
        cmdline,
        memory_mib: Some(options.memory_mib),
        vcpus: Some(1),
        description: Some(format!("{kernel_package} with busybox-static")),
    };
    std::fs::write(work.join(image::MANIFEST), toml::to_string(&manifest)?)?;
    let _ = std::fs::remove_dir_all(&downloads);

    let target = options.images.join(&options.name);
    let old = options.images.join(format!(".{}.old", options.name));
    let _ = std::fs::remove_dir_all(&old);
    if target.exists() {
        std::fs::rename(&target, &old)?;
    }
    std::fs::rename(work, &target)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(target)
}

/// The versioned package `linux-image-amd64` depends on.
fn kernel_package() -> anyhow::Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .context("cannot run apt-cache (not Debian? pass --kernel and --busybox)")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .context("apt-cache knows no linux-image-amd64 (run apt-get update?)")
}

/// `apt-get download` then `dpkg-deb -x`; returns the unpacked tree.
fn download_and_unpack(package: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    run(Command::new("apt-get")
        .args(["download", "-q", package])
        .current_dir(dir))
    .with_context(|| format!("cannot download {package}"))?;
    let deb = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with(&format!("{package}_")) && name.ends_with(".deb")
        })
        .with_context(|| format!("apt-get download left no {package} .deb"))?;
    let root = dir.join(format!("{package}.root"));
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    Ok(root)
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Applet paths (`bin/sh`, `sbin/init`, …) of a static busybox, asked of the binary.
fn busybox_applets(busybox: &Path) -> Vec<String> {
    Command::new(busybox)
        .arg("--list-full")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().trim_start_matches('/').to_string())
                .filter(|l| !l.is_empty() && !l.contains(".."))
                .collect()
        })
        .unwrap_or_default()
}

const INIT: &str = r#"#!/bin/busybox sh
# Oriel guest init: busybox applets, the usual file systems, then busybox init with
# shells on the framebuffer console and the serial console.
[ -e /bin/sh ] || /bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
hostname oriel-guest
echo "oriel guest: $(uname -sr) ready" > /dev/ttyS0
exec /sbin/init
"#;

const INITTAB: &str = "tty1::respawn:-/bin/sh\n\
ttyS0::respawn:-/bin/sh\n\
::ctrlaltdel:/sbin/reboot\n\
::shutdown:/bin/umount -a -r\n";

const PROFILE: &str = "export PS1='oriel-guest:\\w# '\nexport PATH=/bin:/sbin:/usr/bin:/usr/sbin\n";

/// The initramfs (uncompressed newc cpio: the kernel unpacks it without a decompressor).
/// Fails only for a file or name beyond the format's 4 GiB field limit.
pub fn initramfs(busybox: &[u8], applets: &[String]) -> anyhow::Result<Vec<u8>> {
    let mut cpio = Cpio::default();
    for dir in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "etc",
    ] {
        cpio.dir(dir)?;
    }
    cpio.char_device("dev/console", 5, 1)?;
    cpio.file("bin/busybox", 0o755, busybox)?;
    for applet in applets {
        if applet != "bin/busybox" && applet != "init" {
            let depth = applet.matches('/').count();
            cpio.symlink(applet, &format!("{}bin/busybox", "../".repeat(depth)))?;
        }
    }
    cpio.file("init", 0o755, INIT.as_bytes())?;
    cpio.file("etc/inittab", 0o644, INITTAB.as_bytes())?;
    cpio.file("etc/profile", 0o644, PROFILE.as_bytes())?;
    cpio.finish()
}

/// A newc ("070701") cpio archive writer.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    inode: u32,
}

impl Cpio {
    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        data: &[u8],
        rdev: (u32, u32),
    ) -> anyhow::Result<()> {
        let size = u32::try_from(data.len())
            .with_context(|| format!("{name} is too large for a cpio archive"))?;
        let name_size = u32::try_from(name.len() + 1).with_context(|| {
            format!(
                "a name of {} bytes is too long for a cpio archive",
                name.len()
            )
        })?;
        self.inode += 1;
        let fields = [
            self.inode, mode, 0, 0, 1, 0, size, 0, 0, rdev.0, rdev.1, name_size, 0,
        ];
        self.out.extend_from_slice(b"070701");
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) -> anyhow::Result<()> {
        self.entry(name, 0o040_755, &[], (0, 0))
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> anyhow::Result<()> {
        self.entry(name, 0o100_000 | perm, data, (0, 0))
    }

    fn symlink(&mut self, name: &str, target: &str) -> anyhow::Result<()> {
        self.entry(name, 0o120_777, target.as_bytes(), (0, 0))
    }

    fn char_device(&mut self, name: &str, major: u32, minor: u32) -> anyhow::Result<()> {
        self.entry(name, 0o020_600, &[], (major, minor))
    }

    fn finish(mut self) -> anyhow::Result<Vec<u8>> {
        self.entry("TRAILER!!!", 0, &[], (0, 0))?;
        Ok(self.out)
    }
}

/// The image store when none is given.
pub fn default_images_dir() -> PathBuf {
    oriel_transport::files::data_dir("display-server").join("images")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a newc archive back: (name, mode, data).
    fn read_cpio(mut bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            assert_eq!(&bytes[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).unwrap(),
                    16,
                )
                .unwrap()
            };
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let name = String::from_utf8(bytes[110..110 + namesize - 1].to_vec()).unwrap();
            let data_at = (offset + 110 + namesize).div_ceil(4) * 4 - offset;
            let data = bytes[data_at..data_at + size].to_vec();
            let next = (offset + data_at + size).div_ceil(4) * 4 - offset;
            if name == "TRAILER!!!" {
                assert_eq!(next, bytes.len());
                return out;
            }
            out.push((name, mode, data));
            bytes = &bytes[next..];
            offset += next;
        }
    }

    #[test]
    fn initramfs_holds_busybox_init_and_applet_links() {
        let archive = initramfs(b"BUSYBOX", &["bin/sh".into(), "sbin/init".into()]).unwrap();
        let entries = read_cpio(&archive);
        let find = |n: &str| {
            entries
                .iter()
                .find(|e| e.0 == n)
                .unwrap_or_else(|| panic!("{n}"))
        };
        assert_eq!(find("bin/busybox").2, b"BUSYBOX");
        assert_eq!(find("bin/sh").2, b"../bin/busybox");
        assert_eq!(find("sbin/init").1, 0o120_777);
        assert!(String::from_utf8_lossy(&find("init").2).contains("exec /sbin/init"));
        assert_eq!(find("dev/console").1, 0o020_600);
    }
}

//! Where Oriel keeps its files and how secrets are written, shared by all binaries.

use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` readable by the owner only (creating its directory),
/// replacing any previous content. For keys, credentials and tokens.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    // The mode above applies only to a new file; an older one may be wider.
    make_private(path)?;
    file.write_all(bytes)
}

/// Creates a data directory (and its parents) that only its owner can enter, and
/// narrows an existing one to that.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Narrows an existing file to its owner (mode 0600); a missing file is fine.
pub fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// `$XDG_DATA_HOME/oriel/<part>`, or `~/.local/share/oriel/<part>`.
pub fn data_dir(part: &str) -> PathBuf {
    xdg_base("XDG_DATA_HOME", ".local/share")
        .join("oriel")
        .join(part)
}

/// `$XDG_CONFIG_HOME/oriel`, or `~/.config/oriel`.
pub fn config_dir() -> PathBuf {
    xdg_base("XDG_CONFIG_HOME", ".config").join("oriel")
}

/// An XDG base directory; an empty variable counts as unset, as the spec says.
fn xdg_base(var: &str, under_home: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(under_home)))
        .unwrap_or_else(|| PathBuf::from("."))
}

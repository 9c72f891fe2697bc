//! What a pool's desktops run: the parameters of each desktop kind, typed and checked
//! in one place. The broker checks them when a pool is created or changed (so a bad
//! value is a 400 at the API, never a desktop that fails on its host), and the display
//! server checks the typed spec it gets on the host link with the same code before it
//! creates the desktop.

use serde::{Deserialize, Serialize};

use crate::{Size, MAX_DESKTOP_PIXELS};

/// The desktop sources display servers run; a pool names one of them.
pub const DESKTOP_KINDS: [&str; 3] = ["synthetic", "x11", "kvm"];
/// The workloads synthetic desktops play.
pub const SYNTHETIC_WORKLOADS: [&str; 6] = ["idle", "typing", "scroll", "drag", "video", "mixed"];
/// The smallest desktop edge.
pub const MIN_EDGE: u32 = 64;
/// The smallest synthetic desktop (its scenes need the room).
pub const SYNTHETIC_MIN_WIDTH: u32 = 640;
pub const SYNTHETIC_MIN_HEIGHT: u32 = 480;
/// The largest edge of a pool's desktops: any two fit the protocol's pixel limit, and
/// it is what Xorg's dummy screens reach.
pub const MAX_EDGE: u32 = 4096;
/// Frame rates a desktop may poll at.
pub const MAX_FPS: u32 = 120;
/// VM limits (the micro-VMM's).
pub const MAX_VCPUS: u8 = 16;
pub const MIN_MEMORY_MIB: u64 = 4;
pub const MAX_MEMORY_MIB: u64 = 96 * 1024;
/// Longest x11 session command.
pub const MAX_COMMAND: usize = 4096;
/// Longest parameter text.
pub const MAX_PARAMS: usize = 8192;
/// Most frames a synthetic script may be limited to.
pub const MAX_TICKS: u64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} desktop parameters: {reason}")]
pub struct SpecError {
    pub kind: String,
    pub reason: String,
}

/// Synthetic desktops: a scripted workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SyntheticParams {
    /// `idle`, `typing`, `scroll`, `drag`, `video` or `mixed` (the default).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(idle|typing|scroll|drag|video|mixed)$")
    )]
    pub workload: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 640, maximum = 4096))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub width: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(minimum = 480, maximum = 4096))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub height: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 120))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub fps: Option<u32>,
    /// Stop the script after this many frames (for tests).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1_000_000_000))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub ticks: Option<u64>,
}

/// X11 desktops: an X server of their own, or one already running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct X11Params {
    /// Attach to this display (`:N`) instead of starting an X server.
    #[cfg_attr(feature = "openapi", schema(pattern = "^:[0-9]{1,5}$"))]
    pub display: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 64, maximum = 4096))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub width: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(minimum = 64, maximum = 4096))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub height: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 120))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub fps: Option<u32>,
    /// Session command run on a new X server (`sh -c`).
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    pub command: Option<String>,
    /// Which X server to start: `xvfb` (default) or `xorg`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(xvfb|xorg|xorg-dummy)$"))]
    pub server: Option<String>,
    /// XKB keyboard layout, e.g. `de`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_,()-]{1,64}$"))]
    pub layout: Option<String>,
    /// Which way the clipboard may go: `both` (default), `to-desktop`, `to-client` or
    /// `off`. The display server enforces it.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(both|to-desktop|to-client|off)$")
    )]
    pub clipboard: Option<String>,
    /// Most bytes of one clipboard transfer (default 16 MiB).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 67108864))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub clipboard_max_bytes: Option<u32>,
    /// Also share PRIMARY (what selecting text puts), not only the clipboard.
    pub clipboard_primary: Option<bool>,
    /// Give each desktop a sound server whose sound reaches the viewers (default true).
    pub audio: Option<bool>,
    /// The viewer's microphone is the desktop's default source (default true; needs
    /// `audio`).
    pub microphone: Option<bool>,
}

impl X11Params {
    /// The clipboard policy these parameters set.
    pub fn clipboard_policy(&self) -> Result<crate::ClipboardPolicy, String> {
        crate::ClipboardPolicy::parse(self.clipboard.as_deref(), self.clipboard_max_bytes)
    }
}

/// KVM desktops: a VM of an image from the host's image store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KvmParams {
    /// An image name (default `debian`; `tiny` is the built-in test guest).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
    )]
    pub image: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 64, maximum = 4096))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub width: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(minimum = 64, maximum = 4096))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub height: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(minimum = 4, maximum = 98304))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub memory_mib: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub vcpus: Option<u8>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 120))]
    #[serde(default, deserialize_with = "crate::whole::optional")]
    pub fps: Option<u32>,
}

/// What a desktop runs: its kind with its parameters (unset ones take the host's
/// defaults). Pools keep the kind and the parameters as JSON text; the broker sends
/// this typed form to hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DesktopSpec {
    Synthetic(SyntheticParams),
    X11(X11Params),
    Kvm(KvmParams),
}

impl DesktopSpec {
    /// Parses and checks a pool's kind (one of [`DESKTOP_KINDS`])
    /// and parameters as JSON text (empty text: every default).
    pub fn parse(kind: &str, params: &str) -> Result<DesktopSpec, SpecError> {
        let fail = |reason: String| SpecError {
            kind: crate::text::for_log(kind).into_owned(),
            reason,
        };
        if params.len() > MAX_PARAMS {
            return Err(fail(format!("longer than {MAX_PARAMS} bytes")));
        }
        let text = if params.trim().is_empty() {
            "{}"
        } else {
            params
        };
        fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
            // Only an object: serde would also fill a struct from an array, by position.
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            if !value.is_object() {
                return Err("parameters must be a JSON object".into());
            }
            serde_json::from_value(value).map_err(|e| e.to_string())
        }
        let spec = match kind {
            "synthetic" => DesktopSpec::Synthetic(json(text).map_err(fail)?),
            "x11" => DesktopSpec::X11(json(text).map_err(fail)?),
            "kvm" => DesktopSpec::Kvm(json(text).map_err(fail)?),
            other => {
                return Err(fail(format!(
                    "unknown desktop kind '{}' (one of: {})",
                    crate::text::for_log(other),
                    DESKTOP_KINDS.join(", ")
                )))
            }
        };
        spec.check()?;
        Ok(spec)
    }

    /// The kind's name, as pools name it.
    pub fn kind(&self) -> &'static str {
        match self {
            DesktopSpec::Synthetic(_) => "synthetic",
            DesktopSpec::X11(_) => "x11",
            DesktopSpec::Kvm(_) => "kvm",
        }
    }

    /// Checks the parameters' values: what came over a link is checked again before a
    /// host runs it.
    pub fn check(&self) -> Result<(), SpecError> {
        self.check_values().map_err(|reason| SpecError {
            kind: self.kind().into(),
            reason,
        })
    }

    fn check_values(&self) -> Result<(), String> {
        match self {
            DesktopSpec::Synthetic(p) => {
                check_size(p.width, p.height)?;
                if p.width.is_some_and(|w| w < SYNTHETIC_MIN_WIDTH)
                    || p.height.is_some_and(|h| h < SYNTHETIC_MIN_HEIGHT)
                {
                    return Err(format!(
                        "synthetic desktops are at least {SYNTHETIC_MIN_WIDTH}x{SYNTHETIC_MIN_HEIGHT}"
                    ));
                }
                check_fps(p.fps)?;
                if p.ticks.is_some_and(|t| t > MAX_TICKS) {
                    return Err(format!("ticks must be at most {MAX_TICKS}"));
                }
                if let Some(w) = &p.workload {
                    let known = SYNTHETIC_WORKLOADS.contains(&w.as_str());
                    if !known {
                        return Err(format!(
                            "unknown workload (one of: {})",
                            SYNTHETIC_WORKLOADS.join(", ")
                        ));
                    }
                }
            }
            DesktopSpec::X11(p) => {
                check_size(p.width, p.height)?;
                check_fps(p.fps)?;
                if let Some(d) = &p.display {
                    let number = d.strip_prefix(':').unwrap_or("");
                    if number.is_empty()
                        || number.len() > 5
                        || !number.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err("display must be ':N' (a local X display)".into());
                    }
                }
                if p.command.as_ref().is_some_and(|c| c.len() > MAX_COMMAND) {
                    return Err(format!("command is longer than {MAX_COMMAND} bytes"));
                }
                if let Some(s) = &p.server {
                    if !matches!(s.as_str(), "xvfb" | "xorg" | "xorg-dummy") {
                        return Err("server must be 'xvfb' or 'xorg'".into());
                    }
                }
                p.clipboard_policy()?;
                if let Some(l) = &p.layout {
                    let ok = !l.is_empty()
                        && l.len() <= 64
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_-,()".contains(&b));
                    if !ok {
                        return Err("layout is not an XKB layout name".into());
                    }
                }
            }
            DesktopSpec::Kvm(p) => {
                check_size(p.width, p.height)?;
                check_fps(p.fps)?;
                if let Some(image) = &p.image {
                    if !valid_image_name(image) {
                        return Err(
                            "image must be a name (letters, digits, '-', '_' and '.', not \
                             starting with '.'), not a path"
                                .into(),
                        );
                    }
                }
                if let Some(m) = p.memory_mib {
                    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&m) {
                        return Err(format!(
                            "memory_mib must be {MIN_MEMORY_MIB} to {MAX_MEMORY_MIB}"
                        ));
                    }
                }
                if p.vcpus.is_some_and(|v| v == 0 || v > MAX_VCPUS) {
                    return Err(format!("vcpus must be 1 to {MAX_VCPUS}"));
                }
            }
        }
        Ok(())
    }
}

/// Whether `name` can name a guest image (it becomes a directory name on the host).
pub fn valid_image_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_size(width: Option<u32>, height: Option<u32>) -> Result<(), String> {
    for (what, edge) in [("width", width), ("height", height)] {
        if let Some(e) = edge {
            if !(MIN_EDGE..=MAX_EDGE).contains(&e) {
                return Err(format!("{what} must be {MIN_EDGE} to {MAX_EDGE}"));
            }
        }
    }
    if let (Some(w), Some(h)) = (width, height) {
        if Size::new(w, h).area() > MAX_DESKTOP_PIXELS {
            return Err(format!("{w}x{h} has more than {MAX_DESKTOP_PIXELS} pixels"));
        }
    }
    Ok(())
}

fn check_fps(fps: Option<u32>) -> Result<(), String> {
    match fps {
        Some(f) if f == 0 || f > MAX_FPS => Err(format!("fps must be 1 to {MAX_FPS}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: &str, params: &str) -> (String, String) {
        (kind.into(), params.into())
    }

    fn parse((kind, params): &(String, String)) -> Result<DesktopSpec, SpecError> {
        DesktopSpec::parse(kind, params)
    }

    #[test]
    fn defaults_and_good_values_parse() {
        assert_eq!(
            parse(&spec("synthetic", "")),
            Ok(DesktopSpec::Synthetic(SyntheticParams::default()))
        );
        for (kind, params) in [
            (
                "synthetic",
                r#"{"workload":"typing","width":800,"height":600,"fps":60}"#,
            ),
            (
                "x11",
                r#"{"width":1280,"height":800,"command":"xterm","layout":"de","server":"xorg"}"#,
            ),
            ("x11", r#"{"display":":5"}"#),
            (
                "kvm",
                r#"{"image":"debian-12.1","memory_mib":1024,"vcpus":2}"#,
            ),
        ] {
            assert!(parse(&spec(kind, params)).is_ok(), "{kind} {params}");
        }
    }

    #[test]
    fn what_the_host_would_refuse_is_refused_here() {
        for (kind, params) in [
            ("synthetic", r#"{"width":0}"#),
            ("synthetic", r#"{"width":100000,"height":100}"#),
            ("synthetic", r#"{"width":8192,"height":1024}"#),
            ("synthetic", r#"{"width":320,"height":240}"#),
            ("synthetic", r#"{"workload":"Typing"}"#),
            ("synthetic", r#"{"workload":"nope"}"#),
            ("synthetic", r#"{"colour":"red"}"#),
            ("synthetic", r#""a string""#),
            ("synthetic", "[1]"),
            ("kvm", "[null, null]"),
            ("synthetic", r#"{"fps":0}"#),
            ("x11", r#"{"display":"remote:0"}"#),
            ("x11", r#"{"server":"xwayland"}"#),
            ("x11", r#"{"layout":"de; rm -rf /"}"#),
            ("kvm", r#"{"image":"../../etc"}"#),
            ("kvm", r#"{"image":".hidden"}"#),
            ("kvm", r#"{"vcpus":0}"#),
            ("kvm", r#"{"memory_mib":1000000000}"#),
            ("floppy", "{}"),
        ] {
            let e = parse(&spec(kind, params));
            assert!(e.is_err(), "{kind} {params} was accepted");
        }
        assert!(parse(&spec("synthetic", &" ".repeat(MAX_PARAMS + 1))).is_err());
    }

    #[test]
    fn hosts_check_the_typed_spec_again() {
        let spec = DesktopSpec::parse("kvm", r#"{"image":"tiny","vcpus":2}"#).unwrap();
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&spec, config).unwrap();
        let (back, _): (DesktopSpec, _) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(back, spec);
        assert_eq!(back.kind(), "kvm");
        // A link peer is not trusted to have checked: the host checks again.
        let forged = DesktopSpec::Kvm(KvmParams {
            vcpus: Some(200),
            ..KvmParams::default()
        });
        assert!(forged.check().unwrap_err().to_string().contains("vcpus"));
    }
}

//! The one way a desktop source is made: a [`DesktopSpec`] (from the broker, or built
//! from the command line) becomes a [`SourceConfig`] with every default applied here,
//! which [`SourceConfig::open`] starts.

use std::path::Path;

use oriel_protocol::desktop_spec::DesktopSpec;
use oriel_protocol::Size;

use super::kvm::{KvmDesktopConfig, KvmSource};
use super::synthetic::{SyntheticConfig, SyntheticSource};
use super::x11::X11Source;
use super::xserver::{XServerKind, XSessionConfig};
use super::FrameSource;
use crate::clipboard::ClipboardSetting;

/// The image `kvm` desktops boot when they name none: what `image build` makes.
pub const DEFAULT_IMAGE: &str = "debian";
/// Frame rate of desktops that name none.
pub const DEFAULT_FPS: u32 = 30;
/// Size of x11 desktops that name none (synthetic ones: [`SyntheticConfig::default`]).
pub const DEFAULT_X11_SIZE: Size = Size::new(1920, 1080);
/// Size of kvm desktops that name none: what the guest's framebuffer console suits.
pub const DEFAULT_KVM_SIZE: Size = Size::new(1024, 768);

/// A desktop to start, resolved.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Synthetic(SyntheticConfig),
    /// Serve an X display that is already running.
    X11Display {
        display: String,
        fps: u32,
        clipboard: ClipboardSetting,
    },
    /// Start an X server and a session on it.
    X11Session {
        session: XSessionConfig,
        fps: u32,
        clipboard: ClipboardSetting,
    },
    Kvm(KvmDesktopConfig),
}

impl SourceConfig {
    /// Checks `spec` (whoever sent it) and fills in what it leaves unset.
    pub fn from_spec(spec: &DesktopSpec) -> anyhow::Result<SourceConfig> {
        spec.check()?;
        Ok(match spec {
            DesktopSpec::Synthetic(p) => {
                let defaults = SyntheticConfig::default();
                SourceConfig::Synthetic(SyntheticConfig {
                    workload: match &p.workload {
                        Some(w) => w.parse()?,
                        None => defaults.workload,
                    },
                    size: Size::new(
                        p.width.unwrap_or(defaults.size.width),
                        p.height.unwrap_or(defaults.size.height),
                    ),
                    fps: p.fps.unwrap_or(defaults.fps),
                    max_ticks: p.ticks,
                })
            }
            DesktopSpec::X11(p) => {
                let fps = p.fps.unwrap_or(DEFAULT_FPS);
                let clipboard = ClipboardSetting {
                    policy: p.clipboard_policy().map_err(anyhow::Error::msg)?,
                    primary: p.clipboard_primary.unwrap_or(false),
                };
                match &p.display {
                    Some(display) => SourceConfig::X11Display {
                        display: display.clone(),
                        fps,
                        clipboard,
                    },
                    None => SourceConfig::X11Session {
                        session: XSessionConfig {
                            kind: match &p.server {
                                Some(s) => s.parse()?,
                                None => XServerKind::default(),
                            },
                            size: Size::new(
                                p.width.unwrap_or(DEFAULT_X11_SIZE.width),
                                p.height.unwrap_or(DEFAULT_X11_SIZE.height),
                            ),
                            command: p.command.clone(),
                            layout: p.layout.clone(),
                            audio: p.audio.unwrap_or(true),
                            microphone: p.microphone.unwrap_or(true),
                        },
                        fps,
                        clipboard,
                    },
                }
            }
            DesktopSpec::Kvm(p) => SourceConfig::Kvm(KvmDesktopConfig {
                image: p.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into()),
                size: Size::new(
                    p.width.unwrap_or(DEFAULT_KVM_SIZE.width),
                    p.height.unwrap_or(DEFAULT_KVM_SIZE.height),
                ),
                memory_mib: p.memory_mib,
                vcpus: p.vcpus,
                fps: p.fps.unwrap_or(DEFAULT_FPS),
            }),
        })
    }

    /// Starts the desktop; `images` is the guest image store of kvm desktops.
    pub fn open(&self, images: &Path) -> anyhow::Result<Box<dyn FrameSource>> {
        Ok(match self {
            SourceConfig::Synthetic(config) => Box::new(SyntheticSource::new(config.clone())?),
            SourceConfig::X11Display {
                display,
                fps,
                clipboard,
            } => Box::new(X11Source::connect(Some(display), *fps)?.with_clipboard(*clipboard)),
            SourceConfig::X11Session {
                session,
                fps,
                clipboard,
            } => Box::new(X11Source::spawn_session(session, *fps)?.with_clipboard(*clipboard)),
            SourceConfig::Kvm(config) => Box::new(KvmSource::start(images, config)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oriel_protocol::desktop_spec::{KvmParams, SyntheticParams, X11Params};

    #[test]
    fn unset_parameters_take_the_defaults() {
        let synthetic =
            SourceConfig::from_spec(&DesktopSpec::Synthetic(SyntheticParams::default()));
        assert!(
            matches!(synthetic, Ok(SourceConfig::Synthetic(c)) if c == SyntheticConfig::default())
        );
        let x11 = SourceConfig::from_spec(&DesktopSpec::X11(X11Params::default())).unwrap();
        assert!(
            matches!(&x11, SourceConfig::X11Session { session, fps: DEFAULT_FPS, .. }
                if session.size == DEFAULT_X11_SIZE && session.command.is_none())
        );
        let kvm = SourceConfig::from_spec(&DesktopSpec::Kvm(KvmParams::default())).unwrap();
        assert!(
            matches!(&kvm, SourceConfig::Kvm(c) if c.image == DEFAULT_IMAGE && c.size == DEFAULT_KVM_SIZE)
        );
    }

    #[test]
    fn a_pools_clipboard_policy_reaches_its_desktops() {
        let spec = DesktopSpec::parse(
            "x11",
            r#"{"clipboard": "to-client", "clipboard_max_bytes": 4096, "clipboard_primary": true}"#,
        )
        .unwrap();
        let SourceConfig::X11Session { clipboard, .. } = SourceConfig::from_spec(&spec).unwrap()
        else {
            panic!("an x11 session");
        };
        assert_eq!(
            clipboard,
            ClipboardSetting {
                policy: oriel_protocol::ClipboardPolicy {
                    to_desktop: false,
                    to_client: true,
                    max_bytes: 4096,
                },
                primary: true,
            }
        );
        let err = DesktopSpec::parse("x11", r#"{"clipboard": "sideways"}"#).unwrap_err();
        assert!(err.to_string().contains("clipboard must be"), "{err}");
    }

    #[test]
    fn a_spec_is_checked_whoever_sent_it() {
        let forged = DesktopSpec::Synthetic(SyntheticParams {
            width: Some(100_000),
            ..SyntheticParams::default()
        });
        assert!(SourceConfig::from_spec(&forged).is_err());
        let attach = DesktopSpec::X11(X11Params {
            display: Some(":7".into()),
            ..X11Params::default()
        });
        assert!(matches!(
            SourceConfig::from_spec(&attach),
            Ok(SourceConfig::X11Display { display, .. }) if display == ":7"
        ));
    }
}

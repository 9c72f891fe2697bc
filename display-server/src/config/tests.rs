//! Flags, the TOML file and their defaults, resolved.

use super::*;
use crate::source::synthetic::SyntheticConfig;

#[test]
fn defaults_serve_one_mixed_desktop() {
    let r = Args::default().resolve().unwrap();
    assert_eq!(r.desktops.len(), 1);
    assert_eq!(r.desktops[0].0, "default");
    assert!(
        matches!(&r.desktops[0].1, SourceConfig::Synthetic(c) if *c == SyntheticConfig::default())
    );
    assert_eq!(r.server.frame_window, 4);
}

#[test]
fn flags_override_file() {
    let dir = std::env::temp_dir().join(format!("oriel-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ds.toml");
    std::fs::write(
        &path,
        "fps = 10\nframe-window = 4\ndesktops = [\"a=idle\"]\n",
    )
    .unwrap();
    let args = Args {
        config: Some(path),
        fps: Some(20),
        ..Default::default()
    };
    let r = args.resolve().unwrap();
    assert!(matches!(&r.desktops[0].1, SourceConfig::Synthetic(c) if c.fps == 20));
    assert_eq!(r.server.frame_window, 4);
    assert_eq!(r.desktops[0].0, "a");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_cluster_of_brokers_from_the_file_or_the_flags() {
    let dir = std::env::temp_dir().join(format!("oriel-cfg-brokers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fingerprint = "ab".repeat(32);
    let one = dir.join("one.toml");
    std::fs::write(
        &one,
        format!("broker = \"127.0.0.1:1\"\nbroker-fingerprint = \"{fingerprint}\"\n"),
    )
    .unwrap();
    let many = dir.join("many.toml");
    std::fs::write(
        &many,
        format!(
            "broker = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nbroker-fingerprint = \"{fingerprint}\"\n"
        ),
    )
    .unwrap();
    let brokers = |args: Args| {
        let r = args.resolve().unwrap();
        assert!(r.server.require_tickets);
        r.broker
            .unwrap()
            .addresses
            .iter()
            .map(|a| a.port())
            .collect::<Vec<_>>()
    };
    let from = |path: &std::path::Path| Args {
        config: Some(path.to_path_buf()),
        ..Default::default()
    };
    assert_eq!(brokers(from(&one)), [1]);
    assert_eq!(brokers(from(&many)), [1, 2]);
    let flags = Args {
        broker: vec![
            "127.0.0.1:3".parse().unwrap(),
            "127.0.0.1:4".parse().unwrap(),
        ],
        ..from(&many)
    };
    assert_eq!(brokers(flags), [3, 4], "the flags win over the file");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn x11_desktops_attach_or_start_their_own() {
    let args = Args {
        desktops: vec!["a=x11:5".into(), "b=x11".into()],
        size: Some("800x600".into()),
        ..Default::default()
    };
    let r = args.resolve().unwrap();
    assert!(matches!(
        &r.desktops[0].1,
        SourceConfig::X11Display { display, fps: 30, .. } if display == ":5"
    ));
    assert!(matches!(
        &r.desktops[1].1,
        SourceConfig::X11Session { session, fps: 30, .. } if session.size == Size::new(800, 600)
    ));
    let args = Args {
        display: Some(":7".into()),
        ..Default::default()
    };
    let r = args.resolve().unwrap();
    assert_eq!(r.desktops.len(), 1);
    assert_eq!(r.desktops[0].0, "default");
    assert!(
        matches!(&r.desktops[0].1, SourceConfig::X11Display { display, .. } if display == ":7")
    );
}

#[test]
fn bad_values_are_clear_errors() {
    assert!(parse_size("1920").is_err());
    assert!(parse_size("0x10").is_err());
    let args = Args {
        desktops: vec!["x=dance".into()],
        ..Default::default()
    };
    let err = format!("{:#}", args.resolve().unwrap_err());
    assert!(err.contains("dance"), "{err}");
    for (desktop, size) in [
        ("v=kvm", None),
        ("s=idle", Some("320x200")),
        ("x=x11:a", None),
    ] {
        let args = Args {
            desktops: vec![desktop.into()],
            size: size.map(Into::into),
            ..Default::default()
        };
        let err = format!("{:#}", args.resolve().unwrap_err());
        assert!(err.contains(desktop), "{err}");
    }
}

#[test]
fn kvm_desktops_have_their_own_default_size() {
    let args = Args {
        desktops: vec!["v=kvm:tiny".into()],
        fps: Some(10),
        ..Default::default()
    };
    let r = args.resolve().unwrap();
    assert!(matches!(
        &r.desktops[0].1,
        SourceConfig::Kvm(c) if c.image == "tiny" && c.size == crate::source::config::DEFAULT_KVM_SIZE && c.fps == 10
    ));
}

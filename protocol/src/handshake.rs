//! The versioned handshake, as pure functions over `Hello` and `HelloReply`.

use crate::messages::*;
use crate::Size;

/// Server-side check of a client's `Hello`: protocol version and requested capabilities.
/// Desktop and ticket checks belong to the server, which knows its desktops and keys.
pub fn check_hello(hello: &Hello, ours: &Capabilities) -> Result<Capabilities, Reject> {
    if hello.version != PROTOCOL_VERSION {
        return Err(Reject {
            code: RejectCode::UnsupportedVersion,
            message: format!(
                "client speaks protocol version {}, this server speaks {}",
                hello.version, PROTOCOL_VERSION
            ),
        });
    }
    if hello.desktop.len() > 256 || hello.ticket.len() > 4096 || hello.client_name.len() > 256 {
        return Err(Reject {
            code: RejectCode::Malformed,
            message: "hello fields exceed their size limits".into(),
        });
    }
    if let Some(held) = &hello.held {
        let tiles = u64::from(held.size.width.div_ceil(crate::TILE))
            * u64::from(held.size.height.div_ceil(crate::TILE));
        if !valid_desktop_size(held.size)
            || held.tiles.len() > MAX_HELD_TILES
            || held.tiles.len() as u64 != tiles
        {
            return Err(Reject {
                code: RejectCode::Malformed,
                message: "the held screen's tiles do not match its size".into(),
            });
        }
    }
    if let Some(size) = hello.desired_size {
        if !valid_desktop_size(size) {
            return Err(Reject {
                code: RejectCode::Malformed,
                message: format!(
                    "desired size {}x{} is out of range",
                    size.width, size.height
                ),
            });
        }
    }
    Ok(ours.intersect(&hello.capabilities))
}

/// Client-side check of the server's `Welcome`.
pub fn check_welcome(welcome: &Welcome, ours: &Capabilities) -> Result<(), String> {
    if welcome.version != PROTOCOL_VERSION {
        return Err(format!(
            "server speaks protocol version {}, this client speaks {}",
            welcome.version, PROTOCOL_VERSION
        ));
    }
    if !valid_desktop_size(welcome.desktop_size) {
        return Err(format!(
            "server announced an invalid desktop size {}x{}",
            welcome.desktop_size.width, welcome.desktop_size.height
        ));
    }
    let caps = welcome.capabilities;
    if caps.flags & !ours.flags != 0 || caps.tile_cache_entries > ours.tile_cache_entries {
        return Err("server chose capabilities this client did not offer".into());
    }
    Ok(())
}

pub fn valid_desktop_size(size: Size) -> bool {
    (1..=MAX_DESKTOP_EDGE).contains(&size.width)
        && (1..=MAX_DESKTOP_EDGE).contains(&size.height)
        && size.area() <= MAX_DESKTOP_PIXELS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            capabilities: Capabilities::all(),
            desktop: "default".into(),
            ticket: vec![],
            desired_size: None,
            client_name: "test".into(),
            held: None,
        }
    }

    #[test]
    fn accepts_current_version_and_intersects_caps() {
        let ours = Capabilities {
            flags: CAP_SOLID | CAP_ZSTD,
            tile_cache_entries: 100,
        };
        let caps = check_hello(&hello(), &ours).unwrap();
        assert_eq!(caps.flags, CAP_SOLID | CAP_ZSTD);
        assert_eq!(caps.tile_cache_entries, 100);
    }

    #[test]
    fn rejects_other_versions_and_bad_sizes() {
        let mut h = hello();
        h.version = 99;
        let r = check_hello(&h, &Capabilities::all()).unwrap_err();
        assert_eq!(r.code, RejectCode::UnsupportedVersion);
        let mut h = hello();
        h.desired_size = Some(Size::new(0, 10));
        assert_eq!(
            check_hello(&h, &Capabilities::all()).unwrap_err().code,
            RejectCode::Malformed
        );
    }

    #[test]
    fn a_held_screen_must_list_one_hash_per_tile() {
        let mut h = hello();
        h.held = Some(HeldScreen {
            size: Size::new(130, 64),
            tiles: vec![1, 2, 3],
        });
        assert!(check_hello(&h, &Capabilities::all()).is_ok());
        for (size, tiles) in [
            (Size::new(130, 64), vec![1, 2]),
            (Size::new(0, 64), vec![]),
            (Size::new(8192, 8192), vec![0; 16384]),
        ] {
            h.held = Some(HeldScreen { size, tiles });
            assert_eq!(
                check_hello(&h, &Capabilities::all()).unwrap_err().code,
                RejectCode::Malformed
            );
        }
    }

    #[test]
    fn client_refuses_caps_it_did_not_offer() {
        let ours = Capabilities {
            flags: CAP_SOLID,
            tile_cache_entries: 10,
        };
        let w = Welcome {
            version: PROTOCOL_VERSION,
            session_id: 1,
            desktop_size: Size::new(10, 10),
            capabilities: Capabilities::all(),
        };
        assert!(check_welcome(&w, &ours).is_err());
    }
}

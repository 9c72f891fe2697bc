//! Linux evdev key codes (what the Oriel protocol carries) to PS/2 scan codes.
//!
//! A PS/2 keyboard sends scan code set 2; the i8042 translates it to set 1 when the guest
//! asks (command byte bit 6, which Linux and BIOSes set). Each key here carries both
//! codes, so translation is a table lookup rather than a 256-entry reverse map.

/// A key's make codes; the break code is set 2's `F0` prefix or set 1's bit 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanCode {
    pub set2: u8,
    pub set1: u8,
    /// Sent with an `E0` prefix in both sets.
    pub extended: bool,
}

/// Set 2 codes of evdev keys 1..=88, in evdev order (evdev numbers these keys by their
/// set 1 code, so set 1 is the index itself). 0: no key.
const SET2_BASIC: [u8; 89] = [
    0x00, 0x76, 0x16, 0x1e, 0x26, 0x25, 0x2e, 0x36, 0x3d, 0x3e, 0x46, 0x45, 0x4e, 0x55, 0x66, 0x0d,
    0x15, 0x1d, 0x24, 0x2d, 0x2c, 0x35, 0x3c, 0x43, 0x44, 0x4d, 0x54, 0x5b, 0x5a, 0x14, 0x1c, 0x1b,
    0x23, 0x2b, 0x34, 0x33, 0x3b, 0x42, 0x4b, 0x4c, 0x52, 0x0e, 0x12, 0x5d, 0x1a, 0x22, 0x21, 0x2a,
    0x32, 0x31, 0x3a, 0x41, 0x49, 0x4a, 0x59, 0x7c, 0x11, 0x29, 0x58, 0x05, 0x06, 0x04, 0x0c, 0x03,
    0x0b, 0x83, 0x0a, 0x01, 0x09, 0x77, 0x7e, 0x6c, 0x75, 0x7d, 0x7b, 0x6b, 0x73, 0x74, 0x79, 0x69,
    0x72, 0x7a, 0x70, 0x71, 0x00, 0x00, 0x61, 0x78, 0x07,
];

/// Extended keys: (evdev, set 2, set 1).
const EXTENDED: [(u16, u8, u8); 18] = [
    (96, 0x5a, 0x1c),  // keypad Enter
    (97, 0x14, 0x1d),  // right Ctrl
    (98, 0x4a, 0x35),  // keypad /
    (99, 0x7c, 0x37),  // Print Screen
    (100, 0x11, 0x38), // right Alt
    (102, 0x6c, 0x47), // Home
    (103, 0x75, 0x48), // Up
    (104, 0x7d, 0x49), // Page Up
    (105, 0x6b, 0x4b), // Left
    (106, 0x74, 0x4d), // Right
    (107, 0x69, 0x4f), // End
    (108, 0x72, 0x50), // Down
    (109, 0x7a, 0x51), // Page Down
    (110, 0x70, 0x52), // Insert
    (111, 0x71, 0x53), // Delete
    (125, 0x1f, 0x5b), // left Meta
    (126, 0x27, 0x5c), // right Meta
    (127, 0x2f, 0x5d), // Compose (menu)
];

/// The scan codes of an evdev key; `None` for keys a PS/2 keyboard does not have.
pub fn scan_code(evdev: u16) -> Option<ScanCode> {
    // SET2_BASIC has fewer than 256 entries, so its keys are also their u8 set-1 codes.
    if let (Some(&set2), Ok(set1)) = (SET2_BASIC.get(usize::from(evdev)), u8::try_from(evdev)) {
        return (set2 != 0).then_some(ScanCode {
            set2,
            set1,
            extended: false,
        });
    }
    EXTENDED
        .iter()
        .find(|(code, _, _)| *code == evdev)
        .map(|&(_, set2, set1)| ScanCode {
            set2,
            set1,
            extended: true,
        })
}

/// The bytes a key press or release sends in scan code set 1 or 2.
pub fn bytes(code: ScanCode, down: bool, set1: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(3);
    if code.extended {
        out.push(0xe0);
    }
    if set1 {
        out.push(if down { code.set1 } else { code.set1 | 0x80 });
    } else {
        if !down {
            out.push(0xf0);
        }
        out.push(code.set2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys() {
        let a = scan_code(30).unwrap(); // KEY_A
        assert_eq!((a.set2, a.set1, a.extended), (0x1c, 0x1e, false));
        assert_eq!(bytes(a, true, false), [0x1c]);
        assert_eq!(bytes(a, false, false), [0xf0, 0x1c]);
        assert_eq!(bytes(a, false, true), [0x9e]);
        let del = scan_code(111).unwrap();
        assert_eq!(bytes(del, true, true), [0xe0, 0x53]);
        assert_eq!(bytes(del, false, false), [0xe0, 0xf0, 0x71]);
        assert_eq!(scan_code(12).unwrap().set2, 0x4e); // minus
        assert_eq!(scan_code(88).unwrap().set2, 0x07); // F12
        assert!(scan_code(84).is_none() && scan_code(500).is_none());
    }

    #[test]
    fn set2_codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in (0..200).filter_map(scan_code) {
            assert!(seen.insert((code.set2, code.extended)), "{code:?}");
        }
    }
}

//! Linux evdev key codes (linux/input-event-codes.h) to the edits they make in the editor.

/// What a key press does to the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyAction {
    Char(char),
    Enter,
    Backspace,
}

pub(crate) const KEY_LEFTSHIFT: u16 = 42;
pub(crate) const KEY_RIGHTSHIFT: u16 = 54;

/// Unshifted and shifted characters per key code (US layout).
const KEYS: &[(u16, char, char)] = &[
    (2, '1', '!'),
    (3, '2', '@'),
    (4, '3', '#'),
    (5, '4', '$'),
    (6, '5', '%'),
    (7, '6', '^'),
    (8, '7', '&'),
    (9, '8', '*'),
    (10, '9', '('),
    (11, '0', ')'),
    (12, '-', '_'),
    (13, '=', '+'),
    (16, 'q', 'Q'),
    (17, 'w', 'W'),
    (18, 'e', 'E'),
    (19, 'r', 'R'),
    (20, 't', 'T'),
    (21, 'y', 'Y'),
    (22, 'u', 'U'),
    (23, 'i', 'I'),
    (24, 'o', 'O'),
    (25, 'p', 'P'),
    (30, 'a', 'A'),
    (31, 's', 'S'),
    (32, 'd', 'D'),
    (33, 'f', 'F'),
    (34, 'g', 'G'),
    (35, 'h', 'H'),
    (36, 'j', 'J'),
    (37, 'k', 'K'),
    (38, 'l', 'L'),
    (39, ';', ':'),
    (40, '\'', '"'),
    (44, 'z', 'Z'),
    (45, 'x', 'X'),
    (46, 'c', 'C'),
    (47, 'v', 'V'),
    (48, 'b', 'B'),
    (49, 'n', 'N'),
    (50, 'm', 'M'),
    (51, ',', '<'),
    (52, '.', '>'),
    (53, '/', '?'),
    (57, ' ', ' '),
];

const KEY_BACKSPACE: u16 = 14;
const KEY_ENTER: u16 = 28;
const KEY_KPENTER: u16 = 96;

/// The edit a key press makes, if the key produces one.
pub(crate) fn key_action(code: u16, shift: bool) -> Option<KeyAction> {
    match code {
        KEY_ENTER | KEY_KPENTER => Some(KeyAction::Enter),
        KEY_BACKSPACE => Some(KeyAction::Backspace),
        _ => KEYS
            .iter()
            .find(|(k, _, _)| *k == code)
            .map(|&(_, plain, shifted)| KeyAction::Char(if shift { shifted } else { plain })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_space_enter() {
        assert_eq!(key_action(30, false), Some(KeyAction::Char('a')));
        assert_eq!(key_action(16, true), Some(KeyAction::Char('Q')));
        assert_eq!(key_action(50, false), Some(KeyAction::Char('m')));
        assert_eq!(key_action(2, false), Some(KeyAction::Char('1')));
        assert_eq!(key_action(11, false), Some(KeyAction::Char('0')));
        assert_eq!(key_action(57, false), Some(KeyAction::Char(' ')));
        assert_eq!(key_action(28, false), Some(KeyAction::Enter));
        assert_eq!(key_action(KEY_LEFTSHIFT, false), None);
    }
}

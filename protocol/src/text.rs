//! Bounding untrusted text before it is stored or logged: names, reasons and details
//! that arrive from clients, hosts or guests can be arbitrarily long.

use std::borrow::Cow;

/// The longest piece of untrusted text a log line or an audit detail carries.
pub const MAX_LOGGED: usize = 256;

/// `text` cut to at most `max` bytes on a character boundary, with `…` marking a cut,
/// and control characters (which could forge log lines) shown as `\u{…}` escapes.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    let clean = !text.chars().any(char::is_control);
    if clean && text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(max.min(text.len()) + 3);
    for c in text.chars() {
        let piece: Cow<'_, str> = if c.is_control() {
            Cow::Owned(c.escape_unicode().to_string())
        } else {
            Cow::Owned(c.to_string())
        };
        if out.len() + piece.len() > max {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    Cow::Owned(out)
}

/// [`clip`] to [`MAX_LOGGED`].
pub fn for_log(text: &str) -> Cow<'_, str> {
    clip(text, MAX_LOGGED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clean_text_is_kept() {
        assert!(matches!(clip("alice", 10), Cow::Borrowed("alice")));
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let long = "é".repeat(1000);
        let cut = clip(&long, 11);
        assert_eq!(cut, "ééééé…");
        assert!(cut.len() <= 11 + '…'.len_utf8());
        assert!(for_log(&"x".repeat(1 << 20)).len() <= MAX_LOGGED + 3);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clip("a\nb", 64), "a\\u{a}b");
        assert_eq!(clip("a\u{1b}[2J", 64), "a\\u{1b}[2J");
    }
}

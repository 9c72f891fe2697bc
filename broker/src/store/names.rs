//! Names of users, groups and pools as people read them.
//!
//! A name is NFKC-normalised and trimmed; it may hold letters and digits of the scripts
//! Unicode recommends for identifiers (UTS #39), spaces between words and a few
//! punctuation marks, but no control, format or other invisible character, and no mix of
//! scripts that could imitate another name (Latin with Cyrillic, say). Two names are the
//! same when their keys are: the UTS #39 confusable skeleton of the lower-cased name. So
//! `alice`, `ALICE`, `alice ` and `аlice` (Cyrillic а) are one name, and a look-alike of
//! an existing name is refused as a conflict.

use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

use super::{Result, StoreError};

/// Longest name, in bytes.
pub const MAX_NAME: usize = 128;

/// Punctuation allowed besides what UTS #39 allows in identifiers.
const EXTRA: &[char] = &[' ', '_', '@', '+'];
/// Allowed in identifiers by UTS #39, but invisible.
const INVISIBLE: &[char] = &['\u{200c}', '\u{200d}'];

/// A checked name: what is stored and shown, and the key it is compared by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub text: String,
    pub key: String,
}

/// Checks and normalises a new name of a `what` (user, group, pool).
pub fn normalize(what: &str, raw: &str) -> Result<Name> {
    let text: String = raw.nfkc().collect::<String>().trim().to_string();
    if text.is_empty() {
        return Err(StoreError::Invalid(format!("{what} name is empty")));
    }
    if text.len() > MAX_NAME {
        return Err(StoreError::Invalid(format!(
            "{what} name is longer than {MAX_NAME} bytes"
        )));
    }
    if let Some(c) = text.chars().find(|c| !allowed(*c)) {
        return Err(StoreError::Invalid(format!(
            "{what} name contains {}, which is not allowed in names",
            describe(c)
        )));
    }
    if text.contains("  ") {
        return Err(StoreError::Invalid(format!(
            "{what} name has several spaces in a row"
        )));
    }
    // Scripts are judged on letters and digits; the extra punctuation has none.
    let letters: String = text.chars().filter(|c| !EXTRA.contains(c)).collect();
    if !letters
        .as_str()
        .check_restriction_level(RestrictionLevel::ModeratelyRestrictive)
    {
        return Err(StoreError::Invalid(format!(
            "{what} name mixes scripts in a way that can imitate other names"
        )));
    }
    let key = key(&text);
    Ok(Name { text, key })
}

/// The key a name (or what someone typed for it) is looked up by. Total: any text has a
/// key, so lookups need no validation; only new names are checked.
pub fn key(raw: &str) -> String {
    let folded: String = raw.nfkc().collect::<String>().trim().to_lowercase();
    unicode_security::skeleton(&folded).collect()
}

fn allowed(c: char) -> bool {
    EXTRA.contains(&c) || (c.identifier_allowed() && !INVISIBLE.contains(&c))
}

fn describe(c: char) -> String {
    if c.is_control() || c.is_whitespace() || !c.identifier_allowed() {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("'{c}' (U+{:04X})", u32::from(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_spaces_and_width_variants_are_one_name() {
        let k = normalize("user", "alice").unwrap().key;
        assert_eq!(normalize("user", "ALICE").unwrap().key, k);
        assert_eq!(normalize("user", "  alice ").unwrap().text, "alice");
        assert_eq!(
            normalize("user", "ａｌｉｃｅ").unwrap().text,
            "alice",
            "NFKC"
        );
        assert_eq!(
            key("ali\u{200b}ce"),
            k,
            "lookups ignore invisible characters"
        );
    }

    #[test]
    fn invisible_and_control_characters_are_refused() {
        for bad in [
            "ali\u{200b}ce",
            "ali\u{200d}ce",
            "a\u{0}b",
            "a\nb",
            "al\u{feff}ice",
        ] {
            let e = normalize("user", bad).unwrap_err().to_string();
            assert!(e.contains("not allowed"), "{bad:?}: {e}");
        }
        assert!(normalize("user", "").is_err());
        assert!(normalize("user", "   ").is_err());
        assert!(normalize("user", &"x".repeat(MAX_NAME + 1)).is_err());
        assert!(normalize("user", "a  b").is_err());
    }

    #[test]
    fn look_alikes_share_a_key_or_are_refused() {
        // Cyrillic а in a Latin name: refused as mixed script.
        assert!(normalize("user", "\u{430}lice").is_err());
        // Whole-script look-alikes share the Latin name's key.
        assert_eq!(key("раураl"), key("paypal"));
        assert_eq!(key("rnary"), key("mary"));
    }

    #[test]
    fn ordinary_names_of_many_scripts_are_fine() {
        for good in [
            "alice",
            "Bob Smith",
            "j.doe@example.org",
            "o'neil",
            "team-3_west",
            "Zoë",
            "José",
            "山田太郎",
            "Иван",
        ] {
            let n = normalize("user", good).unwrap();
            assert_eq!(n.text, good);
        }
    }
}

//! Names of users, groups and pools as people read them.
//!
//! A new name must match [`oriel_protocol::api::NAME_PATTERN`]: ASCII letters and
//! digits, then also `.`, `_`, `@`, `+` and `-` (no spaces, no control, format or other
//! invisible characters, no scripts that imitate Latin). Two names are the same when
//! their keys are: the UTS #39 confusable skeleton of the NFKC, lower-cased text. So
//! `alice` and `ALICE` are one name, and `rnary` is refused beside `mary`, `paypa1`
//! beside `paypal`. Lookups go by key too, so a login as `ALICE` or `ａｌｉｃｅ` finds
//! `alice` (it still needs her password).

use oriel_protocol::api::{valid_name, MAX_NAME};
use unicode_normalization::UnicodeNormalization;

use super::{Result, StoreError};

/// A checked name: what is stored and shown, and the key it is compared by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub text: String,
    pub key: String,
}

/// Checks a new name of a `what` (user, group, pool).
pub fn normalize(what: &str, raw: &str) -> Result<Name> {
    if !valid_name(raw) {
        let why = if raw.is_empty() {
            "is empty".to_string()
        } else if raw.len() > MAX_NAME {
            format!("is longer than {MAX_NAME} characters")
        } else {
            "may hold only ASCII letters, digits and . _ @ + - (starting with a letter or digit)"
                .to_string()
        };
        return Err(StoreError::Invalid(format!("{what} name {why}")));
    }
    Ok(Name {
        text: raw.to_string(),
        key: key(raw),
    })
}

/// The key a name (or what someone typed for it) is looked up by. Total: any text has a
/// key, so lookups need no validation; only new names are checked.
pub fn key(raw: &str) -> String {
    let folded: String = raw.nfkc().collect::<String>().trim().to_lowercase();
    unicode_security::skeleton(&folded).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_width_variants_are_one_name() {
        let k = normalize("user", "alice").unwrap().key;
        assert_eq!(normalize("user", "ALICE").unwrap().key, k);
        assert_eq!(key("ａｌｉｃｅ"), k, "NFKC");
        assert_eq!(key(" alice "), k);
        assert_eq!(
            key("ali\u{200b}ce"),
            k,
            "lookups ignore invisible characters"
        );
    }

    #[test]
    fn spaces_invisible_and_control_characters_are_refused() {
        for bad in [
            "ali\u{200b}ce",
            "ali\u{200d}ce",
            "a\u{0}b",
            "a\nb",
            "al\u{feff}ice",
            "alice ",
            " alice",
            "a b",
            "\u{430}lice",
            "",
        ] {
            let e = normalize("user", bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid: user name"), "{bad:?}: {e}");
        }
        assert!(normalize("user", &"x".repeat(MAX_NAME + 1)).is_err());
    }

    #[test]
    fn look_alikes_share_a_key() {
        assert_eq!(key("paypa1"), key("paypal"));
        assert_eq!(key("rnary"), key("mary"));
        assert_eq!(key("раураl"), key("paypal"), "Cyrillic look-alikes too");
        assert_ne!(key("alice"), key("alicia"));
    }
}

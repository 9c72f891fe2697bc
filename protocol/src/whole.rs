//! Whole numbers as JSON Schema means them: `5` and `5.0` are the same integer, and a
//! query string's `"5"` is one too. serde's integer types take only the first; these
//! `deserialize_with` helpers take all three and refuse fractions and out-of-range values.
//! Binary formats (bincode, which cannot describe what it holds) carry the exact type:
//! there they read it as it is.

use serde::de::{Deserialize, Deserializer, Error, Visitor};

/// Deserializes a whole number into `T` (`#[serde(deserialize_with = "whole::number")]`).
pub fn number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128> + Deserialize<'de>,
{
    if !d.is_human_readable() {
        return T::deserialize(d);
    }
    let n = d.deserialize_any(WholeVisitor)?;
    T::try_from(n).map_err(|_| D::Error::custom(format!("{n} is out of range")))
}

/// Like [`number`], for an optional field (`null` or missing: `None`; add
/// `#[serde(default)]`).
pub fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128> + Deserialize<'de>,
{
    if !d.is_human_readable() {
        return Option::<T>::deserialize(d);
    }
    match d.deserialize_any(OptionalWholeVisitor)? {
        None => Ok(None),
        Some(n) => T::try_from(n)
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{n} is out of range"))),
    }
}

struct WholeVisitor;

impl Visitor<'_> for WholeVisitor {
    type Value = i128;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<i128, E> {
        Ok(i128::from(v))
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<i128, E> {
        Ok(i128::from(v))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<i128, E> {
        // Whole and within ±2^63, where f64 still says which integer it means.
        if v.fract() == 0.0 && v.abs() <= 9.2e18 {
            #[expect(
                clippy::cast_possible_truncation,
                reason = "v is whole and within ±2^63, so it fits an i128 exactly"
            )]
            Ok(v as i128)
        } else {
            Err(E::custom(format!("{v} is not a whole number")))
        }
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<i128, E> {
        match v.parse::<i128>() {
            Ok(n) => Ok(n),
            Err(_) => v
                .parse::<f64>()
                .map_err(|_| E::custom(format!("'{v}' is not a whole number")))
                .and_then(|f| self.visit_f64(f)),
        }
    }
}

struct OptionalWholeVisitor;

impl<'de> Visitor<'de> for OptionalWholeVisitor {
    type Value = Option<i128>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a whole number or null")
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(WholeVisitor).map(Some)
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<Self::Value, E> {
        WholeVisitor.visit_i64(v).map(Some)
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<Self::Value, E> {
        WholeVisitor.visit_u64(v).map(Some)
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Self::Value, E> {
        WholeVisitor.visit_f64(v).map(Some)
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
        WholeVisitor.visit_str(v).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct T {
        #[serde(deserialize_with = "super::number")]
        a: u32,
        #[serde(default, deserialize_with = "super::optional")]
        b: Option<i64>,
    }

    fn parse(json: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn whole_numbers_in_every_spelling() {
        assert_eq!(parse(r#"{"a": 5}"#).unwrap(), T { a: 5, b: None });
        assert_eq!(
            parse(r#"{"a": 5.0, "b": -7.0}"#).unwrap(),
            T { a: 5, b: Some(-7) }
        );
        assert_eq!(
            parse(r#"{"a": 1e3, "b": null}"#).unwrap(),
            T { a: 1000, b: None }
        );
        assert_eq!(
            parse(r#"{"a": "12", "b": "3.0"}"#).unwrap(),
            T { a: 12, b: Some(3) }
        );
    }

    #[test]
    fn fractions_and_overflow_are_refused() {
        for bad in [
            r#"{"a": 5.5}"#,
            r#"{"a": -1}"#,
            r#"{"a": 4294967296}"#,
            r#"{"a": 1e300}"#,
            r#"{"a": "x"}"#,
            r#"{"a": true}"#,
            r#"{"a": 1, "b": 9.3e18}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn binary_formats_carry_the_exact_type() {
        let config = bincode::config::standard();
        for t in [T { a: 7, b: None }, T { a: 0, b: Some(-3) }] {
            let bytes = bincode::serde::encode_to_vec(&t, config).unwrap();
            let (back, _): (T, _) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
            assert_eq!(back, t);
        }
    }
}

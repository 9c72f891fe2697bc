//! For tests of the servers' `/metrics`: an exposition read back, checking the framing
//! OpenMetrics asks for on the way (a test helper; `test-util` feature only).

use std::collections::HashMap;

/// The samples of an exposition (`name{labels}` → value) and each family's type.
/// Panics on what OpenMetrics forbids: no `# EOF` at the end, a family typed twice, a
/// series given twice, a value that is not a number.
pub fn parse(text: &str) -> (HashMap<String, f64>, HashMap<String, String>) {
    assert!(text.ends_with("# EOF\n"), "{text}");
    let (mut samples, mut types) = (HashMap::new(), HashMap::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a TYPE line names a kind");
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "{name} twice"
            );
        } else if !line.starts_with('#') {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value = value.parse().unwrap_or_else(|_| panic!("{line}"));
            assert!(
                samples.insert(series.into(), value).is_none(),
                "{line} twice"
            );
        }
    }
    (samples, types)
}

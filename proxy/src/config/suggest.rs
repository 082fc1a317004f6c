//! "Did you mean" for near-miss names: a field, a choice or a reference that is one
//! slip away from a known one.

/// How alike two names must be (Jaro-Winkler, 0 to 1) to be suggested: close enough
/// for a dropped, doubled or changed letter (`balanse`, `round-robn`, `helth`), far
/// enough that unrelated names (`fastest`, `least-request`) are not offered.
const SIMILARITY: f64 = 0.8;
/// Names of at least this many characters are also suggested at one edit (a letter
/// added, dropped, changed or two swapped: `ap`, `wbe`), which Jaro-Winkler scores
/// low on short names.
const ONE_EDIT_FROM: usize = 2;

/// The known name most like `word`, if one is close enough to be what was meant.
pub(super) fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    known
        .into_iter()
        .map(|candidate| {
            let other = candidate.to_ascii_lowercase();
            let score = if other == lower {
                1.0
            } else {
                strsim::jaro_winkler(&lower, &other)
            };
            let one_edit =
                lower.chars().count() >= ONE_EDIT_FROM && strsim::osa_distance(&lower, &other) == 1;
            (
                candidate,
                if one_edit {
                    score.max(SIMILARITY)
                } else {
                    score
                },
            )
        })
        .filter(|(_, score)| *score >= SIMILARITY)
        .fold(
            None,
            |best: Option<(&str, f64)>, (candidate, score)| match best {
                Some((_, top)) if top >= score => best,
                _ => Some((candidate, score)),
            },
        )
        .map(|(candidate, _)| candidate)
}

/// `, did you mean `NAME`?` when a known name is close to `word`, else nothing.
pub(super) fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, known).map_or_else(String::new, |name| format!(", did you mean `{name}`?"))
}

/// The message for a value outside a fixed set: `unknown WHAT `VALUE`, did you mean
/// `X`? Expected one of: A, B, C` (or `; expected one of: ...` with no near miss).
/// `shown` is the list printed; `candidates` the names a suggestion may come from
/// (they differ where `shown` has a pattern such as `plugin:NAME`).
pub(super) fn unknown_choice<'a>(
    what: &str,
    value: &str,
    shown: &[&str],
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    unknown_choice_near(what, value, shown, closest(value, candidates))
}

/// [`unknown_choice`] with the suggestion already chosen.
pub(super) fn unknown_choice_near(
    what: &str,
    value: &str,
    shown: &[&str],
    near: Option<&str>,
) -> String {
    let list = shown.join(", ");
    match near {
        Some(near) => {
            format!("unknown {what} `{value}`, did you mean `{near}`? Expected one of: {list}")
        }
        None => format!("unknown {what} `{value}`; expected one of: {list}"),
    }
}

/// The message for a name that refers to nothing: `no WHAT named `NAME`, did you
/// mean `X`? Defined: A, B` (or `; defined: A, B`, or `; none is defined`).
pub(super) fn unknown_reference<'a>(
    what: &str,
    name: &str,
    defined: impl IntoIterator<Item = &'a str> + Clone,
) -> String {
    let list: Vec<&str> = defined.clone().into_iter().collect();
    if list.is_empty() {
        return format!("no {what} named `{name}`; none is defined");
    }
    match closest(name, defined) {
        Some(near) => format!(
            "no {what} named `{name}`, did you mean `{near}`? Defined: {}",
            list.join(", ")
        ),
        None => format!("no {what} named `{name}`; defined: {}", list.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let fields = ["balance", "fallback_balance", "backends", "health"];
        assert_eq!(closest("balanse", fields), Some("balance"));
        assert_eq!(closest("helth", fields), Some("health"));
        assert_eq!(closest("Balance", fields), Some("balance"));
        assert_eq!(closest("colour", fields), None);
        let balances = ["round-robin", "weighted", "least-request", "hash"];
        assert_eq!(closest("round-robn", balances), Some("round-robin"));
        assert_eq!(closest("least_request", balances), Some("least-request"));
        assert_eq!(closest("fastest", balances), None);
        assert_eq!(closest("ap", ["app", "static"]), Some("app"));
        assert_eq!(closest("wbe", ["web", "admin"]), Some("web"));
        assert_eq!(closest("a", ["b"]), None);
        assert_eq!(closest("nope", ["ghost", "router"]), None);
    }

    #[test]
    fn renders_choices_and_references() {
        let shown = ["round-robin", "hash", "plugin:NAME"];
        assert_eq!(
            unknown_choice("balance", "hsah", &shown, ["round-robin", "hash"]),
            "unknown balance `hsah`, did you mean `hash`? Expected one of: round-robin, hash, plugin:NAME"
        );
        assert_eq!(
            unknown_choice("balance", "fastest", &shown, ["round-robin", "hash"]),
            "unknown balance `fastest`; expected one of: round-robin, hash, plugin:NAME"
        );
        assert_eq!(
            unknown_reference("pool", "ap", ["app", "static"]),
            "no pool named `ap`, did you mean `app`? Defined: app, static"
        );
        assert_eq!(
            unknown_reference("pool", "zzz", ["app"]),
            "no pool named `zzz`; defined: app"
        );
        assert_eq!(
            unknown_reference("pool", "zzz", Vec::<&str>::new()),
            "no pool named `zzz`; none is defined"
        );
        assert_eq!(
            did_you_mean("wieght", ["weight"]),
            ", did you mean `weight`?"
        );
        assert_eq!(did_you_mean("colour", ["weight"]), "");
    }
}

//! Reading the file into its serde shape ([`FileConfig`]) while collecting every
//! problem, not only the first.
//!
//! serde stops at the first error, so the text is parsed once into a spanned TOML
//! tree and deserialized from it repeatedly: each error is recorded with the dotted
//! path of the key it points at (`pool.app.balanse`), the offending key is taken out
//! of a working copy, and the rest is read again. An unknown field gets the name it
//! was probably meant to be. When a table cannot be read at all (a required field
//! missing or of the wrong type), it is reported and left out, and the checks across
//! tables (references, duplicates) wait for a file whose every table reads, so that
//! they never report a consequence of a problem already listed.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::error::{Reporter, key_before};
use super::file::FileConfig;
use super::suggest;

/// Stop reading after this many problems: a file that far off is better fixed in
/// rounds.
const MAX_PROBLEMS: usize = 100;

/// The parsed text with a span on every key and value.
pub(super) struct Document<'a> {
    text: &'a str,
    tree: Spanned<DeTable<'a>>,
    places: Vec<Place>,
}

/// Where one dotted path is written.
#[derive(Debug, Clone)]
struct Place {
    /// `pool.app.backends[0].address`.
    path: String,
    /// The key's span; `None` for an array element.
    key: Option<Range<usize>>,
    /// The value's span (for a table written as `[header]`, the header's).
    value: Range<usize>,
}

impl<'a> Document<'a> {
    /// Parses `text`; TOML syntax errors are recorded (all of them) and end the read.
    pub(super) fn parse(text: &'a str, r: &mut Reporter<'_>) -> Option<Document<'a>> {
        let (tree, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            for error in errors {
                let span = error.span().unwrap_or(0..0);
                let field = key_before(text, span.start).unwrap_or_default();
                // A problem outside every key still has a place: the file's start.
                let span = if span == (0..0) { 0..1 } else { span };
                r.at(span, field, error.message().trim());
            }
            return None;
        }
        let mut places = Vec::new();
        walk_table(tree.get_ref(), "", &mut places);
        Some(Document { text, tree, places })
    }

    /// The value span of every written path, for locating problems given by field.
    pub(super) fn spans(&self) -> BTreeMap<String, Range<usize>> {
        self.places
            .iter()
            .map(|p| (p.path.clone(), p.value.clone()))
            .collect()
    }

    /// The value at a path of plain keys (`["plugin", "canary", "config"]`), with
    /// the span of its key.
    pub(super) fn get(&self, keys: &[&str]) -> Option<(Range<usize>, &Spanned<DeValue<'a>>)> {
        let (first, rest) = keys.split_first()?;
        let (key, mut value) = self.tree.get_ref().get_key_value(*first)?;
        let mut key_span = key.span();
        for name in rest {
            let DeValue::Table(table) = value.get_ref() else {
                return None;
            };
            let (key, next) = table.get_key_value(*name)?;
            key_span = key.span();
            value = next;
        }
        Some((key_span, value))
    }

    /// Deserializes the file, recording every problem. `None` when a table could
    /// not be read (its problem is recorded) or there were too many problems.
    pub(super) fn read(&self, r: &mut Reporter<'_>) -> Option<FileConfig> {
        let mut work = self.tree.clone();
        let mut taken = Taken {
            whole: true,
            ..Taken::default()
        };
        for _ in 0..MAX_PROBLEMS {
            let error = match FileConfig::deserialize(toml::de::Deserializer::from(work.clone())) {
                Ok(file) => {
                    r.keep_quiet(taken.consequences);
                    return taken.whole.then_some(file);
                }
                Err(error) => error,
            };
            let place = self.record(&error, &mut taken, r)?;
            if place.key.is_none() {
                // A whole array element goes: the checks across tables would miss it.
                taken.whole = false;
            }
            taken.removed.push(place.path.clone());
            if !remove(work.get_mut(), place) {
                return None;
            }
        }
        None
    }

    /// Records one deserialization error at the place it points to, and returns that
    /// place (what to take out); `None` when it points nowhere.
    fn record(
        &self,
        error: &toml::de::Error,
        taken: &mut Taken,
        r: &mut Reporter<'_>,
    ) -> Option<&Place> {
        let message = error.message().trim().to_string();
        let span = error.span().unwrap_or(0..0);
        let place = match Failure::of(&message) {
            Failure::UnknownField { name, expected } => {
                let place = self.places.iter().find(|p| p.key.as_ref() == Some(&span));
                if let Some(place) = place {
                    let near = suggest::closest(&name, expected.iter().map(String::as_str));
                    r.at(span.clone(), &place.path, unknown_field(near, &expected));
                    taken.note_unknown(&place.path, near);
                }
                place
            }
            Failure::MissingField(name) => {
                let place = self.deepest_at(&span);
                if let Some(place) = place {
                    // A mistyped or misspelt field leaves it missing: its own problem is
                    // already recorded.
                    let field = format!("{}.{name}", place.path);
                    if !taken.removed.contains(&field) && !taken.consequences.contains(&field) {
                        r.at(span.clone(), &place.path, format!("missing field `{name}`"));
                    }
                    taken.whole = false;
                }
                place
            }
            Failure::Other => {
                let place = self
                    .deepest_at(&span)
                    .or_else(|| self.places.iter().find(|p| p.key.as_ref() == Some(&span)));
                if let Some(place) = place {
                    r.at(span.clone(), &place.path, message.clone());
                }
                place
            }
        };
        if place.is_none() {
            // Nowhere to point and nothing to take out: report it as it is.
            let field = key_before(self.text, span.start).unwrap_or_default();
            let span = if span == (0..0) { 0..1 } else { span };
            r.at(span, field, message);
        }
        place
    }

    /// The most deeply nested place whose value is exactly `span`.
    fn deepest_at(&self, span: &Range<usize>) -> Option<&Place> {
        self.places
            .iter()
            .filter(|p| p.value == *span)
            .max_by_key(|p| p.path.len())
    }
}

/// What reading took out of the working copy so far.
#[derive(Default)]
struct Taken {
    /// Paths of the keys and elements taken out.
    removed: Vec<String>,
    /// Fields whose problems would only repeat one already recorded: the table that
    /// held a misspelt key, and the key it meant (`pool.app.backends[0]` and
    /// `pool.app.backends[0].address` after `adress`).
    consequences: HashSet<String>,
    /// No table or element was taken out whole.
    whole: bool,
}

impl Taken {
    fn note_unknown(&mut self, path: &str, near: Option<&str>) {
        let parent = path.rsplit_once('.').map_or("", |(parent, _)| parent);
        if let Some(near) = near {
            self.consequences.insert(if parent.is_empty() {
                near.to_string()
            } else {
                format!("{parent}.{near}")
            });
        }
        if !parent.is_empty() {
            self.consequences.insert(parent.to_string());
        }
    }
}

/// What a deserialization error says, in the parts that matter here.
enum Failure {
    UnknownField { name: String, expected: Vec<String> },
    MissingField(String),
    Other,
}

impl Failure {
    /// Reads serde's standard messages (`unknown field `x`, expected one of `a`,
    /// `b``; `missing field `x``).
    fn of(message: &str) -> Failure {
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some((name, tail)) = rest.split_once('`')
        {
            let expected = tail
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            return Failure::UnknownField {
                name: name.to_string(),
                expected,
            };
        }
        if let Some(rest) = message.strip_prefix("missing field `")
            && let Some((name, _)) = rest.split_once('`')
        {
            return Failure::MissingField(name.to_string());
        }
        Failure::Other
    }
}

/// `unknown field, did you mean `balance`?`, or the fields the table has.
fn unknown_field(near: Option<&str>, expected: &[String]) -> String {
    match near {
        Some(near) => format!("unknown field, did you mean `{near}`?"),
        None if expected.is_empty() => "unknown field; this table has no fields".to_string(),
        None => format!("unknown field; expected one of: {}", expected.join(", ")),
    }
}

fn walk_table(table: &DeTable<'_>, path: &str, out: &mut Vec<Place>) {
    for (key, value) in table.iter() {
        let path = if path.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{path}.{}", key.get_ref())
        };
        out.push(Place {
            path: path.clone(),
            key: Some(key.span()),
            value: value.span(),
        });
        walk_value(value, &path, out);
    }
}

fn walk_value(value: &Spanned<DeValue<'_>>, path: &str, out: &mut Vec<Place>) {
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{path}[{i}]");
                out.push(Place {
                    path: path.clone(),
                    key: None,
                    value: item.span(),
                });
                walk_value(item, &path, out);
            }
        }
        _ => {}
    }
}

/// Takes the key or array element at `place` out of `table`; false if not found.
fn remove(table: &mut DeTable<'_>, place: &Place) -> bool {
    if let Some(key_span) = &place.key {
        let name = table
            .iter()
            .find(|(key, _)| key.span() == *key_span)
            .map(|(key, _)| key.get_ref().to_string());
        if let Some(name) = name {
            table.remove(name.as_str());
            return true;
        }
    }
    table
        .iter_mut()
        .any(|(_, value)| remove_within(value, place))
}

fn remove_within(value: &mut Spanned<DeValue<'_>>, place: &Place) -> bool {
    match value.get_mut() {
        DeValue::Table(table) => remove(table, place),
        DeValue::Array(items) => {
            if place.key.is_none()
                && let Some(index) = items.iter().position(|item| item.span() == place.value)
            {
                let kept: DeArray<'_> = std::mem::replace(items, DeArray::new())
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| *i != index)
                    .map(|(_, item)| item)
                    .collect();
                *items = kept;
                return true;
            }
            items.iter_mut().any(|item| remove_within(item, place))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate::testing::{BASE, problems, problems_with};

    #[test]
    fn every_unknown_field_is_reported_with_its_path_and_the_name_it_meant() {
        assert_eq!(
            problems_with(
                "balanse = \"weighted\"\n[pool.app.helth]\npath = \"/\"\n[pool.app.retry]\nattempt = 3\n[limits]\ncolour = \"blue\"\n"
            ),
            [
                "t.toml:10:1: pool.app.balanse: unknown field, did you mean `balance`?",
                "t.toml:11:11: pool.app.helth: unknown field, did you mean `health`?",
                "t.toml:14:1: pool.app.retry.attempt: unknown field, did you mean `attempts`?",
                "t.toml:16:1: limits.colour: unknown field; expected one of: header_read_timeout, idle_timeout, max_header_bytes, max_headers, max_connections, drain_timeout, connect_timeout, upstream_idle_per_backend, upstream_idle_timeout, body_idle_timeout, body_timeout, max_body_bytes, max_uri_bytes, tunnel_idle_timeout, max_connections_per_ip",
            ]
        );
        assert_eq!(
            problems(&format!("{BASE}[pools.static]\nbackends = []\n")),
            ["t.toml:10:2: pools: unknown field, did you mean `pool`?"]
        );
    }

    #[test]
    fn type_errors_name_their_path_and_the_checks_across_tables_still_run() {
        assert_eq!(
            problems(
                "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
                 [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"ap\"\n\
                 [pool.app]\nbackends = [{ address = \"127.0.0.1:1\", weight = \"heavy\" }]\n\
                 [pool.app.health]\ninterval = \"2 parsecs\"\n"
            ),
            [
                "t.toml:7:8: route[0].pool: no pool named `ap`, did you mean `app`? Defined: app",
                "t.toml:9:49: pool.app.backends[0].weight: invalid type: string \"heavy\", expected u32",
                "t.toml:11:12: pool.app.health.interval: unknown unit ` parsecs` in `2 parsecs`: expected us, ms, s, m, h or d",
            ]
        );
    }

    #[test]
    fn a_table_that_cannot_be_read_is_reported_once_and_holds_back_the_cross_checks() {
        // The listener lacks its name, the route its pool; the route's listener
        // would be unknown without the first listener, which is not reported.
        assert_eq!(
            problems(
                "[[listener]]\nlisten = \"127.0.0.1:0\"\n\
                 [[route]]\nname = \"all\"\nlistener = \"web\"\n\
                 [pool.app]\nbackends = [{ address = \"127.0.0.1:1\" }]\nbalanse = 1\n"
            ),
            [
                "t.toml:1:1: listener[0]: missing field `name`",
                "t.toml:3:1: route[0]: missing field `pool`",
                "t.toml:8:1: pool.app.balanse: unknown field, did you mean `balance`?",
            ]
        );
        // A required field of the wrong type is not also reported missing.
        assert_eq!(
            problems("[[listener]]\nname = 5\nlisten = \"127.0.0.1:0\"\n"),
            ["t.toml:2:8: listener[0].name: invalid type: integer `5`, expected a string"]
        );
    }

    #[test]
    fn what_follows_from_a_misspelt_key_is_not_reported_again() {
        // Without `address`, the backend has none; without `name`, the listener none;
        // with `path_prefix` gone, the second route matches what the first does.
        assert_eq!(
            problems(
                "[[listener]]\nnme = \"web\"\nlisten = \"127.0.0.1:0\"\n\
                 [pool.app]\nbackends = [{ adress = \"127.0.0.1:1\" }]\n"
            ),
            [
                "t.toml:2:1: listener[0].nme: unknown field, did you mean `name`?",
                "t.toml:5:15: pool.app.backends[0].adress: unknown field, did you mean `address`?",
            ]
        );
        assert_eq!(
            problems_with(
                "[[route]]\nname = \"api\"\nlistener = \"web\"\npool = \"app\"\npathprefix = \"/api\"\n"
            ),
            ["t.toml:14:1: route[1].pathprefix: unknown field, did you mean `path_prefix`?"]
        );
        assert_eq!(
            problems("[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n"),
            ["t.toml:1:3: listeners: unknown field, did you mean `listener`?"]
        );
    }

    #[test]
    fn syntax_errors_are_all_reported() {
        let found = problems("[[listener]]\nname = = \"web\"\nlisten = \"127.0.0.1:0\n");
        assert_eq!(found[0], "t.toml:2:8: name: extra `=`, expected nothing");
        assert_eq!(
            found.last().map(String::as_str),
            Some("t.toml:3:22: invalid basic string, expected `\"`")
        );
    }
}

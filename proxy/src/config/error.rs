//! Config errors that point at the exact place in the file.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a config could not be loaded. The running config is never touched by a failed load.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{path}: cannot read config: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid config; every problem found is listed.
    #[error("{}", render_problems(.problems))]
    Invalid { problems: Vec<Problem> },
}

impl ConfigError {
    /// The problems found, empty for a read error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems } => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

fn render_problems(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// One problem: where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        } else if self.field.is_empty() {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.column, self.field, self.message
            )
        }
    }
}

/// A place in the config file (`file:line:column: field`), for errors found only when
/// a valid config is applied, such as an address already in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    /// 1-based; 0 when the setting is not written in the file (a default).
    pub line: usize,
    pub column: usize,
    pub field: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.field)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.field
            )
        }
    }
}

/// Turns byte spans into `file:line:column` and collects problems.
pub struct Reporter<'a> {
    file: String,
    source: &'a str,
    /// Byte offset of each line's start, so a position costs a search, not a scan.
    line_starts: Vec<usize>,
    /// Where each dotted path is written, to place problems given without a span.
    places: BTreeMap<String, Range<usize>>,
    /// Fields whose problems are consequences of one already recorded.
    quiet: HashSet<String>,
    problems: Vec<Problem>,
}

impl<'a> Reporter<'a> {
    /// A reporter for `source`, read from `path`.
    pub fn new(path: &Path, source: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            file: path.display().to_string(),
            source,
            line_starts,
            places: BTreeMap::new(),
            quiet: HashSet::new(),
            problems: Vec::new(),
        }
    }

    /// Learns where each dotted path (`pool.app.breaker.window`) is written.
    pub fn learn_places(&mut self, places: BTreeMap<String, Range<usize>>) {
        self.places = places;
    }

    /// From now on, problems with these fields are not recorded: they would repeat
    /// one already recorded (a table missing the key that was misspelt in it).
    pub fn keep_quiet(&mut self, fields: HashSet<String>) {
        self.quiet = fields;
    }

    /// The file name used in messages.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records a problem with `field` at `span`. An empty `0..0` span places it where
    /// `field` is written, or else where its nearest written parent is (a default that
    /// conflicts with a setting is reported at the table that would hold it).
    pub fn at(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        if self.quiet.contains(&field) {
            return;
        }
        let (line, column) = if span == (0..0) {
            self.locate(&field)
        } else {
            self.line_column(span.start)
        };
        self.push(line, column, field, message.into());
    }

    /// Records a problem with `field` that is not in the file (it comes from an
    /// environment variable, say).
    pub fn unplaced(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(0, 0, field.into(), message.into());
    }

    fn push(&mut self, line: usize, column: usize, field: String, message: String) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            field,
            message,
        });
    }

    /// How many problems were recorded so far.
    pub fn problem_count(&self) -> usize {
        self.problems.len()
    }

    /// Line and column of a span's start (`(0, 0)` for a setting not in the file).
    pub fn position(&self, span: Range<usize>) -> (usize, usize) {
        if span == (0..0) {
            (0, 0)
        } else {
            self.line_column(span.start)
        }
    }

    /// 1-based line and column of a byte offset (as [`line_column`]).
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self.line_starts.partition_point(|start| *start <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let column = self
            .source
            .get(start..offset)
            .map_or(1, |before| before.chars().count() + 1);
        (line, column)
    }

    /// Line and column where `field` or its nearest written parent is written;
    /// `(0, 0)` when neither is in the file.
    pub fn locate(&self, field: &str) -> (usize, usize) {
        let mut path = field;
        loop {
            if let Some(span) = self.places.get(path) {
                return self.line_column(span.start);
            }
            match path.rfind(['.', '[']) {
                Some(cut) if cut > 0 => path = &path[..cut],
                _ => return (0, 0),
            }
        }
    }

    /// Line and column of every written path, for errors found only when a valid
    /// config is applied.
    pub fn positions(&self) -> BTreeMap<String, (usize, usize)> {
        self.places
            .iter()
            .map(|(path, span)| (path.clone(), self.line_column(span.start)))
            .collect()
    }

    /// Ends the walk: `Ok(value)` if clean, otherwise every problem.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(self.into_error())
        }
    }

    /// Ends a walk that could not produce a config: every problem, in file order
    /// (those not in the file last).
    pub fn into_error(mut self) -> ConfigError {
        if self.problems.is_empty() {
            self.push(
                1,
                1,
                String::new(),
                "the file could not be read".to_string(),
            );
        }
        self.problems
            .sort_by_key(|p| (p.line == 0, p.line, p.column));
        ConfigError::Invalid {
            problems: self.problems,
        }
    }
}

/// 1-based line and column of a byte offset.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The key whose value starts at `offset`, e.g. `weight` for `weight = "x"`.
pub(super) fn key_before(source: &str, offset: usize) -> Option<String> {
    let offset = offset.min(source.len());
    let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let before = source[line_start..offset].trim_end();
    let before = before.strip_suffix('=')?.trim_end();
    let key: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_line_and_column() {
        let src = "a = 1\nbb = 2\né = 3\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 11), (2, 6));
        let r = Reporter::new(Path::new("t.toml"), src);
        for offset in [0, 5, 6, 11, 13, 15, src.len()] {
            assert_eq!(
                r.line_column(offset),
                line_column(src, offset),
                "at {offset}"
            );
        }
    }

    #[test]
    fn names_the_key_before_a_value() {
        let src = "x = { address = \"a\", weight = \"heavy\" }";
        let offset = src.find("\"heavy").unwrap();
        assert_eq!(key_before(src, offset).as_deref(), Some("weight"));
    }
}

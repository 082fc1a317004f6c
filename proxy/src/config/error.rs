//! Config errors that point at the exact place in the file.

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
    problems: Vec<Problem>,
}

impl<'a> Reporter<'a> {
    /// A reporter for `source`, read from `path`.
    pub fn new(path: &Path, source: &'a str) -> Self {
        Self {
            file: path.display().to_string(),
            source,
            problems: Vec::new(),
        }
    }

    /// The text being checked.
    pub fn source(&self) -> &'a str {
        self.source
    }

    /// The file name used in messages.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records a problem at `span` (an empty `0..0` span means "not written in the file").
    pub fn at(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let (line, column) = if span == (0..0) {
            (0, 0)
        } else {
            line_column(self.source, span.start)
        };
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            field: field.into(),
            message: message.into(),
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
            line_column(self.source, span.start)
        }
    }

    /// Ends the walk: `Ok(value)` if clean, otherwise every problem.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                problems: self.problems,
            })
        }
    }

    /// Converts a TOML syntax or type error into a located problem naming the key.
    pub fn from_toml(path: &Path, source: &str, err: &toml::de::Error) -> ConfigError {
        let mut reporter = Reporter::new(path, source);
        let span = err.span().unwrap_or(0..0);
        let field = key_before(source, span.start).unwrap_or_default();
        let message = err.message().trim().to_string();
        if span == (0..0) {
            reporter.problems.push(Problem {
                file: reporter.file.clone(),
                line: 1,
                column: 1,
                field,
                message,
            });
        } else {
            reporter.at(span, field, message);
        }
        ConfigError::Invalid {
            problems: reporter.problems,
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
fn key_before(source: &str, offset: usize) -> Option<String> {
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
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 11), (2, 6));
    }

    #[test]
    fn names_the_key_before_a_value() {
        let src = "x = { address = \"a\", weight = \"heavy\" }";
        let offset = src.find("\"heavy").unwrap();
        assert_eq!(key_before(src, offset).as_deref(), Some("weight"));
    }
}

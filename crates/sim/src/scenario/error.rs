//! Errors that point at the file, the line and column, and the field.

use crate::yamlpos::PathIndex;
use std::fmt;
use std::path::{Path, PathBuf};

// Errors

/// A scenario that cannot run: where, which field, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Field path as in the file (`vms[2].memory`); empty for the file as a whole.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

pub(crate) fn located(path: &Path, index: &PathIndex, field: &str, message: String) -> ScenarioError {
    let pos = index.locate(field);
    ScenarioError {
        file: path.to_path_buf(),
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
        field: field.to_string(),
        message,
    }
}

/// serde_yaml's error, split into the field path it starts with and the rest, the location moved to the front.
pub(crate) fn yaml_error(path: &Path, e: serde_yaml::Error) -> ScenarioError {
    let loc = e.location();
    let mut text = e.to_string();
    if let Some(l) = &loc {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if let Some(stripped) = text.strip_suffix(&suffix) {
            text = stripped.to_string();
        }
    }
    let (field, message) = match text.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && head.chars().all(|c| c.is_alphanumeric() || "._[]-".contains(c)) => {
            (head.to_string(), rest.to_string())
        }
        _ => (String::new(), text),
    };
    ScenarioError {
        file: path.to_path_buf(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        field,
        message,
    }
}

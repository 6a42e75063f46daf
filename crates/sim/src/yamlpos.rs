//! Where each field of a YAML document stands: a map from a field path (`vms[2].workload.cpu`, the path syntax
//! serde_yaml uses in its errors) to a line and column. Errors found after parsing (an unknown node, a duplicate
//! name, a trace file that is missing) use it to point at the line, as parse errors do.

use saphyr_parser::{Event, Parser};
use std::collections::HashMap;

/// A place in the file, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Field path -> position of the key that names it (or of the item, in a list).
#[derive(Debug, Default, Clone)]
pub struct PathIndex {
    at: HashMap<String, Pos>,
}

enum Frame {
    Map { path: String, key: Option<(String, Pos)> },
    Seq { path: String, next: usize },
}

impl PathIndex {
    /// Indexes the first document of `text`; stops quietly at a syntax error (serde_yaml reports those).
    pub fn parse(text: &str) -> PathIndex {
        let mut index = PathIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        while let Some(Ok((event, span))) = parser.next_event() {
            let pos = Pos { line: span.start.line(), column: span.start.col() + 1 };
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map { key: key @ None, .. }) = stack.last_mut() {
                        *key = Some((value.into_owned(), pos));
                    } else {
                        index.enter(&mut stack, pos);
                    }
                }
                Event::Alias(_) => {
                    index.enter(&mut stack, pos);
                }
                Event::MappingStart(..) => {
                    let path = index.enter(&mut stack, pos);
                    stack.push(Frame::Map { path, key: None });
                }
                Event::SequenceStart(..) => {
                    let path = index.enter(&mut stack, pos);
                    stack.push(Frame::Seq { path, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::DocumentEnd => break,
                _ => {}
            }
        }
        index
    }

    /// Records the value that starts at `pos` under its path and returns the path.
    fn enter(&mut self, stack: &mut [Frame], pos: Pos) -> String {
        let (path, at) = match stack.last_mut() {
            None => (String::new(), pos),
            Some(Frame::Map { path, key }) => match key.take() {
                Some((k, key_pos)) => (join(path, &k), key_pos),
                // A complex key (a mapping used as a key): not a field path; keep the parent's.
                None => (path.clone(), pos),
            },
            Some(Frame::Seq { path, next }) => {
                *next += 1;
                (format!("{path}[{}]", *next - 1), pos)
            }
        };
        self.at.entry(path.clone()).or_insert(at);
        path
    }

    /// Position of `path`, or of its nearest ancestor that is in the file (a missing field points at its parent).
    pub fn locate(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.at.get(p) {
                return Some(*pos);
            }
            if p.is_empty() {
                return None;
            }
            p = parent(p);
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

/// `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> ``.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_fields_and_items() {
        let text = "duration: 1h\nnodes:\n  - prefix: n\n    count: 3\n  - name: big\n    cpu: 64\nevents:\n- at: 2h\n  node: n-9\n";
        let ix = PathIndex::parse(text);
        assert_eq!(ix.locate("duration"), Some(Pos { line: 1, column: 1 }));
        assert_eq!(ix.locate("nodes[0]"), Some(Pos { line: 3, column: 5 }));
        assert_eq!(ix.locate("nodes[0].count"), Some(Pos { line: 4, column: 5 }));
        assert_eq!(ix.locate("nodes[1].cpu"), Some(Pos { line: 6, column: 5 }));
        assert_eq!(ix.locate("events[0].node"), Some(Pos { line: 9, column: 3 }));
        // A field that is not written points at its parent.
        assert_eq!(ix.locate("nodes[1].memory"), Some(Pos { line: 5, column: 5 }));
    }

    #[test]
    fn flow_style_and_broken_files_do_not_panic() {
        let ix = PathIndex::parse("pool: {migrationThreshold: 9, rules: [{name: a}]}\n");
        assert_eq!(ix.locate("pool.migrationThreshold").map(|p| p.line), Some(1));
        assert_eq!(ix.locate("pool.rules[0].name").map(|p| p.line), Some(1));
        let _ = PathIndex::parse("a: [1, 2\nb: :\n  - ]]");
    }
}

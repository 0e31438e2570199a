//! Claude Code's JSON files as install edits them: read with their key
//! order kept (a syntax error named by line and column), members and
//! array elements found, made and taken out along a path, and written back
//! indented the way the file was.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize as _;
use serde_json::{Map, Value};

use crate::claude::install::files::io_failure;
use crate::claude::install::manifest::Kind;
use crate::exit::{self, Failure};

/// A JSON file as read.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The file written (a symlink's target).
    pub real: PathBuf,
    /// Its bytes; `None` when it does not exist.
    pub bytes: Option<Vec<u8>>,
    /// Its permissions, to keep.
    pub perms: Option<fs::Permissions>,
    /// The parsed object (`{}` when missing or blank).
    pub value: Map<String, Value>,
}

/// Why a file cannot be used.
pub fn unusable(path: &Path, what: String) -> Failure {
    Failure::new(exit::IO, format!("{}: {what}", path.display())).hint(format!(
        "fix {} (or move it away); nothing was changed",
        path.display()
    ))
}

pub fn read_doc(path: &Path) -> Result<Doc, Failure> {
    let real = real_path(path)?;
    let (bytes, perms) = match fs::read(&real) {
        Ok(b) => {
            let perms = fs::metadata(&real)
                .map_err(|e| io_failure("read", &real, &e))?
                .permissions();
            (Some(b), Some(perms))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => return Err(io_failure("read", &real, &e)),
    };
    let value = match &bytes {
        None => Map::new(),
        Some(b) => parse_object(b, path)?,
    };
    Ok(Doc {
        real,
        bytes,
        perms,
        value,
    })
}

/// Parses a JSON object, naming the line and column of a syntax error.
pub fn parse_object(bytes: &[u8], shown: &Path) -> Result<Map<String, Value>, Failure> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(unusable(
            shown,
            format!("the top level is {}, not a JSON object", type_name(&other)),
        )),
        Err(e) => {
            let text = e.to_string();
            let message = text
                .find(" at line ")
                .map_or(text.as_str(), |at| &text[..at]);
            Err(unusable(
                shown,
                format!(
                    "line {} column {}: not valid JSON ({message})",
                    e.line(),
                    e.column()
                ),
            ))
        }
    }
}

/// A symlink's target (a dotfile manager's link stays a link), else the path.
pub fn real_path(path: &Path) -> Result<PathBuf, Failure> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|e| io_failure("follow the link", path, &e))
        }
        _ => Ok(path.to_owned()),
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `hooks.Stop`, and `hooks.Stop[]` for an element of it.
pub fn dotted(path: &[String], kind: Kind) -> String {
    let mut s = path.join(".");
    if kind == Kind::Element {
        s.push_str("[]");
    }
    s
}

/// The value at `path`, if every step is there.
pub fn get<'a>(root: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut obj = root;
    for key in parents {
        obj = obj.get(key)?.as_object()?;
    }
    obj.get(last)
}

/// The object at `path` (the root for an empty path), created with the
/// objects leading to it; each created one is added to `created`. An
/// existing step that is not an object is an error naming it.
pub fn object_at<'a>(
    root: &'a mut Map<String, Value>,
    path: &[String],
    created: &mut Vec<Vec<String>>,
) -> Result<&'a mut Map<String, Value>, String> {
    let mut obj = root;
    for (i, key) in path.iter().enumerate() {
        if !obj.contains_key(key) {
            created.push(path[..=i].to_vec());
        }
        obj = match obj
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()))
        {
            Value::Object(o) => o,
            other => {
                return Err(format!(
                    "{} is {}, where claudemesh expects an object",
                    path[..=i].join("."),
                    type_name(other)
                ));
            }
        };
    }
    Ok(obj)
}

/// The array at `path`, created (with the objects leading to it) if
/// missing.
pub fn array_at<'a>(
    root: &'a mut Map<String, Value>,
    path: &[String],
    created: &mut Vec<Vec<String>>,
) -> Result<&'a mut Vec<Value>, String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("an empty path".into());
    };
    let obj = object_at(root, parents, created)?;
    if !obj.contains_key(last) {
        created.push(path.to_vec());
    }
    match obj
        .entry(last.clone())
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(a) => Ok(a),
        other => Err(format!(
            "{} is {}, where claudemesh expects an array",
            path.join("."),
            type_name(other)
        )),
    }
}

/// Checks, without changing anything, that `path` can hold what install
/// puts there (its existing steps are objects, and for an element the
/// array is an array).
pub fn check_shape(root: &Map<String, Value>, path: &[String], kind: Kind) -> Result<(), String> {
    let mut obj = root;
    let n = path.len();
    for (i, key) in path.iter().enumerate() {
        let Some(v) = obj.get(key) else {
            return Ok(());
        };
        let last = i + 1 == n;
        if last {
            return match (kind, v) {
                (Kind::Element, Value::Array(_)) | (Kind::Member, _) => Ok(()),
                (Kind::Element, other) => Err(format!(
                    "{} is {}, where claudemesh expects an array",
                    path.join("."),
                    type_name(other)
                )),
            };
        }
        obj = match v {
            Value::Object(o) => o,
            other => {
                return Err(format!(
                    "{} is {}, where claudemesh expects an object",
                    path[..=i].join("."),
                    type_name(other)
                ));
            }
        };
    }
    Ok(())
}

/// Removes the member at `path`, keeping the order of the others.
pub fn remove_member(root: &mut Map<String, Value>, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut obj = root;
    for key in parents {
        obj = obj.get_mut(key)?.as_object_mut()?;
    }
    obj.shift_remove(last)
}

pub fn set_member(root: &mut Map<String, Value>, path: &[String], value: Value) -> Option<()> {
    let (last, parents) = path.split_last()?;
    let mut obj = root;
    for key in parents {
        obj = obj.get_mut(key)?.as_object_mut()?;
    }
    obj.insert(last.clone(), value);
    Some(())
}

pub fn array_mut<'a>(
    root: &'a mut Map<String, Value>,
    path: &[String],
) -> Option<&'a mut Vec<Value>> {
    let (last, parents) = path.split_last()?;
    let mut obj = root;
    for key in parents {
        obj = obj.get_mut(key)?.as_object_mut()?;
    }
    obj.get_mut(last)?.as_array_mut()
}

pub fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// The file's bytes for `value`, indented like `like` (the file as it
/// was: its first indented line gives the unit, two spaces otherwise) and
/// ending in a newline if it did (or is new).
pub fn render(value: &Map<String, Value>, like: Option<&[u8]>) -> Result<Vec<u8>, Failure> {
    let indent = like
        .and_then(detect_indent)
        .unwrap_or_else(|| b"  ".to_vec());
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(&indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut ser)
        .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot encode JSON: {e}")))?;
    if like.is_none_or(|b| b.ends_with(b"\n")) {
        out.push(b'\n');
    }
    Ok(out)
}

pub fn detect_indent(bytes: &[u8]) -> Option<Vec<u8>> {
    bytes.split(|b| *b == b'\n').skip(1).find_map(|line| {
        let n = line
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        let rest = &line[n..];
        (n > 0 && !rest.is_empty() && !rest.iter().all(u8::is_ascii_whitespace))
            .then(|| line[..n].to_vec())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indentation_is_detected() {
        assert_eq!(detect_indent(b"{\n    \"a\": 1\n}"), Some(b"    ".to_vec()));
        assert_eq!(detect_indent(b"{\n\t\"a\": 1\n}"), Some(b"\t".to_vec()));
        assert_eq!(detect_indent(b"{\"a\": 1}"), None);
    }

    #[test]
    fn paths_in_objects_are_made_and_found() {
        let mut root = Map::new();
        let mut created = Vec::new();
        let path: Vec<String> = vec!["hooks".into(), "Stop".into()];
        array_at(&mut root, &path, &mut created)
            .unwrap()
            .push(Value::Bool(true));
        assert_eq!(created, vec![vec!["hooks".to_owned()], path.clone()]);
        assert_eq!(get(&root, &path), Some(&serde_json::json!([true])));
        root.insert("x".into(), Value::from(1));
        assert!(check_shape(&root, &["x".into(), "y".into()], Kind::Member).is_err());
        assert!(check_shape(&root, &["x".into()], Kind::Element).is_err());
        assert!(check_shape(&root, &path, Kind::Element).is_ok());
    }
}

//! Client path and name validation (design §9): absolute, '/'-separated, no empty/"."/".." components
//! except a tolerated trailing or doubled '/', no NUL, components up to 255 bytes, paths up to 4096.

use crate::error::{NamenodeError, Result};

/// Longest path component in bytes.
pub const NAME_MAX: usize = 255;
/// Longest path in bytes.
pub const PATH_MAX: usize = 4096;

/// The components of an absolute client path ("/" has none). "//" is collapsed and a trailing "/"
/// ignored; everything else that is not a plain name is refused and nothing is looked up.
pub fn components(path: &str) -> Result<Vec<&str>> {
    let invalid = |reason: &str| NamenodeError::InvalidPath {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if path.is_empty() {
        return Err(invalid("empty path"));
    }
    if !path.starts_with('/') {
        return Err(invalid("not absolute"));
    }
    if path.len() > PATH_MAX {
        return Err(NamenodeError::NameTooLong(shorten(path)));
    }
    if path.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    let mut out = Vec::new();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        match c {
            "." | ".." => return Err(invalid("'.' and '..' components are not allowed")),
            _ if c.len() > NAME_MAX => return Err(NamenodeError::NameTooLong(shorten(path))),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// Check one entry name (as in a (parent, name) reference). `shown` is how the entry appears in errors.
pub fn check_name(name: &str, shown: &str) -> Result<()> {
    let invalid = |reason: &str| NamenodeError::InvalidPath {
        path: shown.to_string(),
        reason: reason.to_string(),
    };
    match name {
        "" => Err(invalid("empty name")),
        "." | ".." => Err(invalid("'.' and '..' are not valid names")),
        _ if name.contains('/') => Err(invalid("a name cannot contain '/'")),
        _ if name.contains('\0') => Err(invalid("contains a NUL byte")),
        _ if name.len() > NAME_MAX => Err(NamenodeError::NameTooLong(shorten(shown))),
        _ => Ok(()),
    }
}

/// The canonical form of a path's components: "/a/b", or "/" for none.
pub fn join_components(comps: &[&str]) -> String {
    if comps.is_empty() {
        return "/".to_string();
    }
    let mut s = String::with_capacity(comps.iter().map(|c| c.len() + 1).sum());
    for c in comps {
        s.push('/');
        s.push_str(c);
    }
    s
}

/// `dir/name` for messages ("/" + name at the root).
pub fn child_path(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// A path cut to a readable length for error messages (over-long paths are themselves the error).
fn shorten(path: &str) -> String {
    const KEEP: usize = 200;
    if path.len() <= KEEP {
        return path.to_string();
    }
    let mut end = KEEP;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &path[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_paths_split_into_components() {
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(components("/a/b").unwrap(), vec!["a", "b"]);
        assert_eq!(components("/a//b/").unwrap(), vec!["a", "b"]);
        assert_eq!(components("//").unwrap(), Vec::<&str>::new());
        assert_eq!(
            components("/ä b/.hidden/..x").unwrap(),
            vec!["ä b", ".hidden", "..x"]
        );
        let long = format!("/{}", "x".repeat(NAME_MAX));
        assert_eq!(components(&long).unwrap().len(), 1);
    }

    #[test]
    fn bad_paths_are_refused() {
        for p in ["", "a/b", "/a/./b", "/a/../b", "/..", "/.", "/a\0b"] {
            assert!(
                matches!(components(p), Err(NamenodeError::InvalidPath { .. })),
                "{p:?}"
            );
        }
        let long_name = format!("/{}", "x".repeat(NAME_MAX + 1));
        assert!(matches!(
            components(&long_name),
            Err(NamenodeError::NameTooLong(_))
        ));
        let long_path = "/abc".repeat(PATH_MAX / 4 + 1);
        assert!(matches!(
            components(&long_path),
            Err(NamenodeError::NameTooLong(_))
        ));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("a.b", "/a.b").is_ok());
        for n in ["", ".", "..", "a/b", "a\0"] {
            assert!(
                matches!(check_name(n, "/x"), Err(NamenodeError::InvalidPath { .. })),
                "{n:?}"
            );
        }
        assert!(matches!(
            check_name(&"y".repeat(256), "/y"),
            Err(NamenodeError::NameTooLong(_))
        ));
    }

    #[test]
    fn joins() {
        assert_eq!(join_components(&[]), "/");
        assert_eq!(join_components(&["a", "b"]), "/a/b");
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
    }
}

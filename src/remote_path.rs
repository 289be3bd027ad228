//! Remote path arguments of the CLI: `.` and `..` components are resolved lexically before
//! anything is sent (`/a/../b` is `/b`, `/..` is `/`), as `hdfs dfs` does; the namenode takes
//! only plain names. Everything else reaches the namenode as typed, which checks it.

/// The argument `arg` with its `.` and `..` components resolved. A relative path (refused by the
/// namenode as "not absolute") and a path without such components come back unchanged; a path
/// that ended in `/`, `.` or `..` names a directory and keeps a trailing `/`.
pub fn normalize(arg: &str) -> String {
    if !arg.starts_with('/') || !arg.split('/').any(|c| c == "." || c == "..") {
        return arg.to_string();
    }
    let path = ringfs_client::normalize_path(arg);
    let last = arg.rsplit('/').next().unwrap_or("");
    if path != "/" && matches!(last, "" | "." | "..") {
        return path + "/";
    }
    path
}

/// clap value parser of remote paths: see [`normalize`].
pub fn arg(s: &str) -> Result<String, String> {
    Ok(normalize(s))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn dot_components_are_resolved_lexically() {
        assert_eq!(normalize("/a/../b"), "/b");
        assert_eq!(normalize("/a/./b"), "/a/b");
        assert_eq!(normalize("/a/b/.."), "/a/");
        assert_eq!(normalize("/a/b/."), "/a/b/");
        assert_eq!(normalize("/.."), "/");
        assert_eq!(normalize("/../../x"), "/x");
        assert_eq!(normalize("/a/.."), "/");
        assert_eq!(normalize("/a//./b/"), "/a/b/");
    }

    #[test]
    fn other_paths_are_left_as_typed() {
        for p in [
            "/",
            "/a/b",
            "/a//b/",
            "a/../b",
            "",
            "/a/..b",
            "/a/.hidden",
            "/...",
        ] {
            assert_eq!(normalize(p), p);
        }
    }
}

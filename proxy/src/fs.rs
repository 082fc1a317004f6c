//! Filesystem helpers for the file watchers (config, plugins).

use std::path::Path;

/// Whether `path` names `wanted`, however either was spelled (relative, with `..`,
/// through a symlinked directory), even when the file itself was just removed.
pub fn same_file(path: &Path, wanted: &Path) -> bool {
    if path == wanted {
        return true;
    }
    if path.file_name() != wanted.file_name() {
        return false;
    }
    let parent = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .canonicalize()
            .ok()
    };
    matches!((parent(path), parent(wanted)), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_spelled_two_ways_matches_even_once_removed() {
        let dir = std::env::temp_dir().join(format!("switchyard-fs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let file = dir.join("switchyard.toml");
        std::fs::write(&file, "").unwrap();
        let roundabout = dir.join("sub").join("..").join("switchyard.toml");
        assert!(same_file(&roundabout, &file));
        assert!(!same_file(&dir.join("other.toml"), &file));
        std::fs::remove_file(&file).unwrap();
        assert!(
            same_file(&roundabout, &file),
            "a removed file still matches"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! `train --link DIR`: the index linked into another folder, as RVC links
//! its added index into `outside_index_root` (where its WebUI looks for
//! indexes).
//!
//! A hard link, as RVC makes on Windows, where the file system allows it;
//! else a symbolic link holding the path RELATIVE to the link's folder, so it
//! stays valid when the whole tree moves (RVC's own symbolic links hold the
//! path as given, which for RVC 20240604's `logs/<exp>/…` resolves against
//! the link's folder and so points nowhere). An existing link or file of the
//! same name is replaced in one rename; one that already is the index is
//! left as it is.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// What [`link_index`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Hard,
    Symbolic,
    /// The link was there already (a link or the same file).
    Existing,
    /// The index is inside the link folder already: no link is needed
    /// (RVC does the same).
    Inside,
}

/// Make `link` (a path in the link folder, created if missing) refer to
/// `index`, and check that it does.
pub fn link_index(index: &Path, link: &Path) -> Result<LinkKind> {
    let dir = match link.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let src = std::fs::canonicalize(index).map_err(|e| Error::io(index, e))?;
    let dir_c = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    if src.starts_with(&dir_c) {
        return Ok(LinkKind::Inside);
    }
    if link.symlink_metadata().is_ok() && same_file::is_same_file(&src, link).unwrap_or(false) {
        return Ok(LinkKind::Existing);
    }
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kind = match make(dir, &name, |tmp| {
        crate::testing::fail_point("link-hard")?;
        std::fs::hard_link(&src, tmp)
    }) {
        Ok(tmp) => (tmp, LinkKind::Hard),
        Err(_) => {
            let rel = relative(&src, &dir_c);
            let tmp = make(dir, &name, |tmp| {
                crate::testing::fail_point("link-symbolic")?;
                symlink(&rel, tmp)
            })
            .map_err(|e| Error::io(link, e))?;
            (tmp, LinkKind::Symbolic)
        }
    };
    let (tmp, kind) = kind;
    if let Err(e) = std::fs::rename(&tmp, link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(link, e));
    }
    if !same_file::is_same_file(&src, link).unwrap_or(false) {
        return Err(Error::bad_input(
            link,
            format!("the link does not lead to {}", src.display()),
        ));
    }
    Ok(kind)
}

/// Create a link at a fresh temporary name `.<name>.<random>.tmp` in `dir`
/// with `create`, retrying on name clashes.
fn make(
    dir: &Path,
    name: &str,
    create: impl Fn(&Path) -> std::io::Result<()>,
) -> std::io::Result<PathBuf> {
    let t = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .make_in(dir, |p| create(p))?;
    // `make_in` returns a guard that would remove the link when dropped.
    t.into_temp_path().keep().map_err(|e| e.error)
}

/// `target` as a path relative to `dir` (both canonical).
fn relative(target: &Path, dir: &Path) -> PathBuf {
    pathdiff::diff_paths(target, dir).unwrap_or_else(|| target.to_path_buf())
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

#[cfg(not(any(unix, windows)))]
fn symlink(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "symbolic links are not supported here",
    ))
}

/// Remove a link the previous set made, if it is still there.
pub fn remove_link(link: &Path) -> Result<()> {
    match std::fs::remove_file(link) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(link, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_link_into_a_new_folder_then_existing() {
        let d = tempfile::tempdir().unwrap();
        let idx = d.path().join("logs/voice/added.index");
        std::fs::create_dir_all(idx.parent().unwrap()).unwrap();
        std::fs::write(&idx, b"index").unwrap();
        let link = d.path().join("assets/indices/voice_added.index");
        assert_eq!(link_index(&idx, &link).unwrap(), LinkKind::Hard);
        assert_eq!(std::fs::read(&link).unwrap(), b"index");
        assert!(!link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(link_index(&idx, &link).unwrap(), LinkKind::Existing);
        // Nothing but the link in the link folder.
        let names: Vec<_> = std::fs::read_dir(link.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("voice_added.index")]);
    }

    #[test]
    fn a_stale_file_of_the_link_name_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        let idx = d.path().join("new.index");
        std::fs::write(&idx, b"new").unwrap();
        std::fs::create_dir(d.path().join("out")).unwrap();
        let link = d.path().join("out/voice.index");
        std::fs::write(&link, b"old").unwrap();
        assert_eq!(link_index(&idx, &link).unwrap(), LinkKind::Hard);
        assert_eq!(std::fs::read(&link).unwrap(), b"new");
    }

    #[test]
    fn an_index_inside_the_link_folder_is_not_linked() {
        let d = tempfile::tempdir().unwrap();
        let idx = d.path().join("a/voice.index");
        std::fs::create_dir_all(idx.parent().unwrap()).unwrap();
        std::fs::write(&idx, b"x").unwrap();
        let link = d.path().join("voice_voice.index");
        assert_eq!(link_index(&idx, &link).unwrap(), LinkKind::Inside);
        assert!(!link.exists());
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(
                Path::new("/a/logs/x/i.index"),
                Path::new("/a/assets/indices")
            ),
            PathBuf::from("../../logs/x/i.index")
        );
    }
}

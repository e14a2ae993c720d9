//! Several output files committed as one set.
//!
//! `train` writes `total_fea.npy`, a `trained_…` and an `added_…` index whose
//! ids point at the rows of `total_fea.npy`: a reader must never find the new
//! rows beside the old index, whatever stops the run (an error, a full disk,
//! Ctrl-C, SIGTERM, SIGKILL, a power cut).
//!
//! Every file is first written whole under a temporary name in the same
//! folder (`.<name>.<random>.tmp`) and synced. Then a journal
//! (`.rvc-index-commit.json`, itself written atomically) records the renames
//! and the files of the previous set to remove, the renames happen, and the
//! journal is deleted. A run that stops before the journal exists leaves the
//! old set untouched (its temporary files are removed by the next run,
//! [`recover`]); one that stops after it is rolled forward by the next run, so
//! the folder always ends with one whole set, old or new.
//!
//! Temporary files live in a process-wide registry, so that Ctrl-C and
//! SIGTERM remove them before the process exits (see `crate::io::signals`);
//! a commit in progress holds the registry, so a signal waits for it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::{Error, Result};

/// The journal of a commit in progress.
pub const JOURNAL: &str = ".rvc-index-commit.json";

/// Temporary files that exist right now, removed on Ctrl-C / SIGTERM.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<PathBuf>> {
    // A panic while holding the list leaves it usable: it is only paths.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remove every registered temporary file; called by the signal handler,
/// which then exits. Waits for a commit in progress to finish first.
pub fn remove_live_temps() {
    let mut l = live();
    for p in l.drain(..) {
        let _ = std::fs::remove_file(p);
    }
    // Keep the registry locked: no new temporary file may appear now.
    std::mem::forget(l);
}

/// A temporary file in the registry; dropping it removes the file.
pub(crate) struct Temp {
    path: PathBuf,
}

impl Temp {
    /// Create `.<name of dest>.<random>.tmp` beside `dest`.
    pub(crate) fn create(dest: &Path) -> Result<(Temp, File)> {
        let dir = parent(dest);
        let name = file_name(dest);
        let mut l = live();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dest, e))?;
        let (file, path) = tmp.keep().map_err(|e| Error::io(dest, e.error))?;
        l.push(path.clone());
        Ok((Temp { path }, file))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Rename into place (the registry must be held by the caller).
    fn persist(self, dest: &Path, l: &mut Vec<PathBuf>) -> Result<()> {
        let renamed = std::fs::rename(&self.path, dest);
        if renamed.is_err() {
            // Dropping `self` here would wait on the registry the caller holds.
            let _ = std::fs::remove_file(&self.path);
        }
        l.retain(|p| p != &self.path);
        std::mem::forget(self);
        renamed.map_err(|e| Error::io(dest, e))
    }

    /// Rename into place on its own (one file: already atomic).
    pub(crate) fn persist_alone(self, dest: &Path) -> Result<()> {
        let mut l = live();
        self.persist(dest, &mut l)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        live().retain(|p| p != &self.path);
    }
}

fn parent(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Write `dest`'s future content into a synced temporary file beside it,
/// with the mode of the file it will replace (0644 for a new one).
pub(crate) fn write_temp(
    dest: &Path,
    fill: impl FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
) -> Result<Temp> {
    // Renaming the finished file onto a folder would fail only at the end.
    if std::fs::metadata(dest).is_ok_and(|m| m.is_dir()) {
        return Err(Error::io(
            dest,
            std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a folder, not a file"),
        ));
    }
    let (tmp, mut file) = Temp::create(dest)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, &mut file);
        let point = format!("writing:{}", file_name(dest));
        fill(&mut w)
            .and_then(|()| crate::testing::fail_point(&point))
            .map_err(|e| Error::io(dest, e))?;
        crate::testing::pause_point(&point);
        w.flush().map_err(|e| Error::io(dest, e))?;
    }
    set_permissions(&file, dest).map_err(|e| Error::io(dest, e))?;
    file.sync_all().map_err(|e| Error::io(dest, e))?;
    Ok(tmp)
}

#[cfg(unix)]
fn set_permissions(file: &File, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_permissions(_file: &File, _path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Make renames in `dir` durable.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Where one output goes: into place on its own (atomically), or into a
/// set that is committed later as a whole.
pub enum Target<'a> {
    Direct,
    Set(&'a mut OutputSet),
}

impl Target<'_> {
    pub fn write(
        &mut self,
        path: &Path,
        fill: impl FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
    ) -> Result<()> {
        match self {
            Target::Direct => write_temp(path, fill)?.persist_alone(path),
            Target::Set(set) => set.stage(path, fill),
        }
    }
}

/// A file's size, modification time and BLAKE3 content hash.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    pub mtime_ns: u128,
    pub blake3: String,
}

/// Size and modification time without reading the content.
pub fn stat(path: &Path) -> Result<(u64, u128)> {
    let m = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok((m.len(), mtime))
}

/// BLAKE3 of a file's content, as hex.
pub fn hash_file(path: &Path) -> Result<String> {
    let (f, _) = super::open_regular(path)?;
    let mut h = blake3::Hasher::new();
    h.update_reader(f).map_err(|e| Error::io(path, e))?;
    Ok(h.finalize().to_hex().to_string())
}

/// [`stat`] and [`hash_file`] together.
pub fn fingerprint(path: &Path) -> Result<Fingerprint> {
    let (size, mtime_ns) = stat(path)?;
    Ok(Fingerprint {
        size,
        mtime_ns,
        blake3: hash_file(path)?,
    })
}

/// Whether `path` still has the content `f` recorded. Unchanged size and
/// time are trusted; a changed time means a re-hash, and the same content
/// under a new time still counts as unchanged.
pub fn unchanged(path: &Path, f: &Fingerprint) -> Result<bool> {
    let (size, mtime_ns) = match stat(path) {
        Ok(s) => s,
        Err(_) => return Ok(false),
    };
    if size != f.size {
        return Ok(false);
    }
    Ok(mtime_ns == f.mtime_ns || hash_file(path)? == f.blake3)
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Journal {
    /// (temporary name, final name), file names inside the folder.
    renames: Vec<(String, String)>,
    /// Files of the previous set that the new one does not replace.
    remove: Vec<String>,
}

/// Output files of one folder, written now and committed together.
pub struct OutputSet {
    dir: PathBuf,
    staged: Vec<(Temp, PathBuf)>,
}

impl OutputSet {
    /// A set of files inside `dir` (every destination must be a direct child).
    pub fn new(dir: &Path) -> Self {
        OutputSet {
            dir: dir.to_path_buf(),
            staged: Vec::new(),
        }
    }

    /// Write `dest` in full under a temporary name; nothing visible changes
    /// until [`OutputSet::commit`]. A second stage of the same `dest`
    /// replaces the first.
    pub fn stage(
        &mut self,
        dest: &Path,
        fill: impl FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
    ) -> Result<()> {
        if parent(dest) != self.dir.as_path() {
            return Err(Error::Invalid(format!(
                "{}: outputs of one set must be in {}",
                dest.display(),
                self.dir.display()
            )));
        }
        let tmp = write_temp(dest, fill)?;
        self.staged.retain(|(_, d)| d != dest);
        self.staged.push((tmp, dest.to_path_buf()));
        Ok(())
    }

    /// The fingerprint each staged file will have once in place (a rename
    /// keeps size, time and content), in staging order.
    pub fn fingerprints(&self) -> Result<Vec<(PathBuf, Fingerprint)>> {
        self.staged
            .iter()
            .map(|(t, d)| Ok((d.clone(), fingerprint(t.path())?)))
            .collect()
    }

    /// Put every staged file in place, in staging order, then remove
    /// `remove` (files of the previous set that the new one does not
    /// overwrite; missing ones are fine). Interrupted at any point, the next
    /// [`recover`] completes it.
    pub fn commit(self, remove: &[PathBuf]) -> Result<()> {
        let names = |p: &Path| file_name(p);
        let journal = Journal {
            renames: self
                .staged
                .iter()
                .map(|(t, d)| (names(t.path()), names(d)))
                .collect(),
            remove: remove
                .iter()
                .map(|p| names(p))
                .filter(|n| !self.staged.iter().any(|(_, d)| &names(d) == n))
                .collect(),
        };
        let jpath = self.dir.join(JOURNAL);
        let body = serde_json::to_vec(&journal).map_err(|e| Error::Invalid(e.to_string()))?;
        let jtmp = write_temp(&jpath, |w| w.write_all(&body))?;
        // From here a signal waits until the set is whole.
        let mut l = live();
        jtmp.persist(&jpath, &mut l)?;
        sync_dir(&self.dir);
        crate::testing::pause_point("commit-journal");
        for (i, (tmp, dest)) in self.staged.into_iter().enumerate() {
            tmp.persist(&dest, &mut l)?;
            if i == 0 {
                crate::testing::pause_point("commit-first-rename");
            }
        }
        drop(l);
        finish(&self.dir, &journal.remove)
    }
}

/// Remove the previous set's leftovers and the journal.
fn finish(dir: &Path, remove: &[String]) -> Result<()> {
    for n in remove {
        let p = dir.join(n);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    sync_dir(dir);
    let j = dir.join(JOURNAL);
    match std::fs::remove_file(&j) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&j, e)),
    }
    sync_dir(dir);
    Ok(())
}

/// What [`recover`] found in a folder.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// A commit that a killed run had started, now completed.
    pub rolled_forward: bool,
    /// Temporary files of killed runs, removed.
    pub removed_temps: usize,
}

/// Whether `name` is a temporary file this crate writes for `dest` names
/// accepted by `ours`: `.<dest>.<random>.tmp`.
fn temp_of(name: &str, ours: &dyn Fn(&str) -> bool) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    match inner.rsplit_once('.') {
        Some((dest, rand)) => !rand.is_empty() && ours(dest),
        None => false,
    }
}

/// Finish or undo what a killed run left in `dir`: roll a journalled commit
/// forward, then remove temporary files whose final name `ours` accepts (the
/// outputs of the command that calls it). Call it holding the folder's lock,
/// so no live run's files are touched.
pub fn recover(dir: &Path, ours: &dyn Fn(&str) -> bool) -> Result<Recovered> {
    let mut r = Recovered::default();
    let jpath = dir.join(JOURNAL);
    match std::fs::read(&jpath) {
        Ok(bytes) => {
            let j: Journal = serde_json::from_slice(&bytes).map_err(|e| {
                Error::bad_input(&jpath, format!("unreadable commit journal ({e})"))
            })?;
            for (tmp, dest) in &j.renames {
                let (t, d) = (dir.join(tmp), dir.join(dest));
                // Missing: renamed before the run stopped.
                if t.exists() {
                    std::fs::rename(&t, &d).map_err(|e| Error::io(&d, e))?;
                }
            }
            finish(dir, &j.remove)?;
            r.rolled_forward = true;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&jpath, e)),
    }
    let journal_name = JOURNAL.to_string();
    let is_ours = |n: &str| n == journal_name || ours(n);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if temp_of(&name, &is_ours) && e.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
                r.removed_temps += 1;
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(set: &mut OutputSet, dir: &Path, name: &str, body: &str) {
        set.stage(&dir.join(name), |w| w.write_all(body.as_bytes()))
            .unwrap();
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_failed_rename_returns_an_error_and_leaves_no_temporary() {
        // Renaming a file onto a non-empty folder fails; the registry the
        // rename holds must not be waited on again by the clean-up.
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("folder");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("inside"), "x").unwrap();
        let tmp = write_temp(&d.path().join("file"), |w| w.write_all(b"body")).unwrap();
        let err = tmp.persist_alone(&dest).unwrap_err();
        assert!(err.to_string().contains("folder"), "{err}");
        assert_eq!(names(d.path()), ["folder"]);
        assert_eq!(names(&dest), ["inside"]);
        // Other tests register temporaries meanwhile: look for this one's only.
        assert!(!live().iter().any(|p| p.starts_with(d.path())));
    }

    #[test]
    fn a_folder_is_refused_as_a_destination_before_anything_is_written() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("folder");
        std::fs::create_dir(&dest).unwrap();
        let err = Target::Direct
            .write(&dest, |w| w.write_all(b"body"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: is a folder, not a file", dest.display())
        );
        assert_eq!(names(d.path()), ["folder"]);
        let mut set = OutputSet::new(d.path());
        assert!(set.stage(&dest, |w| w.write_all(b"body")).is_err());
        drop(set);
        assert_eq!(names(d.path()), ["folder"]);
    }

    #[test]
    fn nothing_changes_before_commit_and_a_dropped_set_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "old a").unwrap();
        let mut s = OutputSet::new(d.path());
        write(&mut s, d.path(), "a", "new a");
        write(&mut s, d.path(), "b", "new b");
        assert_eq!(read(d.path(), "a"), "old a");
        assert!(!d.path().join("b").exists());
        drop(s);
        assert_eq!(names(d.path()), vec!["a"]);
    }

    #[test]
    fn commit_puts_every_file_and_removes_the_stale_ones() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), "old a").unwrap();
        std::fs::write(d.path().join("old_index"), "old").unwrap();
        let mut s = OutputSet::new(d.path());
        write(&mut s, d.path(), "a", "new a");
        write(&mut s, d.path(), "b", "new b");
        s.commit(&[d.path().join("old_index"), d.path().join("a")])
            .unwrap();
        assert_eq!(names(d.path()), vec!["a", "b"]);
        assert_eq!(read(d.path(), "a"), "new a");
        assert_eq!(read(d.path(), "b"), "new b");
    }

    #[test]
    fn recover_rolls_a_journalled_commit_forward() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        // As a run killed after its first rename leaves the folder.
        std::fs::write(p.join("a"), "new a").unwrap();
        std::fs::write(p.join(".b.XyZ123.tmp"), "new b").unwrap();
        std::fs::write(p.join("b"), "old b").unwrap();
        std::fs::write(p.join("stale"), "old").unwrap();
        let j = Journal {
            renames: vec![
                (".a.Abc123.tmp".into(), "a".into()),
                (".b.XyZ123.tmp".into(), "b".into()),
            ],
            remove: vec!["stale".into()],
        };
        std::fs::write(p.join(JOURNAL), serde_json::to_vec(&j).unwrap()).unwrap();
        let r = recover(p, &|n| n == "a" || n == "b").unwrap();
        assert!(r.rolled_forward);
        assert_eq!(names(p), vec!["a", "b"]);
        assert_eq!(read(p, "b"), "new b");
    }

    #[test]
    fn recover_removes_only_our_temporary_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for n in [
            ".total_fea.npy.a1B2c3.tmp",
            ".added_IVF4_Flat.index.Q9w8e7.tmp",
            ".G_2333.pth.aaaaaa.tmp",
            ".total_fea.npy.tmp",
            "total_fea.npy",
        ] {
            std::fs::write(p.join(n), "x").unwrap();
        }
        let r = recover(p, &|n| n == "total_fea.npy" || n.ends_with(".index")).unwrap();
        assert_eq!(r.removed_temps, 2);
        assert!(!r.rolled_forward);
        assert_eq!(
            names(p),
            vec![
                ".G_2333.pth.aaaaaa.tmp",
                ".total_fea.npy.tmp",
                "total_fea.npy"
            ]
        );
    }
}

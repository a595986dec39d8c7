//! Dictionaries: words that are never flagged. Files hold one word a line, UTF-8, `#` starting a
//! comment line; an entry in lower case also matches the word capitalized, an entry with
//! capitals only as written. Where the files live (the user's, a workspace's, one found upward
//! from a file), reading them with bounds and clear problems, and adding a word without ever
//! losing an entry (a lock file, a temporary file renamed over the old one).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A dictionary file is read up to this many bytes...
pub const MAX_BYTES: u64 = 16 << 20;
/// ...and this many entries; the rest is left out with a message.
pub const MAX_ENTRIES: usize = 200_000;
/// The longest word a dictionary holds (longer lines are skipped).
pub const MAX_WORD_BYTES: usize = 200;

/// A set of words with the dictionary's case rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WordList {
    words: HashSet<String>,
}

impl WordList {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, word: &str) {
        let w = word.trim();
        if !w.is_empty() {
            self.words.insert(w.to_string());
        }
    }

    pub fn extend(&mut self, other: &WordList) {
        self.words.extend(other.words.iter().cloned());
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Whether `word` is in the list: as written, or as a lower-case entry capitalized.
    pub fn contains(&self, word: &str) -> bool {
        if self.words.contains(word) {
            return true;
        }
        let mut chars = word.chars();
        let Some(first) = chars.next() else {
            return false;
        };
        if !first.is_uppercase() {
            return false;
        }
        let rest = chars.as_str();
        if rest.chars().any(char::is_uppercase) {
            return false;
        }
        let lowered: String = first.to_lowercase().chain(rest.chars()).collect();
        lowered != word && self.words.contains(&lowered)
    }
}

/// What reading a dictionary gave: its words and, when something was wrong, one sentence
/// saying what (the words read are still used).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub words: WordList,
    pub problem: Option<String>,
}

/// Parses a dictionary's bytes: one word a line, `#` comment lines, blank lines skipped.
/// Lines that are not UTF-8, and entries past [`MAX_ENTRIES`], are left out and named.
pub fn parse(bytes: &[u8]) -> Loaded {
    let mut words = WordList::new();
    let mut not_utf8 = Vec::new();
    let mut too_long = 0usize;
    let mut dropped = 0usize;
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(line) = std::str::from_utf8(line) else {
            not_utf8.push(i + 1);
            continue;
        };
        let line = line.trim().trim_start_matches('\u{feff}');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() > MAX_WORD_BYTES {
            too_long += 1;
            continue;
        }
        if words.len() >= MAX_ENTRIES {
            dropped += 1;
            continue;
        }
        words.insert(line);
    }
    let mut problems = Vec::new();
    if !not_utf8.is_empty() {
        let shown: Vec<String> = not_utf8.iter().take(5).map(|n| n.to_string()).collect();
        problems.push(format!(
            "{} line(s) are not UTF-8 and were skipped (line {}{}); save the file as UTF-8",
            not_utf8.len(),
            shown.join(", "),
            if not_utf8.len() > 5 { ", …" } else { "" }
        ));
    }
    if dropped > 0 {
        problems.push(format!(
            "it has more than {MAX_ENTRIES} words; only the first {MAX_ENTRIES} are used \
             ({dropped} left out)"
        ));
    }
    if too_long > 0 {
        problems.push(format!(
            "{too_long} line(s) longer than {MAX_WORD_BYTES} bytes were skipped"
        ));
    }
    Loaded {
        words,
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
    }
}

/// Reads a dictionary file within [`MAX_BYTES`]. A missing file is empty, and a problem only
/// when `required` (a file the user named); a directory or an unreadable file is a problem.
pub fn load(path: &Path, required: bool) -> Loaded {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Loaded {
                words: WordList::new(),
                problem: required.then(|| "the file does not exist".to_string()),
            };
        }
        Err(e) => {
            return Loaded {
                words: WordList::new(),
                problem: Some(format!("cannot be read: {e}")),
            };
        }
    };
    let meta = file.metadata().ok();
    if meta.as_ref().is_some_and(|m| m.is_dir()) {
        return Loaded {
            words: WordList::new(),
            problem: Some("is a directory, not a file of words".into()),
        };
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_BYTES).read_to_end(&mut bytes) {
        return Loaded {
            words: WordList::new(),
            problem: Some(format!("cannot be read: {e}")),
        };
    }
    let truncated = meta.is_some_and(|m| m.len() > MAX_BYTES);
    if truncated {
        // The last line may be cut in the middle: drop it.
        if let Some(nl) = bytes.iter().rposition(|&b| b == b'\n') {
            bytes.truncate(nl);
        }
    }
    let mut loaded = parse(&bytes);
    if truncated {
        let msg = format!(
            "it is larger than {} MiB; only its beginning is used",
            MAX_BYTES >> 20
        );
        loaded.problem = Some(match loaded.problem {
            Some(p) => format!("{msg}; {p}"),
            None => msg,
        });
    }
    loaded
}

/// A dictionary file and what was last read from it; [`DictionaryFile::refresh`] reads it
/// again only when its modification time or size changed.
#[derive(Debug, Clone)]
pub struct DictionaryFile {
    pub path: PathBuf,
    /// A file the user named: its absence is a problem.
    pub required: bool,
    stamp: Option<Stamp>,
    pub loaded: Loaded,
    read_once: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stamp {
    Missing,
    File(Option<SystemTime>, u64, bool),
}

fn stamp(path: &Path) -> Stamp {
    match fs::metadata(path) {
        Ok(m) => Stamp::File(m.modified().ok(), m.len(), m.is_dir()),
        Err(_) => Stamp::Missing,
    }
}

impl DictionaryFile {
    pub fn new(path: PathBuf, required: bool) -> Self {
        Self {
            path,
            required,
            stamp: None,
            loaded: Loaded::default(),
            read_once: false,
        }
    }

    /// Reads the file again if it changed on disk (one `stat` when it did not); returns
    /// whether its words or problem changed.
    pub fn refresh(&mut self) -> bool {
        let now = stamp(&self.path);
        if self.read_once && Some(now) == self.stamp {
            return false;
        }
        self.stamp = Some(now);
        self.read_once = true;
        let loaded = load(&self.path, self.required);
        let changed = loaded != self.loaded;
        self.loaded = loaded;
        changed
    }

    /// Forgets the stamp so that the next refresh reads the file (a watcher said it changed:
    /// a write within the same second and of the same size would keep the stamp).
    pub fn invalidate(&mut self) {
        self.stamp = None;
    }
}

/// The user's dictionary: `<config dir>/quill/dictionary.txt` (`$XDG_CONFIG_HOME` or
/// `~/.config` on Linux and other Unixes, `~/Library/Application Support` on macOS,
/// `%APPDATA%` on Windows).
pub fn user_dictionary_path() -> Option<PathBuf> {
    config_dir().map(|d| d.join("quill").join("dictionary.txt"))
}

fn config_dir() -> Option<PathBuf> {
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if cfg!(windows) {
        env_dir("APPDATA")
    } else if cfg!(target_os = "macos") {
        env_dir("HOME").map(|h| h.join("Library").join("Application Support"))
    } else {
        env_dir("XDG_CONFIG_HOME").or_else(|| env_dir("HOME").map(|h| h.join(".config")))
    }
}

/// A workspace folder's dictionary: `<folder>/.quill/dictionary.txt`.
pub fn workspace_dictionary_path(folder: &Path) -> PathBuf {
    folder.join(".quill").join("dictionary.txt")
}

/// The nearest `.quill/dictionary.txt` in the directory of `file` or above it.
pub fn find_upward(file: &Path) -> Option<PathBuf> {
    let start = if file.is_dir() { file } else { file.parent()? };
    let start = fs::canonicalize(start).unwrap_or_else(|_| start.to_path_buf());
    start
        .ancestors()
        .map(workspace_dictionary_path)
        .find(|p| p.is_file())
}

/// Why a word cannot go into a dictionary, if it cannot.
pub fn check_word(word: &str) -> Result<(), String> {
    if word.trim().is_empty() {
        return Err("the word is empty".into());
    }
    if word != word.trim() || word.contains(['\n', '\r']) {
        return Err(format!(
            "{word:?} has surrounding spaces or line breaks; a dictionary holds one word a line"
        ));
    }
    if word.starts_with('#') {
        return Err(format!(
            "{word:?} starts with '#', which marks a comment line"
        ));
    }
    if word.len() > MAX_WORD_BYTES {
        return Err(format!("the word is longer than {MAX_WORD_BYTES} bytes"));
    }
    Ok(())
}

/// How long a writer waits for another's lock before it gives up, and when a lock is so old
/// that its owner must have died.
const LOCK_WAIT: Duration = Duration::from_secs(10);
const LOCK_STALE: Duration = Duration::from_secs(30);

/// Adds `word` to the dictionary at `path` (creating the file and its directory): under a lock
/// file shared with every other quill, reads the file as it is now, appends the word unless a
/// line already holds it, writes the whole to a temporary file beside it and renames that over
/// the original. Existing bytes (comments, lines in other encodings) are kept as they are.
/// Returns whether the word was added (false: it was there).
pub fn add_word(path: &Path, word: &str) -> io::Result<bool> {
    check_word(word).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let _lock = LockFile::acquire(&lock_path(path))?;
    let mut bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let present = bytes
        .split(|&b| b == b'\n')
        .any(|l| l.strip_suffix(b"\r").unwrap_or(l).trim_ascii() == word.as_bytes());
    if present {
        return Ok(false);
    }
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(word.as_bytes());
    bytes.push(b'\n');
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dictionary.txt".into());
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        unique_suffix()
    ));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        if let Ok(meta) = fs::metadata(path) {
            let _ = fs::set_permissions(&tmp, meta.permissions());
        }
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| true)
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (COUNTER.fetch_add(1, Ordering::Relaxed) << 32) ^ nanos
}

/// A lock file created exclusively (`O_EXCL`): works across processes and threads on every
/// platform; removed on drop. A lock older than [`LOCK_STALE`] is taken over.
struct LockFile(PathBuf);

impl LockFile {
    fn acquire(path: &Path) -> io::Result<LockFile> {
        let start = std::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(LockFile(path.to_path_buf()));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > LOCK_STALE);
                    if stale {
                        tracing::warn!("taking over the stale lock {}", path.display());
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    if start.elapsed() > LOCK_WAIT {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "{} is held by another quill; if none is running, delete it",
                                path.display()
                            ),
                        ));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_case_entries_match_capitalized_words_and_capitals_only_as_written() {
        let mut w = WordList::new();
        w.insert("quill");
        w.insert("GitHub");
        w.insert("élan");
        assert!(w.contains("quill"));
        assert!(w.contains("Quill"));
        assert!(!w.contains("QUILL"));
        assert!(!w.contains("qUill"));
        assert!(w.contains("GitHub"));
        assert!(!w.contains("github"));
        assert!(!w.contains("Github"));
        assert!(w.contains("Élan"));
        assert!(!w.contains(""));
    }

    #[test]
    fn comments_blank_lines_and_bad_bytes() {
        let loaded = parse(b"# words\n\nfoo\r\n  bar  \n\xff\xfe\nbaz");
        assert!(loaded.words.contains("foo"));
        assert!(loaded.words.contains("bar"));
        assert!(loaded.words.contains("baz"));
        assert!(!loaded.words.contains("# words"));
        assert_eq!(loaded.words.len(), 3);
        let p = loaded.problem.unwrap();
        assert!(p.contains("not UTF-8") && p.contains("line 5"), "{p}");
        assert_eq!(parse(b"a\nb\n").problem, None);
    }

    #[test]
    fn adding_keeps_every_byte_and_does_not_repeat_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("dictionary.txt");
        assert!(add_word(&path, "quill").unwrap());
        assert!(!add_word(&path, "quill").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"quill\n");
        fs::write(&path, b"# mine\n\xff odd\nlast").unwrap();
        assert!(add_word(&path, "Zed").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"# mine\n\xff odd\nlast\nZed\n");
        assert!(add_word(&path, "").is_err());
        assert!(add_word(&path, "#x").is_err());
        assert!(add_word(&path, "a\nb").is_err());
        // No temporary or lock file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("dictionary.txt")]);
    }

    #[test]
    fn threads_adding_at_once_keep_every_word() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dictionary.txt");
        std::thread::scope(|s| {
            for t in 0..4 {
                let path = &path;
                s.spawn(move || {
                    for i in 0..25 {
                        add_word(path, &format!("w{t}x{i}")).unwrap();
                    }
                });
            }
        });
        let loaded = load(&path, true);
        assert_eq!(loaded.words.len(), 100);
        assert_eq!(loaded.problem, None);
    }

    #[test]
    fn missing_directories_and_stale_locks() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.txt");
        assert_eq!(load(&missing, false), Loaded::default());
        assert!(load(&missing, true)
            .problem
            .unwrap()
            .contains("does not exist"));
        assert!(load(dir.path(), false)
            .problem
            .unwrap()
            .contains("directory"));
        // A lock left by a dead writer long ago does not block forever.
        let path = dir.path().join("dictionary.txt");
        let lock = lock_path(&path);
        fs::write(&lock, "1\n").unwrap();
        let old = SystemTime::now() - Duration::from_secs(120);
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(add_word(&path, "word").unwrap());
        assert!(!lock.exists());
    }

    #[test]
    fn refresh_reads_again_only_after_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dictionary.txt");
        let mut f = DictionaryFile::new(path.clone(), false);
        assert!(!f.refresh(), "missing and empty: nothing changed");
        fs::write(&path, "one\n").unwrap();
        assert!(f.refresh());
        assert!(f.loaded.words.contains("one"));
        assert!(!f.refresh());
        fs::write(&path, "one\ntwo\n").unwrap();
        assert!(f.refresh());
        assert!(f.loaded.words.contains("two"));
    }

    #[test]
    fn the_nearest_workspace_dictionary_upward() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a").join("b");
        fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_upward(&deep.join("x.md")), None);
        let dict = workspace_dictionary_path(&dir.path().join("a"));
        fs::create_dir_all(dict.parent().unwrap()).unwrap();
        fs::write(&dict, "w\n").unwrap();
        let found = find_upward(&deep.join("x.md")).unwrap();
        assert_eq!(
            fs::canonicalize(found).unwrap(),
            fs::canonicalize(dict).unwrap()
        );
    }
}

//! What is not flagged although the model finds it unlikely: words of the dictionaries and of
//! the document's ignore list, words the document itself uses often (`ignoreRepeated`), lines
//! silenced by ignore comments, and documents whose path an `exclude` glob matches.
//!
//! Ignore comments are found on the document's raw lines, whatever its format, so they work in
//! any comment syntax (`// quill: off`, `# quill: ignore-line`, `<!-- quill: on -->`, `% …`):
//! `quill: ignore-next-line`, `quill: ignore-line`, and `quill: off` … `quill: on`.

use std::collections::HashMap;

use super::checker::{Finding, FindingKind};
use super::dictionary::WordList;
use crate::engine::tasks::proofread::word_spans;

/// The directives of ignore comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    NextLine,
    Line,
    Off,
    On,
}

/// The directive on a line, if it holds `quill:` followed by one.
fn directive(line: &str) -> Option<Directive> {
    let mut rest = line;
    while let Some(i) = rest.find("quill:") {
        let after = rest[i + "quill:".len()..].trim_start();
        for (name, d) in [
            ("ignore-next-line", Directive::NextLine),
            ("ignore-line", Directive::Line),
            ("off", Directive::Off),
            ("on", Directive::On),
        ] {
            if let Some(tail) = after.strip_prefix(name) {
                let ends = tail
                    .chars()
                    .next()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_'));
                if ends {
                    return Some(d);
                }
            }
        }
        rest = &rest[i + "quill:".len()..];
    }
    None
}

/// Byte ranges of `text` that ignore comments silence, each a whole line or a run of lines
/// (line breaks included), sorted and disjoint. The lines holding the directives are silenced
/// too.
pub fn silenced_ranges(text: &str) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut push = |a: usize, b: usize| match out.last_mut() {
        Some(last) if last.1 >= a => last.1 = last.1.max(b),
        _ => out.push((a, b)),
    };
    let mut off_since: Option<usize> = None;
    let mut next_line = false;
    let mut start = 0;
    while start < text.len() {
        let end = text[start..]
            .find('\n')
            .map_or(text.len(), |i| start + i + 1);
        let line = &text[start..end];
        let d = directive(line);
        if next_line {
            push(start, end);
            next_line = false;
        }
        match d {
            Some(Directive::Line) => push(start, end),
            Some(Directive::NextLine) => {
                // The directive's own line is not prose either.
                push(start, end);
                next_line = true;
            }
            Some(Directive::Off) => {
                off_since.get_or_insert(start);
            }
            Some(Directive::On) => {
                if let Some(a) = off_since.take() {
                    push(a, end);
                }
            }
            None => {}
        }
        start = end;
    }
    if let Some(a) = off_since {
        push(a, text.len());
    }
    out
}

/// How often each word occurs in `text` (whole words, as written).
pub fn word_counts(text: &str) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for (a, b) in word_spans(text) {
        *counts.entry(&text[a..b]).or_insert(0) += 1;
    }
    counts
}

/// What to leave unflagged in one document.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    /// The word lists that apply: dictionaries, the setting's words, the document's ignores.
    pub lists: Vec<&'a WordList>,
    /// A word used at least this many times in the document is not flagged (0: off).
    pub ignore_repeated: usize,
}

impl Filter<'_> {
    /// Drops the findings in `findings` that the document's text, its ignore comments and the
    /// word lists silence.
    pub fn apply(&self, text: &str, findings: &mut Vec<Finding>) {
        if findings.is_empty() {
            return;
        }
        let silenced = silenced_ranges(text);
        let counts = (self.ignore_repeated > 0).then(|| word_counts(text));
        findings.retain(|f| {
            let overlaps = silenced
                .iter()
                .any(|&(a, b)| f.start < b && a < f.end.max(f.start + 1));
            if overlaps {
                return false;
            }
            let FindingKind::Word { word, .. } = &f.kind else {
                return true;
            };
            if self.lists.iter().any(|l| l.contains(word)) {
                return false;
            }
            if let Some(c) = &counts {
                if c.get(word.as_str()).copied().unwrap_or(0) >= self.ignore_repeated {
                    return false;
                }
            }
            true
        });
    }
}

/// Glob patterns on document paths (`diagnostics.exclude`): `*` and `?` within a path segment,
/// `**` across segments, `[abc]` classes. A pattern without a `/` matches the file name
/// anywhere (`*.min.js`); one with a `/` matches the whole path, or the path relative to a
/// workspace folder (`docs/generated/**`).
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    patterns: Vec<(glob::Pattern, bool)>,
}

impl Exclude {
    /// Compiles the patterns; a bad one is named in the error.
    pub fn new(patterns: &[String]) -> Result<Exclude, String> {
        let mut out = Vec::new();
        for p in patterns {
            let has_slash = p.contains('/');
            let pattern = glob::Pattern::new(p.trim_start_matches("./"))
                .map_err(|e| format!("{p:?} is not a glob pattern: {e}"))?;
            out.push((pattern, has_slash));
        }
        Ok(Exclude { patterns: out })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (with `/` separators) is excluded; `folders` are the workspace folders
    /// a relative pattern may start from.
    pub fn matches(&self, path: &str, folders: &[String]) -> bool {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        let relative: Vec<&str> = folders
            .iter()
            .filter_map(|f| path.strip_prefix(f.trim_end_matches('/')))
            .filter_map(|r| r.strip_prefix('/'))
            .collect();
        self.patterns.iter().any(|(p, has_slash)| {
            if !has_slash {
                return p.matches_with(name, opts);
            }
            p.matches_with(path, opts)
                || relative.iter().any(|r| p.matches_with(r, opts))
                || p.matches_with(path.trim_start_matches('/'), opts)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silenced_lines(text: &str) -> Vec<&str> {
        silenced_ranges(text)
            .into_iter()
            .flat_map(|(a, b)| text[a..b].lines())
            .collect()
    }

    #[test]
    fn ignore_comments_in_several_syntaxes() {
        let text = "one\n<!-- quill: ignore-next-line -->\ntwo\nthree // quill: ignore-line\n\
                    four\n# quill: off\nfive\nsix\n% quill: on\nseven\n";
        assert_eq!(
            silenced_lines(text),
            vec![
                "<!-- quill: ignore-next-line -->",
                "two",
                "three // quill: ignore-line",
                "# quill: off",
                "five",
                "six",
                "% quill: on"
            ]
        );
        // Off to the end of the document when no `on` follows.
        assert_eq!(
            silenced_lines("a\n/* quill:off */\nb\nc"),
            vec!["/* quill:off */", "b", "c"]
        );
        // Words that merely start like a directive do nothing.
        assert!(silenced_ranges("quill: often\nquill: online\nquill: ignore-lines\n").is_empty());
        assert!(silenced_ranges("").is_empty());
    }

    fn word(start: usize, end: usize, w: &str) -> Finding {
        Finding {
            start,
            end,
            kind: FindingKind::Word {
                word: w.into(),
                logprob: -30.0,
                alternatives: vec![],
            },
        }
    }

    #[test]
    fn the_filter_drops_listed_repeated_and_silenced_words() {
        let text =
            "Zorp met Blix. Blix saw Zorp. Blix left.\nQuux here # quill: ignore-line\nFnord.";
        let at = |w: &str| {
            let s = text.find(w).unwrap();
            word(s, s + w.len(), w)
        };
        let all = vec![at("Zorp"), at("Blix"), at("Quux"), at("Fnord"), at("met")];
        let mut dict = WordList::new();
        dict.insert("fnord");
        let mut f = all.clone();
        Filter {
            lists: vec![&dict],
            ignore_repeated: 3,
        }
        .apply(text, &mut f);
        let left: Vec<String> = f.iter().map(|x| text[x.start..x.end].to_string()).collect();
        assert_eq!(left, vec!["Zorp", "met"]);
        // ignoreRepeated 2 drops Zorp too; 0 turns the rule off.
        let mut f = all.clone();
        let mut doc = WordList::new();
        doc.insert("met");
        Filter {
            lists: vec![&doc],
            ignore_repeated: 2,
        }
        .apply(text, &mut f);
        let left: Vec<&str> = f.iter().map(|x| &text[x.start..x.end]).collect();
        assert_eq!(left, vec!["Fnord"]);
        let mut f = all.clone();
        Filter::default().apply(text, &mut f);
        assert_eq!(f.len(), 4, "only the ignore comment acts");
    }

    #[test]
    fn exclude_globs_on_names_and_relative_paths() {
        let ex = Exclude::new(&["*.min.js".into(), "docs/generated/**".into()]).unwrap();
        let folders = vec!["/home/u/proj".to_string()];
        assert!(ex.matches("/home/u/proj/web/app.min.js", &folders));
        assert!(!ex.matches("/home/u/proj/web/app.js", &folders));
        assert!(ex.matches("/home/u/proj/docs/generated/a/b.md", &folders));
        assert!(!ex.matches("/home/u/proj/docs/guide.md", &folders));
        assert!(!ex.matches("/elsewhere/docs/generated/x.md", &folders));
        let abs = Exclude::new(&["/tmp/**/secret.txt".into()]).unwrap();
        assert!(abs.matches("/tmp/a/b/secret.txt", &[]));
        assert!(Exclude::new(&["[unclosed".into()]).is_err());
    }
}

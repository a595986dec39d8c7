//! The kept tree: after any edits, incremental extraction gives exactly what a fresh one
//! gives, and a keystroke re-extracts only the comment it touched.

use super::*;

/// The edit replacing `old[start..old_end]` by `new`, with its points.
pub(crate) fn edit_of(old: &str, start: usize, old_end: usize, new: &str) -> (String, TextEdit) {
    let point = |text: &str, byte: usize| {
        let before = &text[..byte];
        let row = before.matches('\n').count();
        (row, byte - before.rfind('\n').map_or(0, |p| p + 1))
    };
    let text = format!("{}{}{}", &old[..start], new, &old[old_end..]);
    let edit = TextEdit {
        start,
        old_end,
        new_end: start + new.len(),
        start_point: point(old, start),
        old_end_point: point(old, old_end),
        new_end_point: point(&text, start + new.len()),
    };
    (text, edit)
}

fn source(lines: usize) -> String {
    let mut s = String::new();
    for k in 0..lines / 4 {
        s.push_str(&format!(
            "/// Documents item number {k} for the reader.\nfn item_{k}(value: u32) -> u32 {{\n    value + {k} // adds the offset\n}}\n"
        ));
    }
    s
}

/// Paragraphs' texts and pieces.
type Stripped = Vec<(String, Vec<(usize, usize, usize)>)>;

fn same(a: &[Paragraph], b: &[Paragraph]) -> Result<(), String> {
    let strip = |ps: &[Paragraph]| -> Stripped {
        ps.iter()
            .map(|p| (p.text.clone(), p.pieces.clone()))
            .collect()
    };
    if strip(a) != strip(b) {
        return Err(format!("{:?}\n!=\n{:?}", strip(a), strip(b)));
    }
    let known = |ps: &[Paragraph]| ps.first().and_then(|p| p.known.as_deref().cloned());
    if known(a) != known(b) {
        return Err("known words differ".into());
    }
    Ok(())
}

#[test]
fn a_keystroke_re_extracts_only_its_comment() {
    let text = source(10_000);
    let mut dp = DocumentProse::new("rust", &[]);
    let full = dp.extract(&text, None);
    assert_eq!(full.len(), 2 * 2_500);
    assert_eq!(dp.last_walked, text.len());
    // Type one letter inside the 1,000th doc comment.
    let at = text.match_indices("the reader").nth(1_000).unwrap().0 + 4;
    let (next, edit) = edit_of(&text, at, at, "x");
    let inc = dp.extract(&next, Some(&[edit]));
    assert_eq!(
        dp.last_extracted, 1,
        "only the edited comment is extracted again"
    );
    assert!(dp.last_walked < 200, "walked {} bytes", dp.last_walked);
    same(&inc, &paragraphs(&next, "rust", &[])).unwrap();
    assert!(inc.iter().any(|p| p.text.contains("the xreader")));
    // Nothing changed: nothing extracted.
    dp.extract(&next, Some(&[]));
    assert_eq!(dp.last_extracted, 0);
}

#[test]
fn a_parser_reading_past_its_budget_falls_back_to_the_scanner() {
    // Lua's external scanner looks for the end of every unclosed long bracket `[=[` by
    // reading to the end of the document: quadratic, with no progress call in between.
    let doc = format!("-- A real comment here.\nx = 1\n{}", "[=".repeat(100_000));
    let mut dp = DocumentProse::new("lua", &[]);
    let started = std::time::Instant::now();
    let ps = dp.extract(&doc, None);
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    assert_eq!(dp.last_walked, 0, "the tree was given up");
    let texts: Vec<&str> = ps.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, ["A real comment here."]);
    // An edit to it parses anew, within the budget again, and still finds the comment.
    let (next, edit) = edit_of(&doc, 5, 9, "true");
    let ps = dp.extract(&next, Some(&[edit]));
    assert_eq!(dp.last_walked, 0);
    assert_eq!(ps[0].text, "A true comment here.");
    // The same comment in ordinary Lua keeps its tree.
    let ordinary = "-- A real comment here.\nx = 1\n".repeat(5_000);
    dp.extract(&ordinary, None);
    assert_eq!(dp.last_walked, ordinary.len());
}

#[test]
fn identifiers_follow_edits() {
    let text = "fn alpha() {}\n// mentions alpha and beta\n";
    let mut dp = DocumentProse::new("rust", &[]);
    let ps = dp.extract(text, None);
    assert!(ps[0].is_known("alpha") && !ps[0].is_known("beta"));
    let at = text.find("alpha").unwrap();
    let (next, edit) = edit_of(text, at, at + 5, "beta");
    let ps = dp.extract(&next, Some(&[edit]));
    assert!(ps[0].is_known("beta") && !ps[0].is_known("alpha"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Random edits (several per pass, also ones that open and close comments and strings):
    /// the kept tree gives the same paragraphs and known words as a fresh parse.
    #[test]
    fn incremental_equals_fresh(
        lang in proptest::sample::select(vec!["rust", "javascript", "python", "c"]),
        edits in proptest::collection::vec(
            (0.0f64..1.0, 0usize..12, proptest::sample::select(vec![
                "", "x", " word", "\n", "//", "/*", "*/", "\"", "#", "'''", "\"\"\"", "// note\n",
                "fn", "é",
            ])),
            1..6,
        ),
        split in 1usize..4,
    ) {
        let mut text = source(40);
        let mut dp = DocumentProse::new(lang, &[]);
        dp.extract(&text, None);
        let mut pending = Vec::new();
        for (k, (pos, len, ins)) in edits.iter().enumerate() {
            let mut start = ((text.len() as f64) * pos) as usize;
            while !text.is_char_boundary(start) { start -= 1; }
            let mut end = (start + len).min(text.len());
            while !text.is_char_boundary(end) { end += 1; }
            let (next, edit) = edit_of(&text, start, end, ins);
            text = next;
            pending.push(edit);
            if (k + 1) % split == 0 || k + 1 == edits.len() {
                let inc = dp.extract(&text, Some(&pending));
                pending.clear();
                let fresh = paragraphs(&text, lang, &[]);
                proptest::prop_assert!(same(&inc, &fresh).is_ok(), "{}", same(&inc, &fresh).unwrap_err());
            }
        }
    }
}

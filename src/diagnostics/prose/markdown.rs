//! Markdown over pulldown-cmark's offset iterator: CommonMark with GFM tables, footnotes,
//! strikethrough, task lists, `$…$`/`$$…$$` math and YAML/TOML front matter. Text events are
//! prose; code, math, HTML, images, footnote references, task boxes and front matter are not.
//! Entities are decoded (the decoded text maps back to the whole entity). Doc comments are
//! markdown too: [`super::comments`] hands their text here in [`Mode::Comment`].

use std::ops::Range;

use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};

use super::builder::Builder;
use super::text::{find_byte, url_end, url_start};
use super::Paragraph;

/// What the markdown is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A markdown document: front matter allowed.
    Document,
    /// The text of a comment (a doc comment, a docstring): no front matter.
    Comment,
}

fn options(mode: Mode) -> Options {
    let mut o = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_MATH
        | Options::ENABLE_GFM;
    if mode == Mode::Document {
        o |= Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
            | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS;
    }
    o
}

/// The paragraphs of markdown `src` (offsets into `src`).
pub fn paragraphs(src: &str, mode: Mode) -> Vec<Paragraph> {
    let mut b = Builder::new(src);
    let mut walk = Walk {
        skip: 0,
        links: Vec::new(),
    };
    // A reference link whose definition is elsewhere (`[text][ref]`) is still a link.
    let broken = |_: pulldown_cmark::BrokenLink| Some(("".into(), "".into()));
    let parser = Parser::new_with_broken_link_callback(src, options(mode), Some(broken));
    for (event, range) in parser.into_offset_iter() {
        walk.event(src, event, range, &mut b);
    }
    b.finish()
}

/// The number of parser events for `src` (the work done, for the tests' bounds).
pub fn event_count(src: &str, mode: Mode) -> usize {
    Parser::new_ext(src, options(mode)).count()
}

struct Walk {
    /// Depth inside something whose text is not prose (code block, HTML block, front matter,
    /// image, autolink).
    skip: usize,
    /// Open links: whether each one's text is left out (an autolink).
    links: Vec<bool>,
}

impl Walk {
    fn event(&mut self, src: &str, event: Event, range: Range<usize>, b: &mut Builder) {
        match event {
            Event::Start(tag) => {
                if let Tag::Link { .. } = tag {
                    self.links.push(skips(&tag));
                }
                if skips(&tag) {
                    self.skip += 1;
                } else if !is_inline(&tag) {
                    b.flush();
                }
            }
            Event::End(end) => {
                let link_skips = end == TagEnd::Link && self.links.pop() == Some(true);
                if skips_end(end) || link_skips {
                    self.skip = self.skip.saturating_sub(1);
                } else if !is_inline_end(end) {
                    b.flush();
                }
            }
            Event::Text(t) if self.skip == 0 => text(src, &t, range, b),
            Event::SoftBreak | Event::HardBreak if self.skip == 0 => {
                let nl = find_byte(src.as_bytes(), range.start, range.end, b'\n');
                b.line_break(nl);
            }
            // Code spans, math, HTML, footnote references, task boxes, rules.
            _ => {}
        }
    }
}

/// Tags whose content is left out.
fn skips(tag: &Tag) -> bool {
    match tag {
        Tag::CodeBlock(_) | Tag::HtmlBlock | Tag::MetadataBlock(_) | Tag::Image { .. } => true,
        Tag::Link { link_type, .. } => matches!(link_type, LinkType::Autolink | LinkType::Email),
        _ => false,
    }
}

fn skips_end(end: TagEnd) -> bool {
    matches!(
        end,
        TagEnd::CodeBlock | TagEnd::HtmlBlock | TagEnd::MetadataBlock(_) | TagEnd::Image
    )
}

/// Inline tags do not end a paragraph.
fn is_inline(tag: &Tag) -> bool {
    matches!(
        tag,
        Tag::Emphasis
            | Tag::Strong
            | Tag::Strikethrough
            | Tag::Superscript
            | Tag::Subscript
            | Tag::Link { .. }
    )
}

fn is_inline_end(end: TagEnd) -> bool {
    matches!(
        end,
        TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough
            | TagEnd::Superscript
            | TagEnd::Subscript
            | TagEnd::Link
    )
}

/// A text event: the source bytes when the text is them; otherwise a replacement that stands
/// for the whole source range (a decoded entity). A text that follows a backslash escape
/// starts with the escaped character (pulldown-cmark leaves the backslash out of the range):
/// that character stands for both bytes, so a flag on it covers the backslash too.
fn text(src: &str, t: &str, range: Range<usize>, b: &mut Builder) {
    if &src[range.clone()] != t {
        b.replace(t, range.start, range.end);
        return;
    }
    let mut s = range.start;
    if escaped(src.as_bytes(), s) {
        b.replace(&src[s..s + 1], s - 1, s + 1);
        s += 1;
    }
    plain_text(src, s, range.end, b);
}

/// Whether the byte at `at` is ASCII punctuation escaped by the backslash before it (an odd
/// run of backslashes: `\\*` is an escaped backslash and then a star).
fn escaped(bytes: &[u8], at: usize) -> bool {
    if !bytes.get(at).is_some_and(u8::is_ascii_punctuation) {
        return false;
    }
    let run = bytes[..at]
        .iter()
        .rev()
        .take_while(|&&c| c == b'\\')
        .count();
    run % 2 == 1
}

/// Source text without bare URLs and JSDoc inline tags (`{@link Foo}`).
fn plain_text(src: &str, s: usize, e: usize, b: &mut Builder) {
    let bytes = src.as_bytes();
    let (mut i, mut run) = (s, s);
    while i < e {
        let c = bytes[i];
        let boundary = i == s || !super::text::is_ident(bytes[i - 1]);
        if c == b'{' && bytes.get(i + 1) == Some(&b'@') {
            if let Some(p) = find_byte(bytes, i + 2, e.min(i + 256), b'}') {
                b.push(run, i);
                i = p + 1;
                run = i;
                continue;
            }
        } else if boundary && url_start(bytes, i, e) {
            b.push(run, i);
            i = url_end(bytes, i, e);
            run = i;
            continue;
        }
        i += 1;
    }
    b.push(run, e);
}

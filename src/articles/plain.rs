//! HTML summaries as text people read: the text part of every digest, and the one-line
//! forms (teasers, titles) cut from it. Rendered by `html2text` (which parses with the same
//! html5ever as the sanitiser), with a decorator of our own so that a link keeps its URL
//! after its words, in angle brackets as RFC 3986 Appendix C suggests for URLs in text.
//!
//! `<p>One.</p><p>Two.</p><ul><li>A</li><li>B</li></ul>x<br>y` becomes
//! "One.\n\nTwo.\n\n* A\n* B\n\nx\ny", where stripping the tags gave "One.Two.ABxy".

use html2text::render::{TaggedLine, TextDecorator};

/// Columns of the text part (RFC 5322 asks lines of at most 78 characters).
pub const TEXT_WIDTH: usize = 78;

/// Inline links as "words <URL>", list items with a bullet, quotes with "> ", and
/// no emphasis marks (`*`, `_` read as noise in a mail).
#[derive(Clone, Default)]
struct MailText {
    /// The URLs of the links being rendered, innermost last.
    links: Vec<String>,
}

impl TextDecorator for MailText {
    type Annotation = ();

    fn decorate_link_start(&mut self, url: &str) -> (String, ()) {
        self.links.push(url.to_string());
        (String::new(), ())
    }

    fn decorate_link_end(&mut self) -> String {
        match self.links.pop() {
            Some(url) if url.starts_with("http") || url.starts_with("mailto:") => {
                format!(" <{url}>")
            }
            _ => String::new(),
        }
    }

    fn decorate_em_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_em_end(&self) -> String {
        String::new()
    }
    fn decorate_strong_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strong_end(&self) -> String {
        String::new()
    }
    fn decorate_strikeout_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strikeout_end(&self) -> String {
        String::new()
    }
    fn decorate_code_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_code_end(&self) -> String {
        String::new()
    }
    fn decorate_preformat_first(&self) {}
    fn decorate_preformat_cont(&self) {}
    fn decorate_image(&mut self, _src: &str, title: &str) -> (String, ()) {
        (title.to_string(), ())
    }
    fn header_prefix(&self, _level: usize) -> String {
        String::new()
    }
    fn quote_prefix(&self) -> String {
        "> ".into()
    }
    fn unordered_item_prefix(&self) -> String {
        // ASCII: html2text 0.17 sizes list prefixes in bytes and in columns in two places,
        // and a multi-byte bullet underflows there.
        "* ".into()
    }
    fn ordered_item_prefix(&self, i: i64) -> String {
        format!("{i}. ")
    }
    fn make_subblock_decorator(&self) -> Self {
        MailText::default()
    }
    fn finalise(&mut self, _urls: Vec<String>) -> Vec<TaggedLine<()>> {
        Vec::new()
    }
}

/// Render with `decorator` at `width`, or None if html2text refuses the input.
fn render<D: TextDecorator>(html: &str, decorator: D, width: usize) -> Option<String> {
    html2text::config::with_decorator(decorator)
        .allow_width_overflow()
        .no_link_wrapping()
        .string_from_read(html.as_bytes(), width)
        .ok()
}

/// Wide enough that html2text never wraps: we wrap ourselves, never inside a word (an URL).
const UNWRAPPED: usize = 100_000;

/// The text of an HTML fragment as paragraphs, list items and line breaks, wrapped at
/// [`TEXT_WIDTH`] columns (a URL longer than a line stays whole on its own line), each
/// link's URL after its words unless the words are the URL.
pub fn html_to_plain(html: &str) -> String {
    let Some(text) = render(html, MailText::default(), UNWRAPPED) else {
        return html_to_text(html);
    };
    let mut out = String::with_capacity(text.len() + text.len() / TEXT_WIDTH);
    let mut blank = 0;
    let mut in_list = false;
    for line in text.lines() {
        let line = drop_repeated_urls(line.trim_end());
        if line.is_empty() {
            blank += 1;
            continue;
        }
        // A list stands apart from the paragraph before and after it.
        let item = is_item(&line) || (in_list && line.starts_with("  "));
        if !out.is_empty() {
            out.push_str(if blank > 0 || item != in_list {
                "\n\n"
            } else {
                "\n"
            });
        }
        blank = 0;
        in_list = item;
        wrap_into(&mut out, &line, TEXT_WIDTH);
    }
    out
}

/// Whether a rendered line starts a list item ("* …", "12. …").
fn is_item(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("* ")
        || t.split_once(". ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `line` wrapped at `width` columns between words; a list item's or a quote's
/// continuation lines line up under its text. A word longer than the line (a URL) gets a
/// line of its own, whole.
fn wrap_into(out: &mut String, line: &str, width: usize) {
    let body_at = line
        .char_indices()
        .find(|&(_, c)| !matches!(c, '>' | ' ' | '*' | '.' | '0'..='9'))
        .map_or(line.len(), |(i, _)| i);
    let (lead, body) = line.split_at(body_at);
    let hang: String = if lead.starts_with('>') {
        lead.to_string()
    } else {
        " ".repeat(lead.chars().count())
    };
    let mut col = lead.chars().count();
    out.push_str(lead);
    let mut first = true;
    for word in body.split(' ').filter(|w| !w.is_empty()) {
        let len = word.chars().count();
        if !first && col + 1 + len > width {
            out.push('\n');
            out.push_str(&hang);
            col = hang.chars().count();
        } else if !first {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += len;
        first = false;
    }
}

/// "https://x.example <https://x.example>" → "https://x.example": a link whose words are
/// its address needs it once.
fn drop_repeated_urls(line: &str) -> String {
    let mut out = line.to_string();
    let mut from = 0;
    while let Some(open) = out[from..].find(" <").map(|i| i + from) {
        let Some(close) = out[open..].find('>').map(|i| i + open) else {
            break;
        };
        let url = &out[open + 2..close];
        let before = &out[..open];
        if before.ends_with(url) || before.ends_with(url.trim_end_matches('/')) {
            out.replace_range(open..=close, "");
            from = open;
        } else {
            from = close;
        }
    }
    out
}

/// The text of an HTML fragment on one line: blocks apart by a space (never "end.Next"),
/// entities decoded, no URLs. For titles, teasers and previews.
pub fn html_to_text(html: &str) -> String {
    let text = render(
        html,
        html2text::render::TrivialDecorator::new(),
        usize::MAX / 4,
    )
    .unwrap_or_else(|| text_of_fragment(html).replace('\u{a0}', " "));
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text that may hold HTML character references (an RSS title: `Caf&eacute; &mdash;
/// a&nbsp;review`, or `&amp;eacute;` once the XML is read) with them decoded as a browser
/// would, tags left as written (`Vector<T>` stays), and C1 controls read as the
/// Windows-1252 characters their writer meant ([`cp1252_controls`]).
pub fn decode_entities(text: &str) -> String {
    let text = cp1252_controls(text);
    if !text.contains('&') {
        return text.into_owned();
    }
    // html5ever's tokenizer knows every HTML5 name, the legacy ones without `;`, and maps
    // `&#146;` to ’ as HTML5 asks; escaping `<` keeps it from reading any tag. Its
    // serialiser then escapes only these five again.
    text_of_fragment(&text.replace('<', "&lt;"))
}

/// The text of an HTML fragment with every tag dropped and every reference decoded (by
/// html5ever, through ammonia with nothing allowed), whitespace as written: its serialiser
/// escapes these few characters again, undone here.
fn text_of_fragment(html: &str) -> String {
    ammonia::Builder::empty()
        .clean(html)
        .to_string()
        .replace("&nbsp;", "\u{a0}")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// U+0080–U+009F, control characters no text means, as the Windows-1252 characters a feed
/// that wrote `&#146;` (or those bytes under a Latin-1 label) meant: `don&#146;t` is
/// "don’t", not "don t". HTML5 reads numeric references this way; XML does not.
pub fn cp1252_controls(text: &str) -> std::borrow::Cow<'_, str> {
    const MAP: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž',
        '\u{8F}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}',
        'ž', 'Ÿ',
    ];
    if !text.chars().any(|c| ('\u{80}'..='\u{9F}').contains(&c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| match c {
            '\u{80}'..='\u{9F}' => MAP[c as usize - 0x80],
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_become_paragraphs_and_bullets() {
        assert_eq!(
            html_to_plain("<p>One.</p><p>Two.</p><ul><li>A</li><li>B</li></ul>x<br>y"),
            "One.\n\nTwo.\n\n* A\n* B\n\nx\ny"
        );
        assert_eq!(
            html_to_plain("<ol><li>first</li><li>second</li></ol>"),
            "1. first\n2. second"
        );
    }

    #[test]
    fn links_keep_their_urls_once() {
        assert_eq!(
            html_to_plain(
                r#"<p>Read <a href="https://news.example.org/a">the report</a> and <a href="https://news.example.org/b">https://news.example.org/b</a>.</p>"#
            ),
            "Read the report <https://news.example.org/a> and https://news.example.org/b."
        );
    }

    #[test]
    fn lines_wrap_at_78_without_breaking_urls() {
        let url = format!("https://news.example.org/{}", "long-path-".repeat(12));
        let html = format!("<p>{} <a href=\"{url}\">more</a></p>", "word ".repeat(40));
        let text = html_to_plain(&html);
        assert!(text.lines().count() > 2, "wrapped: {text}");
        for line in text.lines() {
            assert!(
                line.chars().count() <= TEXT_WIDTH || line.contains(&url),
                "{line:?}"
            );
        }
        assert!(text.contains(&url), "the URL whole: {text}");
    }

    #[test]
    fn list_items_hang_under_their_text() {
        let html = format!("<ul><li>{}</li></ul>", "word ".repeat(30));
        let text = html_to_plain(&html);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("* word"), "{text}");
        assert!(lines[1].starts_with("  word"), "{text}");
        assert!(lines.iter().all(|l| l.len() <= TEXT_WIDTH), "{text}");
    }

    #[test]
    fn references_decode_as_a_browser_reads_them() {
        assert_eq!(
            decode_entities("Caf&eacute; society &mdash; a&nbsp;review"),
            "Café society — a\u{a0}review"
        );
        assert_eq!(
            decode_entities("don&#146;t &#147;quote&#148; &#128;5"),
            "don’t “quote” €5"
        );
        // What the XML reader leaves of `&#146;`: a C1 control.
        assert_eq!(decode_entities("don\u{92}t"), "don’t");
        assert_eq!(decode_entities("Vector<T> & AT&T"), "Vector<T> & AT&T");
        assert_eq!(decode_entities("a<b>c &amp; d"), "a<b>c & d");
    }

    #[test]
    fn one_line_text_keeps_blocks_apart() {
        assert_eq!(
            html_to_text("<p>members.</p><p>Now <em>this</em> &amp; that</p>"),
            "members. Now this & that"
        );
        assert_eq!(
            html_to_text("Hello <b>world</b> &amp; bad <script>x</script>ok"),
            "Hello world & bad ok"
        );
    }
}

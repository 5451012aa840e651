//! JSON Feed as feed readers read it. feed-rs refuses a whole document over one detail a
//! reader shrugs at: the version written `http://jsonfeed.org/version/1`, `tags` as one
//! string, a numeric `id`, an `author` that is a bare name. Each is mended here, in a
//! copy of the document handed to feed-rs, and what feed-rs does not keep is read here:
//! each item's byline (`authors` before the deprecated `author`) and its declared
//! pictures (`image`, then `banner_image`).

use serde_json::{Map, Value};

/// What the JSON pass knows of one item, in document order.
#[derive(Debug, Default, Clone)]
pub struct JsonItemFacts {
    pub author: Option<String>,
    pub images: Vec<String>,
}

/// The document mended for feed-rs, with each item's facts; None when it is not a JSON
/// object at all (feed-rs then says what is wrong with it).
pub fn normalise(bytes: &[u8]) -> Option<(Vec<u8>, Vec<JsonItemFacts>)> {
    let mut doc: Value = serde_json::from_slice(bytes).ok()?;
    let feed = doc.as_object_mut()?;
    // Any JSON Feed version (1, 1.1, the http:// spelling, none) reads the same way here.
    feed.insert(
        "version".into(),
        Value::String("https://jsonfeed.org/version/1.1".into()),
    );
    let title = as_text(feed.get("title")).unwrap_or_default();
    feed.insert("title".into(), Value::String(title));
    for key in [
        "home_page_url",
        "feed_url",
        "description",
        "icon",
        "favicon",
        "language",
    ] {
        keep_string(feed, key);
    }
    mend_people(feed);
    let items = match feed.remove("items") {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let mut kept = Vec::with_capacity(items.len());
    let mut facts = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(mut item) = item else {
            continue;
        };
        match item.get("id") {
            Some(Value::String(_)) | None => {}
            Some(Value::Number(n)) => {
                let id = n.to_string();
                item.insert("id".into(), Value::String(id));
            }
            Some(_) => {
                item.remove("id");
            }
        }
        if let Some(title) = as_text(item.get("title")) {
            item.insert("title".into(), Value::String(title));
        }
        for key in [
            "url",
            "external_url",
            "title",
            "content_html",
            "content_text",
            "summary",
            "date_published",
            "date_modified",
        ] {
            keep_string(&mut item, key);
        }
        let tags: Vec<Value> = match item.remove("tags") {
            Some(Value::String(t)) => vec![Value::String(t)],
            Some(Value::Array(ts)) => ts.into_iter().filter(Value::is_string).collect(),
            _ => Vec::new(),
        };
        if !tags.is_empty() {
            item.insert("tags".into(), Value::Array(tags));
        }
        let attachments: Vec<Value> = match item.remove("attachments") {
            Some(Value::Array(a)) => a.into_iter().filter_map(mend_attachment).collect(),
            _ => Vec::new(),
        };
        if !attachments.is_empty() {
            item.insert("attachments".into(), Value::Array(attachments));
        }
        mend_people(&mut item);
        let images = ["image", "banner_image"]
            .iter()
            .filter_map(|k| item.get(*k).and_then(Value::as_str))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        facts.push(JsonItemFacts {
            author: first_name(&item),
            images,
        });
        kept.push(Value::Object(item));
    }
    feed.insert("items".into(), Value::Array(kept));
    Some((serde_json::to_vec(&doc).ok()?, facts))
}

/// A string as it is, a number or boolean as written; anything else is no text.
fn as_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn keep_string(obj: &mut Map<String, Value>, key: &str) {
    if obj.get(key).is_some_and(|v| !v.is_string()) {
        obj.remove(key);
    }
}

/// `author` and `authors` as objects with string `name`/`url`: a bare string is a name, a
/// single object where a list belongs is a list of one.
fn mend_people(obj: &mut Map<String, Value>) {
    let person = |v: Value| -> Option<Value> {
        let mut out = Map::new();
        match v {
            Value::String(name) => {
                out.insert("name".into(), Value::String(name));
            }
            Value::Object(mut p) => {
                for key in ["name", "url"] {
                    if let Some(Value::String(s)) = p.remove(key) {
                        out.insert(key.into(), Value::String(s));
                    }
                }
            }
            _ => return None,
        }
        Some(Value::Object(out))
    };
    if let Some(p) = obj.remove("author").and_then(person) {
        obj.insert("author".into(), p);
    }
    let authors: Vec<Value> = match obj.remove("authors") {
        Some(Value::Array(list)) => list.into_iter().filter_map(person).collect(),
        Some(one) => person(one).into_iter().collect(),
        None => Vec::new(),
    };
    if !authors.is_empty() {
        obj.insert("authors".into(), Value::Array(authors));
    }
}

/// An attachment feed-rs can read (string `url` and `mime_type`), or none.
fn mend_attachment(v: Value) -> Option<Value> {
    let Value::Object(mut a) = v else {
        return None;
    };
    if !a.get("url").is_some_and(Value::is_string) {
        return None;
    }
    if !a.get("mime_type").is_some_and(Value::is_string) {
        a.insert(
            "mime_type".into(),
            Value::String("application/octet-stream".into()),
        );
    }
    keep_string(&mut a, "title");
    if !a.get("size_in_bytes").is_some_and(Value::is_u64) {
        a.remove("size_in_bytes");
    }
    Some(Value::Object(a))
}

/// The item's first byline: JSON Feed 1.1's `authors`, else 1.0's `author`.
fn first_name(item: &Map<String, Value>) -> Option<String> {
    let name_of = |p: &Value| {
        p.get("name")
            .and_then(Value::as_str)
            .and_then(super::feeds::byline)
    };
    item.get("authors")
        .and_then(Value::as_array)
        .and_then(|list| list.iter().find_map(name_of))
        .or_else(|| item.get("author").and_then(name_of))
}

//! The API's own description: `/api-docs/openapi.json` (OpenAPI 3.1,
//! generated from the handlers and types by `utoipa`) and `/api-docs`, a
//! reference page rendered here from that same document, server-side, as
//! plain HTML and CSS embedded in the binary: no script, no CDN, no
//! download at build time (Swagger UI's build script fetches from GitHub).
//! Every string from the document is escaped. Neither needs a key.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use crate::app::AppState;

const STYLE: &str = include_str!("docs.css");
/// No script at all; styles from this origin only.
const CSP: &str = "default-src 'none'; style-src 'self'; frame-ancestors 'none'";

/// `/api-docs`, `/api-docs/openapi.json`, `/api-docs/style.css`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api-docs", get(page))
        .route("/api-docs/", get(page))
        .route("/api-docs/openapi.json", get(json))
        .route("/api-docs/style.css", get(style))
}

fn document() -> &'static (String, String) {
    static DOC: OnceLock<(String, String)> = OnceLock::new();
    DOC.get_or_init(|| {
        let doc = crate::api::openapi();
        let json = doc.to_pretty_json().unwrap_or_else(|_| "{}".into());
        let value: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
        (json, render(&value))
    })
}

async fn json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document().0.clone(),
    )
        .into_response()
}

async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        document().1.clone(),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        STYLE,
    )
        .into_response()
}

/// Escapes text for HTML (element content and quoted attributes).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An anchor made of letters, digits and `-` only.
fn anchor(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A schema's type as a line of HTML: a link for a reference.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{}\">{}</a>", anchor(name), esc(name));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(list) = schema.get(key).and_then(Value::as_array) {
            return list.iter().map(type_of).collect::<Vec<_>>().join(" | ");
        }
    }
    let base = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => String::new(),
    };
    if base.starts_with("array") {
        let items = schema.get("items").map(type_of).unwrap_or_default();
        return format!("{} of {items}", esc(&base));
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", esc(&v.to_string())))
            .collect();
        return format!("{} ({})", esc(&base), names.join(", "));
    }
    if base.is_empty() {
        "any".into()
    } else {
        esc(&base)
    }
}

fn render(doc: &Value) -> String {
    let info = &doc["info"];
    let mut out = String::new();
    let title = esc(text(info, "title"));
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/api-docs/style.css\"></head><body>\
         <header><h1>{title} <small>{}</small></h1><p>{}</p>\
         <p><a href=\"/api-docs/openapi.json\">openapi.json</a></p></header><main>",
        esc(text(info, "version")),
        esc(text(info, "description")),
    );
    let mut toc = String::from("<nav aria-label=\"Operations\"><ul>");
    let mut body = String::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                let Some(op) = item.get(method) else { continue };
                let id = anchor(&format!("{method}{path}"));
                let summary = text(op, "summary");
                let _ = write!(
                    toc,
                    "<li><a href=\"#{id}\"><span class=\"m m-{method}\">{}</span> {}</a></li>",
                    method.to_uppercase(),
                    esc(path)
                );
                let _ = write!(
                    body,
                    "<section id=\"{id}\"><h2><span class=\"m m-{method}\">{}</span> <code>{}</code></h2><p>{}</p>",
                    method.to_uppercase(),
                    esc(path),
                    esc(summary)
                );
                let description = text(op, "description");
                if !description.is_empty() && description != summary {
                    let _ = write!(body, "<p>{}</p>", esc(description));
                }
                operation(&mut body, op);
                body.push_str("</section>");
            }
        }
    }
    toc.push_str("</ul></nav>");
    out.push_str(&toc);
    out.push_str(&body);
    if let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    {
        out.push_str("<h2 id=\"schemas\">Schemas</h2>");
        for (name, schema) in schemas {
            let _ = write!(
                out,
                "<section id=\"schema-{}\"><h3>{}</h3>",
                anchor(name),
                esc(name)
            );
            let d = text(schema, "description");
            if !d.is_empty() {
                let _ = write!(out, "<p>{}</p>", esc(d));
            }
            properties(&mut out, schema);
            out.push_str("</section>");
        }
    }
    out.push_str("</main></body></html>\n");
    out
}

fn operation(out: &mut String, op: &Value) {
    if let Some(params) = op.get("parameters").and_then(Value::as_array)
        && !params.is_empty()
    {
        out.push_str("<h4>Parameters</h4><table><tr><th>Name</th><th>In</th><th>Type</th><th>Description</th></tr>");
        for p in params {
            let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(text(p, "name")),
                if required { " <em>required</em>" } else { "" },
                esc(text(p, "in")),
                p.get("schema").map(type_of).unwrap_or_default(),
                esc(text(p, "description"))
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = op.get("requestBody") {
        out.push_str("<h4>Request body</h4><ul>");
        if let Some(content) = body.get("content").and_then(Value::as_object) {
            for (media, c) in content {
                let _ = write!(
                    out,
                    "<li><code>{}</code>: {}</li>",
                    esc(media),
                    c.get("schema").map(type_of).unwrap_or_default()
                );
            }
        }
        out.push_str("</ul>");
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        out.push_str(
            "<h4>Responses</h4><table><tr><th>Status</th><th>Description</th><th>Body</th></tr>",
        );
        for (status, r) in responses {
            let bodies: Vec<String> = r
                .get("content")
                .and_then(Value::as_object)
                .map(|c| {
                    c.iter()
                        .map(|(media, v)| {
                            format!(
                                "<code>{}</code> {}",
                                esc(media),
                                v.get("schema").map(type_of).unwrap_or_default()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(status),
                esc(text(r, "description")),
                bodies.join("<br>")
            );
        }
        out.push_str("</table>");
    }
}

fn properties(out: &mut String, schema: &Value) {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut rows = String::new();
    property_rows(&mut rows, schema, &required);
    // Flattened structs come out as `allOf` of a reference and an object.
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            if part.get("$ref").is_some() {
                let _ = write!(
                    rows,
                    "<tr><td colspan=\"3\">and every field of {}</td></tr>",
                    type_of(part)
                );
            }
            property_rows(&mut rows, part, &required);
        }
    }
    if rows.is_empty() {
        let _ = write!(out, "<p>{}</p>", type_of(schema));
    } else {
        let _ = write!(
            out,
            "<table><tr><th>Field</th><th>Type</th><th>Description</th></tr>{rows}</table>"
        );
    }
}

fn property_rows(rows: &mut String, schema: &Value, required: &[&str]) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_else(|| required.to_vec());
    for (name, p) in props {
        let _ = write!(
            rows,
            "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            if required.contains(&name.as_str()) {
                " <em>required</em>"
            } else {
                ""
            },
            type_of(p),
            esc(text(p, "description"))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_lists_every_operation_and_escapes_the_document() {
        let doc = crate::api::openapi();
        let value: Value = serde_json::from_str(&doc.to_json().unwrap()).unwrap();
        let html = render(&value);
        let paths = value["paths"].as_object().unwrap();
        assert!(paths.contains_key("/api/v1/messages"));
        assert!(paths.contains_key("/api/v1/events"));
        for path in paths.keys() {
            assert!(
                html.contains(&format!("<code>{}</code>", esc(path))),
                "{path}"
            );
        }
        assert!(!html.contains("<script"));
        let hostile = serde_json::json!({
            "info": {"title": "<script>alert(1)</script>", "description": "\"'&"},
            "paths": {}
        });
        let html = render(&hostile);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
    }
}

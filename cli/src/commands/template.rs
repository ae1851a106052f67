//! `--format TEMPLATE`: Go templates, as docker takes them (`{{index .RepoTags 0}}`,
//! `{{json .Config}}`, `{{range .RepoTags}}{{.}} {{end}}`, `{{.Config.Env}}`), applied to the
//! same JSON a command prints without `--format`.
//!
//! The engine is the `gotmpl` crate, a port of Go's `text/template` whose output matches Go's
//! (`[a b]` for a list, `map[k:v]` with sorted keys, `<no value>` for a missing key) and whose
//! syntax errors carry a line and column. (`gtmpl`, the older port, prints lists and maps in
//! Rust's debug form and reports only a line.) On top of it, docker's own template functions
//! (`json`, `join`, `split`, `lower`, `upper`, `title`, `pad`, `truncate`, `println`), and, as
//! docker does, `\t` and `\n` written in the template stand for a tab and a newline.
//!
//! A template error is a miette report with the template as its source, pointing at the place
//! the parser stopped, or at the name an execution error is about (a function, a field, a
//! key); otherwise at the whole template.

use gotmpl::{Template, TemplateError, Value as T};
use miette::{Diagnostic, NamedSource, SourceSpan};
use serde_json::Value;
use thiserror::Error;

/// A template that does not parse or fails to run.
#[derive(Debug, Error, Diagnostic)]
#[error("invalid --format template: {message}")]
#[diagnostic(
    code(rbuild::format::template),
    help(
        "--format takes a Go template over the command's JSON, e.g. `{{{{.Config.Cmd}}}}`, \
         `{{{{index .RepoTags 0}}}}`, `{{{{json .Config}}}}`, `{{{{range .RepoTags}}}}{{{{.}}}} \
         {{{{end}}}}`"
    )
)]
pub struct FormatError {
    message: String,
    #[source_code]
    template: NamedSource<String>,
    #[label("{label}")]
    at: SourceSpan,
    label: String,
}

/// Render `template` over `value`.
pub fn render(template: &str, value: &Value) -> miette::Result<String> {
    let (text, origin) = unescape(template);
    let fail = |e: TemplateError| -> miette::Report {
        let (at, label) = locate(template, &text, &origin, &e);
        FormatError {
            message: e.to_string(),
            template: NamedSource::new("--format", template.to_string()),
            at,
            label,
        }
        .into()
    };
    let data = gotmpl::to_value(value).map_err(fail)?;
    let parsed = with_docker_funcs(Template::new("format"))
        .parse(&text)
        .map_err(fail)?;
    parsed.execute_to_string(&data).map_err(fail)
}

/// `\t` and `\n` as docker reads them, and for each byte of the result the offset of the text
/// it came from in the original (errors point into what the user typed).
fn unescape(template: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(template.len());
    let mut origin = Vec::with_capacity(template.len() + 1);
    let mut i = 0;
    let bytes = template.as_bytes();
    while i < bytes.len() {
        let replaced = match (bytes[i], bytes.get(i + 1)) {
            (b'\\', Some(b'n')) => Some('\n'),
            (b'\\', Some(b't')) => Some('\t'),
            _ => None,
        };
        if let Some(c) = replaced {
            out.push(c);
            origin.push(i);
            i += 2;
        } else {
            let c = template[i..].chars().next().expect("a char at a boundary");
            out.push(c);
            origin.extend((0..c.len_utf8()).map(|k| i + k));
            i += c.len_utf8();
        }
    }
    origin.push(template.len());
    (out, origin)
}

/// Where in the original template an error is, and what to say there.
fn locate(original: &str, text: &str, origin: &[usize], e: &TemplateError) -> (SourceSpan, String) {
    let whole = (
        SourceSpan::from((0, original.len())),
        "in this template".to_string(),
    );
    match e {
        TemplateError::Parse { line, col, .. } | TemplateError::Lex { line, col, .. } => {
            let line_start: usize = text
                .split_inclusive('\n')
                .take(line.saturating_sub(1))
                .map(str::len)
                .sum();
            let at = (line_start + col.saturating_sub(1)).min(text.len());
            let start = origin[at.min(origin.len() - 1)];
            if start < original.len() {
                (SourceSpan::from((start, 1)), "here".to_string())
            } else {
                // At the end (an unclosed action): the last action, from its `{{` on.
                let from = original.rfind("{{").unwrap_or(0);
                (
                    SourceSpan::from((from, original.len() - from)),
                    "the template ends inside this".to_string(),
                )
            }
        }
        TemplateError::UndefinedFunction(name)
        | TemplateError::UndefinedVariable(name)
        | TemplateError::UndefinedTemplate(name)
        | TemplateError::MissingKey { key: name } => find(original, name).unwrap_or(whole),
        TemplateError::Exec(message) => message
            .split_once("field ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|field| find(original, &format!(".{field}")))
            .unwrap_or(whole),
        _ => whole,
    }
}

fn find(original: &str, needle: &str) -> Option<(SourceSpan, String)> {
    original
        .find(needle)
        .map(|i| (SourceSpan::from((i, needle.len())), "this".to_string()))
}

/// Docker's template functions (`docker/cli` `templates.basicFunctions`).
fn with_docker_funcs(t: Template) -> Template {
    fn arg(args: &[T], i: usize) -> T {
        args.get(i).cloned().unwrap_or(T::Nil)
    }
    fn text(v: &T) -> String {
        v.as_str().map_or_else(|| v.to_string(), str::to_string)
    }
    fn list(items: Vec<String>) -> T {
        T::List(items.into_iter().map(T::from).collect::<Vec<_>>().into())
    }
    t.func("json", |args| {
        Ok(T::from(
            serde_json::to_string(&to_json(&arg(args, 0))).unwrap_or_default(),
        ))
    })
    .func("join", |args| {
        let sep = text(&arg(args, 1));
        let items = match arg(args, 0) {
            T::List(items) => items.iter().map(text).collect::<Vec<_>>(),
            other => vec![text(&other)],
        };
        Ok(T::from(items.join(&sep)))
    })
    .func("split", |args| {
        let (s, sep) = (text(&arg(args, 0)), text(&arg(args, 1)));
        Ok(list(s.split(sep.as_str()).map(str::to_string).collect()))
    })
    .func("lower", |args| {
        Ok(T::from(text(&arg(args, 0)).to_lowercase()))
    })
    .func("upper", |args| {
        Ok(T::from(text(&arg(args, 0)).to_uppercase()))
    })
    .func("title", |args| {
        let s = text(&arg(args, 0));
        let mut out = String::with_capacity(s.len());
        let mut start = true;
        for c in s.chars() {
            if start {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            start = !c.is_alphanumeric();
        }
        Ok(T::from(out))
    })
    .func("pad", |args| {
        let s = text(&arg(args, 0));
        let n = |i| arg(args, i).as_int().unwrap_or(0).max(0) as usize;
        Ok(T::from(format!(
            "{}{s}{}",
            " ".repeat(n(1)),
            " ".repeat(n(2))
        )))
    })
    .func("truncate", |args| {
        let s = text(&arg(args, 0));
        let n = arg(args, 1).as_int().unwrap_or(0).max(0) as usize;
        Ok(T::from(s.chars().take(n).collect::<String>()))
    })
    .func("println", |args| {
        let words: Vec<String> = args.iter().map(text).collect();
        Ok(T::from(format!("{}\n", words.join(" "))))
    })
}

/// A template value as JSON, for `{{json ...}}`.
fn to_json(v: &T) -> Value {
    match v {
        T::Nil => Value::Null,
        T::Bool(b) => Value::Bool(*b),
        T::Int(n) => Value::from(*n),
        T::Uint(n) => Value::from(*n),
        T::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        T::String(s) => Value::String(s.to_string()),
        T::List(items) => Value::Array(items.iter().map(to_json).collect()),
        T::Map(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect(),
        ),
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "Id": "sha256:x",
            "RepoTags": ["busybox:1.35", "me/app:v1"],
            "Config": {"Cmd": ["sh", "-c"], "Env": ["PATH=/bin", "A=1"], "Entrypoint": null,
                       "Labels": {"b": "2", "a": "1"}},
            "Size": 2140531u64,
        })
    }

    fn r(t: &str) -> String {
        render(t, &doc()).unwrap()
    }

    #[test]
    fn docker_examples() {
        assert_eq!(r("{{index .RepoTags 0}}"), "busybox:1.35");
        assert_eq!(
            r("{{range .RepoTags}}{{.}} {{end}}"),
            "busybox:1.35 me/app:v1 "
        );
        assert_eq!(r("{{.Config.Env}}"), "[PATH=/bin A=1]");
        assert_eq!(
            r("{{json .Config}}"),
            r#"{"Cmd":["sh","-c"],"Entrypoint":null,"Env":["PATH=/bin","A=1"],"Labels":{"a":"1","b":"2"}}"#
        );
        assert_eq!(r("{{.Config.Labels}}"), "map[a:1 b:2]");
        assert_eq!(r("{{.Size}}"), "2140531");
        assert_eq!(r("{{.Config.Entrypoint}}"), "<no value>");
        assert_eq!(r("{{.Nope}}"), "<no value>");
        assert_eq!(r("id={{ .Id }}"), "id=sha256:x");
        assert_eq!(r("{{len .RepoTags}}"), "2");
        assert_eq!(r("{{if .Config.Entrypoint}}e{{else}}no{{end}}"), "no");
        assert_eq!(r(r#"{{index .Config.Labels "b"}}"#), "2");
    }

    #[test]
    fn docker_functions_and_escapes() {
        assert_eq!(r(r#"{{join .RepoTags ", "}}"#), "busybox:1.35, me/app:v1");
        assert_eq!(r(r#"{{index (split .Id ":") 1}}"#), "x");
        assert_eq!(r("{{upper .Id}} {{lower \"AB\"}}"), "SHA256:X ab");
        assert_eq!(r(r#"{{title "hello world"}}"#), "Hello World");
        assert_eq!(r(r#"{{truncate .Id 3}}|{{pad "x" 1 2}}|"#), "sha| x  |");
        assert_eq!(r(r"{{.Id}}\t{{.Size}}\n"), "sha256:x\t2140531\n");
        assert_eq!(r(r#"{{println "a" "b"}}"#), "a b\n");
    }

    fn error_of(t: &str) -> FormatError {
        let report = render(t, &doc()).unwrap_err();
        report.downcast::<FormatError>().unwrap()
    }

    #[test]
    fn errors_point_into_the_template() {
        // Unclosed action: the label is inside what the user typed.
        let e = error_of("{{.Id}} {{.Config");
        assert!(e.message.contains("unclosed action"), "{}", e.message);
        assert_eq!(e.at.offset(), "{{.Id}} ".len());
        assert_eq!(e.at.len(), "{{.Config".len());
        // An unknown function: its name.
        let e = error_of("{{.Id}} {{frob .Id}}");
        assert_eq!(e.at.offset(), "{{.Id}} {{".len());
        assert_eq!(e.at.len(), "frob".len());
        // After an escape, offsets are the original text's.
        let e = error_of(r"\t\t{{ nope }}");
        assert_eq!(e.at.offset(), r"\t\t{{ ".len());
        // A field on a list.
        let e = error_of("{{.RepoTags.x}}");
        assert!(e.message.contains("field x"), "{}", e.message);
        assert_eq!(e.at.offset(), "{{.RepoTags".len());
    }
}

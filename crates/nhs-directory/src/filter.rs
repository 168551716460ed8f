//! SCIM filters (RFC 7644 §3.4.2.2): parsing and evaluation over a resource's JSON.
//!
//! Supported: `eq ne co sw ew gt ge lt le pr`, `and`, `or`, `not (…)`, parentheses and
//! value paths (`emails[type eq "work"]`). Attribute names and string values compare
//! ignoring case; values that are both RFC 3339 times compare as times
//! (`meta.lastModified gt "2026-01-01T00:00:00Z"`). An attribute the resource lacks
//! matches nothing (and `ne`/`not` are true for it).
//!
//! Bounded, because any client can send one: a filter is at most [`MAX_FILTER_LEN`]
//! bytes and nests at most [`MAX_DEPTH`] levels (parentheses, `not (…)` and a value
//! path's brackets all count); a value path cannot hold another (RFC 7644 §3.4.2.2,
//! `valFilter`). `and`/`or` chains are kept flat, so no part of the parser, the
//! evaluation or the tree's drop recurses deeper than the nesting. Anything beyond is
//! `invalidFilter`, never a stack overflow.
//!
//! Pure: no I/O, no clock.

use super::error::ApiError;
use nhs_model::schema::split_urn;
use serde_json::Value;
use std::cmp::Ordering;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Deepest nesting a filter may have: parentheses, `not (…)` and value-path brackets.
pub const MAX_DEPTH: usize = 64;
/// Longest filter accepted, in bytes (a SCIM filter is a short expression; this leaves
/// room for a few hundred `or`ed terms).
pub const MAX_FILTER_LEN: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// An attribute path in a filter: optional extension URN, attribute, sub-attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrPath {
    /// The extension holding the attribute (`None`: top level, core or common).
    pub extension: Option<&'static str>,
    pub attr: String,
    pub sub: Option<String>,
}

impl AttrPath {
    pub fn parse(word: &str) -> Result<Self, ApiError> {
        let (schema, rest) = split_urn(word);
        if rest.is_empty() {
            return Err(ApiError::invalid_filter(format!(
                "{word:?} names a schema, not an attribute"
            )));
        }
        let (attr, sub) = match rest.split_once('.') {
            Some((a, s)) => (a, Some(s.to_string())),
            None => (rest, None),
        };
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        };
        if !ok(attr) || sub.as_deref().is_some_and(|s| !ok(s)) {
            return Err(ApiError::invalid_filter(format!(
                "{word:?} is not an attribute path"
            )));
        }
        Ok(Self {
            extension: schema.filter(|s| s.extension).map(|s| s.id),
            attr: attr.to_string(),
            sub,
        })
    }

    /// Is this `attr` (no sub-attribute) of the given extension (`None`: top level)?
    pub fn is(&self, extension: Option<&str>, attr: &str) -> bool {
        self.extension == extension && self.sub.is_none() && self.attr.eq_ignore_ascii_case(attr)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every term matches (two or more, in order).
    And(Vec<Filter>),
    /// Some term matches (two or more, in order).
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, Op, Value),
    /// `attr[inner]`: some element of the multi-valued `attr` satisfies `inner`.
    ValuePath(AttrPath, Box<Filter>),
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Str(String),
    Word(String),
}

fn tokenize(s: &str) -> Result<Vec<Token>, ApiError> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '[' => {
                out.push(Token::OpenBracket);
                i += 1;
            }
            ']' => {
                out.push(Token::CloseBracket);
                i += 1;
            }
            '"' => {
                // A JSON string: find its end, honouring escapes, and let serde decode it.
                let start = i;
                i += 1;
                let mut closed = false;
                while i < chars.len() {
                    match chars[i] {
                        '\\' => i += 2,
                        '"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                if !closed {
                    return Err(ApiError::invalid_filter("unterminated string"));
                }
                let lit: String = chars[start..i].iter().collect();
                let v: String = serde_json::from_str(&lit)
                    .map_err(|e| ApiError::invalid_filter(format!("bad string {lit}: {e}")))?;
                out.push(Token::Str(v));
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], '(' | ')' | '[' | ']' | '"')
                {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Nesting at the current position.
    depth: usize,
    /// Inside a value path's brackets (where another value path may not start).
    in_value_path: bool,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), ApiError> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            _ => Err(ApiError::invalid_filter(format!("expected {what}"))),
        }
    }

    fn or(&mut self) -> Result<Filter, ApiError> {
        let mut terms = vec![self.and()?];
        while self.keyword("or") {
            self.pos += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Filter::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Filter, ApiError> {
        let mut terms = vec![self.unary()?];
        while self.keyword("and") {
            self.pos += 1;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Filter::And(terms)
        })
    }

    /// Parse `or` one level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested(&mut self) -> Result<Filter, ApiError> {
        if self.depth >= MAX_DEPTH {
            return Err(ApiError::invalid_filter(format!(
                "the filter nests deeper than {MAX_DEPTH} levels (parentheses, not (…) and value paths)"
            )));
        }
        self.depth += 1;
        let inner = self.or();
        self.depth -= 1;
        inner
    }

    fn unary(&mut self) -> Result<Filter, ApiError> {
        if self.keyword("not") {
            self.pos += 1;
            self.expect(Token::Open, "'(' after not")?;
            let inner = self.nested()?;
            self.expect(Token::Close, "')'")?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.next() {
            Some(Token::Open) => {
                let inner = self.nested()?;
                self.expect(Token::Close, "')'")?;
                Ok(inner)
            }
            Some(Token::Word(w)) => self.attr_expr(&w),
            Some(t) => Err(ApiError::invalid_filter(format!(
                "unexpected {t:?} where an attribute was expected"
            ))),
            None => Err(ApiError::invalid_filter("the filter ends too early")),
        }
    }

    fn attr_expr(&mut self, word: &str) -> Result<Filter, ApiError> {
        let path = AttrPath::parse(word)?;
        if self.peek() == Some(&Token::OpenBracket) {
            if self.in_value_path {
                return Err(ApiError::invalid_filter(format!(
                    "{word}[…] inside a value path: a value path's filter cannot hold another"
                )));
            }
            self.pos += 1;
            self.in_value_path = true;
            let inner = self.nested();
            self.in_value_path = false;
            let inner = inner?;
            self.expect(Token::CloseBracket, "']'")?;
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        let op = match self.next() {
            Some(Token::Word(w)) => w.to_ascii_lowercase(),
            _ => {
                return Err(ApiError::invalid_filter(format!(
                    "expected an operator after {word}"
                )));
            }
        };
        if op == "pr" {
            return Ok(Filter::Present(path));
        }
        let op = match op.as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => {
                return Err(ApiError::invalid_filter(format!(
                    "unknown operator {other:?}"
                )));
            }
        };
        let value = match self.next() {
            Some(Token::Str(s)) => Value::String(s),
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => serde_json::from_str::<serde_json::Number>(&w)
                    .map(Value::Number)
                    .map_err(|_| {
                        ApiError::invalid_filter(format!(
                            "{w:?} is not a value (strings need double quotes)"
                        ))
                    })?,
            },
            _ => {
                return Err(ApiError::invalid_filter(format!(
                    "expected a value after {word}"
                )));
            }
        };
        Ok(Filter::Compare(path, op, value))
    }
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter, ApiError> {
        Self::parse_value_filter(s, false)
    }

    /// Parse the filter inside a value path's brackets (`emails[…]` in a PATCH path):
    /// the brackets count as one level of nesting, and no value path may start inside.
    pub fn parse_in_value_path(s: &str) -> Result<Filter, ApiError> {
        Self::parse_value_filter(s, true)
    }

    fn parse_value_filter(s: &str, in_value_path: bool) -> Result<Filter, ApiError> {
        if s.len() > MAX_FILTER_LEN {
            return Err(ApiError::invalid_filter(format!(
                "the filter is {} bytes long; at most {MAX_FILTER_LEN} are accepted",
                s.len()
            )));
        }
        let mut p = Parser {
            tokens: tokenize(s)?,
            pos: 0,
            depth: usize::from(in_value_path),
            in_value_path,
        };
        let f = p.or()?;
        if p.pos != p.tokens.len() {
            return Err(ApiError::invalid_filter(format!(
                "unexpected text after the filter: {:?}",
                p.tokens.get(p.pos)
            )));
        }
        Ok(f)
    }

    /// Does the resource (or multi-valued element) `root` match?
    pub fn matches(&self, root: &Value) -> bool {
        match self {
            Filter::And(terms) => terms.iter().all(|f| f.matches(root)),
            Filter::Or(terms) => terms.iter().any(|f| f.matches(root)),
            Filter::Not(f) => !f.matches(root),
            Filter::Present(p) => values(root, p).iter().any(|v| present(v)),
            Filter::Compare(p, Op::Ne, v) => !values(root, p).iter().any(|a| compare(a, Op::Eq, v)),
            Filter::Compare(p, op, v) => values(root, p).iter().any(|a| compare(a, *op, v)),
            Filter::ValuePath(p, inner) => {
                let container = match p.extension {
                    None => Some(root),
                    Some(ext) => get_ci(root, ext),
                };
                let Some(attr) = container.and_then(|c| get_ci(c, &p.attr)) else {
                    return false;
                };
                match attr {
                    Value::Array(items) => items.iter().any(|i| inner.matches(i)),
                    other => inner.matches(other),
                }
            }
        }
    }

    /// The `path eq value` terms that every match must satisfy (the top-level `and`
    /// chain), e.g. to check the organisations a filter asks for or to build a new
    /// multi-valued element from `phoneNumbers[type eq "work"]`.
    pub fn required_equalities(&self) -> Vec<(&AttrPath, &Value)> {
        match self {
            Filter::And(terms) => terms.iter().flat_map(Filter::required_equalities).collect(),
            Filter::Compare(p, Op::Eq, v) => vec![(p, v)],
            _ => Vec::new(),
        }
    }
}

/// Case-insensitive key lookup.
pub fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let o = v.as_object()?;
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn values<'a>(root: &'a Value, p: &AttrPath) -> Vec<&'a Value> {
    let container = match p.extension {
        None => Some(root),
        Some(ext) => get_ci(root, ext),
    };
    let Some(v) = container.and_then(|c| get_ci(c, &p.attr)) else {
        return Vec::new();
    };
    match (&p.sub, v) {
        (Some(sub), Value::Array(items)) => items.iter().filter_map(|i| get_ci(i, sub)).collect(),
        (Some(sub), v) => get_ci(v, sub).into_iter().collect(),
        // A multi-valued complex attribute compares by its `value`s.
        (None, Value::Array(items)) => items
            .iter()
            .filter_map(|i| {
                if i.is_object() {
                    get_ci(i, "value")
                } else {
                    Some(i)
                }
            })
            .collect(),
        (None, v) => vec![v],
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn time_of(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn compare(actual: &Value, op: Op, want: &Value) -> bool {
    match (actual, want) {
        (Value::String(a), Value::String(w)) => {
            if let (Some(ta), Some(tw)) = (time_of(a), time_of(w)) {
                return ordered(ta.cmp(&tw), op);
            }
            let (a, w) = (a.to_lowercase(), w.to_lowercase());
            match op {
                Op::Eq => a == w,
                Op::Ne => a != w,
                Op::Co => a.contains(&w),
                Op::Sw => a.starts_with(&w),
                Op::Ew => a.ends_with(&w),
                _ => ordered(a.cmp(&w), op),
            }
        }
        (Value::Bool(a), Value::Bool(w)) => match op {
            Op::Eq => a == w,
            Op::Ne => a != w,
            _ => false,
        },
        (Value::Bool(a), Value::String(w)) if matches!(op, Op::Eq | Op::Ne) => {
            // Lenient: `active eq "true"`.
            let eq = w.eq_ignore_ascii_case(if *a { "true" } else { "false" });
            if op == Op::Eq { eq } else { !eq }
        }
        (Value::Number(a), Value::Number(w)) => match (a.as_f64(), w.as_f64()) {
            (Some(a), Some(w)) => a.partial_cmp(&w).is_some_and(|o| ordered(o, op)),
            _ => false,
        },
        _ => false,
    }
}

fn ordered(o: Ordering, op: Op) -> bool {
    match op {
        Op::Eq => o == Ordering::Equal,
        Op::Ne => o != Ordering::Equal,
        Op::Gt => o == Ordering::Greater,
        Op::Ge => o != Ordering::Less,
        Op::Lt => o == Ordering::Less,
        Op::Le => o != Ordering::Greater,
        Op::Co | Op::Sw | Op::Ew => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhs_model::scim::NHS_SCHEMA;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "id": "1", "externalId": "AF40AC76-1201-4205-83FB-A1707109E8B4",
            "userName": "sian.evans@nhs.net", "active": true,
            "name": {"givenName": "Siân", "familyName": "Evans"},
            "emails": [{"value": "sian.evans@nhs.net", "type": "work", "primary": true}],
            "phoneNumbers": [{"value": "+447700900123", "type": "mobile"}],
            "meta": {"lastModified": "2026-03-01T10:00:00.5Z"},
            NHS_SCHEMA: {"odsCode": "RXA", "status": "active"},
        })
    }

    #[test]
    fn filters_match_as_scim_says() {
        let u = user();
        for (f, want) in [
            (
                r#"externalId eq "af40ac76-1201-4205-83fb-a1707109e8b4""#,
                true,
            ),
            (r#"userName eq "SIAN.EVANS@nhs.net""#, true),
            (&format!(r#"{NHS_SCHEMA}:odsCode eq "RXA""#), true),
            (&format!(r#"{NHS_SCHEMA}:odsCode eq "RYY""#), false),
            (
                &format!(r#"userName sw "sian" and {NHS_SCHEMA}:odsCode eq "rxa""#),
                true,
            ),
            (r#"userName eq "x" or name.givenName eq "siân""#, true),
            (r#"not (active eq true)"#, false),
            (r#"emails[type eq "work" and value co "sian"]"#, true),
            (r#"phoneNumbers[type eq "work"]"#, false),
            (r#"emails co "evans""#, true),
            (r#"title pr"#, false),
            (r#"title ne "x""#, true),
            (r#"meta.lastModified gt "2026-03-01T10:00:00Z""#, true),
            (r#"meta.lastModified lt "2026-03-01T10:00:00Z""#, false),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName ew "nhs.net""#,
                true,
            ),
        ] {
            let parsed = Filter::parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(parsed.matches(&u), want, "{f}");
        }
    }

    #[test]
    fn bad_filters_are_invalid_filter() {
        for f in [
            r#"userName eq"#,
            r#"userName xx "a""#,
            r#"userName eq "a" and"#,
            r#"(userName eq "a""#,
            r#"userName eq unquoted"#,
            r#"userName eq "open"#,
            NHS_SCHEMA,
        ] {
            let e = Filter::parse(f).unwrap_err();
            assert_eq!(e.scim_type, Some("invalidFilter"), "{f}");
        }
    }

    /// `n` levels of `open … close` around one comparison.
    fn nest(n: usize, open: &str, close: &str) -> String {
        format!("{}userName pr{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn nesting_is_bounded_for_every_kind_of_nesting() {
        let u = user();
        for (open, close) in [("(", ")"), ("not (", ")"), ("not(", ")"), ("(not (", "))")] {
            // `(not (` nests twice per repetition.
            let per = open.matches('(').count();
            let ok = nest(MAX_DEPTH / per, open, close);
            let f = Filter::parse(&ok).unwrap_or_else(|e| panic!("{open}: {e}"));
            let _ = f.matches(&u);
            for n in [MAX_DEPTH / per + 1, 2_000] {
                let e = Filter::parse(&nest(n, open, close)).unwrap_err();
                assert_eq!(e.scim_type, Some("invalidFilter"), "{open} x{n}");
                assert!(e.detail.contains("nests deeper than 64"), "{e}");
            }
        }
        // Parentheses inside a value path count with its brackets.
        let inner = nest(MAX_DEPTH - 1, "(", ")").replace("userName", "value");
        assert!(Filter::parse(&format!("emails[{inner}]")).is_ok());
        let inner = nest(MAX_DEPTH, "(", ")").replace("userName", "value");
        let e = Filter::parse(&format!("emails[{inner}]")).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidFilter"));
        // A value path holds no other (RFC 7644 valFilter), however deep it would go.
        for f in [
            "emails[value[type pr]]".to_string(),
            format!("{}type pr{}", "emails[".repeat(2_000), "]".repeat(2_000)),
        ] {
            let e = Filter::parse(&f).unwrap_err();
            assert_eq!(e.scim_type, Some("invalidFilter"), "{e}");
        }
    }

    #[test]
    fn long_filters_are_refused_and_long_chains_stay_flat() {
        let e = Filter::parse(&nest(100_000, "(", ")")).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidFilter"));
        assert!(e.detail.contains("at most 16384"), "{e}");
        // As many `or`ed terms as fit: one flat list, evaluated without recursion.
        let term = r#"userName eq "x" or "#;
        let chain = format!(
            "{}userName ew \"nhs.net\"",
            term.repeat((MAX_FILTER_LEN - 64) / term.len())
        );
        let f = Filter::parse(&chain).unwrap();
        let Filter::Or(terms) = &f else {
            panic!("not an or: {f:?}")
        };
        assert!(terms.len() > 800, "{}", terms.len());
        assert!(f.matches(&user()));
    }

    #[test]
    fn required_equalities_follow_and_chains() {
        let f = Filter::parse(&format!(
            r#"{NHS_SCHEMA}:odsCode eq "RXA" and (userName eq "a" or userName eq "b")"#
        ))
        .unwrap();
        let eqs = f.required_equalities();
        assert_eq!(eqs.len(), 1);
        assert!(eqs[0].0.is(Some(NHS_SCHEMA), "odsCode"));
        assert_eq!(eqs[0].1, &json!("RXA"));
    }
}

//! The one way a TOML error is reported: where it is (line, column) and what it is,
//! without the source line the `toml` crate would quote — a configuration line can hold
//! anything, and the error is printed (and error chains are printed on one line).

/// `line L, column C: message` for an error in `text`.
pub fn describe(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before
                .rfind('\n')
                .map_or(before, |i| &before[i + 1..])
                .chars()
                .count()
                + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_place_not_the_line() {
        let text = "a = 1\nsecret = \"hunter2\n";
        let e = toml::from_str::<toml::Value>(text).unwrap_err();
        let d = super::describe(text, &e);
        assert!(d.starts_with("line 2, column 18: "), "{d}");
        assert!(!d.contains("hunter2") && !d.contains('\n'), "{d}");
        // Columns count characters, not bytes.
        let text = "a = 1\nx = \"Siân\n";
        let e = toml::from_str::<toml::Value>(text).unwrap_err();
        assert!(super::describe(text, &e).starts_with("line 2, column 10: "));
    }
}

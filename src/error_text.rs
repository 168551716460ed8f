//! An error as one line with its causes.

/// An error with its causes ("error sending request: … : Connection refused"): many
/// libraries' own message alone does not say what went wrong (reqwest's, ldap3's). A
/// cause already quoted in the text so far is not repeated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

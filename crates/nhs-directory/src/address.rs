//! NHSmail address allocation: `given.family@nhs.net`, lowercase ASCII, numbered on a
//! clash (sian.evans1@nhs.net, sian.evans2@nhs.net, …). Letters of any script are
//! transliterated with `deunicode` (a maintained Unidecode port): Siân → sian,
//! O'Brien-Ngũgĩ → obrien-ngugi, Жанна → zhanna, 小龙 → xiaolong, Νίκος → nikos; a name
//! with nothing to transliterate falls back to `nhs.user`.
//!
//! Pure functions: whether an address is taken is asked of the caller. An address is
//! never built from anything but the names, so it carries no other personal data.

/// Longest local part allocated (RFC 5321 allows 64; room is left for a clash number).
const MAX_LOCAL: usize = 60;

/// One name folded to what may stand in an address: lowercase ASCII letters, digits and
/// single inner hyphens. Letters and digits of other scripts are transliterated, one
/// character at a time and without the spaces a transliteration puts between
/// syllables (李小龙 → lixiaolong); apostrophes, other marks and symbols vanish
/// (O'Brien → obrien); spaces, hyphens, dots and underscores become one hyphen
/// (Mary Ann → mary-ann).
pub fn fold_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c == '-' || c.is_whitespace() || c == '_' || c == '.' {
            if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        } else if c.is_alphanumeric() {
            let ascii = deunicode::deunicode_char(c).unwrap_or("");
            out.extend(
                ascii
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .map(|a| a.to_ascii_lowercase()),
            );
        }
        // Anything else (apostrophes, combining marks, symbols, emoji) is dropped.
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The local part before numbering: `given.family`, each side folded.
pub fn base_local_part(given: &str, family: &str) -> String {
    // Each side gets half of what is left after the dot.
    let half = (MAX_LOCAL - 1) / 2;
    let cut = |s: String| -> String {
        let t: String = s.chars().take(half).collect();
        t.trim_end_matches('-').to_string()
    };
    let g = cut(fold_name(given));
    let f = cut(fold_name(family));
    match (g.is_empty(), f.is_empty()) {
        (false, false) => format!("{g}.{f}"),
        (false, true) => g,
        (true, false) => f,
        (true, true) => "nhs.user".to_string(),
    }
}

/// Allocate the first free address: `base@domain`, then `base1@domain`, `base2@domain`…
/// `taken` answers whether an address is already held.
pub fn allocate(
    given: &str,
    family: &str,
    domain: &str,
    mut taken: impl FnMut(&str) -> bool,
) -> String {
    let base = base_local_part(given, family);
    let first = format!("{base}@{domain}");
    if !taken(&first) {
        return first;
    }
    let mut n: u64 = 1;
    loop {
        let candidate = format!("{base}{n}@{domain}");
        if !taken(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_fold_to_ascii() {
        for (given, family, want) in [
            ("Siân", "Evans", "sian.evans"),
            ("Aoife", "O'Brien-Ngũgĩ", "aoife.obrien-ngugi"),
            ("José", "Núñez", "jose.nunez"),
            ("Mary Ann", "van der Berg", "mary-ann.van-der-berg"),
            ("Ffion", "Ŵyn", "ffion.wyn"),
            ("Søren", "Straße", "soren.strasse"),
            ("Zoë", "D’Arcy", "zoe.darcy"),
            ("", "", "nhs.user"),
            ("  -Ann- ", "Lee", "ann.lee"),
            // Folded Latin letters, as before the transliteration crate.
            ("Ðóra", "Þórsdóttir", "dora.thorsdottir"),
            ("Łukasz", "Żółć", "lukasz.zolc"),
            ("Æsa", "Œuvre", "aesa.oeuvre"),
            // Decomposed: the combining circumflex goes, the letter stays.
            ("Sia\u{0302}n", "Evans", "sian.evans"),
            // One Cyrillic letter among Latin ones (а, U+0430) is a letter, not a gap.
            ("J\u{0430}ne", "Kelly", "jane.kelly"),
            ("Жанна", "Kelly", "zhanna.kelly"),
            ("Юлия", "Щербакова", "iuliia.shcherbakova"),
            // Chinese names are their pinyin, syllables together; never nhs.user.
            ("小龙", "李", "xiaolong.li"),
            ("李", "Chen", "li.chen"),
            ("Νίκος", "Παπαδόπουλος", "nikos.papadopoulos"),
            ("Ana", "O\u{2019}Neill 🏥", "ana.oneill"),
            ("🏥", "☀", "nhs.user"),
        ] {
            assert_eq!(base_local_part(given, family), want, "{given} {family}");
        }
    }

    #[test]
    fn clashes_are_numbered() {
        let mut held: BTreeSet<String> = BTreeSet::new();
        for want in [
            "sian.evans@nhs.net",
            "sian.evans1@nhs.net",
            "sian.evans2@nhs.net",
        ] {
            let a = allocate("Siân", "Evans", "nhs.net", |c| held.contains(c));
            assert_eq!(a, want);
            held.insert(a);
        }
        // A freed base is reused before a higher number.
        held.remove("sian.evans@nhs.net");
        assert_eq!(
            allocate("Sian", "EVANS", "nhs.net", |c| held.contains(c)),
            "sian.evans@nhs.net"
        );
    }

    #[test]
    fn long_names_are_cut() {
        let long = "a".repeat(100);
        let local = base_local_part(&long, &long);
        assert!(local.len() <= MAX_LOCAL, "{local}");
    }
}

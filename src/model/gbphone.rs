//! A fast path for the phone numbers AD holds almost always: GB numbers written plainly
//! (`07700 900123`, `+44 7700 900123`, `0044-7700-900123`, spaces and hyphens anywhere).
//!
//! Why by hand: the `phonenumber` crate is the authority (and the fallback for anything
//! else), but each parse-and-type costs about 100,000 instructions — its regex cache
//! hashes every long pattern on each match — and at 100,000 people mobile validation
//! alone was 5.3 G instructions, the largest single cost of a plan. No maintained crate
//! offers a cheaper exact check. So this module takes the crate's own GB metadata
//! (patterns and possible lengths, through its public API), compiles each pattern once,
//! and types a number exactly as the crate's `validator::number_type` does: the same
//! descriptors, in the same order, with the same start-anchored, length-checked match.
//!
//! It answers only when the answer is certain to be the crate's: the input is one of the
//! plain forms, and the number is valid under GB's metadata (GB is the first region for
//! +44 and has no leading-digits pattern, so the crate assigns such a number to GB too —
//! checked when the patterns are built). Everything else (Jersey, Guernsey and Isle of
//! Man ranges, extensions, letters, other countries, invalid numbers) goes to the crate.
//! `tests::agrees_with_the_crate` compares both on many numbers.
//!
//! The crate's answer is the one for telephones (any valid number). Mobiles are not
//! left to it: its metadata lists the blocks allocated when it was made, and Ofcom goes
//! on allocating, so a correctly formed mobile in a newer block would be refused.
//! [`is_uk_mobile`] decides them by the numbering plan's structure instead, on the
//! number [`plain_nsn`] (or the crate, for other ways of writing it) reads.

use phonenumber::Type;
use phonenumber::metadata::{DATABASE, Descriptor};
use regex::Regex;
use std::sync::OnceLock;

struct Desc {
    re: Regex,
    lengths: Vec<u16>,
}

impl Desc {
    fn new(d: &Descriptor) -> Option<Desc> {
        // The crate builds its patterns with whitespace ignored, and accepts a match that
        // starts at the beginning (not necessarily one that spans the whole number).
        let re = regex::RegexBuilder::new(&format!("^(?:{})", d.national_number().as_str()))
            .ignore_whitespace(true)
            .build()
            .ok()?;
        Some(Desc {
            re,
            lengths: d.possible_length().to_vec(),
        })
    }

    fn is_match(&self, nsn: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(nsn.len() as u16)))
            && self.re.is_match(nsn)
    }
}

struct Gb {
    general: Desc,
    /// Checked in this order before fixed line and mobile, as the crate does.
    special: Vec<(Type, Desc)>,
    fixed_line: Option<Desc>,
    mobile: Option<Desc>,
    /// The crate calls every fixed-line match FixedLineOrMobile when the two patterns
    /// are the same text.
    same_fixed_and_mobile: bool,
}

fn build() -> Option<Gb> {
    // The crate gives a +44 number to the first region that types it, unless a region
    // has a leading-digits pattern: GB must come first and have none, or this path
    // could disagree with it.
    let regions = DATABASE.region(&44)?;
    if regions.first() != Some(&"GB") {
        return None;
    }
    let meta = DATABASE.by_id("GB")?;
    if meta.leading_digits().is_some() {
        return None;
    }
    let d = meta.descriptors();
    let mut special = Vec::new();
    for (t, desc) in [
        (Type::PremiumRate, d.premium_rate()),
        (Type::TollFree, d.toll_free()),
        (Type::SharedCost, d.shared_cost()),
        (Type::Voip, d.voip()),
        (Type::PersonalNumber, d.personal_number()),
        (Type::Pager, d.pager()),
        (Type::Uan, d.uan()),
        (Type::Voicemail, d.voicemail()),
    ] {
        if let Some(desc) = desc {
            special.push((t, Desc::new(desc)?));
        }
    }
    Some(Gb {
        general: Desc::new(d.general())?,
        special,
        fixed_line: d.fixed_line().map(Desc::new).unwrap_or(None),
        mobile: d.mobile().map(Desc::new).unwrap_or(None),
        same_fixed_and_mobile: match (d.fixed_line(), d.mobile()) {
            (Some(f), Some(m)) => f.national_number().as_str() == m.national_number().as_str(),
            _ => false,
        },
    })
}

/// Build the patterns (and so the crate's metadata database) now.
pub fn load() {
    let _ = gb();
}

fn gb() -> Option<&'static Gb> {
    static GB: OnceLock<Option<Gb>> = OnceLock::new();
    GB.get_or_init(build).as_ref()
}

impl Gb {
    fn number_type(&self, nsn: &str) -> Type {
        if !self.general.is_match(nsn) {
            return Type::Unknown;
        }
        if let Some((t, _)) = self.special.iter().find(|(_, d)| d.is_match(nsn)) {
            return *t;
        }
        let mobile = self.mobile.as_ref().is_some_and(|d| d.is_match(nsn));
        if self.fixed_line.as_ref().is_some_and(|d| d.is_match(nsn)) {
            return if self.same_fixed_and_mobile || mobile {
                Type::FixedLineOrMobile
            } else {
                Type::FixedLine
            };
        }
        if mobile { Type::Mobile } else { Type::Unknown }
    }
}

/// Is this national significant number a UK mobile by the structure of Ofcom's National
/// Telephone Numbering Plan? Ten digits starting 7, in the mobile ranges 071–075 and
/// 077–079, or 07624 (Isle of Man mobiles). Not 070 (personal numbering) nor the rest of
/// 076 (pagers). Jersey and Guernsey mobiles lie in 077–079 and count, as +44 numbers.
/// Whether the block is allocated today does not matter.
pub fn is_uk_mobile(nsn: &str) -> bool {
    let b = nsn.as_bytes();
    b.len() == 10
        && b.iter().all(u8::is_ascii_digit)
        && b[0] == b'7'
        && match b[1] {
            b'1'..=b'5' | b'7'..=b'9' => true,
            b'6' => nsn.starts_with("7624"),
            _ => false,
        }
}

/// The national significant number of a plainly written GB number: `0`, `+44` or
/// `0044`, then digits (not starting with 0), with spaces and hyphens anywhere.
pub fn plain_nsn(v: &str) -> Option<String> {
    let mut digits = String::with_capacity(v.len());
    let mut plus = false;
    for (i, c) in v.trim().char_indices() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' => {}
            '+' if i == 0 => plus = true,
            _ => return None,
        }
    }
    let nsn = if plus {
        digits.strip_prefix("44")?
    } else if let Some(rest) = digits.strip_prefix("0044") {
        rest
    } else {
        digits.strip_prefix('0')?
    };
    (nsn.len() >= 7 && !nsn.starts_with('0')).then(|| nsn.to_string())
}

/// The number's type and E.164 form, when the fast path is certain; `None` means ask
/// the crate.
pub fn classify(v: &str) -> Option<(Type, String)> {
    let nsn = plain_nsn(v)?;
    let t = gb()?.number_type(&nsn);
    (t != Type::Unknown).then(|| (t, format!("+44{nsn}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonenumber::country::Id as Country;

    /// What the crate says: the type and E.164 form of a number it can parse.
    fn by_crate(v: &str) -> Option<(Type, String)> {
        let n = phonenumber::parse(Some(Country::GB), v).ok()?;
        let t = n.number_type(&DATABASE);
        Some((t, n.format().mode(phonenumber::Mode::E164).to_string()))
    }

    #[test]
    fn plain_forms_only() {
        assert_eq!(plain_nsn("07700 900123").as_deref(), Some("7700900123"));
        assert_eq!(plain_nsn("+44 7700-900123").as_deref(), Some("7700900123"));
        assert_eq!(plain_nsn("0044 7700 900123").as_deref(), Some("7700900123"));
        assert_eq!(plain_nsn(" 0113 496 0101 ").as_deref(), Some("1134960101"));
        for other in [
            "+44 (0)7700 900123",
            "7700 900123",
            "+1 415 555 0100",
            "07700 900123 ext 4",
            "+44 07700 900123",
            "07700+900123",
            "",
        ] {
            assert_eq!(plain_nsn(other), None, "{other}");
        }
    }

    #[test]
    fn typical_numbers() {
        assert!(gb().is_some(), "the crate's GB metadata must be usable");
        assert_eq!(
            classify("07912 345678"),
            Some((Type::Mobile, "+447912345678".into()))
        );
        assert_eq!(
            classify("07700 900123"),
            by_crate("07700 900123").filter(|(t, _)| *t != Type::Unknown)
        );
        assert_eq!(
            classify("0113 496 0101"),
            Some((Type::FixedLine, "+441134960101".into()))
        );
        // Not valid as GB: left to the crate.
        assert_eq!(classify("07000 000"), None);
    }

    /// Deterministic SplitMix64, so a failure names a reproducible number.
    fn next(s: &mut u64) -> u64 {
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Wherever the fast path answers, it answers what the crate does. Numbers are drawn
    /// over every leading digit pair and lengths 9 to 11 in the plain forms, plus the
    /// Crown Dependency and special ranges. `TANSYNC_PHONE_CASES` sets how many (default
    /// 4,000; the crate is slow in a debug build).
    #[test]
    fn agrees_with_the_crate() {
        let n: usize = std::env::var("TANSYNC_PHONE_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4_000);
        let fixed = [
            "07624 123456",
            "07781 123456",
            "07797 123456",
            "07839 123456",
            "07911 123456",
            "01534 123456",
            "01481 123456",
            "01624 123456",
            "07700 900123",
            "0800 123 4567",
            "0845 123 4567",
            "0870 123 4567",
            "09012 34567",
            "0300 123 4567",
            "03069 990000",
            "056 1234 5678",
            "070 1234 5678",
            "076 2345 6789",
            "0500 123456",
            "0113 496 0000",
        ];
        let mut seed = 20261123u64;
        let mut cases: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
        for _ in 0..n {
            let r = next(&mut seed);
            let len = 9 + (r % 3) as usize;
            let mut d = String::new();
            d.push(char::from(b'1' + (r >> 8) as u8 % 9));
            let mut x = next(&mut seed);
            while d.len() < len {
                d.push(char::from(b'0' + (x % 10) as u8));
                x /= 10;
                if x == 0 {
                    x = next(&mut seed);
                }
            }
            cases.push(match (r >> 16) % 4 {
                0 => format!("0{d}"),
                1 => format!("+44 {} {}", &d[..4], &d[4..]),
                2 => format!("0044-{d}"),
                _ => format!("0{} {}", &d[..3], &d[3..]),
            });
        }
        let mut answered = 0;
        for v in &cases {
            if let Some(fast) = classify(v) {
                answered += 1;
                assert_eq!(Some(&fast), by_crate(v).as_ref(), "{v}");
            }
        }
        eprintln!("fast path answered {answered} of {}", cases.len());
        // The fast path must carry most valid numbers, or it is no fast path.
        assert!(answered > cases.len() / 10, "{answered} of {}", cases.len());
    }
}

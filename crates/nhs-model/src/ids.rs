//! Identifier newtypes: parsing and display live here and nowhere else.
//!
//! LDAP compares DNs and most attribute values case-insensitively, and so does the NHS
//! Directory for its identifiers; the canonical forms below are chosen so that equal
//! identifiers compare equal as Rust values (no false changes in a diff).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Why an identifier could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} {value:?}: {problem}")]
pub struct IdError {
    pub what: &'static str,
    pub value: String,
    pub problem: &'static str,
}

/// An Active Directory objectGUID (16 bytes as stored on the wire).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectGuid([u8; 16]);

impl ObjectGuid {
    /// From the 16 raw bytes of the `objectGUID` attribute.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| IdError {
            what: "objectGUID",
            value: hex::encode(bytes),
            problem: "must be exactly 16 bytes",
        })?;
        Self::checked(arr)
    }

    /// The nil GUID is never a real object's: AD never assigns it, and a tool that
    /// failed to read the GUID may write it. Accepting it would anchor everyone so broken
    /// to one account.
    fn checked(arr: [u8; 16]) -> Result<Self, IdError> {
        if arr == [0; 16] {
            return Err(IdError {
                what: "objectGUID",
                value: hex::encode(arr),
                problem: "is the nil GUID (all zero), which no object has",
            });
        }
        Ok(Self(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parse the AD string form (`af40ac76-1201-4205-83fb-a1707109e8b4`), any case.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let err = |problem| IdError {
            what: "objectGUID",
            value: s.to_string(),
            problem,
        };
        let t = s.trim().trim_start_matches('{').trim_end_matches('}');
        let groups: Vec<&str> = t.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if groups.len() != 5 || groups.iter().zip(lens).any(|(g, l)| g.len() != l) {
            return Err(err(
                "expected the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
            ));
        }
        let raw = hex::decode(groups.concat()).map_err(|_| err("not hexadecimal"))?;
        // The first three groups are little-endian on the wire.
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
        b[4..6].copy_from_slice(&[raw[5], raw[4]]);
        b[6..8].copy_from_slice(&[raw[7], raw[6]]);
        b[8..16].copy_from_slice(&raw[8..16]);
        Self::checked(b)
    }
}

impl fmt::Display for ObjectGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}",
            b[3],
            b[2],
            b[1],
            b[0],
            b[5],
            b[4],
            b[7],
            b[6],
            b[8],
            b[9],
            hex::encode(&b[10..16])
        )
    }
}

impl fmt::Debug for ObjectGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectGuid({self})")
    }
}

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        ///
        /// Shared, immutable text: an id is copied into the person, the maps keyed by it
        /// and every operation about it, so a clone is a reference count, not an
        /// allocation (at 100,000 people the copies were a large part of the heap).
        /// Compares, hashes and serialises exactly as the string.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0.to_string()
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }
    };
}

string_id!(
    /// The anchor joining a source person to a directory account: the objectGUID in AD
    /// string form, or another immutable identifier (e.g. OpenLDAP `entryUUID`), lowercased.
    ExternalId
);
string_id!(
    /// An ODS organisation code: uppercase ASCII letters and digits.
    OdsCode
);
string_id!(
    /// The directory's own identifier for an account.
    TargetId
);
string_id!(
    /// The id of a filter rule, as written in `filters/*.toml`.
    RuleId
);

impl ExternalId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(IdError {
                what: "external id",
                value: s.into(),
                problem: "is empty",
            });
        }
        if t.chars().any(char::is_control) {
            return Err(IdError {
                what: "external id",
                value: s.into(),
                problem: "contains control characters",
            });
        }
        Ok(Self(t.to_lowercase().into()))
    }
}

impl From<ObjectGuid> for ExternalId {
    fn from(g: ObjectGuid) -> Self {
        Self(g.to_string().into())
    }
}

impl OdsCode {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let t = s.trim().to_ascii_uppercase();
        if t.len() < 3 || t.len() > 10 {
            return Err(IdError {
                what: "ODS code",
                value: s.into(),
                problem: "must be 3 to 10 characters",
            });
        }
        if !t.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(IdError {
                what: "ODS code",
                value: s.into(),
                problem: "must be letters and digits only",
            });
        }
        Ok(Self(t.into()))
    }
}

impl TargetId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.trim().is_empty() {
            return Err(IdError {
                what: "target id",
                value: s.into(),
                problem: "is empty",
            });
        }
        Ok(Self(s.trim().into()))
    }
}

impl RuleId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(IdError {
                what: "rule id",
                value: s.into(),
                problem: "must be 1-64 of letters, digits, '-', '_', '.'",
            });
        }
        Ok(Self(s.into()))
    }
}

/// A distinguished name normalised for comparison: lowercased, spaces around `,` and `=`
/// removed. Good enough for the DNs AD and OpenLDAP return (no escaped separators are
/// altered, as escapes are kept verbatim).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct NormDn(String);

impl NormDn {
    pub fn new(dn: &str) -> Self {
        let mut out = String::with_capacity(dn.len());
        let mut chars = dn.trim().chars().peekable();
        let mut escaped = false;
        while let Some(c) = chars.next() {
            if escaped {
                out.extend(c.to_lowercase());
                escaped = false;
                continue;
            }
            match c {
                '\\' => {
                    out.push(c);
                    escaped = true;
                }
                ',' | '=' => {
                    while out.ends_with(' ') {
                        out.pop();
                    }
                    out.push(c);
                    while chars.peek() == Some(&' ') {
                        chars.next();
                    }
                }
                _ => out.extend(c.to_lowercase()),
            }
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if `self` is `ancestor` or lies beneath it.
    pub fn is_within(&self, ancestor: &NormDn) -> bool {
        self.0 == ancestor.0
            || (self.0.len() > ancestor.0.len()
                && self.0.ends_with(&ancestor.0)
                && self.0.as_bytes()[self.0.len() - ancestor.0.len() - 1] == b',')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nil_guid_is_no_anchor() {
        let e = ObjectGuid::from_bytes(&[0; 16]).unwrap_err();
        assert!(e.to_string().contains("nil GUID"), "{e}");
        assert!(ObjectGuid::parse("00000000-0000-0000-0000-000000000000").is_err());
        assert!(ObjectGuid::from_bytes(&[0; 15]).is_err());
        let mut one = [0; 16];
        one[15] = 1;
        assert!(ObjectGuid::from_bytes(&one).is_ok());
    }

    #[test]
    fn guid_ad_string_form_matches_design_example() {
        let bytes = [
            0x76, 0xac, 0x40, 0xaf, 0x01, 0x12, 0x05, 0x42, 0x83, 0xfb, 0xa1, 0x70, 0x71, 0x09,
            0xe8, 0xb4,
        ];
        let g = ObjectGuid::from_bytes(&bytes).unwrap();
        assert_eq!(g.to_string(), "af40ac76-1201-4205-83fb-a1707109e8b4");
        assert_eq!(
            ObjectGuid::parse("AF40AC76-1201-4205-83FB-A1707109E8B4").unwrap(),
            g
        );
        assert!(ObjectGuid::from_bytes(&bytes[..15]).is_err());
        assert!(ObjectGuid::parse("af40ac76-1201-4205-83fb").is_err());
    }

    #[test]
    fn ods_codes_are_uppercased_and_checked() {
        assert_eq!(OdsCode::parse(" rxa ").unwrap().as_str(), "RXA");
        assert!(OdsCode::parse("R-X").is_err());
        assert!(OdsCode::parse("RX").is_err());
    }

    #[test]
    fn dn_normalisation_and_subtree() {
        let ou = NormDn::new("OU=NHS Staff, DC=Tansync,DC=test");
        let dn = NormDn::new("CN=Siân Evans,OU=Ward 1,OU=NHS Staff,DC=tansync,DC=test");
        assert!(dn.is_within(&ou));
        assert!(ou.is_within(&ou));
        assert!(!NormDn::new("CN=x,OU=Other NHS Staff,DC=tansync,DC=test").is_within(&ou));
        assert_eq!(NormDn::new("CN=A\\, B,DC=x").as_str(), "cn=a\\, b,dc=x");
    }
}

//! Strict decoding of the LDAP responses the client reads (RFC 4511 §4.1.1, §4.1.9,
//! §4.2.2, §4.5.2, §4.12; paged results RFC 2696), on asn1-rs's BER element reader.
//!
//! Why not a whole-message decoder from a crate: ldap-parser (tried first, in this
//! change) is lenient where a read must not be. It discards whatever is left inside a
//! SEQUENCE once its fields are read, and reads attribute and control lists with a
//! repetition that stops quietly at the first element it cannot parse. An entry would
//! lose its later attributes without an error, and a paged results control it could not
//! parse would end the search as if on its last page: a partial read presented as
//! complete. The unit tests found the first. Here every element is checked for its
//! class, tag and form, and every constructed element must be consumed exactly. Values
//! are borrowed from the receive buffer until [`entry`] copies the ones the source
//! keeps.

use super::RawEntry;
use asn1_rs::{Any, Class, FromBer};

/// The paged results control (RFC 2696).
pub(super) const PAGED_RESULTS: &[u8] = b"1.2.840.113556.1.4.319";

/// One response: its message id, operation and paged results cookie (if it carries the
/// control).
pub(super) struct Message<'a> {
    pub id: u32,
    pub op: Op<'a>,
    pub paged_cookie: Option<&'a [u8]>,
}

pub(super) enum Op<'a> {
    Bind(Outcome<'a>),
    /// A SearchResultEntry: its DN and the content of its attribute list, walked by
    /// [`entry`].
    Entry {
        dn: &'a [u8],
        attributes: &'a [u8],
    },
    Done(Outcome<'a>),
    Reference,
    Extended(Outcome<'a>),
    /// Any other operation, by its application tag.
    Other(u32),
}

/// An LDAPResult's code and diagnostic message.
pub(super) struct Outcome<'a> {
    pub code: u32,
    pub message: &'a [u8],
}

impl Outcome<'_> {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.message).trim().to_string()
    }
}

/// The elements of one constructed element's content, in order.
struct Items<'a> {
    rest: &'a [u8],
}

impl<'a> Items<'a> {
    fn of(data: &'a [u8]) -> Self {
        Items { rest: data }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn next(&mut self, what: &str) -> Result<Any<'a>, String> {
        if self.rest.is_empty() {
            return Err(format!("{what} is missing"));
        }
        let (rest, any) =
            Any::from_ber(self.rest).map_err(|e| format!("{what} cannot be read ({e})"))?;
        self.rest = rest;
        Ok(any)
    }

    /// The next element if it has `class` and `tag` (an optional field).
    fn next_if(&mut self, class: Class, tag: u32, what: &str) -> Result<Option<Any<'a>>, String> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (rest, any) =
            Any::from_ber(self.rest).map_err(|e| format!("{what} cannot be read ({e})"))?;
        if any.class() != class || any.tag().0 != tag {
            return Ok(None);
        }
        self.rest = rest;
        Ok(Some(any))
    }

    fn end(&self, what: &str) -> Result<(), String> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(format!("{what} has {n} bytes past its last field")),
        }
    }
}

/// The content of `any` if it is the element expected.
fn content<'a>(
    any: &Any<'a>,
    class: Class,
    tag: u32,
    constructed: bool,
    what: &str,
) -> Result<&'a [u8], String> {
    if any.class() != class || any.tag().0 != tag || any.header.is_constructed() != constructed {
        return Err(format!(
            "{what} is not what LDAP sends there ({:?} {}{})",
            any.class(),
            any.tag().0,
            if any.header.is_constructed() {
                ", constructed"
            } else {
                ""
            }
        ));
    }
    Ok(any.data)
}

const SEQUENCE: u32 = 16;
const SET: u32 = 17;
const OCTET_STRING: u32 = 4;
const INTEGER: u32 = 2;
const ENUMERATED: u32 = 10;
const BOOLEAN: u32 = 1;

fn octets<'a>(any: &Any<'a>, what: &str) -> Result<&'a [u8], String> {
    content(any, Class::Universal, OCTET_STRING, false, what)
}

/// A non-negative INTEGER or ENUMERATED that fits in 32 bits.
fn small_uint(data: &[u8], what: &str) -> Result<u32, String> {
    let bad = || format!("{what} is not a number from 0 to 4294967295");
    let digits = match data {
        [] => return Err(bad()),
        [0, rest @ ..] if !rest.is_empty() => rest,
        [first, ..] if first & 0x80 != 0 => return Err(bad()),
        all => all,
    };
    if digits.len() > 4 {
        return Err(bad());
    }
    Ok(digits.iter().fold(0u32, |v, d| (v << 8) | u32::from(*d)))
}

/// Decode one whole message (a frame from [`super::frame_len`]).
pub(super) fn message(frame: &[u8]) -> Result<Message<'_>, String> {
    let (rest, seq) =
        Any::from_ber(frame).map_err(|e| format!("the message cannot be read ({e})"))?;
    if !rest.is_empty() {
        return Err("the message is followed by bytes of no message".into());
    }
    let mut items = Items::of(content(
        &seq,
        Class::Universal,
        SEQUENCE,
        true,
        "the message",
    )?);
    let id = items.next("the message id")?;
    let id = small_uint(
        content(&id, Class::Universal, INTEGER, false, "the message id")?,
        "the message id",
    )?;
    let op = items.next("the operation")?;
    if op.class() != Class::Application {
        return Err(format!("the operation has a {:?} tag", op.class()));
    }
    let constructed = |what: &str| content(&op, Class::Application, op.tag().0, true, what);
    let op = match op.tag().0 {
        1 => Op::Bind(outcome(constructed("the bind response")?)?),
        4 => {
            let mut fields = Items::of(constructed("the entry")?);
            let dn = octets(&fields.next("the entry's DN")?, "the entry's DN")?;
            let list = fields.next("the entry's attributes")?;
            let attributes = content(
                &list,
                Class::Universal,
                SEQUENCE,
                true,
                "the entry's attributes",
            )?;
            fields.end("the entry")?;
            Op::Entry { dn, attributes }
        }
        5 => Op::Done(outcome(constructed("the search result")?)?),
        19 => Op::Reference,
        24 => Op::Extended(outcome(constructed("the extended response")?)?),
        n => Op::Other(n),
    };
    let paged_cookie = match items.next_if(Class::ContextSpecific, 0, "the controls")? {
        Some(c) => {
            let list = content(&c, Class::ContextSpecific, 0, true, "the controls")?;
            paged_cookie(list)?
        }
        None => None,
    };
    items.end("the message")?;
    Ok(Message {
        id,
        op,
        paged_cookie,
    })
}

/// An LDAPResult: code, matched DN, diagnostic message; what follows (a referral, or the
/// operation's own fields) is not read.
fn outcome(data: &[u8]) -> Result<Outcome<'_>, String> {
    let mut items = Items::of(data);
    let code = items.next("the result code")?;
    let code = small_uint(
        content(
            &code,
            Class::Universal,
            ENUMERATED,
            false,
            "the result code",
        )?,
        "the result code",
    )?;
    octets(&items.next("the matched DN")?, "the matched DN")?;
    let message = octets(
        &items.next("the diagnostic message")?,
        "the diagnostic message",
    )?;
    Ok(Outcome { code, message })
}

/// The paged results cookie among a message's controls, if the control is there. Any
/// control that cannot be read is an error: it might have been the paged one.
fn paged_cookie(list: &[u8]) -> Result<Option<&[u8]>, String> {
    let mut controls = Items::of(list);
    let mut cookie = None;
    while !controls.is_empty() {
        let control = controls.next("a control")?;
        let mut fields = Items::of(content(
            &control,
            Class::Universal,
            SEQUENCE,
            true,
            "a control",
        )?);
        let oid = octets(&fields.next("a control's type")?, "a control's type")?;
        if let Some(b) = fields.next_if(Class::Universal, BOOLEAN, "a control's criticality")? {
            content(
                &b,
                Class::Universal,
                BOOLEAN,
                false,
                "a control's criticality",
            )?;
        }
        let value = fields
            .next_if(Class::Universal, OCTET_STRING, "a control's value")?
            .map(|v| octets(&v, "a control's value"))
            .transpose()?;
        fields.end("a control")?;
        if oid != PAGED_RESULTS {
            continue;
        }
        if cookie.is_some() {
            return Err("the paged results control appears twice".into());
        }
        let what = "the paged results control";
        let value = value.ok_or_else(|| format!("{what} has no value"))?;
        let (rest, seq) =
            Any::from_ber(value).map_err(|e| format!("{what} cannot be read ({e})"))?;
        if !rest.is_empty() {
            return Err(format!("{what} has bytes past its value"));
        }
        let mut v = Items::of(content(&seq, Class::Universal, SEQUENCE, true, what)?);
        content(&v.next(what)?, Class::Universal, INTEGER, false, what)?;
        cookie = Some(octets(&v.next(what)?, what)?);
        v.end(what)?;
    }
    Ok(cookie)
}

/// A SearchResultEntry as the source takes it: the DN, names and values copied out of
/// the buffer once. As ldap3 did, an attribute with any value that is not UTF-8 is
/// binary as a whole.
pub(super) fn entry(dn: &[u8], attributes: &[u8]) -> Result<RawEntry, String> {
    let dn = std::str::from_utf8(dn).map_err(|_| "the entry's DN is not UTF-8".to_string())?;
    let mut text = Vec::new();
    let mut binary = Vec::new();
    let mut list = Items::of(attributes);
    while !list.is_empty() {
        let what = "an attribute of the entry";
        let a = list.next(what)?;
        let mut fields = Items::of(content(&a, Class::Universal, SEQUENCE, true, what)?);
        let name = octets(&fields.next("an attribute's name")?, "an attribute's name")?;
        let name = std::str::from_utf8(name)
            .map_err(|_| format!("an attribute name of {dn} is not UTF-8"))?
            .to_string();
        let set = fields.next("an attribute's values")?;
        let mut values = Items::of(content(
            &set,
            Class::Universal,
            SET,
            true,
            "an attribute's values",
        )?);
        fields.end(what)?;
        let mut strs: Vec<String> = Vec::new();
        let mut bytes: Option<Vec<Vec<u8>>> = None;
        while !values.is_empty() {
            let v = octets(&values.next("a value")?, "a value")?;
            match (&mut bytes, std::str::from_utf8(v)) {
                (None, Ok(s)) => strs.push(s.to_owned()),
                (None, Err(_)) => {
                    let mut all: Vec<Vec<u8>> = strs.drain(..).map(String::into_bytes).collect();
                    all.push(v.to_vec());
                    bytes = Some(all);
                }
                (Some(all), _) => all.push(v.to_vec()),
            }
        }
        match bytes {
            None => text.push((name, strs)),
            Some(all) => binary.push((name, all)),
        }
    }
    Ok(RawEntry {
        dn: dn.to_string(),
        text,
        binary,
    })
}

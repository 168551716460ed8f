//! The client's framing and decoding against ldap3's (the oracle), on random entries;
//! mutated and random bytes (fuzzing: nothing may panic, and a message that decodes
//! must decode the same whole); and whole exchanges with a scripted server on loopback.

use super::*;
use crate::source::{AnchorKind, SourceEntry};
use ldap_parser::FromBer;
use ldap_parser::asn1_rs::{OctetString as BerOctets, Sequence as BerSequence};
use ldap_parser::ldap::{LdapMessage, ProtocolOp};
use ldap3::asn1::Set;

/// A small deterministic generator (fastrand with a fixed seed per test).
fn rng(seed: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed)
}

fn octets(b: &[u8]) -> Tag {
    Tag::OctetString(OctetString {
        inner: b.to_vec(),
        ..Default::default()
    })
}

/// The protocol op of a SearchResultEntry ([APPLICATION 4]).
fn entry_op(dn: &[u8], attrs: &[(String, Vec<Vec<u8>>)]) -> Tag {
    Tag::Sequence(Sequence {
        id: 4,
        class: TagClass::Application,
        inner: vec![
            octets(dn),
            Tag::Sequence(Sequence {
                inner: attrs
                    .iter()
                    .map(|(name, values)| {
                        Tag::Sequence(Sequence {
                            inner: vec![
                                octets(name.as_bytes()),
                                Tag::Set(Set {
                                    inner: values.iter().map(|v| octets(v)).collect(),
                                    ..Default::default()
                                }),
                            ],
                            ..Default::default()
                        })
                    })
                    .collect(),
                ..Default::default()
            }),
        ],
    })
}

/// A SearchResultDone ([APPLICATION 5]).
fn done_op(rc: i64, text: &str) -> Tag {
    result_op(5, rc, text)
}

/// An operation that is an LDAPResult: `[APPLICATION tag]` with the code and message.
fn result_op(tag: u64, rc: i64, text: &str) -> Tag {
    Tag::Sequence(Sequence {
        id: tag,
        class: TagClass::Application,
        inner: vec![
            Tag::Enumerated(Enumerated {
                inner: rc,
                ..Default::default()
            }),
            octets(b""),
            octets(text.as_bytes()),
        ],
    })
}

fn encode(id: i32, op: Tag, controls: Vec<Tag>) -> Vec<u8> {
    message(id, op, controls).expect("encode").to_vec()
}

/// A random value: often text (some of it not ASCII), sometimes bytes that are not
/// UTF-8, sometimes long enough for two- and three-byte BER lengths.
fn value(r: &mut fastrand::Rng) -> Vec<u8> {
    match r.u8(0..10) {
        0 => (0..r.usize(0..40)).map(|_| r.u8(..)).collect(),
        1 => "é".repeat(r.usize(60..40_000)).into_bytes(),
        2 => Vec::new(),
        _ => {
            let words = ["Siân", "Ó Dálaigh", "ward", "Zoë", "ßtraße", "😀", "a", "B"];
            (0..r.usize(1..6))
                .map(|_| words[r.usize(..words.len())])
                .collect::<Vec<_>>()
                .join(" ")
                .into_bytes()
        }
    }
}

/// A random entry: distinct attribute names (a server sends each once), each with 0-4
/// values; an objectGUID of 16 bytes on most.
/// An entry's attributes as sent: names and raw values.
type Attrs = Vec<(String, Vec<Vec<u8>>)>;

fn random_entry(r: &mut fastrand::Rng) -> (Vec<u8>, Attrs) {
    let names = [
        "cn",
        "givenName",
        "SN",
        "title",
        "memberOf",
        "userAccountControl",
        "objectSid",
        "mail",
        "description",
        "jpegPhoto",
    ];
    let mut attrs: Attrs = Vec::new();
    for n in names {
        if r.bool() {
            let values = (0..r.usize(0..5)).map(|_| value(r)).collect();
            attrs.push((n.to_string(), values));
        }
    }
    if r.u8(0..4) != 0 {
        attrs.push((
            "objectGUID".into(),
            vec![(0..16).map(|_| r.u8(..)).collect()],
        ));
    }
    r.shuffle(&mut attrs);
    let dn = format!(
        "CN=Person {} Ñ,OU=Ward {},DC=t,DC=test",
        r.u32(..),
        r.u8(..)
    );
    (dn.into_bytes(), attrs)
}

/// ldap3's decoding of the same entry, as the source builds it.
fn through_ldap3(op: Tag) -> RawEntry {
    let re = ldap3::ResultEntry::new(op.into_structure());
    ldap3::SearchEntry::construct(re).into()
}

/// What the source makes of an entry: the comparison that matters.
fn built(e: RawEntry) -> String {
    let anchor = AnchorKind::ObjectGuid;
    format!("{:?}", SourceEntry::build(e.dn, e.text, e.binary, &anchor))
}

/// The same entry, with ldap3's unordered maps put in order (its `HashMap`s have no
/// order; within an attribute it keeps text values in order, and puts the binary ones of
/// a mixed attribute first).
fn normalised(mut e: RawEntry) -> RawEntry {
    e.text.sort();
    for (_, v) in &mut e.binary {
        v.sort();
    }
    e.binary.sort();
    e
}

#[test]
fn entries_decode_as_ldap3_decodes_them() {
    let mut r = rng(11);
    for round in 0..2_000 {
        let (dn, attrs) = random_entry(&mut r);
        let frame = encode(r.i32(1..i32::MAX), entry_op(&dn, &attrs), Vec::new());
        assert_eq!(frame_len(&frame), Ok(Some(frame.len())), "round {round}");
        let ours = decode_search_reply(&frame)
            .unwrap_or_else(|e| panic!("round {round}: {e}"))
            .expect("an entry");
        let theirs = through_ldap3(entry_op(&dn, &attrs));
        assert_eq!(
            built(normalised_clone(&ours)),
            built(normalised_clone(&theirs))
        );
        assert_eq!(normalised(ours), normalised(theirs), "round {round}");
    }
}

fn normalised_clone(e: &RawEntry) -> RawEntry {
    normalised(RawEntry {
        dn: e.dn.clone(),
        text: e.text.clone(),
        binary: e.binary.clone(),
    })
}

#[test]
fn an_attribute_with_one_value_that_is_not_utf8_is_binary_as_a_whole() {
    let attrs = vec![("audio".to_string(), vec![b"ok".to_vec(), vec![0xff, 0x00]])];
    let frame = encode(3, entry_op(b"cn=a", &attrs), Vec::new());
    let e = decode_search_reply(&frame).unwrap().unwrap();
    assert!(e.text.is_empty());
    assert_eq!(e.binary, attrs);
}

#[test]
fn a_dn_or_attribute_name_that_is_not_utf8_is_an_error_not_a_panic() {
    for (dn, name) in [(&b"cn=\xff"[..], "cn"), (&b"cn=a"[..], "~ok")] {
        let mut frame = encode(3, entry_op(dn, &[(name.to_string(), vec![])]), Vec::new());
        // Make the name's first byte invalid UTF-8 in place.
        if let Some(at) = frame.windows(3).position(|w| w == b"~ok") {
            frame[at] = 0xff;
        }
        assert!(decode_search_reply(&frame).is_err(), "{dn:?} {name}");
    }
}

#[test]
fn frames_are_measured_from_their_ber_header() {
    let long = encode(
        1,
        entry_op(b"cn=x", &[("cn".into(), vec![vec![b'a'; 70_000]])]),
        vec![],
    );
    assert_eq!(long[1], 0x83, "a three-byte length");
    assert_eq!(frame_len(&long), Ok(Some(long.len())));
    for cut in [0, 1, 2, 4, 5, long.len() - 1] {
        assert_eq!(frame_len(&long[..cut]), Ok(None), "cut at {cut}");
    }
    let mut two = long.clone();
    two.extend_from_slice(&long);
    assert_eq!(
        frame_len(&two),
        Ok(Some(long.len())),
        "one message at a time"
    );
    assert_eq!(frame_len(&[0x30, 0x03, 1, 2, 3]), Ok(Some(5)));
    assert!(frame_len(&[0x04, 0x00]).unwrap_err().contains("tag 0x04"));
    assert!(frame_len(&[0x30, 0x80]).unwrap_err().contains("indefinite"));
    assert!(
        frame_len(&[0x30, 0x85, 1, 1, 1, 1, 1])
            .unwrap_err()
            .contains("5-byte")
    );
    let huge = frame_len(&[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff]).unwrap_err();
    assert!(huge.contains("more than"), "{huge}");
}

fn paged(size: i32, cookie: &[u8]) -> Tag {
    paged_control(size, cookie)
}

#[test]
fn the_paged_results_cookie_is_read_from_the_done_message() {
    let cookie = |frame: &[u8]| decode::message(frame).map(|m| m.paged_cookie.map(<[u8]>::to_vec));
    let frame = encode(9, done_op(0, ""), vec![paged(0, b"\x01\x02next")]);
    assert_eq!(cookie(&frame), Ok(Some(b"\x01\x02next".to_vec())));
    let last = encode(9, done_op(0, ""), vec![paged(0, b"")]);
    assert_eq!(cookie(&last), Ok(Some(Vec::new())));
    assert_eq!(cookie(&encode(9, done_op(0, ""), vec![])), Ok(None));
    // A control whose value is not the paged results sequence.
    let bad = Tag::Sequence(Sequence {
        inner: vec![octets(decode::PAGED_RESULTS), octets(b"\x04\x01x")],
        ..Default::default()
    });
    let e = cookie(&encode(9, done_op(0, ""), vec![bad])).err().unwrap();
    assert!(e.contains("paged results control"), "{e}");
    // Twice.
    let twice = encode(9, done_op(0, ""), vec![paged(0, b"a"), paged(0, b"b")]);
    assert!(cookie(&twice).err().unwrap().contains("twice"));
}

/// What a lenient decoder would drop quietly is an error here: an attribute or control
/// that cannot be read, and bytes past a field list.
#[test]
fn a_malformed_attribute_or_control_is_an_error_not_dropped() {
    let attrs = vec![
        ("cn".to_string(), vec![b"Ann".to_vec()]),
        ("~ok".to_string(), vec![b"x".to_vec()]),
        ("sn".to_string(), vec![b"Ash".to_vec()]),
    ];
    let good = encode(3, entry_op(b"cn=Ann", &attrs), vec![]);
    let e = decode_search_reply(&good).unwrap().unwrap();
    assert_eq!(e.text.len(), 3);
    // The middle attribute's name made an INTEGER instead of an OCTET STRING.
    let mut bad = good.clone();
    let at = bad.windows(4).position(|w| w == b"\x04\x03~o").unwrap();
    bad[at] = 0x02;
    let e = decode_search_reply(&bad).unwrap_err();
    assert!(e.contains("an attribute's name"), "{e}");
    // A control that is not a SEQUENCE, beside a good paged control.
    let junk = Tag::OctetString(OctetString {
        inner: b"junk".to_vec(),
        ..Default::default()
    });
    let frame = encode(9, done_op(0, ""), vec![paged(0, b"more"), junk]);
    assert!(decode::message(&frame).err().unwrap().contains("a control"));
    // Bytes past the message's last field (inside its SEQUENCE).
    let mut long = encode(9, done_op(0, ""), vec![]);
    long[1] += 2;
    long.extend_from_slice(&[0x05, 0x00]);
    assert!(
        decode::message(&long)
            .err()
            .unwrap()
            .contains("past its last field")
    );
}

/// The requests decode as an LDAP server decodes them (ldap-parser has the request side
/// too): a search with its filter, attributes and paged control, a bind.
#[test]
fn requests_encode_as_a_server_reads_them() {
    let filter = ldap3::parse_filter("(&(objectClass=user)(cn=Siân*))").unwrap();
    let attrs = vec!["cn".to_string(), "objectGUID".to_string()];
    let frame = encode(
        4,
        search_request("OU=Wards,DC=t", filter, &attrs),
        vec![paged(250, b"ck")],
    );
    let (rest, msg) = LdapMessage::from_ber(&frame).unwrap();
    assert!(rest.is_empty());
    assert_eq!(msg.message_id.0, 4);
    let ProtocolOp::SearchRequest(req) = msg.protocol_op else {
        panic!("a search request")
    };
    assert_eq!(req.base_object.0, "OU=Wards,DC=t");
    assert_eq!(req.scope.0, 2);
    assert_eq!(req.size_limit, 0);
    let got: Vec<&str> = req.attributes.iter().map(|a| a.0.as_ref()).collect();
    assert_eq!(got, ["cn", "objectGUID"]);
    let controls = msg.controls.expect("controls");
    assert_eq!(controls[0].control_type.0.as_bytes(), decode::PAGED_RESULTS);
    assert!(!controls[0].criticality);
    let value = controls[0].control_value.as_deref().unwrap();
    let (_, (size, cookie)) = BerSequence::from_ber_and_then(value, |i| {
        let (i, size) = u32::from_ber(i)?;
        let (i, cookie) = BerOctets::from_ber(i)?;
        Ok((i, (size, cookie.as_cow().to_vec())))
    })
    .unwrap();
    assert_eq!((size, cookie), (250, b"ck".to_vec()));
}

/// Mutations of real-shaped messages and plain random bytes: framing and decoding
/// return a result for every input, and never panic.
#[test]
fn fuzzing_mutated_and_random_input_never_panics() {
    let mut r = rng(23);
    let mut seeds: Vec<Vec<u8>> = (0..40)
        .map(|_| {
            let (dn, attrs) = random_entry(&mut r);
            encode(r.i32(1..1000), entry_op(&dn, &attrs), Vec::new())
        })
        .collect();
    seeds.push(encode(2, done_op(0, ""), vec![paged(0, b"cookie")]));
    seeds.push(encode(2, done_op(4, "size limit"), vec![]));
    seeds.retain(|s| s.len() < 4096);
    let mut decoded = 0;
    for round in 0..30_000 {
        let mut m = seeds[r.usize(..seeds.len())].clone();
        for _ in 0..r.usize(1..4) {
            let at = r.usize(..m.len().max(1));
            let last = m.len().saturating_sub(1);
            match r.u8(0..6) {
                0 if !m.is_empty() => m[at.min(last)] ^= 1 << r.u8(0..8),
                1 if !m.is_empty() => m[at.min(last)] = r.u8(..),
                2 => m.truncate(at),
                3 => m.insert(at.min(m.len()), r.u8(..)),
                4 if at < m.len() => {
                    m.remove(at);
                }
                _ => {
                    // A length byte made long-form.
                    if let Some(b) = m.get_mut(at) {
                        *b = 0x80 | r.u8(1..5);
                    }
                }
            }
        }
        if round % 10 == 0 {
            m = (0..r.usize(0..64)).map(|_| r.u8(..)).collect();
        }
        if let Ok(Some(len)) = frame_len(&m)
            && decode_search_reply(&m[..len]).is_ok()
        {
            decoded += 1;
        }
    }
    // Some mutations (a flipped bit inside a value) still decode: the fuzzing reached
    // the decoder, not only the framing.
    assert!(decoded > 100, "{decoded}");
}

// ------------------------------------------------------------ whole exchanges

/// A scripted server on loopback: reads each request and answers with `answer`'s
/// messages; `None`, or an empty message among them, closes the connection there.
async fn scripted(
    answer: impl Fn(&LdapMessage<'_>) -> Option<Vec<Vec<u8>>> + Send + 'static,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        loop {
            let len = loop {
                if let Ok(Some(n)) = frame_len(&buf) {
                    break n;
                }
                if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            };
            let replies = {
                let (_, msg) = LdapMessage::from_ber(&buf[..len]).unwrap();
                answer(&msg)
            };
            buf.drain(..len);
            let Some(replies) = replies else { return };
            for m in replies {
                if m.is_empty() || s.write_all(&m).await.is_err() {
                    return;
                }
            }
        }
    });
    format!("ldap://{addr}")
}

fn source(url: &str) -> LdapSource {
    LdapSource {
        url: url.to_string(),
        starttls: false,
        ca_file: None,
        auth: super::super::LdapAuth::Simple {
            bind_dn: "cn=reader".into(),
            bind_password: SecretString::from("pw".to_string()),
        },
        base_dns: vec!["dc=t".into()],
        filter: "(objectClass=person)".into(),
        group_filter: "(objectClass=group)".into(),
        page_size: 2,
        connect_timeout: Duration::from_secs(10),
        operation_timeout: Duration::from_secs(10),
        allow_cleartext_bind: true,
        anchor: AnchorKind::Text("uid".into()),
        nested_groups: super::super::NestedGroups::Expand,
    }
}

fn bind_ok(id: u32) -> Vec<u8> {
    bind_reply(id, 0)
}

fn bind_reply(id: u32, rc: i64) -> Vec<u8> {
    encode(id as i32, result_op(1, rc, ""), vec![])
}

fn person(id: u32, n: u32) -> Vec<u8> {
    let attrs = vec![("uid".to_string(), vec![format!("u{n}").into_bytes()])];
    encode(
        id as i32,
        entry_op(format!("uid=u{n},dc=t").as_bytes(), &attrs),
        vec![],
    )
}

/// The request's paged results cookie (as a server reads it: with ldap-parser).
fn cookie_of(msg: &LdapMessage<'_>) -> Vec<u8> {
    let control = msg
        .controls
        .iter()
        .flatten()
        .find(|c| c.control_type.0.as_bytes() == decode::PAGED_RESULTS)
        .expect("the paged results control");
    let value = control.control_value.as_deref().expect("its value");
    let (_, cookie) = BerSequence::from_ber_and_then(value, |i| {
        let (i, _) = u32::from_ber(i)?;
        let (i, cookie) = BerOctets::from_ber(i)?;
        Ok((i, cookie.as_cow().to_vec()))
    })
    .expect("the paged results value");
    cookie
}

/// Pages of two people: 0-1, 2-3, 4; the page after `fail_after` pages fails with `rc`.
fn pages(fail_on: Option<(u8, i64)>) -> impl Fn(&LdapMessage<'_>) -> Option<Vec<Vec<u8>>> {
    move |msg| {
        let id = msg.message_id.0;
        match &msg.protocol_op {
            ProtocolOp::BindRequest(_) => Some(vec![bind_ok(id)]),
            ProtocolOp::SearchRequest(_) => {
                let page = cookie_of(msg).first().copied().unwrap_or(0);
                let mut out: Vec<Vec<u8>> = (u32::from(page) * 2..(u32::from(page) * 2 + 2).min(5))
                    .map(|n| person(id, n))
                    .collect();
                let next: &[u8] = if page < 2 { &[page + 1] } else { &[] };
                let rc = match fail_on {
                    Some((p, rc)) if p == page => rc,
                    _ => 0,
                };
                // A server that fails a page may still hand out a cookie: the read must
                // not go on as if the page were complete.
                out.push(encode(
                    id as i32,
                    done_op(rc, "busy now"),
                    vec![paged(0, next)],
                ));
                Some(out)
            }
            _ => None,
        }
    }
}

async fn read_uids(url: &str) -> Result<Vec<String>, SourceError> {
    read_uids_from(&source(url)).await
}

async fn read_uids_from(src: &LdapSource) -> Result<Vec<String>, SourceError> {
    let cancel = CancellationToken::new();
    let LdapAuth::Simple {
        bind_dn,
        bind_password,
    } = &src.auth
    else {
        unreachable!()
    };
    let mut conn = Conn::open(src, bind_dn, bind_password, &cancel).await?;
    let mut uids = Vec::new();
    conn.paged_search("dc=t", &src.filter, &["uid".into()], 2, &cancel, &mut |e| {
        uids.push(e.text[0].1[0].clone());
        Ok(())
    })
    .await?;
    conn.unbind().await;
    Ok(uids)
}

use super::super::LdapAuth;

#[tokio::test]
async fn a_paged_search_follows_the_cookie_to_the_last_page() {
    let url = scripted(pages(None)).await;
    let uids = read_uids(&url).await.unwrap();
    assert_eq!(uids, ["u0", "u1", "u2", "u3", "u4"]);
}

#[tokio::test]
async fn a_failed_page_ends_the_read_even_with_a_cookie() {
    let url = scripted(pages(Some((1, 51)))).await;
    let e = read_uids(&url).await.unwrap_err().to_string();
    assert!(e.contains("51 (busy)") && e.contains("busy now"), "{e}");
}

#[tokio::test]
async fn a_connection_closed_mid_page_is_an_error() {
    let url = scripted(|msg| match &msg.protocol_op {
        ProtocolOp::BindRequest(_) => Some(vec![bind_ok(msg.message_id.0)]),
        // One entry, then half of the next, then the connection closes.
        _ => {
            let mut half = person(msg.message_id.0, 1);
            half.truncate(half.len() / 2);
            Some(vec![person(msg.message_id.0, 0), half, Vec::new()])
        }
    })
    .await;
    let e = read_uids(&url).await.unwrap_err().to_string();
    assert!(e.contains("closed the connection"), "{e}");
}

#[tokio::test]
async fn a_notice_of_disconnection_or_a_stray_message_id_is_an_error() {
    for (id, want) in [
        (0u32, "ended the session: 52 (unavailable)"),
        (77, "request 77"),
    ] {
        let url = scripted(move |msg| match &msg.protocol_op {
            ProtocolOp::BindRequest(_) => Some(vec![bind_ok(msg.message_id.0)]),
            _ => Some(vec![encode(
                id as i32,
                done_op(52, "shutting down"),
                vec![],
            )]),
        })
        .await;
        let e = read_uids(&url).await.unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
}

#[tokio::test]
async fn a_refused_bind_names_the_code() {
    let url = scripted(|msg| Some(vec![bind_reply(msg.message_id.0, 49)])).await;
    let e = read_uids(&url).await.unwrap_err().to_string();
    assert!(e.contains("49 (invalidCredentials)"), "{e}");
}

/// The outcome does not depend on the machine's speed: the server never answers.
#[tokio::test]
async fn a_silent_server_times_out() {
    let url = scripted(|msg| match &msg.protocol_op {
        ProtocolOp::BindRequest(_) => Some(vec![bind_ok(msg.message_id.0)]),
        // Nothing for the search: the connection stays open and silent.
        _ => Some(vec![]),
    })
    .await;
    let src = LdapSource {
        operation_timeout: Duration::from_secs(1),
        ..source(&url)
    };
    let e = read_uids_from(&src).await.unwrap_err().to_string();
    assert!(e.contains("timed out"), "{e}");
}

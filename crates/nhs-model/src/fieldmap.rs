//! [`FieldMap`]: one record's values by [`Field`] (a person's in the source, an account's in
//! the directory, a provision's in a plan), held in a single allocation.
//!
//! Why not `BTreeMap<Field, String>`: a full plan holds three of these per person (the
//! source's, the directory account's, the provision's). As B-trees each was a 296-byte
//! leaf plus one heap string per value; at 100,000 people heaptrack put 58 MB in the
//! leaves alone (of a 132 MB heap peak). Here a record is its values back to back in one
//! `Box<str>` with their end offsets inline. It behaves as the map did: ordered by
//! `Field`, serialised as the same JSON object (so plans and fingerprints are unchanged),
//! and a value may be empty.

use crate::Field;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

const N: usize = Field::ALL.len();

/// Values by [`Field`], in `Field` order (see the module doc).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldMap {
    /// The present fields' values in `Field` order, back to back.
    text: Box<str>,
    /// `ends[i]`: where `Field::ALL[i]`'s value ends in `text`; for an absent field, where
    /// the one before it ended (so equal maps are equal field for field).
    ends: [u32; N],
    /// Bit `i`: `Field::ALL[i]` has a value.
    present: u16,
}

fn index(f: Field) -> usize {
    f as usize
}

fn offset(n: usize) -> u32 {
    // A record's values come from one LDAP entry, one JSON object or one CSV row, each far
    // below 4 GiB; past that the record would be cut, so refuse loudly instead.
    match u32::try_from(n) {
        Ok(n) => n,
        Err(_) => panic!("one record's values exceed 4 GiB"),
    }
}

impl FieldMap {
    pub fn new() -> FieldMap {
        FieldMap::default()
    }

    /// Build from `(field, value)` pairs in any order; a later value for a field replaces
    /// an earlier one (as inserting into a map does).
    fn build<'a>(pairs: impl IntoIterator<Item = (Field, &'a str)>) -> FieldMap {
        let mut slot: [Option<&str>; N] = [None; N];
        for (f, v) in pairs {
            slot[index(f)] = Some(v);
        }
        FieldMap::from_slots(&slot)
    }

    /// Build from one slot per field, in `Field` order.
    fn from_slots<S: AsRef<str>>(slot: &[Option<S>; N]) -> FieldMap {
        let len = slot.iter().flatten().map(|v| v.as_ref().len()).sum();
        let mut text = String::with_capacity(len);
        let mut ends = [0u32; N];
        let mut present = 0u16;
        for (i, v) in slot.iter().enumerate() {
            if let Some(v) = v {
                text.push_str(v.as_ref());
                present |= 1 << i;
            }
            ends[i] = offset(text.len());
        }
        FieldMap {
            text: text.into_boxed_str(),
            ends,
            present,
        }
    }

    fn value_at(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        // The offsets were taken at the ends of whole values pushed into `text`, so they
        // are char boundaries within it.
        &self.text[start..self.ends[i] as usize]
    }

    pub fn get(&self, f: &Field) -> Option<&str> {
        let i = index(*f);
        (self.present & (1 << i) != 0).then(|| self.value_at(i))
    }

    pub fn contains_key(&self, f: &Field) -> bool {
        self.present & (1 << index(*f)) != 0
    }

    pub fn len(&self) -> usize {
        self.present.count_ones() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.present == 0
    }

    /// The fields with a value and their values, in `Field` order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            map: self,
            left: self.present,
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = Field> + '_ {
        self.iter().map(|(f, _)| f)
    }

    pub fn values(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Set `f` to `v` (replacing any value it had).
    pub fn insert(&mut self, f: Field, v: String) {
        let next = FieldMap::build(self.iter().chain([(f, v.as_str())]));
        *self = next;
    }

    /// Remove `f`; its value, if it had one.
    pub fn remove(&mut self, f: &Field) -> Option<String> {
        let old = self.get(f).map(String::from)?;
        let next = FieldMap::build(self.iter().filter(|(g, _)| g != f));
        *self = next;
        Some(old)
    }

    /// Keep only the fields for which `keep` is true (asked once per field).
    pub fn retain(&mut self, mut keep: impl FnMut(Field, &str) -> bool) {
        let mut gone = 0u16;
        for (f, v) in self.iter() {
            if !keep(f, v) {
                gone |= 1 << index(f);
            }
        }
        if gone != 0 {
            let next = FieldMap::build(self.iter().filter(|(f, _)| gone & (1 << index(*f)) == 0));
            *self = next;
        }
    }
}

/// [`FieldMap::iter`]: `(field, value)` in `Field` order.
#[derive(Clone)]
pub struct Iter<'a> {
    map: &'a FieldMap,
    /// The present fields not yet visited (bit `i`: `Field::ALL[i]`).
    left: u16,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (Field, &'a str);
    fn next(&mut self) -> Option<(Field, &'a str)> {
        if self.left == 0 {
            return None;
        }
        let i = self.left.trailing_zeros() as usize;
        self.left &= self.left - 1;
        Some((Field::ALL[i], self.map.value_at(i)))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let i = 15 - self.left.leading_zeros() as usize;
        self.left &= !(1 << i);
        Some((Field::ALL[i], self.map.value_at(i)))
    }
}

impl<'a> IntoIterator for &'a FieldMap {
    type Item = (Field, &'a str);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<S: AsRef<str>> FromIterator<(Field, S)> for FieldMap {
    fn from_iter<I: IntoIterator<Item = (Field, S)>>(iter: I) -> FieldMap {
        // One slot per field (a later value replaces an earlier one): no vector of the
        // pairs on the way, since this builds every person and account.
        let mut slot: [Option<S>; N] = std::array::from_fn(|_| None);
        for (f, v) in iter {
            slot[index(f)] = Some(v);
        }
        FieldMap::from_slots(&slot)
    }
}

impl<S: AsRef<str>, const K: usize> From<[(Field, S); K]> for FieldMap {
    fn from(pairs: [(Field, S); K]) -> FieldMap {
        FieldMap::build(pairs.iter().map(|(f, v)| (*f, v.as_ref())))
    }
}

/// `map[&field]`, as for a `BTreeMap`: panics when the field has no value.
impl std::ops::Index<&Field> for FieldMap {
    type Output = str;
    fn index(&self, f: &Field) -> &str {
        match self.get(f) {
            Some(v) => v,
            None => panic!("no value for {f}"),
        }
    }
}

impl fmt::Debug for FieldMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for FieldMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for (f, v) in self.iter() {
            m.serialize_entry(&f, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for FieldMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FieldMap, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of field names to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<FieldMap, A::Error> {
                let mut slot: [Option<String>; N] = Default::default();
                while let Some((f, v)) = m.next_entry::<Field, String>()? {
                    slot[index(f)] = Some(v);
                }
                Ok(FieldMap::from_slots(&slot))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn field_indexes_follow_field_order() {
        for (i, f) in Field::ALL.into_iter().enumerate() {
            assert_eq!(index(f), i);
        }
        assert!(Field::ALL.windows(2).all(|w| w[0] < w[1]));
        const { assert!(N <= 16, "present is a u16") };
    }

    /// The map behaves as the `BTreeMap<Field, String>` it replaced: same contents after
    /// the same inserts and removes, same iteration order, same JSON both ways.
    #[test]
    fn it_behaves_as_a_btreemap_of_fields() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let values = ["", "Ann", "Siân Lee", "+447700900123", "a\"b\\c", "日本"];
        for _ in 0..2000 {
            let mut ours = FieldMap::new();
            let mut model: BTreeMap<Field, String> = BTreeMap::new();
            for _ in 0..(next() % 12) {
                let f = Field::ALL[(next() % N as u64) as usize];
                match next() % 4 {
                    0 => {
                        assert_eq!(ours.remove(&f), model.remove(&f));
                    }
                    1 => {
                        let keep = next();
                        ours.retain(|g, _| (keep >> index(g)) & 1 == 1);
                        model.retain(|g, _| (keep >> index(*g)) & 1 == 1);
                    }
                    _ => {
                        let v = values[(next() % values.len() as u64) as usize];
                        ours.insert(f, v.to_string());
                        model.insert(f, v.to_string());
                    }
                }
                let want: Vec<(Field, &str)> =
                    model.iter().map(|(f, v)| (*f, v.as_str())).collect();
                assert_eq!(ours.iter().collect::<Vec<_>>(), want);
                let back: Vec<(Field, &str)> = want.iter().rev().copied().collect();
                assert_eq!(ours.iter().rev().collect::<Vec<_>>(), back);
                assert_eq!(ours.len(), model.len());
                for f in Field::ALL {
                    assert_eq!(ours.get(&f), model.get(&f).map(String::as_str));
                    assert_eq!(ours.contains_key(&f), model.contains_key(&f));
                }
                let json = serde_json::to_string(&ours).unwrap();
                assert_eq!(json, serde_json::to_string(&model).unwrap());
                let back: FieldMap = serde_json::from_str(&json).unwrap();
                assert_eq!(back, ours);
                let rebuilt: FieldMap = model.iter().map(|(f, v)| (*f, v.as_str())).collect();
                assert_eq!(rebuilt, ours, "equal contents, equal maps");
            }
        }
    }

    #[test]
    fn json_in_any_order_with_repeats_reads_as_a_map_would() {
        let json = r#"{"mobile":"1","given_name":"A","mobile":"2"}"#;
        let ours: FieldMap = serde_json::from_str(json).unwrap();
        let model: BTreeMap<Field, String> = serde_json::from_str(json).unwrap();
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            serde_json::to_string(&model).unwrap()
        );
        let bad = serde_json::from_str::<FieldMap>(r#"{"nickname":"x"}"#).unwrap_err();
        assert!(
            bad.to_string().contains("unknown variant `nickname`"),
            "{bad}"
        );
    }
}

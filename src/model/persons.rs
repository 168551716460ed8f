//! The people in scope, keyed by anchor.

use super::Person;
use crate::ids::ExternalId;
use serde::Serialize;

/// The people in scope, in anchor order, each found by its anchor.
///
/// A vector sorted in place by anchor, not a `BTreeMap<ExternalId, Person>`. Building
/// the map from the read's people held the people three times at once (the read's vector,
/// the sorted copy `from_iter` makes, the tree), lifting a 100,000-user plan's peak RSS by
/// about 20 MB; the map also held each anchor twice (key and `Person::external_id`). A
/// look-up here is a binary search, about as fast as the tree's.
///
/// Serialises as the map did (an object from anchor to person, in anchor order), so the
/// plan's fingerprint is unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persons(Vec<Person>);

impl Persons {
    /// Sorts `people` by anchor, in place.
    ///
    /// # Panics
    /// If two people share an anchor. The read rejects both entries of a shared anchor
    /// before they get here (`engine::read`), so this is a broken invariant, never input.
    pub fn new(mut people: Vec<Person>) -> Self {
        people.sort_unstable_by(|a, b| a.external_id.cmp(&b.external_id));
        if let Some(w) = people
            .windows(2)
            .find(|w| w[0].external_id == w[1].external_id)
        {
            panic!("two people in scope share the anchor {}", w[0].external_id);
        }
        Self(people)
    }

    pub fn get(&self, x: &ExternalId) -> Option<&Person> {
        self.0
            .binary_search_by(|p| p.external_id.cmp(x))
            .ok()
            .map(|i| &self.0[i])
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In anchor order.
    pub fn iter(&self) -> std::slice::Iter<'_, Person> {
        self.0.iter()
    }

    /// The anchors, in order.
    pub fn anchors(&self) -> impl Iterator<Item = &ExternalId> {
        self.0.iter().map(|p| &p.external_id)
    }

    /// The people, in anchor order.
    pub fn as_slice(&self) -> &[Person] {
        &self.0
    }
}

impl FromIterator<Person> for Persons {
    fn from_iter<I: IntoIterator<Item = Person>>(iter: I) -> Self {
        Self::new(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Persons {
    type Item = &'a Person;
    type IntoIter = std::slice::Iter<'a, Person>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Serialize for Persons {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|p| (&p.external_id, p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldMap;
    use std::collections::BTreeMap;

    fn person(x: &str) -> Person {
        Person {
            external_id: ExternalId::parse(x).unwrap(),
            dn: format!("CN={x},DC=example,DC=org"),
            ods_code: crate::ids::OdsCode::parse("RXA").unwrap(),
            rule: crate::ids::RuleId::parse("staff").unwrap(),
            enabled: true,
            attributes: FieldMap::default(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn sorted_found_and_serialised_as_the_map_was() {
        let ids = ["b2", "a1", "c3", "0f", "a10"];
        let people: Persons = ids.iter().map(|x| person(x)).collect();
        let map: BTreeMap<ExternalId, Person> = ids
            .iter()
            .map(|x| (ExternalId::parse(x).unwrap(), person(x)))
            .collect();
        assert_eq!(
            people.anchors().collect::<Vec<_>>(),
            map.keys().collect::<Vec<_>>()
        );
        for x in ids {
            let x = ExternalId::parse(x).unwrap();
            assert_eq!(people.get(&x), map.get(&x));
        }
        assert!(people.get(&ExternalId::parse("zz").unwrap()).is_none());
        assert_eq!(people.len(), 5);
        assert_eq!(
            serde_json::to_string(&people).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        assert_eq!(serde_json::to_string(&Persons::default()).unwrap(), "{}");
    }

    #[test]
    #[should_panic(expected = "share the anchor a1")]
    fn a_shared_anchor_is_a_broken_invariant() {
        let _ = Persons::new(vec![person("a1"), person("b2"), person("A1")]);
    }
}

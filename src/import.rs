//! Import files read as a stream: a `DataSet` JSON document
//! (`{"tenants": […], "documents": […]}`) is parsed element by element and
//! handed over in parts of at most [`PART`] records, so an import of a
//! million documents holds a part at a time, not the file. The store
//! writes the parts in one transaction where it has them
//! ([`crate::store::Store::import_parts`]).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess};

use crate::model::{DataSet, Document, Tenant};
use crate::policy::tenant::TenantPolicy;

/// Records per part.
pub const PART: usize = 1_000;

/// What an import file held, counted as it was read.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// The tenants of the file, in order.
    pub tenants: Vec<String>,
    /// Documents per tenant id.
    pub documents: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, part: &DataSet) {
        self.tenants
            .extend(part.tenants.iter().map(|t| t.tenant_id.to_string()));
        for d in &part.documents {
            *self.documents.entry(d.tenant_id.to_string()).or_default() += 1;
        }
    }
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a valid import file: {0}")]
    Invalid(String),
    /// The receiver of the parts went away (the store refused a part).
    #[error("the import was stopped")]
    Stopped,
}

/// Reads an import file, calling `send` with each part (tenants or
/// documents, in file order). `send` returns false to stop.
pub fn read_parts(
    reader: impl Read,
    mut send: impl FnMut(DataSet) -> bool,
) -> Result<Tally, ReadError> {
    let mut tally = Tally::default();
    let mut stopped = false;
    let mut sink = |part: DataSet| {
        tally.add(&part);
        stopped = !send(part);
        !stopped
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let read =
        de::Deserializer::deserialize_map(&mut de, Top { sink: &mut sink }).and_then(|()| de.end());
    match read {
        Ok(()) => Ok(tally),
        // The parse is abandoned through an error; say why.
        Err(_) if stopped => Err(ReadError::Stopped),
        Err(e) => Err(ReadError::Invalid(e.to_string())),
    }
}

/// The error a visitor returns to abandon the parse when the sink stopped.
fn stop<E: de::Error>() -> E {
    E::custom("stopped")
}

type Sink<'a> = dyn FnMut(DataSet) -> bool + 'a;

/// The top-level object.
struct Top<'a, 'b> {
    sink: &'a mut Sink<'b>,
}

impl<'de> de::Visitor<'de> for Top<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with `tenants` and `documents` arrays")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "tenants" => map.next_value_seed(Parts::<Tenant> {
                    sink: &mut *self.sink,
                    wrap: |tenants| DataSet {
                        tenants,
                        ..DataSet::default()
                    },
                    item: PhantomData,
                })?,
                "documents" => map.next_value_seed(Parts::<Document> {
                    sink: &mut *self.sink,
                    wrap: |documents| DataSet {
                        documents,
                        ..DataSet::default()
                    },
                    item: PhantomData,
                })?,
                "policies" => map.next_value_seed(Parts::<TenantPolicy> {
                    sink: &mut *self.sink,
                    wrap: |policies| DataSet {
                        policies,
                        ..DataSet::default()
                    },
                    item: PhantomData,
                })?,
                other => {
                    return Err(de::Error::unknown_field(
                        other,
                        &["tenants", "documents", "policies"],
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One array of records, handed over in parts.
struct Parts<'a, 'b, T> {
    sink: &'a mut Sink<'b>,
    wrap: fn(Vec<T>) -> DataSet,
    item: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Parts<'_, '_, T> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: DeserializeOwned> de::Visitor<'de> for Parts<'_, '_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut part = Vec::with_capacity(PART);
        while let Some(item) = seq.next_element::<T>()? {
            part.push(item);
            if part.len() == PART && !(self.sink)((self.wrap)(std::mem::take(&mut part))) {
                return Err(stop());
            }
        }
        if part.is_empty() || (self.sink)((self.wrap)(part)) {
            Ok(())
        } else {
            Err(stop())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_of(text: &str) -> Result<(Vec<DataSet>, Tally), ReadError> {
        let mut parts = Vec::new();
        let tally = read_parts(text.as_bytes(), |p| {
            parts.push(p);
            true
        })?;
        Ok((parts, tally))
    }

    #[test]
    fn a_file_comes_in_parts_in_order() {
        let spec = crate::generate::Spec {
            tenants: 3,
            documents: 2_500,
            ..Default::default()
        };
        let mut file = Vec::new();
        crate::generate::write_dataset(&spec, &mut file).unwrap();
        let whole: DataSet = serde_json::from_slice(&file).unwrap();
        let (parts, tally) = parts_of(std::str::from_utf8(&file).unwrap()).unwrap();
        let sizes: Vec<(usize, usize)> = parts
            .iter()
            .map(|p| (p.tenants.len(), p.documents.len()))
            .collect();
        assert_eq!(sizes, [(3, 0), (0, 1000), (0, 1000), (0, 500)]);
        let docs: Vec<_> = parts.into_iter().flat_map(|p| p.documents).collect();
        assert_eq!(docs, whole.documents);
        assert_eq!(tally.tenants, ["t00000", "t00001", "t00002"]);
        assert_eq!(tally.documents.values().sum::<u64>(), 2_500);
    }

    #[test]
    fn bad_files_are_refused_with_where() {
        for (text, want) in [
            ("", "EOF"),
            ("[]", "an object"),
            (r#"{"tenants": {}}"#, "an array"),
            (r#"{"documents": [{"tenantId": "t1"}]}"#, "missing field"),
            (r#"{"tenants": []} trailing"#, "trailing"),
            (r#"{"tenants": [], "extra": 1}"#, "unknown field `extra`"),
            (r#"{"tenants": []}"#, ""),
        ] {
            match parts_of(text) {
                Ok(_) => assert!(want.is_empty(), "{text} was accepted"),
                Err(e) => assert!(
                    !want.is_empty() && e.to_string().contains(want),
                    "{text}: {e}"
                ),
            }
        }
    }

    #[test]
    fn the_reader_stops_when_told() {
        let docs: Vec<String> = (0..3_000)
            .map(|i| format!(r#"{{"tenantId": "t1", "documentId": "d{i}", "ownerId": "u", "visibility": "private", "fileType": "pdf"}}"#))
            .collect();
        let text = format!(r#"{{"documents": [{}]}}"#, docs.join(","));
        let mut seen = 0;
        let r = read_parts(text.as_bytes(), |_| {
            seen += 1;
            false
        });
        assert!(matches!(r, Err(ReadError::Stopped)));
        assert_eq!(seen, 1);
    }
}

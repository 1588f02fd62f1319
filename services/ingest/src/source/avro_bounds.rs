//! Bounds on decoding an Avro record from a source topic, checked before anything is decoded.
//!
//! Avro's binary encoding lets a few bytes ask for a great deal: an array block header says
//! how many items follow, and items of type `null` take no bytes, so a 20-byte record can
//! claim billions of values; a schema that refers to itself lets nesting go as deep as the
//! bytes allow; each decoded record carries its field names again. The decoder allocates for
//! what is claimed. So a schema is checked once when it is fetched, and each record is first
//! walked against it without allocating, charging what it would decode to, and refused past
//! the bounds. The walk resolves names exactly as the decoder does (a name without a
//! namespace takes the enclosing one), so the two cannot read a record differently.

use std::borrow::Cow;
use std::collections::HashSet;

use apache_avro::Schema;
use apache_avro::schema::{
    InnerDecimalSchema, Name, Names, NamespaceRef, ResolvedSchema, UuidSchema,
};

use super::record::Rejection;

/// How much one record may decode to.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// A lower bound of the record's size as JSON: each value, field name, key and string.
    pub max_bytes: u64,
    /// Nesting of records, arrays, maps, unions and named types.
    pub max_depth: usize,
}

impl Bounds {
    /// Bounds for events whose payload may be `max_payload_bytes` of JSON; a record may
    /// decode to four times that (bytes become lists of numbers), and nest 128 levels.
    pub fn for_payload(max_payload_bytes: usize) -> Self {
        Self {
            max_bytes: (max_payload_bytes as u64).saturating_mul(4),
            max_depth: 128,
        }
    }
}

/// A writer schema whose named types are resolved and whose records cannot contain
/// themselves: records written with it can be walked (and decoded) within bounds.
pub struct CheckedSchema {
    schema: Schema,
    /// Its named types by full name, as the decoder resolves them (kept, not resolved again
    /// for every record).
    names: Names,
}

impl CheckedSchema {
    /// Resolves `schema`'s names and refuses it if a record contains itself or it nests past
    /// `bounds`.
    pub fn new(schema: Schema, bounds: Bounds) -> Result<Self, Rejection> {
        let names: Names = ResolvedSchema::try_from(&schema)
            .map_err(|e| Rejection::new(format!("its names do not resolve: {e}")))?
            .get_names()
            .iter()
            .map(|(name, named)| (name.clone(), (*named).clone()))
            .collect();
        let mut check = SchemaCheck {
            names: &names,
            open: Vec::new(),
            done: HashSet::new(),
            max_depth: bounds.max_depth,
        };
        check.visit(&schema, None, 0)?;
        Ok(Self { schema, names })
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Walks `datum` and refuses it if it is malformed, has bytes left over, or decodes past
    /// `bounds`. Allocates nothing for the values.
    pub fn check_datum(&self, datum: &[u8], bounds: Bounds) -> Result<(), Rejection> {
        let mut walk = Walk {
            bytes: datum,
            names: &self.names,
            bytes_left: bounds.max_bytes,
            max_depth: bounds.max_depth,
        };
        walk.value(self.schema(), None, 0)?;
        if !walk.bytes.is_empty() {
            return Err(Rejection::new(format!(
                "{} bytes left over after the record",
                walk.bytes.len()
            )));
        }
        Ok(())
    }
}

fn too_deep(max_depth: usize) -> Rejection {
    Rejection::new(format!("it nests deeper than {max_depth} levels"))
}

/// Each named type is checked once (so shared types cost nothing more), and one that is
/// reached again while it is being checked contains itself.
struct SchemaCheck<'n> {
    names: &'n Names,
    open: Vec<Name>,
    done: HashSet<Name>,
    max_depth: usize,
}

impl SchemaCheck<'_> {
    fn visit(
        &mut self,
        schema: &Schema,
        namespace: NamespaceRef,
        depth: usize,
    ) -> Result<(), Rejection> {
        if depth > self.max_depth {
            return Err(too_deep(self.max_depth));
        }
        match schema {
            Schema::Record(record) => {
                let name = record.name.fully_qualified_name(namespace).into_owned();
                if self.open.contains(&name) {
                    return Err(contains_itself(&name));
                }
                if self.done.contains(&name) {
                    return Ok(());
                }
                self.open.push(name.clone());
                for field in &record.fields {
                    self.visit(&field.schema, name.namespace(), depth + 1)?;
                }
                self.open.pop();
                self.done.insert(name);
                Ok(())
            }
            Schema::Ref { name } => {
                let (name, target) = resolve(self.names, name, namespace)?;
                if self.open.contains(&name) {
                    return Err(contains_itself(&name));
                }
                self.visit(target, name.namespace(), depth + 1)
            }
            Schema::Array(array) => self.visit(&array.items, namespace, depth + 1),
            Schema::Map(map) => self.visit(&map.types, namespace, depth + 1),
            Schema::Union(union) => union
                .variants()
                .iter()
                .try_for_each(|variant| self.visit(variant, namespace, depth + 1)),
            _ => Ok(()),
        }
    }
}

/// What a reference names, as the decoder resolves it: a name without a namespace takes the
/// enclosing one.
fn resolve<'n>(
    names: &'n Names,
    name: &'n Name,
    namespace: NamespaceRef,
) -> Result<(Cow<'n, Name>, &'n Schema), Rejection> {
    let name = name.fully_qualified_name(namespace);
    let target = names
        .get(name.as_ref())
        .ok_or_else(|| Rejection::new(format!("the schema names {name} without defining it")))?;
    Ok((name, target))
}

fn contains_itself(name: &Name) -> Rejection {
    Rejection::new(format!(
        "its record {name} contains itself: records that nest without end are not accepted"
    ))
}

struct Walk<'d, 'n> {
    bytes: &'d [u8],
    names: &'n Names,
    bytes_left: u64,
    max_depth: usize,
}

impl Walk<'_, '_> {
    /// Charges `n` bytes of what the record decodes to against the bound.
    fn charge(&mut self, n: u64) -> Result<(), Rejection> {
        self.bytes_left = self
            .bytes_left
            .checked_sub(n)
            .ok_or_else(|| Rejection::new("the record decodes to more than an event may hold"))?;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<(), Rejection> {
        if n > self.bytes.len() {
            return Err(Rejection::new("the record ends in the middle of a value"));
        }
        self.bytes = &self.bytes[n..];
        Ok(())
    }

    /// A zig-zag varint (`int` or `long`).
    fn long(&mut self) -> Result<i64, Rejection> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let [byte, rest @ ..] = self.bytes else {
                return Err(Rejection::new("the record ends in the middle of a number"));
            };
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(Rejection::new(
            "a number in the record is longer than 10 bytes",
        ))
    }

    /// A length-prefixed run of bytes (`bytes`, `string`), charged `per_byte` each.
    fn sized(&mut self, per_byte: u64) -> Result<(), Rejection> {
        let length = self.long()?;
        let n = usize::try_from(length)
            .ok()
            .filter(|n| *n <= self.bytes.len())
            .ok_or_else(|| {
                Rejection::new(format!("a length of {length} does not fit the record"))
            })?;
        self.charge((n as u64).saturating_mul(per_byte))?;
        self.take(n)
    }

    fn fixed(&mut self, size: usize) -> Result<(), Rejection> {
        // Decoded as a list of numbers.
        self.charge((size as u64).saturating_mul(2))?;
        self.take(size)
    }

    fn value(
        &mut self,
        schema: &Schema,
        namespace: NamespaceRef,
        depth: usize,
    ) -> Result<(), Rejection> {
        if depth > self.max_depth {
            return Err(too_deep(self.max_depth));
        }
        self.charge(1)?;
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.take(1),
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(drop),
            Schema::Float => self.take(4),
            Schema::Double => self.take(8),
            Schema::String | Schema::Uuid(UuidSchema::String) => self.sized(1),
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => self.sized(2),
            Schema::Uuid(UuidSchema::Fixed(fixed)) => self.fixed(fixed.size),
            Schema::Decimal(decimal) => match &decimal.inner {
                InnerDecimalSchema::Fixed(fixed) => self.fixed(fixed.size),
                InnerDecimalSchema::Bytes => self.sized(2),
            },
            Schema::Fixed(fixed) | Schema::Duration(fixed) => self.fixed(fixed.size),
            Schema::Enum(e) => {
                let index = self.long()?;
                let symbol = usize::try_from(index)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or_else(|| Rejection::new(format!("enum index {index} out of range")))?;
                self.charge(symbol.len() as u64)
            }
            Schema::Union(union) => {
                let index = self.long()?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| union.variants().get(i))
                    .ok_or_else(|| Rejection::new(format!("union index {index} out of range")))?;
                self.value(variant, namespace, depth + 1)
            }
            Schema::Record(record) => {
                let name = record.name.fully_qualified_name(namespace);
                for field in &record.fields {
                    // Each decoded record carries its field names.
                    self.charge(field.name.len() as u64 + 3)?;
                    self.value(&field.schema, name.namespace(), depth + 1)?;
                }
                Ok(())
            }
            Schema::Array(array) => {
                self.blocks(depth, |walk| walk.value(&array.items, namespace, depth + 1))
            }
            Schema::Map(map) => self.blocks(depth, |walk| {
                walk.sized(1)?;
                walk.charge(3)?;
                walk.value(&map.types, namespace, depth + 1)
            }),
            Schema::Ref { name } => {
                let (name, target) = resolve(self.names, name, namespace)?;
                self.value(target, name.namespace(), depth + 1)
            }
        }
    }

    /// Array and map items come in blocks, each a count (negative: followed by its size in
    /// bytes), until a count of zero. Each item decodes to at least a byte, so a count past
    /// what is left is refused before any item is read.
    fn blocks(
        &mut self,
        depth: usize,
        mut item: impl FnMut(&mut Self) -> Result<(), Rejection>,
    ) -> Result<(), Rejection> {
        if depth + 1 > self.max_depth {
            return Err(too_deep(self.max_depth));
        }
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?;
            }
            let count = count.unsigned_abs();
            if count > self.bytes_left {
                return Err(Rejection::new(format!(
                    "an array or map of {count} items is more than an event may hold"
                )));
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        max_bytes: 10_000,
        max_depth: 16,
    };

    fn zigzag(n: i64) -> Vec<u8> {
        let mut v = ((n << 1) ^ (n >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn checked(text: &str) -> Result<CheckedSchema, Rejection> {
        CheckedSchema::new(Schema::parse_str(text).unwrap(), BOUNDS)
    }

    #[test]
    fn a_few_bytes_claiming_billions_of_nulls_are_refused_before_decoding() {
        let schema =
            checked(r#"{"type":"array","items":{"type":"array","items":"null"}}"#).unwrap();
        // Four inner arrays of ten million nulls: 20-odd bytes.
        let mut datum = zigzag(4);
        for _ in 0..4 {
            datum.extend(zigzag(10_000_000));
            datum.extend(zigzag(0));
        }
        datum.extend(zigzag(0));
        assert!(datum.len() < 32);
        let err = schema.check_datum(&datum, BOUNDS).unwrap_err();
        assert!(
            err.to_string().contains("more than an event may hold"),
            "{err}"
        );
        // The same shape within bounds passes.
        let mut small = zigzag(2);
        for _ in 0..2 {
            small.extend(zigzag(10));
            small.extend(zigzag(0));
        }
        small.extend(zigzag(0));
        schema.check_datum(&small, BOUNDS).unwrap();
    }

    #[test]
    fn schemas_that_contain_themselves_are_refused() {
        assert!(
            checked(r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#)
                .is_err()
        );
        assert!(
            checked(
                r#"{"type":"record","name":"A","fields":[{"name":"b","type":
                    {"type":"record","name":"B","fields":[{"name":"a","type":{"type":"array","items":"A"}}]}}]}"#
            )
            .is_err()
        );
        // Through a namespace: `.Inner` is the un-namespaced type here, but inside `ns.Outer`
        // the decoder reads an unqualified reference as `ns.Inner`, which contains itself.
        let namespaced = r#"{"type":"record","name":"Root","fields":[
            {"name":"a","type":{"type":"record","name":"Inner","fields":[{"name":"x","type":"null"}]}},
            {"name":"b","type":{"type":"record","name":"Outer","namespace":"ns","fields":[
                {"name":"c","type":{"type":"record","name":"Inner","fields":[
                    {"name":"next","type":["null","Inner"]}]}}]}}]}"#;
        assert!(checked(namespaced).is_err(), "ns.Inner contains itself");
        // A named type used twice is not recursion.
        let reused = checked(
            r#"{"type":"record","name":"Pair","fields":[
                {"name":"x","type":{"type":"record","name":"P","fields":[{"name":"v","type":"long"}]}},
                {"name":"y","type":"P"}]}"#,
        )
        .unwrap();
        let datum: Vec<u8> = [zigzag(1), zigzag(2)].concat();
        reused.check_datum(&datum, BOUNDS).unwrap();
    }

    #[test]
    fn a_schema_of_shared_types_is_checked_once_each() {
        // 60 records, each with two fields of the one before: 2^60 paths, 60 types.
        let mut fields = r#"[{"name":"v","type":"null"}]"#.to_owned();
        let mut types = Vec::new();
        for i in 0..60 {
            let previous = if i == 0 {
                "null".to_owned()
            } else {
                format!(r#""R{}""#, i - 1)
            };
            if i > 0 {
                fields = format!(
                    r#"[{{"name":"a","type":{previous}}},{{"name":"b","type":{previous}}}]"#
                );
            }
            types.push(format!(
                r#"{{"type":"record","name":"R{i}","fields":{fields}}}"#
            ));
        }
        let schema = format!("[{}]", types.join(","));
        let started = std::time::Instant::now();
        let result = CheckedSchema::new(
            Schema::parse_str(&schema).unwrap(),
            Bounds {
                max_bytes: 10_000,
                max_depth: 128,
            },
        );
        assert!(result.is_ok(), "{:?}", result.err());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn long_field_names_count_against_the_bound() {
        let name = "n".repeat(4096);
        let schema = checked(&format!(
            r#"{{"type":"array","items":{{"type":"record","name":"R","fields":[{{"name":"{name}","type":"null"}}]}}}}"#
        ))
        .unwrap();
        // Three items are 12 KiB of names when decoded.
        let datum: Vec<u8> = [zigzag(3), zigzag(0)].concat();
        let err = schema.check_datum(&datum, BOUNDS).unwrap_err();
        assert!(
            err.to_string().contains("more than an event may hold"),
            "{err}"
        );
    }

    #[test]
    fn malformed_oversized_and_overlong_datums_are_refused() {
        let schema = checked(
            r#"{"type":"record","name":"R","fields":[
                {"name":"s","type":"string"},
                {"name":"m","type":{"type":"map","values":"int"}},
                {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}]}"#,
        )
        .unwrap();
        let good: Vec<u8> = [
            zigzag(2),
            b"hi".to_vec(),
            zigzag(1),
            zigzag(1),
            b"k".to_vec(),
            zigzag(5),
            zigzag(0),
            zigzag(1),
        ]
        .concat();
        schema.check_datum(&good, BOUNDS).unwrap();
        let mut left_over = good.clone();
        left_over.push(0);
        assert!(schema.check_datum(&left_over, BOUNDS).is_err());
        let string_too_long: Vec<u8> = [zigzag(1 << 40), b"hi".to_vec()].concat();
        assert!(schema.check_datum(&string_too_long, BOUNDS).is_err());
        let bad_enum: Vec<u8> = [zigzag(0), zigzag(0), zigzag(7)].concat();
        assert!(schema.check_datum(&bad_enum, BOUNDS).is_err());
        assert!(schema.check_datum(&[0xff; 11], BOUNDS).is_err());
        assert!(schema.check_datum(&[], BOUNDS).is_err());
    }

    #[test]
    fn nesting_past_the_depth_bound_is_refused() {
        let mut text = r#""long""#.to_owned();
        for _ in 0..20 {
            text = format!(r#"{{"type":"array","items":{text}}}"#);
        }
        let err = checked(&text).err().expect("refused");
        assert!(err.to_string().contains("deeper"), "{err}");
    }
}

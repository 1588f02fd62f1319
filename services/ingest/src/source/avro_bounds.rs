//! Bounds on decoding an Avro record from a source topic, checked before anything is decoded.
//!
//! Avro's binary encoding lets a few bytes ask for a great deal: an array block header says
//! how many items follow, and items of type `null` take no bytes, so a 20-byte record can
//! claim billions of values; a schema that refers to itself lets nesting go as deep as the
//! bytes allow. The decoder allocates for what is claimed. So a record is first walked
//! against its schema without allocating, counting values and depth, and refused past the
//! bounds; a schema that refers to itself is refused when it is fetched.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, Name, UuidSchema};

use super::record::Rejection;

/// How much one record may decode to.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Values of any kind (each array item, map entry, field and scalar counts one).
    pub max_values: u64,
    /// Nesting of records, arrays, maps and unions.
    pub max_depth: usize,
}

impl Bounds {
    /// Bounds matching an event payload of at most `max_payload_bytes` of JSON, where every
    /// value takes at least a byte.
    pub fn for_payload(max_payload_bytes: usize) -> Self {
        Self {
            max_values: max_payload_bytes as u64,
            max_depth: 64,
        }
    }
}

/// The named types a schema defines, by full name.
fn definitions(schema: &Schema) -> HashMap<Name, &Schema> {
    fn collect<'s>(schema: &'s Schema, out: &mut HashMap<Name, &'s Schema>) {
        match schema {
            Schema::Record(record) if out.insert(record.name.clone(), schema).is_none() => {
                for field in &record.fields {
                    collect(&field.schema, out);
                }
            }
            Schema::Enum(e) => {
                out.insert(e.name.clone(), schema);
            }
            Schema::Fixed(f) | Schema::Duration(f) => {
                out.insert(f.name.clone(), schema);
            }
            Schema::Array(array) => collect(&array.items, out),
            Schema::Map(map) => collect(&map.types, out),
            Schema::Union(union) => {
                for variant in union.variants() {
                    collect(variant, out);
                }
            }
            _ => {}
        }
    }
    let mut out = HashMap::new();
    collect(schema, &mut out);
    out
}

/// Refuses a schema in which a record contains itself, directly or through other types: its
/// records could nest as deep as the bytes allow.
pub fn check_schema(schema: &Schema) -> Result<(), Rejection> {
    fn visit<'s>(
        schema: &'s Schema,
        defined: &HashMap<Name, &'s Schema>,
        open: &mut Vec<&'s Name>,
    ) -> Result<(), Rejection> {
        match schema {
            Schema::Record(record) => {
                if open.contains(&&record.name) {
                    return Err(refers_to_itself(&record.name));
                }
                open.push(&record.name);
                for field in &record.fields {
                    visit(&field.schema, defined, open)?;
                }
                open.pop();
                Ok(())
            }
            Schema::Ref { name } => {
                if open.contains(&name) {
                    return Err(refers_to_itself(name));
                }
                match defined.get(name) {
                    Some(target) => visit(target, defined, open),
                    None => Err(Rejection::new(format!(
                        "the schema names {name} without defining it"
                    ))),
                }
            }
            Schema::Array(array) => visit(&array.items, defined, open),
            Schema::Map(map) => visit(&map.types, defined, open),
            Schema::Union(union) => union
                .variants()
                .iter()
                .try_for_each(|variant| visit(variant, defined, open)),
            _ => Ok(()),
        }
    }
    let defined = definitions(schema);
    visit(schema, &defined, &mut Vec::new())
}

fn refers_to_itself(name: &Name) -> Rejection {
    Rejection::new(format!(
        "the schema's record {name} contains itself: records that nest without end are not accepted"
    ))
}

/// Walks `datum` as written with `schema` (checked by [`check_schema`]) and refuses it if it
/// is malformed or decodes past `bounds`. Allocates nothing for the values.
pub fn check_datum(schema: &Schema, datum: &[u8], bounds: Bounds) -> Result<(), Rejection> {
    let defined = definitions(schema);
    let mut walk = Walk {
        bytes: datum,
        defined: &defined,
        values_left: bounds.max_values,
        max_depth: bounds.max_depth,
    };
    walk.value(schema, 0)
}

struct Walk<'d, 's> {
    bytes: &'d [u8],
    defined: &'s HashMap<Name, &'s Schema>,
    values_left: u64,
    max_depth: usize,
}

impl Walk<'_, '_> {
    fn count(&mut self, values: u64) -> Result<(), Rejection> {
        self.values_left = self.values_left.checked_sub(values).ok_or_else(|| {
            Rejection::new("the record decodes to more values than an event may hold")
        })?;
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

    fn length(&mut self) -> Result<usize, Rejection> {
        let length = self.long()?;
        usize::try_from(length)
            .ok()
            .filter(|n| *n <= self.bytes.len())
            .ok_or_else(|| Rejection::new(format!("a length of {length} does not fit the record")))
    }

    fn value(&mut self, schema: &Schema, depth: usize) -> Result<(), Rejection> {
        if depth > self.max_depth {
            return Err(Rejection::new(format!(
                "the record nests deeper than {} levels",
                self.max_depth
            )));
        }
        self.count(1)?;
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
            Schema::Bytes | Schema::String | Schema::BigDecimal => {
                let n = self.length()?;
                self.take(n)
            }
            Schema::Uuid(UuidSchema::Fixed(fixed)) => self.take(fixed.size),
            Schema::Uuid(_) => {
                let n = self.length()?;
                self.take(n)
            }
            Schema::Decimal(decimal) => match &decimal.inner {
                InnerDecimalSchema::Fixed(fixed) => self.take(fixed.size),
                InnerDecimalSchema::Bytes => {
                    let n = self.length()?;
                    self.take(n)
                }
            },
            Schema::Fixed(fixed) | Schema::Duration(fixed) => self.take(fixed.size),
            Schema::Enum(e) => {
                let index = self.long()?;
                if usize::try_from(index).is_ok_and(|i| i < e.symbols.len()) {
                    Ok(())
                } else {
                    Err(Rejection::new(format!("enum index {index} out of range")))
                }
            }
            Schema::Union(union) => {
                let index = self.long()?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| union.variants().get(i))
                    .ok_or_else(|| Rejection::new(format!("union index {index} out of range")))?;
                self.value(variant, depth + 1)
            }
            Schema::Record(record) => record
                .fields
                .iter()
                .try_for_each(|field| self.value(&field.schema, depth + 1)),
            Schema::Array(array) => self.blocks(depth, |walk| walk.value(&array.items, depth + 1)),
            Schema::Map(map) => self.blocks(depth, |walk| {
                let n = walk.length()?;
                walk.take(n)?;
                walk.value(&map.types, depth + 1)
            }),
            Schema::Ref { name } => {
                let target = *self.defined.get(name).ok_or_else(|| {
                    Rejection::new(format!("the schema names {name} without defining it"))
                })?;
                // Counted once, as the value it names.
                self.values_left += 1;
                self.value(target, depth)
            }
        }
    }

    /// Array and map items come in blocks, each a count (negative: followed by its size in
    /// bytes), until a count of zero. The count is held against the bounds before any item.
    fn blocks(
        &mut self,
        depth: usize,
        mut item: impl FnMut(&mut Self) -> Result<(), Rejection>,
    ) -> Result<(), Rejection> {
        if depth + 1 > self.max_depth {
            return Err(Rejection::new(format!(
                "the record nests deeper than {} levels",
                self.max_depth
            )));
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
            if count > self.values_left {
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
        max_values: 1_000,
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

    #[test]
    fn a_few_bytes_claiming_billions_of_nulls_are_refused_before_decoding() {
        let schema =
            Schema::parse_str(r#"{"type":"array","items":{"type":"array","items":"null"}}"#)
                .unwrap();
        check_schema(&schema).unwrap();
        // Four inner arrays of ten million nulls: 20-odd bytes.
        let mut datum = zigzag(4);
        for _ in 0..4 {
            datum.extend(zigzag(10_000_000));
            datum.extend(zigzag(0));
        }
        datum.extend(zigzag(0));
        assert!(datum.len() < 32);
        let err = check_datum(&schema, &datum, BOUNDS).unwrap_err();
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
        check_datum(&schema, &small, BOUNDS).unwrap();
    }

    #[test]
    fn schemas_that_contain_themselves_are_refused() {
        let direct = Schema::parse_str(
            r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#,
        )
        .unwrap();
        assert!(check_schema(&direct).is_err());
        let indirect = Schema::parse_str(
            r#"{"type":"record","name":"A","fields":[{"name":"b","type":
                {"type":"record","name":"B","fields":[{"name":"a","type":{"type":"array","items":"A"}}]}}]}"#,
        )
        .unwrap();
        assert!(check_schema(&indirect).is_err());
        // A named type used twice is not recursion.
        let reused = Schema::parse_str(
            r#"{"type":"record","name":"Pair","fields":[
                {"name":"x","type":{"type":"record","name":"P","fields":[{"name":"v","type":"long"}]}},
                {"name":"y","type":"P"}]}"#,
        )
        .unwrap();
        check_schema(&reused).unwrap();
        let datum: Vec<u8> = [zigzag(1), zigzag(2)].concat();
        check_datum(&reused, &datum, BOUNDS).unwrap();
    }

    #[test]
    fn malformed_and_oversized_datums_are_refused() {
        let schema = Schema::parse_str(
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
        check_datum(&schema, &good, BOUNDS).unwrap();
        let string_too_long: Vec<u8> = [zigzag(1 << 40), b"hi".to_vec()].concat();
        assert!(check_datum(&schema, &string_too_long, BOUNDS).is_err());
        let bad_enum: Vec<u8> = [zigzag(0), zigzag(0), zigzag(7)].concat();
        assert!(check_datum(&schema, &bad_enum, BOUNDS).is_err());
        assert!(check_datum(&schema, &[0xff; 11], BOUNDS).is_err());
        assert!(check_datum(&schema, &[], BOUNDS).is_err());
    }

    #[test]
    fn nesting_past_the_depth_bound_is_refused() {
        let mut text = r#""long""#.to_owned();
        for _ in 0..20 {
            text = format!(r#"{{"type":"array","items":{text}}}"#);
        }
        let schema = Schema::parse_str(&text).unwrap();
        let mut datum = Vec::new();
        for _ in 0..20 {
            datum.extend(zigzag(1));
        }
        datum.extend(zigzag(3));
        for _ in 0..20 {
            datum.extend(zigzag(0));
        }
        let err = check_datum(&schema, &datum, BOUNDS).unwrap_err();
        assert!(err.to_string().contains("deeper"), "{err}");
    }
}

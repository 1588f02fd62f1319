//! Where the ScyllaDB store lives: the `scylla://` location.

/// Where and how to reach ScyllaDB, from `scylla://host[:port][,host…]/keyspace[?replication_factor=N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaLocation {
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// Replicas per datacenter when the store creates the keyspace (an existing keyspace is
    /// left as it is).
    pub replication_factor: u32,
}

impl ScyllaLocation {
    /// Parses what follows `scylla://`.
    pub fn parse(rest: &str) -> Result<Self, String> {
        let (hosts, path) = rest
            .split_once('/')
            .ok_or("expected scylla://HOST[:PORT][,HOST…]/KEYSPACE")?;
        let (keyspace, query) = path.split_once('?').unwrap_or((path, ""));
        let valid_keyspace = !keyspace.is_empty()
            && keyspace.len() <= 48
            && keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && keyspace.starts_with(|c: char| c.is_ascii_alphabetic());
        if !valid_keyspace {
            return Err(format!(
                "`{keyspace}` is not a keyspace name (a letter, then letters, digits or _; at most 48)"
            ));
        }
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                // A bare host (or a bracketed IPv6 address) gets the CQL port.
                if h.rsplit_once(':')
                    .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
                    && !h.ends_with(']')
                {
                    h.to_owned()
                } else {
                    format!("{h}:9042")
                }
            })
            .collect();
        if nodes.is_empty() {
            return Err("name at least one node".into());
        }
        let mut replication_factor = 3;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("replication_factor", n)) => {
                    replication_factor = n
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or(format!("replication_factor `{n}` is not a positive number"))?;
                }
                _ => {
                    return Err(format!(
                        "unknown option `{pair}`; known: replication_factor"
                    ));
                }
            }
        }
        Ok(Self {
            nodes,
            keyspace: keyspace.to_owned(),
            replication_factor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_nodes_keyspace_and_replication() {
        let l = ScyllaLocation::parse("db1,db2:19042/hookstream?replication_factor=1").unwrap();
        assert_eq!(l.nodes, vec!["db1:9042", "db2:19042"]);
        assert_eq!(l.keyspace, "hookstream");
        assert_eq!(l.replication_factor, 1);
        assert_eq!(
            ScyllaLocation::parse("127.0.0.1/hs")
                .unwrap()
                .replication_factor,
            3
        );
        for bad in [
            "db1",
            "/hookstream",
            "db1/",
            "db1/1st",
            "db1/hs;DROP",
            "db1/hs?replication_factor=0",
            "db1/hs?consistency=one",
        ] {
            assert!(ScyllaLocation::parse(bad).is_err(), "{bad} accepted");
        }
    }
}

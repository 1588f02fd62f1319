//! Which tier topics the retry tier reads: its schedule's, and every other one there is, so a
//! delay removed from the schedule is still drained and a tier a newer dispatcher writes to is
//! read whatever this instance's schedule says.

use std::time::Duration;

/// A tier: its name (the topic's suffix) and its delay.
pub type Tier = (String, Duration);

/// A tier topic left unread: its name and why.
pub type Unread = (String, String);

/// The schedule's tiers, then each existing tier (by name) not among them whose name reads as
/// a delay; the names that do not, with the reason, to be warned about and left unread.
pub fn tiers_to_read(schedule: Vec<Tier>, existing: Vec<String>) -> (Vec<Tier>, Vec<Unread>) {
    let mut read = schedule;
    let mut unread = Vec::new();
    for name in existing {
        if read.iter().any(|(known, _)| *known == name) {
            continue;
        }
        // Any duration a tier name says, without the schedule's 30-day bound: an older build
        // may have written a longer tier, and its tasks are drained all the same.
        match hookstream_kafka::parse_duration(&name) {
            Ok(delay) if delay.subsec_nanos() % 1_000_000 == 0 => read.push((name, delay)),
            Ok(_) => unread.push((name, "not a whole number of milliseconds".to_owned())),
            Err(reason) => unread.push((name, reason)),
        }
    }
    (read, unread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_existing_tier_is_read_once_and_odd_names_are_left() {
        let schedule = vec![
            ("1s".to_owned(), Duration::from_secs(1)),
            ("5s".to_owned(), Duration::from_secs(5)),
        ];
        let existing = ["1000h", "1s", "2m", "5s", "5s.old", "backup"]
            .map(str::to_owned)
            .to_vec();
        let (read, unread) = tiers_to_read(schedule, existing);
        assert_eq!(
            read,
            vec![
                ("1s".to_owned(), Duration::from_secs(1)),
                ("5s".to_owned(), Duration::from_secs(5)),
                ("1000h".to_owned(), Duration::from_secs(1000 * 3600)),
                ("2m".to_owned(), Duration::from_secs(120)),
            ]
        );
        let unread: Vec<&str> = unread.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(unread, ["5s.old", "backup"]);
    }
}

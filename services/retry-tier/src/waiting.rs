//! Which tasks are waiting, per partition, which are due, and which partitions to pause or
//! resume. Pure bookkeeping, no Kafka.

use std::collections::{HashMap, VecDeque};

use time::OffsetDateTime;

/// A topic partition.
pub type Partition = (String, i32);

/// A task read from a tier topic and not yet forwarded.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub due_at: OffsetDateTime,
    /// The retry hop's trace span: open from the read to the forward, in the delivery's trace.
    pub hop: tracing::Span,
}

/// Two waiting tasks are the same task whatever their spans.
impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.offset, &self.key, &self.payload, self.due_at)
            == (other.offset, &other.key, &other.payload, other.due_at)
    }
}

impl Waiting {
    /// Memory the task holds while it waits (with a rough allowance for the bookkeeping).
    fn bytes(&self) -> usize {
        self.payload.len() + self.key.as_ref().map_or(0, Vec::len) + 64
    }
}

/// The most a retry delay is stretched by jitter (the policy refuses more).
const MAX_JITTER: f64 = 0.5;

/// The due time a task read from a tier is held to: the one it carries, but no later than its
/// tier's delay (stretched by the most jitter allowed) after it was written. A task written with
/// an absurd due time (by a dispatcher from before Retry-After was capped) would otherwise hold
/// every task behind it on its partition for as long, and outlive the topic's retention.
pub fn held_due(
    due_at: OffsetDateTime,
    written: Option<OffsetDateTime>,
    tier_delay: Option<std::time::Duration>,
) -> OffsetDateTime {
    match (written, tier_delay) {
        (Some(written), Some(delay)) => due_at.min(written + delay.mul_f64(1.0 + MAX_JITTER)),
        _ => due_at,
    }
}

/// The due time of a task this build cannot read (written with a newer schema during a rolling
/// upgrade, or not a task at all): its tier's delay after it was written, so a newer
/// dispatcher's retries still wait; at once when either is unknown (the dispatcher then reads
/// it, or quarantines it).
pub fn unreadable_due(
    written: Option<OffsetDateTime>,
    tier_delay: Option<std::time::Duration>,
) -> OffsetDateTime {
    match (written, tier_delay) {
        (Some(written), Some(delay)) => written + delay,
        _ => OffsetDateTime::UNIX_EPOCH,
    }
}

/// How far ahead of the clock the room reads, and how much it may hold.
///
/// Reading ahead is what keeps releases on time: if a partition paused as soon as its head was
/// not due, every task would wait for a resume and a fresh fetch after its due time.
#[derive(Debug, Clone, Copy)]
pub struct ReadAhead {
    /// Tasks due within this window are read before they are due. A partition whose newest task
    /// is due later pauses until that task is half as close: the gap keeps pause and resume from
    /// alternating at every task (each pause drops what the client had prefetched).
    pub window: time::Duration,
    /// The room pauses every partition it reads while it holds more than this many bytes.
    pub max_bytes: usize,
}

impl ReadAhead {
    fn resume_within(&self) -> time::Duration {
        self.window / 2
    }
}

/// What to do with a task just read.
#[derive(Debug, PartialEq)]
pub enum Admission {
    /// Due, with nothing ahead of it: forward it now.
    ForwardNow(Waiting),
    /// Queued behind its partition's head or until due; pause the partition if asked.
    Held { pause: bool },
}

/// What a look at the clock released.
#[derive(Debug, Default, PartialEq)]
pub struct Release {
    /// Due tasks, head first per partition.
    pub due: Vec<(Partition, Waiting)>,
    /// Paused partitions to read again.
    pub resume: Vec<Partition>,
}

#[derive(Debug, Default)]
struct Queue {
    tasks: VecDeque<Waiting>,
    paused: bool,
}

/// The tasks waiting in each partition, in offset order.
///
/// A tier topic is FIFO by due time (jitter lets a later task be a little earlier; it then waits
/// for the head, late by at most the jitter), so only each partition's head is watched.
#[derive(Debug)]
pub struct WaitingRoom {
    read_ahead: ReadAhead,
    partitions: HashMap<Partition, Queue>,
    bytes: usize,
}

impl WaitingRoom {
    pub fn new(read_ahead: ReadAhead) -> Self {
        Self {
            read_ahead,
            partitions: HashMap::new(),
            bytes: 0,
        }
    }

    /// Takes a task just read from `partition`.
    pub fn admit(&mut self, partition: Partition, task: Waiting, now: OffsetDateTime) -> Admission {
        let ahead_of_it = self
            .partitions
            .get(&partition)
            .is_some_and(|q| !q.tasks.is_empty());
        if task.due_at <= now && !ahead_of_it {
            return Admission::ForwardNow(task);
        }
        let beyond_window = task.due_at > now + self.read_ahead.window;
        self.bytes += task.bytes();
        let over_budget = self.bytes > self.read_ahead.max_bytes;
        let queue = self.partitions.entry(partition).or_default();
        queue.tasks.push_back(task);
        let pause = !queue.paused && (beyond_window || over_budget);
        queue.paused |= pause;
        Admission::Held { pause }
    }

    /// When to look at the clock again: the earliest head coming due, or a paused partition's
    /// newest task coming into the read-ahead window.
    pub fn next_wake(&self) -> Option<OffsetDateTime> {
        self.partitions
            .values()
            .flat_map(|q| {
                let head = q.tasks.front().map(|t| t.due_at);
                let resume = q
                    .tasks
                    .back()
                    .filter(|_| q.paused)
                    .map(|t| t.due_at - self.read_ahead.resume_within());
                head.into_iter().chain(resume)
            })
            .min()
    }

    /// Takes every task due at `now` and the paused partitions to read again.
    pub fn take_due(&mut self, now: OffsetDateTime) -> Release {
        let mut release = Release::default();
        for (partition, queue) in &mut self.partitions {
            while queue.tasks.front().is_some_and(|t| t.due_at <= now) {
                if let Some(task) = queue.tasks.pop_front() {
                    self.bytes -= task.bytes();
                    release.due.push((partition.clone(), task));
                }
            }
        }
        let horizon = now + self.read_ahead.resume_within();
        let within_budget = self.bytes <= self.read_ahead.max_bytes;
        for (partition, queue) in &mut self.partitions {
            let newest_is_close = queue.tasks.back().is_none_or(|t| t.due_at <= horizon);
            if queue.paused && newest_is_close && within_budget {
                queue.paused = false;
                release.resume.push(partition.clone());
            }
        }
        self.partitions
            .retain(|_, q| q.paused || !q.tasks.is_empty());
        release
    }

    /// Forgets a revoked partition's tasks: they are not committed, so the next owner reads them.
    pub fn forget(&mut self, partition: &Partition) {
        if let Some(queue) = self.partitions.remove(partition) {
            self.bytes -= queue.tasks.iter().map(Waiting::bytes).sum::<usize>();
        }
    }

    /// Tasks waiting over every partition of `topic`.
    pub fn len_of(&self, topic: &str) -> usize {
        self.partitions
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|(_, q)| q.tasks.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_due_time_past_its_tiers_delay_is_held_to_it() {
        let written = at(100);
        let minute = std::time::Duration::from_secs(60);
        assert_eq!(held_due(at(130), Some(written), Some(minute)), at(130));
        let year_9999 = OffsetDateTime::from_unix_timestamp(253_370_764_800).unwrap();
        assert_eq!(held_due(year_9999, Some(written), Some(minute)), at(190));
        assert_eq!(held_due(year_9999, None, Some(minute)), year_9999);
        assert_eq!(held_due(year_9999, Some(written), None), year_9999);
    }

    #[test]
    fn a_task_this_build_cannot_read_waits_its_tiers_delay() {
        let written = at(100);
        let minute = std::time::Duration::from_secs(60);
        assert_eq!(unreadable_due(Some(written), Some(minute)), at(160));
        assert_eq!(unreadable_due(None, Some(minute)), at(0));
        assert_eq!(unreadable_due(Some(written), None), at(0));
    }

    fn task(offset: i64, due: u64) -> Waiting {
        Waiting {
            offset,
            key: None,
            payload: vec![],
            due_at: at(due),
            hop: tracing::Span::none(),
        }
    }

    fn room(window_seconds: i64, max_bytes: usize) -> WaitingRoom {
        WaitingRoom::new(ReadAhead {
            window: time::Duration::seconds(window_seconds),
            max_bytes,
        })
    }

    fn offsets(release: &Release) -> Vec<i64> {
        release.due.iter().map(|(_, t)| t.offset).collect()
    }

    #[test]
    fn a_due_task_with_nothing_ahead_goes_at_once() {
        let mut room = room(2, 1 << 20);
        let p = ("retry.5s".to_owned(), 0);
        assert_eq!(
            room.admit(p, task(1, 100), at(100)),
            Admission::ForwardNow(task(1, 100))
        );
        assert_eq!(room.len_of("retry.5s"), 0);
        assert_eq!(room.next_wake(), None);
    }

    #[test]
    fn tasks_within_the_window_are_read_ahead_without_pausing() {
        let mut room = room(2, 1 << 20);
        let p = ("retry.5s".to_owned(), 0);
        assert_eq!(
            room.admit(p.clone(), task(1, 101), at(100)),
            Admission::Held { pause: false }
        );
        assert_eq!(
            room.admit(p.clone(), task(2, 102), at(100)),
            Admission::Held { pause: false }
        );
        assert_eq!(room.next_wake(), Some(at(101)));
        assert_eq!(offsets(&room.take_due(at(101))), vec![1]);
        assert_eq!(offsets(&room.take_due(at(102))), vec![2]);
        assert_eq!(room.len_of("retry.5s"), 0);
    }

    #[test]
    fn a_task_beyond_the_window_pauses_until_it_comes_close() {
        let mut room = room(2, 1 << 20);
        let p = ("retry.5s".to_owned(), 0);
        room.admit(p.clone(), task(1, 101), at(100));
        assert_eq!(
            room.admit(p.clone(), task(2, 110), at(100)),
            Admission::Held { pause: true }
        );
        // Already paused: a prefetched task behind it asks nothing more.
        assert_eq!(
            room.admit(p.clone(), task(3, 111), at(100)),
            Admission::Held { pause: false }
        );
        assert_eq!(room.next_wake(), Some(at(101)));

        let release = room.take_due(at(101));
        assert_eq!(offsets(&release), vec![1]);
        assert!(release.resume.is_empty(), "the newest task is 10 s away");
        // The newest task (111) comes half the window (1 s) close at 110.
        assert_eq!(room.next_wake(), Some(at(110)));
        assert!(room.take_due(at(109)).resume.is_empty());

        let release = room.take_due(at(110));
        assert_eq!(offsets(&release), vec![2]);
        assert_eq!(release.resume, vec![p.clone()]);
        assert_eq!(room.next_wake(), Some(at(111)));
        assert_eq!(offsets(&room.take_due(at(111))), vec![3]);
        assert_eq!(room.len_of("retry.5s"), 0);
    }

    #[test]
    fn the_byte_budget_pauses_reading_until_tasks_leave() {
        let mut room = room(60, 200);
        let p0 = ("retry.5s".to_owned(), 0);
        let p1 = ("retry.5s".to_owned(), 1);
        let big = |offset, due| Waiting {
            payload: vec![0; 100],
            ..task(offset, due)
        };
        assert_eq!(
            room.admit(p0.clone(), big(1, 101), at(100)),
            Admission::Held { pause: false }
        );
        assert_eq!(
            room.admit(p1.clone(), big(1, 102), at(100)),
            Admission::Held { pause: true }
        );
        let release = room.take_due(at(101));
        assert_eq!(release.due.len(), 1);
        assert_eq!(release.resume, vec![p1.clone()]);
    }

    #[test]
    fn a_task_behind_a_later_head_waits_for_it() {
        let mut room = room(2, 1 << 20);
        let p = ("retry.5s".to_owned(), 0);
        room.admit(p.clone(), task(1, 110), at(100));
        room.admit(p.clone(), task(2, 108), at(100)); // jitter made it a little earlier
        assert!(
            room.take_due(at(109)).due.is_empty(),
            "the head is not due, so nothing behind it goes"
        );
        assert_eq!(offsets(&room.take_due(at(110))), vec![1, 2]);
    }

    #[test]
    fn a_due_task_behind_a_waiting_head_keeps_its_place() {
        let mut room = room(2, 1 << 20);
        let p = ("retry.5s".to_owned(), 0);
        room.admit(p.clone(), task(1, 101), at(100));
        assert_eq!(
            room.admit(p.clone(), task(2, 99), at(100)),
            Admission::Held { pause: false }
        );
        assert_eq!(offsets(&room.take_due(at(101))), vec![1, 2]);
    }

    #[test]
    fn a_revoked_partition_is_forgotten() {
        let mut room = room(2, 1 << 20);
        let p = ("retry.5s".to_owned(), 0);
        room.admit(p.clone(), task(1, 110), at(100));
        room.forget(&p);
        assert_eq!(room.len_of("retry.5s"), 0);
        assert_eq!(room.next_wake(), None);
        assert_eq!(room.bytes, 0);
    }
}

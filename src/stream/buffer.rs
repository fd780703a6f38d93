//! The replay buffer: what has been produced and not yet confirmed, in stream order.
//!
//! Audio packets and events wait here from the moment they are produced until the
//! receiver acknowledges them (resume extension) or, without acknowledgements, until
//! they are sent and no longer part of the current utterance. A connection sends from a
//! cursor; a reconnect moves the cursor back (to what the receiver says it holds, or to
//! the start of the utterance). The buffer holds at most a configured amount of audio:
//! past it the oldest goes, and what had never been sent is counted as dropped.

use std::collections::VecDeque;

/// One thing to send, at its place in the stream.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Item {
    /// PCM16 samples starting at stream offset `start`.
    Audio { start: u64, samples: Vec<i16> },
    /// A non-audio message that follows the audio before `position`.
    Event { position: u64, event: StreamItem },
}

/// The non-audio messages a stream carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StreamItem {
    SpeechStarted(u64),
    SpeechStopped(u64),
    Commit,
    /// OpenAI `response.create`, after a commit when the caller plays the answers.
    ResponseCreate,
    Clear,
    Stop,
}

impl Item {
    fn samples(&self) -> u64 {
        match self {
            Item::Audio { samples, .. } => samples.len() as u64,
            Item::Event { .. } => 0,
        }
    }

    /// Stream offset just past this item's audio (an event's position).
    fn end(&self) -> u64 {
        match self {
            Item::Audio { start, samples } => start + samples.len() as u64,
            Item::Event { position, .. } => *position,
        }
    }
}

/// The replay buffer. Positions are stream sample offsets.
#[derive(Debug)]
pub(crate) struct ReplayBuffer {
    items: VecDeque<Item>,
    /// Index of the next item to send.
    cursor: usize,
    /// Samples of `items[cursor]` already sent (when it is audio).
    skip: usize,
    capacity: u64,
    held: u64,
    end: u64,
    /// Items before this index have been sent at least once.
    sent_upto: usize,
    /// Audio never sent that overflow removed.
    dropped_unsent: u64,
}

impl ReplayBuffer {
    /// A buffer holding at most `capacity` samples.
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            items: VecDeque::new(),
            cursor: 0,
            skip: 0,
            capacity: capacity.max(1),
            held: 0,
            end: 0,
            sent_upto: 0,
            dropped_unsent: 0,
        }
    }

    /// Stream offset after the last audio.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Stream offset of the oldest audio still held (or `end` if none).
    pub(crate) fn first_audio(&self) -> u64 {
        self.items
            .iter()
            .find_map(|i| match i {
                Item::Audio { start, .. } => Some(*start),
                Item::Event { .. } => None,
            })
            .unwrap_or(self.end)
    }

    /// Samples held.
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    /// Audio removed by overflow before it was ever sent.
    pub(crate) fn dropped_unsent(&self) -> u64 {
        self.dropped_unsent
    }

    /// Whether everything has been sent.
    pub(crate) fn all_sent(&self) -> bool {
        self.cursor >= self.items.len()
    }

    /// Appends audio; returns the samples overflow removed (oldest first).
    pub(crate) fn push_audio(&mut self, samples: Vec<i16>) -> u64 {
        if samples.is_empty() {
            return 0;
        }
        let n = samples.len() as u64;
        self.items.push_back(Item::Audio {
            start: self.end,
            samples,
        });
        self.end += n;
        self.held += n;
        let mut removed = 0;
        while self.held > self.capacity {
            match self.pop_front() {
                Some(item) => removed += item.samples(),
                None => break,
            }
        }
        removed
    }

    /// Appends an event after the audio so far.
    pub(crate) fn push_event(&mut self, event: StreamItem) {
        self.items.push_back(Item::Event {
            position: self.end,
            event,
        });
    }

    fn pop_front(&mut self) -> Option<Item> {
        let item = self.items.pop_front()?;
        self.held -= item.samples();
        if self.sent_upto == 0 {
            self.dropped_unsent += item.samples();
        }
        if self.cursor == 0 {
            // The cursor sat on this item: it resumes at the next one, from its start.
            self.skip = 0;
        }
        self.cursor = self.cursor.saturating_sub(1);
        self.sent_upto = self.sent_upto.saturating_sub(1);
        Some(item)
    }

    /// Forgets what the receiver holds: sent audio ending at or before `received`, and
    /// sent events before it (audio after an event arrived, so the event did too).
    pub(crate) fn ack(&mut self, received: u64) {
        while self.sent_upto > 0 && self.front_before(received) {
            self.forget_front();
        }
    }

    /// Forgets sent items before stream offset `keep_from` (no acknowledgements: only
    /// the current utterance is kept for replay), as `ack` does but only up to the
    /// cursor. An event at `keep_from` stays: it belongs to what is kept.
    pub(crate) fn forget_sent_before(&mut self, keep_from: u64) {
        while self.cursor > 0 && self.front_before(keep_from) {
            self.forget_front();
        }
    }

    /// Whether the first item lies wholly before stream offset `offset`: audio ending at
    /// or before it, an event before it.
    fn front_before(&self, offset: u64) -> bool {
        match self.items.front() {
            Some(first @ Item::Audio { .. }) => first.end() <= offset,
            Some(Item::Event { position, .. }) => *position < offset,
            None => false,
        }
    }

    /// Removes the first item, which has been sent.
    fn forget_front(&mut self) {
        if let Some(item) = self.items.pop_front() {
            self.held -= item.samples();
        }
        if self.cursor == 0 {
            self.skip = 0;
        }
        self.cursor = self.cursor.saturating_sub(1);
        self.sent_upto = self.sent_upto.saturating_sub(1);
    }

    /// Moves the cursor to stream offset `from`: the next `next()` starts there (events at
    /// or after it included). Returns the offset actually resumed from (the oldest
    /// audio held, if `from` is older than that).
    pub(crate) fn rewind(&mut self, from: u64) -> u64 {
        // What is no longer held cannot be resent.
        let from = from.max(self.first_audio());
        let mut index = self.items.len();
        let mut skip = 0;
        for (i, item) in self.items.iter().enumerate() {
            match item {
                Item::Audio { start, samples } => {
                    if start + samples.len() as u64 > from {
                        index = i;
                        skip = from.saturating_sub(*start) as usize;
                        break;
                    }
                }
                Item::Event { position, .. } => {
                    if *position >= from {
                        index = i;
                        break;
                    }
                }
            }
        }
        self.cursor = index;
        self.skip = skip;
        from
    }

    /// The next thing to send, advancing the cursor; audio comes with its stream offset
    /// (trimmed when the cursor was placed inside a packet) and whether it is a resend.
    pub(crate) fn next(&mut self) -> Option<(Item, bool)> {
        let item = self.items.get(self.cursor)?;
        let resend = self.cursor < self.sent_upto;
        let out = match item {
            Item::Audio { start, samples } => Item::Audio {
                start: start + self.skip as u64,
                samples: samples[self.skip..].to_vec(),
            },
            other => other.clone(),
        };
        self.cursor += 1;
        self.skip = 0;
        self.sent_upto = self.sent_upto.max(self.cursor);
        Some((out, resend))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(n: usize, v: i16) -> Vec<i16> {
        vec![v; n]
    }

    fn drain(b: &mut ReplayBuffer) -> Vec<(Item, bool)> {
        std::iter::from_fn(|| b.next()).collect()
    }

    #[test]
    fn sends_in_order_and_frees_what_is_acknowledged() {
        let mut b = ReplayBuffer::new(1_000);
        b.push_audio(audio(10, 1));
        b.push_event(StreamItem::SpeechStarted(5));
        b.push_audio(audio(10, 2));
        let sent = drain(&mut b);
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|(_, resend)| !resend));
        assert!(b.all_sent());
        b.ack(10);
        assert_eq!(b.held(), 10);
        b.ack(20);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn rewinding_resends_from_inside_a_packet() {
        let mut b = ReplayBuffer::new(1_000);
        b.push_audio((0..10).collect());
        b.push_audio((10..20).collect());
        drain(&mut b);
        assert_eq!(b.rewind(13), 13);
        let (item, resend) = b.next().unwrap();
        assert!(resend);
        assert_eq!(
            item,
            Item::Audio {
                start: 13,
                samples: (13..20).collect()
            }
        );
        assert!(b.next().is_none());
    }

    #[test]
    fn overflow_drops_the_oldest_and_counts_what_was_never_sent() {
        let mut b = ReplayBuffer::new(25);
        b.push_audio(audio(10, 1));
        b.next();
        b.push_audio(audio(10, 2));
        b.push_audio(audio(10, 3)); // 30 > 25: the sent packet goes first
        assert_eq!(b.dropped_unsent(), 0);
        b.push_audio(audio(10, 4)); // the unsent second packet goes
        assert_eq!(b.dropped_unsent(), 10);
        assert_eq!(b.first_audio(), 20);
        let rest: Vec<u64> = drain(&mut b)
            .into_iter()
            .map(|(i, _)| match i {
                Item::Audio { start, .. } => start,
                Item::Event { .. } => u64::MAX,
            })
            .collect();
        assert_eq!(rest, [20, 30]);
    }

    #[test]
    fn without_acks_only_the_current_utterance_is_kept() {
        let mut b = ReplayBuffer::new(1_000);
        b.push_audio(audio(10, 1));
        b.push_audio(audio(10, 2));
        b.push_audio(audio(10, 3));
        drain(&mut b);
        b.forget_sent_before(15);
        assert_eq!(b.first_audio(), 10);
        assert_eq!(b.rewind(15), 15);
        assert_eq!(drain(&mut b).len(), 2);
    }

    #[test]
    fn without_acks_sent_events_are_forgotten_too() {
        let mut b = ReplayBuffer::new(1_000);
        b.push_audio(audio(10, 1));
        b.push_event(StreamItem::Commit);
        b.push_audio(audio(10, 2));
        b.push_event(StreamItem::SpeechStarted(20));
        drain(&mut b);
        // Everything before 20 goes, the event at 20 stays (it opens what is kept).
        b.forget_sent_before(20);
        assert_eq!(b.held(), 0);
        assert_eq!(b.items.len(), 1);
        b.push_audio(audio(10, 3));
        drain(&mut b);
        b.forget_sent_before(30);
        assert_eq!((b.held(), b.items.len()), (0, 0));
    }
}

//! The user end of the kernel programs' event ring buffer (`CHAOS_EVENTS`).
//!
//! One loaded object serves many faults and has one ring, so the ring is read by whichever
//! fault asks first: its own events are handed back, those of other listening faults wait
//! here until they ask, and those of slots nobody listens to any more are dropped.
use std::collections::{BTreeMap, VecDeque};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, RingBuf},
};
use chaos_common::Event;

use crate::Error;

/// The ring buffer map's name.
pub(crate) const EVENTS_MAP: &str = "CHAOS_EVENTS";

/// The environment variable that sizes the ring (bytes; rounded up to a power of two number
/// of pages): a debug knob, used by the tests to make it overflow.
pub const EVENTS_BUFFER_ENV: &str = "CHAOS_EVENTS_BUFFER";

/// How many events wait per rule slot for a listener that reads less often than another;
/// past it they count as lost.
const PENDING_PER_SLOT: usize = 65_536;

/// Sizes the ring of `loader` as [`EVENTS_BUFFER_ENV`] asks, if set.
pub(crate) fn size_ring(loader: &mut EbpfLoader<'_>) -> Result<(), Error> {
    let Ok(raw) = std::env::var(EVENTS_BUFFER_ENV) else {
        return Ok(());
    };
    let bytes: u32 = raw.trim().parse().map_err(|_| Error::Invalid {
        field: EVENTS_BUFFER_ENV,
        value: raw.clone(),
        expected: "a size in bytes, e.g. 4096".to_owned(),
    })?;
    let page = 4096u32;
    let size = bytes.clamp(page, 1 << 30).next_power_of_two();
    loader.map_max_entries(EVENTS_MAP, size);
    Ok(())
}

/// The ring and the events read from it for faults that have not asked yet.
pub(crate) struct EventRing {
    ring: RingBuf<MapData>,
    /// Rule slot -> its events not handed out yet, for the slots that listen.
    pending: BTreeMap<u32, VecDeque<Event>>,
    /// Rule slot -> when (boot clock) its listener started: older events in the ring are an
    /// earlier fault's, whose slot this one reuses.
    since: BTreeMap<u32, u64>,
    /// Rule slot -> events dropped here because `pending` was full.
    overflowed: BTreeMap<u32, u64>,
}

impl EventRing {
    /// Takes the ring out of `ebpf` (the programs keep using it).
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<EventRing, Error> {
        let map = ebpf.take_map(EVENTS_MAP).expect(EVENTS_MAP);
        let Map::RingBuf(data) = map else {
            unreachable!("{EVENTS_MAP} is a ring buffer");
        };
        let ring = RingBuf::try_from(Map::RingBuf(data)).map_err(|source| Error::Map {
            map: EVENTS_MAP,
            source,
        })?;
        Ok(EventRing {
            ring,
            pending: BTreeMap::new(),
            since: BTreeMap::new(),
            overflowed: BTreeMap::new(),
        })
    }

    /// The ring's descriptor, for programs loaded outside aya (fmod_ret).
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.ring)
    }

    /// Starts keeping the events of `slots` (stops with [`EventRing::forget`]).
    pub(crate) fn listen(&mut self, slots: &[u32]) {
        let now = crate::fault::boot_time_ns().unwrap_or(0);
        for slot in slots {
            self.pending.entry(*slot).or_default();
            self.since.entry(*slot).or_insert(now);
        }
    }

    /// Stops keeping the events of `slots` and drops those not read yet.
    pub(crate) fn forget(&mut self, slots: &[u32]) {
        for slot in slots {
            self.pending.remove(slot);
            self.since.remove(slot);
            self.overflowed.remove(slot);
        }
    }

    /// Every event of `slots` so far, oldest first.
    pub(crate) fn drain(&mut self, slots: &[u32]) -> Vec<Event> {
        while let Some(item) = self.ring.next() {
            if item.len() < size_of::<Event>() {
                continue;
            }
            // SAFETY: the kernel writes whole Events (repr(C), plain data) into the ring;
            // the read is unaligned-safe.
            let event = unsafe { item.as_ptr().cast::<Event>().read_unaligned() };
            drop(item);
            let since = self.since.get(&event.slot).copied().unwrap_or(0);
            if let Some(queue) = self.pending.get_mut(&event.slot)
                && event.time_ns >= since
            {
                if queue.len() < PENDING_PER_SLOT {
                    queue.push_back(event);
                } else {
                    *self.overflowed.entry(event.slot).or_default() += 1;
                }
            }
        }
        let mut events = Vec::new();
        for slot in slots {
            if let Some(queue) = self.pending.get_mut(slot) {
                events.extend(queue.drain(..));
            }
        }
        events.sort_by_key(|e| e.time_ns);
        events
    }

    /// Events of `slots` dropped in user space because nobody read them in time.
    pub(crate) fn overflowed(&self, slots: &[u32]) -> u64 {
        slots.iter().filter_map(|s| self.overflowed.get(s)).sum()
    }
}

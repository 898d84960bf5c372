//! The validator's hot path must not allocate: a counting global allocator shows that, after warm-up,
//! checking a long stream (accepts, flags and quarantines alike) allocates only when a profile sketch
//! meets a new extreme and widens its bucket range (rare, and bounded by the bucket cap).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use cambio::quality::{QualityConfig, Validator};
use cambio::tick::{Pair, Source, Tick};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn stream(n: usize) -> Vec<Tick> {
    let pair = Pair::parse("USDMXN").unwrap();
    let sources = [Source::new("oanda").unwrap(), Source::new("lmax").unwrap()];
    let mut state = 0x1234_5678_u64;
    let mut mid = 20.0_f64;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            mid *= 1.0 + u * 2e-4;
            let mut t = Tick {
                pair,
                ts_us: 1_600_000_000_000_000 + i as i64 * 250_000,
                bid: Some(mid * (1.0 - 1e-4)),
                ask: Some(mid * (1.0 + 1e-4)),
                mid: None,
                source: sources[i % 2],
                seq: Some(i as u64 / 2),
                arrival_us: None,
            };
            match i % 97 {
                0 => t.bid = Some(f64::NAN),
                1 => t.ask = Some(mid * 2.0),
                2 => t.ts_us -= 3_600_000_000,
                3 => t.seq = Some(i as u64 / 2 - 1),
                4 => t.bid = Some(mid * 1.5),
                _ => {}
            }
            t
        })
        .collect()
}

#[test]
fn check_does_not_allocate_after_warm_up() {
    let ticks = stream(300_000);
    let mut v = Validator::new(&QualityConfig::default());
    for t in &ticks[..100_000] {
        v.check(t);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut accepted = 0u64;
    for t in &ticks[100_000..] {
        accepted += u64::from(v.check(t).is_accept());
        v.take_status_change();
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert!(accepted > 150_000, "accepted {accepted}");
    assert!(allocations <= 10, "{allocations} allocations in 200,000 checks");
}

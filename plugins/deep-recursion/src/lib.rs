//! `deep-recursion` (hostile): unbounded, non-tail recursion with a frame
//! that lives in linear memory, so it overflows the stack and traps.

use core::hint::black_box;

use weir_plugin_sdk::{Plugin, Trigger, Verdict, export_plugin};

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // The frame's address escapes, so it is on the shadow stack in linear
    // memory; the work after the call keeps the recursion out of tail
    // position.
    let mut frame = [0u8; 512];
    frame[(depth % 512) as usize] = depth as u8;
    black_box(&mut frame);
    // Never true, but the optimiser cannot know: the function has a base
    // case in its eyes, so it cannot be turned into `unreachable`.
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let below = recurse(depth + 1);
    below.wrapping_add(u64::from(frame[((depth * 7) % 512) as usize]))
}

struct DeepRecursion;

impl Plugin for DeepRecursion {
    fn handle(_trigger: Trigger) -> Verdict {
        let n = recurse(black_box(0));
        Verdict::accept_with_body(n.to_string())
    }
}

export_plugin!(DeepRecursion);

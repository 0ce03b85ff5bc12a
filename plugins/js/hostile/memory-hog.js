//! Hostile: allocates until it cannot. QuickJS's allocations hit the
//! instance's memory limit (`plugin_memory_mb`); the trigger is a fault,
//! never the gateway's memory.
export function handle(trigger) {
  const hoard = [];
  for (;;) hoard.push(new Uint8Array(1 << 20).fill(trigger.body.length & 0xff));
}

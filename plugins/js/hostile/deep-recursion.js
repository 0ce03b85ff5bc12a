//! Hostile: recurses without end. QuickJS's stack check or the Wasm stack
//! limit ends it: a fault, and the host's own stack is never at risk.
function down(n) {
  return down(n + 1) + 1;
}
export function handle(trigger) {
  return down(trigger.body.length);
}

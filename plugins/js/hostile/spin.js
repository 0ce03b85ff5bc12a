//! Hostile: spins forever. Weir must cut it at its CPU budget (a `deadline`
//! fault) while other tenants are served.
export function handle(trigger) {
  let n = 0;
  for (;;) n = (n + trigger.body.length + 1) | 0;
}

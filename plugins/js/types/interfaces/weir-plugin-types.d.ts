declare module 'weir:plugin/types@0.2.0' {
  /**
   * One HTTP header. Names are lower-case; a name may repeat.
   */
  export interface Header {
    name: string,
    value: string,
  }
  /**
   * When the plugin runs.
   * # Variants
   * 
   * ## `"ingest"`
   * 
   * On arrival, before the trigger is stored.
   * ## `"replay"`
   * 
   * On an operator's replay of a stored trigger (re-run on its raw body).
   */
  export type Phase = 'ingest' | 'replay';
  /**
   * The trigger as Weir stores it; the same at ingest and at replay.
   */
  export interface Trigger {
    /**
     * Tenant id from the URL (`/ingest/{tenant}/{source}`).
     */
    tenant: string,
    /**
     * Free source label from the URL (`github`, `stripe`, ...).
     */
    source: string,
    /**
     * HTTP method, upper-case (always `POST` today).
     */
    method: string,
    /**
     * Request path, e.g. `/ingest/acme/github`.
     */
    path: string,
    /**
     * Always empty: Weir does not keep the query string, and a plugin
     * sees only what is kept (so replay sees what ingest saw).
     */
    query: string,
    /**
     * The stored request headers, names lower-case, in arrival order:
     * never credentials (`authorization`, `proxy-authorization`,
     * `cookie`) nor connection-level headers.
     */
    headers: Array<Header>,
    /**
     * Raw request body, exactly as received.
     */
    body: Uint8Array,
    /**
     * Arrival time at the gateway, milliseconds since the Unix epoch.
     */
    receivedAtMs: bigint,
    /**
     * Whether this call is the trigger's ingest or a replay.
     */
    phase: Phase,
  }
  /**
   * Accept the trigger, optionally transformed.
   */
  export interface Accepted {
    /**
     * New body; `none` keeps the raw body unchanged (no copy).
     */
    body?: Uint8Array,
    /**
     * Headers to set on the stored trigger (replacing any of that name).
     * At most 64 set + remove entries, 16 KiB of names and values.
     */
    setHeaders: Array<Header>,
    /**
     * Header names to remove from the stored trigger.
     */
    removeHeaders: Array<string>,
    /**
     * Idempotency key to use for deduplication and delivery; `none`
     * keeps the sender's `Idempotency-Key` header if it gave one.
     */
    idempotencyKey?: string,
    /**
     * Optional route name for the forwarder.
     */
    route?: string,
  }
  /**
   * Refuse the trigger: the sender gets `status` and `reason`.
   */
  export interface Rejected {
    /**
     * HTTP status, 400..=499; anything else is treated as a plugin fault.
     */
    status: number,
    /**
     * Human-readable reason, returned to the sender.
     */
    reason: string,
  }
  export type Verdict = VerdictAccept | VerdictReject | VerdictDrop;
  /**
   * Store (and later forward) the trigger.
   */
  export interface VerdictAccept {
    tag: 'accept',
    val: Accepted,
  }
  /**
   * Answer the sender with a 4xx and store nothing.
   */
  export interface VerdictReject {
    tag: 'reject',
    val: Rejected,
  }
  /**
   * Acknowledge the sender (202) but neither store nor forward.
   */
  export interface VerdictDrop {
    tag: 'drop',
  }
}

declare module 'weir:plugin/host@0.2.0' {
  /**
   * Log a message attributed to the tenant. Messages are truncated to a
   * size cap and the number of calls per trigger is capped.
   */
  export function log(level: Level, message: string): void;
  /**
   * Look up a string from the tenant's `[tenants.config]` table (where
   * secrets such as HMAC keys live). `none` when the key is not set.
   */
  export function config(key: string): string | undefined;
  /**
   * # Variants
   * 
   * ## `"trace"`
   * 
   * ## `"debug"`
   * 
   * ## `"info"`
   * 
   * ## `"warn"`
   * 
   * ## `"error"`
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}

/// <reference path="./interfaces/weir-plugin-host.d.ts" />
/// <reference path="./interfaces/weir-plugin-types.d.ts" />
declare module 'weir:plugin/trigger-plugin@0.2.0' {
  export type Trigger = import('weir:plugin/types@0.2.0').Trigger;
  export type Verdict = import('weir:plugin/types@0.2.0').Verdict;
  export type * as WeirPluginHost020 from 'weir:plugin/host@0.2.0'; // import weir:plugin/host@0.2.0
  export type * as WeirPluginTypes020 from 'weir:plugin/types@0.2.0'; // import weir:plugin/types@0.2.0
  export function handle(trigger: Trigger): Verdict;
}

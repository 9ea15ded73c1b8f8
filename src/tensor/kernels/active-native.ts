// The native addon the kernel pack was started with (undefined: wasm kernels only). Kept apart so
// ops and optimizers can ask without importing the whole pack.
import type { NativeAddon } from '../native.js';

let active: NativeAddon | undefined;

export function setActiveNative(addon: NativeAddon | undefined): void {
  active = addon;
}

export function activeNative(): NativeAddon | undefined {
  return active;
}

// The one builder of declaration targets for tests: a system target for libvirt's images with
// every field filled in, as validation would leave it; a test overrides only what it is about.
import type { Target } from '../../src/declaration/types.js';

export function target(overrides: Partial<Target> = {}): Target {
  return {
    name: 'vm',
    path: '/var/lib/libvirt/images',
    scope: 'system',
    subvolume: 'auto',
    nocow: true,
    mode: '0711',
    user: 'root',
    group: 'kvm',
    redundancy: 'keep-checksums',
    source: 'config:test.yaml',
    ...overrides,
  };
}

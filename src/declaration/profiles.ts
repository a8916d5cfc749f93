// Built-in profiles: plain data, so `--help` can list them without loading zod or yaml.
import type { Target } from './types.js';

/** A target as declared, before it is tied to a source. */
export type TargetSpec = Omit<Target, 'source'>;

export const DEFAULT_PROFILE = 'libvirt';

// Profiles go through the same validation as a config file (see load.ts), so a
// mistake here is caught like a user's would be.
function profile(
  name: string,
  path: string,
  mode: string,
  owner: string,
  scope: Target['scope'] = 'system',
): TargetSpec {
  return {
    name,
    path,
    scope,
    subvolume: 'auto',
    nocow: true,
    mode,
    user: owner,
    group: owner,
    redundancy: 'keep-checksums',
    defrag: 'auto',
    compression: 'keep',
  };
}

/** Profile name → its one target (named after the profile). */
export const BUILTIN_PROFILES: Readonly<Record<string, TargetSpec>> = {
  libvirt: profile('libvirt', '/var/lib/libvirt/images', '0711', 'root'),
  machines: profile('machines', '/var/lib/machines', '0700', 'root'),
  mariadb: profile('mariadb', '/var/lib/mysql', '0755', 'mysql'),
  postgresql: profile('postgresql', '/var/lib/pgsql', '0700', 'postgres'),
  'gnome-boxes': profile('gnome-boxes', '~/.local/share/gnome-boxes/images', '0755', '-', 'user'),
  // The Flatpak keeps its data under ~/.var/app; a separate profile, so hosts without it get no stray directory.
  'gnome-boxes-flatpak': profile('gnome-boxes-flatpak', '~/.var/app/org.gnome.Boxes/data/gnome-boxes/images', '0755', '-', 'user'),
};

/**
 * The services that use each built-in profile's directory: nocow-apply.service (the boot-unit
 * artifact) runs before them, so a service never starts on a directory still to be converted.
 */
export const PROFILE_SERVICES: Readonly<Record<string, readonly string[]>> = {
  libvirt: ['libvirtd.service'],
  machines: ['systemd-machined.service'],
  mariadb: ['mariadb.service'],
  postgresql: ['postgresql.service'],
};

/** The services that use PATH: those of the built-in profiles declaring that very path, whatever declared it here. */
export function servicesUsing(path: string): string[] {
  return Object.entries(PROFILE_SERVICES)
    .filter(([profile]) => BUILTIN_PROFILES[profile]?.path === path)
    .flatMap(([, services]) => services);
}

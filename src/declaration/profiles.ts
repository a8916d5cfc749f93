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

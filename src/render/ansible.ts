// The YAML of the Ansible role (nocow generate ansible): its defaults and its vars, written by the
// yaml package, never by string templates. Ansible reads them with PyYAML (YAML 1.1), so the
// documents are written for YAML 1.1: "yes", "on", "0755"… stay strings. Pure.
import { Document, isScalar, visit } from 'yaml';
import type { Target } from '../declaration/types.js';
import { CHANGE_EVENTS } from '../facts.js';

/** Where the role's play applies the declaration by default, and whether a hook's warning fails the host. */
export const ANSIBLE_DEFAULTS = { nocow_root: '/', nocow_fail_on_warning: false } as const;

/**
 * DATA as a YAML 1.1 document's text. With UNSAFE, every string is tagged !unsafe: Ansible
 * templates a variable's strings where they are used, and a path holding "{{" must stay that
 * path, not become an expression run on the controller.
 */
export function ansibleYaml(data: unknown, unsafe: boolean): string {
  const doc = new Document(data, { version: '1.1' });
  if (unsafe) {
    visit(doc, {
      // Values only: a key is a name of the role's.
      Scalar(key, node) {
        if (key !== 'key' && isScalar(node) && typeof node.value === 'string') node.tag = '!unsafe';
      },
    });
  }
  return doc.toString({ lineWidth: 0 });
}

/** The role's defaults: what an admin sets per host or group. */
export function ansibleDefaults(): string {
  return ansibleYaml(ANSIBLE_DEFAULTS, false);
}

/**
 * The role's vars: the declared targets baked into files/nocow-apply.sh (reported per target,
 * by name), and the events that mean a change. Facts of the generated hook, not knobs.
 */
export function ansibleVars(targets: readonly Target[]): string {
  const declared = targets.map((t) => ({
    name: t.name,
    path: t.path,
    subvolume: t.subvolume,
    nocow: t.nocow,
    mode: t.mode,
    owner: t.user,
    group: t.group,
    redundancy: t.redundancy,
  }));
  return `${ansibleYaml({ nocow_declared_targets: declared }, true)}${ansibleYaml({ nocow_change_events: [...CHANGE_EVENTS] }, false)}`;
}

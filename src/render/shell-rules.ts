// The rules of src/declaration/rules.ts as POSIX sh, for the hook (nocow-apply.sh), which checks
// the targets given on its command line (%nocow_apply's call) as a declaration is checked, in the
// same words. The hook runs with LC_ALL=C (nocow_init), so bracket ranges are ASCII and ${#x}
// counts bytes. Values reach the generated text single-quoted (shQuote).
import { ENUM_RULES, MODE_RULE, NAME_RULE, PATH_RULES, SCOPE_RULES, ownerRule, type PathRule, type ValueRule, type WordRule } from '../declaration/rules.js';
import { shQuote } from './escape.js';

/** One word rule as the arguments of the hook's nocow_word: FIRST REST MIN MAX SUFFIX (MAX 0: no limit). */
const shellWord = (word: WordRule): string =>
  [word.first, word.rest, String(word.min), String(word.max ?? 0), word.suffix ?? ''].map(shQuote).join(' ');

/** A shell function NAME OPTION VALUE [HINT]: a usage error (nocow_usage_error, of the hook) unless VALUE is one of RULE's words. */
function shellValueCheck(name: string, rule: ValueRule): string {
  return `# ${name} OPTION VALUE [HINT]: a usage error (with HINT after it) unless VALUE, given as OPTION, follows the rule.
${name}() {
${rule.words.map((w) => `\tnocow_word "$2" ${shellWord(w)} && return 0`).join('\n')}
\tnocow_usage_error "$1 $2: expected "${shQuote(rule.expected)}"\${3:-}"
}`;
}

/** A shell function nocow_check_KEY OPTION VALUE: a usage error unless VALUE is one of a declaration's KEY values. */
function shellEnumCheck(key: keyof typeof ENUM_RULES): string {
  const values = ENUM_RULES[key];
  return `# nocow_check_${key} OPTION VALUE: a usage error unless VALUE is a declaration's ${key} value.
nocow_check_${key}() {
	case $2 in ${values.map(shQuote).join(' | ')}) return 0 ;; esac
	nocow_usage_error "$1 $2: expected "${shQuote(`one of: ${values.join(', ')}`)}
}`;
}

/** The phrase EXPECTED makes of a value known only at run time, as a double-quoted shell word around VARIABLE. */
function shellPhrase(expected: (found: string) => string, variable: string): string {
  const marker = '\u0001';
  return expected(marker)
    .split(marker)
    .map((part) => shQuote(part))
    .join(`"$${variable}"`);
}

/** One path rule as shell statements that call nocow_bad_path PHRASE when $_nc_p breaks it. */
function shellPathCheck(rule: PathRule): string {
  switch (rule.kind) {
    case 'characters': {
      // The control ranges: C0 and DEL as [[:cntrl:]] (LC_ALL=C); C1 as its UTF-8 bytes, C2 80 to C2 9F.
      const c0 = rule.ranges.some(([from]) => from === 0x00);
      const c1 = rule.ranges.some(([from, to]) => from <= 0x80 && to >= 0x9f);
      if (!c0 && !c1) {
        // Bytes that are not UTF-8: POSIX sh cannot tell them without a tool; rpmbuild's Lua
        // refused them in %nocow_apply, and a path that names no directory meets nothing here.
        return `: # ${rule.expected('FFFD').replace(/\n/g, ' ')}: checked by %nocow_apply's Lua, not here`;
      }
      return `# shellcheck disable=SC2254 # _nc_c1 is a pattern: the two bytes of a C1 character
case $_nc_p in
*[[:cntrl:]]* | *$_nc_c1*) nocow_bad_path ${shQuote(rule.expected('0000').replace(/ \(found U\+0000\)$/, ''))} ;;
esac`;
    }
    case 'segments':
      return `case /$_nc_rest/ in
${rule.refused.map((s) => `*/${shQuote(s)}/*`).join(' | ')}) nocow_bad_path ${shQuote(rule.expected())} ;;
esac`;
    case 'empty-segment':
      return `case /$_nc_rest in
*//*) nocow_bad_path ${shQuote(rule.expected())} ;;
esac`;
    case 'trailing-slash':
      return `case $_nc_rest in
*/) nocow_bad_path ${shQuote(rule.expected())} ;;
esac`;
    case 'segment-bytes':
      return `_nc_s=$_nc_rest
while [ -n "$_nc_s" ]; do
	_nc_seg=\${_nc_s%%/*}
	[ \${#_nc_seg} -le ${rule.max} ] || { _nc_n=\${#_nc_seg}; nocow_bad_path ${shellPhrase(rule.expected, '_nc_n')}; }
	case $_nc_s in */*) _nc_s=\${_nc_s#*/} ;; *) _nc_s='' ;; esac
done`;
    case 'path-bytes':
      return `[ \${#_nc_p} -le ${rule.max} ] || nocow_bad_path ${shQuote(rule.expected())}`;
  }
}

/**
 * The hook's checks of command-line values, as shell: nocow_word, nocow_check_name/_mode/_user/_group/
 * _subvolume/_compression OPTION VALUE (each a usage error unless VALUE follows the rule), and nocow_check_path PATH, which
 * calls nocow_bad_path PHRASE (defined by the hook: it prints and exits) at the first rule PATH breaks.
 */
export function shellRules(): string {
  const scope = SCOPE_RULES.system;
  return `# nocow_word VALUE FIRST REST MIN MAX SUFFIX: true when VALUE (less SUFFIX) is a character of FIRST,
# then characters of REST, MIN to MAX (0: any) in all: one word of a rule of nocow-kit's src/declaration/rules.ts.
nocow_word() {
	_nc_w=$1
	[ -z "$6" ] || _nc_w=\${_nc_w%"$6"}
	[ \${#_nc_w} -ge "$4" ] || return 1
	[ "$5" = 0 ] || [ \${#_nc_w} -le "$5" ] || return 1
	# shellcheck disable=SC2254 # FIRST and REST are bracket bodies: they must act as patterns
	case $_nc_w in [$2]*) ;; *) return 1 ;; esac
	# shellcheck disable=SC2254 # as above
	case \${_nc_w#?} in *[!$3]*) return 1 ;; esac
	return 0
}
${shellValueCheck('nocow_check_name', NAME_RULE)}
${shellValueCheck('nocow_check_mode', MODE_RULE)}
${shellValueCheck('nocow_check_user', ownerRule('user'))}
${shellValueCheck('nocow_check_group', ownerRule('group'))}
${shellEnumCheck('subvolume')}
${shellEnumCheck('compression')}
# nocow_check_path PATH: calls nocow_bad_path with what was expected at the first rule of a declaration's path PATH breaks.
nocow_check_path() {
	_nc_p=$1
	_nc_c1=$(printf '\\302[\\200-\\237]')
	case $_nc_p in
	${shQuote(scope.prefix)}*) ;;
	*) nocow_bad_path ${shQuote(scope.expected)} ;;
	esac
	_nc_rest=\${_nc_p#${shQuote(scope.prefix)}}
	[ -n "$_nc_rest" ] || nocow_bad_path ${shQuote(scope.below)}
${PATH_RULES.map(shellPathCheck)
  .join('\n')
  .split('\n')
  .map((l) => `\t${l}`)
  .join('\n')}
}`;
}

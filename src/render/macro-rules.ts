// The rules of src/declaration/rules.ts as Lua, for the block of macros.nocow that checks
// %nocow_posttrans's arguments while rpmbuild expands it: the macro refuses what a declaration
// refuses, in the same words. The block may hold no backslash, no `%` and braces only in pairs
// (rpm reads them before Lua does): every text goes through luaText, which says so loudly.
import { ENUM_RULES, MODE_RULE, NAME_RULE, PATH_RULES, SCOPE_RULES, ownerRule, type PathRule, type ValueRule, type WordRule } from '../declaration/rules.js';

/** TEXT as a Lua long string, which takes every character as it is (no escapes). */
export function luaText(text: string): string {
  if (/[\\%{}\n]/.test(text) || text.includes(']==]')) throw new Error(`macros.nocow: ${JSON.stringify(text)} cannot be written in its Lua block`);
  return `[==[${text}]==]`;
}

/** A phrase made by EXPECTED from a value known only at run time: a Lua expression joining its parts around VALUE (Lua). */
function luaPhrase(expected: (found: string) => string, value: string): string {
  const marker = '\u0001';
  return expected(marker)
    .split(marker)
    .map(luaText)
    .join(` .. ${value} .. `);
}

const luaWord = (word: WordRule): string =>
  `{ first = ${luaText(word.first)}, rest = ${luaText(word.rest)}, min = ${word.min}, max = ${word.max ?? 0}, suffix = ${luaText(word.suffix ?? '')} }`;

const luaValueRule = (rule: ValueRule): string => `{ expected = ${luaText(rule.expected)}, words = { ${rule.words.map(luaWord).join(', ')} } }`;

/** A code point's UTF-8 bytes. */
const utf8 = (codePoint: number): number[] => [...Buffer.from(String.fromCodePoint(codePoint))];

/** Lua patterns matching the UTF-8 of the code points FROM..TO, split where the encoding's length or lead bytes change. */
function luaCharacterPatterns(from: number, to: number): string[] {
  const out: string[] = [];
  for (let start = from; start <= to; ) {
    const first = utf8(start);
    let end = start;
    while (end < to) {
      const next = utf8(end + 1);
      if (next.length !== first.length || next.slice(0, -1).some((b, i) => b !== first[i])) break;
      end++;
    }
    const last = utf8(end);
    const lead = first.slice(0, -1).map((b) => `string.char(${b})`);
    const set = `"[" .. string.char(${first.at(-1)!}) .. "-" .. string.char(${last.at(-1)!}) .. "]"`;
    out.push([...lead, set].join(' .. '));
    start = end + 1;
  }
  return out;
}

/** One path rule as a Lua statement that calls fail(path, phrase) when PATH breaks it. */
function luaPathCheck(rule: PathRule): string {
  switch (rule.kind) {
    case 'characters': {
      const patterns = rule.ranges.flatMap(([from, to]) => luaCharacterPatterns(from, to));
      // utf8.len: nil for bytes that are not UTF-8 (Lua 5.3 and later, as in rpm 4.14 and later).
      const invalid = rule.invalidUtf8 ? `if utf8.len(path) == nil then fail_path(${luaText(rule.expected('FFFD'))}) end\n` : '';
      return `${invalid}for _, pattern in ipairs({ ${patterns.join(', ')} }) do
  local found = string.match(path, pattern)
  if found then fail_path(${luaPhrase(rule.expected, 'hex4(codepoint(found))')}) end
end`;
    }
    case 'segments':
      return `for _, segment in ipairs(segments) do
  for _, refused in ipairs({ ${rule.refused.map(luaText).join(', ')} }) do
    if segment == refused then fail_path(${luaText(rule.expected())}) end
  end
end`;
    case 'empty-segment':
      return `for i = 1, #segments - 1 do
  if segments[i] == "" then fail_path(${luaText(rule.expected())}) end
end`;
    case 'trailing-slash':
      return `if string.sub(rest, -1) == "/" then fail_path(${luaText(rule.expected())}) end`;
    case 'segment-bytes':
      return `for _, segment in ipairs(segments) do
  if #segment > ${rule.max} then fail_path(${luaPhrase(rule.expected, '#segment')}) end
end`;
    case 'path-bytes':
      return `if #path > ${rule.max} then fail_path(${luaText(rule.expected())}) end`;
  }
}

/**
 * The Lua of macros.nocow's check of PATH (a system-scope path, in the local `path`): defines
 * fail_path, codepoint, hex4, `rest` and `segments`, and fails at the first rule PATH breaks.
 */
export function luaPathChecks(): string {
  const scope = SCOPE_RULES.system;
  return `local function fail_path(expected)
  fail(path .. ": expected " .. expected)
end
-- The code point of one UTF-8 character, and as four or more hex digits (string.format needs a percent sign).
local function codepoint(c)
  local n = string.byte(c, 1)
  if #c == 2 then n = (n - 192) * 64 + string.byte(c, 2) - 128 end
  if #c == 3 then n = ((n - 224) * 64 + string.byte(c, 2) - 128) * 64 + string.byte(c, 3) - 128 end
  return n
end
local function hex4(n)
  local digits, out = "0123456789ABCDEF", ""
  while n > 0 or #out < 4 do
    local low = n - math.floor(n / 16) * 16
    out = string.sub(digits, low + 1, low + 1) .. out
    n = math.floor(n / 16)
  end
  return out
end
if string.sub(path, 1, ${scope.prefix.length}) ~= ${luaText(scope.prefix)} then fail_path(${luaText(scope.expected)}) end
local rest = string.sub(path, ${scope.prefix.length + 1})
if rest == "" then fail_path(${luaText(scope.below)}) end
local segments = {}
for segment in string.gmatch(rest .. "/", "([^/]*)/") do table.insert(segments, segment) end
${PATH_RULES.map(luaPathCheck).join('\n')}`;
}

/**
 * The Lua of macros.nocow's value rules: a function matches(rule, value) and the rules NAME_RULE,
 * MODE_RULE, USER_RULE and GROUP_RULE, each { expected = "…", words = { … } }; and a function
 * one_of(values, option, value), which fails unless VALUE is one of VALUES (SUBVOLUME_VALUES,
 * COMPRESSION_VALUES), and returns it.
 */
export function luaValueRules(): string {
  return `local function matches(rule, value)
  for _, word in ipairs(rule.words) do
    local base = value
    if word.suffix ~= "" and string.sub(value, -#word.suffix) == word.suffix then base = string.sub(value, 1, -#word.suffix - 1) end
    if #base >= word.min and (word.max == 0 or #base <= word.max) and string.find(base, "^[" .. word.first .. "][" .. word.rest .. "]*$") then return true end
  end
  return false
end
local NAME_RULE = ${luaValueRule(NAME_RULE)}
local MODE_RULE = ${luaValueRule(MODE_RULE)}
local USER_RULE = ${luaValueRule(ownerRule('user'))}
local GROUP_RULE = ${luaValueRule(ownerRule('group'))}
local function one_of(values, option, value)
  for _, allowed in ipairs(values) do
    if value == allowed then return value end
  end
  fail(option .. " " .. value .. ": expected one of: " .. table.concat(values, ", "))
end
${Object.entries(ENUM_RULES)
  .map(([key, values]) => `local ${key.toUpperCase()}_VALUES = { ${values.map(luaText).join(', ')} }`)
  .join('\n')}`;
}

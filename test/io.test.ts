// How a name's bytes are shown (src/io.ts): UTF-8 as itself, every byte that is not as \xHH, so
// a name that is not UTF-8 is never shown as another (Node's string paths would put U+FFFD there).
import t from 'tap';
import { nameText, printable } from '../src/io.js';

t.test('GIVEN names of every kind of bytes WHEN nameText shows them THEN UTF-8 is kept and each byte that is not UTF-8 is \\xHH', async (t) => {
  const cases: [number[] | string, string][] = [
    ['plain.img', 'plain.img'],
    ['été \u202e.img', 'été \u202e.img'],
    [[0xff, 0xfe, 0x2e, 0x69, 0x6d, 0x67], '\\xff\\xfe.img'],
    [[0x63, 0x61, 0x66, 0xe9, 0x2e, 0x69, 0x6d, 0x67], 'caf\\xe9.img'], // Latin-1 café
    [[0xc3], '\\xc3'], // a sequence cut short
    [[0xc3, 0xa9, 0xc3], 'é\\xc3'],
    [[0xc0, 0xaf], '\\xc0\\xaf'], // an overlong "/"
    [[0xed, 0xa0, 0x80], '\\xed\\xa0\\x80'], // a surrogate
    [[0xf4, 0x90, 0x80, 0x80], '\\xf4\\x90\\x80\\x80'], // above U+10FFFF
    [[0xf0, 0x9f, 0x98, 0x80], '\u{1f600}'],
    ['new\nline', 'new\nline'],
  ];
  for (const [input, shown] of cases) {
    const bytes = typeof input === 'string' ? Buffer.from(input) : Buffer.from(input);
    t.equal(nameText(bytes), shown, JSON.stringify(shown));
  }
  t.equal(printable(nameText(Buffer.from([0x61, 0x0a, 0xff]))), 'a\\n\\xff', 'then printable escapes the control characters');
});

// The shell library as artifacts ship it: the readable source (templates/nocow-lib.sh.ejs, with its
// comments and blank lines) is stored in every rpm header and every rpmdb, so what is embedded
// carries only code. Pure text → text; shellcheck and every real-file-system test run on this form.

/**
 * Drops comment lines (except `# shellcheck` directives, which keep the shipped form lint-clean
 * and say why next to the code in the source), blank lines and leading indentation, outside quotes.
 * A line is taken apart only where it starts outside a quoted string: the lines of a multi-line
 * single-quoted string (the inner script of `find -exec sh -c '…'`) are kept byte for byte.
 */
export function shippedShell(source: string): string {
  const out: string[] = [];
  let quote: "'" | '"' | null = null;
  for (const line of source.split('\n')) {
    const startsInside = quote !== null;
    quote = quoteStateAfter(line, quote);
    if (startsInside) {
      out.push(line);
      continue;
    }
    const code = line.replace(/^\s+/, '');
    if (code === '') continue;
    if (code.startsWith('#') && !code.startsWith('# shellcheck ')) continue;
    out.push(code);
  }
  return `${out.join('\n')}\n`;
}

/** The quote a line leaves open, given the one it starts in: enough of sh's lexing for the library's own text. */
function quoteStateAfter(line: string, start: "'" | '"' | null): "'" | '"' | null {
  let quote = start;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote === "'") {
      if (c === "'") quote = null;
    } else if (quote === '"') {
      if (c === '\\') i++;
      else if (c === '"') quote = null;
    } else if (c === '\\') i++;
    else if (c === "'" || c === '"') quote = c;
    // A comment runs to the end of the line: its quotes open nothing.
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]!))) break;
  }
  return quote;
}

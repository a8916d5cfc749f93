// The shell text of a generated artifact as the shell will see it: kickstart and
// %posttrans bodies cut out of their sections, rpm's %% turned back into %; a PKGBUILD's
// .install file as it is (pacman sources it with /bin/sh).
export function shellOf(file: string, content: string): string | undefined {
  const lines = content.split('\n');
  if (file.endsWith('.sh') || file.endsWith('.install')) return content;
  if (file.endsWith('.ks')) return lines.slice(lines.findIndex((l) => l.startsWith('%post')) + 1, lines.lastIndexOf('%end')).join('\n');
  if (file.endsWith('posttrans.spec')) return lines.slice(1).join('\n').replace(/%%/g, '%');
  return undefined;
}

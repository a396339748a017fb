// Adapter (CLI): the one table formatter of the commands and the benchmarks: a header, a rule of
// dashes, and columns padded to their widest cell (the first left-aligned, the others right-aligned).
export interface TableOptions {
  /** Per column; default: the first column left, the others right. */
  align?: ReadonlyArray<'left' | 'right'>;
  /** Put before every line (e.g. two spaces under a heading). */
  indent?: string;
  /** The rule of dashes under the header (default true). */
  rule?: boolean;
}

export function formatTable(
  head: readonly string[],
  rows: ReadonlyArray<readonly string[]>,
  o: TableOptions = {},
): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const alignOf = (i: number) => o.align?.[i] ?? (i === 0 ? 'left' : 'right');
  const line = (cells: readonly string[]): string =>
    `${o.indent ?? ''}${cells
      .map((cell, i) => (alignOf(i) === 'left' ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ')}`.trimEnd();
  const lines = [line(head)];
  if (o.rule ?? true) lines.push(line(widths.map((w) => '-'.repeat(w))));
  for (const row of rows) lines.push(line(row));
  return lines.join('\n');
}

/**
 * Lays out a help page the way commander 15's default Help class does (`formatHelp`,
 * `formatItem`, `boxWrap` in commander/lib/help.js), so help printed without loading commander
 * reads byte for byte like commander's own. It covers the parts this CLI uses: a usage line, a
 * description, titled lists of term and description, and text appended after the page.
 */

export interface HelpItem {
  term: string;
  description: string;
}

export interface HelpPage {
  usage: string;
  description: string;
  sections: Array<{ title: string; items: HelpItem[] }>;
  /** Text printed after the page, as commander's `addHelpText('after', text)` prints it; may be empty. */
  after: string;
}

/** Below this width commander stops wrapping and prints the text as it is. */
const MIN_WIDTH_TO_WRAP = 40;
const ITEM_INDENT = 2;
const SPACER_WIDTH = 2;

/** Formats a help page for a terminal `width` columns wide (commander uses 80 off a terminal). */
export function formatHelpPage(page: HelpPage, width: number): string {
  const termWidth = Math.max(
    0,
    ...page.sections.flatMap((section) => section.items.map((item) => item.term.length)),
  );
  const lines = [`Usage: ${page.usage}`, ''];
  if (page.description !== '') {
    lines.push(wrapText(page.description, width), '');
  }
  for (const section of page.sections) {
    if (section.items.length > 0) {
      lines.push(section.title, ...section.items.map((item) => formatItem(item, termWidth, width)), '');
    }
  }
  const text = lines.join('\n');
  return page.after === '' ? text : `${text}${page.after}\n`;
}

/** Pads the term to `termWidth` and wraps the description in the columns right of it. */
function formatItem(item: HelpItem, termWidth: number, width: number): string {
  const indent = ' '.repeat(ITEM_INDENT);
  if (item.description === '') {
    return indent + item.term;
  }
  const remainingWidth = width - termWidth - SPACER_WIDTH - ITEM_INDENT;
  // Commander leaves a description with an indented line break as it is, as if preformatted.
  const preformatted = /\n[^\S\r\n]/.test(item.description);
  const description =
    remainingWidth < MIN_WIDTH_TO_WRAP || preformatted
      ? item.description
      : wrapText(item.description, remainingWidth).replace(
          /\n/g,
          `\n${' '.repeat(termWidth + SPACER_WIDTH)}`,
        );
  return `${indent}${item.term.padEnd(termWidth)}${' '.repeat(SPACER_WIDTH)}${description.replace(/\n/g, `\n${indent}`)}`;
}

/** Wraps each line of `text` at whitespace so no line is longer than `width`, where a word allows. */
function wrapText(text: string, width: number): string {
  if (width < MIN_WIDTH_TO_WRAP) {
    return text;
  }
  const wrapped: string[] = [];
  for (const line of text.split(/\r\n|\n/)) {
    const chunks = line.match(/\s*\S+/g);
    if (chunks === null) {
      wrapped.push('');
      continue;
    }
    let current = chunks[0] as string;
    for (const chunk of chunks.slice(1)) {
      if (current.length + chunk.length <= width) {
        current += chunk;
      } else {
        wrapped.push(current);
        current = chunk.trimStart();
      }
    }
    wrapped.push(current);
  }
  return wrapped.join('\n');
}

import { WORKER_CATALOG } from './commands/catalog.js';
import { formatHelpPage, type HelpItem } from './core/output/help-layout.js';

/**
 * The command line's commands, each with its summary, description and options. The commander
 * program (src/program.ts) registers exactly these, and `plainHelp` prints the same help pages
 * without loading commander, which saves its start-up on `--help`.
 */

export const PROGRAM_NAME = 'zbox-workers';

export const PROGRAM_DESCRIPTION =
  'Background workers of 0Box on the Züs network. Each run does one cycle of one worker and exits.';

export const EXIT_CODES_HELP = `
Exit codes:
  0        cycle completed; nothing needs a person
  2        usage or configuration error (bad flag, missing or invalid environment)
  3        could not start (database unreachable, schema behind: run migrate, or schema newer: deploy the newer image)
  4        cycle completed but work needs attention (dead task, guard rail, dependency unavailable)
  70       internal error (a bug)
  130/143  interrupted by SIGINT/SIGTERM after draining`;

export interface OptionSpec {
  /** Commander's flags syntax: `--name`, or `--name <value>` for an option that takes a value. */
  flags: string;
  description: string;
  /** Check and conversion of the value; an option without a value is a boolean. */
  value?: 'positive-integer' | 'task-id';
}

export interface CommandSpec {
  name: string;
  /** Positional argument in commander's syntax, for example `<worker>`. */
  argument?: string;
  /** One line in the program's command list. */
  summary: string;
  /** The text of the command's own help page. */
  description: string;
  options: OptionSpec[];
}

export const VERSION_OPTION: OptionSpec = { flags: '--version', description: 'print the version' };
export const HELP_OPTION: OptionSpec = { flags: '-h, --help', description: 'print help' };

const JSON_LINES: OptionSpec = {
  flags: '--json',
  description: 'one JSON object per line (the default off a terminal)',
};
const JSON_OBJECT: OptionSpec = {
  flags: '--json',
  description: 'one JSON object (the default off a terminal)',
};

const ID_OPTION: OptionSpec = {
  flags: '--id <id>',
  description: 'only this task id, due or not, unless another run has claimed it (repeatable)',
  value: 'task-id',
};

/**
 * Options of the worker commands. Singleton workers have no task ids, so they take all but
 * `--id`, and commander rejects `--id` on them as an unknown option.
 */
export const WORKER_OPTIONS: OptionSpec[] = [
  { flags: '--dry-run', description: 'print what each task would do; change nothing anywhere' },
  {
    flags: '--limit <tasks>',
    description: 'maximum tasks to claim in this run (env ZBOX_LIMIT, default 1000)',
    value: 'positive-integer',
  },
  ID_OPTION,
  {
    flags: '--concurrency <tasks>',
    description: 'tasks executed at once (env ZBOX_CONCURRENCY, default 8)',
    value: 'positive-integer',
  },
  JSON_LINES,
  { flags: '--verbose', description: 'log at debug level' },
  { flags: '--quiet', description: 'log warnings and errors only' },
  {
    flags: '--embedded',
    description: 'use the embedded PostgreSQL in ZBOX_DATA_DIR instead of DATABASE_URL',
  },
];

/** Options a worker takes beyond WORKER_OPTIONS. */
const WORKER_EXTRA_OPTIONS: Record<string, OptionSpec[]> = {
  'delete-wallet-transactions': [
    {
      flags: '--retention-days <days>',
      description: 'delete rows older than this many days (env ZBOX_RETENTION_DAYS, default 90)',
      value: 'positive-integer',
    },
    {
      flags: '--batch-size <rows>',
      description:
        "rows of the table, expired or not, per range transaction, turned into blocks with the planner's rows-per-block estimate (env ZBOX_DELETE_BATCH_SIZE, default 5000)",
      value: 'positive-integer',
    },
  ],
};

/** One command per worker of the catalog, in the catalog's order. */
export const WORKER_COMMANDS: CommandSpec[] = WORKER_CATALOG.map((entry) => ({
  name: entry.name,
  summary: `${entry.summary} [${entry.schedule}]`,
  description: `${entry.summary}.\nSuggested schedule: ${entry.schedule}.`,
  options: [
    ...WORKER_OPTIONS.filter((option) => option !== ID_OPTION || entry.queueTable !== undefined),
    ...(WORKER_EXTRA_OPTIONS[entry.name] ?? []),
  ],
}));

/** The operations commands, listed after the workers. */
export const OPERATIONS_COMMANDS: CommandSpec[] = [
  {
    name: 'migrate',
    summary: 'applies pending database migrations [before each deploy]',
    description:
      'Applies the versioned SQL migrations under an advisory lock; safe to start several at once.',
    options: [
      { flags: '--embedded', description: 'migrate the embedded PostgreSQL in ZBOX_DATA_DIR' },
      JSON_LINES,
    ],
  },
  {
    name: 'status',
    summary:
      "prints each worker's due, in-progress, retrying and dead tasks and its last run [in an incident]",
    description:
      "Prints, per worker, the queue's due, in-progress, retrying and dead counts, the age of the oldest due task, and the last real run's summary and exit code. Reads only.",
    options: [
      JSON_OBJECT,
      {
        flags: '--embedded',
        description: 'read the embedded PostgreSQL in ZBOX_DATA_DIR instead of DATABASE_URL',
      },
    ],
  },
  {
    name: 'requeue',
    argument: '<worker>',
    summary: 'moves dead tasks of a queue worker back to pending with attempts reset [in an incident]',
    description: 'Moves dead tasks back to pending, due now, with attempts reset, and lists what it moved.',
    options: [
      { flags: '--id <id>', description: 'this dead task (repeatable)', value: 'task-id' },
      { flags: '--all-dead', description: 'every dead task of the worker' },
      { flags: '--dry-run', description: 'list what would be moved; change nothing' },
      JSON_LINES,
      {
        flags: '--embedded',
        description: 'use the embedded PostgreSQL in ZBOX_DATA_DIR instead of DATABASE_URL',
      },
    ],
  },
  {
    name: 'doctor',
    summary:
      'checks the configuration and probes every dependency read-only [after a deploy, in an incident]',
    description:
      'Checks the configuration of every worker and probes each configured dependency read-only. Prints OK, FAIL or SKIP per check; exits 0 only when nothing failed, else 4.',
    options: [
      JSON_OBJECT,
      {
        flags: '--embedded',
        description: 'check the embedded PostgreSQL in ZBOX_DATA_DIR instead of DATABASE_URL',
      },
    ],
  },
  {
    name: 'demo',
    summary: 'runs every worker against local simulators on the embedded database [on a laptop]',
    description:
      'Starts loopback simulators of the Züs network, blobbers, Elasticsearch and FCM, seeds sample data in the embedded PostgreSQL (ZBOX_DATA_DIR), runs every worker in dry-run and then for real, and prints the final status. Nothing leaves the machine.',
    options: [JSON_LINES],
  },
  {
    name: 'wallet',
    summary: "prints the team wallet's client id, public key, balance and next nonce [by hand]",
    description:
      "Prints the team wallet's client id, public key, balance in ZCN and SAS, and the next nonce. Reads ZBOX_TEAM_WALLET; prints nothing secret.",
    options: [JSON_OBJECT],
  },
];

const COMMANDS: CommandSpec[] = [...WORKER_COMMANDS, ...OPERATIONS_COMMANDS];

/** Commander's `help [command]` line, which it adds to a program that has commands. */
const HELP_COMMAND: HelpItem = { term: 'help [command]', description: 'display help for command' };

/**
 * Returns the help page for a plain help request: `--help`, `-h` or `help` alone, or a command
 * name followed by `--help` or `-h`, or `help` followed by a command name. Returns undefined for
 * anything else, which the commander program then parses. `width` is the terminal's width in
 * columns; commander uses 80 off a terminal.
 */
export function plainHelp(args: readonly string[], width: number): string | undefined {
  const isHelpFlag = (arg: string | undefined) => arg === '--help' || arg === '-h';
  if (args.length === 1 && (isHelpFlag(args[0]) || args[0] === 'help')) {
    return programHelp(width);
  }
  if (args.length !== 2) {
    return undefined;
  }
  const [first, second] = args;
  const name = first === 'help' ? second : isHelpFlag(second) ? first : undefined;
  const command = COMMANDS.find((candidate) => candidate.name === name);
  return command === undefined ? undefined : commandHelp(command, width);
}

/**
 * Returns the arguments for the commander program. `help <name>` for a name that is not a command
 * becomes `<name>`, on which commander reports the unknown command with its did-you-mean hint and
 * exits 2. Commander's own help command would print the program's help and no error. Any other
 * arguments are returned unchanged.
 */
export function commanderArgs(args: readonly string[]): string[] {
  const [first, topic, ...rest] = args;
  const isUnknownTopic =
    first === 'help' &&
    topic !== undefined &&
    topic !== 'help' &&
    !topic.startsWith('-') &&
    !COMMANDS.some((command) => command.name === topic);
  return isUnknownTopic ? [topic, ...rest] : [...args];
}

function programHelp(width: number): string {
  return formatHelpPage(
    {
      usage: `${PROGRAM_NAME} [options] [command]`,
      description: PROGRAM_DESCRIPTION,
      sections: [
        { title: 'Options:', items: [VERSION_OPTION, HELP_OPTION].map(optionItem) },
        {
          title: 'Commands:',
          items: [
            ...COMMANDS.map((command) => ({ term: commandTerm(command), description: command.summary })),
            HELP_COMMAND,
          ],
        },
      ],
      after: EXIT_CODES_HELP,
    },
    width,
  );
}

function commandHelp(command: CommandSpec, width: number): string {
  const argument = command.argument === undefined ? '' : ` ${command.argument}`;
  return formatHelpPage(
    {
      usage: `${PROGRAM_NAME} ${command.name} [options]${argument}`,
      description: command.description,
      sections: [{ title: 'Options:', items: [...command.options, HELP_OPTION].map(optionItem) }],
      // As in the commander program, only the workers' help pages end with the exit codes.
      after: WORKER_COMMANDS.includes(command) ? EXIT_CODES_HELP : '',
    },
    width,
  );
}

/** Builds the command's term in the program's list as commander does: name, `[options]`, argument. */
function commandTerm(command: CommandSpec): string {
  const options = command.options.length > 0 ? ' [options]' : '';
  const argument = command.argument === undefined ? '' : ` ${command.argument}`;
  return `${command.name}${options}${argument}`;
}

function optionItem(option: OptionSpec): HelpItem {
  return { term: option.flags, description: option.description };
}

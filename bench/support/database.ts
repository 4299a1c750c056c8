import pg from 'pg';

/** Databases of one benchmark run, created on the benchmark server and dropped afterwards. */

export interface BenchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createBenchDatabase(
  serverUrl: string,
  label: string,
  options: { template?: string } = {},
): Promise<BenchDatabase> {
  const name = `zbox_bench_${label}_${process.pid}`;
  await runAdminStatement(serverUrl, (client) => {
    const template =
      options.template === undefined
        ? ''
        : ` TEMPLATE ${client.escapeIdentifier(options.template)} STRATEGY FILE_COPY`;
    return `CREATE DATABASE ${client.escapeIdentifier(name)}${template}`;
  });
  return {
    name,
    url: withDatabase(serverUrl, name),
    drop: () =>
      runAdminStatement(
        serverUrl,
        (client) => `DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`,
      ),
  };
}

async function runAdminStatement(url: string, statement: (client: pg.Client) => string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(statement(client));
  } finally {
    await client.end();
  }
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

/** Public types of the embedded database, re-exported by `../embedded.ts`. */
import type { Logger } from '../../output/logger.js';

export interface EmbeddedDatabase {
  /** postgres:// URL of the database `zbox` (or `options.database`) on the embedded server, created when missing. It contains the password, so never log it. */
  url: string;
  /** True when this process started the server. */
  started: boolean;
  /** Ends this process's use. The process that started the server stops it, but only once no other process uses it. Idempotent. */
  release(): Promise<void>;
}

export interface EmbeddedDatabaseOptions {
  /** Data folder; the CLI defaults it to `.zbox-data` under the working directory. */
  dataDir: string;
  logger: Logger;
  /** Database to connect to, created when missing. Default `zbox`. */
  database?: string;
}

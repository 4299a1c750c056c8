/** Constants shared by several files of the embedded database. */

export const SUPERUSER = 'postgres';
/** PostgreSQL does not run as root, so a root process runs the server as this OS user. */
export const SERVER_OS_USER = 'postgres';
/** The machine's own PostgreSQL usually listens here; the embedded server never does. */
export const RESERVED_PORT = 5432;

export const READY_TIMEOUT_MS = 60_000;
export const POLL_MS = 100;

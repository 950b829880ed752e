/** Load the sqlite-prefix extension into a better-sqlite3 Database or a node:sqlite DatabaseSync. */
export function load(db: { loadExtension(path: string): unknown }, path?: string): void;
/** The prefix.so load() would use: $SQLITE_PREFIX_PATH, the bundled one, or make install's. */
export function getLoadablePath(): string;
/** Node's node:sqlite module (Node 22.5+), or an Error naming the Node version and the alternative. */
export function nodeSqlite(): typeof import('node:sqlite');
export const version: string;

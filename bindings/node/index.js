'use strict';
// sqlite-prefix for Node: load the extension into a better-sqlite3 Database or a node:sqlite DatabaseSync.
//
//   const Database = require('better-sqlite3');
//   const prefix = require('sqlite-prefix');
//   const db = new Database(':memory:');
//   prefix.load(db);
//
// The extension is looked up, in order: the path argument; $SQLITE_PREFIX_PATH; this platform's build in the
// package (prebuilt/<platform>-<arch>/, as make dist packs them: linux-x64, linux-arm64, darwin-arm64, ...);
// prefix.so in this package (make node-package); make install's places (/usr/local/lib/sqlite-prefix, /usr/lib/sqlite-prefix).
const fs = require('fs');
const path = require('path');

const version = '0.1.0';

function getLoadablePath() {
  const env = process.env.SQLITE_PREFIX_PATH;
  if (env) {
    if (fs.existsSync(env)) return env;
    throw new Error(`sqlite-prefix: SQLITE_PREFIX_PATH is '${env}', which is not a file`);
  }
  const lib = process.platform === 'darwin' ? 'prefix.dylib' : 'prefix.so';
  const looked = [path.join(__dirname, 'prebuilt', `${process.platform}-${process.arch}`, lib), path.join(__dirname, lib),
                  `/usr/local/lib/sqlite-prefix/${lib}`, `/usr/lib/sqlite-prefix/${lib}`];
  for (const p of looked) if (fs.existsSync(p)) return p;
  throw new Error(`sqlite-prefix: ${lib} not found for ${process.platform}-${process.arch} (looked in ${looked.join(', ')}). Build it (make, in the ` +
                  'sqlite-prefix source tree) and set SQLITE_PREFIX_PATH=/path/to/dist/prefix.so, run make install, or pass load(db, path)');
}

function load(db, file) {
  if (!db || typeof db.loadExtension !== 'function') {
    throw new TypeError('sqlite-prefix: load(db) takes a better-sqlite3 Database, or a node:sqlite DatabaseSync ' +
                        'opened with { allowExtension: true } (Node 22.5 and later)');
  }
  const p = file || getLoadablePath();
  if (typeof db.enableLoadExtension === 'function') {   // node:sqlite
    try {
      db.enableLoadExtension(true);
    } catch (e) {
      throw new Error('sqlite-prefix: this node:sqlite database does not allow extensions: open it with ' +
                      `new DatabaseSync(file, { allowExtension: true }) (${e.message})`);
    }
    try { db.loadExtension(p); } finally { db.enableLoadExtension(false); }
    return;
  }
  db.loadExtension(p);   // better-sqlite3: the entry point sqlite3_prefix_init comes from the file name
}

// Node's built-in node:sqlite, where this Node has it (22.5 and later), else a clear error instead of Node's
// ERR_UNKNOWN_BUILTIN_MODULE: const { DatabaseSync } = prefix.nodeSqlite();
function nodeSqlite() {
  try {
    return require('node:sqlite');
  } catch (e) {
    throw new Error(`sqlite-prefix: node:sqlite needs Node 22.5 or later; this is Node ${process.version}. ` +
                    'Use better-sqlite3 (npm install better-sqlite3) with prefix.load(db), or a newer Node');
  }
}

module.exports = { load, getLoadablePath, nodeSqlite, version };

'use strict';
// Tests of the Node package (make test-bindings runs them with better-sqlite3 built from the npm registry).
const assert = require('assert');
const path = require('path');
const prefix = require('./index.js');

const model = path.join(process.env.PREFIX_MODEL_DIR || '../shared/models', 'stories260K.gguf');
let failed = 0;
function check(name, fn) {
  try { fn(); console.log(`PASS node: ${name}`); } catch (e) { failed++; console.log(`FAIL node: ${name}: ${e.message}`); }
}

let Database = null;
try { Database = require(process.env.BETTER_SQLITE3 || 'better-sqlite3'); } catch (e) { /* reported below */ }
check('better-sqlite3 is installed (npm install better-sqlite3)', () => assert.ok(Database));
if (Database) {
  const db = new Database(':memory:');
  check('load(db) and prefix_version()', () => {
    prefix.load(db);
    assert.strictEqual(db.prepare('SELECT prefix_version() AS v').get().v, prefix.version);
  });
  check('train from rows and generate with the prefix', () => {
    db.prepare("SELECT prefix_model_load('m', ?)").get(model);
    db.exec('CREATE TABLE pairs(prompt TEXT, completion TEXT)');
    const ins = db.prepare('INSERT INTO pairs VALUES (?, ?)');
    ins.run('The day was', ' bright and sunny.\n');
    ins.run('The dog was', ' happy in the sun.\n');
    const { b } = db.prepare(`SELECT prefix_train('m', 'SELECT prompt, completion FROM pairs', '{"max_steps": 200, "add_eos": false}') AS b`).get();
    assert.ok(Buffer.isBuffer(b));
    const t = db.prepare(`SELECT prefix_generate('m', ?, 'The dog was', '{"stop": "\\n"}') AS t`).get(b).t;
    assert.strictEqual(t, ' happy in the sun.');
  });
  check('errors reach Node with the extension text', () => {
    assert.throws(() => db.prepare("SELECT prefix_generate('nope', NULL, 'x')").get(), /prefix_generate: no model named 'nope' is loaded/);
  });
  check('a stream is read row by row', () => {
    const rows = db.prepare(`SELECT piece FROM prefix_generate_stream('m', NULL, 'Once upon a time', '{"max_tokens": 5}')`).all();
    assert.strictEqual(rows.map(r => r.piece).join(''), ', there was a little');
  });
}
check('load() refuses what is not a database, saying what it takes', () => {
  assert.throws(() => prefix.load({}), /better-sqlite3 Database, or a node:sqlite DatabaseSync/);
});
check('a missing SQLITE_PREFIX_PATH is named', () => {
  const old = process.env.SQLITE_PREFIX_PATH;
  process.env.SQLITE_PREFIX_PATH = '/nonexistent/prefix.so';
  try { assert.throws(() => prefix.getLoadablePath(), /\/nonexistent\/prefix\.so/); } finally { process.env.SQLITE_PREFIX_PATH = old; }
});
let sqliteMod = null;
try { sqliteMod = require('node:sqlite'); } catch (e) { /* Node < 22.5 */ }
check('nodeSqlite(): the module where Node has it, else an error naming the Node version', () => {
  if (sqliteMod) assert.strictEqual(prefix.nodeSqlite(), sqliteMod);
  else assert.throws(() => prefix.nodeSqlite(), new RegExp(`node:sqlite needs Node 22\\.5 or later; this is Node ${process.version.replace(/\./g, '\\.')}`));
});
if (sqliteMod) {
  check('node:sqlite: load(db) with allowExtension', () => {
    const d = new sqliteMod.DatabaseSync(':memory:', { allowExtension: true });
    prefix.load(d);
    assert.strictEqual(d.prepare('SELECT prefix_version() AS v').get().v, prefix.version);
  });
} else console.log(`# node:sqlite is not in Node ${process.version} (22.5+): its path is not run here`);
process.exit(failed ? 1 : 0);

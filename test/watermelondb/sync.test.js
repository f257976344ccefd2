'use strict'
// The real WatermelonDB client against `bin/node serve`.
//
// Each test starts its own cloud node (bin/node init, user add, serve
// on 127.0.0.1:0) and drives WatermelonDB databases (LokiJS, in
// memory) with WatermelonDB's own synchronize(): the code below only
// makes the HTTP calls, as a Hikma or WatermelonDB app does. The schema
// mirrors the patients table of codec/schema.
//
// Run with `node --test` in this directory after `make build`
// (CLINICSYNC_NODE_BIN overrides the binary). With CLINICSYNC_WMDB_PG
// set to a PostgreSQL server's URL without a database name (ending in
// /), each cloud keeps its store there instead, one database per cloud,
// t1, t2, ... (which must exist): postgres_test.go runs this file so,
// on a throwaway cluster.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawn, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { Database, Model, appSchema, tableSchema } = require('@nozbe/watermelondb')
const LokiJSAdapter = require('@nozbe/watermelondb/adapters/lokijs').default
const { synchronize } = require('@nozbe/watermelondb/sync')
const logger = require('@nozbe/watermelondb/utils/common/logger').default

const NODE_BIN = process.env.CLINICSYNC_NODE_BIN || path.resolve(__dirname, '../../bin/node')
const EMAIL = 'nurse@example.org'
const PASSWORD = 'correct horse battery'

// WatermelonDB reports what it takes for server bugs as logged errors,
// not exceptions: a created record that exists locally (the server
// echoed a push as created), a created record it deleted locally (the
// resurrection pitfall), an updated record that does not exist locally
// (the server sent a row new to this device as updated), and so on.
// Collect them, and fail a test that caused any.
const syncErrors = []
for (const level of ['error', 'warn']) {
  logger[level] = (...messages) => {
    const text = messages.map((m) => (m instanceof Error ? m.message : String(m))).join(' ')
    if (text.startsWith('[Sync]')) syncErrors.push(text)
  }
}
logger.log = () => {} // the adapter's progress lines

// ---- schema: patients as in codec/schema (mobile schema v9) ----

const schema = appSchema({
  version: 1,
  tables: [
    tableSchema({
      name: 'patients',
      columns: [
        { name: 'given_name', type: 'string' },
        { name: 'surname', type: 'string' },
        { name: 'date_of_birth', type: 'string' },
        { name: 'citizenship', type: 'string' },
        { name: 'hometown', type: 'string' },
        { name: 'phone', type: 'string' },
        { name: 'sex', type: 'string' },
        { name: 'camp', type: 'string', isOptional: true },
        { name: 'additional_data', type: 'string' },
        { name: 'metadata', type: 'string' },
        { name: 'photo_url', type: 'string', isOptional: true },
        { name: 'is_deleted', type: 'boolean' },
        { name: 'deleted_at', type: 'number', isOptional: true },
        { name: 'created_at', type: 'number' },
        { name: 'updated_at', type: 'number' },
        { name: 'government_id', type: 'string' },
        { name: 'external_patient_id', type: 'string' },
        { name: 'primary_clinic_id', type: 'string', isOptional: true },
        { name: 'last_modified_by', type: 'string', isOptional: true },
      ],
    }),
    // A device-local table, as the Hikma app's event_logs: the real
    // client pushes it too, and the server skips it.
    tableSchema({
      name: 'event_logs',
      columns: [
        { name: 'action', type: 'string' },
        { name: 'created_at', type: 'number' },
        { name: 'updated_at', type: 'number' },
      ],
    }),
  ],
})

// Models touch created_at and updated_at as an app's @date fields do.
class Patient extends Model {
  static table = 'patients'
  get createdAt() {
    return this._getRaw('created_at')
  }
  get updatedAt() {
    return this._getRaw('updated_at')
  }
}

class EventLog extends Model {
  static table = 'event_logs'
  get createdAt() {
    return this._getRaw('created_at')
  }
  get updatedAt() {
    return this._getRaw('updated_at')
  }
}

// ---- the cloud node ----

// servers still running; killed if the test process ends without
// stopping them (a failed hook).
const servers = new Set()
process.on('exit', () => {
  for (const p of servers) p.kill('SIGKILL')
})

// startCloud inits a cloud node in a temporary directory, adds the user
// and serves it; it is stopped (SIGTERM, exit 0) when the test ends.
let clouds = 0
async function startCloud(t, policy = 'merge') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clinicsync-wmdb-'))
  const data = path.join(dir, 'cloud')
  const store = process.env.CLINICSYNC_WMDB_PG ? ['--store', `${process.env.CLINICSYNC_WMDB_PG}t${++clouds}?sslmode=disable`] : []
  execFileSync(NODE_BIN, ['init', '--data', data, '--kind', 'cloud', '--clinic', 'c1', ...store])
  execFileSync(NODE_BIN, ['user', 'add', '--data', data, '--email', EMAIL, '--password', PASSWORD])
  const proc = spawn(
    NODE_BIN,
    ['serve', '--data', data, '--http', '127.0.0.1:0', '--push-policy', policy, '--rate-limit', '0'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let stderr = ''
  proc.stderr.on('data', (b) => {
    stderr += b
  })
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })))
  const url = await new Promise((resolve, reject) => {
    let out = ''
    proc.stdout.on('data', (b) => {
      out += b
      const nl = out.indexOf('\n')
      if (nl >= 0) {
        const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(out.slice(0, nl))
        m ? resolve(m[1]) : reject(new Error(`serve printed ${JSON.stringify(out)}`))
      }
    })
    exited.then(({ code }) => reject(new Error(`serve exited ${code}: ${stderr}`)))
  })
  servers.add(proc)
  t.after(async () => {
    proc.kill('SIGTERM')
    const stuck = setTimeout(() => proc.kill('SIGKILL'), 15000)
    const { code } = await exited
    clearTimeout(stuck)
    servers.delete(proc)
    fs.rmSync(dir, { recursive: true, force: true })
    assert.equal(code, 0, `serve exit code; stderr:\n${stderr}`)
  })
  return { url, log: () => stderr }
}

// ---- devices ----

class HttpError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}: ${body}`)
    this.status = status
  }
}

const basic = (email, password) => 'Basic ' + Buffer.from(`${email}:${password}`).toString('base64')

let dbCount = 0

// device is one WatermelonDB database syncing with a cloud. shape
// 'hikma' pushes the bare changes object with last_pulled_at in the
// query (the Hikma app); 'watermelon' pushes {changes, lastPulledAt}.
function device(cloud, name, shape = 'watermelon') {
  const adapter = new LokiJSAdapter({
    schema,
    useWebWorker: false,
    useIncrementalIndexedDB: false,
    dbName: `${name}-${++dbCount}`,
    // In memory (no IndexedDB in Node); no autosave timer to keep the
    // process alive.
    extraLokiOptions: { autosave: false },
  })
  const db = new Database({ adapter, modelClasses: [Patient, EventLog] })
  const dev = {
    name,
    db,
    pushes: 0,
    // sync runs WatermelonDB's synchronize(). beforePush runs before the
    // push is sent (a race), dropResponse loses the push's answer after
    // the server applied it.
    async sync({ beforePush, dropResponse, auth = basic(EMAIL, PASSWORD) } = {}) {
      await synchronize({
        database: db,
        pullChanges: async ({ lastPulledAt, schemaVersion, migration }) => {
          const q = `last_pulled_at=${lastPulledAt}&schema_version=${schemaVersion}&migration=${encodeURIComponent(JSON.stringify(migration))}`
          const res = await fetch(`${cloud.url}/api/v2/sync?${q}`, { headers: { Authorization: auth } })
          if (!res.ok) throw new HttpError(res.status, await res.text())
          const { changes, timestamp } = await res.json()
          return { changes, timestamp }
        },
        pushChanges: async ({ changes, lastPulledAt }) => {
          if (beforePush) await beforePush()
          const body = shape === 'hikma' ? changes : { changes, lastPulledAt }
          const res = await fetch(`${cloud.url}/api/v2/sync?last_pulled_at=${lastPulledAt}`, {
            method: 'POST',
            headers: { Authorization: auth, 'Content-Type': 'application/json' },
            body: JSON.stringify(body),
          })
          if (!res.ok) throw new HttpError(res.status, await res.text())
          const answer = await res.json()
          assert.equal(answer.success, true)
          dev.pushes++
          if (dropResponse) throw new Error('push answer lost')
          return { experimentalRejectedIds: answer.experimentalRejectedIds }
        },
      })
    },
    async create(id, fields = {}) {
      return db.write(() =>
        db.get('patients').create((r) => {
          r._raw.id = id
          for (const [k, v] of Object.entries({ ...patientFields(), ...fields })) r._setRaw(k, v)
        }),
      )
    },
    async update(id, fields) {
      const rec = await db.get('patients').find(id)
      await db.write(() =>
        rec.update((r) => {
          for (const [k, v] of Object.entries(fields)) r._setRaw(k, v)
        }),
      )
    },
    async remove(id) {
      const rec = await db.get('patients').find(id)
      await db.write(() => rec.markAsDeleted())
    },
    async log(action) {
      return db.write(() => db.get('event_logs').create((r) => r._setRaw('action', action)))
    },
    // raw returns a patient's columns and sync status, or null.
    async raw(id) {
      const rows = await db.get('patients').query().fetch()
      const rec = rows.find((r) => r.id === id)
      return rec ? { ...rec._raw } : null
    },
    async ids() {
      return (await db.get('patients').query().fetch()).map((r) => r.id).sort()
    },
  }
  return dev
}

function patientFields() {
  return {
    given_name: 'Amina',
    surname: 'Haddad',
    date_of_birth: '1990-02-28',
    citizenship: 'JO',
    hometown: 'Irbid',
    phone: '0790000000',
    sex: 'female',
    camp: null,
    additional_data: JSON.stringify({ blood_type: 'O+', allergies: ['penicillin'] }),
    metadata: JSON.stringify({ source: 'wmdb-test' }),
    photo_url: null,
    is_deleted: false,
    deleted_at: null,
    government_id: 'G-1',
    external_patient_id: 'E-1',
    primary_clinic_id: 'c1',
    last_modified_by: null,
  }
}

// columns drops the sync metadata of a raw record.
function columns(raw) {
  if (!raw) return raw
  const { _status, _changed, ...cols } = raw
  return cols
}

async function expectSynced(dev, id) {
  const raw = await dev.raw(id)
  assert.ok(raw, `${dev.name} lacks ${id}`)
  assert.equal(raw._status, 'synced', `${dev.name}/${id} status`)
  assert.equal(raw._changed, '', `${dev.name}/${id} _changed`)
  return raw
}

// noSyncErrors fails the test when WatermelonDB logged a sync error.
// Call it after startCloud, whose cleanup then runs first.
function noSyncErrors(t) {
  syncErrors.length = 0
  t.after(() => assert.deepEqual(syncErrors, [], 'WatermelonDB logged errors'))
}

// ---- tests ----

test('first sync, then a device pushes and another pulls identical values', async (t) => {
  const cloud = await startCloud(t)
  noSyncErrors(t)
  const a = device(cloud, 'A', 'watermelon')
  const b = device(cloud, 'B', 'hikma')
  await a.sync()
  await b.sync()
  assert.equal(await a.ids().then((x) => x.length), 0)

  await a.create('p1', { phone: '+962 79 000 0001', camp: 'North' })
  await a.log('CREATE patients p1') // device-local: pushed by the client, skipped by the server
  await a.sync()
  const sent = await expectSynced(a, 'p1')
  await b.sync()
  const got = await expectSynced(b, 'p1')
  assert.deepEqual(columns(got), columns(sent))
  assert.equal(typeof got.created_at, 'number')
  assert.deepEqual(JSON.parse(got.additional_data), { blood_type: 'O+', allergies: ['penicillin'] })

  // B edits with the Hikma push shape; A gets it; a new device's first
  // sync gets the same row.
  await b.update('p1', { hometown: 'Amman' })
  await b.sync()
  await a.sync()
  const c = device(cloud, 'C')
  await c.sync()
  const ra = await expectSynced(a, 'p1')
  const rc = await expectSynced(c, 'p1')
  assert.equal(ra.hometown, 'Amman')
  assert.deepEqual(columns(rc), columns(await b.raw('p1')))
  assert.deepEqual(columns(ra), columns(rc))
  assert.equal((await a.db.get('event_logs').query().fetch())[0]._raw._status, 'synced')
})

test('per-column conflict merge', async (t) => {
  const cloud = await startCloud(t)
  noSyncErrors(t)
  const a = device(cloud, 'A')
  const b = device(cloud, 'B')
  await a.create('p1')
  await a.sync()
  await b.sync()

  // Both edit different columns offline; A syncs first, then B: B's
  // pull merges A's phone under its own hometown, and pushes.
  await a.update('p1', { phone: '111' })
  await b.update('p1', { hometown: 'Zarqa' })
  await a.sync()
  await b.sync()
  await a.sync()
  for (const dev of [a, b]) {
    const r = await expectSynced(dev, 'p1')
    assert.equal(r.phone, '111', `${dev.name} phone`)
    assert.equal(r.hometown, 'Zarqa', `${dev.name} hometown`)
  }
  assert.deepEqual(columns(await a.raw('p1')), columns(await b.raw('p1')))

  // A race: A's edit lands on the server between B's pull and B's push.
  // The merge policy takes only the columns B changed.
  await a.update('p1', { given_name: 'Aminah' })
  await b.update('p1', { surname: 'Haddad-Saleh' })
  await b.sync({ beforePush: () => a.sync() })
  await a.sync()
  await b.sync()
  for (const dev of [a, b]) {
    const r = await expectSynced(dev, 'p1')
    assert.equal(r.given_name, 'Aminah', `${dev.name} given_name`)
    assert.equal(r.surname, 'Haddad-Saleh', `${dev.name} surname`)
    assert.equal(r.phone, '111')
  }
  assert.deepEqual(columns(await a.raw('p1')), columns(await b.raw('p1')))
})

test('deletes propagate, also to a device with local edits, and never come back', async (t) => {
  const cloud = await startCloud(t)
  noSyncErrors(t)
  const a = device(cloud, 'A')
  const b = device(cloud, 'B')
  const c = device(cloud, 'C')
  await a.create('p1')
  await a.sync()
  await b.sync()
  await c.sync()
  assert.ok(await b.raw('p1'))

  await b.update('p1', { phone: 'local edit' }) // not synced yet
  await a.remove('p1')
  await a.sync()
  assert.equal(await a.raw('p1'), null, 'the pushed tombstone is purged')
  await b.sync()
  await c.sync()
  assert.equal(await b.raw('p1'), null, 'a remote delete removes a row with local edits')
  assert.equal(await c.raw('p1'), null)

  // A row a device created, pushed, then deleted: it gets its own row
  // back as updated (never created), so the delete is not undone.
  await a.create('p2')
  await a.sync()
  await a.remove('p2')
  await a.sync()
  assert.equal(await a.raw('p2'), null)
  await b.sync()
  await c.sync()
  for (const dev of [a, b, c, device(cloud, 'D')]) {
    await dev.sync()
    await dev.sync()
    assert.deepEqual(await dev.ids(), [], `${dev.name} still has rows`)
  }
})

test('an edit racing a delete does not resurrect the row', async (t) => {
  const cloud = await startCloud(t)
  noSyncErrors(t)
  const a = device(cloud, 'A')
  const b = device(cloud, 'B')
  await a.create('p1')
  await a.sync()
  await b.sync()

  // B pulls, then A deletes p1 and syncs, then B's update arrives.
  await b.update('p1', { phone: 'too late' })
  await b.sync({
    beforePush: async () => {
      await a.remove('p1')
      await a.sync()
    },
  })
  await b.sync()
  await a.sync()
  const d = device(cloud, 'D')
  await d.sync()
  for (const dev of [a, b, d]) assert.equal(await dev.raw('p1'), null, `${dev.name} has p1`)
})

test('a lost push answer, then the re-push: exactly one copy', async (t) => {
  const cloud = await startCloud(t)
  noSyncErrors(t)
  const a = device(cloud, 'A', 'hikma')
  await a.sync()
  await a.create('p1')
  await assert.rejects(a.sync({ dropResponse: true }), /push answer lost/)
  assert.equal((await a.raw('p1'))._status, 'created', 'unacknowledged rows stay pending')
  await a.sync()
  await expectSynced(a, 'p1')
  assert.equal(a.pushes, 2)

  // The same for an update.
  await a.update('p1', { phone: '222' })
  await assert.rejects(a.sync({ dropResponse: true }), /push answer lost/)
  await a.sync()
  await expectSynced(a, 'p1')

  const b = device(cloud, 'B')
  await b.sync()
  assert.deepEqual(await b.ids(), ['p1'])
  assert.equal((await b.raw('p1')).phone, '222')
  assert.deepEqual(columns(await b.raw('p1')), columns(await a.raw('p1')))
})

test('strict policy: a conflicting push is refused with 409, the retry merges', async (t) => {
  const cloud = await startCloud(t, 'strict')
  noSyncErrors(t)
  const a = device(cloud, 'A')
  const b = device(cloud, 'B')
  await a.create('p1')
  await a.sync()
  await b.sync()

  await a.update('p1', { phone: '333' })
  await b.update('p1', { hometown: 'Aqaba' })
  await b.log('UPDATE patients p1')
  let status
  await assert.rejects(
    b.sync({ beforePush: () => a.sync() }),
    (err) => {
      status = err.status
      return true
    },
  )
  assert.equal(status, 409)
  assert.equal((await b.raw('p1'))._status, 'updated', 'nothing of a refused push is marked synced')
  // WatermelonDB's advice: sync again (pull, merge, push).
  await b.sync()
  await a.sync()
  for (const dev of [a, b]) {
    const r = await expectSynced(dev, 'p1')
    assert.equal(r.phone, '333')
    assert.equal(r.hometown, 'Aqaba')
  }
  // Not conflicting: accepted at once.
  await a.update('p1', { camp: 'South' })
  await a.sync()
  await b.sync()
  assert.equal((await expectSynced(b, 'p1')).camp, 'South')
})

test('merge policy: the same race is accepted and merged per column', async (t) => {
  const cloud = await startCloud(t, 'merge')
  noSyncErrors(t)
  const a = device(cloud, 'A')
  const b = device(cloud, 'B')
  await a.create('p1')
  await a.sync()
  await b.sync()
  await a.update('p1', { phone: '333' })
  await b.update('p1', { hometown: 'Aqaba' })
  await b.sync({ beforePush: () => a.sync() })
  await expectSynced(b, 'p1')
  await a.sync()
  await b.sync()
  for (const dev of [a, b]) {
    const r = await expectSynced(dev, 'p1')
    assert.equal(r.phone, '333')
    assert.equal(r.hometown, 'Aqaba')
  }
})

test('requests without valid credentials get 401 and change nothing', async (t) => {
  const cloud = await startCloud(t)
  noSyncErrors(t)
  for (const init of [{}, { headers: { Authorization: basic(EMAIL, 'wrong password') } }]) {
    const res = await fetch(`${cloud.url}/api/v2/sync?last_pulled_at=null`, init)
    assert.equal(res.status, 401)
    assert.match((await res.json()).error, /^Unauthorized/)
  }
  const res = await fetch(`${cloud.url}/api/v2/sync`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ patients: { created: [{ id: 'x1' }], updated: [], deleted: [] } }),
  })
  assert.equal(res.status, 401)

  const a = device(cloud, 'A')
  await a.create('p1')
  await assert.rejects(a.sync({ auth: basic(EMAIL, 'nope') }), (err) => err.status === 401)
  assert.equal((await a.raw('p1'))._status, 'created')
  const b = device(cloud, 'B')
  await b.sync()
  assert.deepEqual(await b.ids(), [])
  const health = await fetch(`${cloud.url}/healthz`)
  assert.equal(health.status, 200)
})

// ---- lossless normalization (README "Normalization rules") ----

test('an empty JSON-text column round-trips as the empty string', async (t) => {
  const cloud = await startCloud(t)
  noSyncErrors(t)
  const a = device(cloud, 'A')
  const b = device(cloud, 'B')
  await a.sync()
  await b.sync()
  // '' is WatermelonDB's default for a string column; the Hikma app keeps
  // JSON text in string columns. Plain text stays plain text, not quoted.
  await a.create('p1', { additional_data: '', metadata: 'not json' })
  await a.sync()
  await b.sync()
  await a.sync() // A gets its own row back
  for (const dev of [a, b]) {
    const raw = await expectSynced(dev, 'p1')
    assert.equal(raw.additional_data, '', `${dev.name}/p1 additional_data`)
    assert.equal(raw.metadata, 'not json', `${dev.name}/p1 metadata`)
  }
})

test('a garbage value is rejected with its reason and stays unsynced; the rest of the push syncs', async (t) => {
  const cloud = await startCloud(t)
  const { hasUnsyncedChanges } = require('@nozbe/watermelondb/sync')
  const a = device(cloud, 'A')
  const b = device(cloud, 'B')
  await a.sync()
  await b.sync()
  await a.create('p_ok')
  await a.create('p_bad', { date_of_birth: 'last spring' }) // a string column on the device, a date on the server
  // One sync of A, keeping the push answer (the reasons are for people;
  // WatermelonDB reads experimentalRejectedIds).
  const auth = basic(EMAIL, PASSWORD)
  let answer
  await synchronize({
    database: a.db,
    pullChanges: async ({ lastPulledAt }) => {
      const res = await fetch(`${cloud.url}/api/v2/sync?last_pulled_at=${lastPulledAt}`, { headers: { Authorization: auth } })
      assert.equal(res.status, 200)
      const { changes, timestamp } = await res.json()
      return { changes, timestamp }
    },
    pushChanges: async ({ changes, lastPulledAt }) => {
      const res = await fetch(`${cloud.url}/api/v2/sync`, {
        method: 'POST',
        headers: { Authorization: auth, 'Content-Type': 'application/json' },
        body: JSON.stringify({ changes, lastPulledAt }),
      })
      assert.equal(res.status, 200)
      answer = await res.json()
      return { experimentalRejectedIds: answer.experimentalRejectedIds }
    },
  })
  assert.deepEqual(answer.experimentalRejectedIds, { patients: ['p_bad'] })
  assert.equal(answer.rejected.length, 1)
  const { table, id, reason } = answer.rejected[0]
  assert.deepEqual([table, id], ['patients', 'p_bad'])
  for (const part of ['patients/p_bad.date_of_birth', '"last spring"', 'not a date']) {
    assert.ok(reason.includes(part), `reason ${JSON.stringify(reason)} lacks ${part}`)
  }

  // The rejected row stays unsynced on the device; the other one synced.
  assert.equal((await a.raw('p_bad'))._status, 'created')
  assert.equal(await hasUnsyncedChanges({ database: a.db }), true)
  await expectSynced(a, 'p_ok')
  // Nothing of the rejected row reached the cloud.
  await b.sync()
  assert.deepEqual(await b.ids(), ['p_ok'])

  // Fixed on the device, it syncs.
  await a.update('p_bad', { date_of_birth: '1990-05-01' })
  await a.sync()
  await expectSynced(a, 'p_bad')
  assert.equal(await hasUnsyncedChanges({ database: a.db }), false)
  await b.sync()
  assert.deepEqual(await b.ids(), ['p_bad', 'p_ok'])
  assert.equal((await b.raw('p_bad')).date_of_birth, '1990-05-01')
})

// ---- older and newer app schemas (self-contained) ----
{
  const { schemaMigrations, addColumns } = require('@nozbe/watermelondb/Schema/migrations')

  // patientsSchema is the patients table at a schema version: v9 has
  // every column of the catalog's table, v8 lacks citizenship (added
  // in v9 by `migrations`).
  const patientsSchema = (version) =>
    appSchema({
      version,
      tables: [
        tableSchema({
          name: 'patients',
          columns: schema.tables.patients.columnArray.filter((c) => version >= 9 || c.name !== 'citizenship'),
        }),
      ],
    })
  const migrations = schemaMigrations({
    migrations: [{ toVersion: 9, steps: [addColumns({ table: 'patients', columns: [{ name: 'citizenship', type: 'string' }] })] }],
  })

  // app is a WatermelonDB database at a schema version, syncing with
  // the cloud as device() does; upgrade() reopens the same data with
  // schema v9 and its migration, as an app update does.
  function app(cloud, name, version, adapterOptions = {}) {
    const adapter = new LokiJSAdapter({
      schema: patientsSchema(version),
      useWebWorker: false,
      useIncrementalIndexedDB: false,
      dbName: `${name}-${++dbCount}`,
      extraLokiOptions: { autosave: false },
      ...adapterOptions,
    })
    const db = new Database({ adapter, modelClasses: [Patient] })
    const pulls = []
    const a = {
      db,
      pulls,
      async sync(options = {}) {
        await synchronize({
          database: db,
          ...options,
          pullChanges: async ({ lastPulledAt, schemaVersion, migration }) => {
            pulls.push({ schemaVersion, migration })
            const q = `last_pulled_at=${lastPulledAt}&schema_version=${schemaVersion}&migration=${encodeURIComponent(JSON.stringify(migration))}`
            const res = await fetch(`${cloud.url}/api/v2/sync?${q}`, { headers: { Authorization: basic(EMAIL, PASSWORD) } })
            if (!res.ok) throw new HttpError(res.status, await res.text())
            const { changes, timestamp } = await res.json()
            return { changes, timestamp }
          },
          pushChanges: async ({ changes, lastPulledAt }) => {
            const res = await fetch(`${cloud.url}/api/v2/sync?last_pulled_at=${lastPulledAt}`, {
              method: 'POST',
              headers: { Authorization: basic(EMAIL, PASSWORD), 'Content-Type': 'application/json' },
              body: JSON.stringify({ changes, lastPulledAt }),
            })
            if (!res.ok) throw new HttpError(res.status, await res.text())
            const answer = await res.json()
            return { experimentalRejectedIds: answer.experimentalRejectedIds }
          },
        })
      },
      async create(id, fields = {}) {
        const known = new Set(patientsSchema(version).tables.patients.columnArray.map((c) => c.name))
        await db.write(() =>
          db.get('patients').create((r) => {
            r._raw.id = id
            for (const [k, v] of Object.entries({ ...patientFields(), ...fields })) if (known.has(k)) r._setRaw(k, v)
          }),
        )
      },
      async update(id, fields) {
        const rec = await db.get('patients').find(id)
        await db.write(() => rec.update((r) => Object.entries(fields).forEach(([k, v]) => r._setRaw(k, v))))
      },
      async raw(id) {
        const rec = await db.get('patients').find(id)
        return { ...rec._raw }
      },
      async upgrade() {
        const loki = adapter._driver.loki
        await new Promise((resolve, reject) => loki.saveDatabase((err) => (err ? reject(err) : resolve())))
        const upgraded = await adapter.testClone({ schema: patientsSchema(9), migrations })
        const next = app(cloud, name, 9, { _testLokiAdapter: upgraded._options._testLokiAdapter, dbName: adapter._options.dbName, migrations })
        next.pulls.push(...pulls)
        return next
      },
    }
    return a
  }

  test('an app on an older schema (columns missing) syncs both ways with a full-schema app', async (t) => {
    const cloud = await startCloud(t)
    noSyncErrors(t)
    const old = app(cloud, 'old', 8)
    const full = app(cloud, 'full', 9)
    await old.sync()
    await full.sync()

    // The older app creates and edits a patient: accepted, with the
    // default for the column it lacks.
    await old.create('p1', { phone: '111' })
    await old.update('p1', { hometown: 'Zarqa' })
    await old.sync()
    assert.equal((await old.raw('p1'))._status, 'synced', 'older-schema row left unsynced (rejected?)')
    await full.sync()
    const p1 = await full.raw('p1')
    assert.equal(p1.citizenship, '')
    assert.equal(p1.hometown, 'Zarqa')
    assert.equal(p1._status, 'synced')

    // The full app sets citizenship on p1 and creates p2; the older app
    // gets both (without the column it lacks) and edits p1 again, which
    // leaves citizenship as it is.
    await full.update('p1', { citizenship: 'SY' })
    await full.create('p2', { citizenship: 'JO', phone: '222' })
    await full.sync()
    await old.sync()
    assert.equal((await old.raw('p2')).phone, '222')
    assert.equal('citizenship' in (await old.raw('p2')), false)
    await old.update('p1', { phone: '333' })
    await old.sync()
    await full.sync()
    const after = await full.raw('p1')
    assert.equal(after.phone, '333')
    assert.equal(after.citizenship, 'SY', 'the older app’s update overwrote a column it lacks')
    assert.equal((await full.raw('p2')).citizenship, 'JO')
    assert.deepEqual(old.pulls.map((p) => p.schemaVersion), [8, 8, 8, 8])
  })

  test('a migration sync brings the new column’s values for rows pulled earlier', async (t) => {
    const cloud = await startCloud(t)
    noSyncErrors(t)
    const full = app(cloud, 'full', 9)
    await full.create('p1', { citizenship: 'JO' })
    await full.create('p2', { citizenship: 'SY' })
    await full.sync()
    let old = app(cloud, 'old', 8)
    await old.sync()
    assert.equal('citizenship' in (await old.raw('p1')), false)
    await old.sync()
    assert.equal(old.pulls.at(-1).migration, null)

    // The app is updated to schema v9: its migration adds citizenship
    // with the default ''. The next sync is a migration sync, and the
    // server sends the values although nothing changed since the last
    // pull.
    old = await old.upgrade()
    assert.equal((await old.raw('p1')).citizenship, '')
    await old.sync({ migrationsEnabledAtVersion: 8 })
    assert.deepEqual(old.pulls.at(-1), {
      schemaVersion: 9,
      migration: { from: 8, tables: [], columns: [{ table: 'patients', columns: ['citizenship'] }] },
    })
    for (const [id, want] of [['p1', 'JO'], ['p2', 'SY']]) {
      const r = await old.raw(id)
      assert.equal(r.citizenship, want, `${id}.citizenship after the migration sync`)
      assert.equal(r._status, 'synced')
    }
    // The next sync is an ordinary one again.
    await old.sync({ migrationsEnabledAtVersion: 8 })
    assert.equal(old.pulls.at(-1).migration, null)
  })
}

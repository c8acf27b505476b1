// Interoperability checks of a Kafka-protocol broker with kafkajs (pure JavaScript).
//
//   node interop.mjs --bootstrap HOST:PORT --prefix UNIQUE
//
// Topics and groups are named `<prefix>-kafkajs-...` and created through the
// admin API. One line per case (`ok NAME` / `FAIL NAME: reason`), then
// `N passed, M failed`; exit status 1 if any case failed. Every wait is bounded
// (WAIT_MS), and a watchdog ends a run that hangs anyway.
import { parseArgs } from 'node:util'
import kafkajs from 'kafkajs'

const { Kafka, Partitioners, CompressionTypes, logLevel } = kafkajs

const WAIT_MS = 30_000
const T0 = (Math.floor(Date.now() / 1000) - 3600) * 1000 // explicit timestamps, an hour ago

class Failure extends Error {}
const check = (cond, msg) => { if (!cond) throw new Failure(msg) }
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function waitUntil (cond, what, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Failure(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)
    await sleep(50)
  }
}

function withTimeout (promise, what, timeoutMs = WAIT_MS) {
  let timer
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Failure(`timed out after ${timeoutMs / 1000} s: ${what}`)), timeoutMs)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// Java Kafka's Utils.murmur2 (a signed 32-bit int), written here independently of kafkajs.
function murmur2 (buf) {
  const m = 0x5bd1e995
  const len = buf.length
  const whole = len - (len % 4)
  let h = (0x9747b28c ^ len) | 0
  for (let i = 0; i < whole; i += 4) {
    let k = buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24)
    k = Math.imul(k, m)
    k ^= k >>> 24
    k = Math.imul(k, m)
    h = Math.imul(h, m) ^ k
  }
  const rest = len % 4
  if (rest === 3) h ^= buf[whole + 2] << 16
  if (rest >= 2) h ^= buf[whole + 1] << 8
  if (rest >= 1) h = Math.imul(h ^ buf[whole], m)
  h ^= h >>> 13
  h = Math.imul(h, m)
  return (h ^ (h >>> 15)) | 0
}
const keyPartition = (key, partitions) => (murmur2(key) & 0x7fffffff) % partitions

// Java's UtilsTest vectors.
const MURMUR2_VECTORS = {
  21: -973932308,
  foobar: -790332482,
  abc: 479470107,
  'a-little-bit-long-string': -985981536,
  'a-little-bit-longer-string': -1486304829,
  lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8: -58897971
}

// ---------------------------------------------------------------- helpers

// A record as produced: key/value Buffers (or null), headers [[name, Buffer], ...], timestamp ms.
const rec = (key, value, headers, timestamp) => ({
  key: key === null ? null : Buffer.from(key),
  value: value === null ? null : Buffer.from(value),
  headers,
  timestamp
})

// kafkajs headers are an object; a repeated name takes an array of values.
function toKafkajsHeaders (headers) {
  const out = {}
  for (const [name, value] of headers) {
    out[name] = name in out ? [].concat(out[name], value) : value
  }
  return out
}

function fromKafkajsHeaders (headers) {
  return Object.entries(headers ?? {}).flatMap(([name, v]) => (Array.isArray(v) ? v : [v]).map(x => [name, x]))
}

const show = r => JSON.stringify({
  key: r.key?.toString(), value: r.value?.toString(), timestamp: r.timestamp,
  headers: r.headers.map(([n, v]) => [n, v?.toString()])
})

function makeClient (bootstrap, prefix) {
  const kafka = new Kafka({
    clientId: `${prefix}-interop`,
    brokers: [bootstrap],
    logLevel: logLevel.ERROR, // kafkajs logs every rebalance and retry at INFO/WARN
    // ...and a heartbeat answered "rebalancing" (expected in the group case) as an ERROR:
    // drop those, print the rest on stderr.
    logCreator: () => ({ namespace, log }) => {
      if (!/rebalancing/.test(log.error ?? '')) console.error(`kafkajs ${namespace}: ${log.message} ${log.error ?? ''}`)
    },
    connectionTimeout: 10_000,
    requestTimeout: WAIT_MS
  })
  const admin = kafka.admin()

  async function createTopic (topic, numPartitions) {
    await withTimeout(admin.createTopics({ topics: [{ topic, numPartitions, replicationFactor: 1 }], waitForLeaders: true, timeout: WAIT_MS }), `creating ${topic}`)
  }

  // Produces `recs`; with `oneByOne` each record is its own request, so its partition
  // and offset are known; else all go in one request (one batch per partition) and
  // positions are taken from each partition's base offset in send order.
  async function produce (topic, recs, { compression, oneByOne = false } = {}) {
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
    await withTimeout(producer.connect(), 'producer connect')
    const message = r => ({ key: r.key, value: r.value, headers: toKafkajsHeaders(r.headers), timestamp: String(r.timestamp) })
    const out = []
    try {
      if (oneByOne) {
        for (const r of recs) {
          const [md] = await withTimeout(producer.send({ topic, compression, messages: [message(r)] }), 'produce')
          out.push({ ...r, partition: md.partition, offset: Number(md.baseOffset) })
        }
      } else {
        const mds = await withTimeout(producer.send({ topic, compression, messages: recs.map(message) }), 'produce')
        check(mds.length === 1, 'one-request produce is used on single-partition topics only')
        recs.forEach((r, i) => out.push({ ...r, partition: mds[0].partition, offset: Number(mds[0].baseOffset) + i }))
      }
    } finally {
      await producer.disconnect()
    }
    return out
  }

  // Reads every partition of `topic` from the start through a fresh group.
  async function read (topic, count, groupId) {
    const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200 })
    const got = []
    await withTimeout(consumer.connect(), 'consumer connect')
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ partition, message: m }) => {
          got.push({ key: m.key, value: m.value, headers: fromKafkajsHeaders(m.headers), timestamp: Number(m.timestamp), partition, offset: Number(m.offset) })
        }
      })
      await waitUntil(() => got.length >= count, `${count} records (read ${got.length})`).catch(() => {})
    } finally {
      await consumer.disconnect()
    }
    return got
  }

  async function groupOffsets (groupId, topic) {
    const [res] = await withTimeout(admin.fetchOffsets({ groupId, topics: [topic] }), 'fetchOffsets')
    return Object.fromEntries(res.partitions.filter(p => Number(p.offset) >= 0).map(p => [p.partition, Number(p.offset)]))
  }

  return { kafka, admin, createTopic, produce, read, groupOffsets }
}

async function checkReadBack (cl, topic, partitions, produced, groupId) {
  const got = await cl.read(topic, produced.length, groupId)
  check(got.length === produced.length, `read ${got.length} records of ${produced.length}`)
  for (let p = 0; p < partitions; p++) {
    const want = produced.filter(r => r.partition === p).sort((a, b) => a.offset - b.offset)
    const have = got.filter(r => r.partition === p)
    check(JSON.stringify(have.map(r => r.offset)) === JSON.stringify(want.map(r => r.offset)), `partition ${p}: offsets ${have.map(r => r.offset)} != ${want.map(r => r.offset)}`)
    want.forEach((w, i) => check(show(w) === show(have[i]), `partition ${p} offset ${w.offset}: read ${show(have[i])}, produced ${show(w)}`))
  }
}

// ---------------------------------------------------------------- cases

async function caseProduceConsume (cl, prefix) {
  const topic = `${prefix}-basic`
  await cl.createTopic(topic, 2)
  const recs = [
    rec('k0', 'v0', [], T0),
    rec('k1', 'v1', [['h1', Buffer.from('one')]], T0 + 1000),
    rec('k2', 'v2', [['h1', Buffer.from('one')], ['h2', Buffer.from('two')]], T0 + 2000),
    rec('k3', '', [['dup', Buffer.from('a')], ['dup', Buffer.from('b')]], T0 + 3000),
    rec(null, 'no key', [['h', Buffer.from('')]], T0 + 4000),
    rec('k5', null, [], T0 + 5000)
  ]
  for (let i = 0; i < 20; i++) recs.push(rec(`key-${i}`, `value-${i}`, [['i', Buffer.from(String(i))]], T0 + 6000 + i))
  const produced = await cl.produce(topic, recs, { oneByOne: true })
  await checkReadBack(cl, topic, 2, produced, `${prefix}-basic-reader`)
}

async function caseMurmur2 (cl, prefix) {
  for (const [k, want] of Object.entries(MURMUR2_VECTORS)) {
    check(murmur2(Buffer.from(k)) === want, `murmur2 self-test on ${k}: ${murmur2(Buffer.from(k))} != ${want}`)
  }
  // kafkajs's DefaultPartitioner, called directly, against ours.
  const partitioner = Partitioners.DefaultPartitioner()
  const partitionMetadata = [0, 1, 2].map(partitionId => ({ partitionId, leader: 1 }))
  for (let i = 0; i < 200; i++) {
    const key = Buffer.from(`k-${i}-${'x'.repeat(i % 5)}`)
    const got = partitioner({ topic: 't', partitionMetadata, message: { key } })
    check(got === keyPartition(key, 3), `DefaultPartitioner put ${key} on ${got}, murmur2 says ${keyPartition(key, 3)}`)
  }
  const topic = `${prefix}-keyed`
  await cl.createTopic(topic, 3)
  const recs = Array.from({ length: 30 }, (_, i) => rec(`customer-${i}`, 'x', [], T0 + i))
  const produced = await cl.produce(topic, recs, { oneByOne: true })
  for (const r of produced) {
    check(r.partition === keyPartition(r.key, 3), `key ${r.key} went to partition ${r.partition}, murmur2 says ${keyPartition(r.key, 3)}`)
  }
  check(new Set(produced.map(r => r.partition)).size === 3, '30 keys did not reach all 3 partitions')
  await checkReadBack(cl, topic, 3, produced, `${prefix}-keyed-reader`)
}

// A group member that processes one record at a time and commits it before going on.
// `log` gets {member, partition, offset, ok} per processing, pushed before the commit.
async function startMember (cl, name, groupId, topic, log) {
  const consumer = cl.kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1000, rebalanceTimeout: 30_000, maxWaitTimeInMs: 200 })
  const member = { name, consumer, owned: new Set(), assignedEver: false, error: null }
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    member.owned = new Set(payload.memberAssignment[topic] ?? [])
    member.assignedEver ||= member.owned.size > 0
  })
  consumer.on(consumer.events.REBALANCING, () => { member.owned = new Set() })
  consumer.on(consumer.events.CRASH, ({ payload }) => { member.error = payload.error })
  await withTimeout(consumer.connect(), `${name} connect`)
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false, // an unresolved record is fetched again (a failed commit)
    eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
      for (const m of batch.messages) {
        if (!isRunning() || isStale()) break
        const entry = { member: name, partition: batch.partition, offset: Number(m.offset), ok: null }
        log.push(entry)
        try {
          await consumer.commitOffsets([{ topic, partition: batch.partition, offset: String(entry.offset + 1) }])
          entry.ok = true
        } catch {
          entry.ok = false
          break
        }
        resolveOffset(m.offset)
        await heartbeat()
      }
    }
  })
  return member
}

async function caseGroup (cl, prefix) {
  const topic = `${prefix}-group`
  const groupId = topic
  const parts = 6
  await cl.createTopic(topic, parts)
  const log = []
  const produced = new Set()
  const members = {}
  let n = 0
  const produceRound = async count => {
    const recs = Array.from({ length: count }, (_, i) => rec(`g${n + i}`, 'w', [], T0 + n + i))
    n += count
    for (const r of await cl.produce(topic, recs, { oneByOne: true })) produced.add(`${r.partition}/${r.offset}`)
  }
  const settled = names => waitUntil(() => {
    for (const m of Object.values(members)) check(!m.error, `member ${m.name}: ${m.error}`)
    const owned = names.map(x => members[x].owned)
    const union = new Set(owned.flatMap(s => [...s]))
    return owned.every(s => s.size > 0) && owned.reduce((a, s) => a + s.size, 0) === parts && union.size === parts
  }, `members ${names} to share all ${parts} partitions`)
  const missing = () => {
    const done = new Set(log.filter(e => e.ok).map(e => `${e.partition}/${e.offset}`))
    return [...produced].filter(x => !done.has(x))
  }
  const allDone = () => waitUntil(() => missing().length === 0, 'every record processed and committed')
    .catch(e => { throw new Failure(`${e.message} (${missing().length} of ${produced.size} missing, partition/offset ${missing().slice(0, 4)}...)`) })

  try {
    await produceRound(60)
    members.A = await startMember(cl, 'A', groupId, topic, log)
    members.B = await startMember(cl, 'B', groupId, topic, log)
    await settled(['A', 'B'])
    await allDone()
    members.C = await startMember(cl, 'C', groupId, topic, log)
    await settled(['A', 'B', 'C'])
    await produceRound(60)
    await allDone()
    await withTimeout(members.B.consumer.disconnect(), 'member B leaving')
    await settled(['A', 'C'])
    await produceRound(60)
    await allDone()
  } finally {
    await Promise.allSettled(Object.values(members).map(m => withTimeout(m.consumer.disconnect(), `${m.name} disconnect`)))
  }
  for (const m of Object.values(members)) {
    check(!m.error, `member ${m.name}: ${m.error}`)
    check(m.assignedEver, `member ${m.name} never got a partition`)
  }
  const committedBy = new Map()
  const last = {}
  for (const e of log) {
    const id = `${e.partition}/${e.offset}`
    check(!committedBy.has(id), `partition ${e.partition} offset ${e.offset} processed by ${e.member} after ${committedBy.get(id)} committed it`)
    if (e.ok) {
      committedBy.set(id, e.member)
      last[e.partition] = e.offset + 1
    }
  }
  const got = await cl.groupOffsets(groupId, topic)
  check(JSON.stringify(got) === JSON.stringify(last), `group offsets read back ${JSON.stringify(got)}, committed ${JSON.stringify(last)}`)
}

async function caseCommitted (cl, prefix) {
  const topic = `${prefix}-committed`
  const groupId = topic
  await cl.createTopic(topic, 3)
  await cl.produce(topic, Array.from({ length: 30 }, (_, i) => rec(`c${i}`, 'c', [], T0 + i)), { oneByOne: true })
  const want = { 0: 3, 1: 1, 2: 7 }
  await withTimeout(cl.admin.setOffsets({ groupId, topic, partitions: Object.entries(want).map(([partition, offset]) => ({ partition: Number(partition), offset: String(offset) })) }), 'setOffsets')
  const got = await cl.groupOffsets(groupId, topic)
  check(JSON.stringify(got) === JSON.stringify(want), `fetchOffsets gave ${JSON.stringify(got)}, committed ${JSON.stringify(want)}`)
}

async function caseOffsetsByTime (cl, prefix) {
  const topic = `${prefix}-times`
  await cl.createTopic(topic, 1)
  const produced = await cl.produce(topic, Array.from({ length: 5 }, (_, i) => rec('t', `r${i}`, [], T0 + 1000 * i)), { oneByOne: true })
  const offs = produced.map(r => r.offset)
  // Past the last record Kafka answers -1, which kafkajs turns into the high watermark.
  for (const [ts, want] of [[T0 + 1500, offs[2]], [T0 + 2000, offs[2]], [T0 - 1, offs[0]], [T0 + 4000, offs[4]], [T0 + 4001, offs[4] + 1]]) {
    const [res] = await withTimeout(cl.admin.fetchTopicOffsetsByTimestamp(topic, ts), 'fetchTopicOffsetsByTimestamp')
    check(Number(res.offset) === want, `offset for time T0${ts >= T0 ? '+' : ''}${ts - T0} ms is ${res.offset}, want ${want}`)
  }
}

// kafkajs ships only gzip; snappy, lz4 and zstd need third-party codec packages,
// so the other codecs are covered by the Python clients.
async function caseGzip (cl, prefix) {
  const topic = `${prefix}-gzip`
  await cl.createTopic(topic, 1)
  const recs = Array.from({ length: 200 }, (_, i) => rec(`key-${i % 7}`, `gzip record ${i} `.repeat(20), [['codec', Buffer.from('gzip')], ['i', Buffer.from(String(i))]], T0 + i))
  const produced = await cl.produce(topic, recs, { compression: CompressionTypes.GZIP })
  await checkReadBack(cl, topic, 1, produced, `${prefix}-gzip-reader`)
}

// Committed records are visible to the reader (kafkajs reads committed
// records only by default), aborted ones and a fenced producer's never; a
// later commit shows the reader got past them.
async function caseTransactions (cl, prefix) {
  const topic = `${prefix}-txn`
  const transactionalId = `${prefix}-txn-id`
  await cl.createTopic(topic, 2)
  const recs = tag => Array.from({ length: 6 }, (_, i) => ({ key: `${tag}${i}`, value: tag, timestamp: String(T0 + i) }))
  const producer = async () => {
    const p = cl.kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1, transactionTimeout: 60_000 })
    await withTimeout(p.connect(), 'transactional producer connect')
    return p
  }
  const inTransaction = async (p, tag, end) => {
    const txn = await withTimeout(p.transaction(), 'begin')
    await withTimeout(txn.send({ topic, messages: recs(tag) }), `send ${tag}`)
    if (end) await withTimeout(txn[end](), `${end} ${tag}`)
    return txn
  }
  const first = await producer()
  let second
  try {
    await inTransaction(first, 'committed-', 'commit')
    await inTransaction(first, 'aborted-', 'abort')
    const zombie = await inTransaction(first, 'zombie-')
    second = await producer()
    // kafkajs takes the transactional id (fencing the first) when the
    // second producer begins its first transaction, not when it connects.
    const successor = await withTimeout(second.transaction(), 'begin (second producer)')
    // A hang fails the case (withTimeout); a refusal is the fencing expected.
    const refusal = await withTimeout(zombie.commit().then(() => null, e => e), 'zombie commit')
    check(refusal !== null, 'the first producer committed after a second one took its transactional id')
    check(['PRODUCER_FENCED', 'INVALID_PRODUCER_EPOCH'].includes(refusal.type), `the zombie's commit failed otherwise: ${refusal.type ?? refusal.name}: ${refusal.message}`)
    await withTimeout(successor.send({ topic, messages: recs('after-') }), 'send after-')
    await withTimeout(successor.commit(), 'commit after-')
  } finally {
    await first.disconnect().catch(() => {})
    if (second) await second.disconnect().catch(() => {})
  }
  const got = await cl.read(topic, 12, `${prefix}-txn-reader`)
  const keys = got.map(r => r.key.toString()).sort()
  const want = [...recs('committed-'), ...recs('after-')].map(r => r.key).sort()
  check(JSON.stringify(keys) === JSON.stringify(want), `the reader saw ${keys}, want ${want}`)
}

// Offsets committed before a broker restart, one short of each partition's
// end, and read back after it (the test restarts the broker between).
const RESTART_KEYS = Array.from({ length: 20 }, (_, i) => `restart-${i}`)
function restartOffsets () {
  const want = {}
  for (const p of [0, 1]) {
    const held = RESTART_KEYS.filter(k => keyPartition(Buffer.from(k), 2) === p).length
    if (held > 0) want[p] = held - 1
  }
  return want
}

async function caseOffsetsBeforeRestart (cl, prefix) {
  const topic = `${prefix}-restart`
  await cl.createTopic(topic, 2)
  await cl.produce(topic, RESTART_KEYS.map((k, i) => rec(k, 'r', [], T0 + i)), { oneByOne: true })
  const want = restartOffsets()
  await withTimeout(cl.admin.setOffsets({ groupId: topic, topic, partitions: Object.entries(want).map(([partition, offset]) => ({ partition: Number(partition), offset: String(offset) })) }), 'setOffsets')
  const got = await cl.groupOffsets(topic, topic)
  check(JSON.stringify(got) === JSON.stringify(want), `fetchOffsets gave ${JSON.stringify(got)}, committed ${JSON.stringify(want)}`)
}

async function caseOffsetsAfterRestart (cl, prefix) {
  const topic = `${prefix}-restart`
  const got = await cl.groupOffsets(topic, topic)
  const want = restartOffsets()
  check(JSON.stringify(got) === JSON.stringify(want), `after the restart fetchOffsets gave ${JSON.stringify(got)}, committed ${JSON.stringify(want)}`)
}

async function main () {
  const { values: a } = parseArgs({ options: { bootstrap: { type: 'string' }, prefix: { type: 'string' }, deadline: { type: 'string', default: '900' }, 'restart-phase': { type: 'string' } } })
  if (!a.bootstrap || !a.prefix) {
    console.error('usage: node interop.mjs --bootstrap HOST:PORT --prefix UNIQUE')
    process.exit(2)
  }
  setTimeout(() => { console.log('FAIL watchdog: the run did not finish in time'); process.exit(1) }, Number(a.deadline) * 1000).unref()
  const prefix = `${a.prefix}-kafkajs`
  const cl = makeClient(a.bootstrap, prefix)
  const cases = [
    ['produce-consume', caseProduceConsume], ['murmur2-partitioning', caseMurmur2],
    ['group-roundrobin', caseGroup], ['committed-offsets', caseCommitted],
    ['offsets-for-times', caseOffsetsByTime], ['compression-gzip', caseGzip],
    ['transactions', caseTransactions]
  ]
  if (a['restart-phase'] === 'before') cases.splice(0, cases.length, ['offsets-before-restart', caseOffsetsBeforeRestart])
  if (a['restart-phase'] === 'after') cases.splice(0, cases.length, ['offsets-after-restart', caseOffsetsAfterRestart])
  let passed = 0
  let failed = 0
  try {
    await withTimeout(cl.admin.connect(), 'admin connect')
  } catch (e) {
    console.log(`FAIL connect: ${e.message}`)
    console.log('0 passed, 1 failed')
    process.exit(1)
  }
  for (const [name, fn] of cases) {
    try {
      await fn(cl, prefix)
      console.log(`ok ${name}`)
      passed++
    } catch (e) {
      console.log(`FAIL ${name}: ${e instanceof Failure ? e.message : `${e.name}: ${e.message}`}`)
      failed++
    }
  }
  await cl.admin.disconnect().catch(() => {})
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(failed ? 1 : 0)
}

main()

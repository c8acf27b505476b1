// Produces one record to `orders` over SASL_SSL with kafkajs' own SASL
// implementations, then prints "ok"; any failure exits non-zero.
//
//     node sasl.mjs --bootstrap HOST:PORT --ca CA.pem --mechanism scram-sha-256 --user U --password P --value V
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import kafkajs from 'kafkajs'

const { Kafka, logLevel } = kafkajs
const { values: a } = parseArgs({
  options: {
    bootstrap: { type: 'string' },
    ca: { type: 'string' },
    mechanism: { type: 'string' },
    user: { type: 'string' },
    password: { type: 'string' },
    value: { type: 'string' }
  }
})
const kafka = new Kafka({
  clientId: 'kappa-sasl-check',
  brokers: [a.bootstrap],
  ssl: { ca: [readFileSync(a.ca, 'utf8')] },
  sasl: { mechanism: a.mechanism, username: a.user, password: a.password },
  logLevel: logLevel.NOTHING,
  connectionTimeout: 10_000,
  requestTimeout: 20_000,
  retry: { retries: 1 }
})
const producer = kafka.producer()
try {
  await producer.connect()
  await producer.send({ topic: 'orders', messages: [{ value: a.value }] })
  console.log('ok')
} catch (e) {
  console.log(`FAIL ${e.type ?? e.name}: ${e.message}`)
  process.exitCode = 1
} finally {
  await producer.disconnect().catch(() => {})
}

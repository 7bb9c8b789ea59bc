/**
 * Helpers shared by the SQL tests: the engines to run against (PGlite always; the PostgreSQL server
 * of `SECRETGATE_TEST_DATABASE_URL` when set), a fresh schema per store so that concurrent runs
 * never collide, and a saved PGlite data directory so that each file starts PGlite in a fraction
 * of `initdb`'s time.
 */
import { PGlite } from "@electric-sql/pglite"
import type * as SqlClient from "@effect/sql/SqlClient"
import { KeyRing } from "@secretgate/core"
import { PgliteClient, SqlSecretStore } from "@secretgate/sql"
import * as Execute from "../src/internal/execute.js"
import { testKey } from "./fixtures/testKey.js"
import { Effect, Layer, Redacted } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import pg from "pg"
import { afterAll } from "vitest"

/** The PostgreSQL server to test against, if any. */
export const databaseUrl: string | undefined = process.env["SECRETGATE_TEST_DATABASE_URL"] || undefined

/** Says once per file why the real-server tests are skipped. */
export const skipReason = databaseUrl === undefined
  ? "SECRETGATE_TEST_DATABASE_URL is not set: the real-server tests are skipped (PGlite tests still run)"
  : undefined

const pgliteVersion = (): string => {
  const require = createRequire(import.meta.url)
  const entry = require.resolve("@electric-sql/pglite") // <package>/dist/index.cjs
  return (JSON.parse(readFileSync(Path.join(Path.dirname(entry), "..", "package.json"), "utf8")) as { version: string }).version
}

let snapshot: Promise<Blob> | undefined

/**
 * A freshly `initdb`'d PGlite data directory as a tarball, made once per machine and PGlite version
 * (kept in the temp directory) and then read by every test file.
 */
export const pgliteSnapshot = (): Promise<Blob> => {
  snapshot ??= (async () => {
    const file = Path.join(tmpdir(), `secretgate-pglite-${pgliteVersion()}.tar`)
    if (!existsSync(file)) {
      const db = await PGlite.create()
      const dump = await db.dumpDataDir("none")
      await db.close()
      const temp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`
      writeFileSync(temp, new Uint8Array(await dump.arrayBuffer()))
      renameSync(temp, file)
    }
    return new Blob([readFileSync(file)])
  })()
  return snapshot
}

/** A schema name no other run uses. */
export const freshSchema = (): string => `sg_test_${randomBytes(6).toString("hex")}`

/** Runs statements on the test server over a connection of their own. */
export const withServer = async <A>(f: (client: pg.Client) => Promise<A>): Promise<A> => {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    return await f(client)
  } finally {
    await client.end()
  }
}

/** Drops a test schema (and everything in it). */
export const dropSchema = (schema: string): Promise<void> =>
  withServer(async (client) => {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  })

export { testKey } from "./fixtures/testKey.js"

/** What a store layer of the tests provides. */
export type StoreContext = Layer.Layer.Success<ReturnType<typeof SqlSecretStore.layerClient>>

/** An engine the suites run on. */
export interface Engine {
  readonly name: string
  /** A new client (a pool, or a PGlite database started from the saved data directory). */
  readonly client: () => Layer.Layer<SqlClient.SqlClient, unknown>
  /** A store in a fresh schema of a new client (the schema is dropped when the layer is released). */
  readonly layer: (options?: SqlSecretStore.Options) => Layer.Layer<StoreContext | SqlClient.SqlClient, unknown>
}

const withFreshSchema = <A, E, R>(options: SqlSecretStore.Options, f: (schema: string) => Layer.Layer<A, E, R>) =>
  Layer.unwrapScoped(
    Effect.map(
      Effect.acquireRelease(
        Effect.sync(() => options.schema ?? freshSchema()),
        (schema) => (databaseUrl === undefined ? Effect.void : Effect.promise(() => dropSchema(schema)))
      ),
      f
    )
  )

const storeOver = (client: Layer.Layer<SqlClient.SqlClient, unknown>, options: SqlSecretStore.Options) =>
  withFreshSchema(options, (schema) =>
    SqlSecretStore.layerClient({ keyRing: KeyRing.make([testKey]), ...options, schema }).pipe(Layer.provideMerge(client)))

let instance: Promise<PGlite> | undefined
afterAll(async () => {
  if (instance !== undefined) await (await instance).close()
})

/** PGlite: one database per test file, started from the saved data directory; a schema per store. */
export const pglite: Engine = {
  name: "pglite",
  client: () =>
    Layer.unwrapEffect(Effect.map(
      Effect.promise(() => (instance ??= pgliteSnapshot().then((loadDataDir) => PGlite.create({ loadDataDir })))),
      (db) => PgliteClient.layer({ pglite: db })
    )),
  layer: (options = {}) => storeOver(pglite.client(), options)
}

/**
 * The PostgreSQL server, with a small pool (the server is shared with other runs), opened as
 * `SqlSecretStore.layer` opens it: the store sends its statements on the pool directly.
 */
export const postgres: Engine = {
  name: "postgres",
  client: () => Execute.layerPg({ url: Redacted.make(databaseUrl!), maxConnections: 4, applicationName: "secretgate-test" }),
  layer: (options = {}) => storeOver(postgres.client(), options)
}

/** The engines of this run. */
export const engines: ReadonlyArray<Engine> = databaseUrl === undefined ? [pglite] : [pglite, postgres]

/** A fixture script (`test/fixtures/<name>.ts`) running as its own Node process. */
export interface Child {
  readonly process: ChildProcess
  /** Resolves with the first stdout line that `accept` takes. */
  readonly line: (accept: (line: string) => boolean) => Promise<string>
  /** Resolves with the exit code and stderr when the process ends. */
  readonly exited: Promise<{ readonly code: number | null; readonly stderr: string }>
}

/** Starts `node --import tsx test/fixtures/<name>.ts ...args`. */
export const startChild = (name: string, args: ReadonlyArray<string>, env: Record<string, string> = {}): Child => {
  const here = Path.dirname(fileURLToPath(import.meta.url))
  const child = spawn(process.execPath, ["--import", "tsx", Path.join(here, "fixtures", `${name}.ts`), ...args], {
    cwd: Path.resolve(here, ".."),
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on("exit", (code) => resolve({ code, stderr })))
  return {
    process: child,
    line: (accept) =>
      new Promise((resolve, reject) => {
        const look = () => {
          const found = stdout.split("\n").find(accept)
          if (found !== undefined) {
            child.stdout!.off("data", look)
            resolve(found)
          }
        }
        child.stdout!.on("data", look)
        look()
        void exited.then(({ code }) => reject(new Error(`fixture ${name} ended (${code}) first: ${stderr}`)))
      }),
    exited
  }
}

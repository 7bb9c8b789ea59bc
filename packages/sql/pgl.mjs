import { PGlite } from "@electric-sql/pglite"
let t = Date.now()
const db = await PGlite.create()
console.log("cold start ms", Date.now() - t)
t = Date.now()
const r = await db.query("select $1::timestamptz as d, $2::text[] as a, 5::int8 as b, 'x' collate \"C\" < 'Y' as c", [new Date(1700000000123), ["a","b"]])
console.log(r.rows, Date.now()-t)
try { await db.query("create table t (a text constraint t_a unique); insert into t values ('x'); ") } catch (e) { console.log("multi", e.message) }
await db.exec("create table t (a text constraint t_a unique); insert into t values ('x'); ")
try { await db.query("insert into t values ($1)", ["x"]) } catch (e) { console.log(Object.keys(e), e.code, e.constraint, e.message, e.constructor.name) }
const blob = await db.dumpDataDir("none"); console.log("dump size", blob.size)
t = Date.now()
const db2 = await PGlite.create({ loadDataDir: blob }); console.log("from dump ms", Date.now()-t)
console.log((await db2.query("select * from t")).rows)

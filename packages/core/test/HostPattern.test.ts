import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as HostPattern from "../src/HostPattern.js"

const label63 = "a".repeat(63)
const name253 = [label63, label63, label63, "a".repeat(61)].join(".")
const name254 = [label63, label63, label63, "a".repeat(62)].join(".")

describe("parse", () => {
  const accepted: ReadonlyArray<readonly [input: string, pattern: string]> = [
    ["api.example.com", "api.example.com"],
    ["API.Example.COM", "api.example.com"],
    ["*.example.com", "*.example.com"],
    ["*.EXAMPLE.com", "*.example.com"],
    ["*.a.b.example.com", "*.a.b.example.com"],
    ["*.co.uk", "*.co.uk"],
    ["localhost", "localhost"],
    ["my-api.example.com", "my-api.example.com"],
    ["a1.example.com", "a1.example.com"],
    ["1password.com", "1password.com"],
    ["bücher.example", "xn--bcher-kva.example"],
    ["BÜCHER.example", "xn--bcher-kva.example"],
    ["*.bücher.example", "*.xn--bcher-kva.example"],
    ["xn--bcher-kva.example", "xn--bcher-kva.example"],
    ["münchen.de", "xn--mnchen-3ya.de"],
    [`${label63}.com`, `${label63}.com`],
    [name253, name253],
    [`*.${name253}`, `*.${name253}`],
    ["example.0xg", "example.0xg"]
  ]

  it.each(accepted)("accepts %j as %j", (input, pattern) => {
    expect(HostPattern.parse(input)).toEqual({ ok: true, pattern })
  })

  const rejected: ReadonlyArray<readonly [rule: string, input: string, reason: RegExp]> = [
    ["empty string", "", /empty/],
    ["leading whitespace", " api.example.com", /whitespace/],
    ["trailing whitespace", "api.example.com ", /whitespace/],
    ["trailing newline", "api.example.com\n", /whitespace/],
    ["inner whitespace", "api .example.com", /whitespace/],
    ["tab", "api\t.example.com", /whitespace/],
    ["control character", "api\u0000.example.com", /control/],
    ["non-ASCII whitespace", "api\u00a0example.com", /whitespace/],
    ["https scheme", "https://api.example.com", /scheme/],
    ["http scheme", "http://api.example.com", /scheme/],
    ["scheme with wildcard", "https://*.example.com", /scheme/],
    ["path", "api.example.com/v1", /path/],
    ["trailing slash", "api.example.com/", /path/],
    ["protocol-relative", "//api.example.com", /path/],
    ["port", "api.example.com:443", /port/],
    ["empty port", "api.example.com:", /port/],
    ["port on wildcard", "*.example.com:8443", /port/],
    ["user-info", "user@api.example.com", /user-info/],
    ["user-info with password", "user:pw@api.example.com", /user-info/],
    ["query", "api.example.com?a=1", /quer/],
    ["fragment", "api.example.com#top", /fragment/],
    ["IPv4", "1.2.3.4", /IP/],
    ["IPv4 with port", "1.2.3.4:80", /port/],
    ["short IPv4", "127.1", /IP/],
    ["hex IPv4", "0x7f.0.0.1", /IP/],
    ["integer IPv4", "2130706433", /IP/],
    ["fullwidth IPv4", "１.２.３.４", /IP/],
    ["IPv6", "::1", /IP/],
    ["bracketed IPv6", "[::1]", /IP/],
    ["full IPv6", "2001:db8::1", /IP/],
    ["numeric last label", "example.123", /numeric/],
    ["hex last label", "example.0x1f", /numeric/],
    ["empty label", "a..b", /empty label/],
    ["leading dot", ".example.com", /empty label/],
    ["empty label after wildcard", "*..example.com", /empty label/],
    ["label longer than 63", `${"a".repeat(64)}.com`, /63/],
    ["punycode label longer than 63", `${"ü".repeat(60)}.com`, /63/],
    ["name longer than 253", name254, /253/],
    ["wildcard over a name longer than 253", `*.${name254}`, /253/],
    ["underscore", "api_v1.example.com", /underscore/],
    ["leading underscore", "_dmarc.example.com", /underscore/],
    ["underscore in wildcard base", "*.my_app.example.com", /underscore/],
    ["trailing dot", "api.example.com.", /trailing dot/],
    ["trailing dot on wildcard", "*.example.com.", /trailing dot/],
    ["lone *", "*", /lone "\*"/],
    ["lone *.", "*.", /trailing dot/],
    ["wildcard in the middle", "a.*.com", /wildcard/],
    ["wildcard as label prefix", "*foo.com", /wildcard/],
    ["wildcard as label suffix", "foo*.com", /wildcard/],
    ["trailing wildcard", "example.*", /wildcard/],
    ["double wildcard", "*.*.example.com", /wildcard/],
    ["double star", "**.example.com", /wildcard/],
    ["wildcard over a single label", "*.com", /two labels/],
    ["wildcard over localhost", "*.localhost", /two labels/],
    ["invalid character", "api!.example.com", /invalid character "!"/],
    ["percent-encoding", "%61pi.example.com", /invalid character "%"/],
    ["backslash", "api.example.com\\x", /invalid character/],
    ["comma", "a.com,b.com", /invalid character ","/],
    ["label starting with -", "-api.example.com", /"-"/],
    ["label ending with -", "api-.example.com", /"-"/],
    ["wildcard base label ending with -", "*.example-.com", /"-"/],
    ["invalid punycode", "xn--a.example.com", /internationalised/],
    ["IDN mapping to an invalid character", "！a.example.com", /invalid label/]
  ]

  it.each(rejected)("rejects %s (%j)", (_rule, input, reason) => {
    const result = HostPattern.parse(input)
    expect(result.ok).toBe(false)
    if (!result.ok) expect(result.reason).toMatch(reason)
  })

  it("measures names in their punycode form", () => {
    expect(name253.length).toBe(253)
    expect(name254.length).toBe(254)
    // 228 characters as typed, 254 once "中文字符测试域名例子" becomes "xn--fiq26a52h0xe67edb361lpuocn3al48a".
    const idn = `中文字符测试域名例子.${[label63, label63, label63, "a".repeat(25)].join(".")}`
    expect(idn.length).toBe(228)
    const result = HostPattern.parse(idn)
    expect(result).toEqual({ ok: false, reason: "names must be at most 253 characters" })
  })
})

describe("normalizeDestination", () => {
  const cases: ReadonlyArray<readonly [input: string, expected: HostPattern.Destination | undefined]> = [
    ["api.example.com", { kind: "name", host: "api.example.com" }],
    ["API.Example.COM", { kind: "name", host: "api.example.com" }],
    ["api.example.com.", { kind: "name", host: "api.example.com" }],
    ["API.EXAMPLE.COM.", { kind: "name", host: "api.example.com" }],
    ["api.example.com..", undefined],
    ["bücher.example", { kind: "name", host: "xn--bcher-kva.example" }],
    ["BÜCHER.example.", { kind: "name", host: "xn--bcher-kva.example" }],
    ["xn--bcher-kva.example", { kind: "name", host: "xn--bcher-kva.example" }],
    ["api.example.com:8443", { kind: "name", host: "api.example.com" }],
    ["api.example.com.:8443", { kind: "name", host: "api.example.com" }],
    ["localhost", { kind: "name", host: "localhost" }],
    ["localhost:3000", { kind: "name", host: "localhost" }],
    ["_srv.example.com", { kind: "name", host: "_srv.example.com" }],
    ["1.2.3.4", { kind: "ip", host: "1.2.3.4" }],
    ["1.2.3.4:80", { kind: "ip", host: "1.2.3.4" }],
    ["1.2.3.4.", { kind: "ip", host: "1.2.3.4" }],
    ["127.1", { kind: "ip", host: "127.0.0.1" }],
    ["0x7f.0.0.1", { kind: "ip", host: "127.0.0.1" }],
    ["2130706433", { kind: "ip", host: "127.0.0.1" }],
    ["[::1]", { kind: "ip", host: "::1" }],
    ["[::1]:8080", { kind: "ip", host: "::1" }],
    ["::1", { kind: "ip", host: "::1" }],
    ["[2001:DB8::1]", { kind: "ip", host: "2001:db8::1" }],
    ["", undefined],
    [".", undefined],
    ["a..b", undefined],
    [" api.example.com", undefined],
    ["api.example.com\r\n", undefined],
    ["user@api.example.com", undefined],
    ["api.example.com/path", undefined],
    ["api.example.com?q", undefined],
    ["api.example.com#f", undefined],
    ["%61pi.example.com", undefined],
    ["api.example.com:99999", undefined],
    ["api.example.com:http", undefined],
    ["*.example.com", undefined],
    ["a!b.example.com", undefined],
    ["example.123", undefined],
    ["1.2.3.999", undefined],
    ["[::1", undefined],
    ["xn--a.example.com", undefined],
    [`${"a".repeat(64)}.com`, undefined]
  ]

  it.each(cases)("normalises %j to %j", (input, expected) => {
    expect(HostPattern.normalizeDestination(input)).toEqual(expected)
  })
})

describe("matches", () => {
  const cases: ReadonlyArray<readonly [pattern: string, destination: string, expected: boolean]> = [
    ["api.example.com", "api.example.com", true],
    ["api.example.com", "example.com", false],
    ["api.example.com", "x.api.example.com", false],
    ["api.example.com", "api.example.com.evil.com", false],
    ["api.example.com", "evilapi.example.com", false],
    ["localhost", "localhost", true],
    ["*.example.com", "example.com", true],
    ["*.example.com", "api.example.com", true],
    ["*.example.com", "a.b.example.com", true],
    ["*.example.com", "a.b.c.d.e.example.com", true],
    ["*.example.com", "badexample.com", false],
    ["*.example.com", "example.com.evil.com", false],
    ["*.example.com", "evil.com", false],
    ["*.example.com", "com", false],
    ["*.example.com", "xexample.com", false],
    ["*.a.example.com", "example.com", false],
    ["*.a.example.com", "b.example.com", false],
    ["*.a.example.com", "b.a.example.com", true]
  ]

  it.each(cases)("%j against %j is %j", (pattern, destination, expected) => {
    expect(HostPattern.matches(pattern, destination)).toBe(expected)
  })
})

describe("HostIndex", () => {
  const index = new HostPattern.HostIndex<string>([
    { hosts: ["api.example.com"], value: "exact" },
    { hosts: ["*.example.com"], value: "wildcard" },
    { hosts: [], value: "unrestricted" },
    { hosts: ["api.example.com", "*.example.com", "*.api.example.com"], value: "several" },
    { hosts: ["*.b.example.com"], value: "deep" },
    { hosts: ["localhost"], value: "local" },
    { hosts: ["*.xn--bcher-kva.example"], value: "idn" }
  ])

  const cases: ReadonlyArray<readonly [destination: string, expected: ReadonlyArray<string>]> = [
    ["api.example.com", ["exact", "wildcard", "unrestricted", "several"]],
    ["API.EXAMPLE.COM.", ["exact", "wildcard", "unrestricted", "several"]],
    ["api.example.com:8443", ["exact", "wildcard", "unrestricted", "several"]],
    ["example.com", ["wildcard", "unrestricted", "several"]],
    ["x.api.example.com", ["wildcard", "unrestricted", "several"]],
    ["a.b.example.com", ["wildcard", "unrestricted", "several", "deep"]],
    ["b.example.com", ["wildcard", "unrestricted", "several", "deep"]],
    ["badexample.com", ["unrestricted"]],
    ["example.com.evil.com", ["unrestricted"]],
    ["api.example.com.evil.com", ["unrestricted"]],
    ["com", ["unrestricted"]],
    ["localhost", ["unrestricted", "local"]],
    ["shop.bücher.example", ["unrestricted", "idn"]],
    ["1.2.3.4", ["unrestricted"]],
    ["[::1]", ["unrestricted"]],
    ["::1", ["unrestricted"]],
    ["", []],
    ["not a host", []]
  ]

  it.each(cases)("matches %j to %j", (destination, expected) => {
    expect(index.match(destination)).toEqual(expected)
  })

  it("reports its size", () => {
    expect(index.size).toBe(7)
    expect(new HostPattern.HostIndex([]).size).toBe(0)
  })

  it("matches nothing when empty", () => {
    expect(new HostPattern.HostIndex<string>([]).match("api.example.com")).toEqual([])
  })

  it("never matches an IP literal against a restricted entry", () => {
    const ipIndex = new HostPattern.HostIndex([{ hosts: ["1.2.3.4", "*.3.4"], value: 1 }])
    expect(ipIndex.match("1.2.3.4")).toEqual([])
  })

  it("returns an entry once even when it repeats a pattern", () => {
    const repeated = new HostPattern.HostIndex([{ hosts: ["a.example.com", "a.example.com"], value: 1 }])
    expect(repeated.match("a.example.com")).toEqual([1])
  })

  it("keeps entries with equal values apart", () => {
    const twice = new HostPattern.HostIndex([
      { hosts: ["a.example.com"], value: "same" },
      { hosts: ["*.example.com"], value: "same" }
    ])
    expect(twice.match("a.example.com")).toEqual(["same", "same"])
  })

  it("does not let callers mutate its results", () => {
    const unrestricted = new HostPattern.HostIndex([{ hosts: [], value: 1 }])
    expect(() => (unrestricted.match("1.2.3.4") as Array<number>).push(2)).toThrow()
    expect(unrestricted.match("1.2.3.4")).toEqual([1])
  })

  it("handles 100,000 entries without scanning them", () => {
    const count = 100_000
    const entries = Array.from({ length: count }, (_, i) => ({
      hosts: i % 2 === 0 ? [`svc${i}.example.com`] : [`*.tenant${i}.example.com`],
      value: i
    }))
    const big = new HostPattern.HostIndex(entries)
    expect(big.size).toBe(count)
    expect(big.match("svc42.example.com")).toEqual([42])
    expect(big.match("a.b.tenant99999.example.com")).toEqual([99_999])
    expect(big.match("tenant1.example.com")).toEqual([1])
    expect(big.match("svc43.example.com")).toEqual([])
    expect(big.match("example.com")).toEqual([])

    for (let i = 0; i < 1_000; i += 98) expect(big.match(`svc${i}.example.com`)).toEqual([i])
  })
})

describe("properties", () => {
  const asciiLabel = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?$/)
  const unicodeLabel = fc
    .array(fc.constantFrom("a", "b", "z", "0", "ü", "é", "ß", "ж", "中", "-"), { minLength: 1, maxLength: 8 })
    .map((chars) => chars.join(""))
  const name = fc.array(fc.oneof(asciiLabel, unicodeLabel), { minLength: 1, maxLength: 4 }).map((ls) => ls.join("."))
  const candidate = fc.oneof(
    name,
    name.map((n) => `*.${n}`),
    fc.domain(),
    fc.domain().map((d) => `*.${d}`),
    fc.string(),
    fc.string({ unit: "grapheme" })
  )

  it("parse is idempotent", () => {
    fc.assert(
      fc.property(candidate, (input) => {
        const first = HostPattern.parse(input)
        if (first.ok) expect(HostPattern.parse(first.pattern)).toEqual(first)
      }),
      { numRuns: 2_000 }
    )
  })

  it("a parsed pattern is lower-case ASCII", () => {
    fc.assert(
      fc.property(candidate, (input) => {
        const result = HostPattern.parse(input)
        if (result.ok) expect(result.pattern).toMatch(/^(?:\*\.)?[a-z0-9.-]+$/)
      }),
      { numRuns: 2_000 }
    )
  })

  const randomCase = (value: string) =>
    fc.array(fc.boolean(), { minLength: value.length, maxLength: value.length }).map((upper) =>
      [...value].map((char, i) => (upper[i] ? char.toUpperCase() : char)).join("")
    )
  const domainInAnyCase = fc.domain().chain((domain) => fc.tuple(fc.constant(domain), randomCase(domain)))

  it("normalises any case of a name to its lower case", () => {
    fc.assert(
      fc.property(domainInAnyCase, ([domain, variant]) => {
        expect(HostPattern.parse(variant)).toEqual(HostPattern.parse(domain))
        expect(HostPattern.parse(`*.${variant}`)).toEqual(HostPattern.parse(`*.${domain}`))
        expect(HostPattern.normalizeDestination(variant)).toEqual(HostPattern.normalizeDestination(domain))
        expect(HostPattern.normalizeDestination(`${variant}.`)).toEqual(HostPattern.normalizeDestination(domain))
      }),
      { numRuns: 1_000 }
    )
  })

  it("a pattern matches its own host as a destination", () => {
    fc.assert(
      fc.property(name, (input) => {
        const parsed = HostPattern.parse(input)
        const destination = HostPattern.normalizeDestination(input)
        if (parsed.ok && destination?.kind === "name") {
          expect(HostPattern.matches(parsed.pattern, destination.host)).toBe(true)
          expect(HostPattern.matches(`*.${parsed.pattern}`, `sub.${destination.host}`)).toBe(true)
        }
      }),
      { numRuns: 1_000 }
    )
  })

  const smallLabel = fc.constantFrom("a", "b", "example", "com", "evil", "badexample")
  const smallName = fc.array(smallLabel, { minLength: 1, maxLength: 4 }).map((ls) => ls.join("."))
  const smallPattern = fc.oneof(smallName, smallName.map((n) => `*.${n}`))
    .map((p) => HostPattern.parse(p))
    .filter((r) => r.ok)
    .map((r) => (r.ok ? r.pattern : ""))
  const entries = fc.array(
    fc.record({ hosts: fc.array(smallPattern, { maxLength: 3 }), value: fc.integer() }),
    { maxLength: 30 }
  )
  const destination = fc.oneof(
    smallName,
    smallName.map((n) => n.toUpperCase()),
    smallName.map((n) => `${n}.`),
    smallName.map((n) => `${n}:8443`),
    fc.ipV4(),
    fc.ipV6().map((ip) => `[${ip}]`),
    fc.string({ maxLength: 6 })
  )

  it("HostIndex.match agrees with a brute-force scan using matches", () => {
    fc.assert(
      fc.property(entries, destination, (list, raw) => {
        const normalized = HostPattern.normalizeDestination(raw)
        const expected = normalized === undefined
          ? []
          : list
            .filter(({ hosts }) =>
              hosts.length === 0 ||
              (normalized.kind === "name" && hosts.some((pattern) => HostPattern.matches(pattern, normalized.host)))
            )
            .map(({ value }) => value)
        expect(new HostPattern.HostIndex(list).match(raw)).toEqual(expected)
      }),
      { numRuns: 2_000 }
    )
  })
})

/*
 * The clean check of `scrubber.ts` (`cleanLayer`), compiled to WebAssembly with SIMD: for each escape
 * syntax, whether a chunk holds an escape of it at all, and whether none of its escapes can be part
 * of a match that the stacks without that layer miss. It answers what `cleanLayer` answers, byte for
 * byte the same reading (`escapeAt` of `escapes.ts`); the tables it reads (introducers, folding,
 * short escapes, the names' trie, a scrubber's byte pairs) are written into its memory by
 * `clean.ts` from the TypeScript that defines them, so the grammar's data lives in one place.
 * Where a layer is clean, it also says where its reading ended (`TAILS`), which is what
 * `candidates` holds back at the chunk's end for it.
 *
 * Built by `wasm/build.sh` (clang, wasm32, -msimd128, no libc) into `src/internal/cleanWasm.ts`.
 */
#include <stdint.h>
#include <wasm_simd128.h>

typedef uint8_t u8;

#define LITERAL 0
#define CUT (-1)
#define DIRTY (-2)
#define JSON 0
#define PERCENT 1
#define HTML 2
#define NODES 2048

/* Tables written by `clean.ts`. */
static u8 PAIRS[65536];
static u8 INTRODUCES[256];
static u8 INTRODUCES_PLUS[256];
static u8 FOLD[256];
static u8 SHORT[256];
static u8 SYMBOL[256];
static uint16_t NEXT[NODES * 64];
static u8 TEXT[NODES * 4];
static u8 TEXT_LENGTH[NODES];
static u8 LEGACY[NODES];

static int longest_escape;
static int max_digits;
static int longest_name;
static u8 introducer[3];
/* The scrubber's density rule (`DENSE` of `scrubber.ts`): at least one introducer in `dense_every` of the first `dense_sample` bytes. */
static int dense_sample;
static int dense_every;

/*
 * Per layer, where its reading ended, for `clean.ts` to hand on: the last escape's start and end
 * (-1: none), the last byte it wrote, and where an escape cut off by the end begins (-1: none).
 */
static int32_t TAILS[3 * 4];

/* The chunk, then every introducer's position in it (`__heap_base` on; `clean.ts` grows the memory). */
extern u8 __heap_base;

/* The addresses of the tables, for `clean.ts` to fill. */
__attribute__((export_name("table"))) uintptr_t table(int which) {
  switch (which) {
    case 0: return (uintptr_t)PAIRS;
    case 1: return (uintptr_t)INTRODUCES;
    case 2: return (uintptr_t)INTRODUCES_PLUS;
    case 3: return (uintptr_t)FOLD;
    case 4: return (uintptr_t)SHORT;
    case 5: return (uintptr_t)SYMBOL;
    case 6: return (uintptr_t)NEXT;
    case 7: return (uintptr_t)TEXT;
    case 8: return (uintptr_t)TEXT_LENGTH;
    case 9: return (uintptr_t)LEGACY;
    case 11: return (uintptr_t)TAILS;
    default: return (uintptr_t)&__heap_base;
  }
}

__attribute__((export_name("configure"))) void configure(int escape, int digits, int name, int json, int percent, int html, int sample, int every) {
  longest_escape = escape;
  max_digits = digits;
  longest_name = name;
  introducer[JSON] = (u8)json;
  introducer[PERCENT] = (u8)percent;
  introducer[HTML] = (u8)html;
  dense_sample = sample;
  dense_every = every;
}

/* How many bytes the last escape wrote, and the bytes (4 at most); the last byte its reading looked at. */
static int written_count;
static u8 one[4];
static int extent;

static int written(int count, int length) {
  written_count = count;
  return count == 0 ? LITERAL : length;
}

static int hex_value(u8 byte) {
  if (byte >= '0' && byte <= '9') return byte - '0';
  if (byte >= 'a' && byte <= 'f') return byte - 'a' + 10;
  if (byte >= 'A' && byte <= 'F') return byte - 'A' + 10;
  return -1;
}

static int64_t hex(const u8 *bytes, int at, int digits) {
  int64_t value = 0;
  for (int i = at; i < at + digits; i++) {
    int h = hex_value(bytes[i]);
    if (h == -1) return -1;
    value = value * 16 + h;
  }
  return value;
}

static int hex_prefix(const u8 *bytes, int at, int end) {
  for (int i = at; i < end; i++)
    if (hex_value(bytes[i]) == -1) return 0;
  return 1;
}

static int put_utf8(int64_t cp) {
  if (cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  if (cp < 0x80) {
    one[0] = (u8)cp;
    return 1;
  }
  if (cp < 0x800) {
    one[0] = (u8)(0xc0 | (cp >> 6));
    one[1] = (u8)(0x80 | (cp & 63));
    return 2;
  }
  if (cp < 0x10000) {
    one[0] = (u8)(0xe0 | (cp >> 12));
    one[1] = (u8)(0x80 | ((cp >> 6) & 63));
    one[2] = (u8)(0x80 | (cp & 63));
    return 3;
  }
  one[0] = (u8)(0xf0 | (cp >> 18));
  one[1] = (u8)(0x80 | ((cp >> 12) & 63));
  one[2] = (u8)(0x80 | ((cp >> 6) & 63));
  one[3] = (u8)(0x80 | (cp & 63));
  return 4;
}

static int json_escape(const u8 *in, int i, int end, int at_end) {
  extent = end;
  if (i + 1 >= end) return at_end ? LITERAL : CUT;
  u8 c = in[i + 1];
  extent = i + 1;
  if (SHORT[c] != 0xff) {
    one[0] = SHORT[c];
    return written(1, 2);
  }
  if (c != 'u') return LITERAL;
  int available = end < i + 6 ? end : i + 6;
  if (available < i + 6) return !at_end && hex_prefix(in, i + 2, available) ? CUT : LITERAL;
  int64_t unit = hex(in, i + 2, 4);
  extent = i + 5;
  if (unit >= 0xd800 && unit <= 0xdbff) {
    extent = i + 11;
    int64_t low = i + 12 <= end && in[i + 6] == '\\' && in[i + 7] == 'u' ? hex(in, i + 8, 4) : -1;
    if (low >= 0xdc00 && low <= 0xdfff) return written(put_utf8(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)), 12);
    return i + 12 > end && !at_end ? CUT : LITERAL;
  }
  return unit == -1 ? LITERAL : written(put_utf8(unit), 6);
}

static int percent_escape(const u8 *in, int i, int end, int at_end) {
  extent = in[i] == '+' ? i : i + 3 <= end ? i + 2 : end;
  if (in[i] == '+') {
    one[0] = '+';
    return written(1, 1);
  }
  int64_t byte = i + 3 <= end ? hex(in, i + 1, 2) : -1;
  if (byte != -1) {
    one[0] = (u8)byte;
    return written(1, 3);
  }
  return i + 3 > end && !at_end && hex_prefix(in, i + 1, end) ? CUT : LITERAL;
}

static int is_digit(u8 byte, int hexadecimal) {
  return hexadecimal ? hex_value(byte) != -1 : byte >= '0' && byte <= '9';
}

static int named(int node, int length) {
  int count = TEXT_LENGTH[node];
  for (int k = 0; k < count; k++) one[k] = TEXT[node * 4 + k];
  return written(count, length);
}

/* An HTML reference at `i`; `extent`: the last byte its reading looked at (`end` and on: all). */
static int reference_read(const u8 *in, int i, int end, int at_end, int *extent) {
  *extent = end;
  if (i + 1 >= end) return at_end ? LITERAL : CUT;
  if (in[i + 1] == '#') {
    int j = i + 2;
    int hexadecimal = j < end && (in[j] | 0x20) == 'x';
    if (hexadecimal) j++;
    int from = j;
    while (j < end && j - from <= max_digits && is_digit(in[j], hexadecimal)) j++;
    int digits = j - from;
    *extent = j;
    if (j >= end && !at_end && digits <= max_digits) return CUT;
    if (digits == 0 || digits > max_digits) return LITERAL;
    int64_t cp = 0;
    if (hexadecimal) cp = hex(in, from, digits);
    else
      for (int k = from; k < j; k++) cp = cp * 10 + (in[k] - '0');
    return written(put_utf8(cp), j - i + (j < end && in[j] == ';' ? 1 : 0));
  }
  int j = i + 1;
  int node = 1;
  int legacy = 0;
  int legacy_end = 0;
  while (j < end && j - i - 1 < longest_name) {
    u8 symbol = SYMBOL[in[j]];
    if (symbol == 0xff) break;
    if (node != 0) node = NEXT[node * 64 + symbol];
    j++;
    if (node != 0 && LEGACY[node]) {
      legacy = node;
      legacy_end = j;
    }
  }
  *extent = j;
  if (j == i + 1) return LITERAL;
  if (j < end && in[j] == ';' && node != 0 && TEXT_LENGTH[node] != 0) return named(node, j - i + 1);
  if (j >= end && !at_end) return CUT;
  return legacy == 0 ? LITERAL : named(legacy, legacy_end - i);
}

/*
 * What `reference_read` answered for the eight bytes after an `&` (a response repeats its few
 * references, and walking the names' trie costs more than looking this up), kept where its reading
 * looked at none past them: then the answer is theirs alone, whatever the end and what follows.
 */
typedef struct {
  uint64_t key;
  int32_t length;
  u8 count;
  u8 bytes[4];
  u8 extent;
} Known;

static Known KNOWN[256];
/* (an entry never written holds the answer for eight zero bytes: no reference) */

typedef uint64_t __attribute__((aligned(1))) unaligned_u64;

static int reference(const u8 *in, int i, int end, int at_end) {
  if (i + 9 > end) return reference_read(in, i, end, at_end, &extent);
  uint64_t key = *(const unaligned_u64 *)(in + i + 1);
  Known *known = &KNOWN[(key * 0x9e3779b97f4a7c15ull) >> 56];
  if (known->key == key) {
    written_count = known->count;
    for (int k = 0; k < 4; k++) one[k] = known->bytes[k];
    extent = i + known->extent;
    return known->length;
  }
  int length = reference_read(in, i, end, at_end, &extent);
  if (extent <= i + 8) {
    known->key = key;
    known->length = length;
    known->count = (u8)written_count;
    known->extent = (u8)(extent - i);
    for (int k = 0; k < 4; k++) known->bytes[k] = one[k];
  }
  return length;
}

static int escape_at(int syntax, const u8 *in, int i, int end, int at_end) {
  return syntax == JSON ? json_escape(in, i, end, at_end) : syntax == PERCENT ? percent_escape(in, i, end, at_end) : reference(in, i, end, at_end);
}

static int is_alphanumeric(u8 byte) {
  return (byte >= '0' && byte <= '9') || ((byte | 0x20) >= 'a' && (byte | 0x20) <= 'z');
}

/* How far (exclusive) an escape of `syntax` at introducer `i` may reach, at most (`reachOf`). */
static int reach_of(int syntax, const u8 *b, int length, int i) {
  if (syntax == JSON) return i + (i + 1 < length && b[i + 1] == 'u' ? 12 : 2);
  if (syntax == PERCENT) return b[i] == '+' ? i + 1 : i + 3;
  int j = i + 1;
  if (j < length && b[j] == '#') {
    j++;
    if (j < length && (b[j] | 0x20) == 'x') j++;
  }
  int from = j;
  while (j < length && j - from < max_digits + 1 && is_alphanumeric(b[j])) j++;
  return j < length && b[j] == ';' ? j + 1 : j;
}

/* `standsAlone` of `scrubber.ts`. */
static int stands_alone(int own, u8 byte, const u8 *b, int end, int after, const u8 *introduces) {
  if (byte == '+') return 1;
  if (byte != '&') return 0;
  if (after >= end) return 1;
  u8 next = b[after];
  return introduces[next] != own && next != '#' && next != ';' && !is_alphanumeric(next);
}

/* Which of the sixteen bytes at `b` equal one of the four introducers. */
static inline v128_t hits(const u8 *b, v128_t j, v128_t p, v128_t h, v128_t q) {
  v128_t x = wasm_v128_load(b);
  return wasm_v128_or(wasm_v128_or(wasm_i8x16_eq(x, j), wasm_i8x16_eq(x, p)), wasm_v128_or(wasm_i8x16_eq(x, h), wasm_i8x16_eq(x, q)));
}

/*
 * Lists the position of every introducer (of any syntax; `+` when `plus`) of `b[from, to)` in `at`
 * after the `count` listed there, and where each stands in `at` in its syntax's list (`mine[s]`,
 * `own_count[s]` long so far, room for the whole chunk each); returns the new count, and each
 * list's length in `own_count`.
 */
static int introducers(const u8 *b, int from, int to, int plus, uint32_t *at, int count, uint32_t *const *mine, int *own_count) {
  v128_t j = wasm_i8x16_splat((int8_t)introducer[JSON]);
  v128_t p = wasm_i8x16_splat((int8_t)introducer[PERCENT]);
  v128_t h = wasm_i8x16_splat((int8_t)introducer[HTML]);
  v128_t q = wasm_i8x16_splat(plus ? '+' : (int8_t)introducer[JSON]);
  const u8 *introduces = plus ? INTRODUCES_PLUS : INTRODUCES;
  uint32_t *next[3] = {mine[0] + own_count[0], mine[1] + own_count[1], mine[2] + own_count[2]};
  int i = from;
  /* (each introducer introduces escapes of one syntax: bits 1, 2 or 4, the syntax's bit) */
#define ADD(position)                          \
  do {                                         \
    uint32_t at_ = (uint32_t)(position);       \
    at[count++] = at_;                         \
    *next[introduces[b[at_]] >> 1]++ = count - 1; \
  } while (0)
  /* sixty-four bytes at a time (most hold no introducer), then one by one */
  for (; i + 64 <= to; i += 64) {
    v128_t h0 = hits(b + i, j, p, h, q), h1 = hits(b + i + 16, j, p, h, q), h2 = hits(b + i + 32, j, p, h, q), h3 = hits(b + i + 48, j, p, h, q);
    if (!wasm_v128_any_true(wasm_v128_or(wasm_v128_or(h0, h1), wasm_v128_or(h2, h3)))) continue;
    uint64_t mask = (uint64_t)wasm_i8x16_bitmask(h0) | ((uint64_t)wasm_i8x16_bitmask(h1) << 16) | ((uint64_t)wasm_i8x16_bitmask(h2) << 32) | ((uint64_t)wasm_i8x16_bitmask(h3) << 48);
    while (mask != 0) {
      ADD(i + __builtin_ctzll(mask));
      mask &= mask - 1;
    }
  }
  for (; i < to; i++)
    if (introduces[b[i]] != 0) ADD(i);
#undef ADD
  for (int s = 0; s < 3; s++) own_count[s] = (int)(next[s] - mine[s]);
  return count;
}

/*
 * The escape at `i` read, and looked at with its neighbours (what of `cleanLayer` the bytes around
 * it decide): its length, `LITERAL`, `CUT`, or `DIRTY` where it may be part of a match; `last`, the
 * last byte it wrote; `own_next`, whether an introducer of its own syntax follows it.
 */
static int read_escape(int syntax, const u8 *b, int i, int end, int at_end, const u8 *introduces, int previous_end, int previous_last, int *last, int *own_next) {
  int own = 1 << syntax;
  int length = escape_at(syntax, b, i, end, at_end);
  *last = 0;
  *own_next = 0;
  if (length == CUT || length == LITERAL) return length;
  int n = written_count;
  int previous = i == previous_end ? FOLD[previous_last] : i > 0 ? FOLD[b[i - 1]] : -1;
  int after = i + length;
  /* (the byte after it is looked at below) */
  if (after > extent) extent = after;
  for (int w = 0; w < n; w++) {
    u8 byte = one[w];
    if (introduces[byte] != 0 && !stands_alone(own, byte, b, end, after, introduces)) return DIRTY;
    int current = FOLD[byte];
    if (previous != -1 && PAIRS[(previous << 8) | current]) return DIRTY;
    previous = current;
  }
  if (after < end) {
    u8 next = b[after];
    if (PAIRS[(previous << 8) | FOLD[next]]) return DIRTY;
    int bits = introduces[next];
    if (bits != 0) {
      if (bits != own) return DIRTY;
      *own_next = 1;
    }
  }
  *last = one[n - 1];
  return length;
}

/*
 * What `clean_layer` found of an escape from the byte before it to the byte after it (the eight
 * bytes from `i - 1`, where they hold all it looked at, and no escape ended right before it): the
 * escape's length, or `LITERAL`, or `DIRTY`; the last byte it wrote; whether an escape of its own
 * syntax may start right after it. Kept while the byte pairs and `plus` stay (`generation`).
 */
typedef struct {
  uint64_t key;
  uint32_t generation;
  int8_t length;
  u8 last;
  u8 own_next;
} Verdict;

static Verdict VERDICTS[1024];
static uint32_t generation = 1;

/* Forgets every verdict kept: the byte pairs or `plus` changed. */
__attribute__((export_name("forget"))) void forget(void) {
  if (++generation != 0) return;
  /* (once in 2^32: no verdict of an earlier round may count again) */
  for (int k = 0; k < 1024; k++) VERDICTS[k].generation = 0;
  generation = 1;
}

/*
 * `cleanLayer` over the introducers of `b[0, end)`: the layer's own (`at[mine[k]]`, `k` below
 * `own_count`) are read as escapes, and every one before each (in `at`) is looked at as a
 * neighbour that may reach it.
 */
static int clean_layer(int syntax, const u8 *b, int end, int at_end, int plus, const uint32_t *at, const uint32_t *mine, int own_count) {
  const u8 *introduces = plus ? INTRODUCES_PLUS : INTRODUCES;
  int32_t *tail = TAILS + 4 * syntax;
  int previous_end = -1;
  int previous_last = 0;
  int own_after = -1;
  int pos = 0;
  int previous_start = -1;
  for (int k = 0; k < own_count; k++) {
    int index = (int)mine[k];
    int i = (int)at[index];
    if (i < pos) continue;
    int length;
    int last;
    int own_next;
    /* the same eight bytes around an escape as before: the same answer, without reading it again */
    int memo = i > 0 && i != previous_end && i + 8 <= end;
    uint64_t key = memo ? *(const unaligned_u64 *)(b + i - 1) : 0;
    Verdict *verdict = &VERDICTS[(key * 0x9e3779b97f4a7c15ull) >> 54];
    if (memo && verdict->key == key && verdict->generation == generation) {
      length = verdict->length;
      last = verdict->last;
      own_next = verdict->own_next;
    } else {
      length = read_escape(syntax, b, i, end, at_end, introduces, previous_end, previous_last, &last, &own_next);
      if (memo && length != CUT && extent <= i + 6) {
        verdict->key = key;
        verdict->generation = generation;
        verdict->length = (int8_t)length;
        verdict->last = (u8)last;
        verdict->own_next = (u8)own_next;
      }
    }
    if (length == CUT) {
      /* the tail, which `candidates` decodes, holds it back */
      tail[3] = i;
      break;
    }
    if (length == DIRTY) return 0;
    if (length == LITERAL) {
      if (i == own_after) return 0;
      pos = i + 1;
      continue;
    }
    int after = i + length;
    if (own_next) own_after = after;
    /* an introducer up to `longest_escape` bytes before, since the previous escape, whose escape may reach this one */
    int from = i - longest_escape;
    if (from < previous_end) from = previous_end;
    if (from < 0) from = 0;
    for (int s = index - 1; s >= 0 && (int)at[s] >= from; s--) {
      int q = (int)at[s];
      int bits = introduces[b[q]];
      for (int bit = 0; bit < 3; bit++)
        if ((bits & (1 << bit)) != 0 && reach_of(bit, b, end, q) >= i) return 0;
    }
    previous_start = i;
    previous_end = after;
    previous_last = last;
    pos = after;
  }
  tail[0] = previous_start;
  tail[1] = previous_end;
  tail[2] = previous_last;
  return 1;
}

/*
 * For the chunk at `__heap_base` (`length` bytes): bit `s` set when it holds an introducer of
 * syntax `s`, bit `s + 4` when that layer is clean (or holds none), and each clean layer's end in
 * `TAILS`. After the chunk (16-byte aligned) come the positions of its introducers, then a list
 * for each syntax, each with room for one per byte (`clean.ts` makes room for them).
 */
__attribute__((export_name("layers"))) int layers(int length, int at_end, int plus) {
  const u8 *b = &__heap_base;
  uint32_t *at = (uint32_t *)(((uintptr_t)(b + length) + 15) & ~(uintptr_t)15);
  uint32_t *const mine[3] = {at + length + 1, at + 2 * (length + 1), at + 3 * (length + 1)};
  int own_count[3] = {0, 0, 0};
  int listed = 0;
  int count = 0;
  if (length >= 4 * dense_sample) {
    /*
     * A long chunk whose first bytes are dense with escapes (by the scrubber's rule, which then
     * gives the chunk to the readings automaton) and hold a dirty escape of every syntax (a dense
     * echo) has every layer dirty: that is the answer, without listing the rest of its
     * introducers. (Read up to a cut, a layer holds the escapes the whole chunk's reading holds
     * before it, and fewer bytes after them to pair with: dirty there is dirty in the whole.)
     */
    count = introducers(b, 0, dense_sample, plus, at, 0, mine, own_count);
    listed = dense_sample;
    if (count * dense_every >= dense_sample) {
      int dirty = 0;
      for (int syntax = 0; syntax < 3; syntax++)
        if (own_count[syntax] != 0 && !clean_layer(syntax, b, dense_sample, 0, plus, at, mine[syntax], own_count[syntax])) dirty++;
      if (dirty == 3) {
        for (int k = 0; k < 3 * 4; k++) TAILS[k] = k % 4 == 2 ? 0 : -1;
        return 7;
      }
    }
  }
  introducers(b, listed, length, plus, at, count, mine, own_count);
  int answer = 0;
  for (int syntax = 0; syntax < 3; syntax++) {
    int bit = 1 << syntax;
    int32_t *tail = TAILS + 4 * syntax;
    tail[0] = tail[1] = tail[3] = -1;
    tail[2] = 0;
    if (own_count[syntax] != 0) answer |= bit;
    if (own_count[syntax] == 0 || clean_layer(syntax, b, length, at_end, plus, at, mine[syntax], own_count[syntax])) answer |= bit << 4;
  }
  return answer;
}

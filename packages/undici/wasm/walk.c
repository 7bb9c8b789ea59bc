/*
 * The readings automaton's walk (`Readings.forward` of `readings.ts`), compiled to WebAssembly: a
 * table step per byte over a piece of a chunk, until the piece ends or a step not built yet is
 * met, which `readings.ts` builds (in TypeScript, into this module's memory) before it walks on.
 * Each `Readings` has an instance of its own, whose memory holds its table from `__heap_base` on
 * (`readings.ts` grows the memory as the table grows).
 *
 * A step of the table is 16 bits: 0 (not built), or the next state plus one, plus `ACCEPTS` when
 * entering that state completes matches, which are listed (state, end) for `readings.ts` to report.
 * A state is what a step names (its 15 low bits less one), so `LAST` has room for every one.
 *
 * Built by `wasm/build.sh` (clang, wasm32, no libc) into `src/internal/walkWasm.ts`.
 */
#include <stdint.h>

typedef uint8_t u8;

#define PIECE 16384
#define ACCEPTS 0x8000

/* Byte → class, and the table's row length (classes per state): written by `readings.ts`. */
static u8 CLASS[256];
static int width;

/* The piece to walk, written by `readings.ts`; the matches found in it, (state, end) each. */
static u8 BYTES[PIECE];
static int32_t FOUND[2 * PIECE];

/* Where the last walk stopped: its state, and how many numbers it wrote to `FOUND`. */
static int32_t RESULT[2];

/*
 * Per state: the class of the step last taken from it (above the low 16 bits) and the step, or -1:
 * most states of a repetitive input go on the same way each time, and this array stays in the
 * processor's cache where the table does not (`readings.ts` keeps fewer states than this).
 */
#define STATES 32768
static int32_t LAST[STATES];

/* The table, `state * width + class` → step (`readings.ts` grows the memory to hold it). */
extern u8 __heap_base;

/* The addresses of what `readings.ts` reads and writes, and the piece's size. */
__attribute__((export_name("address"))) uintptr_t address(int which) {
  switch (which) {
    case 0: return (uintptr_t)CLASS;
    case 1: return (uintptr_t)BYTES;
    case 2: return (uintptr_t)FOUND;
    case 3: return (uintptr_t)RESULT;
    case 4: return PIECE;
    default: return ((uintptr_t)&__heap_base + 15) & ~(uintptr_t)15;
  }
}

__attribute__((export_name("configure"))) void configure(int classes) {
  width = classes;
  for (int k = 0; k < STATES; k++) LAST[k] = -1;
}

/*
 * Walks `BYTES[from, end)` from `state`: returns where it stopped (`end`, or the byte whose step
 * is not built yet), with the state there and the matches' count in `RESULT`.
 */
__attribute__((export_name("walk"))) int walk(int state, int from, int end) {
  const uint16_t *table = (const uint16_t *)(((uintptr_t)&__heap_base + 15) & ~(uintptr_t)15);
  int found = 0;
  int i = from;
  for (; i < end; i++) {
    int cls = CLASS[BYTES[i]];
    int hint = LAST[state];
    int step;
    if ((hint >> 16) == cls) step = hint & 0xffff;
    else {
      step = table[state * width + cls];
      if (step == 0) break;
      LAST[state] = (cls << 16) | step;
    }
    state = (step & (ACCEPTS - 1)) - 1;
    if (step >= ACCEPTS) {
      FOUND[found++] = state;
      FOUND[found++] = i + 1;
    }
  }
  RESULT[0] = state;
  RESULT[1] = found;
  return i;
}

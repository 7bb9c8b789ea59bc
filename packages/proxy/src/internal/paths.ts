/**
 * Paths compared as the directories they are, not as text: a symbolic link (`alias -> bundle`)
 * names the same directory as its target, so a check that one directory is not inside another
 * compares real paths.
 */
import { realpathSync } from "node:fs"
import { basename, dirname, join, resolve, sep } from "node:path"

/**
 * The real path of `path`: `realpathSync` of it, or, while it does not exist yet, of its nearest
 * existing parent with the rest appended.
 */
export const realPathOf = (path: string): string => {
  const absolute = resolve(path)
  const rest: Array<string> = []
  let current = absolute
  for (;;) {
    try {
      return join(realpathSync(current), ...rest.reverse())
    } catch (error) {
      const parent = dirname(current)
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || parent === current) return absolute
      rest.push(basename(current))
      current = parent
    }
  }
}

/** Whether `inner` is `outer` or inside it, comparing real paths. */
export const isWithin = (inner: string, outer: string): boolean => {
  const a = realPathOf(inner)
  const b = realPathOf(outer)
  return a === b || a.startsWith(b.endsWith(sep) ? b : `${b}${sep}`)
}

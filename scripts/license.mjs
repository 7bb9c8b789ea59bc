// `prepack` of every package: the tarball carries the repository's one LICENSE file.
import { copyFileSync } from "node:fs"

copyFileSync(new URL("../LICENSE", import.meta.url), "LICENSE")

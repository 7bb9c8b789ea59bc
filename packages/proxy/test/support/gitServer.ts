/**
 * A real git smart-HTTP server over HTTPS (test CA) on 127.0.0.1: `git http-backend` run as a CGI
 * program per request, behind Basic authentication with one password, recording the credentials it
 * was sent.
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { tls } from "../../../undici/test/support/upstream.js"

export interface GitServer {
  readonly port: number
  /** The `Authorization` headers received. */
  readonly authorizations: Array<string>
  close(): Promise<void>
}

/** Serves one bare repository `repo.git` holding one commit with `README` = `content`. */
export const startGitServer = async (password: string, content: string): Promise<GitServer> => {
  const root = mkdtempSync(join(tmpdir(), "secretgate-git-"))
  const work = join(root, "work")
  const git = (cwd: string, ...args: Array<string>) => {
    const ran = spawnSync("git", args, { cwd, encoding: "utf8", env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" } })
    if (ran.status !== 0) throw new Error(`git ${args.join(" ")}: ${ran.stderr}`)
  }
  git(root, "init", "-q", "-b", "main", work)
  spawnSync("sh", ["-c", `printf '%s' "$1" > README`, "sh", content], { cwd: work })
  git(work, "add", "README")
  git(work, "commit", "-q", "-m", "first")
  git(root, "clone", "-q", "--bare", work, join(root, "repo.git"))

  const authorizations: Array<string> = []
  const expected = `Basic ${Buffer.from(`x-access-token:${password}`).toString("base64")}`
  const server = https.createServer({ key: tls("server.key"), cert: tls("server.pem") }, (req, res) => {
    const authorization = req.headers.authorization ?? ""
    authorizations.push(authorization)
    if (authorization !== expected) {
      res.writeHead(401, { "www-authenticate": "Basic realm=\"git\"" })
      return void res.end("authentication required\n")
    }
    const url = new URL(req.url ?? "/", "https://git")
    const cgi = spawn("git", ["http-backend"], {
      env: {
        ...process.env,
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? "GET",
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        REMOTE_USER: "x-access-token",
        REMOTE_ADDR: "127.0.0.1"
      }
    })
    req.pipe(cgi.stdin)
    let head = Buffer.alloc(0)
    let started = false
    cgi.stdout.on("data", (chunk: Buffer) => {
      if (started) return void res.write(chunk)
      head = Buffer.concat([head, chunk])
      const end = head.indexOf("\r\n\r\n")
      if (end === -1) return
      started = true
      const headers: Record<string, string> = {}
      let status = 200
      for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
        const colon = line.indexOf(":")
        const name = line.slice(0, colon).trim().toLowerCase()
        const value = line.slice(colon + 1).trim()
        if (name === "status") status = Number(value.split(" ")[0])
        else headers[name] = value
      }
      res.writeHead(status, headers)
      res.write(head.subarray(end + 4))
    })
    cgi.once("close", () => res.end())
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    port: (server.address() as AddressInfo).port,
    authorizations,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => {
          rmSync(root, { recursive: true, force: true })
          resolve()
        })
      })
  }
}

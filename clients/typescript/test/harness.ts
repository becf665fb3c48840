// Starts the real cedargate and cedargate-admin binaries (target/debug, or
// CEDARGATE_BIN_DIR) for the tests: a temporary directory with a development
// key, a SQLite store loaded with demo/data.json, servers on free loopback
// ports, tokens minted by `cedargate token mint`. Everything is stopped and
// removed at the end. TEST_LOG=1 shows the servers' logs.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** The repository root: the first directory upwards with a Cargo.toml. */
export const ROOT = (() => {
  let dir = resolve(import.meta.dirname);
  while (!existsSync(join(dir, "Cargo.toml"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("no Cargo.toml above the tests");
    dir = up;
  }
  return dir;
})();

const BIN = process.env.CEDARGATE_BIN_DIR ?? join(ROOT, "target", "debug");
const ISSUER = "https://cedargate.invalid/dev";
const AUDIENCE = "cedargate-dev";
const live = new Set<ChildProcess>();

process.on("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

/** A binary, waiting a little if it is being rebuilt at this moment. */
async function binary(name: string): Promise<string> {
  const path = join(BIN, name);
  for (let i = 0; i < 50 && !existsSync(path); i++) await sleep(200);
  if (!existsSync(path)) throw new Error(`${path} is missing: build the Rust binaries first`);
  return path;
}

async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      s.close(() => {
        if (addr && typeof addr === "object") ok(addr.port);
        else fail(new Error("no port"));
      });
    });
  });
}

/** One running server process. */
export class Server {
  constructor(
    readonly name: string,
    readonly url: string,
    readonly proc: ChildProcess,
    readonly log: string,
  ) {}

  /** Stops it with SIGTERM (SIGKILL after 10 s) and waits for the exit. */
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((ok) => this.proc.once("exit", ok));
    this.proc.kill("SIGCONT");
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
    live.delete(this.proc);
  }

  /** Freezes it: connections are still accepted, nothing is answered. */
  pause(): void {
    this.proc.kill("SIGSTOP");
  }

  resume(): void {
    this.proc.kill("SIGCONT");
  }
}

export class Env {
  private readonly tokens = new Map<string, string>();
  private serial = 0;
  private readonly servers: Server[] = [];
  sidecar!: Server;
  admin!: Server;

  private constructor(
    readonly dir: string,
    readonly bin: { cedargate: string; admin: string },
  ) {}

  /** A fresh store with the demo data, one sidecar and one admin service. */
  static async start(): Promise<Env> {
    const dir = mkdtempSync(join(tmpdir(), "cedargate-ts-"));
    const env = new Env(dir, { cedargate: await binary("cedargate"), admin: await binary("cedargate-admin") });
    execFileSync(env.bin.cedargate, ["token", "keygen", "--dir", join(dir, "keys")], { stdio: "pipe" });
    env.importDemo("store.db");
    [env.sidecar, env.admin] = await Promise.all([env.startSidecar(), env.startAdmin()]);
    return env;
  }

  /** Loads demo/data.json into a new SQLite file of this directory. */
  importDemo(file: string): string {
    const store = `sqlite:${join(this.dir, file)}`;
    execFileSync(
      this.bin.admin,
      ["import", "--store", store, "--audit-spool", join(this.dir, `spool-import-${file}`), join(ROOT, "demo", "data.json")],
      { stdio: "pipe" },
    );
    return store;
  }

  /** Another sidecar; `store` defaults to the shared one. `config` is TOML for `--config`. */
  async startSidecar(store = `sqlite:${join(this.dir, "store.db")}`, config?: string): Promise<Server> {
    return this.serve("cedargate", this.bin.cedargate, store, config);
  }

  async startAdmin(store = `sqlite:${join(this.dir, "store.db")}`): Promise<Server> {
    return this.serve("cedargate-admin", this.bin.admin, store);
  }

  private async serve(name: string, bin: string, store: string, config?: string): Promise<Server> {
    let lastError: unknown;
    for (let tries = 0; tries < 3; tries++) {
      const n = ++this.serial;
      const extra: string[] = [];
      if (config !== undefined) {
        const file = join(this.dir, `${name}-${n}.toml`);
        writeFileSync(file, config);
        extra.push("--config", file);
      }
      const port = await freePort();
      const log = join(this.dir, `${name}-${n}.log`);
      const out = process.env.TEST_LOG ? "inherit" : openSync(log, "w");
      const proc = spawn(
        bin,
        [
          "serve",
          "--listen",
          `127.0.0.1:${port}`,
          "--store",
          store,
          "--policies",
          join(ROOT, "policies"),
          "--schema",
          join(ROOT, "schemas"),
          "--audit-spool",
          join(this.dir, `spool-${name}-${n}`),
          "--jwks-file",
          join(this.dir, "keys", "jwks.json"),
          "--issuer",
          ISSUER,
          "--audience",
          AUDIENCE,
          "--allow-dev-keys",
          ...extra,
        ],
        { stdio: ["ignore", out, out], cwd: this.dir },
      );
      live.add(proc);
      const server = new Server(name, `http://127.0.0.1:${port}`, proc, log);
      try {
        await waitReady(server);
        this.servers.push(server);
        return server;
      } catch (e) {
        lastError = e;
        await server.stop();
      }
    }
    throw lastError;
  }

  /** A development token, as Cognito would issue it (cached). */
  token(sub: string, tenant: string, groups: string[] = [], clearance = 0): string {
    const key = [sub, tenant, groups.join(","), clearance].join("|");
    let t = this.tokens.get(key);
    if (t === undefined) {
      const args = ["token", "mint", "--key", join(this.dir, "keys", "dev-key.pem"), "--sub", sub, "--tenant", tenant];
      if (groups.length > 0) args.push("--groups", groups.join(","));
      args.push("--clearance", String(clearance));
      t = execFileSync(this.bin.cedargate, args, { encoding: "utf8" }).trim();
      this.tokens.set(key, t);
    }
    return t;
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
    if (!process.env.TEST_KEEP) rmSync(this.dir, { recursive: true, force: true });
  }
}

async function waitReady(server: Server): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (server.proc.exitCode !== null) break;
    try {
      const res = await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return;
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  const log = existsSync(server.log) ? readFileSync(server.log, "utf8") : "";
  throw new Error(`${server.name} at ${server.url} did not become ready:\n${log}`);
}

/** A fetch that counts the requests it sends (to the real server). */
export function countingFetch(): { fetch: typeof fetch; calls: string[] } {
  const calls: string[] = [];
  const f: typeof fetch = (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    calls.push(`${init?.method ?? "GET"} ${new URL(url).pathname}`);
    return fetch(input, init);
  };
  return { fetch: f, calls };
}

/**
 * Breaks a SQLite store under a running server (its file, WAL and WAL
 * index overwritten, all of each: which pages a read needs depends on the
 * file's page size): every read that misses the cache fails from then on.
 */
export function corruptStore(path: string): void {
  for (const f of [path, `${path}-wal`, `${path}-shm`]) {
    if (!existsSync(f)) continue;
    const size = statSync(f).size;
    const fd = openSync(f, "r+");
    writeSync(fd, Buffer.alloc(size, 0x78), 0, size, 0);
    closeSync(fd);
  }
}

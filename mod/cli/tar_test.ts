import { assert, assertEquals, assertThrows } from "../../tests/_assert.ts";
import { BLOCK, RECORD, tar, type TarEntry, tarEntry, tarGz } from "./tar.ts";

const text = (s: string) => new TextEncoder().encode(s);

async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function run(
  cmd: string[],
  cwd?: string,
): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    ...(cwd ? { cwd } : {}),
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: o.code,
    out: new TextDecoder().decode(o.stdout),
    err: new TextDecoder().decode(o.stderr),
  };
}

const LONG_DIR = "d".repeat(90) + "/" + "e".repeat(60);
const LONGER = "f".repeat(120) + "/" + "g".repeat(150) + "/name.txt";
const MTIME = new Date("2025-03-04T05:06:07Z");

const ENTRIES: TarEntry[] = [
  { path: "vif-logs", type: "directory", mtime: MTIME },
  { path: "vif-logs/status.json", data: text('{"a":1}\n'), mtime: MTIME, mode: 0o600 },
  { path: "vif-logs/empty.txt", mtime: MTIME },
  { path: "vif-logs/block.bin", data: new Uint8Array(BLOCK).fill(0x41), mtime: MTIME },
  { path: `vif-logs/${LONG_DIR}/split.txt`, data: text("split by prefix\n"), mtime: MTIME },
  { path: `vif-logs/${LONGER}`, data: text("pax path\n"), mtime: MTIME },
  { path: "vif-logs/ünïcode-名前.log", data: text("utf-8 name\n"), mtime: MTIME },
];

async function withArchive(fn: (dir: string, archive: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vif-tar-test-" });
  try {
    const archive = `${dir}/a.tar.gz`;
    await Deno.writeFile(archive, tarGz(ENTRIES));
    await fn(dir, archive);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("tarGz() writes an archive GNU tar lists with modes, sizes and times", async () => {
  await withArchive(async (_dir, archive) => {
    const r = await run(["tar", "--utc", "-tzvf", archive]);
    assertEquals(r.code, 0, r.err);
    assertEquals(r.err, "");
    const lines = r.out.trim().split("\n");
    assertEquals(lines.length, ENTRIES.length);
    assertEquals(lines[0], "drwxr-xr-x 0/0               0 2025-03-04 05:06 vif-logs/");
    assertEquals(lines[1], "-rw------- 0/0               8 2025-03-04 05:06 vif-logs/status.json");
    assertEquals(lines[3], "-rw-r--r-- 0/0             512 2025-03-04 05:06 vif-logs/block.bin");
    assert(lines[4]!.endsWith(` vif-logs/${LONG_DIR}/split.txt`), lines[4]);
    assert(lines[5]!.endsWith(` vif-logs/${LONGER}`), lines[5]);
    assert(lines[6]!.endsWith(" vif-logs/ünïcode-名前.log"), lines[6]);
  });
});

Deno.test("tarGz() writes an archive GNU tar extracts byte for byte", async () => {
  await withArchive(async (dir, archive) => {
    const out = `${dir}/out`;
    await Deno.mkdir(out);
    const r = await run(["tar", "-xzf", archive, "-C", out]);
    assertEquals([r.code, r.err], [0, ""]);
    for (const e of ENTRIES) {
      const st = await Deno.stat(`${out}/${e.path}`);
      if (e.type === "directory") {
        assert(st.isDirectory);
        continue;
      }
      assertEquals(await Deno.readFile(`${out}/${e.path}`), e.data ?? new Uint8Array());
      assertEquals(st.mode! & 0o777, e.mode ?? 0o644);
      assertEquals(st.mtime?.getTime(), MTIME.getTime());
    }
  });
});

Deno.test("tarGz() writes an archive Python's tarfile reads", async () => {
  await withArchive(async (_dir, archive) => {
    const script = [
      "import json, sys, tarfile",
      "with tarfile.open(sys.argv[1], 'r:gz') as t:",
      "    out = [[m.name, m.type.decode(), m.size, m.mode, m.mtime,",
      "            t.extractfile(m).read().decode() if m.isfile() else None] for m in t]",
      "print(json.dumps(out))",
    ].join("\n");
    const r = await run(["/usr/bin/python3", "-c", script, archive]);
    assertEquals(r.code, 0, r.err);
    const members = JSON.parse(r.out) as [string, string, number, number, number, string | null][];
    assertEquals(
      members.map((m) => m[0]),
      ENTRIES.map((e) => e.path),
    );
    assertEquals(members[1], [
      "vif-logs/status.json",
      "0",
      8,
      0o600,
      MTIME.getTime() / 1000,
      '{"a":1}\n',
    ]);
    assertEquals(members[0]!.slice(1, 4), ["5", 0, 0o755]);
    assertEquals(members[5]![5], "pax path\n");
    assertEquals(members[6]![5], "utf-8 name\n");
  });
});

Deno.test("tar() ends with two zero blocks and pads to a whole record", async () => {
  const bytes = await bytesOf(tar([{ path: "a", data: text("x") }]));
  assertEquals(bytes.length % RECORD, 0);
  assertEquals(bytes.length, RECORD);
  assert(bytes.subarray(2 * BLOCK).every((b) => b === 0));
  const empty = await bytesOf(tar([]));
  assertEquals(empty.length, RECORD);
});

Deno.test("tarEntry() writes the checksum tar computes over the header", () => {
  const h = tarEntry({ path: "x.txt", data: text("hi"), mtime: new Date(0) }).subarray(0, BLOCK);
  const field = new TextDecoder().decode(h.subarray(148, 156));
  assertEquals(field.slice(6), "\0 ");
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  assertEquals(parseInt(field.slice(0, 6), 8), sum);
  assertEquals(new TextDecoder().decode(h.subarray(257, 265)), "ustar\u000000");
});

Deno.test("tarEntry() refuses an absolute path or a path with ..", () => {
  for (const path of ["/etc/passwd", "a/../b", "", "a//b", "./a"]) {
    assertThrows(() => tarEntry({ path }), RangeError, "not a plain relative path");
  }
});

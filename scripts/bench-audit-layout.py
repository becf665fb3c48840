"""A model of the audit drain's SQLite inserts, for comparing table layouts
before building one (BENCHMARKS.md, "Audit drain into SQLite"): N decision
records spread over TENANTS tenants, written in transactions of B records
(WAL, synchronous=FULL, as the store runs), into

  cur           the audit table as it is: primary key (tenant_id, event_id),
                indexes (tenant_id, ts) and (expires_at)
  cur-mig       the same after `cedargate-admin migrate` (the filter indexes
                on json_extract)
  new           one unique index (tenant_id, ts, event_id) in place of the
                primary key and the time index
  new-mig       new, with the filter indexes on plain columns
  new-mig-json  new, with the filter indexes on json_extract

Prints the CPU and wall time per record (Python's own share included, the
same in every layout). The database goes to DIR (default: /tmp).

usage: [B=1000] python3 scripts/bench-audit-layout.py LAYOUT [N] [TENANTS] [DIR]
"""
import sqlite3, os, sys, time, json, uuid, random
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
TENANTS = int(sys.argv[3]) if len(sys.argv) > 3 else 1
variant = sys.argv[1]
path = os.path.join(sys.argv[4] if len(sys.argv) > 4 else "/tmp", f"audit-layout-{variant}.db")
for s in ("", "-wal", "-shm"):
    try: os.remove(path + s)
    except FileNotFoundError: pass
c = sqlite3.connect(path, isolation_level=None)
c.execute("pragma journal_mode=WAL"); c.execute("pragma synchronous=FULL")
if variant.startswith("cur"):
    c.executescript("""CREATE TABLE audit (tenant_id TEXT NOT NULL, event_id TEXT NOT NULL, ts TEXT NOT NULL, expires_at INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (tenant_id, event_id));
CREATE INDEX audit_by_time ON audit (tenant_id, ts);
CREATE INDEX audit_by_expiry ON audit (expires_at);""")
    cols = "tenant_id, event_id, ts, expires_at, record"; extra = False
    if variant == "cur-mig":
        c.executescript("""CREATE INDEX audit_by_user ON audit (tenant_id, json_extract(record, '$.userId'), ts, event_id);
CREATE INDEX audit_by_action ON audit (tenant_id, json_extract(record, '$.action'), ts, event_id);
CREATE INDEX audit_denials ON audit (tenant_id, ts, event_id) WHERE json_extract(record, '$.details.decision') = 'Deny';""")
else:
    # merged: one time index that is also unique
    c.executescript("""CREATE TABLE audit (tenant_id TEXT NOT NULL, event_id TEXT NOT NULL, ts TEXT NOT NULL, expires_at INTEGER NOT NULL, record TEXT NOT NULL, user_id TEXT, action TEXT, denied INTEGER);
CREATE UNIQUE INDEX audit_by_time ON audit (tenant_id, ts, event_id);
CREATE INDEX audit_by_expiry ON audit (expires_at);""")
    if variant == "new-mig":
        c.executescript("""CREATE INDEX audit_by_user ON audit (tenant_id, user_id, ts, event_id);
CREATE INDEX audit_by_action ON audit (tenant_id, action, ts, event_id);
CREATE INDEX audit_denials ON audit (tenant_id, ts, event_id) WHERE denied = 1;""")
    if variant == "new-mig-json":
        c.executescript("""CREATE INDEX audit_by_user ON audit (tenant_id, json_extract(record, '$.userId'), ts, event_id);
CREATE INDEX audit_by_action ON audit (tenant_id, json_extract(record, '$.action'), ts, event_id);
CREATE INDEX audit_denials ON audit (tenant_id, ts, event_id) WHERE json_extract(record, '$.details.decision') = 'Deny';""")
base = json.loads('{"eventId":"x","timestamp":"x","tenantId":"acme","userId":"dave","action":"Read","resource":"CedarGate::Document::\\"q3-report\\"","details":{"clearance":1,"dataAgeMs":0,"decision":"Allow","determiningPolicies":["visibility.shared-read"],"errors":[],"kind":"decision","latencyUs":2382,"policyRevision":"sha256:bce048c351c54e29","roles":["editor"],"source":"authorize"},"ipAddress":"127.0.0.1","userAgent":"curl/7.88.1","success":true,"errorMessage":null,"expiresAt":2017131046,"writerId":"sidecar-01a2363c375576ec94837f6995e5d77c","seq":0,"prevHash":"b9ee2722ab3e9837a47a8b5d37396a77329d59a7445040787cedbc0fd8d0ce2c","hash":"b9ee2722ab3e9837a47a8b5d37396a77329d59a7445040787cedbc0fd8d0ce2c"}')
recs = []
t0 = time.time_ns()
users = [f"user{i}" for i in range(50)]
for i in range(N):
    ts = t0 + i * 25000
    eid = str(uuid.UUID(int=(ts // 1000000) << 80 | random.getrandbits(76)))
    tenant = f"tenant{random.randrange(TENANTS)}" if TENANTS > 1 else "acme"
    base["eventId"] = eid; base["tenantId"] = tenant; base["userId"] = random.choice(users); base["seq"] = i
    base["details"]["decision"] = "Deny" if random.random() < 0.1 else "Allow"
    tstr = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts // 10**9)) + ".%09dZ" % (ts % 10**9)
    base["timestamp"] = tstr
    recs.append((tenant, eid, tstr, 2017131046, json.dumps(base, separators=(",", ":")), base["userId"], "Read", base["details"]["decision"] == "Deny"))
ins_old = "INSERT OR IGNORE INTO audit (tenant_id, event_id, ts, expires_at, record) VALUES (?,?,?,?,?)"
ins_new = "INSERT OR IGNORE INTO audit (tenant_id, event_id, ts, expires_at, record, user_id, action, denied) VALUES (?,?,?,?,?,?,?,?)"
B = int(os.environ.get("B", "1000"))
p0 = time.process_time(); w0 = time.time()
for s in range(0, N, B):
    c.execute("BEGIN IMMEDIATE")
    if variant.startswith("cur"):
        c.executemany(ins_old, [r[:5] for r in recs[s:s+B]])
    else:
        c.executemany(ins_new, recs[s:s+B])
    c.execute("COMMIT")
p1 = time.process_time(); w1 = time.time()
size = os.path.getsize(path)
for suffix in ("", "-wal", "-shm"):
    try:
        os.remove(path + suffix)
    except FileNotFoundError:
        pass
print(f"{variant:14s} tenants={TENANTS} B={B} cpu/rec={(p1-p0)/N*1e6:6.1f}us wall/rec={(w1-w0)/N*1e6:6.1f}us db={size/1e6:.0f}MB")

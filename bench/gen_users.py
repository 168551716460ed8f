#!/usr/bin/env python3
"""Data for bench/ldap-plan.sh: a large, deterministic inetOrgPerson directory and a
matching NHS Directory snapshot.

  gen_users.py ldif --count N --out users.ldif [--entry-uuid]
      The base entries (dc=bench,dc=org, ou=people) and N inetOrgPerson users
      uid=uNNNNNNN,ou=people,dc=bench,dc=org. slapadd gives each its entryUUID; with
      --entry-uuid the LDIF carries a fixed one itself (for planning from the file, as
      bench/push.sh does).

  gen_users.py snapshot --count N --uuids uuids.ldif --agent-id ID --out snapshot.json
      A tansync.snapshot/v1 document. --uuids is `ldapsearch -LLL ... uid entryUUID`
      output read back from the loaded server. Every other user (even index) has an
      account managed by ID, anchored on its entryUUID (lowercased), holding what
      tansync would send, except: every 10th of those has another job title (update),
      every 200th sits in another organisation (move). The odd-index users have no
      account (provision). REMOVED extra accounts carry anchors the source does not
      have (remove, not_in_source).
      With --all (bench/delta.sh) every user has an account holding exactly what tansync
      would send and there are no extra accounts: the plan is all unchanged.

The same --count always gives the same users (fixed seed); the snapshot is derived from
them, so the expected plan is known: see expected() below.
Nothing here is personal data: names come from short lists, mail is under example.org,
phone numbers are in Ofcom's drama ranges (0113 496 0xxx) or 07123 4xxxxx.
"""
import argparse
import json
import random
import sys
import uuid

SUFFIX = "dc=bench,dc=org"
PEOPLE = f"ou=people,{SUFFIX}"
ODS = ["RXA", "RXB", "RXC"]
SEED = 20261122
REMOVED = 1000
REMOVED_NS = uuid.UUID("0b3c7f52-5d0e-4d8e-9a63-3f3f1d2b7c01")

GIVEN = ["Amelia", "Oliver", "Isla", "George", "Ava", "Noah", "Mia", "Arthur", "Ivy", "Leo",
         "Freya", "Oscar", "Grace", "Harry", "Lily", "Jack", "Ella", "Charlie", "Rosie", "Theo",
         "Aisha", "Mohammed", "Priya", "Ravi", "Chen", "Olumide", "Siobhan", "Rhys", "Ffion",
         "Dafydd", "Zofia", "Kwame", "Anya", "Tomasz", "Niamh", "Eilidh"]
FAMILY = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
          "Patel", "Khan", "Evans", "Thomas", "Roberts", "Walker", "Wright", "Thompson",
          "White", "Hughes", "Edwards", "Green", "Hall", "Wood", "Harris", "Martin", "Okafor",
          "Nowak", "Murphy", "Kelly", "Campbell", "Stewart", "Mensah", "Kowalski"]
TITLES = ["Staff Nurse", "Healthcare Assistant", "Consultant", "Registrar", "Physiotherapist",
          "Pharmacist", "Ward Clerk", "Midwife", "Occupational Therapist", "Radiographer",
          "Junior Doctor", "Porter", "Dietitian", "Paramedic", "Medical Secretary"]


def users(count):
    """Yield one dict per user, in index order (1-based), deterministically."""
    rnd = random.Random(SEED)
    for i in range(1, count + 1):
        given = rnd.choice(GIVEN)
        family = rnd.choice(FAMILY)
        u = {
            "i": i,
            "uid": f"u{i:07d}",
            "given": given,
            "family": family,
            "cn": f"{given} {family}",
            "title": rnd.choice(TITLES),
            "mail": f"{given.lower()}.{family.lower()}.{i}@example.org",
            "employee": f"E{i:07d}",
            "ods": ODS[rnd.randrange(len(ODS))],
            "tel": None,
            "mobile": None,
        }
        if rnd.random() < 0.6:
            u["tel"] = f"0113 496 {rnd.randrange(1000):04d}"
        if rnd.random() < 0.4:
            u["mobile"] = f"07123 4{rnd.randrange(100000):05d}"
        yield u


def e164(national):
    """UK national form (leading 0) to E.164, as tansync stores phone numbers."""
    return "+44" + national.replace(" ", "")[1:]


UUID_NS = uuid.UUID("6f1d3c2e-8f57-4a43-9a0b-2b6f7c1d9e10")


def write_ldif(count, out, entry_uuid=False):
    w = out.write
    w(f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
      f"dc: bench\no: tansync benchmark\n\n")
    w(f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n")
    for u in users(count):
        lines = [
            f"dn: uid={u['uid']},{PEOPLE}",
            "objectClass: inetOrgPerson",
            f"uid: {u['uid']}",
            f"cn: {u['cn']}",
            f"givenName: {u['given']}",
            f"sn: {u['family']}",
            f"title: {u['title']}",
            f"mail: {u['mail']}",
            f"employeeNumber: {u['employee']}",
            f"o: {u['ods']}",
        ]
        if entry_uuid:
            lines.append(f"entryUUID: {uuid.uuid5(UUID_NS, u['uid'])}")
        if u["tel"]:
            lines.append(f"telephoneNumber: {u['tel']}")
        if u["mobile"]:
            lines.append(f"mobile: {u['mobile']}")
        w("\n".join(lines) + "\n\n")


def read_uuids(path):
    """uid -> entryUUID from `ldapsearch -LLL ... uid entryUUID` output (unwrapped with -o ldif-wrap=no)."""
    out = {}
    cur = {}
    with open(path, encoding="utf-8") as f:
        for line in list(f) + ["\n"]:
            line = line.rstrip("\n")
            if not line:
                if "uid" in cur and "entryUUID" in cur:
                    out[cur["uid"]] = cur["entryUUID"]
                cur = {}
                continue
            if line.startswith("#"):
                continue
            k, sep, v = line.partition(": ")
            if sep and k in ("uid", "entryUUID"):
                cur[k] = v.strip()
    return out


def kind_of(i):
    """What the snapshot holds for user i (and so what the plan should do)."""
    if i % 2 == 1:
        return "provision"
    if i % 200 == 0:
        return "move"
    if i % 20 == 0:
        return "update"
    return "unchanged"


def expected(count):
    kinds = {}
    for i in range(1, count + 1):
        k = kind_of(i)
        kinds[k] = kinds.get(k, 0) + 1
    kinds["remove"] = REMOVED
    return kinds


def account_attrs(u):
    a = {
        "given_name": u["given"],
        "family_name": u["family"],
        "display_name": u["cn"],
        "job_title": u["title"],
        "employee_id": u["employee"],
    }
    if u["tel"]:
        a["telephone"] = e164(u["tel"])
    if u["mobile"]:
        a["mobile"] = e164(u["mobile"])
    return a


def write_snapshot(count, uuids_path, agent_id, out, everyone=False):
    uuids = read_uuids(uuids_path)
    persons = []
    missing = 0
    for u in users(count):
        k = "unchanged" if everyone else kind_of(u["i"])
        if k == "provision":
            continue
        x = uuids.get(u["uid"])
        if x is None:
            missing += 1
            continue
        attrs = account_attrs(u)
        ods = u["ods"]
        if k == "update":
            attrs["job_title"] = "Former " + u["title"]
        elif k == "move":
            ods = ODS[(ODS.index(ods) + 1) % len(ODS)]
        persons.append({
            "target_id": f"nhsdir-{u['i']:07d}",
            "external_id": x.lower(),
            "ods_code": ods,
            "status": "active",
            "managed_by": agent_id,
            "email": f"{u['given'].lower()}.{u['family'].lower()}{u['i']}@nhs.net",
            "attributes": attrs,
        })
    if missing:
        sys.exit(f"gen_users.py: {missing} users have no entryUUID in {uuids_path}")
    for j in range(0 if everyone else REMOVED):
        persons.append({
            "target_id": f"nhsdir-gone-{j:05d}",
            "external_id": str(uuid.uuid5(REMOVED_NS, str(j))),
            "ods_code": ODS[j % len(ODS)],
            "status": "active",
            "managed_by": agent_id,
            "attributes": {"given_name": "Former", "family_name": f"Starter{j}"},
        })
    doc = {
        "format": "tansync.snapshot/v1",
        "taken_at": "2026-11-22T09:00:00Z",
        "organisations": [
            {"ods_code": c, "name": f"Bench Trust {c}", "kind": "trust", "open": True,
             "cap": 1000000}
            for c in ODS
        ],
        "persons": persons,
    }
    json.dump(doc, out, separators=(",", ":"))
    out.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ldif")
    a.add_argument("--count", type=int, required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--entry-uuid", action="store_true")
    s = sub.add_parser("snapshot")
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--uuids", required=True)
    s.add_argument("--agent-id", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--all", action="store_true", help="an unchanged account for every user, no extras")
    e = sub.add_parser("expected", help="print the expected plan counts as JSON")
    e.add_argument("--count", type=int, required=True)
    args = ap.parse_args()
    if args.cmd == "ldif":
        with open(args.out, "w", encoding="utf-8") as f:
            write_ldif(args.count, f, args.entry_uuid)
    elif args.cmd == "snapshot":
        with open(args.out, "w", encoding="utf-8") as f:
            write_snapshot(args.count, args.uuids, args.agent_id, f, args.all)
    else:
        print(json.dumps(expected(args.count), sort_keys=True))


if __name__ == "__main__":
    main()

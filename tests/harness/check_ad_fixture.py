#!/usr/bin/env python3
"""Compare the AD fixture LDIF with what the running Samba DC returns.

    check_ad_fixture.py FIXTURE_LDIF SERVER_LDIF INCHAIN_DIR

SERVER_LDIF is `ldapsearch -LLL ... objectGUID memberOf` output for the
whole domain.  INCHAIN_DIR holds one file per nested group, named by the
index of that group in the list this script prints with --nested-groups,
each the `ldapsearch -LLL ... 1.1` result of an in-chain memberOf search.

Checks: every fixture entry with an objectGUID has exactly that objectGUID
on the server; every direct group membership shows up in the member's
memberOf; the in-chain (1.2.840.113556.1.4.1941) search of each group that
contains another group returns exactly its transitive members.
Stdlib only.
"""

import base64
import os
import sys


def parse_ldif(path):
    """Return a list of (dn, {attr_lower: [bytes values]}) from an LDIF file."""
    with open(path, "rb") as fh:
        raw = fh.read().decode("utf-8")
    # Unfold continuation lines (RFC 2849: newline followed by one space).
    text = raw.replace("\r\n", "\n").replace("\n ", "")
    entries = []
    for block in text.split("\n\n"):
        dn, attrs = None, {}
        for line in block.split("\n"):
            if not line or line.startswith("#") or ":" not in line:
                continue
            name, _, rest = line.partition(":")
            if rest.startswith(":"):
                value = base64.b64decode(rest[1:].strip())
            else:
                value = rest.strip().encode("utf-8")
            if name.lower() == "dn":
                dn = value.decode("utf-8")
            elif dn is not None:
                attrs.setdefault(name.lower(), []).append(value)
        if dn is not None:
            entries.append((dn, attrs))
    return entries


def norm(dn):
    return dn.lower().replace(", ", ",")


def fixture_groups(fixture):
    return {
        norm(dn): [norm(v.decode("utf-8")) for v in attrs.get("member", [])]
        for dn, attrs in fixture
        if any(v.lower() == b"group" for v in attrs.get("objectclass", []))
    }


def nested_groups(groups):
    """Groups that have at least one group among their members, sorted."""
    return sorted(g for g, members in groups.items() if any(m in groups for m in members))


def transitive_members(group, groups, seen=None):
    seen = set() if seen is None else seen
    for m in groups.get(group, []):
        if m not in seen:
            seen.add(m)
            transitive_members(m, groups, seen)
    return seen


def main(argv):
    fixture = parse_ldif(argv[1])
    groups = fixture_groups(fixture)
    if argv[2] == "--nested-groups":
        for g in nested_groups(groups):
            print(next(dn for dn, _ in fixture if norm(dn) == g))
        return 0

    server = {norm(dn): attrs for dn, attrs in parse_ldif(argv[2])}
    errors = []

    guids = 0
    for dn, attrs in fixture:
        want = attrs.get("objectguid")
        if not want:
            continue
        guids += 1
        got = server.get(norm(dn), {}).get("objectguid")
        if got != want:
            errors.append("objectGUID of %s: fixture %s, server %s" % (
                dn, base64.b64encode(want[0]).decode(),
                got and base64.b64encode(got[0]).decode()))

    links = 0
    for group, members in groups.items():
        for m in members:
            links += 1
            member_of = [norm(v.decode("utf-8")) for v in server.get(m, {}).get("memberof", [])]
            if group not in member_of:
                errors.append("memberOf of %s lacks %s" % (m, group))

    chains = 0
    for i, group in enumerate(nested_groups(groups)):
        chains += 1
        got = {norm(dn) for dn, _ in parse_ldif(os.path.join(argv[3], str(i)))}
        want = transitive_members(group, groups)
        if got != want:
            errors.append("in-chain members of %s: missing %s, unexpected %s" % (
                group, sorted(want - got), sorted(got - want)))

    for e in errors[:20]:
        print("MISMATCH: " + e, file=sys.stderr)
    if errors:
        print("%d mismatches" % len(errors), file=sys.stderr)
        return 1
    print("AD fixture OK: %d objectGUIDs, %d memberships, %d in-chain groups checked"
          % (guids, links, chains))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env bash
# fetch-converse.sh DEST: fetches the Converse.js web client (pinned below)
# from the npm registry and puts its dist/ folder in DEST/dist, for the
# example server's web_client setting (-web-client DEST), which serves it
# at /chat/.
#
#   bash scripts/fetch-converse.sh /var/lib/treff/converse
#   community serve -web-client /var/lib/treff/converse
#
# The tarball must match the integrity pinned here (npm also checks it
# against the registry's). Nothing is fetched when DEST already holds this
# version (DEST/VERSION and DEST/dist/converse.min.js). Needs npm and tar.
set -euo pipefail

VERSION=14.0.0
INTEGRITY=sha512-LFUg030jDalV47vI/vyVPqYPZfJYXFbubq8v0cFDe2zXNeeGEk3Up0Fj/WTzT6t+6do+cAIToy73eAj7RNDj2Q==

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 DEST   (Converse.js $VERSION into DEST/dist)" >&2
	exit 2
fi
dest=$1

if [ -f "$dest/dist/converse.min.js" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "converse.js@$VERSION" ]; then
	echo "converse.js@$VERSION already in $dest"
	exit 0
fi

for tool in npm tar; do
	if ! command -v "$tool" >/dev/null; then
		echo "$0: $tool is needed" >&2
		exit 1
	fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# npm pack downloads the tarball and checks it against the registry's
# integrity; --json reports the integrity of what it wrote.
# Three attempts, for a registry that hiccups.
for attempt in 1 2 3; do
	if (cd "$tmp" && npm pack "converse.js@$VERSION" --json --silent >pack.json 2>pack.log); then
		break
	fi
	if [ "$attempt" -eq 3 ]; then
		cat "$tmp/pack.log" >&2
		echo "$0: npm pack converse.js@$VERSION failed" >&2
		exit 1
	fi
	sleep $((attempt * 5))
done
got=$(node -e 'const p = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[0]; console.log(p.integrity + " " + p.filename)' "$tmp/pack.json")
read -r got_integrity file <<<"$got"
if [ "$got_integrity" != "$INTEGRITY" ]; then
	echo "$0: converse.js@$VERSION has integrity $got_integrity, want $INTEGRITY" >&2
	exit 1
fi

mkdir -p "$tmp/x"
tar -xzf "$tmp/$file" -C "$tmp/x" package/dist
if [ ! -f "$tmp/x/package/dist/converse.min.js" ]; then
	echo "$0: converse.js@$VERSION has no dist/converse.min.js" >&2
	exit 1
fi

# Replace DEST/dist as a whole (no leftovers of another version); the
# marker comes last, so an interrupted run is fetched again.
mkdir -p "$dest"
rm -f "$dest/VERSION"
rm -rf "$dest/dist.old"
if [ -e "$dest/dist" ]; then
	mv "$dest/dist" "$dest/dist.old"
fi
mv "$tmp/x/package/dist" "$dest/dist"
rm -rf "$dest/dist.old"
echo "converse.js@$VERSION" >"$dest/VERSION"
echo "converse.js@$VERSION in $dest/dist"

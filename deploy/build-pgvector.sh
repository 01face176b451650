#!/usr/bin/env bash
# Builds and installs the pgvector extension for PostgreSQL 15.
#
# Debian bookworm has no pgvector package, so we fetch Debian's *source*
# package from the trixie suite and build it against postgresql-server-dev-15.
# The temporary deb-src entry is derived from this machine's own apt sources
# (never a hard-coded mirror) and lives in a private apt state directory, so
# the system's package lists are left untouched.
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
SUITE=${PGVECTOR_SUITE:-trixie}

sharedir=$("$PG_CONFIG" --sharedir)
pkglibdir=$("$PG_CONFIG" --pkglibdir)
if [ -f "$sharedir/extension/vector.control" ] && [ -f "$pkglibdir/vector.so" ]; then
  echo "pgvector: already installed ($(sed -n "s/^default_version = '\(.*\)'/\1/p" "$sharedir/extension/vector.control"))"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi

# Pick the machine's main Debian archive: the deb822 stanza (or one-line entry)
# that serves the release's own suite, not -security or -updates.
sources=/etc/apt/sources.list.d/debian.sources
uri="" keyring=""
if [ -f "$sources" ]; then
  read -r uri keyring < <(awk '
    BEGIN { RS=""; FS="\n" }
    {
      u=""; s=""; k=""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^URIs:/)      { u = $i; sub(/^URIs:[ \t]*/, "", u); split(u, us, /[ \t]+/); u = us[1] }
        if ($i ~ /^Suites:/)    { s = $i }
        if ($i ~ /^Signed-By:/) { k = $i; sub(/^Signed-By:[ \t]*/, "", k) }
      }
      if (u != "" && s ~ /[ \t][a-z]+([ \t]|$)/ && s !~ /^Suites:[ \t]*[a-z]+-security/) { print u, k; exit }
    }' "$sources")
fi
if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
  uri=$(awk '$1 == "deb" && $3 !~ /-(security|updates)$/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
fi
if [ -z "$uri" ]; then
  echo "pgvector: could not find a Debian archive in $sources or /etc/apt/sources.list" >&2
  exit 1
fi
keyring=${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources.list.d" "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
cat > "$work/sources.list.d/pgvector-src.sources" <<SRC
Types: deb-src
URIs: $uri
Suites: $SUITE
Components: main
Signed-By: $keyring
SRC
apt_private=(
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::Etc::SourceParts=$work/sources.list.d"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache"
  -o "APT::Sandbox::User=root"
)

echo "pgvector: fetching Debian source package from $SUITE ($uri)"
start=$(date +%s)
apt-get "${apt_private[@]}" -q update
(cd "$work/src" && apt-get "${apt_private[@]}" -q source pgvector)
srcdir=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)
if [ -z "$srcdir" ]; then
  echo "pgvector: apt-get source did not unpack a pgvector-* directory" >&2
  exit 1
fi
echo "pgvector: building $(basename "$srcdir") against $("$PG_CONFIG" --version)"
make -s -C "$srcdir" PG_CONFIG="$PG_CONFIG" -j"$(nproc)"
"${sudo[@]}" make -s -C "$srcdir" PG_CONFIG="$PG_CONFIG" install
version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$sharedir/extension/vector.control")
echo "pgvector: installed version $version in $(( $(date +%s) - start )) s"

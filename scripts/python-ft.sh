#!/usr/bin/env bash
# Builds a free-threaded CPython 3.13 (`--disable-gil`) from Debian's python3.13 source
# package and prints the path of its python. The verifier's free-threading tests need one
# (ISOLINT_TEST_PYTHONS); no distribution ships a free-threaded 3.13 for bookworm.
#
# Installs into a cache folder outside the repository and reuses it when present:
#   ${ISOLINT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/isolint}/python-ft/<version>t
# Needs root (apt-get) the first time. Takes 5-15 minutes of CPU; runs under `nice`.
# Only the last line of stdout is the path; progress goes to stderr.
set -euo pipefail

cache_root=${ISOLINT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/isolint}
ft_root="$cache_root/python-ft"
mkdir -p "$ft_root"

log() { echo "python-ft: $*" >&2; }

# Reuse any finished build (the marker is written last, so a broken build is not reused).
for done_marker in "$ft_root"/*t/.complete; do
  [ -e "$done_marker" ] || continue
  prefix=$(dirname "$done_marker")
  python="$prefix/bin/python3.13t"
  if [ -x "$python" ] && "$python" -c 'import sys; sys.exit(sys._is_gil_enabled())' 2>/dev/null; then
    echo "$python"
    exit 0
  fi
done

# Debian's source package for python3.13: a deb-src entry for trixie (3.13 is its default Python).
sources=/etc/apt/sources.list.d/isolint-trixie-src.sources
if [ ! -e "$sources" ]; then
  log "adding a deb-src entry for Debian trixie ($sources)"
  cat >"$sources" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
log "apt-get update"
apt-get update -qq >&2
command -v dpkg-source >/dev/null || apt-get install -y -qq dpkg-dev >&2
# Headers and libraries the interpreter's own extension modules need (most come with pyenv's).
apt-get install -y -qq build-essential pkg-config libssl-dev zlib1g-dev libbz2-dev \
  libreadline-dev libsqlite3-dev libffi-dev liblzma-dev libncurses-dev uuid-dev >&2

work=$(mktemp -d "$ft_root/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
log "apt-get source --download-only python3.13 (in $work)"
apt-get source --download-only -qq python3.13 >&2
# The upstream tarball of the source package, without Debian's patches: those turn off
# ensurepip and move site-packages to a Debian scheme (posix_local, dist-packages), which a
# private test interpreter must not have.
orig=$(ls python3.13_*.orig.tar.* 2>/dev/null | head -n 1)
[ -n "$orig" ] || { log "the source package has no python3.13_*.orig.tar.* tarball"; exit 1; }
tar -xf "$orig"
src=$(find . -maxdepth 1 -type d -name 'Python-3.13*' | head -n 1)
[ -n "$src" ] || { log "$orig unpacked into no Python-3.13* folder"; exit 1; }
cd "$src"
version=$(sed -n 's/^#define PY_VERSION[[:space:]]*"\([^"+]*\).*"/\1/p' Include/patchlevel.h)
[ -n "$version" ] || { log "cannot read PY_VERSION from Include/patchlevel.h"; exit 1; }
prefix="$ft_root/${version}t"
rm -rf "$prefix"
log "building CPython $version --disable-gil into $prefix"
# Upstream's build system, not Debian's packaging rules: we want a private prefix, not a .deb.
nice -n 10 ./configure --prefix="$prefix" --disable-gil --with-ensurepip=install \
  --disable-test-modules >"$work/configure.log" 2>&1 \
  || { tail -n 30 "$work/configure.log" >&2; exit 1; }
nice -n 10 make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -n 40 "$work/make.log" >&2; exit 1; }
nice -n 10 make install >"$work/install.log" 2>&1 || { tail -n 40 "$work/install.log" >&2; exit 1; }
python="$prefix/bin/python3.13t"
"$python" -c 'import sys; assert not sys._is_gil_enabled(), "GIL is enabled"' >&2
touch "$prefix/.complete"
log "done: $("$python" -VV)"
echo "$python"

#!/usr/bin/env bash
# What the local stack and the test suite need from the system, installed (as root, with
# apt) or named (otherwise):
#   java      a JRE 17+ for the Kafka broker       Debian: default-jre-headless (17 on bookworm)
#   mvn       fetches the broker jars              Debian: maven
#   pg_ctl    a PostgreSQL server (initdb, pg_ctl) Debian: postgresql
#   psql      offline-migration test (psql -f)     Debian: postgresql-client (with postgresql)
#   chromium  the API docs page test (headless)    Debian: chromium
#   npm       the official AsyncAPI JSON Schema    Debian: npm
#             (tests/support/asyncapi_specs.py)
#   promtool  alert rule checks and tests, and     Debian: prometheus
#             prometheus, the metrics end-to-end test
#
# Not Debian/Ubuntu? Install the same things with your package manager and put them on PATH
# (PostgreSQL's bin directory may stay off PATH: point PHOENIX_PG_BIN at it), e.g.
#   Fedora/RHEL: dnf install java-17-openjdk-headless maven postgresql-server chromium npm prometheus
#   Arch:        pacman -S jre17-openjdk-headless maven postgresql chromium npm prometheus
#   macOS:       brew install openjdk@17 maven postgresql@16 node prometheus && brew install --cask chromium
# and set PHOENIX_CHROMIUM to the browser's path if it is not /usr/bin/chromium.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 \
  || missing+=(postgresql)
id postgres >/dev/null 2>&1 || [ "$(id -u)" != 0 ] || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || [ -x "${PHOENIX_CHROMIUM:-/usr/bin/chromium}" ] \
  || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } \
  || [ -x /usr/bin/promtool ] || missing+=(prometheus)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
# One package may be named twice (postgresql); apt does not mind, the messages should not.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
echo "error: missing system packages: ${missing[*]}" >&2
if command -v apt-get >/dev/null 2>&1; then
  echo "install them, e.g.: sudo apt-get install -y ${missing[*]}" >&2
else
  echo "this is not a Debian-like system: install the equivalents with your package" \
       "manager (see the top of $0)" >&2
fi
exit 1

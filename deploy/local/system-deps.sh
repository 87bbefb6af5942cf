#!/usr/bin/env bash
# Installs (as root, with apt) or names (otherwise) what the local stack needs from the system:
# a JDK 17+ and Maven for the Kafka broker jars, Debian's postgresql for the database, Debian's
# prometheus for promtool (alert rule checks and tests) and the metrics end-to-end test.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 \
  || missing+=(postgresql)
id postgres >/dev/null 2>&1 || [ "$(id -u)" != 0 ] || missing+=(postgresql)
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } \
  || [ -x /usr/bin/promtool ] || missing+=(prometheus)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
echo "error: missing system packages: ${missing[*]}" >&2
echo "install them, e.g.: sudo apt-get install -y ${missing[*]}" >&2
exit 1

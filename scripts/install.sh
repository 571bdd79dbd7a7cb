#!/usr/bin/env bash
# Install everything autosmime, its tests and its demo need on Debian 12 / Ubuntu (run as root).
# Idempotent. System daemons are never started: the test suite runs its own instances on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

PACKAGES=(
  openssl gpgsm libnss3-tools              # interop peers: OpenSSL, GnuPG, NSS (Thunderbird's engine)
  dovecot-imapd dovecot-lmtpd dovecot-submissiond postfix   # the loopback mail stack
  ca-certificates
  postgresql                               # the CA and directory servers on PostgreSQL (tests run both)
  gcc python3-dev                          # the optional C scans (autosmime/smime/_speedups.c); CI requires them
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  # Keep package scripts from starting system daemons on ports 25/143/993.
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ -n "$created_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test]"
echo "autosmime: installed ($(python3 -c 'import autosmime; print(autosmime.__version__)'))"

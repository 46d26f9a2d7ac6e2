"""The local stack: emulators, the SRP emulator, the Eventarc bridge and the demo.

Never imported by the shared package or the functions.
"""

import os

# We start children with a preexec_fn (so they die with us); gRPC's fork handlers can abort
# such a child (epoll_wait: Bad file descriptor). Must be set before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

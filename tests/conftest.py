import os

import torch

# pytest-xdist runs one worker per core: one thread each avoids oversubscribing the CPU.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

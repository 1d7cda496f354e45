"""The scanner package.

Under ``uv run``, Ray (read once, when ray is first imported) would package the project
for every worker and start each worker through uv. Locally and on clusters with the same
install the workers' own interpreter is right, so that behaviour is switched off before
anything imports Ray; set ``RAY_ENABLE_UV_RUN_RUNTIME_ENV=1`` to have it back.
"""

import os

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

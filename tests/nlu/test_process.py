"""The NLU child process never outlives the process that started it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.channels.widget_client import wait_for
from bot.core.settings import PROJECT_ROOT

pytestmark = pytest.mark.nlu

SPAWNER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from bot.core.settings import load_settings
    from nlu.process import NLUServiceProcess

    async def main():
        svc = NLUServiceProcess(load_settings(), Path(sys.argv[1]), port=0)
        await svc.start(timeout=180)
        print(svc.proc.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # die without any chance to clean up

    asyncio.run(main())
    """
)


async def test_service_exits_when_its_parent_is_killed(nlu_model: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SPAWNER, str(nlu_model)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    child = int(out.stdout.strip().splitlines()[-1])

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        # a zombie re-parented to init also counts as gone
        return Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"

    try:
        await wait_for(gone, timeout=30, every=0.5)
    finally:
        if not gone():
            os.kill(child, 9)

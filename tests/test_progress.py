"""Progress shows the step that is running, also while one XAPI call lasts (a slow
PBD.plug): the plugin's progress thread writes it into the caller's task meanwhile."""

import time

import xenvol
from test_interrupt import file_volume


def test_progress_shows_the_step_during_one_long_call(ppool):
    info = file_volume(ppool.state_dir)
    ppool.admin.set_latency("PBD.plug", 4.0, "plugin")
    seen = []

    def progress(step):
        seen.append((time.monotonic(), step))

    with xenvol.Client(ppool.url, "root", ppool.info["password"], progress=progress) as c:
        started = time.monotonic()
        att = c.attach(info, "vm-2")
        ended = time.monotonic()
        c.detach(attachment=att)
    plugs = [t for t, step in seen if step.startswith("plug PBD of SR")]
    assert plugs, seen
    # shown while the plug ran (it took 4 s of the call), not once it was over
    assert plugs[0] < ended - 2.0 and plugs[0] > started, (started, ended, seen)

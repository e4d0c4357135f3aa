# streaming_checkpoint_probe.py — does LongLive's gradient_checkpointing change the streaming long tuning's gradient?
# LongLive v1.0 checkpoints every block of a grad call with torch.utils.checkpoint(use_reentrant=False), the KV path
# included, so a block's backward re-runs its attention against the cache tensors AND indices of backward time (later
# chunks written, the window rolled). This runs our transcription (streaming_step_ref.py) with and without that
# checkpointing on the same draws and prints how far the generator gradients move (docs/longlive.md has the figures):
#
#   /usr/bin/python3 tests/ref/streaming_checkpoint_probe.py
#
# Cases: LongLive's shape (sink 3 = num_frame_per_block, slice_last_frames 21 >= chunk 21 - 3), a sink of two
# blocks (the recompute no longer writes the block's own keys into the protected sink slots), and a cache too short
# for the window to survive until backward (slice_last_frames 6).
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import streaming_step_ref as ref  # noqa: E402
import wan_ref  # noqa: E402

captured = {}
wan_ref.save_safetensors = lambda path, tensors: captured.__setitem__("data", tensors)


def run(variant, checkpoint):
    with tempfile.TemporaryDirectory() as d:
        ref.main(d, variant, checkpoint)
    return captured["data"]


def compare(label, variant, sink, slice_last):
    ref.SINK, ref.SLICE = sink, slice_last
    a = run(variant, False)
    try:
        b = run(variant, True)
    except RuntimeError as e:
        print("%-34s checkpointed backward fails: %s" % (label, str(e).splitlines()[0][:90]))
        return
    for it in ("g0", "g1"):
        keys = [k for k in a if k.startswith(it + ".")]
        num = sum(((a[k] - b[k]).double() ** 2).sum() for k in keys) ** 0.5
        den = sum((a[k].double() ** 2).sum() for k in keys) ** 0.5
        worst = max(((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-30)).item() for k in keys)
        same = all(torch.equal(a[k], b[k]) for k in keys)
        print("%-34s %s |dg|/|g| %.3g  worst tensor max rel %.3g  bit-identical %s" % (label, it, num / den, worst, same))


if __name__ == "__main__":
    compare("stream (LongLive: sink 3, slice 21)", "stream", 3, 21)
    compare("switch (LongLive: sink 3, slice 21)", "switch", 3, 21)
    compare("stream, sink 6 (two blocks)", "stream", 6, 21)
    compare("stream, slice_last_frames 6", "stream", 3, 6)

"""Fixtures for tests/model_attention_head.rs: the authors' attention-pooling head, run in PyTorch.

Salar & Ahmadi (The Visual Computer 2024) publish their head in `models.py` / `transformer.py`.
This script does not copy that code: it reads both files from the fetched mirror of their
repository at run time (`git show`), imports them from a temporary directory, builds `Head` with
random weights and records its outputs for the Rust port to match.

Their `Head` hardcodes `channel_size = 2048`; to keep the fixtures small the 1x1 projection is
replaced after construction by a `Conv2d(CHANNELS, hidden, 1)` (everything else is theirs).
Every parameter is then perturbed with Gaussian noise, so that zero biases and unit LayerNorm
scales (PyTorch's defaults) cannot hide a misplaced or untransposed tensor.

Writes, under tests/fixtures/model/attention/:
- `<name>.safetensors`: the head's state_dict with the `head.` prefix of their `Annotator`, plus one
  `backbone.` tensor the loader must ignore; `paper.pth` holds the same as `paper.safetensors`;
- `<name>_io.safetensors`: `features` [2, C, h, w], `logits` [2, classes], `attention`
  [2, classes, h*w] (the last layer's cross-attention, averaged over heads).

Usage: python scripts/attention_head_fixtures.py [path/to/their/repo (bare git dir)]
(torch, timm and safetensors needed; no network).
"""

import os
import subprocess
import sys
import tempfile
import types

import torch
from safetensors.torch import save_file

DEFAULT_REPO = (
    "/work/.mirror/parham1998+Enhancing-High-Vocabulary-IA-with-a-Novel-Attention-Based-Pooling/repo"
)
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "model", "attention")

CHANNELS, HIDDEN, HEADS, FEEDFORWARD, CLASSES = 32, 32, 4, 48, 7
BATCH, HEIGHT, WIDTH = 2, 4, 3

# name -> (decoder layers, norm_first, remove_self_attn, keep_query_position)
CONFIGS = {
    "paper": (1, True, True, True),
    "post_norm_self_attn": (2, False, False, True),
    "no_query_position": (1, True, False, False),
}


def import_theirs(repo):
    tmp = tempfile.mkdtemp(prefix="attention_head_")
    for name in ("models.py", "transformer.py"):
        text = subprocess.run(
            ["git", "-C", repo, "show", f"HEAD:{name}"], check=True, capture_output=True
        ).stdout
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(text)
    sys.path.insert(0, tmp)
    import models  # noqa: E402  (timm is imported there but not used by Head)

    return models


def build(models, layers, norm_first, remove_self_attn, keep_query_position, seed):
    torch.manual_seed(seed)
    args = types.SimpleNamespace(data="Corel-5k")
    head = models.Head(
        args,
        num_classes=CLASSES,
        hidden_size=HIDDEN,
        num_heads=HEADS,
        num_decoder_layers=layers,
        feedforward_size=FEEDFORWARD,
        norm_first=norm_first,
        remove_self_attn=remove_self_attn,
        keep_query_position=keep_query_position,
    )
    head.channel_size = CHANNELS
    head.linear_projection = torch.nn.Conv2d(CHANNELS, HIDDEN, kernel_size=1)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return head.eval()


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_REPO
    models = import_theirs(repo)
    os.makedirs(OUT, exist_ok=True)
    for seed, (name, config) in enumerate(CONFIGS.items()):
        head = build(models, *config, seed=seed)
        torch.manual_seed(100 + seed)
        features = torch.randn(BATCH, CHANNELS, HEIGHT, WIDTH)
        with torch.no_grad():
            logits, attention = head(features)
        assert attention.shape == (BATCH, CLASSES, HEIGHT * WIDTH), attention.shape
        state = {f"head.{k}": v.contiguous() for k, v in head.state_dict().items()}
        state["backbone.features.0.weight"] = torch.zeros(2, 3)
        save_file(state, os.path.join(OUT, f"{name}.safetensors"))
        if name == "paper":
            torch.save(state, os.path.join(OUT, f"{name}.pth"))
        save_file(
            {
                "features": features.contiguous(),
                "logits": logits.contiguous(),
                "attention": attention.contiguous(),
            },
            os.path.join(OUT, f"{name}_io.safetensors"),
        )
        print(name, sorted(state)[:3], "...", len(state), "tensors")


if __name__ == "__main__":
    main()

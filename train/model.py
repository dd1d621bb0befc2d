"""The ddpmc epsilon-model (v-prediction U-Net), PyTorch side.

The Rust module src/model/unet.rs mirrors this file: parameter names here are the
safetensors keys there. Change both together, re-export, and regenerate the parity vector.

Layout (see models/README.md):
  stem   pixel-unshuffle 2x2 (3 -> 12 channels at H/2), conv3x3 12 -> c0
  down   per level i: `blocks` ResBlocks (ci -> ci), keep a skip, then Down (ci -> c(i+1))
  mid    one ResBlock at the coarsest level
  up     per level i (coarse to fine): ResBlock(concat(h, skip_i): 2ci -> ci), then Up
  out    ChanNorm, SiLU, conv3x3 c0 -> 12, pixel-shuffle 2x2 -> 3 channels at H

Down = pixel-unshuffle + 1x1 conv; Up = 1x1 conv + pixel-shuffle. The norm is a per-pixel
LayerNorm over channels (ChanNorm): its statistics do not depend on the image size, so a
96x96 training crop and a 768x512 image (or a tile of a larger one) see the same network.
The noise level enters as log-SNR through a sinusoidal embedding and an MLP, added to every
ResBlock. Output is v = sqrt(abar) eps - sqrt(1 - abar) x0, so that
x0 = sqrt(abar) z - sqrt(1 - abar) v is well conditioned at every noise level.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_CONFIG = {
    "channels": [48, 64, 96, 128],
    "blocks": 1,
    "emb_freqs": 16,
    "emb_dim": 128,
}


def logsnr_embedding(logsnr: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """Sinusoidal embedding of log-SNR; frequencies geometric from 0.1 to 100 (rad per nat)."""
    k = torch.arange(n_freqs, dtype=torch.float32, device=logsnr.device)
    freqs = 0.1 * torch.pow(torch.tensor(1000.0, device=logsnr.device), k / (n_freqs - 1))
    args = logsnr.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ChanNorm(nn.Module):
    """LayerNorm over the channel dimension at each pixel (eps 1e-5, learned affine)."""

    def __init__(self, c: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        mu = x.mean(dim=1, keepdim=True)
        xc = x - mu
        var = (xc * xc).mean(dim=1, keepdim=True)
        y = xc * torch.rsqrt(var + 1e-5)
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1 = ChanNorm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = ChanNorm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, e):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        s = x if self.skip is None else self.skip(x)
        return s + h


class Down(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(4 * cin, cout, 1)

    def forward(self, x):
        return self.conv(F.pixel_unshuffle(x, 2))


class Up(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, 4 * cout, 1)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), 2)


class UNet(nn.Module):
    def __init__(self, config=None):
        super().__init__()
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(config or {})
        # "arch" names the network (src/model/mod.rs, ARCHITECTURES); absent = "unet-v1", the
        # only one so far. Exports keep the key only when the config had it, so the shipped
        # model's bytes (and id) do not change.
        if cfg.get("arch", "unet-v1") != "unet-v1":
            raise ValueError(f"arch {cfg['arch']!r}: train/model.py builds only 'unet-v1'")
        self.config = cfg
        ch = cfg["channels"]
        nb = cfg["blocks"]
        ed = cfg["emb_dim"]
        self.emb_freqs = cfg["emb_freqs"]
        self.emb1 = nn.Linear(2 * self.emb_freqs, ed)
        self.emb2 = nn.Linear(ed, ed)
        self.stem = nn.Conv2d(12, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i, c in enumerate(ch):
            self.down_blocks.append(nn.ModuleList([ResBlock(c, c, ed) for _ in range(nb)]))
            if i + 1 < len(ch):
                self.downs.append(Down(c, ch[i + 1]))
        self.mid = ResBlock(ch[-1], ch[-1], ed)
        self.up_blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, c in enumerate(ch):
            self.up_blocks.append(ResBlock(2 * c, c, ed))
            if i > 0:
                self.ups.append(Up(c, ch[i - 1]))
        self.out_norm = ChanNorm(ch[0])
        self.out_conv = nn.Conv2d(ch[0], 12, 3, padding=1)

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** len(self.config["channels"])

    def forward(self, z, logsnr):
        e = F.silu(self.emb2(F.silu(self.emb1(logsnr_embedding(logsnr, self.emb_freqs)))))
        h = self.stem(F.pixel_unshuffle(z, 2))
        skips = []
        n = len(self.down_blocks)
        for i in range(n):
            for blk in self.down_blocks[i]:
                h = blk(h, e)
            skips.append(h)
            if i + 1 < n:
                h = self.downs[i](h)
        h = self.mid(h, e)
        for i in reversed(range(n)):
            h = self.up_blocks[i](torch.cat([h, skips[i]], dim=1), e)
            if i > 0:
                h = self.ups[i - 1](h)
        h = self.out_conv(F.silu(self.out_norm(h)))
        return F.pixel_shuffle(h, 2)


def flops_per_pixel(model: UNet) -> int:
    """Multiply-adds x 2 of the convolutions and per-pixel linears, per input pixel."""
    total = 0.0

    def conv_hook(mod, inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total += 2.0 * k * mod.in_channels * mod.out_channels * out.shape[2] * out.shape[3]

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64), torch.zeros(1))
    for h in hooks:
        h.remove()
    return int(round(total / (64 * 64)))


if __name__ == "__main__":
    m = UNet()
    print("parameters", sum(p.numel() for p in m.parameters()))
    print("flops/pixel", flops_per_pixel(m))

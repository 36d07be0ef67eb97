"""PyTorch model definitions of real architectures, scaled down (width, depth, input size) but keeping the features
that make real models hard to convert. No weights are downloaded; nothing comes from a hub or a model package.
Every factory returns an eval-mode nn.Module whose forward argument names are the input names."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------------- ResNet (BN, GAP)
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + idt)


class ResNet(nn.Module):
    """ResNet-18 layout (stem, 4 stages of BasicBlocks, global mean pool, fc), width 16, 1 block per stage."""

    def __init__(self, classes: int = 10, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        chans = [width, width * 2, width * 4, width * 8]
        blocks, cin = [], width
        for i, c in enumerate(chans):
            blocks.append(BasicBlock(cin, c, 1 if i == 0 else 2))
            cin = c
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, image):
        x = self.layers(self.stem(image))
        return self.fc(x.mean(dim=(2, 3)))


# --------------------------------------------------------------------------------------- MobileNetV2 (ReLU6, inverted res)
class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand, act=nn.ReLU6, se: nn.Module | None = None, k: int = 3):
        super().__init__()
        hid = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), act()]
        layers += [nn.Conv2d(hid, hid, k, stride, k // 2, groups=hid, bias=False), nn.BatchNorm2d(hid), act()]
        if se is not None:
            layers.append(se)
        layers += [nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        cfg = [(1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2), (6, 24, 1, 2), (6, 32, 1, 1)]  # t, c, n, s (width 0.35-ish)
        layers = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6()]
        cin = 16
        for t, c, n, s in cfg:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [nn.Conv2d(cin, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(128, classes))

    def forward(self, image):
        x = F.adaptive_avg_pool2d(self.features(image), 1).flatten(1)
        return self.classifier(x)


# --------------------------------------------------------------------------------- MobileNetV3 (hardswish, hardsigmoid SE)
class SqueezeExcite(nn.Module):
    def __init__(self, ch: int, reduce: int = 4, gate=nn.Hardsigmoid, act=nn.ReLU):
        super().__init__()
        self.fc1 = nn.Conv2d(ch, max(8, ch // reduce), 1)
        self.act = act()
        self.fc2 = nn.Conv2d(max(8, ch // reduce), ch, 1)
        self.gate = gate()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class MobileNetV3Small(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        # k, exp, out, se, act, stride (MobileNetV3-Small's table, channels halved, fewer blocks)
        cfg = [(3, 16, 8, True, nn.ReLU, 2), (3, 36, 12, False, nn.ReLU, 2), (3, 44, 12, False, nn.ReLU, 1),
               (5, 48, 20, True, nn.Hardswish, 2), (5, 120, 20, True, nn.Hardswish, 1), (5, 60, 24, True, nn.Hardswish, 1)]
        layers = [nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish()]
        cin = 8
        for k, exp, out, se, act, s in cfg:
            layers.append(_MBv3Block(cin, exp, out, k, s, se, act))
            cin = out
        layers += [nn.Conv2d(cin, 144, 1, bias=False), nn.BatchNorm2d(144), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(144, 256), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(256, classes))

    def forward(self, image):
        x = F.adaptive_avg_pool2d(self.features(image), 1).flatten(1)
        return self.classifier(x)


class _MBv3Block(nn.Module):
    def __init__(self, cin, exp, cout, k, stride, se, act):
        super().__init__()
        layers = []
        if exp != cin:
            layers += [nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), act()]
        layers += [nn.Conv2d(exp, exp, k, stride, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp), act()]
        if se:
            layers.append(SqueezeExcite(exp))
        layers += [nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


# ------------------------------------------------------------------------------------------ EfficientNet-B0 (SiLU, SE)
class EfficientNetB0(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        # expand, channels, repeats, stride, kernel (B0's table at width 0.25, depth ~0.5)
        cfg = [(1, 8, 1, 1, 3), (6, 12, 1, 2, 3), (6, 16, 2, 2, 5), (6, 24, 1, 2, 3), (6, 32, 1, 1, 5)]
        layers = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU()]
        cin = 16
        for e, c, n, s, k in cfg:
            for i in range(n):
                se = SqueezeExcite(cin * e, reduce=4 * e, gate=nn.Sigmoid, act=nn.SiLU)
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, e, act=nn.SiLU, se=se, k=k))
                cin = c
        layers += [nn.Conv2d(cin, 128, 1, bias=False), nn.BatchNorm2d(128), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(128, classes)

    def forward(self, image):
        return self.head(self.features(image).mean(dim=(2, 3)))


# ------------------------------------------------------------------------------------ ConvNeXt (LayerNorm, GELU, dw 7x7)
class LayerNorm2d(nn.LayerNorm):
    """channels-first LayerNorm as ConvNeXt writes it: permute to NHWC, LayerNorm, permute back."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(self.act(self.pw1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, classes: int = 10, dims=(16, 32, 64)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))
        stages = []
        for i, d in enumerate(dims):
            if i:
                stages += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], d, 2, 2)]
            stages.append(ConvNeXtBlock(d))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, image):
        x = self.stages(self.stem(image))
        return self.head(self.norm(x.mean(dim=(2, 3))))


# ------------------------------------------------------------------------------ YOLO-style detector with top-k decoding
class YoloLite(nn.Module):
    """CSP-ish backbone, a 2-scale anchor-free head (boxes cx,cy,w,h + class scores), decoding in the graph (grid
    offsets, sigmoid, exp), concat of the scales, and a top-k post-process: outputs boxes [1, K, 4], scores [1, K],
    indices [1, K] (int64, which anchor)."""

    def __init__(self, classes: int = 4, k: int = 20):
        super().__init__()
        c = 16
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.BatchNorm2d(c), nn.SiLU())
        self.s1 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, 2, 1), nn.BatchNorm2d(2 * c), nn.SiLU())  # /4
        self.s2 = nn.Sequential(nn.Conv2d(2 * c, 4 * c, 3, 2, 1), nn.BatchNorm2d(4 * c), nn.SiLU())  # /8
        self.s3 = nn.Sequential(nn.Conv2d(4 * c, 4 * c, 3, 2, 1), nn.BatchNorm2d(4 * c), nn.SiLU())  # /16
        self.heads = nn.ModuleList([nn.Conv2d(4 * c, 4 + 1 + classes, 1), nn.Conv2d(4 * c, 4 + 1 + classes, 1)])
        self.strides = (8, 16)
        self.k = k

    def _decode(self, feat, head, stride):
        p = head(feat)  # 1 x (5+C) x H x W
        n, ch, h, w = p.shape
        p = p.view(n, ch, h * w).permute(0, 2, 1)  # 1 x HW x (5+C)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
        grid = torch.stack([xs, ys], -1).view(1, h * w, 2)
        xy = (p[..., 0:2].sigmoid() * 2 - 0.5 + grid) * stride
        wh = p[..., 2:4].clamp(-4, 4).exp() * stride
        obj = p[..., 4:5].sigmoid()
        cls = p[..., 5:].sigmoid()
        return torch.cat([xy - wh / 2, xy + wh / 2], -1), obj * cls

    def forward(self, image):
        f2 = self.s2(self.s1(self.stem(image)))
        f3 = self.s3(f2)
        b2, s2 = self._decode(f2, self.heads[0], self.strides[0])
        b3, s3 = self._decode(f3, self.heads[1], self.strides[1])
        boxes = torch.cat([b2, b3], 1)
        scores = torch.cat([s2, s3], 1)
        best, _ = scores.max(-1)
        top, idx = best.topk(self.k, dim=1)
        picked = torch.gather(boxes, 1, idx.unsqueeze(-1).expand(-1, -1, 4))
        return picked, top, idx


# ------------------------------------------------------------------------------ UNet (ConvTranspose + interpolate)
def _double(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, classes: int = 3, c: int = 8):
        super().__init__()
        self.e1, self.e2, self.e3 = _double(3, c), _double(c, 2 * c), _double(2 * c, 4 * c)
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, 2)
        self.d2 = _double(4 * c, 2 * c)
        self.d1 = _double(3 * c, c)
        self.out = nn.Conv2d(c, classes, 1)

    def forward(self, image):
        x1 = self.e1(image)
        x2 = self.e2(F.max_pool2d(x1, 2))
        x3 = self.e3(F.max_pool2d(x2, 2))
        y2 = self.d2(torch.cat([self.up2(x3), x2], 1))
        y1 = F.interpolate(y2, scale_factor=2.0, mode="bilinear", align_corners=False)
        y1 = self.d1(torch.cat([y1, x1], 1))
        return self.out(y1)


# ------------------------------------------------------------------------------------- CRNN (CNN + BiLSTM + CTC head)
class CRNN(nn.Module):
    """Text-line recogniser: VGG-ish CNN collapsing the height, a bidirectional LSTM over the width, a linear layer and
    log_softmax over (blank + 10 digits) per time step: input `line` [1, 1, 32, 128] → [T=32, 1, 11] (CTC layout)."""

    def __init__(self, classes: int = 11, hidden: int = 32):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 64
            nn.Conv2d(16, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # 8 x 32
            nn.Conv2d(32, 48, 3, 1, 1), nn.BatchNorm2d(48), nn.ReLU(), nn.MaxPool2d((2, 1)),  # 4 x 32
            nn.Conv2d(48, 64, (4, 1)), nn.BatchNorm2d(64), nn.ReLU(),  # 1 x 32
        )
        self.rnn = nn.LSTM(64, hidden, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, line):
        f = self.cnn(line).squeeze(2).permute(2, 0, 1)  # T x N x C
        y, _ = self.rnn(f)
        return F.log_softmax(self.fc(y), dim=-1)


# ------------------------------------------------------------------- audio keyword spotter (in-graph STFT / mel + GRU)
def _mel_filterbank(n_fft: int, n_mels: int, rate: int) -> torch.Tensor:
    def hz_to_mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    mels = torch.linspace(hz_to_mel(0.0), hz_to_mel(rate / 2), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = torch.linspace(0, rate / 2, n_fft // 2 + 1)
    fb = torch.zeros(n_mels, n_fft // 2 + 1)
    for m in range(n_mels):
        lo, c, hi = hz[m], hz[m + 1], hz[m + 2]
        fb[m] = torch.clamp(torch.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), min=0)
    return fb


class AudioKWS(nn.Module):
    """Keyword spotter on a raw waveform [1, 8000] (1 s at 8 kHz). Front end in the graph: STFT (n_fft 256, hop 128,
    Hann) as conv1d with a fixed real/imaginary DFT basis (`stft="conv"`, exports everywhere) or torch.stft
    (`stft="torch"`, exports as ONNX STFT at opset 17+), power, mel matmul (40 mels), log; then a GRU and a linear head."""

    def __init__(self, classes: int = 8, stft: str = "conv", n_fft: int = 256, hop: int = 128, n_mels: int = 40,
                 rate: int = 8000):
        super().__init__()
        self.stft, self.n_fft, self.hop = stft, n_fft, hop
        window = torch.hann_window(n_fft, periodic=True)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float32)[:, None]
        n = torch.arange(n_fft, dtype=torch.float32)[None]
        ang = 2 * math.pi * k * n / n_fft
        self.register_buffer("real_basis", (torch.cos(ang) * window)[:, None, :])  # F x 1 x n_fft
        self.register_buffer("imag_basis", (-torch.sin(ang) * window)[:, None, :])
        self.register_buffer("window", window)
        self.register_buffer("mel", _mel_filterbank(n_fft, n_mels, rate))  # M x F
        self.norm = nn.BatchNorm1d(n_mels)
        self.gru = nn.GRU(n_mels, 48, batch_first=True)
        self.fc = nn.Linear(48, classes)

    def forward(self, waveform):
        if self.stft == "conv":
            x = waveform.unsqueeze(1)  # N x 1 x S
            re = F.conv1d(x, self.real_basis, stride=self.hop)
            im = F.conv1d(x, self.imag_basis, stride=self.hop)
            power = re * re + im * im  # N x F x T
        else:
            spec = torch.stft(waveform, self.n_fft, self.hop, window=self.window, center=False, return_complex=False)
            power = spec[..., 0] ** 2 + spec[..., 1] ** 2  # N x F x T
        mel = torch.matmul(self.mel, power)  # N x M x T
        logmel = torch.log(mel + 1e-6)
        feats = self.norm(logmel).transpose(1, 2)  # N x T x M
        y, _ = self.gru(feats)
        return self.fc(y[:, -1])


# ---------------------------------------------------------------------------------- MTCNN R-Net (PReLU, Linear, softmax)
class MTCNNRNet(nn.Module):
    """MTCNN's refine net on 24x24 crops: conv+PReLU stages, Linear(576→128) + PReLU (rank-2 PReLU), then a 2-way
    face softmax and 4 box-regression outputs."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 28, 3), nn.PReLU(28), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(28, 48, 3), nn.PReLU(48), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(48, 64, 2), nn.PReLU(64),
        )
        self.fc = nn.Linear(64 * 3 * 3, 128)
        self.prelu = nn.PReLU(128)
        self.cls = nn.Linear(128, 2)
        self.box = nn.Linear(128, 4)

    def forward(self, image):
        x = self.body(image).permute(0, 3, 2, 1).flatten(1)  # MTCNN's Caffe-era transpose before the flatten
        x = self.prelu(self.fc(x))
        return F.softmax(self.cls(x), dim=1), self.box(x)

    def logits(self, image):  # for training
        x = self.body(image).permute(0, 3, 2, 1).flatten(1)
        return self.cls(self.prelu(self.fc(x)))


# ------------------------------------------------------------------------------------------ transformer building blocks
class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-2, -1)) * self.scale
        y = att.softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int = 4):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp * dim), nn.GELU(), nn.Linear(mlp * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        return x + self.mlp(self.n2(x))


class ViTTiny(nn.Module):
    """ViT/DeiT-tiny layout: 8x8 patch embedding conv, class token + learned position embedding, pre-norm blocks
    (manual attention: reshape/permute/softmax, GELU MLP), LayerNorm, head on the class token. Input 32x32."""

    def __init__(self, classes: int = 10, dim: int = 48, depth: int = 2, heads: int = 3, patch: int = 8, size: int = 32):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        n = (size // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, image):
        x = self.patch(image).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


class WhisperEncoderTiny(nn.Module):
    """Whisper's audio encoder layout: log-mel [1, 40, 200] → conv1d k3 + GELU → conv1d k3 stride 2 + GELU → fixed
    sinusoidal positions → pre-norm transformer blocks → LayerNorm: output [1, 100, 64]."""

    def __init__(self, n_mels: int = 40, dim: int = 64, depth: int = 2, heads: int = 4, frames: int = 200):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        t = frames // 2
        inv = torch.exp(-math.log(10000) * torch.arange(dim // 2) / (dim // 2 - 1))
        ang = torch.arange(t)[:, None] * inv[None]
        self.register_buffer("pos", torch.cat([torch.sin(ang), torch.cos(ang)], 1)[None])
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim)

    def forward(self, mel):
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        return self.ln(self.blocks(x + self.pos))


# --------------------------------------------------------------------------------------------------- BERT-tiny (HF)
class BertClassifier(nn.Module):
    """transformers' BertModel built from a BertConfig (random init; nothing downloaded) + a 3-way head on the pooled
    output. Inputs: input_ids, attention_mask (int64 [1, 32])."""

    def __init__(self, vocab: int = 1000, seq: int = 32):
        super().__init__()
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import BertConfig, BertModel

        cfg = BertConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=128, max_position_embeddings=seq, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0, attn_implementation="eager")
        self.bert = BertModel(cfg, add_pooling_layer=True)
        self.head = nn.Linear(64, 3)

    def forward(self, input_ids, attention_mask):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
        return self.head(out.pooler_output)


# --------------------------------------------------------------------------------------------- TorchScript specimens
class FlattenByShape(nn.Module):
    """Small CNN whose flatten is traced shape arithmetic: x.view(x.shape[0], -1)."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32 * 8 * 8, classes)

    def forward(self, image):
        x = F.relu(self.b1(self.c1(image)))
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.fc(x.view(x.shape[0], -1))


class GatedScripted(nn.Module):
    """For torch.jit.script: data-dependent control flow (an `if` on a tensor value, a loop with a runtime trip
    count) that tracing would freeze."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.c1 = nn.Conv2d(3, 32, 3, stride=2, padding=1)
        self.b1 = nn.BatchNorm2d(32)
        self.c2 = nn.Conv2d(32, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.fc = nn.Linear(64, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.b1(self.c1(image)))
        steps = int((x.mean() * 4).clamp(1, 3).item())
        for _ in range(steps):
            x = x + 0.5 * F.relu(self.c2(x))
        if bool(x.mean() > 1.0):
            x = x * 0.5
        else:
            x = F.relu(x - 0.1)
        x = F.relu(self.c3(x))
        return self.fc(x.mean(dim=(2, 3)))


class DynamicBatchCNN(nn.Module):
    """A CNN exported with a dynamic batch dim (torch.export Dim): depthwise-separable convs, residual, GAP."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.dw = nn.Conv2d(32, 32, 3, 1, 1, groups=32)
        self.pw = nn.Conv2d(32, 32, 1)
        self.down = nn.Sequential(nn.Conv2d(32, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU())
        self.fc = nn.Linear(64, classes)

    def forward(self, image):
        x = self.stem(image)
        x = self.down(x + F.relu(self.pw(self.dw(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class WhileScripted(nn.Module):
    """For torch.jit.script: a `while` on a tensor condition (ONNX Loop with a bool condition, no trip count) and an
    `if` on a tensor value (ONNX If)."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.c1 = nn.Conv2d(3, 32, 3, stride=2, padding=1)
        self.b1 = nn.BatchNorm2d(32)
        self.c2 = nn.Conv2d(32, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.fc = nn.Linear(64, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.b1(self.c1(image)))
        i = 0
        while bool(x.mean() < 2.0) and i < 2:
            x = x + 0.5 * F.relu(self.c2(x))
            i += 1
        if bool(x.amax() > 8.0):
            x = x * 0.5
        x = F.relu(self.c3(x))
        return self.fc(x.mean(dim=(2, 3)))

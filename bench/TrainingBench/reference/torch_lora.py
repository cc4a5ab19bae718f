#!/usr/bin/python3
"""PyTorch reference LoRA loop for the side-by-side trainer benchmark (training-bench versus).

Written for this benchmark (not taken from PEFT or transformers): a plain LLaMA decoder as Hugging
Face's eager LlamaForCausalLM computes it (RMSNorm, rotate-half RoPE, grouped-query attention as
matmul + softmax with an additive causal mask, SwiGLU MLP), LoRA on the named projections
(y = x W^T + s (x A^T) B^T, A Kaiming-uniform, B zero, s = alpha / r as PEFT), AdamW with PyTorch's
defaults and weight decay 0.01, gradient clipping to norm 1.0, cosine learning rate, and the loss
summed over predicted tokens divided by their count -- the same work as one OnnxLora trainer step.

Usage: torch_lora.py --model DIR --data FILE.jsonl --steps N --batch B --rank R --alpha A
                     --targets q_proj,v_proj --threads T --lr LR
Prints one JSON line: per-step seconds, tokens per step, losses, torch version, BLAS in use.
"""
import argparse
import ctypes
import json
import math
import os
import re
import struct
import time

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    """safetensors: u64 little-endian header length, JSON header, raw little-endian data."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[start:end]), dtype=DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"]).float()
    return tensors


class LoraLinear(torch.nn.Module):
    def __init__(self, weight, rank, alpha):
        super().__init__()
        out_f, in_f = weight.shape
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.lora_A = torch.nn.Parameter(torch.empty(rank, in_f))
        self.lora_B = torch.nn.Parameter(torch.zeros(out_f, rank))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / rank

    def forward(self, x):
        return F.linear(x, self.weight) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


class Frozen(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)

    def forward(self, x):
        return F.linear(x, self.weight)


def rms_norm(x, weight, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Model(torch.nn.Module):
    def __init__(self, config, weights, targets, rank, alpha):
        super().__init__()
        self.c = config
        self.heads = config["num_attention_heads"]
        self.kv_heads = config.get("num_key_value_heads", self.heads)
        self.head_dim = config.get("head_dim") or config["hidden_size"] // self.heads
        self.eps = config["rms_norm_eps"]

        def proj(name):
            w = weights[name + ".weight"]
            short = name.rsplit(".", 1)[1]
            return LoraLinear(w, rank, alpha) if short in targets else Frozen(w)

        def frozen(name):
            return torch.nn.Parameter(weights[name], requires_grad=False)

        self.embed = frozen("model.embed_tokens.weight")
        self.layers = torch.nn.ModuleList()
        for i in range(config["num_hidden_layers"]):
            p = f"model.layers.{i}."
            layer = torch.nn.Module()
            for n in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                      "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
                setattr(layer, n.split(".")[1], proj(p + n))
            layer.ln1 = frozen(p + "input_layernorm.weight")
            layer.ln2 = frozen(p + "post_attention_layernorm.weight")
            self.layers.append(layer)
        self.norm = frozen("model.norm.weight")
        self.lm_head = frozen("lm_head.weight") if "lm_head.weight" in weights else self.embed
        d = self.head_dim
        theta = config.get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)).float()

    def forward(self, ids, mask):
        b, s = ids.shape
        pos = torch.arange(s).unsqueeze(0).expand(b, s).float()
        angles = pos.unsqueeze(-1) * self.inv_freq
        emb = torch.cat((angles, angles), dim=-1)
        cos, sin = emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)
        allowed = torch.ones(s, s, dtype=torch.bool).tril().view(1, 1, s, s) & mask.bool().view(b, 1, 1, s)
        additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
        h = F.embedding(ids, self.embed)
        groups = self.heads // self.kv_heads
        for layer in self.layers:
            x = rms_norm(h, layer.ln1, self.eps)
            q = layer.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
            k = layer.k_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            v = layer.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if groups > 1:
                k = k.repeat_interleave(groups, dim=1)
                v = v.repeat_interleave(groups, dim=1)
            scores = q.matmul(k.transpose(2, 3)) / math.sqrt(self.head_dim) + additive
            probs = scores.softmax(-1)
            context = probs.matmul(v).transpose(1, 2).reshape(b, s, self.heads * self.head_dim)
            h = h + layer.o_proj(context)
            x = rms_norm(h, layer.ln2, self.eps)
            h = h + layer.down_proj(F.silu(layer.gate_proj(x)) * layer.up_proj(x))
        return F.linear(rms_norm(h, self.norm, self.eps), self.lm_head)


def blas_in_use():
    """The BLAS shared objects mapped into this process (Debian's torch links libblas.so.3, an alternative)."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if "blas" in path or "mkl" in path or "lapack" in path:
                libs.add(os.path.realpath(path))
    return sorted(libs)


def openblas_core(libs):
    """The kernel set OpenBLAS chose for this CPU (its own openblas_get_corename), or "" without OpenBLAS."""
    for path in libs:
        if "openblas" in os.path.basename(path):
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
    return ""


def peak_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--targets", default="q_proj,v_proj")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(42)
    with open(os.path.join(a.model, "config.json")) as f:
        config = json.load(f)
    weights = {}
    for name in sorted(os.listdir(a.model)):
        if name.endswith(".safetensors"):
            weights.update(read_safetensors(os.path.join(a.model, name)))
    model = Model(config, weights, set(a.targets.split(",")), a.rank, a.alpha)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    with open(a.data) as f:
        rows = [json.loads(line)["input_ids"] for line in f if line.strip()]
    step_seconds, step_cpu, losses, tokens = [], [], [], []
    for step in range(a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        for group in optimizer.param_groups:
            group["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * step / a.steps))
        start = (step * a.batch) % len(rows)
        batch = [rows[(start + i) % len(rows)] for i in range(a.batch)]
        width = max(len(r) for r in batch)
        ids = torch.tensor([r + [0] * (width - len(r)) for r in batch], dtype=torch.int64)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in batch], dtype=torch.int64)
        logits = model(ids, mask)
        targets_ids = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        count = int(mask[:, 1:].sum())
        summed = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets_ids.reshape(-1),
                                 ignore_index=-100, reduction="sum")
        (summed / count).backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(summed.item() / count)
        step_seconds.append(time.perf_counter() - t0)
        step_cpu.append(time.process_time() - c0)
        tokens.append(int(mask.sum()))
    print(json.dumps({
        "step_seconds": step_seconds,
        "step_cpu_seconds": step_cpu,
        "tokens": tokens,
        "losses": losses,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
        "blas": blas_in_use(),
        "blas_core": openblas_core(blas_in_use()),
        "blas_info": re.findall(r"BLAS_INFO=\w+", torch.__config__.show()),
        "trainable": sum(p.numel() for p in trainable),
        "peak_kib": peak_kib(),
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Interop check: do Python transformers and PEFT read what merge-export writes, and agree with it?

    python3 scripts/device/interop.py --bundle artifacts/device/bundle --out OUT
        [--ours-logits FILE.json] [--torch-device cpu|cuda] [--no-fixtures] [--require MOD,MOD]

The bundle comes from scripts/device/make-bundle.sh (manifest.json lists its files). Every check becomes one
row of OUT/interop.json and OUT/interop.md: pass, fail, skip (a module it needs is missing; the reason is
given) or error (the check itself raised; the traceback is printed). What runs depends on what imports:

  stdlib      bundle: every file's sha256 against the manifest
  numpy       reference-merge: each merged checkpoint against W + s*B*A (DoRA: m * V / ||V||_row) computed
              here in float64 from the base and adapter files; untouched tensors bit-identical to the base.
              reference-logits: a float64 LLaMA forward written here (RMSNorm, RoPE, GQA, SwiGLU), run on
              each merged checkpoint and, unmerged, on base + adapter branches; the two must agree.
  onnx        onnx-checker on every ONNX file of the bundle
  onnxruntime our ONNX exports run on the manifest's input ids ("ours"), compared with the references.
              Without onnxruntime, --ours-logits supplies them (JSON: {"logits": {"onnx/x.onnx":
              {"shape": [b, t, v], "data": [...]}}}), e.g. computed with ONNX Runtime from .NET.
  torch + transformers   transformers-logits: AutoModelForCausalLM loads each checkpoint folder; logits
              against ours and the reference (max abs <= 1e-4)
  + peft      peft-load: PeftModel.from_pretrained on each adapter; PEFT's own state dict of the adapter
              equals the file; unmerged logits against our unmerged ONNX; merge_and_unload() against our
              merged checkpoint tensor by tensor (max relative error); merged logits against ours.
              peft-fixtures: PEFT creates and saves adapters of every kind (LoRA, rsLoRA with rank/alpha
              patterns, DoRA, LoHa, LoKr, embedding LoRA, modules_to_save, a GPT-2 Conv1D target with
              fan_in_fan_out) and add_weighted_adapter results, with the merged weights and logits PEFT
              computes: OUT/peft-fixtures.tar.gz (see fixtures.json inside).

Exit code: 0 when nothing failed or errored, 1 otherwise, 2 when the bundle cannot be read. A module named
in --require that is missing counts as an error (the GPU machine run requires all of them).
"""
import argparse
import copy
import hashlib
import importlib
import json
import logging
import math
import os
import platform
import re
import shutil
import struct
import sys
import tarfile
import tempfile
import time
import traceback
import warnings

LOGIT_ATOL = 1e-4      # the bound for logits of the same model in two implementations
WEIGHT_RTOL = 1e-5     # max |a - b| / max |b| per tensor, for fp32 merges of the same update
FIXTURE_SEED = 1234
MODULES = ("numpy", "onnx", "onnxruntime", "torch", "transformers", "peft", "safetensors")


# --------------------------------------------------------------------------------------------- report

class Report:
    def __init__(self):
        self.rows = []
        self.modules = {}
        self.environment = {}
        self.started = time.time()

    def add(self, check, case, a, b, metric, value, limit, status=None, note="", details=None):
        if status is None:
            status = "pass" if value is not None and math.isfinite(value) and value <= limit else "fail"
        row = {"check": check, "case": case, "a": a, "b": b, "metric": metric, "value": value, "limit": limit,
               "status": status, "note": note}
        if details:
            row["details"] = details
        self.rows.append(row)
        shown = "-" if value is None else f"{value:.3g}"
        print(f"[{status:5}] {check:22} {case:28} {metric} {shown} (limit {limit}) {a} vs {b}{'; ' + note if note else ''}",
              flush=True)
        return row

    def skip(self, check, case, why):
        self.rows.append({"check": check, "case": case, "status": "skip", "note": why})
        print(f"[skip ] {check:22} {case:28} {why}", flush=True)

    def error(self, check, case, exc):
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.rows.append({"check": check, "case": case, "status": "error", "note": text})
        print(f"[error] {check:22} {case:28} {text}", flush=True)
        traceback.print_exc()

    def counts(self):
        c = {"pass": 0, "fail": 0, "skip": 0, "error": 0}
        for r in self.rows:
            c[r["status"]] += 1
        return c


def guarded(report, check, case, fn, *args, **kwargs):
    """Runs one check; an exception becomes an error row instead of ending the script."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none is swallowed
        report.error(check, case, exc)
        return None


def probe_modules(report, required):
    found = {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
            found[name] = module
            report.modules[name] = getattr(module, "__version__", "present")
        except Exception as exc:  # noqa: BLE001 - a broken install is reported like a missing one
            found[name] = None
            report.modules[name] = f"missing ({type(exc).__name__}: {exc})"
            if name in required:
                report.rows.append({"check": "environment", "case": name, "status": "error",
                                    "note": f"required module {name} is missing: {exc}"})
    report.environment = {"python": sys.version.split()[0], "platform": platform.platform(),
                          "machine": platform.machine()}
    torch = found["torch"]
    if torch is not None:
        try:
            report.environment["cuda"] = torch.cuda.is_available()
            if torch.cuda.is_available():
                report.environment["gpu"] = torch.cuda.get_device_name(0)
                report.environment["torch_cuda"] = torch.version.cuda
        except Exception as exc:  # noqa: BLE001
            report.environment["cuda"] = f"error: {exc}"
    print("modules: " + ", ".join(f"{k} {v}" for k, v in report.modules.items()), flush=True)
    return found


def missing(found, *names):
    absent = [n for n in names if found.get(n) is None]
    return f"needs {', '.join(absent)} (not installed here)" if absent else None


# ---------------------------------------------------------------------------------------- safetensors

_NP_TYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
             "U8": "u1", "BOOL": "?"}


def read_safetensors(np, path):
    """name -> numpy array. Own reader (8-byte header length, JSON header, raw little-endian data)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        raw = data[base + start:base + end]
        if spec["dtype"] == "BF16":
            array = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, _NP_TYPES[spec["dtype"]])
        out[name] = array.reshape(spec["shape"])
    return out


def write_safetensors(np, path, tensors, metadata=None):
    """Writes name -> numpy array (float32 / int64) as safetensors, names sorted."""
    names = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int64"): "I64",
             np.dtype("float16"): "F16", np.dtype("int32"): "I32"}
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read_checkpoint(np, folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
    else:
        shards = ["model.safetensors"]
    tensors = {}
    for shard in shards:
        tensors.update(read_safetensors(np, os.path.join(folder, shard)))
    return tensors


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------------------------- reference: adapters

_ROLES = ((".lora_A.weight", "A"), (".lora_B.weight", "B"), (".lora_magnitude_vector.weight", "m"),
          (".lora_magnitude_vector", "m"), (".lora_embedding_A", "EA"), (".lora_embedding_B", "EB"))


def pattern_value(pattern, path, default):
    """PEFT's rule for rank_pattern / alpha_pattern: the first key k with re.match(r"(.*\\.)?(k)$", path)."""
    for key, value in (pattern or {}).items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


def adapter_modules(adapter_tensors):
    """module path -> {role: array}; keys that are not LoRA factors are returned apart."""
    modules, other = {}, {}
    for key, value in adapter_tensors.items():
        path = key[len("base_model.model."):] if key.startswith("base_model.model.") else key
        for suffix, role in _ROLES:
            if path.endswith(suffix):
                modules.setdefault(path[:-len(suffix)], {})[role] = value
                break
        else:
            other[path] = value
    return modules, other


def scaling(config, path, rank):
    r = pattern_value(config.get("rank_pattern"), path, config["r"])
    alpha = pattern_value(config.get("alpha_pattern"), path, config["lora_alpha"])
    if r != rank:
        raise ValueError(f"{path}: the factors have rank {rank}, the config says {r}")
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


class Update:
    """One module's adapter update in float64: the additive delta in the weight's stored layout, or DoRA."""

    def __init__(self, np, config, path, parts, weight):
        self.path = path
        transposed = bool(config.get("fan_in_fan_out"))
        if "A" in parts:
            a, b = parts["A"].astype(np.float64), parts["B"].astype(np.float64)
            self.s = scaling(config, path, a.shape[0])
            self.a, self.b = a, b
            delta = self.s * (b @ a)                       # [out, in]
            self.embedding = False
        elif "EA" in parts:
            a, b = parts["EA"].astype(np.float64), parts["EB"].astype(np.float64)
            self.s = scaling(config, path, a.shape[0])
            self.a, self.b = a, b
            delta = self.s * (b @ a)                       # [dim, num_embeddings]
            transposed = True                              # the weight is [num_embeddings, dim]
            self.embedding = True
        else:
            raise ValueError(f"{path}: no LoRA factors (kinds other than LoRA/DoRA are not in this reference)")
        w = weight.astype(np.float64)
        w_out_in = w.T if transposed else w
        if w_out_in.shape != delta.shape:
            raise ValueError(f"{path}: weight {list(w.shape)} does not fit the update {list(delta.shape)}")
        self.transposed = transposed
        self.magnitude = parts["m"].astype(np.float64).reshape(-1) if "m" in parts else None
        if self.magnitude is None:
            merged = w_out_in + delta
        else:
            v = w_out_in + delta
            self.norm = np.linalg.norm(v, axis=1)
            merged = (self.magnitude / self.norm)[:, None] * v
        self.merged = merged.T if transposed else merged

    def branch(self, x, y):
        """The unmerged forward: y = x W^T from the base layer, plus the LoRA branch (DoRA rescales)."""
        y = y + self.s * ((x @ self.a.T) @ self.b.T)
        if self.magnitude is not None:
            y = y * (self.magnitude / self.norm)
        return y


def reference_updates(np, base, adapter_dir):
    config = read_json(os.path.join(adapter_dir, "adapter_config.json"))
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"peft_type {config.get('peft_type')} is not in this reference")
    tensors = read_safetensors(np, os.path.join(adapter_dir, "adapter_model.safetensors"))
    modules, other = adapter_modules(tensors)
    if other:
        raise ValueError(f"tensors this reference does not model: {sorted(other)[:4]}")
    return {path: Update(np, config, path, parts, base[path + ".weight"]) for path, parts in sorted(modules.items())}


def relative_error(np, ours, expected):
    ours = np.asarray(ours, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if ours.shape != expected.shape:
        return float("inf")
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    diff = float(np.max(np.abs(ours - expected))) if expected.size else 0.0
    return diff / scale if scale > 0 else diff


def compare_weights(np, report, check, case, a_name, b_name, ours, expected, base=None):
    """Per-tensor max relative error over the expected tensors; other tensors must equal the base bitwise."""
    errors = {name: relative_error(np, ours[name], value) if name in ours else float("inf")
              for name, value in expected.items()}
    worst = max(errors, key=errors.get) if errors else None
    note = f"{len(errors)} merged tensors, worst {worst}" if worst else "no merged tensors"
    status = None
    if base is not None:
        changed = [n for n in base if n not in expected and n in ours
                   and (ours[n].shape != base[n].shape or ours[n].tobytes() != base[n].tobytes())]
        absent = sorted(set(base) ^ set(ours))
        if changed or absent:
            status = "fail"
            note += f"; {len(changed)} untouched tensors differ from the base ({changed[:3]}), names differ: {absent[:3]}"
        else:
            note += f"; {len(base) - len(expected)} other tensors bit-identical to the base"
    value = max(errors.values()) if errors else 0.0
    return report.add(check, case, a_name, b_name, "max rel", value, WEIGHT_RTOL, status=status, note=note,
                      details={"per_tensor": errors})


# --------------------------------------------------------------------------------- reference: forward

class LlamaReference:
    """A float64 LLaMA forward pass from checkpoint tensors (HF layout), with optional unmerged LoRA branches."""

    def __init__(self, np, config, weights, updates=None):
        if config.get("model_type") not in ("llama", "mistral", "qwen2"):
            raise ValueError(f"model_type {config.get('model_type')} is not in this reference")
        if config.get("rope_scaling"):
            raise ValueError("rope_scaling is not in this reference")
        self.np = np
        self.c = config
        self.w = {k: v.astype(np.float64) for k, v in weights.items()}
        self.updates = updates or {}

    def linear(self, path, x):
        y = x @ self.w[path + ".weight"].T
        if path + ".bias" in self.w:
            y = y + self.w[path + ".bias"]
        update = self.updates.get(path)
        return update.branch(x, y) if update is not None else y

    def rms(self, x, weight):
        np = self.np
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.c.get("rms_norm_eps", 1e-6)) * self.w[weight]

    def logits(self, ids, mask):
        np, c = self.np, self.c
        ids, mask = np.asarray(ids), np.asarray(mask)
        batch, seq = ids.shape
        heads, kv = c["num_attention_heads"], c.get("num_key_value_heads") or c["num_attention_heads"]
        hd = c.get("head_dim") or c["hidden_size"] // heads
        embed = self.w["model.embed_tokens.weight"]
        if "model.embed_tokens" in self.updates:
            embed = self.updates["model.embed_tokens"].merged
        h = embed[ids]
        positions = np.where(mask > 0, np.cumsum(mask, axis=1) - 1, 1)
        inv_freq = 1.0 / (c.get("rope_theta", 10000.0) ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
        angles = positions[..., None] * inv_freq
        angles = np.concatenate([angles, angles], axis=-1)[:, None]      # [b, 1, t, hd]
        cos, sin = np.cos(angles), np.sin(angles)

        def rope(x):
            half = x.shape[-1] // 2
            rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
            return x * cos + rotated * sin

        allowed = np.tril(np.ones((seq, seq), dtype=bool))[None, None] & (mask[:, None, None, :] > 0)
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}"
            x = self.rms(h, f"{p}.input_layernorm.weight")
            q = self.linear(f"{p}.self_attn.q_proj", x).reshape(batch, seq, heads, hd).transpose(0, 2, 1, 3)
            k = self.linear(f"{p}.self_attn.k_proj", x).reshape(batch, seq, kv, hd).transpose(0, 2, 1, 3)
            v = self.linear(f"{p}.self_attn.v_proj", x).reshape(batch, seq, kv, hd).transpose(0, 2, 1, 3)
            q, k = rope(q), rope(k)
            k, v = np.repeat(k, heads // kv, axis=1), np.repeat(v, heads // kv, axis=1)
            scores = np.where(allowed, q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd), -np.inf)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = scores / scores.sum(axis=-1, keepdims=True)
            attended = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, heads * hd)
            h = h + self.linear(f"{p}.self_attn.o_proj", attended)
            x = self.rms(h, f"{p}.post_attention_layernorm.weight")
            gate = self.linear(f"{p}.mlp.gate_proj", x)
            h = h + self.linear(f"{p}.mlp.down_proj", gate / (1.0 + np.exp(-gate)) * self.linear(f"{p}.mlp.up_proj", x))
        h = self.rms(h, "model.norm.weight")
        if "lm_head.weight" in self.w and not c.get("tie_word_embeddings"):
            return self.linear("lm_head", h)
        return h @ embed.T


def max_abs(np, a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")


def logits_row(np, report, check, case, a_name, a, b_name, b, note=""):
    value = max_abs(np, a, b)
    top1 = float(np.mean(np.argmax(a, -1) == np.argmax(b, -1))) if np.shape(a) == np.shape(b) else 0.0
    note = (note + "; " if note else "") + f"top-1 agreement {top1:.4f}"
    return report.add(check, case, a_name, b_name, "max abs", value, LOGIT_ATOL, note=note)


# ---------------------------------------------------------------------------------------- the checks

class Interop:
    def __init__(self, args, report, found):
        self.args = args
        self.report = report
        self.found = found
        self.np = found["numpy"]
        self.bundle = os.path.abspath(args.bundle)
        self.manifest = read_json(os.path.join(self.bundle, "manifest.json"))
        inputs = read_json(os.path.join(self.bundle, self.manifest.get("inputs", "inputs.json")))
        self.ids, self.mask = inputs["input_ids"], inputs["attention_mask"]
        self.ours = {}          # bundle-relative ONNX path -> logits
        self.ours_source = None
        self.reference = {}     # case -> reference logits
        self.base = None
        self.config = read_json(self.path("sample/config.json"))

    def path(self, rel):
        return os.path.join(self.bundle, rel)

    def adapters(self):
        return sorted(self.manifest["adapters"].items())

    # -- stdlib
    def check_files(self):
        bad = []
        for rel, spec in sorted(self.manifest["files"].items()):
            path = self.path(rel)
            if not os.path.exists(path):
                bad.append(f"{rel}: missing")
                continue
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            if h.hexdigest() != spec["sha256"]:
                bad.append(f"{rel}: sha256 differs")
        total = len(self.manifest["files"])
        self.report.add("bundle", "files", "files", "manifest.json", "files wrong", float(len(bad)), 0,
                        note=f"{total} files, {sum(s['bytes'] for s in self.manifest['files'].values()):,} bytes"
                        + (f"; {bad[:5]}" if bad else ""))

    # -- numpy
    def check_reference(self):
        why = missing(self.found, "numpy")
        if why:
            self.report.skip("reference-merge", "all", why)
            return
        np = self.np
        self.base = read_checkpoint(np, self.path("sample"))
        self.reference["base"] = guarded(self.report, "reference-logits", "base",
                                         lambda: LlamaReference(np, self.config, self.base).logits(self.ids, self.mask))
        for name, spec in self.adapters():
            guarded(self.report, "reference-merge", name, self._reference_case, name, spec)

    def _reference_case(self, name, spec):
        np = self.np
        updates = reference_updates(np, self.base, self.path(spec["dir"]))
        expected = {path + ".weight": u.merged for path, u in updates.items()}
        self.reference[f"unmerged/{name}"] = LlamaReference(np, self.config, self.base, updates).logits(self.ids, self.mask)
        if not spec.get("merged_checkpoint"):
            self.report.skip("reference-merge", name, "no merged checkpoint in the bundle")
            return
        ours = read_checkpoint(np, self.path(spec["merged_checkpoint"]))
        compare_weights(np, self.report, "reference-merge", name, f"ours {spec['merged_checkpoint']}",
                        "numpy float64 W+dW", ours, expected, base=self.base)
        merged_config = read_json(self.path(spec["merged_checkpoint"] + "/config.json"))
        self.reference[f"merged/{name}"] = LlamaReference(np, merged_config, ours).logits(self.ids, self.mask)
        logits_row(np, self.report, "reference-logits", name, "reference on ours merged checkpoint",
                   self.reference[f"merged/{name}"], "reference unmerged (base + branches)",
                   self.reference[f"unmerged/{name}"])

    # -- onnx
    def check_onnx_files(self):
        onnx_files = sorted(rel for rel in self.manifest["files"] if rel.endswith(".onnx"))
        why = missing(self.found, "onnx")
        if why:
            self.report.skip("onnx-checker", "all", why)
            return
        onnx = self.found["onnx"]
        for rel in onnx_files:
            def one(rel=rel):
                onnx.checker.check_model(self.path(rel))
                model = onnx.load(self.path(rel), load_external_data=False)
                inputs = [i.name for i in model.graph.input]
                self.report.add("onnx-checker", rel, f"onnx {onnx.__version__}", "checker", "errors", 0.0, 0,
                                note=f"opset {model.opset_import[0].version}, inputs {inputs}")
            guarded(self.report, "onnx-checker", rel, one)

    # -- ours: onnxruntime or a file
    def load_ours(self):
        np = self.np
        onnx_files = sorted(rel for rel in self.manifest["files"] if rel.endswith(".onnx"))
        ort = self.found["onnxruntime"]
        if ort is not None and np is not None:
            ids = np.asarray(self.ids, dtype=np.int64)
            mask = np.asarray(self.mask, dtype=np.int64)
            for rel in onnx_files:
                def run(rel=rel):
                    options = ort.SessionOptions()
                    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
                    session = ort.InferenceSession(self.path(rel), options, providers=["CPUExecutionProvider"])
                    feeds = {"input_ids": ids, "attention_mask": mask}
                    names = {i.name for i in session.get_inputs()}
                    self.ours[rel] = session.run(["logits"], {k: v for k, v in feeds.items() if k in names})[0]
                guarded(self.report, "ours-onnxruntime", rel, run)
            self.ours_source = f"onnxruntime {ort.__version__} CPU"
        elif self.args.ours_logits and np is not None:
            data = read_json(self.args.ours_logits)
            for rel, spec in data["logits"].items():
                self.ours[rel] = np.asarray(spec["data"], dtype=np.float64).reshape(spec["shape"])
            self.ours_source = data.get("source", os.path.basename(self.args.ours_logits))
        else:
            self.report.skip("ours-logits", "all", missing(self.found, "numpy", "onnxruntime")
                             + " and no --ours-logits file: our ONNX logits are not compared")
            return
        print(f"ours: {len(self.ours)} ONNX logits from {self.ours_source}", flush=True)

    def check_ours_vs_reference(self):
        if not self.ours:
            return
        np = self.np
        pairs = [("onnx/base.onnx", "base")]
        for name, spec in self.adapters():
            if spec.get("unmerged_onnx"):
                pairs.append((spec["unmerged_onnx"], f"unmerged/{name}"))
            if spec.get("merged_onnx"):
                pairs.append((spec["merged_onnx"], f"merged/{name}"))
        for rel, key in pairs:
            if rel not in self.ours:
                self.report.skip("ours-vs-reference", rel, "no logits of ours for this file")
            elif self.reference.get(key) is None:
                self.report.skip("ours-vs-reference", rel, f"no reference logits for {key}")
            else:
                logits_row(np, self.report, "ours-vs-reference", rel, f"ours ({self.ours_source})", self.ours[rel],
                           f"numpy float64 reference ({key})", self.reference[key])

    # -- torch + transformers
    def torch_device(self):
        torch = self.found["torch"]
        if self.args.torch_device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--torch-device cuda but torch sees no CUDA device")
        return self.args.torch_device

    def hf_model(self, folder):
        torch, transformers = self.found["torch"], self.found["transformers"]
        major = int(transformers.__version__.split(".")[0])
        dtype = {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}
        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, attn_implementation="eager", **dtype)
        return model.to(self.torch_device()).eval()

    def torch_logits(self, model):
        torch = self.found["torch"]
        device = self.torch_device()
        with torch.no_grad():
            out = model(input_ids=torch.tensor(self.ids, dtype=torch.long, device=device),
                        attention_mask=torch.tensor(self.mask, dtype=torch.long, device=device))
        return out.logits.double().cpu().numpy()

    def check_transformers(self):
        why = missing(self.found, "numpy", "torch", "transformers")
        if why:
            self.report.skip("transformers-logits", "all", why)
            return
        torch = self.found["torch"]
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        label = f"transformers {self.found['transformers'].__version__} ({self.args.torch_device})"
        cases = [("base", "sample", "onnx/base.onnx", "base")]
        for name, spec in self.adapters():
            if spec.get("merged_checkpoint"):
                cases.append((name, spec["merged_checkpoint"], spec.get("merged_onnx"), f"merged/{name}"))
        for case, folder, onnx_rel, ref_key in cases:
            def one(case=case, folder=folder, onnx_rel=onnx_rel, ref_key=ref_key):
                logits = self.torch_logits(self.hf_model(self.path(folder)))
                if onnx_rel and onnx_rel in self.ours:
                    logits_row(self.np, self.report, "transformers-logits", case, f"{label} on {folder}", logits,
                               f"ours {onnx_rel}", self.ours[onnx_rel])
                if self.reference.get(ref_key) is not None:
                    logits_row(self.np, self.report, "transformers-logits", case, f"{label} on {folder}", logits,
                               f"numpy reference ({ref_key})", self.reference[ref_key])
            guarded(self.report, "transformers-logits", case, one)

    # -- peft on our adapters
    def check_peft(self):
        why = missing(self.found, "numpy", "torch", "transformers", "peft")
        if why:
            self.report.skip("peft-load", "all", why)
            return
        for name, spec in self.adapters():
            guarded(self.report, "peft-load", name, self._peft_case, name, spec)

    def _peft_case(self, name, spec):
        np, peft = self.np, self.found["peft"]
        label = f"peft {peft.__version__}"
        caught = []
        handler = _ListHandler(caught)
        loggers = [logging.getLogger(n) for n in ("peft", "transformers")]
        for lg in loggers:
            lg.addHandler(handler)
        try:
            with warnings.catch_warnings(record=True) as warned:
                warnings.simplefilter("always")
                model = peft.PeftModel.from_pretrained(self.hf_model(self.path("sample")), self.path(spec["dir"]),
                                                       is_trainable=False)
            caught += [str(w.message) for w in warned]
        finally:
            for lg in loggers:
                lg.removeHandler(handler)
        model.eval()
        notes = [m for m in caught if re.search(r"missing|unexpected|not found|mismatch", m, re.IGNORECASE)]

        # What PEFT would save for this adapter is what we wrote.
        file_tensors = read_safetensors(np, self.path(spec["dir"] + "/adapter_model.safetensors"))
        peft_tensors = {k: v.detach().cpu().numpy() for k, v in peft.get_peft_model_state_dict(model).items()}
        absent = sorted(set(file_tensors) ^ set(peft_tensors))
        errors = {k: relative_error(np, peft_tensors[k], v) for k, v in file_tensors.items() if k in peft_tensors}
        status = "fail" if absent else None
        self.report.add("peft-load", name, f"{label} get_peft_model_state_dict", f"ours {spec['dir']}", "max rel",
                        max(errors.values()) if errors else float("inf"), 0.0, status=status,
                        note=f"{len(file_tensors)} tensors in the file, {len(peft_tensors)} in PEFT's state dict"
                        + (f"; keys in only one: {absent[:4]}" if absent else "")
                        + (f"; PEFT said: {notes[:2]}" if notes else ""))

        unmerged = self.torch_logits(model)
        if spec.get("unmerged_onnx") in self.ours:
            logits_row(np, self.report, "peft-unmerged-logits", name, f"{label} unmerged", unmerged,
                       f"ours {spec['unmerged_onnx']}", self.ours[spec["unmerged_onnx"]])
        if self.reference.get(f"unmerged/{name}") is not None:
            logits_row(np, self.report, "peft-unmerged-logits", name, f"{label} unmerged", unmerged,
                       "numpy reference unmerged", self.reference[f"unmerged/{name}"])

        merged_model = model.merge_and_unload()
        merged = {k: v.detach().cpu().numpy() for k, v in merged_model.state_dict().items()}
        if spec.get("merged_checkpoint"):
            ours = read_checkpoint(np, self.path(spec["merged_checkpoint"]))
            expected = {k: v for k, v in merged.items() if k in ours}
            compare_weights(np, self.report, "peft-merge", name, f"ours {spec['merged_checkpoint']}",
                            f"{label} merge_and_unload", ours, expected)
        merged_logits = self.torch_logits(merged_model)
        if spec.get("merged_onnx") in self.ours:
            logits_row(np, self.report, "peft-merged-logits", name, f"{label} merge_and_unload", merged_logits,
                       f"ours {spec['merged_onnx']}", self.ours[spec["merged_onnx"]])

    # -- fixtures made by PEFT
    def make_fixtures(self, out_dir):
        why = missing(self.found, "numpy", "torch", "transformers", "peft")
        if why:
            self.report.skip("peft-fixtures", "all", why)
            return
        work = tempfile.mkdtemp(prefix="peft-fixtures-")
        try:
            root = os.path.join(work, "peft-fixtures")
            os.makedirs(root)
            index = Fixtures(self, root).make_all()
            with open(os.path.join(root, "fixtures.json"), "w", encoding="utf-8") as f:
                json.dump(index, f, indent=1)
            archive = os.path.join(out_dir, "peft-fixtures.tar.gz")
            with tarfile.open(archive, "w:gz") as tar:
                tar.add(root, arcname="peft-fixtures")
            size = os.path.getsize(archive)
            made = sum(1 for c in index["cases"] if c.get("status") == "made")
            self.report.add("peft-fixtures", "archive", "peft-fixtures.tar.gz", "16 MiB limit per file", "MiB",
                            size / 1048576, 16.0, note=f"{made} of {len(index['cases'])} cases made")
        finally:
            shutil.rmtree(work, ignore_errors=True)


class _ListHandler(logging.Handler):
    def __init__(self, sink):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record):
        self.sink.append(record.getMessage())


class Fixtures:
    """PEFT creates, saves and merges adapters of every kind on the sample (and a tiny GPT-2 for Conv1D)."""

    def __init__(self, interop, root):
        self.x = interop
        self.root = root
        self.np = interop.np
        self.torch = interop.found["torch"]
        self.transformers = interop.found["transformers"]
        self.peft = interop.found["peft"]
        self.cases = []

    def make_all(self):
        peft = self.peft
        llama = [
            ("lora", peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])),
            ("rslora-patterns", peft.LoraConfig(
                r=8, lora_alpha=16, use_rslora=True, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                rank_pattern={"k_proj": 4, r"model\.layers\.1\.self_attn\.q_proj": 2},
                alpha_pattern={"v_proj": 32, "o_proj": 4})),
            ("dora", peft.LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj", "v_proj", "down_proj"])),
            ("lora-regex", peft.LoraConfig(r=4, lora_alpha=4, target_modules=r".*\.layers\.[02]\.mlp\.(gate_proj|up_proj)")),
            ("lora-embedding", peft.LoraConfig(r=4, lora_alpha=8, target_modules=["embed_tokens", "q_proj"])),
            ("lora-modules-to-save", peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                     modules_to_save=["lm_head"])),
            ("loha", peft.LoHaConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj"])),
            ("lokr", peft.LoKrConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj"])),
            ("lokr-decompose-both", peft.LoKrConfig(r=2, alpha=4, target_modules=["q_proj", "o_proj"],
                                                    decompose_both=True, decompose_factor=8)),
        ]
        for name, config in llama:
            self._case(name, "tiny-llama", lambda: self.x.hf_model(self.x.path("sample")), config)
        self._gpt2()
        self._weighted()
        return {
            "format": 1,
            "made_by": {k: self.x.report.modules.get(k) for k in ("torch", "transformers", "peft")},
            "base": {"tiny-llama": {"checkpoint": "the interop bundle's sample/ (merge-export sample)",
                                    "model.safetensors sha256": self.x.manifest["files"]["sample/model.safetensors"]["sha256"]},
                     "tiny-gpt2": {"checkpoint": "tiny-gpt2/ in this archive"}},
            "input_ids": self.x.ids,
            "tolerances": {"logits max abs": LOGIT_ATOL, "weights max rel": WEIGHT_RTOL},
            "layout": "cases/<name>/adapter/ (PEFT save_pretrained); cases/<name>/expected.safetensors: the merged "
                      "weights PEFT computes (merge_and_unload) for every tensor that differs from the base, under "
                      "the checkpoint's names, plus 'logits.unmerged' and 'logits.merged' on 'input_ids'",
            "cases": self.cases,
        }

    # -- helpers
    def _randomize(self, model):
        """Non-trivial weights for every adapter in the model (active or not): PEFT's default init makes B (or
        its LoHa/LoKr counterpart) zero, which would make every merge a no-op. Seeded, so reruns agree."""
        torch = self.torch
        g = torch.Generator().manual_seed(FIXTURE_SEED)
        std = (("lora_magnitude_vector", None), ("modules_to_save", None), ("lora_", 0.05), ("hada_", 0.3),
               ("lokr_", 0.2))
        with torch.no_grad():
            for name, p in model.named_parameters():
                noise = torch.randn(p.shape, generator=g).to(p.device, p.dtype)
                kind = next((k for k, _ in std if k in name), None)
                if kind == "lora_magnitude_vector":
                    p.mul_(1 + 0.1 * noise)          # DoRA magnitudes start at ||W||_row; move them off it
                elif kind == "modules_to_save":
                    p.add_(0.02 * noise)             # the trainable copy starts equal to the base module
                elif kind is not None:
                    p.copy_(dict(std)[kind] * noise)

    def _logits(self, model, ids):
        torch = self.torch
        with torch.no_grad():
            return model(input_ids=torch.tensor(ids, dtype=torch.long, device=self.x.torch_device())).logits.float().cpu().numpy()

    def _write_case(self, name, base_name, peft_model, adapter_name, base_state, ids, extra=None):
        np = self.np
        case_dir = os.path.join(self.root, "cases", name)
        saved = tempfile.mkdtemp(prefix="save-")
        try:
            peft_model.save_pretrained(saved, selected_adapters=[adapter_name])
            config_files = [os.path.join(d, f) for d, _, fs in os.walk(saved) for f in fs if f == "adapter_config.json"]
            if len(config_files) != 1:
                raise RuntimeError(f"save_pretrained wrote {len(config_files)} adapter_config.json files")
            shutil.copytree(os.path.dirname(config_files[0]), os.path.join(case_dir, "adapter"))
        finally:
            shutil.rmtree(saved, ignore_errors=True)
        peft_model.set_adapter(adapter_name)
        unmerged = self._logits(peft_model, ids)
        merged_model = copy.deepcopy(peft_model).merge_and_unload(adapter_names=[adapter_name])
        merged_state = {k: v.detach().float().cpu().numpy() for k, v in merged_model.state_dict().items()}
        changed = {k: v for k, v in merged_state.items()
                   if k in base_state and (v.shape != base_state[k].shape or not np.array_equal(v, base_state[k]))}
        if not changed:
            raise RuntimeError("merge_and_unload changed no tensor: the adapter is a no-op")
        tensors = dict(changed)
        tensors["logits.unmerged"] = unmerged
        tensors["logits.merged"] = self._logits(merged_model, ids)
        tensors["input_ids"] = np.asarray(ids, dtype=np.int64)
        write_safetensors(np, os.path.join(case_dir, "expected.safetensors"), tensors)
        logit_gap = max_abs(np, tensors["logits.unmerged"], tensors["logits.merged"])
        entry = {"name": name, "status": "made", "base": base_name, "adapter": f"cases/{name}/adapter",
                 "expected": f"cases/{name}/expected.safetensors", "merged_tensors": sorted(changed),
                 "peft_unmerged_vs_merged_logits_max_abs": logit_gap}
        entry.update(extra or {})
        self.cases.append(entry)
        self.x.report.add("peft-fixtures", name, "PEFT unmerged logits", "PEFT merged logits", "max abs", logit_gap,
                          LOGIT_ATOL, note=f"{len(changed)} merged tensors saved")

    def _case(self, name, base_name, load_base, config, randomize=True):
        def make():
            self.torch.manual_seed(FIXTURE_SEED)
            base = load_base()
            base_state = {k: v.detach().float().cpu().numpy().copy() for k, v in base.state_dict().items()}
            model = self.peft.get_peft_model(base, config)
            if randomize:
                self._randomize(model)
            model.eval()
            # What PEFT wrapped: e.g. GPT-2's Conv1D (weights stored [in, out]) for the fan_in_fan_out case.
            wrapped = sorted({type(m.base_layer).__name__ for m in model.modules() if hasattr(m, "base_layer")})
            self._write_case(name, base_name, model, "default", base_state, self.x.ids,
                             extra={"wrapped_layer_classes": wrapped})
        if guarded(self.x.report, "peft-fixtures", name, lambda: make() or True) is None:
            self.cases.append({"name": name, "status": "error"})

    def _gpt2(self):
        """GPT-2's attention and MLP use Conv1D (weight stored [in, out]): LoRA with fan_in_fan_out=True."""
        transformers = self.transformers
        folder = os.path.join(self.root, "tiny-gpt2")

        def load_base():
            if not os.path.exists(folder):
                self.torch.manual_seed(FIXTURE_SEED)
                config = transformers.GPT2Config(vocab_size=512, n_positions=64, n_embd=64, n_layer=2, n_head=4)
                transformers.GPT2LMHeadModel(config).save_pretrained(folder)
            major = int(transformers.__version__.split(".")[0])
            dtype = {"dtype": self.torch.float32} if major >= 5 else {"torch_dtype": self.torch.float32}
            model = transformers.GPT2LMHeadModel.from_pretrained(folder, local_files_only=True, **dtype)
            return model.to(self.x.torch_device()).eval()
        config = self.peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True)
        self._case("gpt2-conv1d-fan-in-fan-out", "tiny-gpt2", load_base, config)

    def _weighted(self):
        """add_weighted_adapter on three plain LoRA adapters: a, b (same rank) and c (another rank)."""
        peft = self.peft
        combos = [
            ("linear", ["a", "b"], {}),
            ("cat", ["a", "c"], {}),
            ("svd", ["a", "c"], {"svd_rank": 6}),
            ("ties", ["a", "b"], {"density": 0.5, "majority_sign_method": "total"}),
            ("ties_svd", ["a", "c"], {"density": 0.5, "svd_rank": 8}),
            ("magnitude_prune", ["a", "b"], {"density": 0.5}),
            ("magnitude_prune_svd", ["a", "c"], {"density": 0.5, "svd_rank": 8}),
        ]
        sources = {"a": peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
                   "b": peft.LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
                   "c": peft.LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"])}
        weights = [0.7, 0.3]
        state = {}

        def setup():
            self.torch.manual_seed(FIXTURE_SEED)
            base = self.x.hf_model(self.x.path("sample"))
            state["base"] = {k: v.detach().float().cpu().numpy().copy() for k, v in base.state_dict().items()}
            model = peft.get_peft_model(base, sources["a"], adapter_name="a")
            model.add_adapter("b", sources["b"])
            model.add_adapter("c", sources["c"])
            self._randomize(model)      # every adapter's factors; they are all trainable right after creation
            model.eval()
            state["model"] = model
            for name in ("a", "b", "c"):
                self._write_case(f"weighted-source-{name}", "tiny-llama", model, name, state["base"], self.x.ids)
            return True
        if guarded(self.x.report, "peft-fixtures", "weighted-sources", setup) is None:
            self.cases.append({"name": "weighted-sources", "status": "error"})
            return
        model = state["model"]
        for combination, names, kwargs in combos:
            case = f"weighted-{combination}"

            def make(combination=combination, names=names, kwargs=kwargs, case=case):
                model.add_weighted_adapter(names, weights, case, combination_type=combination, **kwargs)
                model.eval()
                self._write_case(case, "tiny-llama", model, case, state["base"], self.x.ids,
                                 extra={"add_weighted_adapter": {"adapters": [f"weighted-source-{n}" for n in names],
                                                                 "weights": weights,
                                                                 "combination_type": combination, **kwargs}})
                model.delete_adapter(case)
                return True
            if guarded(self.x.report, "peft-fixtures", case, make) is None:
                self.cases.append({"name": case, "status": "error"})


# ------------------------------------------------------------------------------------------- outputs

def write_outputs(report, out_dir, bundle, seconds):
    counts = report.counts()
    summary = {"format": 1, "bundle": bundle, "seconds": round(seconds, 1), "counts": counts,
               "environment": report.environment, "modules": report.modules, "checks": report.rows}
    with open(os.path.join(out_dir, "interop.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, default=float)
    lines = ["# Interop check", "",
             f"{counts['pass']} passed, {counts['fail']} failed, {counts['error']} errors, {counts['skip']} skipped "
             f"in {seconds:.0f} s", "",
             "Environment: " + ", ".join(f"{k} {v}" for k, v in report.environment.items()), "",
             "Modules: " + ", ".join(f"{k} {v}" for k, v in report.modules.items()), "",
             "| check | case | a | b | metric | value | limit | status | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report.rows:
        value = r.get("value")
        shown = "" if value is None else f"{value:.3g}"
        cells = [r["check"], r["case"], r.get("a", ""), r.get("b", ""), r.get("metric", ""), shown,
                 str(r.get("limit", "")), r["status"], r.get("note", "")]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    with open(os.path.join(out_dir, "interop.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="interop bundle folder (make-bundle.sh)")
    parser.add_argument("--out", required=True, help="results folder (created)")
    parser.add_argument("--ours-logits", help="JSON of our ONNX logits, used when onnxruntime is missing")
    parser.add_argument("--torch-device", default="cpu", choices=["cpu", "cuda"],
                        help="where transformers/PEFT run (default cpu: deterministic fp32, no TF32)")
    parser.add_argument("--no-fixtures", action="store_true", help="skip the PEFT fixtures")
    parser.add_argument("--require", default="", help="comma-separated modules whose absence is an error")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    report = Report()
    required = {m for m in args.require.split(",") if m}
    unknown = required - set(MODULES)
    if unknown:
        parser.error(f"--require: unknown modules {sorted(unknown)} (known: {', '.join(MODULES)})")
    found = probe_modules(report, required)
    try:
        x = Interop(args, report, found)
    except (OSError, ValueError, KeyError) as exc:
        print(f"interop: cannot read the bundle {args.bundle}: {exc}", file=sys.stderr)
        write_outputs(report, args.out, args.bundle, time.time() - started)
        return 2
    guarded(report, "bundle", "files", x.check_files)
    guarded(report, "reference", "all", x.check_reference)
    guarded(report, "onnx-checker", "all", x.check_onnx_files)
    guarded(report, "ours-logits", "all", x.load_ours)
    guarded(report, "ours-vs-reference", "all", x.check_ours_vs_reference)
    guarded(report, "transformers-logits", "all", x.check_transformers)
    guarded(report, "peft-load", "all", x.check_peft)
    if args.no_fixtures:
        report.skip("peft-fixtures", "all", "--no-fixtures")
    else:
        guarded(report, "peft-fixtures", "all", x.make_fixtures, args.out)
    counts = write_outputs(report, args.out, x.bundle, time.time() - started)
    print(f"interop: {counts['pass']} passed, {counts['fail']} failed, {counts['error']} errors, "
          f"{counts['skip']} skipped; {os.path.join(args.out, 'interop.md')}", flush=True)
    return 1 if counts["fail"] or counts["error"] else 0


if __name__ == "__main__":
    sys.exit(main())

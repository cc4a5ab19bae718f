#!/usr/bin/env python3
"""Writes manifest.json and inputs.json for an interop bundle made by make-bundle.sh (standard library only).

The layout is read from the folder itself:
  sample/                    base checkpoint          onnx/base.onnx            base export
  adapters/<name>/           PEFT adapter folders     onnx/<name>-unmerged.onnx LoRA branches as nodes
  merged/<name>/             merged checkpoints       onnx/<name>-merged.onnx   merged export

inputs.json holds fixed input ids (seeded, so every run of the script writes the same ids) and an all-ones
attention mask, as an object of input name -> nested array: the format `merge-export validate --inputs` reads.
"""
import argparse
import hashlib
import json
import os
import random
import sys

BATCH, SEQUENCE, SEED = 2, 16, 20240601
FIRST_ID = 4  # ids 0..3 are <unk> <s> </s> <pad> in the sample's tokenizer


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def existing(root, rel):
    return rel if os.path.exists(os.path.join(root, rel)) else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--tool", default="merge-export")
    parser.add_argument("--commit", default="unknown")
    args = parser.parse_args()
    root = args.bundle

    with open(os.path.join(root, "sample", "config.json"), encoding="utf-8") as f:
        vocab = int(json.load(f)["vocab_size"])
    rng = random.Random(SEED)
    ids = [[rng.randrange(FIRST_ID, vocab) for _ in range(SEQUENCE)] for _ in range(BATCH)]
    inputs = {"input_ids": ids, "attention_mask": [[1] * SEQUENCE for _ in range(BATCH)]}
    with open(os.path.join(root, "inputs.json"), "w", encoding="utf-8") as f:
        json.dump(inputs, f)

    adapters = {}
    adapters_dir = os.path.join(root, "adapters")
    for name in sorted(os.listdir(adapters_dir)):
        config_path = os.path.join(adapters_dir, name, "adapter_config.json")
        if not os.path.isfile(config_path):
            continue
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        adapters[name] = {
            "dir": f"adapters/{name}",
            "peft_type": config.get("peft_type"),
            "r": config.get("r"),
            "lora_alpha": config.get("lora_alpha"),
            "use_rslora": bool(config.get("use_rslora")),
            "use_dora": bool(config.get("use_dora")),
            "target_modules": config.get("target_modules"),
            "rank_pattern_keys": len(config.get("rank_pattern") or {}),
            "merged_checkpoint": existing(root, f"merged/{name}"),
            "unmerged_onnx": existing(root, f"onnx/{name}-unmerged.onnx"),
            "merged_onnx": existing(root, f"onnx/{name}-merged.onnx"),
        }

    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if rel == "manifest.json":
                continue
            files[rel] = {"bytes": os.path.getsize(path), "sha256": sha256(path)}

    manifest = {
        "format": 1,
        "made_by": args.tool,
        "commit": args.commit,
        "inputs": "inputs.json",
        "input_ids": ids,
        "base": {"checkpoint": "sample", "onnx": existing(root, "onnx/base.onnx")},
        "adapters": adapters,
        "files": files,
    }
    with open(os.path.join(root, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    print(f"manifest: {len(adapters)} adapters, {len(files)} files", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Builds, on the GPU machine, the model where the GPU matters for cuda-validate.sh: a transformers
LlamaForCausalLM with random weights at LLaMA-1B shapes (hidden 2048, MLP 8192, 32 heads / 8 KV heads,
vocab 32000; --layers sets the depth, 16 for ~1.1B parameters), and a PEFT LoRA adapter on every linear
layer. Writes:

  OUT/base/model.onnx (+ model.onnx.data)       torch.onnx export of the base model
  OUT/unmerged/model.onnx (+ .data)             torch.onnx export of the PeftModel (LoRA branches as nodes)
  OUT/adapter/                                  the adapter, PEFT save_pretrained
  OUT/checkpoint/                               the base model, save_pretrained (safetensors), so our ONNX
                                                merge can match weights by content if names do not tell
  OUT/llama.json                                shapes, parameter count, exporter used, seconds per step

The ONNX merge itself is ours (merge-export merge --model base/model.onnx ...), run by cuda-validate.sh.
Exporters are tried in --exporters order: "legacy" (TorchScript, torch.onnx.export(dynamo=False): node names
spell module paths) and "dynamo" (torch.export based).
"""
import argparse
import json
import os
import shutil
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--exporters", default="legacy,dynamo")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    import onnx
    import peft
    import torch
    import transformers

    timings = {}
    clock = time.time()

    def lap(name):
        nonlocal clock
        timings[name] = round(time.time() - clock, 1)
        print(f"make_llama: {name} {timings[name]} s", flush=True)
        clock = time.time()

    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    config = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=2048, intermediate_size=8192, num_hidden_layers=args.layers,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=2048, rms_norm_eps=1e-5,
        rope_theta=500000.0, tie_word_embeddings=False, use_cache=False)
    try:
        config._attn_implementation = "eager"   # plain MatMul/Softmax attention in the graph
    except Exception as exc:  # noqa: BLE001 - sdpa exports too; say so and go on
        print(f"make_llama: keeping the default attention ({exc})", flush=True)
    model = transformers.LlamaForCausalLM(config).eval()
    params = sum(p.numel() for p in model.parameters())
    lap("init")
    model.save_pretrained(os.path.join(args.out, "checkpoint"))
    lap("save checkpoint")

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    ids = torch.randint(0, args.vocab, (1, 8))
    mask = torch.ones_like(ids)
    exporters = [e for e in args.exporters.split(",") if e]
    used = {}

    def export(module, folder):
        path = os.path.join(args.out, folder, "model.onnx")
        errors = []
        for exporter in exporters:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
            os.makedirs(os.path.dirname(path))
            try:
                # The torch.export-based exporter starts at opset 18.
                opset = args.opset if exporter == "legacy" else max(args.opset, 18)
                kwargs = dict(input_names=["input_ids", "attention_mask"], output_names=["logits"],
                              opset_version=opset)
                with torch.no_grad():
                    if exporter == "legacy":
                        torch.onnx.export(Logits(module), (ids, mask), path, dynamo=False, do_constant_folding=True,
                                          external_data=True,
                                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                                        "attention_mask": {0: "batch", 1: "sequence"},
                                                        "logits": {0: "batch", 1: "sequence"}}, **kwargs)
                    else:
                        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", min=2, max=2048)
                        torch.onnx.export(Logits(module), (ids, mask), path, dynamo=True, external_data=True,
                                          dynamic_shapes={"input_ids": {0: batch, 1: sequence},
                                                          "attention_mask": {0: batch, 1: sequence}}, **kwargs)
                # One external data file beside the model, whatever the exporter wrote.
                proto = onnx.load(path, load_external_data=True)
                for f in os.listdir(os.path.dirname(path)):
                    os.remove(os.path.join(os.path.dirname(path), f))
                onnx.save_model(proto, path, save_as_external_data=True, all_tensors_to_one_file=True,
                                location="model.onnx.data", size_threshold=1024)
                used[folder] = f"{exporter} (opset {opset})"
                return
            except Exception as exc:  # noqa: BLE001 - the next exporter is tried, every error reported
                errors.append(f"{exporter}: {type(exc).__name__}: {exc}"[:2000])
                print(f"make_llama: {folder} export with {exporter} failed: {errors[-1]}", file=sys.stderr, flush=True)
        raise RuntimeError(f"every exporter failed for {folder}: {errors}")

    export(model, "base")
    lap("export base")

    lora = peft.LoraConfig(r=args.rank, lora_alpha=2 * args.rank,
                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft_model = peft.get_peft_model(model, lora).eval()
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:          # PEFT starts B at zero; the merge must change something
                p.copy_(0.02 * torch.randn(p.shape, generator=generator))
    peft_model.save_pretrained(os.path.join(args.out, "adapter"))
    lap("adapter")
    export(peft_model, "unmerged")
    lap("export unmerged")

    summary = {"layers": args.layers, "hidden": 2048, "intermediate": 8192, "heads": 32, "kv_heads": 8,
               "vocab": args.vocab, "parameters": params, "lora_rank": args.rank, "lora_targets": "all linear",
               "exporter": used, "opset": args.opset, "seconds": timings,
               "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                            "peft": peft.__version__, "onnx": onnx.__version__}}
    with open(os.path.join(args.out, "llama.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()

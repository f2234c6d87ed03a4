#!/bin/sh
# PyTorch loads a Brisk checkpoint: train a small CNN with batchnorm, layernorm, a skip
# connection and dropout
# for one epoch, then compare Brisk's logits on 100 test images (Fashion-MNIST's where
# installed, synthetic ones otherwise) with those of torch.nn.Sequential.load_state_dict of
# the same file (torch_load_test.py). Skips (77) without Debian's python3-torch.
# Usage: torch_load.sh BRISK_TRAIN CKPT_LOGITS TESTS_DIR
set -eu
train=$1
logits=$2
dir=$3
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -c 'import torch, numpy' 2>/dev/null || { echo "skip: no python3-torch"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
model="conv:6:3:pad1,batchnorm,relu,conv:6:3:pad1,res:3,maxpool:2,conv:8:3:s2,gelu,avgpool:2:s1"
model="$model,flatten,dense:32"
model="$model,layernorm,tanh,dropout:0.2,dense:10"
"$train" --model "$model" --data synthetic --synthetic-n 600 --synthetic-test-n 100 \
    --epochs 1 --batch 64 --micro-batch 32 --logdir "$tmp/run" --quiet
ck=$(ls "$tmp/run/checkpoints"/ckpt-*.safetensors | tail -n 1)
data=/usr/share/datasets/fashion-mnist
[ -f "$data/t10k-images-idx3-ubyte.gz" ] || [ -f "$data/t10k-images-idx3-ubyte" ] || data=synthetic
"$logits" "$ck" "$data" 100 "$tmp/logits.bin"
"$py" "$dir/torch_load_test.py" "$ck" "$tmp/logits.bin"

# The same CNN trained with --precision bf16: the checkpoint loads as any other, and PyTorch,
# rounding each Linear's and Conv2d's weights and inputs to bfloat16, gives Brisk's logits.
"$train" --model "$model" --data synthetic --synthetic-n 600 --synthetic-test-n 100 \
    --epochs 1 --batch 64 --micro-batch 32 --precision bf16 --logdir "$tmp/bf16" --quiet
ck=$(ls "$tmp/bf16/checkpoints"/ckpt-*.safetensors | tail -n 1)
"$logits" "$ck" "$data" 100 "$tmp/logits.bin"
"$py" "$dir/torch_load_test.py" "$ck" "$tmp/logits.bin"

# A GPT (gpt:2:32:4 with dropout, trained on bytes of this repository's docs for one epoch)
# loads into brisk_torch's nanoGPT-style modules with the same logits at every position,
# within 1e-5 of the largest logit.
cat "$dir"/../README.md "$dir"/../docs/*.md > "$tmp/text.txt"
"$train" --model gpt:2:32:4:drop0.1 --data "$tmp/text.txt" --seq-len 48 --epochs 1 --batch 16 \
    --logdir "$tmp/gpt" --quiet
ck=$(ls "$tmp/gpt/checkpoints"/ckpt-*.safetensors | tail -n 1)
"$logits" "$ck" "$tmp/text.txt" 8 "$tmp/gpt_logits.bin"
"$py" "$dir/torch_load_test.py" "$ck" "$tmp/gpt_logits.bin"
